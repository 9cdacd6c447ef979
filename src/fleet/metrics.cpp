// See metrics.hpp. Names follow Prometheus' conventions: base units (seconds, bytes), counters
// end in _total, and what varies (service, status, state, stage, reason) is a label.
#include "src/fleet/metrics.hpp"

#include "src/config/allocator.hpp"
#include "src/wire/binary_star.hpp"
#include "src/wire/exposition.hpp"

namespace zyolo {
namespace {

constexpr std::string_view kStages[] = {"decode", "pre", "inference", "post"};

long at(const std::map<std::string, long>& m, const std::string& key) {
  const auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

}  // namespace

FleetMetrics::FleetMetrics(const Config& config, bool broker, bool workers, bool clients)
    : config_(config),
      has_broker_(broker),
      has_workers_(workers),
      has_clients_(clients),
      transport_(config.run.transport),
      allocator_(allocator_name()) {
  for (const auto& pool : config.pools_or_default()) {
    if (clients) clients_[pool.service].duration = Histogram(config.metrics.bounds);
    if (workers) pools_[pool.service];
  }
}

void FleetMetrics::broker(const BrokerStats& s) {
  broker_ = s;
}

void FleetMetrics::broker_stopped() {
  if (!broker_) return;
  if (retired_) {
    add(*retired_, *broker_);
  } else {
    retired_ = broker_;
  }
  broker_.reset();
}

void FleetMetrics::worker(const WorkerStats& s) {
  workers_[s.id] = {s, true};
}

void FleetMetrics::worker_gone(const std::string& id) {
  if (auto it = workers_.find(id); it != workers_.end()) it->second.running = false;
}

void FleetMetrics::records(const std::string& service, const ClientRecords& records) {
  auto& c = clients_[service];
  if (c.duration.bounds.empty()) c.duration = Histogram(config_.metrics.bounds);
  for (const auto& r : records) {
    ++c.by_status[std::to_string(r.status)];
    c.retries += r.retries;
    if (r.status == 504) ++c.lost;
    if (r.status == 200) c.duration.observe(r.latency_us / 1e6);
  }
}

void FleetMetrics::client_totals(const ClientTotals& t) {
  clients_[t.service].duplicates_dropped += t.duplicates_dropped;
}

std::string FleetMetrics::render() const {
  Exposition e;
  e.family("zyolo_build_info", "gauge",
           "zyolo's version, data-plane transport and allocator (always 1)");
  e.sample("zyolo_build_info",
           {{"version", ZYOLO_VERSION}, {"transport", transport_}, {"allocator", allocator_}}, 1L);

  if (has_broker_) {
    // The counters of every broker of the run (summed over restarts); the gauges of the running
    // one.
    std::optional<BrokerStats> total = retired_;
    if (broker_) {
      if (total)
        add(*total, *broker_);
      else
        total = broker_;
    }
    const BrokerStats b = total.value_or(BrokerStats{});
    const bool up = broker_.has_value();
    const bool proxy = config_.run.broker == "proxy";
    e.single("zyolo_broker_up", "gauge",
             "1 while this process's broker runs (a scenario may stop it)", up ? 1L : 0L);
    e.single("zyolo_broker_starts_total", "counter",
             "Brokers started in this process (a restart adds one)", broker_starts_);
    e.single("zyolo_broker_cpu_seconds_total", "counter",
             "CPU time of the broker's thread (all brokers of the run)",
             static_cast<double>(b.cpu_us) / 1e6);
    if (proxy) {
      e.family("zyolo_proxy_messages_total", "counter",
               "Messages the shared queue forwarded, by socket and direction");
      const ProxyTraffic t = b.proxy.value_or(ProxyTraffic{});
      for (const auto& [side, c] : {std::pair{"frontend", t.frontend}, {"backend", t.backend}}) {
        e.sample("zyolo_proxy_messages_total", {{"socket", side}, {"direction", "in"}},
                 static_cast<long>(c.messages_in));
        e.sample("zyolo_proxy_messages_total", {{"socket", side}, {"direction", "out"}},
                 static_cast<long>(c.messages_out));
      }
      e.family("zyolo_proxy_bytes_total", "counter",
               "Bytes the shared queue forwarded, by socket and direction");
      for (const auto& [side, c] : {std::pair{"frontend", t.frontend}, {"backend", t.backend}}) {
        e.sample("zyolo_proxy_bytes_total", {{"socket", side}, {"direction", "in"}},
                 static_cast<long>(c.bytes_in));
        e.sample("zyolo_proxy_bytes_total", {{"socket", side}, {"direction", "out"}},
                 static_cast<long>(c.bytes_out));
      }
    } else {
      e.family("zyolo_requests_total", "counter",
               "Client requests at the broker by service and outcome: the status of the worker's "
               "reply forwarded "
               "(200, 400, 500, other) or 503 (rejected: the service's queue was full)");
      for (const auto& [name, s] : b.services) {
        for (const char* status : {"200", "400", "500"})
          e.sample("zyolo_requests_total", {{"service", name}, {"status", status}},
                   at(s.replies, status));
        e.sample("zyolo_requests_total", {{"service", name}, {"status", "503"}},
                 s.rejected + at(s.replies, "503"));
        e.sample("zyolo_requests_total", {{"service", name}, {"status", "other"}},
                 at(s.replies, "504") + at(s.replies, "other"));
      }
      e.family("zyolo_requests_queued_total", "counter",
               "Requests the broker queued for a worker, by service");
      for (const auto& [name, s] : b.services)
        e.sample("zyolo_requests_queued_total", {{"service", name}}, s.requests);
      e.family("zyolo_queue_depth", "gauge", "Requests waiting for a worker, by service");
      for (const auto& [name, s] : b.services)
        e.sample("zyolo_queue_depth", {{"service", name}}, up ? s.queue : 0L);
      e.family("zyolo_queue_wait_seconds", "histogram",
               "Time from queued at the broker to handed to a worker, by service");
      for (const auto& [name, s] : b.services)
        e.histogram("zyolo_queue_wait_seconds", {{"service", name}}, s.queue_wait);
      e.family(
          "zyolo_workers", "gauge",
          "Workers registered with the broker, by service and state (busy: holding a request)");
      for (const auto& [name, s] : b.services) {
        e.sample("zyolo_workers", {{"service", name}, {"state", "idle"}},
                 up ? s.workers - s.busy : 0L);
        e.sample("zyolo_workers", {{"service", name}, {"state", "busy"}}, up ? s.busy : 0L);
      }
      e.family(
          "zyolo_clients_active", "gauge",
          "Clients that sent the service a request within autoscale.client_window_ms, by service");
      for (const auto& [name, s] : b.services)
        e.sample("zyolo_clients_active", {{"service", name}}, up ? s.clients : 0L);
      e.single("zyolo_requests_held", "gauge", "Requests handed to workers and not answered yet",
               up ? b.held : 0L);
      e.family("zyolo_rejected_total", "counter", "Requests answered 503 at once, by reason");
      e.sample("zyolo_rejected_total", {{"reason", "queue_full"}}, b.rejected_busy);
      e.single("zyolo_requeued_total", "counter",
               "Requests given back to the queue when their worker was lost or left", b.requeued);
      e.single("zyolo_retries_dropped_total", "counter",
               "Client retries dropped: the request was already queued or being served",
               b.retries_dropped);
      e.single("zyolo_worker_expired_total", "counter",
               "Workers the broker expired after liveness x heartbeat of silence", b.expired);
      e.single("zyolo_unroutable_total", "counter",
               "Messages the broker could not deliver (the peer gone or its queue full)",
               b.unroutable);
      e.family("zyolo_malformed_messages_total", "counter",
               "Messages the broker dropped as malformed, by kind");
      for (const auto& [kind, n] : b.faults)
        e.sample("zyolo_malformed_messages_total", {{"kind", kind}}, n);
      e.family("zyolo_protocol_errors_total", "counter",
               "Valid MDP messages invalid in the worker's state, by kind");
      e.sample("zyolo_protocol_errors_total", {{"kind", "ready_twice"}},
               b.protocol_errors_by_kind.ready_twice);
      e.sample("zyolo_protocol_errors_total", {{"kind", "unasked_reply"}},
               b.protocol_errors_by_kind.unasked_reply);
      e.sample("zyolo_protocol_errors_total", {{"kind", "reserved_service"}},
               b.protocol_errors_by_kind.reserved_service);
      if (!b.ha_state.empty()) {  // one of a broker pair (ha.role)
        e.family("zyolo_ha_state", "gauge",
                 "The broker pair's state of this broker (Binary Star): 1 for the state it is in");
        for (const HaState st : kHaStates)
          e.sample("zyolo_ha_state", {{"state", ha_state_name(st)}},
                   b.ha_state == ha_state_name(st) ? 1L : 0L);
        e.single("zyolo_ha_transitions_total", "counter", "State changes of this broker of a pair",
                 b.ha_transitions);
        e.single("zyolo_ha_dropped_total", "counter",
                 "Client requests this broker of a pair dropped while not ACTIVE", b.ha_dropped);
        e.single("zyolo_ha_peer_up", "gauge",
                 "1 while the peer's state is heard (within ha.heartbeat_ms x ha.missed)",
                 b.ha_peer_up ? 1L : 0L);
        e.single("zyolo_ha_peer_lost_total", "counter",
                 "Times the peer, heard before, went silent for ha.heartbeat_ms x ha.missed",
                 b.ha_peer_lost);
        e.family("zyolo_ha_anomalies_total", "counter",
                 "State messages of the peer that make no sense with this broker's, by kind "
                 "(dual_active, dual_passive, same_role: both started as primary or as backup)");
        for (const char* kind : {"dual_active", "dual_passive", "same_role"}) {
          const auto it = b.ha_anomalies.find(kind);
          e.sample("zyolo_ha_anomalies_total", {{"kind", kind}},
                   it == b.ha_anomalies.end() ? 0L : it->second);
        }
      }
    }
    if (zap_) {
      e.single("zyolo_curve_allowed_keys", "gauge", "Public keys on the broker's CURVE allow-list",
               zap_->allowed_keys);
      e.family("zyolo_curve_handshakes_total", "counter",
               "CURVE peers the ZAP handler let in (accepted) or refused");
      e.sample("zyolo_curve_handshakes_total", {{"result", "accepted"}}, zap_->accepted);
      e.sample("zyolo_curve_handshakes_total", {{"result", "refused"}}, zap_->refused);
    }
  }

  if (has_workers_) {
    e.family("zyolo_worker_requests_total", "counter",
             "Requests a worker served, by service, worker and status (200 served, 400 bad "
             "request, 500 inference failed)");
    for (const auto& [id, w] : workers_)
      for (const auto& [status, n] : {std::pair{"200", w.stats.served},
                                      {"400", w.stats.bad_requests},
                                      {"500", w.stats.errors}})
        e.sample("zyolo_worker_requests_total",
                 {{"service", w.stats.service}, {"worker", id}, {"status", status}}, n);
    e.family("zyolo_worker_reconnects_total", "counter",
             "Times a worker lost its broker and connected again");
    for (const auto& [id, w] : workers_)
      e.sample("zyolo_worker_reconnects_total", {{"service", w.stats.service}, {"worker", id}},
               w.stats.reconnects);
    e.family("zyolo_worker_registered", "gauge",
             "1 while a worker is running and registered with a broker");
    for (const auto& [id, w] : workers_)
      e.sample("zyolo_worker_registered", {{"service", w.stats.service}, {"worker", id}},
               w.running && w.stats.registered ? 1L : 0L);
    // Each stage's histogram, summed over the service's workers (all of them with the same bounds).
    std::map<std::string, std::vector<Histogram>> stages;
    for (const auto& [id, w] : workers_) {
      if (w.stats.stages.size() != std::size(kStages)) continue;
      auto& sum = stages[w.stats.service];
      if (sum.empty())
        sum = w.stats.stages;
      else
        for (std::size_t i = 0; i < sum.size(); ++i) (void)sum[i].add(w.stats.stages[i]);
    }
    e.family(
        "zyolo_inference_seconds", "histogram",
        "Time per image in each stage of a YOLO worker (decode, pre, inference, post), by service");
    for (const auto& [service, hs] : stages)
      for (std::size_t i = 0; i < hs.size(); ++i)
        e.histogram("zyolo_inference_seconds", {{"service", service}, {"stage", kStages[i]}},
                    hs[i]);
    e.family("zyolo_pool_workers", "gauge",
             "Workers of the pool running in this process, by service");
    for (const auto& [service, p] : pools_)
      e.sample("zyolo_pool_workers", {{"service", service}}, p.running);
    if (config_.autoscale.enabled) {
      e.family("zyolo_autoscale_desired_workers", "gauge",
               "The workers the controller last asked for, by service");
      for (const auto& [service, p] : pools_)
        if (p.desired)
          e.sample("zyolo_autoscale_desired_workers", {{"service", service}}, *p.desired);
    }
  }

  if (has_clients_) {
    e.single("zyolo_clients_running", "gauge", "Clients of this process still sending requests",
             clients_running_);
    e.family("zyolo_client_requests_total", "counter",
             "Requests the clients finished, by service and status (200 answered, 504 deadline "
             "passed, or the "
             "status of the reply)");
    for (const auto& [service, c] : clients_)
      for (const auto& [status, n] : c.by_status)
        e.sample("zyolo_client_requests_total", {{"service", service}, {"status", status}}, n);
    e.family(
        "zyolo_client_request_duration_seconds", "histogram",
        "Time from a request's first send to its answer, of the requests answered 200, by service");
    for (const auto& [service, c] : clients_)
      e.histogram("zyolo_client_request_duration_seconds", {{"service", service}}, c.duration);
    e.family("zyolo_client_retries_total", "counter",
             "Requests sent again after a timeout (Lazy Pirate)");
    for (const auto& [service, c] : clients_)
      e.sample("zyolo_client_retries_total", {{"service", service}}, c.retries);
    e.family("zyolo_client_lost_total", "counter",
             "Requests the clients gave up on: their deadline passed with no answer (the report's "
             "504 errors)");
    for (const auto& [service, c] : clients_)
      e.sample("zyolo_client_lost_total", {{"service", service}}, c.lost);
    e.family(
        "zyolo_client_duplicates_dropped_total", "counter",
        "Late second answers to one request the clients dropped (counted as each client ends)");
    for (const auto& [service, c] : clients_)
      e.sample("zyolo_client_duplicates_dropped_total", {{"service", service}},
               c.duplicates_dropped);
  }
  return e.take();
}

}  // namespace zyolo
