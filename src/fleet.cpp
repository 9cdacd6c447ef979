// The supervisor: see fleet.hpp.
#include "fleet.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <optional>

#include "actor.hpp"
#include "actors.hpp"
#include "detector.hpp"
#include "protocol.hpp"

namespace zyolo {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The signals that stop a run.
const sigset_t& stop_signals() {
  static const sigset_t set = [] {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    return s;
  }();
  return set;
}

// SIGINT and SIGTERM as a file descriptor the supervisor polls beside its pipes, so a signal is
// one more event of the loop rather than a handler writing to a global flag. Threads started
// while the signals are blocked inherit the mask, so only this descriptor ever sees them.
class SignalFd {
 public:
  SignalFd() {
    pthread_sigmask(SIG_BLOCK, &stop_signals(), &old_);
    fd_ = signalfd(-1, &stop_signals(), SFD_NONBLOCK | SFD_CLOEXEC);
  }
  ~SignalFd() {
    if (fd_ >= 0) close(fd_);
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  int fd() const { return fd_; }

 private:
  sigset_t old_{};
  int fd_ = -1;
};

// Asks an actor for its STATS and waits up to `timeout` for the answer's frames.
std::optional<Frames> ask(Actor& actor, milliseconds timeout) {
  if (!send_pipe(actor.pipe(), PipeCommand::Stats, {}, zmq::send_flags::dontwait))
    return std::nullopt;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    zmq::pollitem_t item{actor.pipe().handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    if (!(item.revents & ZMQ_POLLIN)) break;
    auto m = recv_pipe(actor.pipe());
    if (m && m->command == PipeCommand::Stats && !m->args.empty()) return std::move(m->args);
  }
  return std::nullopt;
}

// The JSON counters of an actor's STATS answer.
std::optional<nlohmann::json> ask_stats(Actor& actor, milliseconds timeout) {
  auto frames = ask(actor, timeout);
  if (!frames) return std::nullopt;
  auto j = nlohmann::json::parse((*frames)[0].to_string_view(), nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

class Supervisor {
 public:
  Supervisor(const Config& config, const FleetOptions& options)
      : config_(config), options_(options) {}

  Report run() {
    report_.clients = config_.run.clients;
    report_.transport = config_.run.transport;
    for (const auto& pool : pools_) {
      report_.workers_started += pool.workers;
      report_.pools.push_back({pool.service, pool.model, pool.workers});
    }
    if (!config_.client.save_detections.empty()) {
      detections_out_.open(config_.client.save_detections);
      if (!detections_out_)
        throw std::runtime_error("--save-detections " + config_.client.save_detections +
                                 ": cannot write");
    }
    start_ = Clock::now();
    start_us_ = now_us();
    start_actors();
    loop();
    stop_actors();
    sink_.finish(report_, start_us_, config_.run.report_interval_ms);
    return report_;
  }

 private:
  void start_actors() {
    const Config& c = config_;
    prepare_image_codecs();  // before workers decode concurrently for the first time
    broker_ = std::make_unique<Actor>(ctx_, "broker", [c](zmq::context_t& ctx, zmq::socket_ref p) {
      broker(ctx, p, c);
    });
    int index = 0;
    for (const auto& pool : pools_) {
      const Config wc = for_pool(pool);
      for (int k = 0; k < pool.workers; ++k) {
        std::string id = fmt::format("w{}", index++);
        workers_.push_back(std::make_unique<Actor>(
            ctx_, "worker-" + id,
            [wc, id](zmq::context_t& ctx, zmq::socket_ref p) { worker(ctx, p, wc, id); }));
      }
    }
    const long per = c.run.requests / c.run.clients, extra = c.run.requests % c.run.clients;
    for (int i = 0; i < c.run.clients; ++i) {
      std::string id = fmt::format("c{}", i);
      const long n = per + (i < extra ? 1 : 0);
      const Config cc = for_pool(pools_[static_cast<std::size_t>(i) % pools_.size()]);
      clients_.push_back(std::make_unique<Actor>(
          ctx_, "client-" + id,
          [cc, id, n](zmq::context_t& ctx, zmq::socket_ref p) { client(ctx, p, cc, id, n); }));
    }
    client_done_.assign(clients_.size(), false);
  }

  // The configuration an actor of `pool` sees: its service and its model.
  Config for_pool(const PoolConfig& pool) const {
    Config c = config_;
    c.run.service = pool.service;
    c.worker.model = pool.model;
    return c;
  }

  // Polls the client pipes (and the signal descriptor) until every client is done.
  void loop() {
    const milliseconds interval(config_.run.report_interval_ms), refresh(config_.run.progress_ms);
    auto row_at = start_ + interval;
    auto progress_at = start_ + refresh;
    std::size_t done = 0;
    while (done < clients_.size() && !report_.interrupted) {
      std::vector<zmq::pollitem_t> items;
      for (auto& c : clients_) items.push_back({c->pipe().handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({nullptr, signals_.fd(), ZMQ_POLLIN, 0});
      const auto wake = options_.progress ? std::min(row_at, progress_at) : row_at;
      zmq::poll(items, std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(
                                                     wake - Clock::now()) + milliseconds(1)));
      for (std::size_t i = 0; i < clients_.size(); ++i)
        if (items[i].revents & ZMQ_POLLIN) done += on_client(i);
      if (items.back().revents & ZMQ_POLLIN) report_.interrupted = true;
      const auto now = Clock::now();
      if (now >= row_at) {
        add_row(now);
        row_at += interval;
      }
      if (options_.progress && now >= progress_at) {
        draw_progress(now);
        progress_at = now + refresh;
      }
    }
    if (options_.progress) fmt::print(stderr, "\r\033[K");
    report_.elapsed_s = std::chrono::duration<double>(Clock::now() - start_).count();
    add_row(Clock::now());
  }

  // Handles one message from client i; returns 1 when that client just finished (DONE, or
  // the STATS an interrupted client answers with, or $ERROR).
  int on_client(std::size_t i) {
    auto m = recv_pipe(clients_[i]->pipe());
    if (!m || client_done_[i]) return 0;
    const bool has_arg = !m->args.empty();
    switch (m->command) {
      case PipeCommand::Records:
        if (auto records = has_arg ? unpack_records(m->args[0]) : std::nullopt)
          sink_.add(static_cast<uint32_t>(i), *records);
        return 0;
      case PipeCommand::Detections:
        if (has_arg) detections_out_ << m->args[0].to_string_view();
        return 0;
      case PipeCommand::Done:
      case PipeCommand::Stats:
        if (has_arg) add_totals(nlohmann::json::parse(m->args[0].to_string_view(), nullptr, false));
        break;
      case PipeCommand::Error:  // it will send nothing more; its request in flight is lost
        report_.actor_errors.push_back(
            fmt::format("{}: {}", clients_[i]->name(), has_arg ? to_string(m->args[0]) : ""));
        break;
      default:
        return 0;
    }
    client_done_[i] = true;
    return 1;
  }

  void add_totals(const nlohmann::json& t) {
    if (!t.is_object()) return;
    report_.sent += t.value("sent", 0L);
    report_.duplicates_dropped += t.value("duplicates_dropped", 0L);
    report_.mismatched += t.value("mismatched", 0L);
    report_.wrong_service += t.value("wrong_service", 0L);
    report_.answered_by_service[t.value("service", "")] += t.value("answered", 0L);
  }

  // One timeline row, with the broker's view of workers and queue.
  void add_row(Clock::time_point now) {
    TimelineRow row;
    row.t = std::chrono::duration<double>(now - start_).count();
    if (auto s = broker_stats(milliseconds(1000))) {
      row.workers = s->value("workers", 0L);
      row.queue = s->value("queue", 0L);
    }
    report_.timeline.push_back(row);
  }

  // The broker's counters; the queue waits that come with them go to the record sink.
  std::optional<nlohmann::json> broker_stats(milliseconds timeout) {
    auto frames = ask(*broker_, timeout);
    if (!frames || frames->size() < 2) return std::nullopt;
    sink_.add_queue_waits((*frames)[1]);
    auto j = nlohmann::json::parse((*frames)[0].to_string_view(), nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }

  void draw_progress(Clock::time_point now) {
    const double t = std::chrono::duration<double>(now - start_).count();
    const long answered = sink_.answered();
    const std::string done =
        config_.run.duration_s > 0
            ? fmt::format("{:6.1f} of {:.0f} s", t, config_.run.duration_s)
            : fmt::format("{:6.1f} s  {} of {} requests ended", t, sink_.count(), config_.run.requests);
    fmt::print(stderr, "\r\033[K  {}  answered {}  errors {}  {:.0f}/s", done, answered,
               sink_.count() - answered, t > 0 ? answered / t : 0.0);
  }

  // Collects the final counters and stops every actor: clients, workers, broker.
  void stop_actors() {
    collect_unfinished_clients();
    clients_.clear();
    for (auto& w : workers_) {
      WorkerShare share{w->name(), "", 0};
      if (auto s = ask_stats(*w, milliseconds(10'000))) {
        share.id = s->value("id", w->name());
        share.service = s->value("service", "");
        share.served = s->value("served", 0L);
      }
      report_.workers.push_back(share);
    }
    workers_.clear();
    if (auto s = broker_stats(milliseconds(2000))) report_.broker = *s;
    broker_.reset();
  }

  // After an interruption: asks every client still running for STATS (it flushes its records
  // first) and handles what comes back like any client message, for up to 2 s.
  void collect_unfinished_clients() {
    std::size_t waiting = 0;
    for (std::size_t i = 0; i < clients_.size(); ++i)
      if (!client_done_[i] &&
          send_pipe(clients_[i]->pipe(), PipeCommand::Stats, {}, zmq::send_flags::dontwait))
        ++waiting;
    const auto deadline = Clock::now() + milliseconds(2000);
    while (waiting > 0 && Clock::now() < deadline) {
      std::vector<zmq::pollitem_t> items;
      for (auto& c : clients_) items.push_back({c->pipe().handle(), 0, ZMQ_POLLIN, 0});
      zmq::poll(items, milliseconds(100));
      for (std::size_t i = 0; i < clients_.size(); ++i)
        if (items[i].revents & ZMQ_POLLIN) waiting -= on_client(i);
    }
  }

  const Config& config_;
  const std::vector<PoolConfig> pools_ = config_.pools_or_default();
  FleetOptions options_;
  SignalFd signals_;  // before the context: ZeroMQ's own threads inherit the mask too
  zmq::context_t ctx_ = make_context();
  std::unique_ptr<Actor> broker_;
  std::vector<std::unique_ptr<Actor>> workers_, clients_;
  std::vector<bool> client_done_;
  RecordSink sink_;
  Report report_;
  std::ofstream detections_out_;  // --save-detections: only this thread writes it
  Clock::time_point start_;
  int64_t start_us_ = 0;
};

}  // namespace

void block_stop_signals() { pthread_sigmask(SIG_BLOCK, &stop_signals(), nullptr); }

Report run_fleet(const Config& config, const FleetOptions& options) {
  Supervisor s(config, options);
  return s.run();
}

}  // namespace zyolo
