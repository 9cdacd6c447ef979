// The attached-thread helper: see actor.hpp for the life cycle.
#include "src/wire/actor.hpp"

#include <fmt/format.h>
#include <pthread.h>
#include <sys/resource.h>

#include <algorithm>

#include "src/wire/pipe.hpp"

namespace zyolo {
namespace {

// The child thread: its own PAIR socket, the body, and $ERROR if the body throws. The thread
// carries the actor's name (its first 15 bytes, the kernel's limit), so `top -H`, `ps -L`, gdb
// and `perf report --comm` tell the broker from the workers.
void run_child(zmq::context_t& ctx, const std::string& name, const std::string& endpoint,
               const Actor::Body& body) {
  ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
  zmq::socket_t pipe(ctx, zmq::socket_type::pair);
  pipe.set(zmq::sockopt::linger, 0);
  pipe.connect(endpoint);
  try {
    body(ctx, pipe);
  } catch (const zmq::error_t& e) {
    if (e.num() != ETERM) send_pipe(pipe, PipeCommand::Error, args_of(ErrorText{e.what()}));
  } catch (const std::exception& e) {
    send_pipe(pipe, PipeCommand::Error, args_of(ErrorText{e.what()}));
  }
}

}  // namespace

Actor::Actor(zmq::context_t& ctx, std::string name, Body body, NoWait)
    : name_(std::move(name)), pipe_(ctx, zmq::socket_type::pair) {
  pipe_.set(zmq::sockopt::linger, 0);
  // The object's address makes the endpoint unique while the actor lives, with no global counter.
  endpoint_ = fmt::format("inproc://actor-{}-{}", name_, static_cast<const void*>(this));
  pipe_.bind(endpoint_);
  thread_ = std::thread(run_child, std::ref(ctx), name_, endpoint_, std::move(body));
}

Actor::Actor(zmq::context_t& ctx, std::string name, Body body)
    : Actor(ctx, std::move(name), std::move(body), NoWait{}) {
  auto first = recv_pipe(pipe_);
  if (first && first->command == PipeCommand::Ready) return;
  std::string why = "no $READY";
  if (first && first->command == PipeCommand::Error)
    if (auto error = decode_args<ErrorText>(first.value())) why = error->text;
  // The delegated constructor finished, so the destructor runs on this throw: it joins the
  // thread (which returned after $ERROR) and unbinds the pipe.
  throw ActorError(fmt::format("{}: {}", name_, why));
}

Actor::~Actor() {
  // The child may have returned already (after $ERROR): never block on a pipe with no peer.
  try {
    send_pipe(pipe_, PipeCommand::Term, {}, zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
  }
  thread_.join();
  // Closing is asynchronous; unbinding is not, so the same endpoint can be bound again at once.
  try {
    pipe_.unbind(endpoint_);
  } catch (const zmq::error_t&) {
  }
}

zmq::context_t make_context() {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
    getrlimit(RLIMIT_NOFILE, &files);
  }
  // Each socket takes a descriptor or two (its mailbox, its connections): keep a margin.
  const auto limit = std::clamp<rlim_t>(files.rlim_cur / 2, 1024, 65536);
  zmq::context_t ctx;
  ctx.set(zmq::ctxopt::max_sockets, static_cast<int>(limit));
  return ctx;
}

void signal_ready(zmq::socket_ref pipe) { send_pipe(pipe, PipeCommand::Ready); }

}  // namespace zyolo
