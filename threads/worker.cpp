// The worker: an MDP/0.1 worker (RFC 7) in the shape of the guide's mdwrkapi, as an actor.
// It connects a DEALER to the broker's backend and sends READY; then it serves REQUESTs one at a
// time, heartbeats the broker, and when the broker goes silent for liveness x heartbeat (or says
// DISCONNECT) it closes the socket, waits a back-off that doubles up to a ceiling, and registers
// again on a new socket.
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
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <zmq_addon.hpp>

#include "actor.hpp"
#include "actors.hpp"
#include "detector.hpp"
#include "models.hpp"
#include "protocol.hpp"
#include "sockopts.hpp"

namespace zyolo {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

class Worker {
 public:
  Worker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config, std::string id)
      : ctx_(ctx), pipe_(pipe), config_(config), id_(std::move(id)),
        heartbeat_(config.broker.heartbeat_ms),
        silence_(config.broker.heartbeat_ms * config.broker.liveness),
        backoff_(config.worker.reconnect_initial_ms),
        instance_(std::random_device{}()) {
    if (config.worker.model != "none")  // load first: READY must mean ready to serve
      detector_.emplace(detector_options(config, config.worker.model));
    connect();
  }

  // The poll loop: until $TERM, or until the context is terminated (zmq::error_t ETERM).
  void run() {
    while (!terminated_ && !retire_) {
      if (!socket_) {  // the broker is lost: wait out the back-off, still listening to the pipe
        wait_on_pipe(Clock::now() + backoff_);
        if (terminated_ || retire_) break;  // unregistered: nothing to hand back
        backoff_ = std::min(backoff_ * 2, milliseconds(config_.worker.reconnect_max_ms));
        connect();
        continue;
      }
      zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0},
                                 {socket_->handle(), 0, ZMQ_POLLIN, 0}};
      const auto next = std::min({heartbeat_at_, heard_at_ + silence_, crash_at_});
      zmq::poll(items, 2, std::max(milliseconds(0), until(next)));
      if (items[0].revents & ZMQ_POLLIN) on_pipe();
      if (terminated_ || retire_) break;
      if (items[1].revents & ZMQ_POLLIN) on_broker();
      if (terminated_) break;
      const auto now = Clock::now();
      if (now >= crash_at_) {
        crash();
        break;
      }
      if (socket_ && now >= heard_at_ + silence_) {
        lost_broker();
      } else if (socket_ && now >= heartbeat_at_) {
        send(encode_worker_command(Command::Heartbeat));
        heartbeat_at_ = now + heartbeat_;
      }
    }
    if (crashed_) return;
    if (retire_ && !terminated_) {
      leave(Clock::now() + silence_);
      send_pipe(pipe_, PipeCommand::Done, text_frames({stats().dump()}));
    } else {
      leave(Clock::now() + heartbeat_);
    }
  }

 private:
  static milliseconds until(Clock::time_point t) {
    return std::chrono::duration_cast<milliseconds>(t - Clock::now()) + milliseconds(1);
  }

  // A new DEALER socket, connected, with READY sent.
  void connect() {
    socket_.emplace(ctx_, zmq::socket_type::dealer);
    apply_socket_options(*socket_, config_, Side::Connects);
    socket_->set(zmq::sockopt::routing_id, fmt::format("{}-{:08x}-{}", id_, instance_, ++generation_));
    socket_->connect(config_.backend());
    send(encode_worker_ready(config_.run.service));
    heard_at_ = Clock::now();
    heartbeat_at_ = heard_at_ + heartbeat_;
  }

  void lost_broker() {
    if (!leaving_) ++reconnects_;
    socket_.reset();  // closes it: anything queued for the old broker is gone, as it should be
  }

  void on_pipe() {
    auto m = recv_pipe(pipe_);
    if (!m || m->command == PipeCommand::Term) {
      terminated_ = true;
    } else if (m->command == PipeCommand::Stats) {
      send_pipe(pipe_, PipeCommand::Stats, text_frames({stats().dump()}));
    } else if (m->command == PipeCommand::Crash) {
      crash_at_ = Clock::now() + heartbeat_;  // or sooner: at the next request
    } else if (m->command == PipeCommand::Retire) {
      retire_ = true;
    } else if (m->command == PipeCommand::Freeze && !m->args.empty()) {
      freeze_for_ = milliseconds(std::stol(to_string(m->args[0])));
    }
  }

  nlohmann::json stats() const {
    return {{"id", id_}, {"service", config_.run.service}, {"served", served_},
            {"reconnects", reconnects_}, {"malformed", malformed_}, {"bad_requests", bad_requests_},
            {"errors", errors_}, {"freezes", freezes_}, {"crossed_disconnect", crossed_}};
  }

  // CRASH: the socket closes with linger 0 and no DISCONNECT, so the broker learns of it only by
  // silence. The STATS sent is bookkeeping for the report, not something a crash would say.
  void crash() {
    crashed_ = terminated_ = true;
    if (socket_) socket_->set(zmq::sockopt::linger, 0);  // whatever sockets.linger_ms says
    send_pipe(pipe_, PipeCommand::Stats, text_frames({stats().dump()}));
  }

  // FREEZE: hangs for the time asked, hearing only the pipe: no heartbeats go out and nothing is
  // read from the broker, so the broker expires this worker and re-queues the request it holds.
  void hang() {
    ++freezes_;
    const auto until = Clock::now() + freeze_for_;
    freeze_for_ = milliseconds(0);
    wait_on_pipe(until);
  }

  // Polls only the pipe until `deadline` or $TERM (the back-off between two connections).
  void wait_on_pipe(Clock::time_point deadline) {
    while (!terminated_ && Clock::now() < deadline) {
      zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::max(milliseconds(0), until(deadline)));
      if (items[0].revents & ZMQ_POLLIN) on_pipe();
    }
  }

  void on_broker() {
    auto frames = recv_frames(*socket_, zmq::recv_flags::dontwait);
    if (!frames) return;
    heard_at_ = Clock::now();
    backoff_ = milliseconds(config_.worker.reconnect_initial_ms);
    auto m = decode_from_broker(std::move(*frames));
    if (!m) {
      ++malformed_;
      return;
    }
    switch (m->command) {
      case Command::Request:
        return on_request(m.value());
      case Command::Disconnect:
        return lost_broker();
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
        ++crossed_;
        serve(m.value());
      }
    }
    socket_.reset();
  }

  void on_request(WorkerMessage& m) {
    if (crash_at_ != Clock::time_point::max()) return crash();  // holding the request
    if (freeze_for_ > milliseconds(0)) hang();
    if (terminated_) return;
    serve(m);
  }

  // Answers one request: detections, or the echo.
  void serve(WorkerMessage& m) {
    auto request = decode_app_request(std::move(m.body));
    Frames reply;
    if (!request) {
      ++bad_requests_;
      reply = encode_app_reply("-", 400, error_json(fault_name(request.fault())));
    } else if (detector_) {
      reply = detect(request.value());
    } else {
      if (config_.worker.service_ms > 0)  // simulated work: the thread is busy, as inference is
        std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(config_.worker.service_ms));
      ++served_;
      const std::string json = fmt::format(R"({{"worker":"{}","service":"{}"}})", id_, config_.run.service);
      reply = encode_app_reply(request->id, 200, json, std::move(request->payload));
    }
    send(encode_worker_reply(std::move(m.client), std::move(reply)));
  }

  // Decodes the image and detects: 200 with detections and stage times, 400 when the payload is
  // not an image, 500 when inference fails. The worker goes on serving either way.
  Frames detect(AppRequest& request) {
    using Ms = std::chrono::duration<double, std::milli>;
    StageTimes times;
    const auto t0 = Clock::now();
    cv::Mat image = decode_image(request.payload.data(), request.payload.size());
    times.decode_ms = Ms(Clock::now() - t0).count();
    if (image.empty()) {
      ++bad_requests_;
      return encode_app_reply(request.id, 400, error_json("not a decodable image"));
    }
    try {
      const auto detections = detector_->detect(image, &times);
      ++served_;
      const nlohmann::ordered_json j = {
          {"worker", id_},
          {"service", config_.run.service},
          {"width", image.cols},
          {"height", image.rows},
          {"detections", detections_json(detections)},
          {"times_ms",
           {{"decode", times.decode_ms}, {"pre", times.pre_ms}, {"inference", times.infer_ms},
            {"post", times.post_ms}}}};
      return encode_app_reply(
          request.id, 200, j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    } catch (const cv::Exception& e) {
      ++errors_;
      return encode_app_reply(request.id, 500, error_json(e.what()));
    }
  }

  std::string error_json(std::string_view what) const {
    return nlohmann::json{{"error", what}, {"worker", id_}, {"service", config_.run.service}}.dump();
  }

  // Sends without blocking. A DEALER refuses a message only when it has no peer to queue it for:
  // over inproc that means the broker's socket closed (connecting to an endpoint not yet bound
  // still queues), so the worker reconnects now instead of waiting out the silence.
  void send(Frames frames) {
    if (!send_frames(*socket_, frames, zmq::send_flags::dontwait) && !terminated_) lost_broker();
  }

  zmq::context_t& ctx_;
  zmq::socket_ref pipe_;
  const Config& config_;
  std::string id_;
  milliseconds heartbeat_, silence_, backoff_;
  std::optional<Detector> detector_;  // nothing: the echo worker
  std::optional<zmq::socket_t> socket_;
  Clock::time_point heard_at_, heartbeat_at_;
  bool terminated_ = false, crashed_ = false;
  bool retire_ = false;   // RETIRE asked: leave after the request in hand
  bool leaving_ = false;  // DISCONNECT said: the socket closes on the broker's answer
  long crossed_ = 0;      // requests that crossed its DISCONNECT, served while leaving
  milliseconds freeze_for_{0};  // > 0: the next request hangs this long first
  Clock::time_point crash_at_ = Clock::time_point::max();  // CRASH asked: at the latest then
  unsigned instance_;
  long generation_ = 0;
  long freezes_ = 0;
  long served_ = 0, reconnects_ = 0, malformed_ = 0, bad_requests_ = 0, errors_ = 0;
};

}  // namespace

void worker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config,
            const std::string& id) {
  Worker w(ctx, pipe, config, id);
  signal_ready(pipe);
  w.run();
}

}  // namespace zyolo
