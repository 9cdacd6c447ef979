// The client: synchronous request/reply with the guide's Lazy Pirate retries, as an actor.
// One request is in flight at a time. When no reply comes within the timeout, the client closes
// its DEALER, opens a new one (same routing id, so the broker hands the identity over) and sends
// the same request again, until the request's deadline. The request id makes this safe: a reply
// whose id is not the one in flight is a late answer to an earlier attempt, dropped and counted.
// RETIRE (a scenario lowering the client count) ends the client after the request in flight.
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "src/wire/actor.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/sockopts.hpp"
#include "src/wire/stats.hpp"
#include "src/yolo/images.hpp"
#include "threads/actors.hpp"

namespace zyolo {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr milliseconds kFlushEvery{100};  // how often finished requests travel to the supervisor

class Client {
 public:
  Client(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config, std::string id,
         long requests)
      : ctx_(ctx), pipe_(pipe), config_(config), id_(std::move(id)), requests_(requests) {
    // A routing id unique to this client across processes and hosts, kept over reconnects.
    std::random_device rd;
    routing_id_ = make_routing_id(id_, rd());
    if (!config.client.images.empty())
      images_ = load_images(config.client.images);
    else if (yolo_)
      images_ = synthesize_images(3, static_cast<unsigned>(std::hash<std::string>{}(id_)));
    connect();
  }

  void run() {
    const auto start = Clock::now();
    const bool timed = config_.run.duration_s > 0;
    const auto end = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(config_.run.duration_s));
    flush_at_ = start + kFlushEvery;
    while (!terminated_ && !retiring_ && (timed ? Clock::now() < end : sent_ < requests_))
      one_request();
    if (terminated_) return;
    flush();
    send_pipe(pipe_, PipeCommand::Done, args_of(totals()));
    while (!terminated_) on_pipe();  // stay until the supervisor says $TERM
  }

 private:
  void connect() {
    socket_.emplace(ctx_, zmq::socket_type::dealer);
    apply_socket_options(*socket_, config_, Side::Connects);
    socket_->set(zmq::sockopt::routing_id, routing_id_);
    socket_->connect(config_.frontend());
  }

  // Sends one request and waits for its answer, resending on timeout, until its deadline.
  void one_request() {
    const std::string rid = fmt::format("{}-{}", id_, sent_);
    const Image* image = images_.empty() ? nullptr : &images_[sent_ % images_.size()];
    ++sent_;
    std::string echo;  // without images the payload carries the id, so an echo proves the
    if (!image) {      // reply belongs to this request
      echo = rid;
      echo.resize(std::max<std::size_t>(rid.size(), config_.client.payload_bytes), '.');
    }
    const std::string_view payload = image ? std::string_view(image->bytes) : echo;
    const auto first = Clock::now();
    const auto deadline = first + milliseconds(config_.client.deadline_ms);
    uint16_t retries = 0;
    send_request(rid, payload);
    auto timeout_at = first + milliseconds(config_.client.timeout_ms);
    while (!terminated_) {
      const auto wake = std::min({timeout_at, deadline, flush_at_});
      zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0},
                                 {socket_->handle(), 0, ZMQ_POLLIN, 0}};
      const auto wait = std::chrono::duration_cast<milliseconds>(wake - Clock::now());
      zmq::poll(items, 2, std::max(milliseconds(0), wait + milliseconds(1)));
      if (items[0].revents & ZMQ_POLLIN) on_pipe();
      if (items[1].revents & ZMQ_POLLIN) {
        if (auto reply = take_reply(rid, payload))
          return finish(first, reply->status, retries, &reply.value(), image);
      }
      const auto now = Clock::now();
      if (now >= flush_at_) flush();
      if (now >= deadline) return finish(first, 504, retries, nullptr, image);
      if (now >= timeout_at) {  // Lazy Pirate: a new socket, the same request
        ++retries;
        ++reconnects_;
        connect();
        send_request(rid, payload);
        timeout_at = now + milliseconds(config_.client.timeout_ms);
      }
    }
  }

  void send_request(const std::string& rid, std::string_view payload) {
    auto frames = encode_client_request(
        config_.run.service,
        encode_app_request(rid, "", zmq::message_t(payload.data(), payload.size())));
    (void)send_frames(*socket_, frames, zmq::send_flags::dontwait);
  }

  // Reads one reply; returns it if it answers request `rid`, nothing otherwise.
  std::optional<AppReply> take_reply(const std::string& rid, std::string_view payload) {
    auto frames = recv_frames(*socket_, zmq::recv_flags::dontwait);
    if (!frames) return std::nullopt;
    auto m = decode_client_reply(std::move(*frames));
    if (!m) {
      ++malformed_;
      return std::nullopt;
    }
    const bool other_service = m->service != config_.run.service;
    auto reply = decode_app_reply(std::move(m->body));
    if (!reply) {
      ++malformed_;
      return std::nullopt;
    }
    if (reply->id != rid) {  // an answer to an attempt we gave up on: never delivered twice
      ++late_;
      return std::nullopt;
    }
    if (reply->status == 200 && !yolo_ && reply->payload.to_string_view() != payload)
      ++mismatched_;
    if (other_service) ++wrong_service_;
    return std::move(reply.value());
  }

  // Records how request number sent_-1 ended; for YOLO answers, its stage times and detections.
  void finish(Clock::time_point first, int status, uint16_t retries, const AppReply* reply,
              const Image* image) {
    const auto now = Clock::now();
    ClientRecord r{std::chrono::duration_cast<microseconds>(now.time_since_epoch()).count(),
                   static_cast<uint32_t>(sent_ - 1),
                   static_cast<uint32_t>(std::chrono::duration_cast<microseconds>(now - first).count()),
                   static_cast<uint16_t>(status), retries, {0, 0, 0, 0}};
    if (reply && status == 200 && yolo_) {
      if (auto result = decode_app_result(reply->json)) {
        if (result->service != config_.run.service) ++wrong_service_;
        if (result->times_ms)
          for (int i = 0; i < 4; ++i)
            r.stage_us[i] = static_cast<uint32_t>((*result->times_ms)[i] * 1000.0);
        if (save_) save(*reply, result.value(), image);
      }
    }
    if (status == 200) ++answered_;
    records_.push_back(r);
    if (now >= flush_at_) flush();
  }

  // One line of --save-detections: the request, the image, and what the worker found in it.
  void save(const AppReply& reply, const AppResult& result, const Image* image) {
    detections_.lines += nlohmann::json{
        {"id", reply.id},
        {"image", image ? image->name : ""},
        {"service", config_.run.service},
        {"worker", result.worker},
        {"worker_service", result.service},
        {"detections", result.detections.value_or(nlohmann::ordered_json::array())}}
                             .dump() + "\n";
  }

  void flush() {
    if (!records_.empty()) send_pipe(pipe_, PipeCommand::Records, args_of(records_));
    records_.clear();
    if (!detections_.lines.empty()) send_pipe(pipe_, PipeCommand::Detections, args_of(detections_));
    detections_.lines.clear();
    flush_at_ = Clock::now() + kFlushEvery;
  }

  // $TERM ends the client; STATS (asked when a run is interrupted) flushes, then answers;
  // RETIRE lets the request in flight end, then the client says DONE.
  void on_pipe() {
    auto m = recv_pipe(pipe_);
    if (!m || m->command == PipeCommand::Term) {
      terminated_ = true;
    } else if (m->command == PipeCommand::Stats) {
      flush();
      send_pipe(pipe_, PipeCommand::Stats, args_of(totals()));
    } else if (m->command == PipeCommand::Retire) {
      retiring_ = true;
    }
  }

  ClientTotals totals() const {
    return {id_,         config_.run.service, sent_,   answered_,  late_, mismatched_,
            wrong_service_, malformed_,       reconnects_};
  }

  zmq::context_t& ctx_;
  zmq::socket_ref pipe_;
  const Config& config_;
  std::string id_, routing_id_;
  long requests_;
  const bool yolo_ = config_.worker.model != "none";
  const bool save_ = !config_.client.save_detections.empty();
  std::vector<Image> images_;  // empty: a synthetic payload that carries the request id
  std::optional<zmq::socket_t> socket_;
  ClientRecords records_;
  DetectionLines detections_;  // JSON lines waiting for the next flush
  Clock::time_point flush_at_;
  bool terminated_ = false, retiring_ = false;
  long sent_ = 0, answered_ = 0, late_ = 0, mismatched_ = 0, malformed_ = 0, reconnects_ = 0;
  long wrong_service_ = 0;
};

}  // namespace

void client(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config, const std::string& id,
            long requests) {
  Client c(ctx, pipe, config, id, requests);
  signal_ready(pipe);
  c.run();
}

}  // namespace zyolo
