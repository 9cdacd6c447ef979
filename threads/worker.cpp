// The worker: an MDP/0.1 worker (RFC 7) in the shape of the guide's mdwrkapi, as an actor.
// It connects a DEALER to the broker's backend and sends READY; then it serves REQUESTs one at a
// time (in the order they came: with broker.worker_credit > 1 several may wait), heartbeats the
// broker, and when the broker goes silent for liveness x heartbeat (or says
// DISCONNECT) it closes the socket, waits a back-off that doubles up to a ceiling, and registers
// again on a new socket.
//
// Given a list of backends (endpoints.*_backend "A,B": a broker pair), the worker is registered
// with one at a time, starting with the first, and moves to the next in the list when the one it
// is with goes silent for liveness x heartbeat: at once, without the back-off, unless that brings
// it round to the first again (a whole round heard from no broker), which the back-off paces.
// A DISCONNECT keeps it where it is (that broker is alive and only does not know it). With one
// endpoint it always reconnects to that one, as before. (Why this and not one socket per broker:
// README, Reliability.)
//
// Leaving is a handshake, so that no request is lost or re-queued when a worker goes (RETIRE from
// the controller or a scenario, or $TERM at the end of a run): the worker says DISCONNECT and
// keeps reading. A REQUEST the broker sent before it read the DISCONNECT crossed it on the wire;
// the worker serves it. The broker answers DISCONNECT once the worker holds nothing (broker.cpp),
// and on that answer the worker closes its socket. If no answer comes (the broker is gone) it
// leaves anyway after liveness x heartbeat (RETIRE) or one heartbeat ($TERM). After RETIRE it
// says [DONE][STATS JSON] on the pipe and returns.
//
// Each socket gets a routing id of its own, "<id>-<random>-<generation>": readable in the broker's
// counters, unique across processes, and new on each reconnection (a worker that registers again
// is a new worker to the broker; its old identity may still be on its books until it expires).
//
// Scenario faults arrive on the pipe: CRASH makes the worker exit inside its next request (or
// after one heartbeat interval if none comes) without a word to the broker, as a process killed
// during inference would; FREEZE makes it hang inside its next request, deaf to the broker.
// The work of a request and the pipe commands are WorkerCore's (threads/worker_core.hpp), which
// the shared queue's REP worker (threads/rep_worker.cpp) shares.

#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "src/wire/actor.hpp"
#include "src/wire/monitor.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/sockopts.hpp"
#include "threads/actors.hpp"
#include "threads/worker_core.hpp"

namespace zyolo {
namespace {

class Worker : public WorkerCore {
 public:
  Worker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config, std::string id)
      : WorkerCore(pipe, config, std::move(id)),  // loads the model: READY means ready to serve
        ctx_(ctx),
        heartbeat_(config.broker.heartbeat_ms),
        silence_(config.broker.silence_ms()),
        backoff_(config.worker.reconnect_initial_ms),
        instance_(std::random_device{}()) {
    connect();
  }

  // The poll loop: until $TERM, or until the context is terminated (zmq::error_t ETERM).
  void run() {
    while (!terminated_ && !retire_) {
      if (!socket_) {  // the broker is lost: wait out the back-off, still listening to the pipe
        if (!register_now_) {
          wait_on_pipe(Clock::now() + backoff_);
          if (terminated_ || retire_) break;  // unregistered: nothing to hand back
          backoff_ = std::min(backoff_ * 2, milliseconds(config_.worker.reconnect_max_ms));
        }
        register_now_ = false;
        connect();
        continue;
      }
      zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0},
                                 {socket_->handle(), 0, ZMQ_POLLIN, 0},
                                 {watch_ ? watch_->socket().handle() : nullptr, 0, ZMQ_POLLIN, 0}};
      const auto next = std::min({heartbeat_at_, heard_at_ + silence_, crash_at_});
      zmq::poll(items, watch_ ? 3 : 2, std::max(milliseconds(0), until(next)));
      if (items[0].revents & ZMQ_POLLIN) on_pipe();
      if (terminated_ || retire_) break;
      if (items[1].revents & ZMQ_POLLIN) on_broker();
      if (terminated_) break;
      if (watch_ && (items[2].revents & ZMQ_POLLIN) && watch_->reconnected()) {
        // The connection is back: a heartbeat now asks whoever is there whether it knows this
        // worker. The same broker takes it as one; a new one answers DISCONNECT, and the worker
        // registers again at once, not at its next heartbeat.
        send(encode_worker_command(Command::Heartbeat));
        heartbeat_at_ = Clock::now() + heartbeat_;
      }
      const auto now = Clock::now();
      if (now >= crash_at_) {
        crash(socket_ ? zmq::socket_ref(*socket_) : zmq::socket_ref());
        break;
      }
      if (socket_ && now >= heard_at_ + silence_) {
        lost_broker();
        next_backend();
      } else if (socket_ && now >= heartbeat_at_) {
        send(encode_worker_command(Command::Heartbeat));
        heartbeat_at_ = now + heartbeat_;
      }
    }
    if (crashed_) return;
    if (retire_ && !terminated_) {
      leave(Clock::now() + silence_);
      say_done();
    } else {
      leave(Clock::now() + heartbeat_);
    }
  }

 private:
  // A new DEALER socket, connected, with READY sent.
  // Over tcp and ipc the socket is watched (src/wire/monitor.hpp), so that a broker that comes
  // back on the same endpoint is noticed as soon as the connection is.
  void connect() {
    watch_.reset();  // before the socket it watches
    socket_.emplace(ctx_, zmq::socket_type::dealer);
    apply_socket_options(*socket_, config_, Side::Connects);
    const std::string routing_id = make_routing_id(id_, instance_, ++generation_);
    socket_->set(zmq::sockopt::routing_id, routing_id);
    watch_connection(watch_, ctx_, *socket_, backends_[current_], routing_id);
    socket_->connect(backends_[current_]);
    send(encode_worker_ready(config_.run.service));
    heard_at_ = connected_at_ = Clock::now();
    heartbeat_at_ = heard_at_ + heartbeat_;
  }

  void lost_broker() {
    if (!leaving_) ++n_.reconnects;
    n_.registered = false;
    watch_.reset();
    socket_.reset();  // closes it: anything queued for the old broker is gone, as it should be
  }

  // The broker went silent: the next connection goes to the next backend of the list, at once
  // unless the list has come round to its first again after a whole round heard from no broker
  // (a worker that served the last one of the list goes back to the first at once: a failover).
  void next_backend() {
    if (backends_.size() < 2) return;
    current_ = (current_ + 1) % backends_.size();
    register_now_ = current_ != 0 || heard_in_round_;
    if (current_ == 0) heard_in_round_ = false;
  }

  // The broker said DISCONNECT: it is there and does not know this worker (it restarted), so the
  // worker registers again at once, without the back-off it waits after a silent broker; unless
  // it was told so right after registering, which a back-off then paces.
  void told_to_leave() {
    register_now_ = Clock::now() - connected_at_ > milliseconds(config_.worker.reconnect_initial_ms);
    lost_broker();
  }

  // Reads every message waiting, in order: with broker.worker_credit above 1 the broker may have
  // sent several requests, and each is served before the next heartbeat goes out, so that the
  // heartbeat follows the replies to everything that reached the worker (see broker.cpp). The
  // pipe is looked at between messages: a steady flow must not keep CRASH, FREEZE, RETIRE or
  // $TERM waiting.
  void on_broker() {
    while (socket_ && !terminated_ && !retire_) {
      auto frames = recv_frames(*socket_, zmq::recv_flags::dontwait);
      if (!frames) return;
      on_broker_message(std::move(*frames));
      if (pipe_.get(zmq::sockopt::events) & ZMQ_POLLIN) on_pipe();
    }
  }

  void on_broker_message(Frames frames) {
    heard_at_ = Clock::now();
    heard_in_round_ = true;
    backoff_ = milliseconds(config_.worker.reconnect_initial_ms);
    auto m = decode_from_broker(std::move(frames));
    if (!m) {
      ++n_.malformed;
      return;
    }
    if (m->command != Command::Disconnect) n_.registered = true;  // a broker knows it
    switch (m->command) {
      case Command::Request:
        return on_request(m.value());
      case Command::Disconnect:
        return told_to_leave();
      default:
        return;  // HEARTBEAT: hearing it was the point
    }
  }

  // The leaving handshake (see the top): DISCONNECT, then serve what crossed it until the
  // broker's DISCONNECT, `deadline`, or $TERM (when leaving on RETIRE).
  void leave(Clock::time_point deadline) {
    if (!socket_) return;
    leaving_ = true;
    send(encode_worker_command(Command::Disconnect));
    while (socket_ && Clock::now() < deadline) {
      zmq::pollitem_t items[] = {{socket_->handle(), 0, ZMQ_POLLIN, 0},
                                 {pipe_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, terminated_ ? 1 : 2, std::max(milliseconds(0), until(deadline)));
      if (items[1].revents & ZMQ_POLLIN) {
        on_pipe();
        if (terminated_) break;
      }
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      auto frames = recv_frames(*socket_, zmq::recv_flags::dontwait);
      auto m = frames ? decode_from_broker(std::move(*frames)) : Decoded<WorkerMessage>(Fault::Empty);
      if (!m) continue;
      if (m->command == Command::Disconnect) break;  // the broker let it go
      if (m->command == Command::Request) {
        ++n_.crossed_disconnect;
        serve(m.value());
      }
    }
    watch_.reset();
    socket_.reset();
  }

  void on_request(WorkerMessage& m) {
    if (admit_request(socket_ ? zmq::socket_ref(*socket_) : zmq::socket_ref())) serve(m);
  }

  // Answers one request: detections, or the echo.
  void serve(WorkerMessage& m) {
    send(encode_worker_reply(std::move(m.client), answer(std::move(m.body))));
  }

  // Sends without blocking. A DEALER refuses a message only when it has no peer to queue it for:
  // over inproc that means the broker's socket closed (connecting to an endpoint not yet bound
  // still queues), so the worker reconnects now instead of waiting out the silence.
  void send(Frames frames) {
    if (!send_frames(*socket_, frames, zmq::send_flags::dontwait) && !terminated_) lost_broker();
  }

  zmq::context_t& ctx_;
  const std::vector<std::string> backends_ = config_.backends();  // one, or a broker pair's
  std::size_t current_ = 0;  // the one the socket is connected to
  milliseconds heartbeat_, silence_, backoff_;
  std::optional<zmq::socket_t> socket_;
  std::optional<ConnectionWatch> watch_;  // tcp and ipc: tells when the connection is back
  Clock::time_point connected_at_;
  bool register_now_ = false;    // the broker asked to register again: no back-off
  bool heard_in_round_ = false;  // a broker was heard since the list last came round to its first
  Clock::time_point heard_at_, heartbeat_at_;
  bool leaving_ = false;  // DISCONNECT said: the socket closes on the broker's answer
  unsigned instance_;
  long generation_ = 0;
};

}  // namespace

void worker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config,
            const std::string& id) {
  Worker w(ctx, pipe, config, id);
  signal_ready(pipe);
  w.run();
}

}  // namespace zyolo
