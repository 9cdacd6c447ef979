// The REP worker: the plain request/reply worker of the guide's shared queue (--broker proxy), as
// an actor. It connects a REP socket to the proxy's DEALER backend and answers whatever comes,
// one request at a time: the REP socket takes the envelope (the client's routing id and the empty
// delimiter) off each request and puts it back on the reply, so the worker sees
// [MDPC01][service][body...] and answers [MDPC01][its service][reply...], the shape of an MDP
// broker's reply. The work is WorkerCore's (threads/worker_core.hpp), shared with the MDP worker.
//
// No READY, no heartbeats, no DISCONNECT: that is the point of the comparison. The proxy does not
// know this worker exists; its DEALER hands requests round-robin to every REP connected, busy or
// not, and a request queued for a worker that goes away is gone (its client's retry brings it
// back). What the worker cannot know it does not guess, with one exception: a REP socket hears
// nothing when the proxy goes away, and a connection to an inproc endpoint that closed is never
// made again (over tcp libzmq reconnects by itself). So a worker that has heard nothing for
// broker.heartbeat_ms x broker.liveness opens a new socket, connected again (counted as
// reconnects). A request that reaches the old socket in the instant it closes is lost with it.
//
// Pipe commands (WorkerCore): CRASH exits inside the next request (at the latest after one
// heartbeat interval) without answering it; FREEZE hangs inside the next request, while the
// proxy keeps queueing requests for it; RETIRE closes the socket (requests queued for it are
// lost, as above) and says [DONE][STATS JSON]. STATS JSON: id, service, served, bad_requests,
// errors, freezes, reconnects, malformed.
#include <chrono>
#include <optional>

#include "src/wire/actor.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/sockopts.hpp"
#include "threads/actors.hpp"
#include "threads/worker_core.hpp"

namespace zyolo {
namespace {

class RepWorker : public WorkerCore {
 public:
  RepWorker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config, std::string id)
      : WorkerCore(pipe, config, std::move(id)),  // loads the model: connecting is being routed to
        ctx_(ctx),
        silence_(config.broker.silence_ms()) {
    connect();
  }

  // The poll loop: until $TERM or RETIRE, or until the context is terminated (ETERM).
  void run() {
    while (!terminated_ && !retire_) {
      zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0},
                                 {socket_->handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, std::max(milliseconds(0), until(std::min(heard_at_ + silence_, crash_at_))));
      if (items[0].revents & ZMQ_POLLIN) on_pipe();
      if (terminated_ || retire_) break;
      if (items[1].revents & ZMQ_POLLIN) on_request();
      if (terminated_) break;
      const auto now = Clock::now();
      if (now >= crash_at_) {
        crash(*socket_);
        break;
      }
      if (now >= heard_at_ + silence_) {
        ++n_.reconnects;
        connect();
      }
    }
    if (crashed_) return;
    socket_.reset();
    if (retire_ && !terminated_) say_done();
  }

 private:
  // A new REP socket (closing the old one), connected to the proxy's backend (to each of a list:
  // REP takes requests from every peer it has).
  void connect() {
    socket_.emplace(ctx_, zmq::socket_type::rep);  // closes the old one first
    apply_socket_options(*socket_, config_, Side::Connects);
    for (const auto& endpoint : config_.backends()) socket_->connect(endpoint);
    n_.registered = true;  // no handshake: connected is all a REP worker can be
    heard_at_ = Clock::now();
  }

  // Serves one request. A REP socket must answer before it can receive again, so a message that
  // does not decode is answered too: 400, in the MDP client's shape.
  void on_request() {
    auto frames = recv_frames(*socket_, zmq::recv_flags::dontwait);
    if (!frames) return;
    heard_at_ = Clock::now();
    auto m = decode_rep_request(std::move(*frames));
    if (!m) {
      ++n_.malformed;
      return reply(encode_app_reply(
          "-", 400, encode_app_result(AppResult::failure(std::string(fault_name(m.fault())), id_))));
    }
    if (!admit_request(*socket_)) return;
    reply(answer(std::move(m->body)));
  }

  // Sends the reply at once. A REP socket that cannot send now (its peer is full) would refuse to
  // receive again, so it is replaced by a new one. Answering counts as hearing from the proxy:
  // a long request (or a FREEZE) is not silence.
  void reply(Frames body) {
    auto frames = encode_rep_reply(config_.run.service, std::move(body));
    if (!send_frames(*socket_, frames, zmq::send_flags::dontwait)) {
      ++n_.reconnects;
      connect();
    }
    heard_at_ = Clock::now();
  }

  zmq::context_t& ctx_;
  milliseconds silence_;
  std::optional<zmq::socket_t> socket_;
  Clock::time_point heard_at_;
};

}  // namespace

void rep_worker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config,
                const std::string& id) {
  RepWorker w(ctx, pipe, config, id);
  signal_ready(pipe);
  w.run();
}

}  // namespace zyolo
