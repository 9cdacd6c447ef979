// zyolo-bench: the two measurements of the benchmark harness (bench/run) that the zyolo binary
// cannot make itself. Each prints one JSON object on stdout.
//
//   zyolo-bench direct --transport T --clients N --duration S [--in-flight K]
//     The latency floor: N DEALER clients and one ROUTER echo server, no broker, over inproc, ipc
//     or tcp. Like the fleet's clients, each client keeps K requests in flight (default 1) and
//     checks that each echo is its own; the server is one thread, like the broker. The JSON has the keys of
//     `zyolo run --report` that bench/run reads (throughput_rps, latency_ms, requests), and its
//     percentiles come from the same RecordSink arithmetic as zyolo run's.
//
//   zyolo-bench bare-detector --model M --images DIR --cv-threads C --duration S
//     The detector looping alone: the same Detector class and options a worker builds, and per
//     image what a worker does: decode the encoded bytes, detect, serialise the detections as
//     JSON. Prints images/s over S seconds after a warm-up.
//
// Threads start only through zyolo::Actor, and talk only by messages on their pipes (the
// project's thread rules).
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core/utility.hpp>
#include <optional>
#include <string>
#include <system_error>
#include <vector>
#include <zmq.hpp>

#include "src/wire/actor.hpp"
#include "src/config/config.hpp"
#include "src/yolo/detector.hpp"
#include "src/yolo/images.hpp"
#include "src/yolo/models.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"
#include "src/fleet/report.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

int64_t now_us() {
  return std::chrono::duration_cast<microseconds>(Clock::now().time_since_epoch()).count();
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// --- direct: DEALER clients and a ROUTER echo server, no broker -------------------------------

struct DirectOptions {
  std::string transport = "inproc";
  int clients = 1;
  double duration_s = 2;
  int payload_bytes = zyolo::default_config().client.payload_bytes;  // what fleet clients send
  int in_flight = 1;
};

// The endpoint the echo server binds: ipc in a file of this process's own, tcp on a free port.
std::string bind_endpoint(const std::string& transport) {
  if (transport == "inproc") return "inproc://zyolo-bench-direct";
  if (transport == "ipc")
    return fmt::format("ipc://{}/zyolo-bench-{}.ipc",
                       std::filesystem::temp_directory_path().string(), ::getpid());
  return "tcp://127.0.0.1:*";
}

// The echo server: binds, says READY and then [STATS][endpoint bound], and sends every message
// back to its sender until $TERM.
void echo_server(zmq::context_t& ctx, zmq::socket_ref pipe, const std::string& transport) {
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind(bind_endpoint(transport));
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  zyolo::signal_ready(pipe);
  zyolo::send_pipe(pipe, zyolo::PipeCommand::Stats, zyolo::text_frames({endpoint}));
  for (;;) {
    zmq::pollitem_t items[] = {{pipe.handle(), 0, ZMQ_POLLIN, 0},
                               {router.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, milliseconds(-1));
    if (items[0].revents & ZMQ_POLLIN) break;  // $TERM: nothing else comes on this pipe
    if (!(items[1].revents & ZMQ_POLLIN)) continue;
    auto frames = zyolo::recv_frames(router, zmq::recv_flags::dontwait);
    if (frames) zyolo::send_frames(router, *frames);  // [routing id][seq][payload] back
  }
  std::error_code ignored;  // zmq may have removed the ipc file already
  if (transport == "ipc") std::filesystem::remove(endpoint.substr(std::strlen("ipc://")), ignored);
}

// One client: connects, makes one round trip (so the connection is up), says READY, waits for
// STATS (go), then runs round trips for the duration, K in flight, and answers
// [STATS][JSON][packed ClientRecords]. Then waits for $TERM. The server echoes in order, so the
// answers come back in the order sent: the oldest outstanding request is the one answered.
class DirectClient {
 public:
  DirectClient(zmq::context_t& ctx, zmq::socket_ref pipe, const std::string& endpoint,
               DirectOptions options)
      : pipe_(pipe),
        dealer_(ctx, zmq::socket_type::dealer),
        options_(std::move(options)),
        payload_(static_cast<std::size_t>(options_.payload_bytes), 'x') {
    dealer_.set(zmq::sockopt::linger, 0);
    dealer_.connect(endpoint);
    if (!round_trip(0, Clock::now() + std::chrono::seconds(10)))
      throw std::runtime_error("no echo from " + endpoint + " within 10 s");
  }

  void run() {
    zyolo::signal_ready(pipe_);
    auto go = zyolo::recv_pipe(pipe_);
    if (!go || go->command != zyolo::PipeCommand::Stats) return;  // $TERM before the start
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(options_.duration_s));
    uint32_t seq = 1;
    std::deque<std::pair<uint32_t, Clock::time_point>> outstanding;  // in the order sent
    const auto give_up = end + std::chrono::seconds(10);
    for (;;) {
      while (Clock::now() < end && outstanding.size() < static_cast<std::size_t>(options_.in_flight)) {
        send(seq);
        outstanding.emplace_back(seq++, Clock::now());
      }
      if (outstanding.empty()) break;
      auto reply = next_reply(give_up);
      if (!reply) break;  // $TERM, or no echo in 10 s
      const auto [expected, sent] = outstanding.front();
      outstanding.pop_front();
      if (!echoes(*reply, expected)) ++mismatched_;
      const auto done = Clock::now();
      zyolo::ClientRecord r{};  // as a fleet client records an answered request
      r.end_us = std::chrono::duration_cast<microseconds>(done.time_since_epoch()).count();
      r.seq = expected;
      r.latency_us =
          static_cast<uint32_t>(std::chrono::duration_cast<microseconds>(done - sent).count());
      r.status = 200;
      records_.push_back(r);
    }
    const nlohmann::json totals = {{"elapsed_s", seconds_since(start)},
                                   {"mismatched", mismatched_}};
    zyolo::Frames reply = zyolo::text_frames({totals.dump()});
    reply.push_back(zyolo::pack_records(records_));
    zyolo::send_pipe(pipe_, zyolo::PipeCommand::Stats, std::move(reply));
    while (auto m = zyolo::recv_pipe(pipe_))
      if (m->command == zyolo::PipeCommand::Term) break;
  }

 private:
  void send(uint32_t seq) {
    zyolo::Frames request;
    request.emplace_back(&seq, sizeof seq);
    request.emplace_back(payload_.data(), payload_.size());
    zyolo::send_frames(dealer_, request);
  }

  // The next echo: one already waiting, or the first to come before `deadline`; nothing on a
  // timeout or $TERM.
  std::optional<zyolo::Frames> next_reply(Clock::time_point deadline) {
    if (auto waiting = zyolo::recv_frames(dealer_, zmq::recv_flags::dontwait)) return waiting;
    while (Clock::now() < deadline) {
      zmq::pollitem_t items[] = {{dealer_.handle(), 0, ZMQ_POLLIN, 0},
                                 {pipe_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(
          items, 2,
          std::chrono::duration_cast<milliseconds>(deadline - Clock::now()) + milliseconds(1));
      if (items[1].revents & ZMQ_POLLIN) return std::nullopt;  // $TERM
      if (items[0].revents & ZMQ_POLLIN) return zyolo::recv_frames(dealer_);
    }
    return std::nullopt;
  }

  bool echoes(const zyolo::Frames& reply, uint32_t seq) const {
    return reply.size() == 2 && reply[1].to_string_view() == payload_ && reply[0].size() == sizeof seq &&
           std::memcmp(reply[0].data(), &seq, sizeof seq) == 0;
  }

  // Sends request `seq` and waits for its echo until `deadline`; false on a timeout or $TERM.
  bool round_trip(uint32_t seq, Clock::time_point deadline) {
    send(seq);
    auto reply = next_reply(deadline);
    if (!reply) return false;
    if (!echoes(*reply, seq)) ++mismatched_;
    return true;
  }

  zmq::socket_ref pipe_;
  zmq::socket_t dealer_;
  const DirectOptions options_;  // a copy: actors share nothing but messages
  std::string payload_;
  std::vector<zyolo::ClientRecord> records_;
  long mismatched_ = 0;
};

int run_direct(const DirectOptions& options) {
  zmq::context_t ctx = zyolo::make_context();
  const std::string transport = options.transport;
  zyolo::Actor server(ctx, "echo-server", [transport](zmq::context_t& c, zmq::socket_ref p) {
    echo_server(c, p, transport);
  });
  auto bound = zyolo::recv_pipe(server.pipe());
  if (!bound || bound->args.empty())
    throw std::runtime_error("the echo server did not say its endpoint");
  const std::string endpoint = zyolo::to_string(bound->args[0]);

  std::vector<std::unique_ptr<zyolo::Actor>> clients;
  for (int i = 0; i < options.clients; ++i)
    clients.push_back(
        std::make_unique<zyolo::Actor>(ctx, fmt::format("direct-client-{}", i),
                                       [endpoint, options](zmq::context_t& c, zmq::socket_ref p) {
                                         DirectClient(c, p, endpoint, options).run();
                                       }));
  const int64_t start_us = now_us();
  for (auto& c : clients) zyolo::send_pipe(c->pipe(), zyolo::PipeCommand::Stats);

  // Every client ran for the same duration from (nearly) the same start: the throughput is the
  // sum of each client's rate, and latencies are folded as zyolo run folds its clients'.
  zyolo::RecordSink sink;
  zyolo::Report report;
  double rate = 0;
  long mismatched = 0;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    auto m = zyolo::recv_pipe(clients[i]->pipe());
    if (!m || m->command != zyolo::PipeCommand::Stats || m->args.size() != 2)
      throw std::runtime_error(fmt::format("direct client {} gave no measurement", i));
    const auto totals = nlohmann::json::parse(m->args[0].to_string_view());
    const auto records = zyolo::unpack_records(m->args[1]);
    if (!records) throw std::runtime_error("bad records from a direct client");
    sink.add(static_cast<uint32_t>(i), *records);
    const double elapsed = totals.at("elapsed_s").get<double>();
    rate += elapsed > 0 ? static_cast<double>(records->size()) / elapsed : 0;
    report.elapsed_s = std::max(report.elapsed_s, elapsed);
    mismatched += totals.at("mismatched").get<long>();
  }
  report.sent = sink.count();
  sink.finish(report, start_us, 1000);
  const nlohmann::json out = {
      {"mode", "direct"},
      {"run",
       {{"transport", options.transport},
        {"clients", options.clients},
        {"in_flight", options.in_flight},
        {"elapsed_s", report.elapsed_s}}},
      {"requests", {{"answered", report.answered}, {"mismatched", mismatched}}},
      {"throughput_rps", rate},
      {"latency_ms",
       {{"p50", report.p50_ms},
        {"p90", report.p90_ms},
        {"p99", report.p99_ms},
        {"max", report.max_ms}}}};
  fmt::print("{}\n", out.dump());
  return mismatched == 0 && report.answered > 0 ? 0 : 1;
}

// --- bare-detector: the detector looping alone ------------------------------------------------

struct BareOptions {
  std::string model, images;
  int cv_threads = 1;
  double duration_s = 5;
  int warmup = 2;  // images detected before the clock starts
};

int run_bare_detector(const BareOptions& options) {
  zyolo::Config config = zyolo::default_config();
  config.worker.cv_threads = options.cv_threads;
  const std::vector<zyolo::Image> images = zyolo::load_images(options.images);
  cv::setNumThreads(config.worker.cv_threads);  // as zyolo run does before its workers start
  zyolo::Detector detector(zyolo::detector_options(config, options.model));

  zyolo::StageTimes sum;
  std::vector<double> inference_ms;  // per image, for its median (what zyolo run's report gives)
  std::size_t bytes = 0;
  // What a worker does with one request's image: decode, detect, serialise the answer.
  auto one_image = [&](std::size_t n) {
    const zyolo::Image& image = images[n % images.size()];
    const auto t0 = Clock::now();
    const cv::Mat bgr = zyolo::decode_image(image.bytes.data(), image.bytes.size());
    if (bgr.empty()) throw std::runtime_error(image.name + ": not a decodable image");
    zyolo::StageTimes times;
    times.decode_ms = seconds_since(t0) * 1000;
    bytes += zyolo::detections_json(detector.detect(bgr, &times)).dump().size();
    sum.decode_ms += times.decode_ms;
    sum.pre_ms += times.pre_ms;
    sum.infer_ms += times.infer_ms;
    sum.post_ms += times.post_ms;
    inference_ms.push_back(times.infer_ms);
  };
  for (int i = 0; i < options.warmup; ++i) one_image(static_cast<std::size_t>(i));
  sum = {};
  inference_ms.clear();
  const auto start = Clock::now();
  std::size_t n = 0;
  while (seconds_since(start) < options.duration_s) one_image(n++);
  const double elapsed = seconds_since(start);
  const double k = n ? 1.0 / static_cast<double>(n) : 0;
  const auto middle = inference_ms.begin() + static_cast<std::ptrdiff_t>(inference_ms.size() / 2);
  std::nth_element(inference_ms.begin(), middle, inference_ms.end());
  const nlohmann::json out = {{"mode", "bare-detector"},
                              {"model", options.model},
                              {"cv_threads", options.cv_threads},
                              {"images", n},
                              {"elapsed_s", elapsed},
                              {"images_per_s", elapsed > 0 ? static_cast<double>(n) / elapsed : 0},
                              {"mean_ms",
                               {{"decode", sum.decode_ms * k},
                                {"pre", sum.pre_ms * k},
                                {"inference", sum.infer_ms * k},
                                {"post", sum.post_ms * k}}},
                              {"inference_ms_p50", inference_ms.empty() ? 0.0 : *middle},
                              {"answer_bytes", bytes}};
  fmt::print("{}\n", out.dump());
  return n > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zyolo-bench: the measurements of bench/run that the zyolo binary cannot make"};
  app.require_subcommand(1);

  DirectOptions direct;
  auto* d = app.add_subcommand(
      "direct", "DEALER clients and a ROUTER echo server, no broker: JSON on stdout");
  d->add_option("--transport", direct.transport, "inproc, ipc or tcp")
      ->check(CLI::IsMember({"inproc", "ipc", "tcp"}));
  d->add_option("--clients", direct.clients, "Client threads, one request in flight each")
      ->check(CLI::Range(1, 10000));
  d->add_option("--duration", direct.duration_s, "Seconds of round trips")
      ->check(CLI::PositiveNumber);
  d->add_option("--payload-bytes", direct.payload_bytes, "Bytes echoed per request")
      ->check(CLI::Range(1, 1 << 24));
  d->add_option("--in-flight", direct.in_flight, "Requests each client keeps outstanding")
      ->check(CLI::Range(1, 500));

  BareOptions bare;
  auto* b = app.add_subcommand("bare-detector",
                               "The detector looping alone over a folder's images: JSON on stdout");
  b->add_option("--model", bare.model, "A YOLO model (.onnx, or darknet .cfg/.weights)")
      ->required();
  b->add_option("--images", bare.images, "A folder of .jpg/.png images")->required();
  b->add_option("--cv-threads", bare.cv_threads, "OpenCV threads (worker.cv_threads)")
      ->check(CLI::Range(0, 256));
  b->add_option("--duration", bare.duration_s, "Seconds of detection after the warm-up")
      ->check(CLI::PositiveNumber);
  b->add_option("--warmup", bare.warmup, "Images detected before timing starts")
      ->check(CLI::Range(0, 1000));

  CLI11_PARSE(app, argc, argv);
  try {
    return d->parsed() ? run_direct(direct) : run_bare_detector(bare);
  } catch (const std::exception& e) {
    fmt::print(stderr, "zyolo-bench: {}\n", e.what());
    return 3;
  }
}
