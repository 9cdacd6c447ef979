// The counters actors report, as JSON: see stats.hpp. Each struct's keys are listed once, in its
// fields() below, and that one list both writes and reads it, so the two cannot drift apart.
#include "src/wire/stats.hpp"

#include <algorithm>
#include <concepts>
#include <cstring>
#include <type_traits>

namespace zyolo {
namespace {

using Json = nlohmann::json;

template <class S, class T>
concept Of = std::same_as<std::remove_const_t<S>, T>;

// --- each struct's keys --------------------------------------------------------------------------

template <class S, class F> requires Of<S, Histogram>
void fields(S& s, F& f) {
  f("bounds", s.bounds);
  f("counts", s.counts);
  f("sum", s.sum);
  f("count", s.count);
}

template <class S, class F> requires Of<S, ServiceCount>
void fields(S& s, F& f) {
  f("workers", s.workers);
  f("queue", s.queue);
  f("busy", s.busy);
  f("clients", s.clients);
  f("requests", s.requests);
  f("rejected", s.rejected);
  f("replies", s.replies);
  f("queue_wait", s.queue_wait);
}

template <class S, class F> requires Of<S, ProtocolErrors>
void fields(S& s, F& f) {
  f("READY twice", s.ready_twice);
  f("REPLY not asked for", s.unasked_reply);
  f("READY for mmi.*", s.reserved_service);
}

template <class S, class F> requires Of<S, ProxyCounters>
void fields(S& s, F& f) {
  f("messages_in", s.messages_in);
  f("bytes_in", s.bytes_in);
  f("messages_out", s.messages_out);
  f("bytes_out", s.bytes_out);
}

// The MDP broker's keys; the shared queue's broker has only requests, replies, its traffic and
// cpu_us (proxy_fields).
template <class S, class F> requires Of<S, BrokerStats>
void mdp_fields(S& s, F& f) {
  f("workers", s.workers);
  f("idle", s.idle);
  f("queue", s.queue);
  f("held", s.held);
  f("requests", s.requests);
  f("replies", s.replies);
  f("rejected_busy", s.rejected_busy);
  f("requeued", s.requeued);
  f("expired", s.expired);
  f("abandoned", s.abandoned);
  f("unroutable", s.unroutable);
  f("unknown_worker", s.unknown_worker);
  f("protocol_errors", s.protocol_errors);
  f("protocol_errors_by_kind", s.protocol_errors_by_kind);
  f("unknown_worker_commands", s.unknown_worker_commands);
  f("mmi", s.mmi);
  f("retries_dropped", s.retries_dropped);
  f("lost_in_transit", s.lost_in_transit);
  f("disconnects", s.disconnects);
  f("crossed_disconnect", s.crossed_disconnect);
  f("requeued_after_disconnect", s.requeued_after_disconnect);
  f("full_pipes", s.full_pipes);
  f("most_held", s.most_held);
  f("vanished", s.vanished);
  f("malformed", s.malformed);
  f("faults", s.faults);
  f("services", s.services);
  f("cpu_us", s.cpu_us);
  f("ha_state", s.ha_state);
  f("ha_transitions", s.ha_transitions);
  f("ha_dropped", s.ha_dropped);
  f("ha_peer_lost", s.ha_peer_lost);
  f("ha_peer_up", s.ha_peer_up);
  f("ha_malformed", s.ha_malformed);
  f("ha_withheld_heartbeats", s.ha_withheld_heartbeats);
  f("ha_anomalies", s.ha_anomalies);
}

template <class S, class F> requires Of<S, BrokerStats>
void proxy_fields(S& s, F& f, ProxyTraffic& traffic) {
  f("requests", s.requests);
  f("replies", s.replies);
  f("frontend", traffic.frontend);
  f("backend", traffic.backend);
  f("cpu_us", s.cpu_us);
}

template <class S, class F> requires Of<S, WorkerStats>
void fields(S& s, F& f) {
  f("id", s.id);
  f("service", s.service);
  f("served", s.served);
  f("bad_requests", s.bad_requests);
  f("errors", s.errors);
  f("freezes", s.freezes);
  f("reconnects", s.reconnects);
  f("malformed", s.malformed);
  f("crossed_disconnect", s.crossed_disconnect);
  f("registered", s.registered);
  f("stages", s.stages);
}

template <class S, class F> requires Of<S, ClientTotals>
void fields(S& s, F& f) {
  f("id", s.id);
  f("service", s.service);
  f("sent", s.sent);
  f("answered", s.answered);
  f("duplicates_dropped", s.duplicates_dropped);
  f("mismatched", s.mismatched);
  f("wrong_service", s.wrong_service);
  f("malformed", s.malformed);
  f("reconnects", s.reconnects);
}

template <class S, class F> requires Of<S, ControllerStats>
void fields(S& s, F& f) {
  f("evaluations", s.evaluations);
  f("ups", s.ups);
  f("downs", s.downs);
  f("resubscribes", s.resubscribes);
}

template <class S, class F> requires Of<S, LinkStats>
void fields(S& s, F& f) {
  f("forwarded", s.forwarded);
  f("dropped", s.dropped);
  f("delayed", s.delayed);
  f("connections", s.connections);
  f("connections_opened", s.connections_opened);
  f("connections_closed", s.connections_closed);
}

template <class S, class F> requires Of<S, ZapStats>
void fields(S& s, F& f) {
  f("allowed_keys", s.allowed_keys);
  f("accepted", s.accepted);
  f("refused", s.refused);
  f("refused_keys", s.refused_keys);
}

template <class S, class F> requires Of<S, MetricsServerStats>
void fields(S& s, F& f) {
  f("connections", s.connections);
  f("connections_opened", s.connections_opened);
  f("responses", s.responses);
  f("dropped", s.dropped);
}

template <class S, class F> requires Of<S, ServiceDemand>
void fields(S& s, F& f) {
  f("demand", s.demand);
  f("outstanding", s.outstanding);
  f("queue", s.queue);
  f("in_flight", s.in_flight);
  f("workers", s.workers);
  f("idle", s.idle);
  f("clients", s.clients);
  f("arrivals", s.arrivals);
  f("replies", s.replies);
  f("queue_wait_ms", s.queue_wait_ms);
  f("service_ms", s.service_ms);
}

template <class S, class F> requires Of<S, Demand>
void fields(S& s, F& f) {
  f("interval_ms", s.interval_ms);
  f("services", s.services);
}

template <class S, class F> requires Of<S, ScaleDecision>
void fields(S& s, F& f) {
  f("service", s.service);
  f("demand", s.demand);
  f("wanted", s.wanted);
  f("previous", s.previous);
  f("desired", s.desired);
  f("registered", s.registered);
  f("starting", s.starting);
  f("clients", s.clients);
  f("queue", s.queue);
  f("queue_wait_ms", s.queue_wait_ms);
  f("service_ms", s.service_ms);
}

// --- writing ---------------------------------------------------------------------------------

Json write(long v) { return v; }
Json write(uint64_t v) { return v; }
Json write(double v) { return v; }
Json write(const std::string& v) { return v; }
Json write(bool v) { return v; }
Json write(const std::vector<std::string>& v) { return v; }
template <class T>
Json write(const std::map<std::string, T>& m);
template <class T>
Json write(const std::vector<T>& v);
template <class T>
Json write(const T& s);

struct Writer {
  Json& out;
  template <class T>
  void operator()(const char* key, const T& value) {
    out[key] = write(value);
  }
};

template <class T>
Json write(const std::map<std::string, T>& m) {
  Json j = Json::object();
  for (const auto& [key, value] : m) j[key] = write(value);
  return j;
}

template <class T>
Json write(const std::vector<T>& v) {
  Json j = Json::array();
  for (const auto& e : v) j.push_back(write(e));
  return j;
}

template <class T>
Json write(const T& s) {
  Json j = Json::object();
  Writer w{j};
  fields(s, w);
  return j;
}

template <>
Json write(const BrokerStats& s) {
  Json j = Json::object();
  Writer w{j};
  if (s.proxy) {
    ProxyTraffic traffic = *s.proxy;
    proxy_fields(s, w, traffic);
  } else {
    mdp_fields(s, w);
  }
  return j;
}

// --- reading ---------------------------------------------------------------------------------

bool read(const Json& j, long& v) {
  if (!j.is_number_integer()) return false;
  v = j.get<long>();
  return true;
}
bool read(const Json& j, uint64_t& v) {
  if (!j.is_number_unsigned()) return false;
  v = j.get<uint64_t>();
  return true;
}
bool read(const Json& j, double& v) {
  if (!j.is_number()) return false;
  v = j.get<double>();
  return true;
}
bool read(const Json& j, std::string& v) {
  if (!j.is_string()) return false;
  v = j.get<std::string>();
  return true;
}
bool read(const Json& j, bool& v) {
  if (!j.is_boolean()) return false;
  v = j.get<bool>();
  return true;
}
bool read(const Json& j, std::vector<std::string>& v) {
  if (!j.is_array()) return false;
  for (const auto& e : j) {
    if (!e.is_string()) return false;
    v.push_back(e.get<std::string>());
  }
  return true;
}
template <class T>
bool read(const Json& j, std::map<std::string, T>& m);
template <class T>
bool read(const Json& j, std::vector<T>& v);
template <class T>
bool read(const Json& j, T& s);

// Reads each field by its key; a missing or mistyped one fails the whole object.
struct Reader {
  const Json& in;
  bool ok = true;
  template <class T>
  void operator()(const char* key, T& value) {
    if (!ok) return;
    const auto it = in.find(key);
    ok = it != in.end() && read(*it, value);
  }
};

template <class T>
bool read(const Json& j, std::map<std::string, T>& m) {
  if (!j.is_object()) return false;
  for (const auto& [key, value] : j.items())
    if (!read(value, m[key])) return false;
  return true;
}

template <class T>
bool read(const Json& j, std::vector<T>& v) {
  if (!j.is_array()) return false;
  for (const auto& e : j)
    if (!read(e, v.emplace_back())) return false;
  return true;
}

template <class T>
bool read(const Json& j, T& s) {
  if (!j.is_object()) return false;
  Reader r{j};
  fields(s, r);
  return r.ok;
}

// A histogram reads whole or not at all: one count per bucket, +Inf's too.
template <>
bool read(const Json& j, Histogram& h) {
  if (!j.is_object()) return false;
  Histogram in;
  in.counts.clear();
  Reader r{j};
  fields(in, r);
  if (!r.ok || in.counts.size() != in.bounds.size() + 1) return false;
  h = std::move(in);
  return true;
}

template <>
bool read(const Json& j, BrokerStats& s) {
  if (!j.is_object()) return false;
  Reader r{j};
  if (j.contains("frontend")) {
    ProxyTraffic traffic;
    proxy_fields(s, r, traffic);
    s.proxy = traffic;
  } else {
    mdp_fields(s, r);
  }
  return r.ok;
}

// --- frames ------------------------------------------------------------------------------------

template <class T>
Frames json_args(const T& s) {
  return text_frames({write(s).dump()});
}

// The struct in a command's first argument frame, which must be all there is (or, with `extra`,
// be followed by exactly that many more).
template <class T>
Decoded<T> from_json_args(const PipeMessage& m, std::size_t extra = 0) {
  if (m.args.size() < 1 + extra) return Fault::MissingFrame;
  if (m.args.size() > 1 + extra) return Fault::TooManyFrames;
  const Json j = Json::parse(m.args[0].to_string_view(), nullptr, /*allow_exceptions=*/false);
  T s;
  if (j.is_discarded() || !read(j, s)) return Fault::BadArguments;
  return s;
}

}  // namespace

void Histogram::observe(double v) {
  const auto bucket = std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin();
  ++counts[static_cast<std::size_t>(bucket)];
  sum += v;
  ++count;
}

bool Histogram::add(const Histogram& other) {
  if (other.bounds != bounds || other.counts.size() != counts.size()) return false;
  for (std::size_t i = 0; i < counts.size(); ++i) counts[i] += other.counts[i];
  sum += other.sum;
  count += other.count;
  return true;
}

void add(LinkStats& total, const LinkStats& other) {
  for (auto [a, b] : {std::pair{&total.forwarded, other.forwarded}, {&total.dropped, other.dropped},
                      {&total.delayed, other.delayed}, {&total.connections, other.connections},
                      {&total.connections_opened, other.connections_opened},
                      {&total.connections_closed, other.connections_closed}})
    *a += b;
}

void add(BrokerStats& total, const BrokerStats& later) {
  // Counters add up; gauges and waits are the later broker's.
  BrokerStats sum = later;
  for (auto [a, b] :
       {std::pair{&sum.requests, total.requests}, {&sum.replies, total.replies},
        {&sum.rejected_busy, total.rejected_busy}, {&sum.requeued, total.requeued},
        {&sum.expired, total.expired}, {&sum.abandoned, total.abandoned},
        {&sum.unroutable, total.unroutable}, {&sum.unknown_worker, total.unknown_worker},
        {&sum.protocol_errors, total.protocol_errors}, {&sum.mmi, total.mmi},
        {&sum.retries_dropped, total.retries_dropped}, {&sum.lost_in_transit, total.lost_in_transit},
        {&sum.disconnects, total.disconnects}, {&sum.crossed_disconnect, total.crossed_disconnect},
        {&sum.requeued_after_disconnect, total.requeued_after_disconnect},
        {&sum.full_pipes, total.full_pipes}, {&sum.vanished, total.vanished},
        {&sum.malformed, total.malformed},
        {&sum.cpu_us, total.cpu_us},
        {&sum.ha_transitions, total.ha_transitions}, {&sum.ha_dropped, total.ha_dropped},
        {&sum.ha_peer_lost, total.ha_peer_lost}, {&sum.ha_malformed, total.ha_malformed},
        {&sum.ha_withheld_heartbeats, total.ha_withheld_heartbeats},
        {&sum.protocol_errors_by_kind.ready_twice, total.protocol_errors_by_kind.ready_twice},
        {&sum.protocol_errors_by_kind.unasked_reply, total.protocol_errors_by_kind.unasked_reply},
        {&sum.protocol_errors_by_kind.reserved_service, total.protocol_errors_by_kind.reserved_service}})
    *a += b;
  for (const auto& [name, n] : total.unknown_worker_commands) sum.unknown_worker_commands[name] += n;
  for (const auto& [name, n] : total.faults) sum.faults[name] += n;
  for (const auto& [name, n] : total.ha_anomalies) sum.ha_anomalies[name] += n;
  for (const auto& [name, before] : total.services) {  // each service's counters too
    auto& s = sum.services[name];
    s.requests += before.requests;
    s.rejected += before.rejected;
    for (const auto& [status, n] : before.replies) s.replies[status] += n;
    if (s.queue_wait.bounds.empty()) s.queue_wait = Histogram(before.queue_wait.bounds);
    (void)s.queue_wait.add(before.queue_wait);
  }
  sum.most_held = std::max(sum.most_held, total.most_held);  // a maximum, not a count
  if (sum.proxy && total.proxy) {
    for (auto [a, b] : {std::pair{&sum.proxy->frontend, total.proxy->frontend},
                        {&sum.proxy->backend, total.proxy->backend}}) {
      a->messages_in += b.messages_in;
      a->bytes_in += b.bytes_in;
      a->messages_out += b.messages_out;
      a->bytes_out += b.bytes_out;
    }
  }
  total = std::move(sum);
}

Frames args_of(const BrokerStats& s) {
  Frames f = json_args(s);
  f.emplace_back(s.queue_waits_us.data(), s.queue_waits_us.size() * sizeof(uint32_t));
  return f;
}
Frames args_of(const WorkerStats& s) { return json_args(s); }
Frames args_of(const ClientTotals& s) { return json_args(s); }
Frames args_of(const ControllerStats& s) { return json_args(s); }
Frames args_of(const LinkStats& s) { return json_args(s); }
Frames args_of(const ZapStats& s) { return json_args(s); }
Frames args_of(const MetricsServerStats& s) { return json_args(s); }
Frames args_of(const Demand& d) { return json_args(d); }
Frames args_of(const ScaleDecision& d) { return json_args(d); }

template <>
Decoded<BrokerStats> decode_args<BrokerStats>(const PipeMessage& m) {
  auto s = from_json_args<BrokerStats>(m, 1);
  if (!s) return s;
  const auto& waits = m.args[1];
  if (waits.size() % sizeof(uint32_t) != 0) return Fault::BadArguments;
  s->queue_waits_us.resize(waits.size() / sizeof(uint32_t));
  if (waits.size() > 0) std::memcpy(s->queue_waits_us.data(), waits.data(), waits.size());
  return s;
}
template <>
Decoded<WorkerStats> decode_args<WorkerStats>(const PipeMessage& m) {
  return from_json_args<WorkerStats>(m);
}
template <>
Decoded<ClientTotals> decode_args<ClientTotals>(const PipeMessage& m) {
  return from_json_args<ClientTotals>(m);
}
template <>
Decoded<ControllerStats> decode_args<ControllerStats>(const PipeMessage& m) {
  return from_json_args<ControllerStats>(m);
}
template <>
Decoded<LinkStats> decode_args<LinkStats>(const PipeMessage& m) {
  return from_json_args<LinkStats>(m);
}
template <>
Decoded<ZapStats> decode_args<ZapStats>(const PipeMessage& m) {
  return from_json_args<ZapStats>(m);
}
template <>
Decoded<MetricsServerStats> decode_args<MetricsServerStats>(const PipeMessage& m) {
  return from_json_args<MetricsServerStats>(m);
}
template <>
Decoded<Demand> decode_args<Demand>(const PipeMessage& m) {
  return from_json_args<Demand>(m);
}
template <>
Decoded<ScaleDecision> decode_args<ScaleDecision>(const PipeMessage& m) {
  return from_json_args<ScaleDecision>(m);
}

nlohmann::json to_json(const BrokerStats& s) { return write(s); }
nlohmann::json to_json(const ControllerStats& s) { return write(s); }
nlohmann::json to_json(const LinkStats& s) { return write(s); }
nlohmann::json to_json(const ZapStats& s) { return write(s); }
nlohmann::json to_json(const MetricsServerStats& s) { return write(s); }

}  // namespace zyolo
