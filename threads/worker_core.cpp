// What both kinds of worker share: see worker_core.hpp.
#include "threads/worker_core.hpp"

#include <fmt/format.h>

#include <thread>

#include "src/yolo/models.hpp"

namespace zyolo {

WorkerCore::WorkerCore(zmq::socket_ref pipe, const Config& config, std::string id)
    : pipe_(pipe), config_(config), id_(std::move(id)) {
  n_.id = id_;
  n_.service = config.run.service;
  if (config.worker.model != "none") {  // load first: connecting must mean ready to serve
    detector_.emplace(detector_options(config, config.worker.model));
    n_.stages.assign(4, Histogram(config.metrics.stage_bounds));  // decode, pre, inference, post
  }
}

WorkerCore::milliseconds WorkerCore::until(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(t - Clock::now()) + milliseconds(1);
}

void WorkerCore::on_pipe() {
  auto m = recv_pipe(pipe_);
  if (!m || m->command == PipeCommand::Term) {
    terminated_ = true;
  } else if (m->command == PipeCommand::Stats) {
    send_pipe(pipe_, PipeCommand::Stats, args_of(stats()));
  } else if (m->command == PipeCommand::Crash) {
    crash_at_ = Clock::now() + milliseconds(config_.broker.heartbeat_ms);  // or sooner: at the next request
  } else if (m->command == PipeCommand::Retire) {
    retire_ = true;
  } else if (m->command == PipeCommand::Freeze) {
    if (auto freeze = decode_args<Freeze>(m.value())) freeze_for_ = freeze->duration;
  }
}

void WorkerCore::wait_on_pipe(Clock::time_point deadline) {
  while (!terminated_ && Clock::now() < deadline) {
    zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, std::max(milliseconds(0), until(deadline)));
    if (items[0].revents & ZMQ_POLLIN) on_pipe();
  }
}

bool WorkerCore::admit_request(zmq::socket_ref socket) {
  if (crash_at_ != Clock::time_point::max()) {  // holding the request
    crash(socket);
    return false;
  }
  if (freeze_for_ > milliseconds(0)) hang();
  return !terminated_;
}

void WorkerCore::crash(zmq::socket_ref socket) {
  crashed_ = terminated_ = true;
  if (socket.handle() != nullptr) socket.set(zmq::sockopt::linger, 0);  // whatever sockets.linger_ms says
  send_pipe(pipe_, PipeCommand::Stats, args_of(stats()));
}

// FREEZE: hangs for the time asked, hearing only the pipe: nothing is read from the socket and
// nothing goes out on it (an MDP worker sends no heartbeats), as a worker stuck in inference.
void WorkerCore::hang() {
  ++n_.freezes;
  const auto deadline = Clock::now() + freeze_for_;
  freeze_for_ = milliseconds(0);
  wait_on_pipe(deadline);
}

WorkerStats WorkerCore::stats() const { return n_; }

void WorkerCore::say_done() { send_pipe(pipe_, PipeCommand::Done, args_of(stats())); }

Frames WorkerCore::answer(Frames body) {
  auto request = decode_app_request(std::move(body));
  if (!request) {
    ++n_.bad_requests;
    return encode_app_reply("-", 400, error_result(fault_name(request.fault())));
  }
  if (detector_) return detect(request.value());
  if (config_.worker.service_ms > 0)  // simulated work: the thread is busy, as inference is
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(config_.worker.service_ms));
  ++n_.served;
  const std::string json = encode_app_result(AppResult::from(id_, config_.run.service));
  return encode_app_reply(request->id, 200, json, std::move(request->payload));
}

// Decodes the image and detects: 200 with detections and stage times, 400 when the payload is
// not an image, 500 when inference fails. The worker goes on serving either way.
Frames WorkerCore::detect(AppRequest& request) {
  using Ms = std::chrono::duration<double, std::milli>;
  StageTimes times;
  const auto t0 = Clock::now();
  cv::Mat image = decode_image(request.payload.data(), request.payload.size());
  times.decode_ms = Ms(Clock::now() - t0).count();
  if (image.empty()) {
    ++n_.bad_requests;
    return encode_app_reply(request.id, 400, error_result("not a decodable image"));
  }
  try {
    const auto detections = detector_->detect(image, &times);
    ++n_.served;
    for (std::size_t i = 0; const double ms : {times.decode_ms, times.pre_ms, times.infer_ms, times.post_ms})
      n_.stages[i++].observe(ms / 1000);
    AppResult result = AppResult::from(id_, config_.run.service);
    result.width = image.cols;
    result.height = image.rows;
    result.detections = detections_json(detections);
    result.times_ms = std::array{times.decode_ms, times.pre_ms, times.infer_ms, times.post_ms};
    return encode_app_reply(request.id, 200, encode_app_result(result));
  } catch (const cv::Exception& e) {
    ++n_.errors;
    return encode_app_reply(request.id, 500, error_result(e.what()));
  }
}

std::string WorkerCore::error_result(std::string_view what) const {
  return encode_app_result(AppResult::failure(std::string(what), id_, config_.run.service));
}

}  // namespace zyolo
