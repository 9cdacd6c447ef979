// The report of a run: built by the supervisor from the messages its actors sent, printed as a
// readable summary and written as JSON (--report).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <optional>

#include "src/config/config.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/stats.hpp"

namespace zyolo {

struct TimelineRow {
  double t = 0;       // seconds since the start, at the end of the interval
  long answered = 0;  // requests answered within the interval
  long workers = 0;   // workers registered at the broker
  long queue = 0;     // requests waiting at the broker
  long clients = 0;   // clients running at the end of the interval
  double p99_ms = 0;  // p99 latency of the requests answered within the interval
  double rss_mb = 0;  // resident memory of the process at the end of the interval
  // The broker's CPU time and the requests it received so far, at the end of the interval (of the
  // broker running then): their deltas between rows are its CPU per request in a window.
  long broker_cpu_us = 0, broker_requests = 0;
  // With --autoscale, the controller's last evaluation in the interval (summed over services):
  // demand (mean requests in the system) and the workers it wants; -1 without a controller.
  double demand = -1;
  long desired = -1;
};

// A change of a service's worker count that the controller decided.
struct ScaleChange {
  double t = 0;
  std::string service;
  int from = 0, to = 0;
  double demand = 0;
  long clients = 0, registered = 0;  // active clients and workers registered at the broker then
};

struct AutoscaleReport {
  bool enabled = false;
  AutoscaleConfig policy;
  std::vector<ScaleChange> decisions;
  long started = 0, retired = 0;  // workers the supervisor started and retired for it
  std::optional<ControllerStats> controller;  // its own counters
  // Times the worker count of a service turned from rising to falling or back.
  int direction_changes() const;
};

// A scenario event as it happened, and for a fault, how the fleet recovered from it.
struct FaultEvent {
  double t = 0;         // seconds since the start
  std::string kind;     // kill-broker, restart-broker, crash-worker, freeze-worker, partition, ...
  std::string detail;   // what it acted on, e.g. "w1" or "workers for 2.0 s"
  // For a fault that ends (a restart, a heal, a wake-up): when it ended, and how long from then
  // until the first answered request and until throughput was back to 90% of what it was before
  // the fault. -1: not measured (no end, or no recovery seen before the run ended).
  double end_t = -1, first_answer_s = -1, recover90_s = -1;
  // zyolo run --ha: the broker it acted on ("primary", "backup"; "" otherwise). A failover is a
  // kill (or cut-off) of the ACTIVE broker: it ends when the other one becomes ACTIVE (end_t),
  // failover_s after the fault began, and recovery is measured from then; the outage the
  // clients saw is failover_s + first_answer_s.
  std::string broker;
  bool failover = false;
  double failover_s = -1;
};

// zyolo run --ha: what one broker of the pair did, as the supervisor heard it. kind: transition,
// anomaly or peer-lost (the broker's HA notes), or started / stopped (its actor). from and to are
// states (PRIMARY, BACKUP, ACTIVE, PASSIVE, and DOWN while its actor is stopped); equal for an
// anomaly or a lost peer.
struct HaRecord {
  std::string kind, from, to, text;
  double t = 0;        // seconds since the start
  std::string broker;  // primary or backup
};
// "PRIMARY -> ACTIVE (why)", the anomaly's text, or "ACTIVE: the peer went silent (2.1 s)".
std::string ha_record_text(const HaRecord& r);

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
};

// The stretch of a run from one scenario event to the next (the first from 0, the last to the
// end): what was answered in it and how fast. Requests count in the phase they ended in.
struct Phase {
  double from = 0, to = 0;
  std::string starts_with;  // the event's kind, or "start"
  long answered = 0, errors = 0;
  Percentiles latency_ms;   // of the answered
};

struct WorkerShare {
  std::string id;
  std::string service;
  long served = 0;
  double started_s = 0, stopped_s = -1;  // when it started and ended (-1: ran to the end)
  bool crashed = false;                  // it was stopped by a crash-worker fault
  bool retired = false;                  // it left gracefully mid-run (controller, scenario)
  // Requests the whole fleet answered while this worker was up, and its share of them.
  long answered_while_up = 0;
  double share() const {
    return answered_while_up ? static_cast<double>(served) / static_cast<double>(answered_while_up) : 0;
  }
};

struct Report {
  // What ran.
  int clients = 0, workers_started = 0;
  std::string transport;
  std::string broker_kind;        // run.broker: mdp, or proxy (the shared queue)
  std::vector<PoolConfig> pools;  // service, model ("none": echo) and worker count of each
  double elapsed_s = 0;
  int in_flight = 1;      // client.in_flight: requests each client kept outstanding, at most
  double time_scale = 1;  // run.time_scale: the time line was played this many times as long
  bool interrupted = false;
  // Requests: every request sent ends answered (200), as an error (another status, or 504 when
  // its deadline passed), or lost (no end seen: only an interrupted run has any).
  long sent = 0, answered = 0, errors = 0, lost = 0;
  long duplicates_delivered = 0, duplicates_dropped = 0, retries = 0, mismatched = 0;
  long wrong_service = 0;  // answers from a worker of a service other than the one asked for
  std::map<std::string, long> answered_by_service;
  std::map<int, long> errors_by_status;
  std::map<int, Percentiles> error_latency_ms;  // per error status: how long until it came
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0, throughput_rps = 0;
  // Per-stage times of answered requests, ms: queue_wait (at the broker, every run) and, with a
  // YOLO model, decode, pre, inference and post (as the workers measured them).
  std::map<std::string, Percentiles> stages_ms;
  std::vector<WorkerShare> workers;
  std::vector<TimelineRow> timeline;
  std::vector<FaultEvent> events;      // scenario events, in time order
  std::vector<Phase> phases;           // with events: the run cut at each of them
  std::string scenario;                // its name, or empty
  std::optional<BrokerStats> broker;   // the broker's own counters (summed over restarts)
  int broker_incarnations = 0;         // brokers started in the run (a restart adds one)
  std::optional<ZapStats> curve;       // the ZAP handler's, with CURVE
  std::optional<LinkStats> link;       // the link's counters, when a scenario used one
  std::vector<HaRecord> ha;            // zyolo run --ha: the pair's states over the run
  std::vector<std::pair<std::string, std::string>> ha_final;  // each broker's last state
  double rss_start_mb = 0, rss_end_mb = 0, rss_max_mb = 0;  // from the timeline's rows
  std::vector<std::string> actor_errors;  // what actors said in $ERROR
  AutoscaleReport autoscale;

  bool clean() const {
    return lost == 0 && duplicates_delivered == 0 && mismatched == 0 && wrong_service == 0;
  }
};

// Folds client records into `report`: counts, percentiles, timeline bins. `start_us` is the
// steady-clock time the run started; `interval_ms` the timeline's bin width.
class RecordSink {
 public:
  void add(uint32_t client, const std::vector<ClientRecord>& records);
  // Queue waits the broker measured (its STATS carries those since the last).
  void add_queue_waits(const std::vector<uint32_t>& waits_us);
  void finish(Report& report, int64_t start_us, int interval_ms) const;
  long count() const { return static_cast<long>(records_.size()); }
  long answered() const { return answered_; }

 private:
  struct Entry {
    uint32_t client;
    ClientRecord record;
  };
  std::vector<Entry> records_;
  std::vector<uint32_t> queue_waits_us_;
  long answered_ = 0;
};

nlohmann::json to_json(const Report& report);
std::string summary_text(const Report& report);

}  // namespace zyolo
