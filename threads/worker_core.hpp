// What the two kinds of worker share. The MDP worker (threads/worker.cpp) and the shared queue's
// REP worker (threads/rep_worker.cpp) differ only in their socket and its protocol; each derives
// from WorkerCore, which does the work of one request (the echo after worker.service_ms, or the
// detector: decode, detect, the reply's JSON) and obeys the supervisor's pipe ($TERM, STATS,
// CRASH, FREEZE, RETIRE). It holds no socket but the pipe's child end: the data-plane socket is
// the derived worker's, and all of it lives in the worker's one thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "src/config/config.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"
#include "src/yolo/detector.hpp"

namespace zyolo {

class WorkerCore {
 public:
  using Clock = std::chrono::steady_clock;
  using milliseconds = std::chrono::milliseconds;

  // Loads config.worker.model unless it is "none", before the derived worker connects: nothing
  // is routed to a worker still loading. Throws (at start-up) when the model will not load.
  WorkerCore(zmq::socket_ref pipe, const Config& config, std::string id);
  virtual ~WorkerCore() = default;
  WorkerCore(const WorkerCore&) = delete;
  WorkerCore& operator=(const WorkerCore&) = delete;

 protected:
  // The reply body to one request body: the echo or the detections (200); 400 when the body is
  // not a zyolo request or its payload not an image; 500 when inference fails.
  Frames answer(Frames body);

  // Reads one pipe command: $TERM (or a broken pipe) ends the worker; STATS answers stats();
  // CRASH arms crash_at_ (one heartbeat from now, or the next request if that comes first);
  // FREEZE [ms] makes the next request hang that long; RETIRE asks the worker to leave.
  void on_pipe();
  // Polls only the pipe until `deadline` or $TERM.
  void wait_on_pipe(Clock::time_point deadline);
  // With a request in hand, before serving it: a CRASH asked for happens now, a FREEZE hangs
  // first. False when the request must not be served (crashed, or $TERM during the hang).
  bool admit_request(zmq::socket_ref socket);  // null when it has none
  // CRASH: `socket` (if any) is set to close with linger 0 and the worker ends without a word to
  // its peer. The STATS it sends is bookkeeping for the report, not something a crash would say.
  void crash(zmq::socket_ref socket);

  // The worker's counters: the work's, and what the derived worker counts in n_ (reconnects,
  // malformed messages, requests that crossed its DISCONNECT).
  WorkerStats stats() const;
  // RETIRE done: [DONE][its counters] on the pipe, its last word.
  void say_done();

  // The time until `t`, rounded up: a poll timeout.
  static milliseconds until(Clock::time_point t);

  zmq::socket_ref pipe_;
  const Config& config_;
  const std::string id_;
  bool terminated_ = false, crashed_ = false;
  bool retire_ = false;  // RETIRE asked: leave after the request in hand
  Clock::time_point crash_at_ = Clock::time_point::max();  // CRASH asked: at the latest then
  WorkerStats n_;  // the counters

 private:
  void hang();
  Frames detect(AppRequest& request);
  // A reply's result JSON saying what went wrong.
  std::string error_result(std::string_view what) const;

  std::optional<Detector> detector_;  // nothing: the echo worker
  milliseconds freeze_for_{0};        // > 0: the next request hangs this long first
};

}  // namespace zyolo
