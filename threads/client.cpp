// The client: request/reply with the guide's Lazy Pirate retries, as an actor.
//
// It keeps up to client.in_flight requests outstanding (default 1: the synchronous client of the
// guide, one request at a time). Outstanding requests are keyed by their request id; as they all
// share one timeout, the order they were sent in is their timer queue, and only its oldest entry
// is ever due first (O(1)). When the oldest gets no answer within the timeout, the client closes
// its DEALER, opens a new one (same routing id, so the broker hands the identity over) and sends
// every outstanding request again; each request ends at its own deadline. The request id makes
// this safe: the broker drops a retry of a request it still holds, and a reply whose id is no
// longer outstanding is a late answer to an earlier attempt, dropped and counted.
//
// Given a list of frontends (endpoints.*_frontend "A,B": a broker pair), the client talks to one
// at a time, starting with the first; each timeout moves the new socket to the next one in the
// list (round), and the outstanding requests are sent there with their ids unchanged, so that a
// request the lost broker held is answered by the other one, and a late answer from either is
// dropped as above. The timeout backs off only when the list comes round to its first again.
// With one endpoint every retry goes back to it, backed off each time, as before.
//
// The timeout (client.adaptive_timeout, on by default) follows the answers, by TCP's rule
// (RFC 6298): smoothed round trip + 4 x its variation, no less than client.min_timeout_ms (or
// timeout_ms if that is less), no more than the deadline. client.timeout_ms is where it starts,
// and how far a run of timeouts doubles it back up. So a retry means a loss, not a queue.
// Off, every timeout is timeout_ms.
//
// After each wake-up it reads every answer waiting (up to a budget) before it sleeps again.
// RETIRE (a scenario lowering the client count) ends the client once what is outstanding ended.
//
// What it reports goes to its supervisor on a PUSH socket of its own, connected to the one PULL
// the supervisor bound for all its clients (src/wire/pipe.hpp, "Over the report socket"): finished
// requests in RECORDS batches, then DONE. One socket carries both, so the records are in before
// the DONE that ends the client. The PUSH has no high-water mark: a send never blocks and never
// drops. What waits in it is records the supervisor keeps anyway (RecordSink holds every one for
// the percentiles), so a supervisor busy elsewhere for a while (a broker restart, a worker stop)
// costs memory it would spend in any case, and a client can never hang on a report at $TERM.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <unordered_map>

#include "src/wire/actor.hpp"
#include "src/wire/monitor.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/sockopts.hpp"
#include "src/wire/stats.hpp"
#include "src/yolo/images.hpp"
#include "threads/actors.hpp"

namespace zyolo {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr milliseconds kFlushEvery{100};  // how often finished requests travel to the supervisor
constexpr std::size_t kFlushBatch = 256;  // ... or sooner, once this many are waiting
constexpr int kDrainBudget = 256;         // answers read per wake-up before the pipe is looked at

// The retransmission timeout of RFC 6298, in microseconds: srtt + 4 x rttvar between a floor and
// a ceiling, backed off (doubled) on a timeout up to `backoff_cap`.
class Timeout {
 public:
  explicit Timeout(const ClientConfig& c)
      : adaptive_(c.adaptive_timeout),
        floor_(std::min(c.min_timeout_ms, c.timeout_ms) * 1000.0),
        ceiling_(c.deadline_ms * 1000.0),
        backoff_cap_(c.timeout_ms * 1000.0),
        rto_(c.timeout_ms * 1000.0) {}

  Clock::duration now() const {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::micro>(rto_));
  }

  // A round trip measured from a request's first send to its answer. (The broker drops a retry of
  // a request it still holds, so the answer is to the first attempt whenever nothing was lost;
  // when something was, the sample errs long, which only makes the next retry later.)
  void sample(double r_us) {
    if (!adaptive_) return;
    if (srtt_ < 0) {
      srtt_ = r_us;
      rttvar_ = r_us / 2;
    } else {
      rttvar_ = 0.75 * rttvar_ + 0.25 * std::abs(srtt_ - r_us);
      srtt_ = 0.875 * srtt_ + 0.125 * r_us;
    }
    // Never under twice the smoothed round trip: once answers come steadily the variation
    // decays and srtt + 4 x rttvar closes in on srtt, so an answer only a little slower than
    // usual (one slower inference, a queue one request longer) would be retried. TCP has its
    // 1 s minimum for that (RFC 6298, 2.4); round trips here go from 0.1 ms to seconds, so the
    // margin is relative. A real loss is still caught within two round trips.
    rto_ = std::clamp(std::max(srtt_ + 4 * rttvar_, 2 * srtt_), floor_, ceiling_);
  }

  // A timeout: doubled, up to client.timeout_ms (never below what the estimate already says).
  void back_off() {
    if (adaptive_) rto_ = std::max(rto_, std::min(2 * rto_, backoff_cap_));
  }

 private:
  bool adaptive_;
  double floor_, ceiling_, backoff_cap_;
  double rto_;
  double srtt_ = -1, rttvar_ = 0;
};

// A request sent and not yet ended.
struct Outstanding {
  uint32_t seq;
  const Image* image;  // null: a synthetic payload that carries the request id
  std::string echo;    // that payload
  Clock::time_point first, sent;  // its first send; its latest send
  uint16_t retries = 0;

  std::string_view payload() const { return image ? std::string_view(image->bytes) : echo; }
};

class Client {
 public:
  Client(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config, std::string id,
         long requests, const ReportTo& report)
      : ctx_(ctx), pipe_(pipe), config_(config), id_(std::move(id)), requests_(requests),
        window_(static_cast<std::size_t>(config.client.in_flight)), timeout_(config.client),
        index_(report.index), reports_(ctx, zmq::socket_type::push) {
    reports_.set(zmq::sockopt::sndhwm, 0);  // no limit: see the top of this file
    reports_.connect(report.endpoint);
    // A routing id unique to this client across processes and hosts, kept over reconnects.
    std::random_device rd;
    routing_id_ = make_routing_id(id_, rd());
    if (!config.client.images.empty())
      images_ = load_images(config.client.images);
    else if (yolo_)
      images_ = synthesize_images(3, static_cast<unsigned>(std::hash<std::string>{}(id_)));
    connect();
  }

  void run() {
    const auto start = Clock::now();
    end_ = start + std::chrono::duration_cast<Clock::duration>(
                       std::chrono::duration<double>(config_.run.duration_s));
    flush_at_ = start + kFlushEvery;
    while (!terminated_) {
      fill_window();
      if (outstanding_.empty()) break;  // nothing more to send, nothing to wait for
      wait();
    }
    if (terminated_) return;
    flush();
    send_report(PipeCommand::Done, args_of(totals()));
    while (!terminated_) on_pipe();  // stay until the supervisor says $TERM
  }

 private:
  // Over tcp and ipc the socket is watched (src/wire/monitor.hpp): when its connection comes
  // back (a broker restarted, a network healed) every outstanding request is sent again at once,
  // not after its timeout.
  void connect() {
    const std::string& frontend = frontends_[current_];
    watch_.reset();  // before the socket it watches
    socket_.emplace(ctx_, zmq::socket_type::dealer);
    apply_socket_options(*socket_, config_, Side::Connects);
    socket_->set(zmq::sockopt::routing_id, routing_id_);
    watch_connection(watch_, ctx_, *socket_, frontend, fmt::format("{}-{}", routing_id_, ++sockets_));
    socket_->connect(frontend);
  }

  bool may_send() const {
    if (retiring_) return false;
    return config_.run.duration_s > 0 ? Clock::now() < end_ : sent_ < requests_;
  }

  // Sends new requests until the window is full or there is nothing more to send.
  void fill_window() {
    while (outstanding_.size() < window_ && may_send()) {
      const auto seq = static_cast<uint32_t>(sent_);
      std::string rid = fmt::format("{}-{}", id_, sent_);
      Outstanding o{seq, images_.empty() ? nullptr : &images_[sent_ % images_.size()], {},
                    Clock::now(), Clock::now(), 0};
      if (!o.image) {  // without images the payload carries the id, so an echo proves the
        o.echo = rid;  // reply belongs to this request
        o.echo.resize(std::max<std::size_t>(rid.size(), config_.client.payload_bytes), '.');
      }
      ++sent_;
      send_request(rid, o.payload());
      order_.push_back(rid);
      outstanding_.emplace(std::move(rid), std::move(o));
    }
  }

  // The oldest outstanding request: the first due, for its timeout and for its deadline.
  const Outstanding& oldest() {
    while (!outstanding_.count(order_.front())) order_.pop_front();  // ended: skipped lazily
    return outstanding_.at(order_.front());
  }

  // One wake-up: sleeps until an answer, a pipe command, or the oldest request's timeout or
  // deadline; then reads what is waiting and acts on what is due.
  void wait() {
    const Outstanding& o = oldest();
    const auto deadline = o.first + milliseconds(config_.client.deadline_ms);
    const auto timeout_at = o.sent + timeout_.now();
    const auto wake = std::min({timeout_at, deadline, flush_at_});
    zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0},
                               {socket_->handle(), 0, ZMQ_POLLIN, 0},
                               {watch_ ? watch_->socket().handle() : nullptr, 0, ZMQ_POLLIN, 0}};
    const auto wait = std::chrono::duration_cast<milliseconds>(wake - Clock::now());
    zmq::poll(items, watch_ ? 3 : 2, std::max(milliseconds(0), wait + milliseconds(1)));
    if (items[0].revents & ZMQ_POLLIN) on_pipe();
    if (items[1].revents & ZMQ_POLLIN) drain();
    if (watch_ && (items[2].revents & ZMQ_POLLIN) && watch_->reconnected() && !outstanding_.empty())
      resend_all(Clock::now());
    const auto now = Clock::now();
    end_overdue(now);
    if (now >= flush_at_) flush();
    if (!outstanding_.empty() && now >= oldest().sent + timeout_.now()) retry_all(now);
  }

  // Reads answers until none is waiting, or the budget is spent.
  void drain() {
    for (int i = 0; i < kDrainBudget && !terminated_; ++i)
      if (!take_reply()) return;
  }

  // Requests past their deadline end as 504, oldest first.
  void end_overdue(Clock::time_point now) {
    while (!outstanding_.empty()) {
      const Outstanding& o = oldest();
      if (now < o.first + milliseconds(config_.client.deadline_ms)) return;
      finish(order_.front(), 504, nullptr);
    }
  }

  // Lazy Pirate: a new socket, to the next frontend of the list (the same one if it is the only
  // one), and every outstanding request sent again on it. The timeout backs off once a whole
  // round of the list has timed out: a silent broker says nothing of how fast the next one is.
  void retry_all(Clock::time_point now) {
    ++reconnects_;
    current_ = (current_ + 1) % frontends_.size();
    if (current_ == 0) timeout_.back_off();
    connect();
    resend_all(now);
  }

  // Sends every outstanding request again on the current socket, each counted as a retry.
  void resend_all(Clock::time_point now) {
    std::deque<std::string> still;
    for (auto& rid : order_) {
      auto it = outstanding_.find(rid);
      if (it == outstanding_.end()) continue;
      ++it->second.retries;
      it->second.sent = now;
      send_request(rid, it->second.payload());
      still.push_back(std::move(rid));
    }
    order_ = std::move(still);
  }

  void send_request(const std::string& rid, std::string_view payload) {
    auto frames = encode_client_request(
        config_.run.service,
        encode_app_request(rid, "", zmq::message_t(payload.data(), payload.size())));
    (void)send_frames(*socket_, frames, zmq::send_flags::dontwait);
  }

  // Reads one reply, if one is waiting, and ends the request it answers; false when none was.
  bool take_reply() {
    auto frames = recv_frames(*socket_, zmq::recv_flags::dontwait);
    if (!frames) return false;
    auto m = decode_client_reply(std::move(*frames));
    if (!m) {
      ++malformed_;
      return true;
    }
    const bool other_service = m->service != config_.run.service;
    auto reply = decode_app_reply(std::move(m->body));
    if (!reply) {
      ++malformed_;
      return true;
    }
    auto it = outstanding_.find(reply->id);
    if (it == outstanding_.end()) {  // an answer to an attempt that ended: never delivered twice
      ++late_;
      return true;
    }
    if (reply->status == 200 && !yolo_ && reply->payload.to_string_view() != it->second.payload())
      ++mismatched_;
    if (other_service) ++wrong_service_;
    finish(reply->id, reply->status, &reply.value());
    return true;
  }

  // Records how request `rid` ended; for YOLO answers, its stage times and detections.
  void finish(const std::string& rid, int status, const AppReply* reply) {
    auto node = outstanding_.extract(rid);
    const Outstanding& o = node.mapped();
    const auto now = Clock::now();
    const auto latency = std::chrono::duration_cast<microseconds>(now - o.first).count();
    ClientRecord r{std::chrono::duration_cast<microseconds>(now.time_since_epoch()).count(),
                   o.seq, static_cast<uint32_t>(latency), static_cast<uint16_t>(status), o.retries,
                   {0, 0, 0, 0}};
    // Only served requests teach the timeout: a 503 (queue full) comes back at once and says
    // nothing about how long a request that gets in takes.
    if (reply && status == 200) timeout_.sample(static_cast<double>(latency));
    if (reply && status == 200 && yolo_) {
      if (auto result = decode_app_result(reply->json)) {
        if (result->service != config_.run.service) ++wrong_service_;
        if (result->times_ms)
          for (int i = 0; i < 4; ++i)
            r.stage_us[i] = static_cast<uint32_t>((*result->times_ms)[i] * 1000.0);
        if (save_) save(*reply, result.value(), o.image);
      }
    }
    if (status == 200) ++answered_;
    records_.push_back(r);
    if (now >= flush_at_ || records_.size() >= kFlushBatch) flush();
  }

  // One line of --save-detections: the request, the image, and what the worker found in it.
  void save(const AppReply& reply, const AppResult& result, const Image* image) {
    detections_.lines += nlohmann::json{
        {"id", reply.id},
        {"image", image ? image->name : ""},
        {"service", config_.run.service},
        {"worker", result.worker},
        {"worker_service", result.service},
        {"detections", result.detections.value_or(nlohmann::ordered_json::array())}}
                             .dump() + "\n";
  }

  // Sends the finished requests and detection lines waiting, if any, to the supervisor.
  void flush() {
    if (!records_.empty()) send_report(PipeCommand::Records, args_of(records_));
    records_.clear();
    if (!detections_.lines.empty()) send_report(PipeCommand::Detections, args_of(detections_));
    detections_.lines.clear();
    flush_at_ = Clock::now() + kFlushEvery;
  }

  // One report to the supervisor; it never blocks (no high-water mark).
  void send_report(PipeCommand c, Frames args) {
    Frames frames = encode_report(index_, c, std::move(args));
    send_frames(reports_, frames);
  }

  // $TERM ends the client; STATS (asked when a run is interrupted) flushes, then answers (both
  // on the report socket, in that order);
  // RETIRE sends nothing new: the client says DONE once what is outstanding has ended.
  void on_pipe() {
    auto m = recv_pipe(pipe_);
    if (!m || m->command == PipeCommand::Term) {
      terminated_ = true;
    } else if (m->command == PipeCommand::Stats) {
      flush();
      send_report(PipeCommand::Stats, args_of(totals()));
    } else if (m->command == PipeCommand::Retire) {
      retiring_ = true;
    }
  }

  ClientTotals totals() const {
    return {id_,         config_.run.service, sent_,   answered_,  late_, mismatched_,
            wrong_service_, malformed_,       reconnects_};
  }

  zmq::context_t& ctx_;
  zmq::socket_ref pipe_;
  const Config& config_;
  std::string id_, routing_id_;
  long requests_;
  const std::size_t window_;  // client.in_flight
  const bool yolo_ = config_.worker.model != "none";
  const bool save_ = !config_.client.save_detections.empty();
  std::vector<Image> images_;  // empty: a synthetic payload that carries the request id
  const std::vector<std::string> frontends_ = config_.frontends();  // one, or a broker pair's
  std::size_t current_ = 0;  // the one the socket is connected to
  std::optional<zmq::socket_t> socket_;
  std::optional<ConnectionWatch> watch_;  // tcp and ipc: tells when the connection is back
  long sockets_ = 0;                      // sockets opened: names each one's monitor
  std::unordered_map<std::string, Outstanding> outstanding_;  // by request id
  std::deque<std::string> order_;  // their ids in the order sent: the timer queue
  Timeout timeout_;
  uint32_t index_;           // the client's index at its supervisor, in every report
  zmq::socket_t reports_;    // PUSH -> the supervisor's PULL: RECORDS, DETECTIONS, DONE, STATS
  ClientRecords records_;
  DetectionLines detections_;  // JSON lines waiting for the next flush
  Clock::time_point flush_at_, end_;
  bool terminated_ = false, retiring_ = false;
  long sent_ = 0, answered_ = 0, late_ = 0, mismatched_ = 0, malformed_ = 0, reconnects_ = 0;
  long wrong_service_ = 0;
};

}  // namespace

void client(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config, const std::string& id,
            long requests, const ReportTo& report) {
  Client c(ctx, pipe, config, id, requests, report);
  signal_ready(pipe);
  c.run();
}

}  // namespace zyolo
