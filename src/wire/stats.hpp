// What actors report: the counters each kind of actor answers STATS (or says in DONE) with, the
// demand the broker publishes and the controller's decisions, as typed structs. Each travels as
// one JSON object in a frame (the broker's STATS adds a frame of queue waits); this file and
// stats.cpp are the only ones that know the JSON's keys, and to_json gives the same objects to the
// report (src/fleet/report.cpp), so the report's JSON is the actors' own.
//
//   STATS/DONE from          struct            pipe arguments
//   broker (MDP)             BrokerStats       [JSON] [queue waits: uint32 microseconds each]
//   broker (--broker proxy)  BrokerStats       [JSON] [empty]  (proxy set: its traffic)
//   worker, REP worker       WorkerStats       [JSON]
//   client                   ClientTotals      [JSON]
//   controller               ControllerStats   [JSON]
//   link                     LinkStats         [JSON]
//   ZAP handler              ZapStats          [JSON]
//   metrics actor            MetricsServerStats [JSON]
//   DEMAND (broker, PUB)     Demand            [JSON]
//   SCALE (controller)       ScaleDecision     [JSON]
//
// A decoder refuses JSON that does not parse, a key that is missing, or a value of the wrong type
// (Fault::BadArguments); it never throws.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"

namespace zyolo {

// Observations counted in buckets by upper bound, as Prometheus histograms are: counts[i] holds
// those <= bounds[i] (and > bounds[i-1]); the last count, those above every bound. Cumulative: an
// actor keeps one from its start and reports it whole, so a STATS missed loses nothing.
struct Histogram {
  std::vector<double> bounds;  // ascending; the +Inf bucket is implicit
  std::vector<long> counts;    // bounds.size() + 1, once anything was observed or reset
  double sum = 0;
  long count = 0;
  Histogram() : counts(1) {}
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1) {}
  void observe(double v);
  // Adds `other` (the same bounds) in; false, leaving this unchanged, when the bounds differ.
  bool add(const Histogram& other);
};

// One service at the broker: gauges now, counters since the broker started.
struct ServiceCount {
  long workers = 0, queue = 0;
  long busy = 0;     // workers holding a request
  long clients = 0;  // clients that sent a request within autoscale.client_window_ms
  long requests = 0;  // requests queued (not counting a retry of one held, nor a 503)
  long rejected = 0;  // answered 503 at once: the queue was full
  // Replies forwarded to clients, by the status the worker gave ("200", "400", "500", "other").
  std::map<std::string, long> replies;
  Histogram queue_wait;  // seconds from queued to handed to a worker
};

// The broker's protocol errors by kind (valid messages invalid in the worker's state).
struct ProtocolErrors {
  long ready_twice = 0, unasked_reply = 0, reserved_service = 0;
};

// The shared queue's traffic: what zmq_proxy_steerable forwarded, socket by socket.
struct ProxyTraffic {
  ProxyCounters frontend, backend;
};

struct BrokerStats {
  // Gauges: now.
  long workers = 0, idle = 0, queue = 0;
  long held = 0;  // requests handed to workers and not answered yet
  std::map<std::string, ServiceCount> services;
  // Counters: since the broker started (see threads/broker.cpp for what each counts).
  long requests = 0, replies = 0, rejected_busy = 0, requeued = 0, expired = 0, abandoned = 0;
  long unroutable = 0, unknown_worker = 0, protocol_errors = 0, mmi = 0, retries_dropped = 0;
  long lost_in_transit = 0, disconnects = 0, crossed_disconnect = 0, requeued_after_disconnect = 0;
  long full_pipes = 0;  // a request held back: its worker's queue was at the high-water mark
  long most_held = 0;   // the most requests one worker held at once (<= broker.worker_credit)
  long vanished = 0;    // workers removed when a request could not be routed to them (gone)
  long malformed = 0;
  ProtocolErrors protocol_errors_by_kind;
  std::map<std::string, long> unknown_worker_commands;  // by MDP command name
  std::map<std::string, long> faults;                   // malformed messages, by fault_name
  long cpu_us = 0;                                      // the broker thread's CPU time
  // A broker of a pair (ha.role, src/wire/binary_star.hpp): its state now ("" when not one of a
  // pair); its state changes; client requests it dropped while not ACTIVE; times its peer went
  // silent; anomalies by kind (dual_active, dual_passive, same_role); malformed state messages;
  // heartbeat rounds it sent its workers none, PASSIVE with its peer alive (so that they move on);
  // whether the peer was heard within heartbeat x missed just now (a gauge).
  std::string ha_state;
  long ha_transitions = 0, ha_dropped = 0, ha_peer_lost = 0, ha_malformed = 0;
  long ha_withheld_heartbeats = 0;
  bool ha_peer_up = false;
  std::map<std::string, long> ha_anomalies;
  // The shared queue's broker counts requests, replies and this, and nothing of the rest.
  std::optional<ProxyTraffic> proxy;
  // Queue waits of the requests dispatched since the last STATS (the second frame, not JSON).
  std::vector<uint32_t> queue_waits_us;
};
// The counters of two incarnations of a broker added up, the gauges (and the queue waits) the
// later one's: what a run that restarted its broker reports.
void add(BrokerStats& total, const BrokerStats& later);

struct WorkerStats {
  std::string id, service;
  long served = 0, bad_requests = 0, errors = 0, freezes = 0;
  long reconnects = 0, malformed = 0;
  long crossed_disconnect = 0;  // requests that crossed its DISCONNECT (MDP workers)
  // Heard from a broker since it last (re)connected: an MDP worker is registered; a REP worker,
  // which has no handshake, once connected.
  bool registered = false;
  // YOLO workers: seconds per stage of each image served, in the order decode, pre, inference,
  // post (metrics.stage_buckets); empty for an echo worker.
  std::vector<Histogram> stages;
};

struct ClientTotals {
  std::string id, service;
  long sent = 0, answered = 0, duplicates_dropped = 0, mismatched = 0, wrong_service = 0;
  long malformed = 0, reconnects = 0;
};

struct ControllerStats {
  long evaluations = 0, ups = 0, downs = 0, resubscribes = 0;
};

struct LinkStats {
  long forwarded = 0, dropped = 0, delayed = 0, connections = 0;
  long connections_opened = 0, connections_closed = 0;
};
// Two links' counters added up (a broker pair's, one in front of each broker).
void add(LinkStats& total, const LinkStats& other);

// The metrics actor's HTTP side (threads/metrics.cpp).
struct MetricsServerStats {
  long connections = 0;             // open now
  long connections_opened = 0;
  std::map<std::string, long> responses;  // by status code ("200", "404", ...)
  // Connections closed without an answer, by why: "idle" (no whole request in
  // metrics.idle_timeout_ms), "closed_mid_request" (the peer left mid-request), "overflow"
  // (metrics.max_connections reached), "send_failed" (the peer could not take the answer).
  std::map<std::string, long> dropped;
};

struct ZapStats {
  long allowed_keys = 0, accepted = 0, refused = 0;
  std::vector<std::string> refused_keys;  // Z85, the first few refused
};

// One service's demand over the broker's last interval (see threads/broker.cpp).
struct ServiceDemand {
  double demand = 0;  // the mean number of requests in the system (queued + held)
  long outstanding = 0, queue = 0, in_flight = 0, workers = 0, idle = 0, clients = 0;
  long arrivals = 0, replies = 0;
  double queue_wait_ms = 0, service_ms = 0;
};

struct Demand {
  long interval_ms = 0;
  std::map<std::string, ServiceDemand> services;
};

// One evaluation of one service by the controller (see threads/controller.cpp).
struct ScaleDecision {
  std::string service;
  double demand = 0;
  long wanted = 0, previous = 0, desired = 0, registered = 0, starting = 0;
  long clients = 0, queue = 0;
  double queue_wait_ms = 0, service_ms = 0;
};

Frames args_of(const BrokerStats& s);
Frames args_of(const WorkerStats& s);
Frames args_of(const ClientTotals& s);
Frames args_of(const ControllerStats& s);
Frames args_of(const LinkStats& s);
Frames args_of(const ZapStats& s);
Frames args_of(const MetricsServerStats& s);
Frames args_of(const Demand& d);
Frames args_of(const ScaleDecision& d);
template <> Decoded<BrokerStats> decode_args<BrokerStats>(const PipeMessage& m);
template <> Decoded<WorkerStats> decode_args<WorkerStats>(const PipeMessage& m);
template <> Decoded<ClientTotals> decode_args<ClientTotals>(const PipeMessage& m);
template <> Decoded<ControllerStats> decode_args<ControllerStats>(const PipeMessage& m);
template <> Decoded<LinkStats> decode_args<LinkStats>(const PipeMessage& m);
template <> Decoded<ZapStats> decode_args<ZapStats>(const PipeMessage& m);
template <> Decoded<MetricsServerStats> decode_args<MetricsServerStats>(const PipeMessage& m);
template <> Decoded<Demand> decode_args<Demand>(const PipeMessage& m);
template <> Decoded<ScaleDecision> decode_args<ScaleDecision>(const PipeMessage& m);

// The same JSON objects, for the report.
nlohmann::json to_json(const BrokerStats& s);
nlohmann::json to_json(const ControllerStats& s);
nlohmann::json to_json(const LinkStats& s);
nlohmann::json to_json(const ZapStats& s);
nlohmann::json to_json(const MetricsServerStats& s);

}  // namespace zyolo
