// The proxy: the ZeroMQ guide's shared queue (its rrbroker and msgqueue), as an actor, for
// `zyolo run --broker proxy`. A ROUTER frontend for the clients and a DEALER backend for plain
// REP workers (threads/rep_worker.cpp), bound on the endpoints the MDP broker would bind, and
// libzmq's own zmq_proxy_steerable between them. It reads no frame: a request goes to the next
// worker connected, round-robin, busy or not; it knows no services, no worker's health and no
// request's fate, and it queues nothing of its own beyond the sockets' high-water marks.
//
// Two threads. zmq_proxy_steerable holds its thread until its control socket says TERMINATE, and
// libzmq aborts the process on a control command it does not know, so the supervisor's pipe
// ($TERM, STATS) cannot be the control socket. The actor's thread (`proxy` below) therefore
// starts the forwarding thread as an Actor of its own and steers it through that Actor's pipe,
// which the forwarding thread hands to zmq_proxy_steerable as its control socket:
//
//   supervisor --$TERM--> proxy thread --"TERMINATE"-->  forwarding thread: zmq_proxy_steerable
//              --STATS--> proxy thread --"STATISTICS"--> (frontend, backend, control = its pipe)
//              <-[STATS][JSON][""]--    <-- 8 counters --
//
// Each thread keeps to its own sockets: the forwarding thread creates, binds, uses and closes the
// frontend, the backend and its end of the pipe; the proxy thread its pipes' other ends. After
// $READY and one message with its thread's CPU clock, the forwarding thread's pipe carries only
// TERMINATE and STATISTICS one way and the counters the other, and the proxy thread always says
// TERMINATE before the Actor's $TERM (which the proxy never reads: it has stopped by then).
//
// STATS JSON: requests (messages the frontend forwarded), replies (messages the backend
// forwarded), frontend{} and backend{} (messages_in, bytes_in, messages_out, bytes_out), cpu_us
// (the forwarding thread's CPU time). The frame of queue waits after the JSON is empty: the
// proxy has no queue of its own to measure.
#include <pthread.h>

#include <chrono>
#include <ctime>
#include <optional>

#include "src/wire/actor.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/sockopts.hpp"
#include "src/wire/stats.hpp"
#include "threads/actors.hpp"

namespace zyolo {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kStatisticsTimeout{1000};  // a bound for a broken forwarder, not pacing

// The forwarding thread's body: binds, says $READY and its CPU clock, and forwards until its
// pipe (the control socket) says TERMINATE.
void forward(zmq::context_t& ctx, zmq::socket_ref control, const Config& config) {
  zmq::socket_t frontend(ctx, zmq::socket_type::router), backend(ctx, zmq::socket_type::dealer);
  for (auto* s : {&frontend, &backend}) apply_socket_options(*s, config, Side::Binds);
  // A retrying client keeps its routing id. Not router_mandatory: a reply for a client that has
  // gone is dropped by the ROUTER, where mandatory would make zmq_proxy_steerable fail.
  frontend.set(zmq::sockopt::router_handover, true);
  frontend.bind(config.frontend());
  backend.bind(config.backend());
  const std::string frontend_endpoint = frontend.get(zmq::sockopt::last_endpoint);
  const std::string backend_endpoint = backend.get(zmq::sockopt::last_endpoint);
  signal_ready(control);
  clockid_t cpu_clock{};
  pthread_getcpuclockid(pthread_self(), &cpu_clock);
  send_pipe(control, PipeCommand::Stats, args_of(CpuClock{static_cast<long>(cpu_clock)}));
  zmq::proxy_steerable(frontend, backend, zmq::socket_ref(), control);
  // Unbinds at once (closing alone is asynchronous), so a restarted proxy can bind again.
  frontend.unbind(frontend_endpoint);
  backend.unbind(backend_endpoint);
}

class Proxy {
 public:
  Proxy(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config)
      : pipe_(pipe),
        forwarder_(ctx, "proxy-forward", [&config](zmq::context_t& c, zmq::socket_ref control) {
          forward(c, control, config);
        }) {
    auto m = recv_pipe(forwarder_.pipe());  // its first word after $READY: its CPU clock
    if (m && m->command == PipeCommand::Stats)
      if (auto clock = decode_args<CpuClock>(m.value())) cpu_clock_ = static_cast<clockid_t>(clock->clock);
  }

  // TERMINATE first: the Actor's destructor then sends $TERM, which must never reach a running
  // zmq_proxy_steerable.
  ~Proxy() {
    try {
      command(ProxyCommand::Terminate);
    } catch (const zmq::error_t&) {
    }
  }

  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Until $TERM, or until the context is terminated (zmq::error_t ETERM).
  void run() {
    while (!terminated_) {
      zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0},
                                 {forwarder_.pipe().handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2);
      if (items[1].revents & ZMQ_POLLIN) on_forwarder();
      if (items[0].revents & ZMQ_POLLIN) on_pipe();
    }
  }

 private:
  void on_pipe() {
    auto m = recv_pipe(pipe_);
    if (!m || m->command == PipeCommand::Term) {
      terminated_ = true;
    } else if (m->command == PipeCommand::Stats) {
      send_pipe(pipe_, PipeCommand::Stats, args_of(stats()));  // no queue waits: it has no queue
    }
  }

  // Something the forwarding thread said unasked: $ERROR when zmq_proxy_steerable failed (the
  // actor fails with it), or counters that came after kStatisticsTimeout (dropped).
  void on_forwarder() {
    auto frames = recv_frames(forwarder_.pipe(), zmq::recv_flags::dontwait);
    if (!frames) return;
    auto m = decode_pipe(std::move(*frames));
    if (m && m->command == PipeCommand::Error) {
      auto error = decode_args<ErrorText>(m.value());
      throw std::runtime_error("proxy: " + (error ? error->text : std::string()));
    }
  }

  void command(ProxyCommand c) {
    Frames frames = encode_proxy_command(c);
    (void)send_frames(forwarder_.pipe(), frames, zmq::send_flags::dontwait);
  }

  // The forwarding thread's counters (libzmq's STATISTICS), and its CPU time.
  BrokerStats stats() {
    BrokerStats s;
    s.proxy.emplace();
    if (cpu_clock_) {
      timespec ts{};
      if (clock_gettime(*cpu_clock_, &ts) == 0)
        s.cpu_us = static_cast<long>(ts.tv_sec) * 1'000'000L + ts.tv_nsec / 1000;
    }
    command(ProxyCommand::Statistics);
    zmq::pollitem_t item{forwarder_.pipe().handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, kStatisticsTimeout);
    if (!(item.revents & ZMQ_POLLIN)) return s;
    auto frames = recv_frames(forwarder_.pipe(), zmq::recv_flags::dontwait);
    if (!frames) return s;
    auto statistics = decode_proxy_statistics(*frames);
    if (!statistics) return s;
    s.requests = static_cast<long>(statistics->frontend.messages_in);
    s.replies = static_cast<long>(statistics->backend.messages_in);
    *s.proxy = {statistics->frontend, statistics->backend};
    return s;
  }

  zmq::socket_ref pipe_;
  Actor forwarder_;
  std::optional<clockid_t> cpu_clock_;  // the forwarding thread's CPU clock
  bool terminated_ = false;
};

}  // namespace

void proxy(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config) {
  Proxy p(ctx, pipe, config);
  signal_ready(pipe);
  p.run();
}

}  // namespace zyolo
