// The actors. Each is one entry function that runs in its own thread, started and stopped through
// zyolo::Actor (src/wire/actor.hpp). Each owns its sockets and its state (a struct private to its
// file); it talks to the world only through ZeroMQ messages.
//
// Pipe commands every actor answers:
//   $TERM            close the sockets and return
//   STATS            answer [STATS] with the actor's counters
// and sends $READY once its sockets are bound or connected (and, for a worker, its model loaded).
// What each pipe command carries, and each actor's counters (BrokerStats, WorkerStats, ...), is
// the codec's: src/wire/pipe.hpp and src/wire/stats.hpp, the one place that encodes and decodes
// them; the lines below name the struct, not its fields, so the two cannot drift apart.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "src/config/config.hpp"

namespace zyolo {

// MDP/0.1 broker: binds config.frontend() (clients) and config.backend() (workers); serves each
// service's waiting workers least-recently-used; heartbeats workers and expires silent ones.
// STATS: BrokerStats, with the queue waits since the last STATS.
void broker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config);

// The shared queue (--broker proxy): binds a ROUTER on config.frontend() and a DEALER on
// config.backend() and runs zmq_proxy_steerable between them, round-robin to the REP workers
// connected; it reads no frame and knows no worker. STATS: BrokerStats with its proxy traffic
// (messages and bytes in and out, libzmq's STATISTICS) and nothing of an MDP broker's counters.
void proxy(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config);

// ZAP handler (RFC 27) of a broker with CURVE on: binds inproc://zeromq.zap.01 in `ctx` and lets
// in the peers whose public key (Z85) is in `allowed`, refusing and counting the rest; on a broker
// pair's state channel (ZAP domain kZapDomainHa) only `pair_key`, the pair's own public key ("":
// not one of a pair, nobody). Start it before the broker. STATS: ZapStats.
void zap_handler(zmq::context_t& ctx, zmq::socket_ref pipe, const std::vector<std::string>& allowed,
                 const std::string& pair_key);

// Actors take a settled model: config.worker.model is a model path or "none", never "auto"
// (resolve_model in src/yolo/models.hpp settles it before any actor starts).
//
// MDP/0.1 worker `id` serving config.run.service: connects to config.backend(), heartbeats,
// reconnects with back-off when the broker is gone. With a model it loads it BEFORE it registers
// (so nothing is routed to a worker still loading) and answers each image with its detections;
// with model "none" it echoes the payload after config.worker.service_ms.
// STATS: WorkerStats. CRASH: exit inside the next request (at the latest after one heartbeat) without DISCONNECT,
// saying STATS; FREEZE: hang inside the next request. RETIRE: leave gracefully (DISCONNECT,
// serve any request that crossed it, close on the broker's DISCONNECT), say DONE (WorkerStats)
// and return. $TERM leaves the same way, waiting at most one heartbeat for the broker.
void worker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config, const std::string& id);

// Plain REP worker `id` for the shared queue: connects a REP socket to config.backend() (the
// proxy's DEALER) and answers [MDPC01][service][body...] with [MDPC01][service][reply...], the
// same work as the MDP worker's; no READY, no heartbeats. A new socket after broker.heartbeat_ms
// x liveness of silence. STATS: WorkerStats. CRASH, FREEZE, RETIRE (DONE) and $TERM as the MDP
// worker, but with no
// handshake: requests queued for it when it goes are lost to it (the clients' retries resend).
void rep_worker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config,
                const std::string& id);

// Where a client reports (src/wire/pipe.hpp, "Over the report socket"): the endpoint of a PULL
// socket its parent bound in the same context before starting it, and the index the parent knows
// the client by, which every report carries.
struct ReportTo {
  std::string endpoint;
  uint32_t index = 0;
};

// Synchronous client `id`: sends `requests` requests (or, with config.run.duration_s, as many as
// fit), one at a time, with Lazy Pirate retries until each request's deadline. It connects a PUSH
// socket of its own to `report.endpoint` and reports there, not on its pipe: each finished request
// in RECORDS batches (every 100 ms, or sooner once a batch holds 256), --save-detections lines in
// DETECTIONS, and at the end DONE (ClientTotals); then it waits for $TERM. STATS (on the pipe):
// it sends its records so far, then STATS (ClientTotals), both on the report socket. RETIRE: end
// after the request in flight. Its pipe carries nothing from it but $READY (and $ERROR).
void client(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config, const std::string& id,
            long requests, const ReportTo& report);

// The controller: subscribes to the broker's DEMAND on config.control(), decides each service's
// worker count by config.autoscale, and tells its parent SCALE (a ScaleDecision) on every
// evaluation.
// `workers` names the services it sizes and the workers each starts with.
// STATS: ControllerStats.
void controller(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config,
                const std::map<std::string, int>& workers);

// The metrics endpoint (README, "Metrics"): binds a ZMQ_STREAM socket on tcp://config.metrics.listen
// and answers HTTP/1.1 GET and HEAD of /metrics, /healthz and /readyz from what its parent last
// sent it in EXPOSE (the fleet's families and the process's health), adding its own HTTP counters
// and the process's (/proc/self). Throws at start when it cannot listen there.
// STATS: MetricsServerStats.
void metrics_server(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config);

// Where the link (threads/link.cpp) listens for nodes, and the broker endpoints it connects to.
struct LinkEndpoints {
  std::string client_side, worker_side;  // bound by the link; clients and workers connect here
  std::string frontend, backend;         // the broker's
};

// A simulated network between the nodes and the broker. RULE (a LinkRule) drops all
// traffic of the nodes (partition), a fraction of it (drop) or delays it (delay) for ms; `nodes`
// is all, clients, workers or a comma-separated list of node ids (c0, w1, ...). A connection
// silent for idle_ms is closed. STATS: LinkStats.
void link(zmq::context_t& ctx, zmq::socket_ref pipe, const LinkEndpoints& endpoints, int idle_ms,
          uint64_t seed);

}  // namespace zyolo
