// Report arithmetic and formatting.
#include "src/fleet/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "src/config/allocator.hpp"

namespace zyolo {
namespace {

// Nearest-rank percentile of sorted values, in milliseconds.
double percentile_ms(const std::vector<uint32_t>& sorted_us, double p) {
  if (sorted_us.empty()) return 0;
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted_us.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted_us.size());
  return sorted_us[rank - 1] / 1000.0;
}

Percentiles percentiles(std::vector<uint32_t> us) {
  std::sort(us.begin(), us.end());
  return {percentile_ms(us, 50), percentile_ms(us, 90), percentile_ms(us, 99),
          us.empty() ? 0 : us.back() / 1000.0};
}

constexpr const char* kStageNames[] = {"decode", "pre", "inference", "post"};

}  // namespace

void RecordSink::add_queue_waits(const std::vector<uint32_t>& waits_us) {
  queue_waits_us_.insert(queue_waits_us_.end(), waits_us.begin(), waits_us.end());
}

void RecordSink::add(uint32_t client, const std::vector<ClientRecord>& records) {
  for (const auto& r : records) {
    records_.push_back({client, r});
    if (r.status == 200) ++answered_;
  }
}

// The phases between events (see Phase), from the answered latencies and error counts of each.
static void finish_phases(Report& report, std::vector<std::vector<uint32_t>>& latencies,
                          const std::vector<long>& errors) {
  for (std::size_t i = 0; i < latencies.size(); ++i) {
    Phase p;
    p.from = i == 0 ? 0 : report.events[i - 1].t;
    p.to = i < report.events.size() ? report.events[i].t : report.elapsed_s;
    p.starts_with = i == 0 ? "start" : report.events[i - 1].kind;
    p.answered = static_cast<long>(latencies[i].size());
    p.errors = errors[i];
    p.latency_ms = percentiles(std::move(latencies[i]));
    report.phases.push_back(p);
  }
}

// How the fleet recovered from each fault that ended: from its end to the first answer, and to
// the start of the first 1 s window whose throughput is back to 90% of the 3 s before the fault.
// (A fault the fleet did not notice recovers in 0 s.)
// `answers` holds the times (s since the start) of every answer, sorted.
static void measure_recovery(std::vector<FaultEvent>& events, const std::vector<double>& answers) {
  auto count = [&](double from, double to) {
    return static_cast<double>(std::lower_bound(answers.begin(), answers.end(), to) -
                               std::lower_bound(answers.begin(), answers.end(), from));
  };
  const double last = answers.empty() ? 0 : answers.back();
  for (auto& e : events) {
    if (e.end_t < 0) continue;
    auto first = std::lower_bound(answers.begin(), answers.end(), e.end_t);
    if (first != answers.end()) e.first_answer_s = *first - e.end_t;
    const double window = std::min(3.0, e.t);
    if (window < 0.5) continue;  // too early in the run to know the throughput before
    const double before = count(e.t - window, e.t) / window;
    if (before <= 0) continue;
    for (double x = e.end_t; x + 1.0 <= last; x += 0.05)
      if (count(x, x + 1.0) >= 0.9 * before) {
        e.recover90_s = x - e.end_t;
        break;
      }
  }
}

void RecordSink::finish(Report& report, int64_t start_us, int interval_ms) const {
  std::vector<uint32_t> latencies, stages[4];
  std::vector<std::vector<uint32_t>> bins(report.timeline.size());
  std::map<int, std::vector<uint32_t>> error_latencies;
  std::vector<double> answers;  // seconds since the start
  std::set<std::pair<uint32_t, uint32_t>> seen;
  // Phases: cut at every event's time.
  std::vector<double> cuts;
  for (const auto& e : report.events) cuts.push_back(e.t);
  std::vector<std::vector<uint32_t>> phase_latencies(report.events.empty() ? 0 : cuts.size() + 1);
  std::vector<long> phase_errors(phase_latencies.size());
  for (const auto& e : records_) {
    // One request must end once: a second record of the same request is a duplicate delivery.
    if (!seen.insert({e.client, e.record.seq}).second) {
      ++report.duplicates_delivered;
      continue;
    }
    report.retries += e.record.retries;
    if (e.record.status == 200) {
      ++report.answered;
      latencies.push_back(e.record.latency_us);
      const auto& st = e.record.stage_us;
      if (st[0] || st[1] || st[2] || st[3])
        for (int i = 0; i < 4; ++i) stages[i].push_back(st[i]);
    } else {
      ++report.errors;
      ++report.errors_by_status[e.record.status];
      error_latencies[e.record.status].push_back(e.record.latency_us);
    }
    const double t = static_cast<double>(e.record.end_us - start_us) / 1e6;
    const auto bin = static_cast<std::size_t>(std::max(0.0, t * 1000.0 / interval_ms));
    if (!phase_latencies.empty()) {
      const auto phase = static_cast<std::size_t>(std::upper_bound(cuts.begin(), cuts.end(), t) - cuts.begin());
      if (e.record.status == 200) phase_latencies[phase].push_back(e.record.latency_us);
      else ++phase_errors[phase];
    }
    if (e.record.status == 200) {
      answers.push_back(t);
      if (bin < report.timeline.size()) {
        ++report.timeline[bin].answered;
        bins[bin].push_back(e.record.latency_us);
      }
    }
  }
  finish_phases(report, phase_latencies, phase_errors);
  for (std::size_t i = 0; i < bins.size(); ++i) report.timeline[i].p99_ms = percentiles(std::move(bins[i])).p99;
  for (auto& [status, us] : error_latencies) report.error_latency_ms[status] = percentiles(std::move(us));
  std::sort(answers.begin(), answers.end());
  measure_recovery(report.events, answers);
  for (auto& w : report.workers) {
    const double end = w.stopped_s >= 0 ? w.stopped_s : report.elapsed_s;
    w.answered_while_up = std::lower_bound(answers.begin(), answers.end(), end) -
                          std::lower_bound(answers.begin(), answers.end(), w.started_s);
  }
  if (!report.timeline.empty()) {
    report.rss_start_mb = report.timeline.front().rss_mb;
    report.rss_end_mb = report.timeline.back().rss_mb;
    for (const auto& row : report.timeline) report.rss_max_mb = std::max(report.rss_max_mb, row.rss_mb);
  }
  std::sort(latencies.begin(), latencies.end());
  report.p50_ms = percentile_ms(latencies, 50);
  report.p90_ms = percentile_ms(latencies, 90);
  report.p99_ms = percentile_ms(latencies, 99);
  report.max_ms = latencies.empty() ? 0 : latencies.back() / 1000.0;
  report.lost = report.sent - report.answered - report.errors;
  if (!queue_waits_us_.empty()) report.stages_ms["queue_wait"] = percentiles(queue_waits_us_);
  for (int i = 0; i < 4; ++i)
    if (!stages[i].empty()) report.stages_ms[kStageNames[i]] = percentiles(std::move(stages[i]));
  report.throughput_rps = report.elapsed_s > 0 ? report.answered / report.elapsed_s : 0;
}

namespace {

nlohmann::json timeline_json(const Report& r) {
  nlohmann::json timeline = nlohmann::json::array();
  for (const auto& row : r.timeline) {
    timeline.push_back({{"t", row.t}, {"answered", row.answered}, {"p99_ms", row.p99_ms},
                        {"workers", row.workers}, {"queue", row.queue}, {"clients", row.clients},
                        {"rss_mb", row.rss_mb}, {"broker_cpu_us", row.broker_cpu_us},
                        {"broker_requests", row.broker_requests}});
    if (r.autoscale.enabled) {
      timeline.back()["demand"] = row.demand;
      timeline.back()["desired"] = row.desired;
    }
  }
  return timeline;
}

nlohmann::json autoscale_json(const Report& r) {
  nlohmann::json autoscale = nullptr;
  if (r.autoscale.enabled) {
    const auto& a = r.autoscale;
    nlohmann::json decisions = nlohmann::json::array();
    for (const auto& d : a.decisions)
      decisions.push_back({{"t", d.t}, {"service", d.service}, {"from", d.from}, {"to", d.to},
                           {"demand", d.demand}, {"clients", d.clients}, {"registered", d.registered}});
    autoscale = {{"min_workers", a.policy.min_workers}, {"max_workers", a.policy.max_workers},
                 {"target_in_flight", a.policy.target_in_flight}, {"interval_ms", a.policy.interval_ms},
                 {"up_delay_ms", a.policy.up_delay_ms}, {"down_delay_ms", a.policy.down_delay_ms},
                 {"decisions", decisions}, {"direction_changes", a.direction_changes()},
                 {"started", a.started}, {"retired", a.retired},
                 {"controller", a.controller ? to_json(*a.controller) : nlohmann::json()}};
  }
  return autoscale;
}

nlohmann::json phases_json(const Report& r) {
  nlohmann::json phases = nlohmann::json::array();
  for (const auto& p : r.phases)
    phases.push_back({{"from", p.from}, {"to", p.to}, {"starts_with", p.starts_with},
                      {"answered", p.answered}, {"errors", p.errors},
                      {"throughput_rps", p.to > p.from ? static_cast<double>(p.answered) / (p.to - p.from) : 0.0},
                      {"latency_ms", {{"p50", p.latency_ms.p50}, {"p90", p.latency_ms.p90},
                                      {"p99", p.latency_ms.p99}, {"max", p.latency_ms.max}}}});
  return phases;
}

}  // namespace

// zyolo run --ha: the pair's records in time order, and each broker's last state; null otherwise.
static nlohmann::json ha_json(const Report& r) {
  if (r.ha.empty() && r.ha_final.empty()) return nullptr;
  nlohmann::json records = nlohmann::json::array(), final_states = nlohmann::json::object();
  for (const auto& h : r.ha)
    records.push_back({{"t", h.t}, {"broker", h.broker}, {"kind", h.kind}, {"from", h.from}, {"to", h.to},
                       {"text", h.text}});
  for (const auto& [broker, state] : r.ha_final) final_states[broker] = state;
  return {{"records", records}, {"final", final_states}};
}

nlohmann::json to_json(const Report& r) {
  nlohmann::json errors_by_status = nlohmann::json::object();
  for (const auto& [status, n] : r.errors_by_status) errors_by_status[std::to_string(status)] = n;
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& w : r.workers)
    workers.push_back({{"id", w.id}, {"service", w.service}, {"served", w.served},
                       {"started_s", w.started_s}, {"stopped_s", w.stopped_s},
                       {"crashed", w.crashed}, {"retired", w.retired}, {"answered_while_up", w.answered_while_up},
                       {"share_while_up", w.share()}});
  nlohmann::json pools = nlohmann::json::array();
  for (const auto& p : r.pools)
    pools.push_back({{"service", p.service}, {"model", p.model}, {"workers", p.workers},
                     {"answered", r.answered_by_service.count(p.service)
                                      ? r.answered_by_service.at(p.service) : 0}});
  nlohmann::json stages = nlohmann::json::object();
  for (const auto& [name, p] : r.stages_ms)
    stages[name] = {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max}};
  nlohmann::json broker = r.broker ? to_json(*r.broker) : nlohmann::json::object();
  if (r.broker && r.broker_incarnations > 1) broker["incarnations"] = r.broker_incarnations;
  if (r.curve) broker["curve"] = to_json(*r.curve);
  nlohmann::json events = nlohmann::json::array();
  for (const auto& e : r.events)
    events.push_back({{"t", e.t}, {"kind", e.kind}, {"detail", e.detail}, {"end_t", e.end_t},
                      {"first_answer_s", e.first_answer_s}, {"recover90_s", e.recover90_s}});
  for (std::size_t i = 0; i < r.events.size(); ++i) {
    const auto& e = r.events[i];
    if (!e.broker.empty()) events[i]["broker"] = e.broker;
    if (e.failover) events[i]["failover_s"] = e.failover_s;
  }
  nlohmann::json error_latency = nlohmann::json::object();
  for (const auto& [status, p] : r.error_latency_ms)
    error_latency[std::to_string(status)] = {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max}};
  return {
      {"run",
       {{"clients", r.clients}, {"workers", r.workers_started}, {"pools", pools},
        {"transport", r.transport}, {"broker", r.broker_kind}, {"scenario", r.scenario}, {"elapsed_s", r.elapsed_s},
        {"time_scale", r.time_scale}, {"in_flight", r.in_flight},
        {"interrupted", r.interrupted}, {"allocator", allocator_name()}}},
      {"requests",
       {{"sent", r.sent}, {"answered", r.answered}, {"errors", r.errors}, {"lost", r.lost},
        {"duplicates_delivered", r.duplicates_delivered},
        {"duplicates_dropped", r.duplicates_dropped}, {"retries", r.retries},
        {"mismatched", r.mismatched}, {"wrong_service", r.wrong_service},
        {"errors_by_status", errors_by_status}, {"error_latency_ms", error_latency}}},
      {"latency_ms", {{"p50", r.p50_ms}, {"p90", r.p90_ms}, {"p99", r.p99_ms}, {"max", r.max_ms}}},
      {"stages_ms", stages},
      {"throughput_rps", r.throughput_rps},
      {"workers", workers},
      {"timeline", timeline_json(r)},
      {"events", events},
      {"phases", phases_json(r)},
      {"memory_mb", {{"start", r.rss_start_mb}, {"end", r.rss_end_mb}, {"max", r.rss_max_mb}}},
      {"broker", broker},
      {"link", r.link ? to_json(*r.link) : nlohmann::json()},
      {"ha", ha_json(r)},
      {"actor_errors", r.actor_errors},
      {"autoscale", autoscale_json(r)},
  };
}

std::string ha_record_text(const HaRecord& r) {
  if (r.from != r.to) return fmt::format("{} -> {} ({})", r.from, r.to, r.text);
  if (r.kind == "anomaly") return r.text;
  return fmt::format("{}: {}", r.from, r.text);
}

int AutoscaleReport::direction_changes() const {
  std::map<std::string, int> last;  // per service: +1 rising, -1 falling, 0 not moved yet
  int changes = 0;
  for (const auto& d : decisions) {
    const int dir = d.to > d.from ? 1 : -1;
    int& before = last[d.service];
    if (before != 0 && before != dir) ++changes;
    before = dir;
  }
  return changes;
}

// The broker's (or proxy's), the controller's and the link's lines of the summary.
static std::string counters_text(const Report& r) {
  std::string s;
  const int brokers = r.ha_final.empty() ? 1 : 2;  // a pair starts two
  const std::string restarts =
      r.broker_incarnations > brokers ? fmt::format("  restarts {}", r.broker_incarnations - brokers) : "";
  if (r.broker && r.broker_kind == "proxy") {
    s += fmt::format("  proxy      forwarded {} requests, {} replies (knows no workers: no re-queue, "
                     "no expiry){}\n", r.broker->requests, r.broker->replies, restarts);
  } else if (r.broker) {
    const auto& b = *r.broker;
    const auto late = b.unknown_worker_commands.find("REPLY");
    s += fmt::format("  broker     requeued {}  expired workers {}  lost in transit {}  late replies "
                     "dropped {}  retries dropped {}  503 {}{}\n",
                     b.requeued, b.expired, b.lost_in_transit,
                     late == b.unknown_worker_commands.end() ? 0 : late->second, b.retries_dropped,
                     b.rejected_busy, restarts);
  }
  if (r.autoscale.enabled) {
    const auto& a = r.autoscale;
    int ups = 0, downs = 0;
    for (const auto& d : a.decisions) (d.to > d.from ? ups : downs) += 1;
    s += fmt::format("  autoscale  {}..{} workers, target {} in flight each: {} decisions ({} up, {} "
                     "down), direction changes {}; started {}, retired {}\n",
                     a.policy.min_workers, a.policy.max_workers, a.policy.target_in_flight,
                     a.decisions.size(), ups, downs, a.direction_changes(), a.started, a.retired);
    if (r.broker)
      s += fmt::format("             retirements: requests served after DISCONNECT {}, re-queued {}\n",
                       r.broker->crossed_disconnect, r.broker->requeued_after_disconnect);
  }
  if (r.link)
    s += fmt::format("  link       forwarded {}  dropped {}  delayed {}\n", r.link->forwarded,
                     r.link->dropped, r.link->delayed);
  return s;
}

std::string summary_text(const Report& r) {
  std::string s;
  s += fmt::format("zyolo run: {} clients{}, {} workers, transport {}{}{}{}{}\n", r.clients,
                   r.in_flight == 1 ? "" : fmt::format(" ({} in flight each)", r.in_flight),
                   r.workers_started, r.transport,
                   r.broker_kind.empty() || r.broker_kind == "mdp" ? "" : ", broker " + r.broker_kind,
                   r.scenario.empty() ? "" : ", scenario " + r.scenario,
                   r.time_scale == 1 ? "" : fmt::format(", time scale {:g}", r.time_scale),
                   r.interrupted ? " (interrupted)" : "");
  for (const auto& p : r.pools)
    s += fmt::format("  service {}: {} workers, model {}, answered {}\n", p.service, p.workers,
                     p.model, r.answered_by_service.count(p.service) ? r.answered_by_service.at(p.service) : 0);
  s += fmt::format("  requests   sent {}  answered {}  errors {}  lost {}\n", r.sent, r.answered,
                   r.errors, r.lost);
  s += fmt::format("  duplicates delivered {}  dropped {}   retries {}\n", r.duplicates_delivered,
                   r.duplicates_dropped, r.retries);
  for (const auto& [status, n] : r.errors_by_status)
    s += fmt::format("  errors with status {}: {} (p99 after {:.2f} ms)\n", status, n,
                     r.error_latency_ms.count(status) ? r.error_latency_ms.at(status).p99 : 0.0);
  if (r.mismatched) s += fmt::format("  MISMATCHED replies: {}\n", r.mismatched);
  if (r.wrong_service) s += fmt::format("  answers from the WRONG SERVICE: {}\n", r.wrong_service);
  s += fmt::format("  throughput {:.0f} requests/s over {:.2f} s\n", r.throughput_rps, r.elapsed_s);
  s += fmt::format("  latency ms p50 {:.2f}  p90 {:.2f}  p99 {:.2f}  max {:.2f}\n", r.p50_ms,
                   r.p90_ms, r.p99_ms, r.max_ms);
  for (const char* stage : {"queue_wait", "decode", "pre", "inference", "post"}) {
    auto it = r.stages_ms.find(stage);
    if (it == r.stages_ms.end()) continue;
    s += fmt::format("  {:<10} ms p50 {:.2f}  p90 {:.2f}  p99 {:.2f}  max {:.2f}\n", stage,
                     it->second.p50, it->second.p90, it->second.p99, it->second.max);
  }
  long served = 0;
  for (const auto& w : r.workers) served += w.served;
  s += "  workers   ";
  for (const auto& w : r.workers)
    s += fmt::format(" {} {} ({:.1f}%)", w.id, w.served,
                     served ? 100.0 * static_cast<double>(w.served) / static_cast<double>(served) : 0.0);
  s += "\n";
  for (const auto& w : r.workers)
    if (w.started_s > 0.5 || w.stopped_s >= 0)
      s += fmt::format("  worker {} up {:.2f}..{} s{}: served {:.1f}% of the answers meanwhile\n", w.id,
                       w.started_s, w.stopped_s >= 0 ? fmt::format("{:.2f}", w.stopped_s) : "end",
                       w.crashed ? " (crashed)" : w.retired ? " (retired)" : "", 100 * w.share());
  if (!r.events.empty()) s += "  events (recovery: to the first answer / to 90% of the throughput before)\n";
  for (const auto& e : r.events) {
    s += fmt::format("    {:6.2f} s  {:<14} {}", e.t, e.kind, e.detail);
    if (e.end_t >= 0) {
      auto secs = [](double v) { return v >= 0 ? fmt::format("{:.2f} s", v) : std::string("not seen"); };
      s += fmt::format("  [ends {:.2f} s{}; recovery {} / {}]", e.end_t,
                       e.failover ? fmt::format(", failover {:.2f} s", e.failover_s) : "",
                       secs(e.first_answer_s), secs(e.recover90_s));
    }
    s += "\n";
  }
  s += counters_text(r);
  if (!r.ha_final.empty()) {
    long transitions = 0;
    for (const auto& h : r.ha) transitions += h.kind == "transition";
    std::vector<std::string> finals;
    for (const auto& [broker, state] : r.ha_final) finals.push_back(broker + " " + state);
    s += fmt::format("  ha         stopped {}; transitions {}\n", fmt::join(finals, ", "), transitions);
  }
  if (r.rss_max_mb > 0)
    s += fmt::format("  memory MB: start {:.0f}  end {:.0f}  max {:.0f}\n", r.rss_start_mb, r.rss_end_mb, r.rss_max_mb);
  for (const auto& e : r.actor_errors) s += fmt::format("  actor error: {}\n", e);
  return s;
}

}  // namespace zyolo
