// The controller: sizes each service's worker pool from the demand the broker measures.
//
// It subscribes to the broker's control socket (PUB/SUB: a missed DEMAND is simply superseded by
// the next one) and, on each DEMAND, decides per service and tells its parent [SCALE][JSON]; the
// parent (the supervisor) starts or retires worker actors. It never touches a worker itself.
//
// The policy (config/default.toml, [autoscale]):
//   demand   the mean number of requests in the system, queued or being served, over the
//            broker's interval. By Little's law this is the number of workers that would serve
//            the load with no request waiting, whatever the fleet's size now: a closed-loop
//            client with one request in flight counts one, served or queued.
//   wanted   ceil(demand / target_in_flight), kept within [min_workers, max_workers].
//   up       when wanted > desired for up_delay_ms: desired = wanted (at most max_step_up more).
//   down     once wanted < desired has held for down_delay_ms: desired = the highest wanted of
//            the last down_delay_ms (at most max_step_down fewer), each evaluation, for as long
//            as demand stays below. Taking the highest over a sliding window is what keeps a
//            noisy demand from flapping the fleet.
//   loading  desired counts the workers already asked for, registered or still loading their
//            model: a worker that has not registered yet is not asked for twice. The SCALE
//            message says how many are still starting (desired - registered at the broker).
//
// If no DEMAND comes for three intervals (the broker restarted), it opens a new SUB socket;
// until demand comes again it changes nothing.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <optional>

#include "src/wire/actor.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/sockopts.hpp"
#include "src/wire/stats.hpp"
#include "threads/actors.hpp"

namespace zyolo {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// One service's decision state.
struct Pool {
  int desired = 0;                          // workers asked for (registered or starting)
  std::optional<Clock::time_point> above_since, below_since;
  std::deque<std::pair<Clock::time_point, int>> wanted;  // evaluations within down_delay_ms
};

class Controller {
 public:
  Controller(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config,
             const std::map<std::string, int>& workers)
      : ctx_(ctx), pipe_(pipe), config_(config), policy_(config.autoscale), endpoint_(config.control()),
        silence_(3 * std::max(config.autoscale.interval_ms, 100)) {
    for (const auto& [service, n] : workers) pools_[service].desired = n;
    subscribe();
  }

  void run() {
    while (!terminated_) {
      zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0},
                                 {socket_->handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(
                                                        heard_at_ + silence_ - Clock::now())));
      if (items[0].revents & ZMQ_POLLIN) on_pipe();
      if (terminated_) break;
      if (items[1].revents & ZMQ_POLLIN) on_demand();
      if (Clock::now() >= heard_at_ + silence_) {
        ++n_.resubscribes;
        subscribe();
      }
    }
  }

 private:
  void subscribe() {
    socket_.emplace(ctx_, zmq::socket_type::sub);
    apply_socket_options(*socket_, config_, Side::Connects);
    socket_->set(zmq::sockopt::subscribe, "DEMAND");
    socket_->connect(endpoint_);
    heard_at_ = Clock::now();
  }

  void on_pipe() {
    auto m = recv_pipe(pipe_);
    if (!m || m->command == PipeCommand::Term) {
      terminated_ = true;
    } else if (m->command == PipeCommand::Stats) {
      send_pipe(pipe_, PipeCommand::Stats, args_of(n_));
    }
  }

  void on_demand() {
    auto frames = recv_frames(*socket_, zmq::recv_flags::dontwait);
    if (!frames) return;
    auto m = decode_pipe(std::move(*frames));
    if (!m || m->command != PipeCommand::Demand) return;
    const auto demand = decode_args<Demand>(m.value());
    if (!demand) return;
    heard_at_ = Clock::now();
    for (auto& [service, pool] : pools_) {
      const auto it = demand->services.find(service);
      evaluate(service, pool, it == demand->services.end() ? ServiceDemand{} : it->second);
    }
  }

  // One evaluation of one service: decide, and tell the parent (every time, so that its
  // timeline shows demand and desired workers even when nothing changes).
  void evaluate(const std::string& service, Pool& pool, const ServiceDemand& d) {
    ++n_.evaluations;
    const auto now = Clock::now();
    const double demand = d.demand;
    const int wanted = std::clamp(static_cast<int>(std::ceil(demand / policy_.target_in_flight - 1e-6)),
                                  policy_.min_workers, policy_.max_workers);
    pool.wanted.emplace_back(now, wanted);
    while (now - pool.wanted.front().first > milliseconds(policy_.down_delay_ms))
      pool.wanted.pop_front();

    const int before = pool.desired;
    if (wanted > pool.desired) {
      pool.below_since.reset();
      if (!pool.above_since) pool.above_since = now;
      if (now - *pool.above_since >= milliseconds(policy_.up_delay_ms)) {
        const int most = policy_.max_step_up > 0 ? pool.desired + policy_.max_step_up : wanted;
        pool.desired = std::min(wanted, most);
      }
    } else if (wanted < pool.desired) {
      pool.above_since.reset();
      if (!pool.below_since) pool.below_since = now;
      if (now - *pool.below_since >= milliseconds(policy_.down_delay_ms)) {
        int highest = 0;
        for (const auto& [t, w] : pool.wanted) highest = std::max(highest, w);
        const int least = policy_.max_step_down > 0 ? pool.desired - policy_.max_step_down : highest;
        pool.desired = std::max(highest, least);
      }
    } else {
      pool.above_since.reset();
      pool.below_since.reset();
    }
    if (pool.desired > before) ++n_.ups;
    if (pool.desired < before) ++n_.downs;
    const ScaleDecision scale{service,       demand,      wanted,
                              before,        pool.desired, d.workers,
                              std::max(0L, pool.desired - d.workers), d.clients, d.queue,
                              d.queue_wait_ms, d.service_ms};
    send_pipe(pipe_, PipeCommand::Scale, args_of(scale));
  }

  zmq::context_t& ctx_;
  zmq::socket_ref pipe_;
  const Config& config_;
  AutoscaleConfig policy_;
  std::string endpoint_;
  milliseconds silence_;
  std::optional<zmq::socket_t> socket_;
  Clock::time_point heard_at_;
  std::map<std::string, Pool> pools_;
  bool terminated_ = false;
  ControllerStats n_;
};

}  // namespace

void controller(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config,
                const std::map<std::string, int>& workers) {
  Controller c(ctx, pipe, config, workers);
  signal_ready(pipe);
  c.run();
}

}  // namespace zyolo
