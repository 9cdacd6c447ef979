// The supervisor: see supervisor.hpp.
//
// What it polls, and why a wake-up costs the same at 8 clients or 512. Clients report on one
// socket, not on their pipes: the supervisor binds one PULL (kReports, inproc, in its own thread)
// before any client starts, and each client connects a PUSH of its own (in its own thread) and
// sends there, tagged with its index, its RECORDS and DETECTIONS batches, then DONE (or, asked
// STATS after an interruption, its records and then STATS). So the loop polls one socket for all
// clients, plus the pipes of the workers, the controller's, the brokers' (one of a pair says HA
// there) and the signal descriptor, and it builds that poll set again only when the set changes
// (a worker or a broker started or gone), not on each wake-up.
//
// Nothing is lost, and nothing is late:
// - A client's records and its DONE travel on the same PUSH to the same PULL, and one PUSH's
//   messages arrive in the order it sent them: when DONE is read, every record before it has
//   been. A normal end is seen as soon as its DONE arrives, like any report.
// - The PUSH has no high-water mark (nor the PULL): a client never blocks on a report, so it
//   always answers $TERM, and the supervisor never has to read in time (what waits is records it
//   keeps anyway; threads/client.cpp).
// - After $READY a client says only one thing on its pipe: $ERROR, when its thread died (the
//   Actor's catch, src/wire/actor.cpp). That is rare, so the client pipes are looked at without
//   waiting on the timeline's tick (check_client_pipes, once a report interval), not on each
//   wake-up; an errored client's end is seen within one interval. Before its $ERROR is handled,
//   the report socket is read until empty, so what it sent before it died counts: its sends
//   completed before its $ERROR was sent, and over inproc a completed send is in the pipe, or
//   announced by a command in the PULL's mailbox that a non-blocking receive that finds no
//   message processes before it says EAGAIN.
#include "src/fleet/supervisor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "src/fleet/metrics.hpp"
#include "src/fleet/player.hpp"
#include "src/fleet/signals.hpp"
#include "src/fleet/timeline.hpp"
#include "src/wire/actor.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/stats.hpp"
#include "src/yolo/detector.hpp"
#include "threads/actors.hpp"

namespace zyolo {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Waits up to `timeout` for an actor's STATS message (or DONE, a retiring worker's or a client's
// last word, which carries the same counters).
std::optional<PipeMessage> wait_stats(Actor& actor, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    zmq::pollitem_t item{actor.pipe().handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    if (!(item.revents & ZMQ_POLLIN)) break;
    auto m = recv_pipe(actor.pipe());
    if (m && (m->command == PipeCommand::Stats || m->command == PipeCommand::Done)) return std::move(*m);
  }
  return std::nullopt;
}

// The counters of a STATS (or DONE) message, when it came and decodes.
template <class T>
std::optional<T> stats_of(const std::optional<PipeMessage>& m) {
  if (!m) return std::nullopt;
  auto s = decode_args<T>(*m);
  return s ? std::optional<T>(std::move(*s)) : std::nullopt;
}

// Asks an actor for its STATS and waits up to `timeout` for the answer.
template <class T>
std::optional<T> ask_stats(Actor& actor, milliseconds timeout) {
  if (!send_pipe(actor.pipe(), PipeCommand::Stats, {}, zmq::send_flags::dontwait)) return std::nullopt;
  return stats_of<T>(wait_stats(actor, timeout));
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

// Where the link listens for nodes when a scenario needs one (the link itself connects to the
// broker's endpoints of the run's transport).
constexpr const char* kLinkClients = "inproc://zyolo-link-clients";
constexpr const char* kLinkWorkers = "inproc://zyolo-link-workers";
// Where clients report (one name per context: every supervisor has a context of its own).
constexpr const char* kReports = "inproc://zyolo-client-reports";
constexpr int kReportBudget = 256;  // reports read per wake-up before the rest is looked at

struct WorkerSlot {
  std::unique_ptr<Actor> actor;  // null once it crashed or left
  std::string id;
  PoolConfig pool;
  double started_s = 0;
  bool retiring = false;  // RETIRE sent: it leaves once it holds nothing, and says DONE
  bool stats_pending = false;  // asked STATS for the metrics; the answer has not come yet
  bool registered = false;     // as its last STATS said
};

// A broker of the run: the only one, or one of the pair (zyolo run --ha), with the endpoints it
// binds, and the link in front of it when a scenario needs one. Its actor is null while it is
// down.
struct BrokerSlot {
  std::string name;  // "broker" (or "proxy"), or "primary" / "backup"
  Config config;
  std::unique_ptr<Actor> actor;
  std::string state;  // one of a pair: the state it said last (PRIMARY, ..., DOWN); "" alone
  std::unique_ptr<Actor> link;  // its link (threads/link.cpp), or null
  std::string link_clients, link_workers;  // where its link listens for clients and workers
};

struct ClientSlot {
  std::unique_ptr<Actor> actor;
  std::string id;
  bool done = false, retiring = false;
};

class Supervisor final : private FleetControl {
 public:
  Supervisor(const Config& config, const FleetOptions& options)
      : config_(config), options_(options), timeline_(config.autoscale.enabled && options.workers),
        progress_(options.progress, options.announce) {
    if (!config.metrics.listen.empty())
      metrics_.emplace(config, options.broker, options.workers, options.clients);
    if (config.run.ha) {
      const auto pair = ha_pair(config);
      brokers_.push_back({"primary", pair[0], nullptr, "DOWN", nullptr, "", ""});
      brokers_.push_back({"backup", pair[1], nullptr, "DOWN", nullptr, "", ""});
    } else {
      brokers_.push_back({proxy_mode() ? "proxy" : "broker", config, nullptr, "", nullptr, "", ""});
    }
    reports_.set(zmq::sockopt::rcvhwm, 0);  // no limit: see the top of this file
    reports_.set(zmq::sockopt::linger, 0);
    reports_.bind(kReports);
  }

  Report run() {
    report_.clients = options_.clients ? config_.run.clients : 0;
    report_.transport = config_.run.transport;
    report_.time_scale = config_.run.time_scale;
    report_.in_flight = config_.client.in_flight;
    report_.broker_kind = config_.run.broker;
    for (const auto& pool : pools_) {
      const int n = options_.workers ? initial_workers(pool) : 0;
      report_.workers_started += n;
      report_.pools.push_back({pool.service, options_.workers ? pool.model : "(another process)", n});
    }
    if (options_.scenario) {
      report_.scenario = options_.scenario->name;
      player_.emplace(*options_.scenario, report_.workers_started);
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
    start_metrics();
    start_actors();
    started_ = true;
    refresh_metrics();  // what is served from "ready" on shows the actors started
    if (options_.on_started) options_.on_started();
    loop();
    stop_actors();
    linger();
    sink_.finish(report_, start_us_, config_.run.report_interval_ms);
    return report_;
  }

 private:
  double seconds(Clock::time_point t) const { return std::chrono::duration<double>(t - start_).count(); }
  double now_s() const { return seconds(Clock::now()); }
  Clock::time_point at(double s) const {
    return start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  // The metrics endpoint first, so that a port already taken fails the run before anything starts.
  void start_metrics() {
    if (!metrics_) return;
    const Config c = config_;
    metrics_actor_ = std::make_unique<Actor>(ctx_, "metrics", [c](zmq::context_t& ctx, zmq::socket_ref p) {
      metrics_server(ctx, p, c);
    });
    refresh_metrics();
  }

  // Fresh values for the metrics actor: the broker's STATS (asked and awaited, as for a timeline
  // row), each worker's (asked without waiting: the answer comes to on_worker, in time for the
  // next refresh), the ZAP handler's, the pools and the clients; rendered and sent in EXPOSE with
  // the process's health.
  void refresh_metrics() {
    if (!metrics_) return;
    if (brokers_[0].actor) (void)broker_stats(brokers_[0], milliseconds(1000));  // no metrics with a pair
    for (auto& w : workers_)
      if (w.actor && !w.stats_pending)
        w.stats_pending = send_pipe(w.actor->pipe(), PipeCommand::Stats, {}, zmq::send_flags::dontwait);
    if (zap_)
      if (auto z = ask_stats<ZapStats>(*zap_, milliseconds(1000))) metrics_->zap(*z);
    for (const auto& pool : pools_) metrics_->pool(pool.service, static_cast<long>(running_in(pool.service)));
    metrics_->clients_running(static_cast<long>(running_clients()));
    // The endpoint says nothing on its pipe but $ERROR, should its thread die.
    if (metrics_actor_->pipe().get(zmq::sockopt::events) & ZMQ_POLLIN)
      if (auto m = recv_pipe(metrics_actor_->pipe()); m && m->command == PipeCommand::Error)
        report_.actor_errors.push_back("metrics: " + error_text(*m));
    const Exposed e{metrics_->render(), unhealthy(), unready()};
    (void)send_pipe(metrics_actor_->pipe(), PipeCommand::Expose, args_of(e), zmq::send_flags::dontwait);
  }

  // /healthz: why this process is not healthy, or "": an actor died.
  std::string unhealthy() const {
    if (report_.actor_errors.empty()) return "";
    return fmt::format("{} actor(s) died; the first: {}", report_.actor_errors.size(), report_.actor_errors.front());
  }

  // /readyz: why this process is not ready, or "". A broker (zyolo broker, run) is ready when
  // every service of the configuration has a worker registered with it; a pool of workers (zyolo
  // workers) when every service has a worker registered with a broker; clients (zyolo clients)
  // while they run.
  std::string unready() const {
    if (!started_) return "starting";
    if (finished_) return report_.interrupted ? "stopped" : "the run has ended";
    if (options_.broker && !brokers_[0].actor) return fmt::format("the {} is stopped", broker_name());
    if (options_.broker && !proxy_mode()) {
      const BrokerStats* b = metrics_->running_broker();
      if (!b) return "no STATS from the broker yet";
      for (const auto& pool : pools_) {
        const auto it = b->services.find(pool.service);
        if (it == b->services.end() || it->second.workers < 1)
          return fmt::format("service '{}' has no worker registered with the broker", pool.service);
      }
      return "";
    }
    if (options_.workers)  // workers alone, or the shared queue's, which knows no worker
      for (const auto& pool : pools_)
        if (std::none_of(workers_.begin(), workers_.end(), [&](const WorkerSlot& w) {
              return w.actor && w.registered && w.pool.service == pool.service;
            }))
          return fmt::format("no worker of service '{}' is registered with a broker", pool.service);
    if (options_.clients && !options_.broker && !options_.workers && running_clients() == 0)
      return "no client is running";
    return "";
  }

  // After the run: the last values are sent, and served metrics.linger_ms longer (SIGINT or
  // SIGTERM ends that at once), so that a scraper gets a batch run's final counts.
  void linger() {
    if (!metrics_) return;
    finished_ = true;
    refresh_metrics();
    if (report_.interrupted || config_.metrics.linger_ms <= 0) return;
    zmq::pollitem_t item{nullptr, signals_.fd(), ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, milliseconds(config_.metrics.linger_ms));
  }

  void start_actors() {
    prepare_image_codecs();  // before workers decode concurrently for the first time
    const Scenario* scenario = options_.scenario;
    if (scenario && scenario->uses_link())
      for (auto& b : brokers_) start_link(b, scenario->seed);
    if (options_.broker && config_.curve.enabled()) {  // the doorman first: see threads/zap.cpp
      const std::vector<std::string> allowed = config_.curve.allowed;
      const std::string pair_key = config_.ha.enabled() ? config_.curve.public_key : "";
      zap_ = std::make_unique<Actor>(ctx_, "zap", [allowed, pair_key](zmq::context_t& ctx, zmq::socket_ref p) {
        zap_handler(ctx, p, allowed, pair_key);
      });
    }
    if (options_.broker) {
      for (auto& b : brokers_) start_broker(b);
      if (config_.run.ha) wait_for_active();
    }
    std::map<std::string, int> sizes;
    for (const auto& pool : options_.workers ? pools_ : std::vector<PoolConfig>{}) {
      sizes[pool.service] = initial_workers(pool);
      for (int k = 0; k < initial_workers(pool); ++k) add_worker(pool);
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

  // The link in front of a broker, when a scenario needs one: one per broker of a pair, which
  // also relays the broker's state to its peer (the peer subscribes to the link's relay instead),
  // so that a cut-off silences it both ways. Nodes connect to the links' endpoints, inproc.
  void start_link(BrokerSlot& b, uint64_t seed) {
    const std::string tag = config_.run.ha ? "-" + b.name : "";
    LinkEndpoints ends{kLinkClients + tag, kLinkWorkers + tag, b.config.frontend(), b.config.backend(), "", ""};
    if (config_.run.ha) {
      ends.state_from = b.config.ha.bind;
      ends.state_to = "inproc://zyolo-link-state" + tag;
      for (auto& peer : brokers_)
        if (&peer != &b) peer.config.ha.peer = ends.state_to;
    }
    const int idle_ms = 2 * std::max(config_.broker.silence_ms(), config_.client.timeout_ms) + 1000;
    b.link = std::make_unique<Actor>(ctx_, "link" + tag, [ends, idle_ms, seed](zmq::context_t& ctx, zmq::socket_ref p) {
      link(ctx, p, ends, idle_ms, seed);
    });
    b.link_clients = ends.client_side;
    b.link_workers = ends.worker_side;
  }

  // The configuration an actor of `pool` sees: its service, its model, and the endpoints it
  // connects to (a pair's two, the primary's first; the links', when there are).
  Config for_pool(const PoolConfig& pool) const {
    Config c = config_.run.ha ? ha_nodes(config_) : config_;
    c.run.service = pool.service;
    c.worker.model = pool.model;
    if (brokers_[0].link) {
      std::vector<std::string> clients, workers;
      for (const auto& b : brokers_) clients.push_back(b.link_clients), workers.push_back(b.link_workers);
      c.run.transport = "inproc";
      c.endpoints.inproc_frontend = fmt::format("{}", fmt::join(clients, ","));
      c.endpoints.inproc_backend = fmt::format("{}", fmt::join(workers, ","));
    }
    return c;
  }

  bool proxy_mode() const { return config_.run.broker == "proxy"; }

  // Starts a worker of `pool` (a REP worker with --broker proxy). With `wait`, returns once it
  // has registered (a scenario's new worker is there when the event says so); without, at once:
  // the $READY comes to the loop later, so a model loading does not hold up the supervisor (the
  // controller's workers).
  WorkerSlot& add_worker(const PoolConfig& pool, bool wait = true) {
    const Config wc = for_pool(pool);
    std::string id = fmt::format("w{}", workers_.size());
    const bool rep = proxy_mode();
    auto body = [wc, id, rep](zmq::context_t& ctx, zmq::socket_ref p) {
      rep ? rep_worker(ctx, p, wc, id) : worker(ctx, p, wc, id);
    };
    auto actor = wait ? std::make_unique<Actor>(ctx_, "worker-" + id, body)
                      : std::make_unique<Actor>(ctx_, "worker-" + id, body, Actor::NoWait{});
    workers_.push_back({std::move(actor), id, pool, now_s()});
    poll_stale_ = true;
    return workers_.back();
  }

  // Stops worker w's thread; its pipe leaves the poll set.
  void drop_worker(WorkerSlot& w) {
    w.actor.reset();
    poll_stale_ = true;
  }

  void start_client(long requests, double duration_s) {
    const std::size_t i = clients_.size();
    Config cc = for_pool(pools_[i % pools_.size()]);
    cc.run.duration_s = duration_s;
    std::string id = fmt::format("c{}", i);
    const ReportTo to{kReports, static_cast<uint32_t>(i)};
    auto actor = std::make_unique<Actor>(ctx_, "client-" + id, [cc, id, requests, to](zmq::context_t& ctx, zmq::socket_ref p) {
      client(ctx, p, cc, id, requests, to);
    });
    clients_.push_back({std::move(actor), id});
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

  // The loop's poll set: the report socket, the signal descriptor, the controller's pipe, the
  // pipes of the brokers running (one of a pair says HA there), then the pipes of the workers
  // running (their indexes in workers_). Built again only when it is stale: a worker or a broker
  // started or stopped.
  void rebuild_poll_set() {
    poll_items_.clear();
    poll_workers_.clear();
    poll_brokers_.clear();
    poll_items_.push_back({reports_.handle(), 0, ZMQ_POLLIN, 0});
    poll_items_.push_back({nullptr, signals_.fd(), ZMQ_POLLIN, 0});
    if (controller_) poll_items_.push_back({controller_->pipe().handle(), 0, ZMQ_POLLIN, 0});
    for (std::size_t i = 0; i < brokers_.size(); ++i) {
      if (!brokers_[i].actor) continue;
      poll_items_.push_back({brokers_[i].actor->pipe().handle(), 0, ZMQ_POLLIN, 0});
      poll_brokers_.push_back(i);
    }
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (!workers_[i].actor) continue;
      poll_items_.push_back({workers_[i].actor->pipe().handle(), 0, ZMQ_POLLIN, 0});
      poll_workers_.push_back(i);
    }
    poll_stale_ = false;
  }

  // Polls the report socket, the pipes of workers and controller and the signal descriptor until
  // every client is done, playing the scenario's steps on time. See the top of this file.
  void loop() {
    const milliseconds interval(config_.run.report_interval_ms), refresh(config_.run.progress_ms);
    auto row_at = start_ + interval;
    auto progress_at = start_ + refresh;
    const milliseconds metrics_every(config_.metrics.refresh_ms);
    auto metrics_at = start_ + metrics_every;
    while ((running_clients() > 0 || !options_.clients) && !report_.interrupted) {
      if (poll_stale_) rebuild_poll_set();
      auto wake = options_.progress ? std::min(row_at, progress_at) : row_at;
      if (metrics_) wake = std::min(wake, metrics_at);
      if (const auto step = player_ ? player_->next_at() : std::nullopt) wake = std::min(wake, at(*step));
      zmq::poll(poll_items_, std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(
                                                           wake - Clock::now()) + milliseconds(1)));
      // The handlers below may make the set stale (a worker gone): its items stay as they are
      // until the next pass, and each is read at most once here.
      if (poll_items_[0].revents & ZMQ_POLLIN) read_reports(kReportBudget);
      if (poll_items_[1].revents & ZMQ_POLLIN) report_.interrupted = true;
      const std::size_t first_broker = controller_ ? 3 : 2;
      const std::size_t first_worker = first_broker + poll_brokers_.size();
      if (controller_ && (poll_items_[2].revents & ZMQ_POLLIN)) on_controller();
      for (std::size_t k = 0; k < poll_brokers_.size(); ++k)
        if (poll_items_[first_broker + k].revents & ZMQ_POLLIN) on_broker_pipe(brokers_[poll_brokers_[k]]);
      for (std::size_t k = 0; k < poll_workers_.size(); ++k)
        if (poll_items_[first_worker + k].revents & ZMQ_POLLIN) on_worker(poll_workers_[k]);
      if (player_ && !report_.interrupted) player_->play_due(now_s(), *this, report_.events);
      const auto now = Clock::now();
      if (now >= row_at) {
        check_client_pipes();
        add_row(now);
        row_at += interval;
      }
      if (metrics_ && now >= metrics_at) {
        refresh_metrics();
        metrics_at = now + metrics_every;
      }
      if (options_.progress && now >= progress_at) {
        progress_.draw(seconds(now), sink_.answered(), sink_.count(), config_.run.duration_s,
                       config_.run.requests, any_broker());
        progress_at = now + refresh;
      }
    }
    progress_.clear();
    report_.elapsed_s = now_s();
    add_row(Clock::now());
  }

  // Reads up to `budget` client reports waiting on the report socket (by default, all of them:
  // until the socket says EAGAIN), without waiting.
  void read_reports(int budget = std::numeric_limits<int>::max()) {
    for (int k = 0; k < budget; ++k) {
      auto frames = recv_frames(reports_, zmq::recv_flags::dontwait);
      if (!frames) return;
      on_report(std::move(*frames));
    }
  }

  // Handles one client report; marks its client done when it just finished (DONE, or the STATS
  // an interrupted client answers with). A report that does not decode, or names no client of
  // this supervisor, is dropped and counted.
  void on_report(Frames frames) {
    auto r = decode_report(std::move(frames));
    if (!r || r->client >= clients_.size()) {
      ++malformed_reports_;
      return;
    }
    const PipeMessage& m = r->message;
    switch (m.command) {
      case PipeCommand::Records:
        if (auto records = decode_args<ClientRecords>(m)) {
          sink_.add(r->client, *records);
          if (metrics_) metrics_->records(pools_[r->client % pools_.size()].service, *records);
        } else {
          ++malformed_reports_;
        }
        return;
      case PipeCommand::Detections:
        if (auto d = decode_args<DetectionLines>(m)) {
          detections_out_ << d->lines;
        } else {
          ++malformed_reports_;
        }
        return;
      default: {  // DONE or STATS: decode_report lets nothing else through
        auto& slot = clients_[r->client];
        if (slot.done) return;  // a STATS asked for as it said DONE: its totals count once
        if (auto totals = decode_args<ClientTotals>(m)) {
          add_totals(*totals);
          if (metrics_) metrics_->client_totals(*totals);
        } else {
          ++malformed_reports_;
        }
        client_ended(slot);
      }
    }
  }

  void client_ended(ClientSlot& slot) {
    slot.done = true;
    if (slot.retiring) slot.actor.reset();  // it left mid-run: its thread is not needed any more
  }

  // Looks at the pipes of the clients still running, without waiting. After $READY the only thing
  // a client says there is $ERROR (its thread died), so this runs on the timeline's tick and as
  // an interrupted run ends, not on every wake-up (see the top of this file).
  void check_client_pipes() {
    std::vector<zmq::pollitem_t> items;
    std::vector<std::size_t> index;
    for (std::size_t i = 0; i < clients_.size(); ++i) {
      if (clients_[i].done) continue;
      items.push_back({clients_[i].actor->pipe().handle(), 0, ZMQ_POLLIN, 0});
      index.push_back(i);
    }
    if (items.empty()) return;
    zmq::poll(items, milliseconds(0));
    for (std::size_t k = 0; k < index.size(); ++k)
      if (items[k].revents & ZMQ_POLLIN) on_client_pipe(index[k]);
  }

  // A message on client i's pipe: $ERROR ends it (its request in flight is lost); anything else
  // is not a client's to say there and is ignored.
  void on_client_pipe(std::size_t i) {
    auto m = recv_pipe(clients_[i].actor->pipe());
    if (!m || m->command != PipeCommand::Error) return;
    read_reports();  // first what it reported before it died (see the top of this file)
    auto& slot = clients_[i];
    report_.actor_errors.push_back(fmt::format("{}: {}", slot.actor->name(), error_text(*m)));
    if (!slot.done) client_ended(slot);
  }

  static std::string error_text(const PipeMessage& m) {
    auto e = decode_args<ErrorText>(m);
    return e ? e->text : fmt::format("(unreadable $ERROR: {})", fault_name(e.fault()));
  }

  // Handles one message from worker i: its late $READY or $ERROR (started without waiting), or
  // its DONE when it retired.
  void on_worker(std::size_t i) {
    auto& w = workers_[i];
    auto m = recv_pipe(w.actor->pipe());
    if (!m) return;
    if (m->command == PipeCommand::Stats) {  // the answer to refresh_metrics' STATS
      w.stats_pending = false;
      if (auto s = stats_of<WorkerStats>(std::move(*m))) note_worker(w, *s);
    } else if (m->command == PipeCommand::Error) {
      report_.actor_errors.push_back(fmt::format("{}: {}", w.actor->name(), error_text(*m)));
      record_worker(w, std::nullopt);
      drop_worker(w);
    } else if (m->command == PipeCommand::Done) {
      record_worker(w, stats_of<WorkerStats>(std::move(*m)));
      drop_worker(w);
    }
  }

  void note_worker(WorkerSlot& w, const WorkerStats& s) {
    w.registered = s.registered;
    if (metrics_) metrics_->worker(s);
  }

  void add_totals(const ClientTotals& t) {
    report_.sent += t.sent;
    report_.duplicates_dropped += t.duplicates_dropped;
    report_.mismatched += t.mismatched;
    report_.wrong_service += t.wrong_service;
    report_.answered_by_service[t.service] += t.answered;
  }

  // --- the controller ----------------------------------------------------------------------------

  // One evaluation of the controller: kept for the timeline; a change is carried out.
  void on_controller() {
    auto m = recv_pipe(controller_->pipe());
    if (!m || m->command != PipeCommand::Scale) return;
    auto d = decode_args<ScaleDecision>(*m);
    if (!d) return;
    const auto pool = std::find_if(pools_.begin(), pools_.end(), [&](const auto& p) { return p.service == d->service; });
    if (pool == pools_.end()) return;
    timeline_.note(*d);
    if (metrics_) metrics_->desired(d->service, d->desired);
    const int to = static_cast<int>(d->desired);
    const int from = static_cast<int>(d->previous);
    if (to == from) return;
    report_.autoscale.decisions.push_back({now_s(), d->service, from, to, d->demand, d->clients, d->registered});
    resize(*pool, static_cast<std::size_t>(to));
    announce("autoscale", fmt::format("{}: {} -> {} workers (demand {:.2f})", d->service, from, to, d->demand),
             now_s());
  }

  // Starts workers of `pool` (without waiting for them) or retires its newest, until `count`
  // are running and not retiring.
  void resize(const PoolConfig& pool, std::size_t count) {
    std::size_t running = running_in(pool.service);
    for (; running < count; ++running) {
      add_worker(pool, false);
      ++report_.autoscale.started;
    }
    for (auto it = workers_.rbegin(); it != workers_.rend() && running > count; ++it) {
      if (!it->actor || it->retiring || it->pool.service != pool.service) continue;
      retire(*it);
      ++report_.autoscale.retired;
      --running;
    }
  }

  // Asks a worker to leave gracefully; its DONE comes to on_worker.
  void retire(WorkerSlot& w) {
    send_pipe(w.actor->pipe(), PipeCommand::Retire);
    w.retiring = true;
  }

  std::size_t running_in(const std::string& service) const {
    return static_cast<std::size_t>(std::count_if(workers_.begin(), workers_.end(), [&](const WorkerSlot& w) {
      return w.actor && !w.retiring && w.pool.service == service;
    }));
  }

  // --- what a scenario does (FleetControl) -------------------------------------------------------

  const char* broker_name() const override { return proxy_mode() ? "proxy" : "broker"; }
  bool any_broker() const {
    return std::any_of(brokers_.begin(), brokers_.end(), [](const BrokerSlot& b) { return b.actor != nullptr; });
  }

  std::vector<std::string> brokers() const override {
    std::vector<std::string> names;
    for (const auto& b : brokers_) names.push_back(b.name);
    return names;
  }

  const BrokerSlot* find_broker(const std::string& name) const {
    for (const auto& b : brokers_)
      if (b.name == name) return &b;
    return nullptr;
  }
  BrokerSlot* find_broker(const std::string& name) {
    return const_cast<BrokerSlot*>(std::as_const(*this).find_broker(name));
  }

  bool broker_running(const std::string& name) const override {
    const BrokerSlot* b = find_broker(name);
    return b && b->actor;
  }

  std::string broker_state(const std::string& name) const override {
    const BrokerSlot* b = find_broker(name);
    return b ? b->state : "";
  }

  void start_broker(const std::string& name) override {
    if (BrokerSlot* b = find_broker(name); b && !b->actor) start_broker(*b);
  }

  void kill_broker(const std::string& name) override {
    if (BrokerSlot* b = find_broker(name); b && b->actor) kill_broker(*b);
  }

  // Starts a broker on its endpoints: the MDP broker, or the shared queue's proxy (--broker
  // proxy). After a kill, the old one's endpoints may take a moment to be released (tcp): a
  // failed bind is tried again for up to 5 s. One of a pair starts in its role's state.
  void start_broker(BrokerSlot& slot) {
    const Config c = slot.config;
    const bool queue = proxy_mode();
    const Actor::Body body = [c, queue](zmq::context_t& ctx, zmq::socket_ref p) {
      queue ? proxy(ctx, p, c) : broker(ctx, p, c);
    };
    for (int attempt = 0;; ++attempt) {
      try {
        slot.actor = std::make_unique<Actor>(ctx_, slot.name, body);
        break;
      } catch (const ActorError&) {
        if (attempt >= 50) throw;
        std::this_thread::sleep_for(milliseconds(100));  // back-off between bind attempts
      }
    }
    ++report_.broker_incarnations;
    poll_stale_ = true;
    if (metrics_) metrics_->broker_started();
    if (config_.run.ha) {
      const std::string state = slot.name == "primary" ? "PRIMARY" : "BACKUP";
      note_pair(slot, {"started", slot.state, state, "its actor started", 0, ""});
    }
  }

  // Stops a broker, adding its counters to those of the brokers before it. One of a pair goes
  // DOWN in the report's record of the pair; `at_end`, the run is over: the state it was in is
  // its final one (read after its STATS, so every note it sent before is in).
  void kill_broker(BrokerSlot& slot, bool at_end = false) {
    if (auto s = broker_stats(slot, milliseconds(2000))) {
      if (report_.broker) {
        add(*report_.broker, *s);
      } else {
        report_.broker = std::move(*s);
      }
    }
    if (at_end && config_.run.ha) report_.ha_final.emplace_back(slot.name, slot.state);
    slot.actor.reset();
    poll_stale_ = true;
    if (metrics_) metrics_->broker_stopped();
    if (config_.run.ha) note_pair(slot, {"stopped", slot.state, "DOWN", "its actor stopped", 0, ""});
  }

  // --- a pair's states (HA notes) ----------------------------------------------------------------

  // Until one of the pair says it is ACTIVE (the primary, as soon as it hears its backup), or
  // for twice the time its peer may stay silent and a second more at most: clients that started
  // before would see their first requests dropped by a primary that has not heard its backup yet
  // (over tcp and ipc the state channel takes a reconnect interval to join), and begin the run
  // on a timeout's ceiling instead of its answers' pace.
  void wait_for_active() {
    const auto deadline = Clock::now() + milliseconds(2 * config_.ha.heartbeat_ms * config_.ha.missed + 1000);
    auto active = [&] {
      return std::any_of(brokers_.begin(), brokers_.end(), [](const BrokerSlot& b) { return b.state == "ACTIVE"; });
    };
    while (!active() && Clock::now() < deadline) {
      std::vector<zmq::pollitem_t> items;
      for (auto& b : brokers_) items.push_back({b.actor->pipe().handle(), 0, ZMQ_POLLIN, 0});
      zmq::poll(items, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()) + milliseconds(1));
      for (std::size_t i = 0; i < items.size(); ++i)
        if (items[i].revents & ZMQ_POLLIN) on_broker_pipe(brokers_[i]);
    }
  }

  // A message on a broker's pipe between STATS: an HA note from one of a pair, or $ERROR.
  void on_broker_pipe(BrokerSlot& slot) {
    auto m = recv_pipe(slot.actor->pipe());
    if (m) on_broker_message(slot, *m);
  }

  void on_broker_message(BrokerSlot& slot, const PipeMessage& m) {
    if (m.command == PipeCommand::Error) {
      report_.actor_errors.push_back(fmt::format("{}: {}", slot.actor->name(), error_text(m)));
    } else if (m.command == PipeCommand::Ha) {
      if (auto note = decode_args<HaNote>(m)) on_ha_note(slot, *note);
    }
  }

  // One broker of a pair said what happened to it: this thread says it (the broker's prints
  // nothing), as `zyolo broker --ha` always has, and `zyolo run --ha` records it.
  void on_ha_note(BrokerSlot& slot, const HaNote& note) {
    if (!config_.run.ha) {  // zyolo broker --ha: the one broker of this process
      fmt::print(stderr, "zyolo broker: ha: {}\n", ha_note_text(note));
      return;
    }
    note_pair(slot, {std::string(ha_note_kind_name(note.kind)), note.from, note.to, note.text, 0, ""});
  }

  // Records and announces a change of one of the pair (a note, or its actor started or stopped).
  // A broker that becomes ACTIVE ends the failovers that wait for one: the kills and cut-offs of
  // the other while it was ACTIVE.
  void note_pair(BrokerSlot& slot, HaRecord record) {
    record.t = now_s();
    record.broker = slot.name;
    if (record.from != record.to) slot.state = record.to;
    announce("ha", fmt::format("{}: {}", slot.name, ha_record_text(record)), record.t);
    report_.ha.push_back(std::move(record));
    if (slot.state != "ACTIVE" || report_.ha.back().from == "ACTIVE") return;
    for (auto& e : report_.events) {
      if (!e.failover || e.end_t >= 0 || e.broker == slot.name) continue;
      e.end_t = report_.ha.back().t;
      e.failover_s = e.end_t - e.t;
      e.detail += fmt::format("; {} ACTIVE at {:.2f} s", slot.name, e.end_t);
    }
  }

  std::vector<std::string> running_workers() const override {
    std::vector<std::string> ids;
    for (const auto& w : workers_)
      if (w.actor && !w.retiring) ids.push_back(w.id);
    return ids;
  }

  WorkerSlot* find_worker(const std::string& id) {
    for (auto& w : workers_)
      if (w.id == id) return &w;
    return nullptr;
  }

  void crash_worker(const std::string& id) override {
    if (auto* w = find_worker(id); w && w->actor) stop_worker(*w, PipeCommand::Crash);
  }

  void freeze_worker(const std::string& id, milliseconds how_long) override {
    if (auto* w = find_worker(id); w && w->actor)
      send_pipe(w->actor->pipe(), PipeCommand::Freeze, args_of(Freeze{how_long}));
  }

  void retire_worker(const std::string& id) override {
    if (auto* w = find_worker(id); w && w->actor) retire(*w);
  }

  std::string start_worker(const std::string& like) override {
    const WorkerSlot* w = like.empty() ? nullptr : find_worker(like);
    return add_worker(w ? w->pool : pools_.front()).id;
  }

  // Starts clients or retires the newest ones until `count` are running.
  std::string set_clients(std::size_t count, double t) override {
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

  void link_rule(const LinkRule& rule) override {
    for (auto& b : brokers_)
      if (b.link) send_pipe(b.link->pipe(), PipeCommand::Rule, args_of(rule));
  }

  // A cut-off: the broker's link drops everything (its clients', its workers' and its state to
  // its peer), and the peer's link drops the peer's state to it.
  void cut_broker(const std::string& name, milliseconds how_long) override {
    for (auto& b : brokers_) {
      if (!b.link) continue;
      const auto nodes = parse_nodes(b.name == name ? "all" : "peer");
      send_pipe(b.link->pipe(), PipeCommand::Rule, args_of(LinkRule{*nodes, LinkMode::Partition, 0, how_long}));
    }
  }


  void announce(const std::string& kind, const std::string& detail, double t) override {
    progress_.announce(kind, detail, t);
  }

  // --- stopping ----------------------------------------------------------------------------------

  // Stops a worker with $TERM (it leaves gracefully) or CRASH (it does not), keeping its
  // counters. A retiring worker's counters come in its DONE.
  void stop_worker(WorkerSlot& w, PipeCommand how) {
    if (w.stats_pending) {  // the answer to refresh_metrics' STATS comes first
      w.stats_pending = false;
      auto m = wait_stats(*w.actor, milliseconds(10'000));
      if (m && m->command == PipeCommand::Done) {  // it retired meanwhile: that was its last word
        record_worker(w, stats_of<WorkerStats>(std::move(*m)));
        drop_worker(w);
        return;
      }
    }
    std::optional<WorkerStats> s;
    if (how == PipeCommand::Crash) {
      if (send_pipe(w.actor->pipe(), PipeCommand::Crash, {}, zmq::send_flags::dontwait))
        s = stats_of<WorkerStats>(wait_stats(*w.actor, milliseconds(10'000)));  // its last word
    } else if (w.retiring) {
      s = stats_of<WorkerStats>(wait_stats(*w.actor, milliseconds(10'000)));
    } else {
      s = ask_stats<WorkerStats>(*w.actor, milliseconds(10'000));
    }
    record_worker(w, s, how == PipeCommand::Crash);
    drop_worker(w);
  }

  // A worker's line in the report, as it stops.
  void record_worker(const WorkerSlot& w, const std::optional<WorkerStats>& stats, bool crashed = false) {
    WorkerShare share{w.id, w.pool.service, 0, w.started_s, now_s()};
    share.crashed = crashed;
    share.retired = w.retiring;
    if (stats) share.served = stats->served;
    if (metrics_) {
      if (stats) metrics_->worker(*stats);
      metrics_->worker_gone(w.id);
    }
    report_.workers.push_back(share);
  }

  // One timeline row, with the brokers' view of workers and queue (a pair's two added up: a
  // worker is registered with one of them).
  void add_row(Clock::time_point now) {
    std::optional<BrokerStats> row;
    for (auto& b : brokers_) {
      if (!b.actor) continue;
      auto s = broker_stats(b, milliseconds(1000));
      if (!s) continue;
      if (!row) {
        row = std::move(s);
        continue;
      }
      const long workers = row->workers + s->workers, queue = row->queue + s->queue;
      add(*row, *s);
      row->workers = workers;
      row->queue = queue;
    }
    timeline_.add_row(seconds(now), row, static_cast<long>(active_clients()), report_.timeline);
  }

  // A broker's counters, asked and awaited; an HA note that comes meanwhile is handled, not
  // dropped. The queue waits that come with them go to the record sink.
  std::optional<BrokerStats> broker_stats(BrokerSlot& slot, milliseconds timeout) {
    if (!send_pipe(slot.actor->pipe(), PipeCommand::Stats, {}, zmq::send_flags::dontwait)) return std::nullopt;
    std::optional<BrokerStats> s;
    const auto deadline = Clock::now() + timeout;
    while (!s && Clock::now() < deadline) {
      zmq::pollitem_t item{slot.actor->pipe().handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
      if (!(item.revents & ZMQ_POLLIN)) break;
      auto m = recv_pipe(slot.actor->pipe());
      if (!m) continue;
      if (m->command == PipeCommand::Stats)
        s = stats_of<BrokerStats>(std::optional<PipeMessage>(std::move(*m)));
      else
        on_broker_message(slot, *m);
    }
    if (s) {
      sink_.add_queue_waits(s->queue_waits_us);
      if (metrics_) metrics_->broker(*s);
    }
    return s;
  }

  // Collects the final counters and stops every actor: clients, workers, broker, link.
  void stop_actors() {
    collect_unfinished_clients();
    clients_.clear();
    if (malformed_reports_ > 0)  // our own bug: it makes the run unclean
      report_.actor_errors.push_back(
          fmt::format("supervisor: {} malformed client reports dropped", malformed_reports_));
    if (controller_) {  // first: it must not resize the fleet while it stops
      report_.autoscale.controller = ask_stats<ControllerStats>(*controller_, milliseconds(2000));
      controller_.reset();
    }
    for (auto& w : workers_)
      if (w.actor) stop_worker(w, PipeCommand::Term);
    // In the order they started: "w2" before "w10".
    std::sort(report_.workers.begin(), report_.workers.end(), [](const auto& a, const auto& b) {
      return std::pair(a.id.size(), a.id) < std::pair(b.id.size(), b.id);
    });
    workers_.clear();
    for (auto& b : brokers_) {
      if (b.actor) {
        kill_broker(b, true);
      } else if (config_.run.ha) {
        report_.ha_final.emplace_back(b.name, b.state);  // DOWN
      }
    }
    if (zap_) {  // last: it vetted the broker's peers until the broker closed
      report_.curve = ask_stats<ZapStats>(*zap_, milliseconds(2000));
      zap_.reset();
    }
    for (auto& b : brokers_) {  // a pair's two added up
      if (!b.link) continue;
      auto st = ask_stats<LinkStats>(*b.link, milliseconds(2000));
      b.link.reset();
      if (!st) continue;
      if (!report_.link) report_.link = LinkStats{};
      add(*report_.link, *st);
    }
  }

  // After an interruption: asks every client still running for STATS (it sends its records
  // first, on the report socket too) and handles what comes back like any report, for up to 2 s.
  // A client that died meanwhile says $ERROR on its pipe instead. Any report still waiting (a
  // normal end left none) is read first.
  void collect_unfinished_clients() {
    read_reports();
    for (auto& c : clients_)
      if (!c.done) (void)send_pipe(c.actor->pipe(), PipeCommand::Stats, {}, zmq::send_flags::dontwait);
    const auto deadline = Clock::now() + milliseconds(2000);
    while (running_clients() > 0 && Clock::now() < deadline) {
      zmq::pollitem_t item{reports_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, milliseconds(100));
      read_reports();
      check_client_pipes();
    }
  }

  const Config& config_;
  const std::vector<PoolConfig> pools_ = config_.pools_or_default();
  FleetOptions options_;
  std::optional<ScenarioPlayer> player_;
  Timeline timeline_;
  ProgressLine progress_;
  SignalFd signals_;  // before the context: ZeroMQ's own threads inherit the mask too
  zmq::context_t ctx_ = make_context();
  zmq::socket_t reports_{ctx_, zmq::socket_type::pull};  // every client's reports; bound at once
  std::vector<zmq::pollitem_t> poll_items_;  // the loop's poll set (rebuild_poll_set)
  std::vector<std::size_t> poll_workers_;    // the workers of its items, by index in workers_
  std::vector<std::size_t> poll_brokers_;    // the brokers of its items, by index in brokers_
  bool poll_stale_ = true;
  long malformed_reports_ = 0;
  std::unique_ptr<Actor> zap_, controller_;
  std::vector<BrokerSlot> brokers_;  // one, or the pair (primary, backup)
  std::optional<FleetMetrics> metrics_;     // --metrics: what the metrics actor serves
  std::unique_ptr<Actor> metrics_actor_;    // stopped last: it serves until the supervisor ends
  bool started_ = false, finished_ = false;  // every actor started; the run is over (/readyz)
  std::vector<WorkerSlot> workers_;
  std::vector<ClientSlot> clients_;
  RecordSink sink_;
  Report report_;
  std::ofstream detections_out_;  // --save-detections: only this thread writes it
  Clock::time_point start_;
  int64_t start_us_ = 0;
};

}  // namespace

Report run_fleet(const Config& config, const FleetOptions& options) {
  Supervisor s(config, options);
  return s.run();
}

}  // namespace zyolo
