// The attached-thread helper: see actor.hpp for the life cycle.
#include "actor.hpp"

#include <fmt/format.h>

#include "protocol.hpp"

namespace zyolo {
namespace {

// The child thread: its own PAIR socket, the body, and $ERROR if the body throws.
void run_child(zmq::context_t& ctx, const std::string& endpoint, const Actor::Body& body) {
  zmq::socket_t pipe(ctx, zmq::socket_type::pair);
  pipe.set(zmq::sockopt::linger, 0);
  pipe.connect(endpoint);
  try {
    body(ctx, pipe);
  } catch (const zmq::error_t& e) {
    if (e.num() != ETERM) send_pipe(pipe, PipeCommand::Error, text_frames({e.what()}));
  } catch (const std::exception& e) {
    send_pipe(pipe, PipeCommand::Error, text_frames({e.what()}));
  }
}

}  // namespace

Actor::Actor(zmq::context_t& ctx, std::string name, Body body)
    : name_(std::move(name)), pipe_(ctx, zmq::socket_type::pair) {
  pipe_.set(zmq::sockopt::linger, 0);
  // The object's address makes the endpoint unique while the actor lives, with no global counter.
  const std::string endpoint =
      fmt::format("inproc://actor-{}-{}", name_, static_cast<const void*>(this));
  pipe_.bind(endpoint);
  thread_ = std::thread(run_child, std::ref(ctx), endpoint, std::move(body));
  auto first = recv_pipe(pipe_);
  if (first && first->command == PipeCommand::Ready) return;
  std::string why = "no $READY";
  if (first && first->command == PipeCommand::Error && !first->args.empty())
    why = to_string(first->args[0]);
  thread_.join();
  throw ActorError(fmt::format("{}: {}", name_, why));
}

Actor::~Actor() {
  // The child may have returned already (after $ERROR): never block on a pipe with no peer.
  try {
    send_pipe(pipe_, PipeCommand::Term, {}, zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
  }
  thread_.join();
}

void signal_ready(zmq::socket_ref pipe) { send_pipe(pipe, PipeCommand::Ready); }

}  // namespace zyolo
