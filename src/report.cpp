// Report arithmetic and formatting.
#include "report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

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

void RecordSink::add_queue_waits(const zmq::message_t& blob) {
  const auto n = blob.size() / sizeof(uint32_t);
  const auto* p = static_cast<const uint32_t*>(blob.data());
  queue_waits_us_.insert(queue_waits_us_.end(), p, p + n);
}

void RecordSink::add(uint32_t client, const std::vector<ClientRecord>& records) {
  for (const auto& r : records) {
    records_.push_back({client, r});
    if (r.status == 200) ++answered_;
  }
}

void RecordSink::finish(Report& report, int64_t start_us, int interval_ms) const {
  std::vector<uint32_t> latencies, stages[4];
  std::set<std::pair<uint32_t, uint32_t>> seen;
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
    }
    const double t = static_cast<double>(e.record.end_us - start_us) / 1e6;
    const auto bin = static_cast<std::size_t>(std::max(0.0, t * 1000.0 / interval_ms));
    if (bin < report.timeline.size() && e.record.status == 200) ++report.timeline[bin].answered;
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

nlohmann::json to_json(const Report& r) {
  nlohmann::json errors_by_status = nlohmann::json::object();
  for (const auto& [status, n] : r.errors_by_status) errors_by_status[std::to_string(status)] = n;
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& w : r.workers)
    workers.push_back({{"id", w.id}, {"service", w.service}, {"served", w.served}});
  nlohmann::json pools = nlohmann::json::array();
  for (const auto& p : r.pools)
    pools.push_back({{"service", p.service}, {"model", p.model}, {"workers", p.workers},
                     {"answered", r.answered_by_service.count(p.service)
                                      ? r.answered_by_service.at(p.service) : 0}});
  nlohmann::json stages = nlohmann::json::object();
  for (const auto& [name, p] : r.stages_ms)
    stages[name] = {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max}};
  nlohmann::json timeline = nlohmann::json::array();
  for (const auto& row : r.timeline)
    timeline.push_back(
        {{"t", row.t}, {"answered", row.answered}, {"workers", row.workers}, {"queue", row.queue}});
  return {
      {"run",
       {{"clients", r.clients}, {"workers", r.workers_started}, {"pools", pools},
        {"transport", r.transport}, {"elapsed_s", r.elapsed_s}, {"interrupted", r.interrupted}}},
      {"requests",
       {{"sent", r.sent}, {"answered", r.answered}, {"errors", r.errors}, {"lost", r.lost},
        {"duplicates_delivered", r.duplicates_delivered},
        {"duplicates_dropped", r.duplicates_dropped}, {"retries", r.retries},
        {"mismatched", r.mismatched}, {"wrong_service", r.wrong_service},
        {"errors_by_status", errors_by_status}}},
      {"latency_ms", {{"p50", r.p50_ms}, {"p90", r.p90_ms}, {"p99", r.p99_ms}, {"max", r.max_ms}}},
      {"stages_ms", stages},
      {"throughput_rps", r.throughput_rps},
      {"workers", workers},
      {"timeline", timeline},
      {"broker", r.broker},
      {"actor_errors", r.actor_errors},
  };
}

std::string summary_text(const Report& r) {
  std::string s;
  s += fmt::format("zyolo run: {} clients, {} workers, transport {}{}\n", r.clients,
                   r.workers_started, r.transport, r.interrupted ? " (interrupted)" : "");
  for (const auto& p : r.pools)
    s += fmt::format("  service {}: {} workers, model {}, answered {}\n", p.service, p.workers,
                     p.model, r.answered_by_service.count(p.service) ? r.answered_by_service.at(p.service) : 0);
  s += fmt::format("  requests   sent {}  answered {}  errors {}  lost {}\n", r.sent, r.answered,
                   r.errors, r.lost);
  s += fmt::format("  duplicates delivered {}  dropped {}   retries {}\n", r.duplicates_delivered,
                   r.duplicates_dropped, r.retries);
  for (const auto& [status, n] : r.errors_by_status)
    s += fmt::format("  errors with status {}: {}\n", status, n);
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
  for (const auto& e : r.actor_errors) s += fmt::format("  actor error: {}\n", e);
  return s;
}

}  // namespace zyolo
