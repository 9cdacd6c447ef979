// The supervisor: see fleet.hpp.
#include "fleet.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <thread>

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

// Waits up to `timeout` for an actor's STATS message (or DONE, a retiring worker's last word,
// which carries the same JSON) and returns its frames.
std::optional<Frames> wait_stats(Actor& actor, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    zmq::pollitem_t item{actor.pipe().handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    if (!(item.revents & ZMQ_POLLIN)) break;
    auto m = recv_pipe(actor.pipe());
    if (m && (m->command == PipeCommand::Stats || m->command == PipeCommand::Done) && !m->args.empty())
      return std::move(m->args);
  }
  return std::nullopt;
}

// Asks an actor for its STATS and waits up to `timeout` for the answer's frames.
std::optional<Frames> ask(Actor& actor, milliseconds timeout) {
  if (!send_pipe(actor.pipe(), PipeCommand::Stats, {}, zmq::send_flags::dontwait))
    return std::nullopt;
  return wait_stats(actor, timeout);
}

// The JSON counters of a STATS message's first frame.
std::optional<nlohmann::json> stats_json(const std::optional<Frames>& frames) {
  if (!frames) return std::nullopt;
  auto j = nlohmann::json::parse((*frames)[0].to_string_view(), nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

// The JSON counters of an actor's STATS answer.
std::optional<nlohmann::json> ask_stats(Actor& actor, milliseconds timeout) {
  return stats_json(ask(actor, timeout));
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

// Resident memory of this process, in MB.
double resident_mb() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

// Adds the counters of a broker that is about to stop to those of the ones before it; gauges
// (workers, idle, queue, services) are the latest broker's.
void add_counters(nlohmann::json& total, const nlohmann::json& latest) {
  for (const auto& [key, value] : latest.items()) {
    const bool gauge = key == "workers" || key == "idle" || key == "queue" || key == "services";
    if (gauge || !total.contains(key)) {
      total[key] = value;
    } else if (value.is_number_integer() && total[key].is_number_integer()) {
      total[key] = total[key].get<long>() + value.get<long>();
    } else if (value.is_object() && total[key].is_object()) {
      add_counters(total[key], value);
    } else {
      total[key] = value;
    }
  }
}

// Where the link listens for nodes when a scenario needs one (the link itself connects to the
// broker's endpoints of the run's transport).
constexpr const char* kLinkClients = "inproc://zyolo-link-clients";
constexpr const char* kLinkWorkers = "inproc://zyolo-link-workers";

struct WorkerSlot {
  std::unique_ptr<Actor> actor;  // null once it crashed or left
  std::string id;
  PoolConfig pool;
  double started_s = 0;
  bool retiring = false;  // RETIRE sent: it leaves once it holds nothing, and says DONE
};

struct ClientSlot {
  std::unique_ptr<Actor> actor;
  std::string id;
  bool done = false, retiring = false;
};

// One step of the scenario: an event, or the second half of one (the new broker after a
// kill-broker with `for`, the new worker after a crash-worker with `for`).
struct Step {
  double t;
  std::size_t event;
  bool second_half;
};

class Supervisor {
 public:
  Supervisor(const Config& config, const FleetOptions& options)
      : config_(config), options_(options),
        scenario_(options.scenario), random_(scenario_ ? scenario_->seed : 1) {
    if (scenario_) {
      for (std::size_t i = 0; i < scenario_->events.size(); ++i)
        steps_.push_back({scenario_->events[i].at_s, i, false});
      event_index_.assign(scenario_->events.size(), -1);
    }
  }

  Report run() {
    report_.clients = options_.clients ? config_.run.clients : 0;
    report_.transport = config_.run.transport;
    report_.time_scale = config_.run.time_scale;
    report_.broker_kind = config_.run.broker;
    if (scenario_) report_.scenario = scenario_->name;
    for (const auto& pool : pools_) {
      const int n = options_.workers ? initial_workers(pool) : 0;
      report_.workers_started += n;
      report_.pools.push_back({pool.service, options_.workers ? pool.model : "(another process)", n});
    }
    report_.autoscale.enabled = config_.autoscale.enabled;
    report_.autoscale.policy = config_.autoscale;
    if (!config_.client.save_detections.empty()) {
      detections_out_.open(config_.client.save_detections);
      if (!detections_out_)
        throw std::runtime_error("--save-detections " + config_.client.save_detections +
                                 ": cannot write");
    }
    start_ = Clock::now();
    start_us_ = now_us();
    start_actors();
    if (options_.on_started) options_.on_started();
    loop();
    stop_actors();
    sink_.finish(report_, start_us_, config_.run.report_interval_ms);
    return report_;
  }

 private:
  double seconds(Clock::time_point t) const { return std::chrono::duration<double>(t - start_).count(); }
  double now_s() const { return seconds(Clock::now()); }

  void start_actors() {
    prepare_image_codecs();  // before workers decode concurrently for the first time
    if (scenario_ && scenario_->uses_link()) {
      const LinkEndpoints ends{kLinkClients, kLinkWorkers, config_.frontend(), config_.backend()};
      const int idle_ms = 2 * std::max(config_.broker.heartbeat_ms * config_.broker.liveness,
                                       config_.client.timeout_ms) + 1000;
      const uint64_t seed = scenario_->seed;
      link_ = std::make_unique<Actor>(ctx_, "link", [ends, idle_ms, seed](zmq::context_t& ctx, zmq::socket_ref p) {
        link(ctx, p, ends, idle_ms, seed);
      });
    }
    if (options_.broker && config_.curve.enabled()) {  // the doorman first: see threads/zap.cpp
      const std::vector<std::string> allowed = config_.curve.allowed;
      zap_ = std::make_unique<Actor>(ctx_, "zap", [allowed](zmq::context_t& ctx, zmq::socket_ref p) {
        zap_handler(ctx, p, allowed);
      });
    }
    if (options_.broker) start_broker();
    std::map<std::string, int> sizes;
    for (const auto& pool : options_.workers ? pools_ : std::vector<PoolConfig>{}) {
      sizes[pool.service] = initial_workers(pool);
      for (int k = 0; k < initial_workers(pool); ++k) start_worker(pool);
    }
    if (config_.autoscale.enabled && options_.workers) {
      const Config c = config_;
      controller_ = std::make_unique<Actor>(ctx_, "controller", [c, sizes](zmq::context_t& ctx, zmq::socket_ref p) {
        controller(ctx, p, c, sizes);
      });
    }
    const long per = config_.run.requests / config_.run.clients,
               extra = config_.run.requests % config_.run.clients;
    if (!options_.clients) return;
    for (int i = 0; i < config_.run.clients; ++i) start_client(per + (i < extra ? 1 : 0), config_.run.duration_s);
  }

  // The workers a pool starts with: its own count, within the controller's bounds if it has one.
  int initial_workers(const PoolConfig& pool) const {
    if (!config_.autoscale.enabled) return pool.workers;
    return std::clamp(pool.workers, config_.autoscale.min_workers, config_.autoscale.max_workers);
  }

  // The configuration an actor of `pool` sees: its service, its model, and the endpoints it
  // connects to (the link's, when there is one).
  Config for_pool(const PoolConfig& pool) const {
    Config c = config_;
    c.run.service = pool.service;
    c.worker.model = pool.model;
    if (link_) {
      c.run.transport = "inproc";
      c.endpoints.inproc_frontend = kLinkClients;
      c.endpoints.inproc_backend = kLinkWorkers;
    }
    return c;
  }

  bool proxy_mode() const { return config_.run.broker == "proxy"; }
  const char* broker_name() const { return proxy_mode() ? "proxy" : "broker"; }

  // Starts a broker on the run's endpoints: the MDP broker, or the shared queue's proxy
  // (--broker proxy). After a kill, the old one's endpoints may take a moment to be released
  // (tcp): a failed bind is tried again for up to 5 s.
  void start_broker() {
    const Config c = config_;
    const bool queue = proxy_mode();
    const Actor::Body body = [c, queue](zmq::context_t& ctx, zmq::socket_ref p) {
      queue ? proxy(ctx, p, c) : broker(ctx, p, c);
    };
    for (int attempt = 0;; ++attempt) {
      try {
        broker_ = std::make_unique<Actor>(ctx_, broker_name(), body);
        return;
      } catch (const ActorError&) {
        if (attempt >= 50) throw;
        std::this_thread::sleep_for(milliseconds(100));  // back-off between bind attempts
      }
    }
  }

  // Starts a worker of `pool` (a REP worker with --broker proxy). With `wait`, returns once it
  // has registered (a scenario's new worker is there when the event says so); without, at once:
  // the $READY comes to the loop later, so a model loading does not hold up the supervisor (the
  // controller's workers).
  WorkerSlot& start_worker(const PoolConfig& pool, bool wait = true) {
    const Config wc = for_pool(pool);
    std::string id = fmt::format("w{}", workers_.size());
    const bool rep = proxy_mode();
    auto body = [wc, id, rep](zmq::context_t& ctx, zmq::socket_ref p) {
      rep ? rep_worker(ctx, p, wc, id) : worker(ctx, p, wc, id);
    };
    auto actor = wait ? std::make_unique<Actor>(ctx_, "worker-" + id, body)
                      : std::make_unique<Actor>(ctx_, "worker-" + id, body, Actor::NoWait{});
    workers_.push_back({std::move(actor), id, pool, now_s()});
    return workers_.back();
  }

  void start_client(long requests, double duration_s) {
    const std::size_t i = clients_.size();
    Config cc = for_pool(pools_[i % pools_.size()]);
    cc.run.duration_s = duration_s;
    std::string id = fmt::format("c{}", i);
    auto actor = std::make_unique<Actor>(ctx_, "client-" + id, [cc, id, requests](zmq::context_t& ctx, zmq::socket_ref p) {
      client(ctx, p, cc, id, requests);
    });
    clients_.push_back({std::move(actor), id});
  }

  // Poll items for the pipes of the clients not done yet; returns their indexes in clients_.
  std::vector<std::size_t> client_poll_items(std::vector<zmq::pollitem_t>& items) {
    std::vector<std::size_t> index;
    for (std::size_t i = 0; i < clients_.size(); ++i) {
      if (clients_[i].done) continue;
      items.push_back({clients_[i].actor->pipe().handle(), 0, ZMQ_POLLIN, 0});
      index.push_back(i);
    }
    return index;
  }

  // Clients still issuing requests (neither done nor retiring).
  std::size_t active_clients() const {
    return static_cast<std::size_t>(std::count_if(clients_.begin(), clients_.end(),
                                                  [](const ClientSlot& c) { return !c.done && !c.retiring; }));
  }

  std::size_t running_clients() const {
    return static_cast<std::size_t>(std::count_if(clients_.begin(), clients_.end(),
                                                  [](const ClientSlot& c) { return !c.done; }));
  }

  // Polls the client pipes (and the signal descriptor) until every client is done, playing the
  // scenario's steps on time.
  void loop() {
    const milliseconds interval(config_.run.report_interval_ms), refresh(config_.run.progress_ms);
    auto row_at = start_ + interval;
    auto progress_at = start_ + refresh;
    while ((running_clients() > 0 || !options_.clients) && !report_.interrupted) {
      std::vector<zmq::pollitem_t> items;
      const auto index = client_poll_items(items);
      const std::size_t first_worker = items.size();
      std::vector<std::size_t> worker_index;
      for (std::size_t i = 0; i < workers_.size(); ++i) {
        if (!workers_[i].actor) continue;
        items.push_back({workers_[i].actor->pipe().handle(), 0, ZMQ_POLLIN, 0});
        worker_index.push_back(i);
      }
      if (controller_) items.push_back({controller_->pipe().handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({nullptr, signals_.fd(), ZMQ_POLLIN, 0});
      auto wake = options_.progress ? std::min(row_at, progress_at) : row_at;
      if (next_step_ < steps_.size()) wake = std::min(wake, step_time(steps_[next_step_]));
      zmq::poll(items, std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(
                                                     wake - Clock::now()) + milliseconds(1)));
      for (std::size_t k = 0; k < index.size(); ++k)
        if (items[k].revents & ZMQ_POLLIN) on_client(index[k]);
      for (std::size_t k = 0; k < worker_index.size(); ++k)
        if (items[first_worker + k].revents & ZMQ_POLLIN) on_worker(worker_index[k]);
      if (controller_ && (items[items.size() - 2].revents & ZMQ_POLLIN)) on_controller();
      if (items.back().revents & ZMQ_POLLIN) report_.interrupted = true;
      while (!report_.interrupted && next_step_ < steps_.size() &&
             Clock::now() >= step_time(steps_[next_step_]))
        play(steps_[next_step_++]);
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
    report_.elapsed_s = now_s();
    add_row(Clock::now());
  }

  Clock::time_point step_time(const Step& s) const {
    return start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s.t));
  }

  // Handles one message from client i; marks it done when it just finished (DONE, or the STATS
  // an interrupted client answers with, or $ERROR).
  void on_client(std::size_t i) {
    auto& slot = clients_[i];
    auto m = recv_pipe(slot.actor->pipe());
    if (!m || slot.done) return;
    const bool has_arg = !m->args.empty();
    switch (m->command) {
      case PipeCommand::Records:
        if (auto records = has_arg ? unpack_records(m->args[0]) : std::nullopt)
          sink_.add(static_cast<uint32_t>(i), *records);
        return;
      case PipeCommand::Detections:
        if (has_arg) detections_out_ << m->args[0].to_string_view();
        return;
      case PipeCommand::Done:
      case PipeCommand::Stats:
        if (has_arg) add_totals(nlohmann::json::parse(m->args[0].to_string_view(), nullptr, false));
        break;
      case PipeCommand::Error:  // it will send nothing more; its request in flight is lost
        report_.actor_errors.push_back(
            fmt::format("{}: {}", slot.actor->name(), has_arg ? to_string(m->args[0]) : ""));
        break;
      default:
        return;
    }
    slot.done = true;
    if (slot.retiring) slot.actor.reset();  // it left mid-run: its thread is not needed any more
  }

  // Handles one message from worker i: its late $READY or $ERROR (started without waiting), or
  // its DONE when it retired.
  void on_worker(std::size_t i) {
    auto& w = workers_[i];
    auto m = recv_pipe(w.actor->pipe());
    if (!m) return;
    const std::string arg = m->args.empty() ? std::string() : to_string(m->args[0]);
    if (m->command == PipeCommand::Error) {
      report_.actor_errors.push_back(fmt::format("{}: {}", w.actor->name(), arg));
      record_worker(w, std::nullopt);
      w.actor.reset();
    } else if (m->command == PipeCommand::Done) {
      auto j = nlohmann::json::parse(arg, nullptr, false);
      record_worker(w, j.is_discarded() ? std::nullopt : std::optional(j));
      w.actor.reset();
    }
  }

  // --- the controller ----------------------------------------------------------------------------

  // One evaluation of the controller: kept for the timeline; a change is carried out.
  void on_controller() {
    auto m = recv_pipe(controller_->pipe());
    if (!m || m->command != PipeCommand::Scale || m->args.empty()) return;
    auto j = nlohmann::json::parse(m->args[0].to_string_view(), nullptr, false);
    if (j.is_discarded()) return;
    const std::string service = j.value("service", "");
    const auto pool = std::find_if(pools_.begin(), pools_.end(), [&](const auto& p) { return p.service == service; });
    if (pool == pools_.end()) return;
    scale_[service] = j;
    const int to = j.value("desired", 0), from = j.value("previous", to);
    if (to == from) return;
    report_.autoscale.decisions.push_back({now_s(), service, from, to, j.value("demand", 0.0),
                                           j.value("clients", 0L), j.value("registered", 0L)});
    resize(*pool, static_cast<std::size_t>(to));
    announce("autoscale", fmt::format("{}: {} -> {} workers (demand {:.2f})", service, from, to,
                                      j.value("demand", 0.0)), now_s());
  }

  // Starts workers of `pool` (without waiting for them) or retires its newest, until `count`
  // are running and not retiring.
  void resize(const PoolConfig& pool, std::size_t count) {
    std::size_t running = running_workers(pool.service);
    for (; running < count; ++running) {
      start_worker(pool, false);
      ++report_.autoscale.started;
    }
    for (auto it = workers_.rbegin(); it != workers_.rend() && running > count; ++it) {
      if (!it->actor || it->retiring || it->pool.service != pool.service) continue;
      retire_worker(*it);
      ++report_.autoscale.retired;
      --running;
    }
  }

  // Asks a worker to leave gracefully; its DONE comes to on_worker.
  void retire_worker(WorkerSlot& w) {
    send_pipe(w.actor->pipe(), PipeCommand::Retire);
    w.retiring = true;
  }

  void add_totals(const nlohmann::json& t) {
    if (!t.is_object()) return;
    report_.sent += t.value("sent", 0L);
    report_.duplicates_dropped += t.value("duplicates_dropped", 0L);
    report_.mismatched += t.value("mismatched", 0L);
    report_.wrong_service += t.value("wrong_service", 0L);
    report_.answered_by_service[t.value("service", "")] += t.value("answered", 0L);
  }

  // --- the scenario ----------------------------------------------------------------------------

  // Plays one step and records it in the report's events.
  void play(const Step& step) {
    const ScenarioEvent& e = scenario_->events[step.event];
    const double t = now_s();
    if (step.second_half) {
      auto& fault = report_.events[static_cast<std::size_t>(event_index_[step.event])];
      fault.end_t = t;
      if (e.action == "kill-broker") {
        start_broker();
        fault.detail += fmt::format("; a new {} started at {:.2f} s", broker_name(), t);
      } else {  // crash-worker: a new worker takes the crashed one's place
        const auto& w = start_worker(last_crashed_pool_);
        fault.detail += fmt::format("; {} replaced it at {:.2f} s", w.id, t);
      }
      announce(fault.kind + " (end)", fault.detail, t);
      return;
    }
    FaultEvent fault{t, e.action, "", -1, -1, -1};
    bool second_half = false;
    if (e.action == "kill-broker") {
      if (!broker_) {
        fault.detail = "the broker was already down";
      } else {
        stop_broker();
        fault.detail = fmt::format("{} killed", broker_name());
        second_half = e.for_s > 0;
      }
    } else if (e.action == "restart-broker") {
      if (broker_) {
        fault.detail = "the broker was already up";
      } else {
        start_broker();
        fault.detail = fmt::format("a new {}", broker_name());
        fault.end_t = t;
        for (auto& earlier : report_.events)  // the kill it ends
          if (earlier.kind == "kill-broker" && earlier.end_t < 0) earlier.end_t = t;
      }
    } else if (e.action == "crash-worker" || e.action == "freeze-worker") {
      WorkerSlot* w = choose_worker(e.worker);
      if (!w) {
        fault.detail = e.worker.empty() ? "no worker running" : e.worker + " is not running";
      } else if (e.action == "crash-worker") {
        fault.detail = w->id;
        last_crashed_pool_ = w->pool;
        stop_worker(*w, PipeCommand::Crash);
        second_half = e.for_s > 0;
      } else {
        send_pipe(w->actor->pipe(), PipeCommand::Freeze,
                  text_frames({std::to_string(std::lround(e.for_s * 1000))}));
        fault.detail = fmt::format("{} for {:.2f} s", w->id, e.for_s);
        fault.end_t = t + e.for_s;
      }
    } else if (e.action == "partition" || e.action == "drop" || e.action == "delay") {
      const double value = e.action == "drop" ? e.fraction : e.action == "delay" ? e.delay_ms : 0;
      send_pipe(link_->pipe(), PipeCommand::Rule,
                text_frames({e.nodes, e.action, fmt::format("{}", value),
                             std::to_string(std::lround(e.for_s * 1000))}));
      fault.detail = e.action == "partition" ? fmt::format("{} for {:.2f} s", e.nodes, e.for_s)
                     : e.action == "drop"    ? fmt::format("{:.0f}% of {} for {:.2f} s", 100 * e.fraction, e.nodes, e.for_s)
                                             : fmt::format("{} by {:.0f} ms for {:.2f} s", e.nodes, e.delay_ms, e.for_s);
      fault.end_t = t + e.for_s;
    } else if (e.action == "add-workers") {
      // Chaos stops adding at its max_workers (by default twice the workers the run started with).
      const auto& chaos = scenario_->chaos;
      const std::size_t most = !chaos.enabled ? SIZE_MAX
                               : chaos.max_workers > 0 ? static_cast<std::size_t>(chaos.max_workers)
                                                       : 2 * static_cast<std::size_t>(report_.workers_started);
      std::vector<std::string> ids;
      for (int k = 0; k < e.count && running_workers() < most; ++k)
        ids.push_back(start_worker(pools_.front()).id);
      fault.detail = ids.empty() ? fmt::format("already {} workers: none added", running_workers())
                                 : fmt::format("{}", fmt::join(ids, ", "));
    } else if (e.action == "remove-workers") {
      std::vector<std::string> ids;
      for (int k = 0; k < e.count && running_workers() > 1; ++k) {
        auto it = std::find_if(workers_.rbegin(), workers_.rend(),
                               [](auto& w) { return w.actor && !w.retiring; });
        ids.push_back(it->id);
        retire_worker(*it);
      }
      fault.detail = ids.empty() ? "only one worker left: none removed" : fmt::format("{}", fmt::join(ids, ", "));
    } else if (e.action == "set-clients") {
      fault.detail = set_clients(static_cast<std::size_t>(e.count), t);
    } else if (e.action == "mark") {
      fault.detail = "a new phase of the report begins";
    }
    event_index_[step.event] = static_cast<int>(report_.events.size());
    report_.events.push_back(fault);
    announce(fault.kind, fault.detail, t);
    if (second_half) {  // keep the steps in time order
      const Step next{step.t + e.for_s, step.event, true};
      auto at = std::upper_bound(steps_.begin() + static_cast<long>(next_step_), steps_.end(), next,
                                 [](const Step& a, const Step& b) { return a.t < b.t; });
      steps_.insert(at, next);
    }
  }

  void announce(const std::string& kind, const std::string& detail, double t) {
    if (!options_.announce) return;
    if (options_.progress) fmt::print(stderr, "\r\033[K");
    fmt::print(stderr, "  {:6.2f} s  {}: {}\n", t, kind, detail);
  }

  // Workers running and not retiring (of `service`, or of every pool).
  std::size_t running_workers(const std::string& service = {}) const {
    return static_cast<std::size_t>(std::count_if(workers_.begin(), workers_.end(), [&](const WorkerSlot& w) {
      return w.actor && !w.retiring && (service.empty() || w.pool.service == service);
    }));
  }

  // The running worker `id`, or with no id one drawn from the scenario's seed; null if none.
  WorkerSlot* choose_worker(const std::string& id) {
    std::vector<WorkerSlot*> running;
    for (auto& w : workers_)
      if (w.actor && !w.retiring && (id.empty() || w.id == id)) running.push_back(&w);
    if (running.empty()) return nullptr;
    return running[std::uniform_int_distribution<std::size_t>(0, running.size() - 1)(random_)];
  }

  // Starts clients or retires the newest ones until `count` are running.
  std::string set_clients(std::size_t count, double t) {
    std::size_t running = active_clients();
    const double remaining = config_.run.duration_s - t;
    if (count > running && remaining > 0.1) {
      const std::size_t first = clients_.size();
      for (std::size_t k = running; k < count; ++k) start_client(0, remaining);
      return fmt::format("{} -> {} clients (c{}..c{} started)", running, count, first, clients_.size() - 1);
    }
    std::vector<std::string> ids;
    for (auto it = clients_.rbegin(); it != clients_.rend() && running > count; ++it) {
      if (it->done || it->retiring) continue;
      send_pipe(it->actor->pipe(), PipeCommand::Retire);
      it->retiring = true;
      ids.push_back(it->id);
      --running;
    }
    return ids.empty() ? fmt::format("{} clients: no change", running)
                       : fmt::format("{} -> {} clients ({} retire)", running + ids.size(), count, fmt::join(ids, ", "));
  }

  // Stops a worker with $TERM (it leaves gracefully) or CRASH (it does not), keeping its
  // counters. A retiring worker's counters come in its DONE.
  void stop_worker(WorkerSlot& w, PipeCommand how) {
    std::optional<nlohmann::json> s;
    if (how == PipeCommand::Crash) {
      if (send_pipe(w.actor->pipe(), PipeCommand::Crash, {}, zmq::send_flags::dontwait))
        s = stats_json(wait_stats(*w.actor, milliseconds(10'000)));  // its last word
    } else if (w.retiring) {
      s = stats_json(wait_stats(*w.actor, milliseconds(10'000)));
    } else {
      s = ask_stats(*w.actor, milliseconds(10'000));
    }
    record_worker(w, s, how == PipeCommand::Crash);
    w.actor.reset();
  }

  // A worker's line in the report, as it stops.
  void record_worker(const WorkerSlot& w, const std::optional<nlohmann::json>& stats, bool crashed = false) {
    WorkerShare share{w.id, w.pool.service, 0, w.started_s, now_s()};
    share.crashed = crashed;
    share.retired = w.retiring;
    if (stats) share.served = stats->value("served", 0L);
    report_.workers.push_back(share);
  }

  void stop_broker() {
    if (auto s = broker_stats(milliseconds(2000))) add_counters(broker_totals_, *s);
    broker_.reset();
    ++broker_incarnations_;
  }

  // One timeline row, with the broker's view of workers and queue.
  void add_row(Clock::time_point now) {
    TimelineRow row;
    row.t = seconds(now);
    if (auto s = broker_ ? broker_stats(milliseconds(1000)) : std::nullopt) {
      row.workers = s->value("workers", 0L);
      row.queue = s->value("queue", 0L);
    }
    row.clients = static_cast<long>(active_clients());
    row.rss_mb = resident_mb();
    if (controller_) {
      row.demand = 0;
      row.desired = 0;
      for (const auto& [service, j] : scale_) {
        row.demand += j.value("demand", 0.0);
        row.desired += j.value("desired", 0L);
      }
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
    const double t = seconds(now);
    const long answered = sink_.answered();
    const std::string done =
        config_.run.duration_s > 0
            ? fmt::format("{:6.1f} of {:.0f} s", t, config_.run.duration_s)
            : fmt::format("{:6.1f} s  {} of {} requests ended", t, sink_.count(), config_.run.requests);
    fmt::print(stderr, "\r\033[K  {}  answered {}  errors {}  {:.0f}/s{}", done, answered,
               sink_.count() - answered, t > 0 ? answered / t : 0.0, broker_ ? "" : "  (no broker)");
  }

  // Collects the final counters and stops every actor: clients, workers, broker, link.
  void stop_actors() {
    collect_unfinished_clients();
    clients_.clear();
    if (controller_) {  // first: it must not resize the fleet while it stops
      if (auto s = ask_stats(*controller_, milliseconds(2000))) report_.autoscale.controller = *s;
      controller_.reset();
    }
    for (auto& w : workers_)
      if (w.actor) stop_worker(w, PipeCommand::Term);
    std::sort(report_.workers.begin(), report_.workers.end(), [](const auto& a, const auto& b) {
      return std::stoi(a.id.substr(1)) < std::stoi(b.id.substr(1));
    });
    workers_.clear();
    if (broker_) stop_broker();
    report_.broker = broker_totals_;
    if (broker_incarnations_ > 1) report_.broker["incarnations"] = broker_incarnations_;
    if (zap_) {  // last: it vetted the broker's peers until the broker closed
      if (auto s = ask_stats(*zap_, milliseconds(2000))) report_.broker["curve"] = *s;
      zap_.reset();
    }
    if (link_) {
      if (auto s = ask_stats(*link_, milliseconds(2000))) report_.link = *s;
      link_.reset();
    }
  }

  // After an interruption: asks every client still running for STATS (it flushes its records
  // first) and handles what comes back like any client message, for up to 2 s.
  void collect_unfinished_clients() {
    for (auto& c : clients_)
      if (!c.done) (void)send_pipe(c.actor->pipe(), PipeCommand::Stats, {}, zmq::send_flags::dontwait);
    const auto deadline = Clock::now() + milliseconds(2000);
    while (running_clients() > 0 && Clock::now() < deadline) {
      std::vector<zmq::pollitem_t> items;
      const auto index = client_poll_items(items);
      zmq::poll(items, milliseconds(100));
      for (std::size_t k = 0; k < index.size(); ++k)
        if (items[k].revents & ZMQ_POLLIN) on_client(index[k]);
    }
  }

  const Config& config_;
  const std::vector<PoolConfig> pools_ = config_.pools_or_default();
  FleetOptions options_;
  const Scenario* scenario_;
  std::vector<Step> steps_;
  std::size_t next_step_ = 0;
  std::vector<int> event_index_;  // scenario event -> its entry in report_.events
  std::mt19937_64 random_;        // the scenario's seed: which worker a fault picks
  PoolConfig last_crashed_pool_;
  SignalFd signals_;  // before the context: ZeroMQ's own threads inherit the mask too
  zmq::context_t ctx_ = make_context();
  std::unique_ptr<Actor> link_, zap_, broker_, controller_;
  std::map<std::string, nlohmann::json> scale_;  // the controller's last evaluation per service
  std::vector<WorkerSlot> workers_;
  std::vector<ClientSlot> clients_;
  nlohmann::json broker_totals_ = nlohmann::json::object();
  int broker_incarnations_ = 0;
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
