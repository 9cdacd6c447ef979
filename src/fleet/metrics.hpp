// The fleet's metrics, as the supervisor knows them: the counters and gauges its actors report
// (the broker's STATS, the workers' STATS, the clients' records and totals, the controller's
// decisions, the ZAP handler's counts), kept in the supervisor's thread and rendered as
// Prometheus text for the metrics actor (threads/metrics.cpp), which serves it. Nothing here is
// shared with another thread: the supervisor feeds it and sends the text on (EXPOSE).
//
// Counters stay monotonic across a broker's restart in a scenario (the dead broker's counters are
// kept and the new one's added on), and a worker that stopped keeps its last counts.
// The README's "Metrics" section lists every family; render() writes them.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "src/config/config.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/stats.hpp"

namespace zyolo {

class FleetMetrics {
 public:
  // `broker`, `workers`, `clients`: the actors this process runs (FleetOptions); only their
  // families are written.
  FleetMetrics(const Config& config, bool broker, bool workers, bool clients);

  // The running broker's latest STATS.
  void broker(const BrokerStats& s);
  // The running broker's latest STATS; null before its first, and once it stopped.
  const BrokerStats* running_broker() const { return broker_ ? &*broker_ : nullptr; }
  // The broker stopped (a scenario killed it): its counters are kept, its gauges dropped.
  void broker_stopped();
  void broker_started() { ++broker_starts_; }
  void worker(const WorkerStats& s);        // a worker's latest STATS (or DONE)
  void worker_gone(const std::string& id);  // it stopped: its counters stay, it is not running
  void records(const std::string& service, const ClientRecords& records);
  void client_totals(const ClientTotals& t);
  void clients_running(long n) { clients_running_ = n; }
  // A pool's workers running in this process now, and the controller's last wish (--autoscale).
  void pool(const std::string& service, long running) { pools_[service].running = running; }
  void desired(const std::string& service, long desired) { pools_[service].desired = desired; }
  void zap(const ZapStats& s) { zap_ = s; }

  // Every family, as Prometheus text (version 0.0.4).
  std::string render() const;

 private:
  struct PoolNumbers {
    long running = 0;
    std::optional<long> desired;
  };
  struct ClientNumbers {
    std::map<std::string, long> by_status;  // "200", "504", ...
    long retries = 0, lost = 0, duplicates_dropped = 0;
    Histogram duration;
  };
  struct WorkerNumbers {
    WorkerStats stats;
    bool running = true;
  };

  const Config& config_;
  bool has_broker_, has_workers_, has_clients_;
  std::string transport_, allocator_;
  std::optional<BrokerStats> broker_, retired_;  // now; the brokers stopped before, summed
  long broker_starts_ = 0;
  std::map<std::string, WorkerNumbers> workers_;  // by worker id
  std::map<std::string, ClientNumbers> clients_;  // by service
  long clients_running_ = 0;
  std::map<std::string, PoolNumbers> pools_;  // by service
  std::optional<ZapStats> zap_;
};

}  // namespace zyolo
