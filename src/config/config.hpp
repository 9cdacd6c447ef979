// Configuration: one struct that holds every setting of a run. Its values come, in this order, from
// config/default.toml (compiled in), an optional --config file, and command-line flags.
#pragma once

#include <array>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace zyolo {

// The most workers (of a pool, or a controller's bound) and clients a run may have.
inline constexpr int kMaxWorkers = 10'000;
inline constexpr int kMaxClients = 100'000;

struct RunConfig {
  int clients = 0;
  int workers = 0;
  long requests = 0;
  double duration_s = 0;
  std::string service;
  std::string transport;  // inproc | ipc | tcp (resolved: never empty after load)
  std::string broker;     // mdp (the load-balancing MDP broker) | proxy (the shared queue)
  int report_interval_ms = 0;
  int progress_ms = 0;
  // Every duration of the run's time line is this many times its configured length (zyolo run
  // --time-scale; scale_time_line in scenario.hpp): 0.5 plays the same run in half the time.
  double time_scale = 1.0;
  // zyolo run --ha: the broker is a pair (Binary Star) of two broker actors, primary and backup;
  // clients and workers get both (ha_pair below).
  bool ha = false;
};

// Each is one endpoint string; the frontend and backend may also be a list, comma-separated
// ("tcp://A:5555,tcp://B:5555"), for clients and workers of a broker pair (README, Reliability):
// one transport, no empty item, no endpoint twice (validate() checks; a broker binds one).
struct EndpointConfig {
  std::string inproc_frontend, inproc_backend;
  std::string ipc_frontend, ipc_backend;
  std::string tcp_frontend, tcp_backend;
  // Where the broker publishes demand (control traffic, read by the controller).
  std::string inproc_control, ipc_control, tcp_control;
};

struct BrokerConfig {
  int heartbeat_ms = 0;
  int liveness = 0;
  int max_queue = 0;
  long max_message_bytes = 0;
  int worker_credit = 1;  // requests a worker may hold at once (1: strict LRU)
  // How long a peer may stay silent before it counts as gone: heartbeat_ms x liveness (the broker
  // expires a worker after it, a worker reconnects after it; MDP's "liveness").
  int silence_ms() const { return heartbeat_ms * liveness; }
};

// The controller's policy (threads/controller.cpp): how many workers each service needs.
struct AutoscaleConfig {
  bool enabled = false;
  int min_workers = 0, max_workers = 0;
  double target_in_flight = 0;  // requests in the system (queued + being served) per worker
  int interval_ms = 0;          // the broker measures and publishes demand this often
  int client_window_ms = 0;     // a client is active if it sent a request within this window
  int up_delay_ms = 0, down_delay_ms = 0;  // how long demand must ask for more (fewer) workers
  int max_step_up = 0, max_step_down = 0;  // workers started (retired) per evaluation; 0: any
};

// [sockets]: ZeroMQ options of every data-plane socket (src/wire/sockopts.hpp).
struct SocketConfig {
  int linger_ms = 0;
  int sndhwm = 0, rcvhwm = 0;
  int reconnect_ivl_ms = 0, reconnect_ivl_max_ms = 0;
  int heartbeat_ivl_ms = 0, heartbeat_timeout_ms = 0;
};

// [curve]: CURVE security (RFC 26) between the processes of a fleet (zyolo broker, workers and
// clients over tcp or ipc; src/wire/curve.hpp). Off while `key` is "".
struct CurveConfig {
  std::string key;         // this process's key-pair file (`zyolo keygen NAME` writes NAME.key)
  std::string server_key;  // workers and clients: the broker's public-key file (NAME.pub)
  std::string allow;       // the broker: a folder of the public keys (*.pub) it lets in
  // Filled in from those files by settle_curve (Z85 text, 40 characters each).
  std::string public_key, secret_key, server_public_key;
  std::vector<std::string> allowed;
  bool enabled() const { return !key.empty(); }
};

struct WorkerConfig {
  std::string model;        // a path, "none" or "auto"
  std::string auto_models;  // ':'-separated candidates for "auto"
  std::string family;
  double conf_threshold = 0, nms_threshold = 0;
  int input_size = 0;
  std::string names;
  int cv_threads = 0;
  double service_ms = 0;
  int reconnect_initial_ms = 0;
  int reconnect_max_ms = 0;
};

struct ClientConfig {
  int in_flight = 1;            // requests outstanding at once (1: synchronous)
  int timeout_ms = 0;           // the fixed timeout; adaptive: where it starts, its back-off's cap
  bool adaptive_timeout = true; // the timeout follows the answers (RFC 6298)
  int min_timeout_ms = 0;       // adaptive: never less
  int deadline_ms = 0;
  int payload_bytes = 0;
  std::string images;  // a folder of .jpg/.png, or "" for synthesised images
  std::string save_detections;  // a JSON Lines file for every answered request's detections
};

// [metrics]: the live Prometheus endpoint of a process (threads/metrics.cpp, src/fleet/metrics.hpp).
struct MetricsConfig {
  std::string listen;  // --metrics HOST:PORT; "" is off
  int refresh_ms = 0;  // the supervisor sends the metrics actor fresh values this often
  int linger_ms = 0;   // after the run ends, keep serving its last values this long
  // Histogram bounds in seconds, comma-separated, ascending: the queue wait and the clients'
  // request duration (`buckets`), and the workers' inference stages (`stage_buckets`).
  std::string buckets, stage_buckets;
  int max_header_bytes = 0;  // a request whose head is longer is answered 431 and closed
  int idle_timeout_ms = 0;   // a connection that sends no whole request this long is closed
  int max_connections = 0;   // more at once are closed as they come
  // Filled in by validate(): the bounds, parsed.
  std::vector<double> bounds, stage_bounds;
};

// [ha]: a broker pair with failover, Binary Star (src/wire/binary_star.hpp, threads/broker.cpp).
struct HaConfig {
  std::string role;      // --ha: "primary" or "backup"; "" is off (one broker, no pair)
  std::string bind;      // --ha-bind: where this broker publishes its state (PUB)
  std::string peer;      // --ha-peer: where the other one publishes its own (SUB)
  int heartbeat_ms = 0;  // the state is published this often
  int missed = 0;        // heartbeats missed before the peer counts as gone
  bool enabled() const { return !role.empty(); }
};

// One pool of workers: its service name, its model and how many workers.
struct PoolConfig {
  std::string service;
  std::string model;  // a path, "none" or "auto"
  int workers = 1;
};

struct Config {
  RunConfig run;
  EndpointConfig endpoints;
  BrokerConfig broker;
  WorkerConfig worker;
  ClientConfig client;
  AutoscaleConfig autoscale;
  SocketConfig sockets;
  CurveConfig curve;
  MetricsConfig metrics;
  HaConfig ha;
  // [[pools]]: several worker pools in one fleet. Empty: one pool of run.workers workers serving
  // run.service with worker.model. Clients spread over the pools' services round-robin.
  std::vector<PoolConfig> pools;

  // The pools to start: `pools`, or else the one pool of run.service, worker.model, run.workers.
  std::vector<PoolConfig> pools_or_default() const;

  // The frontend (client-facing) and backend (worker-facing) endpoints of the chosen transport.
  std::string frontend() const;
  std::string backend() const;
  std::string control() const;  // where the broker publishes demand
  // The same two split into their items (a single endpoint is a list of one).
  std::vector<std::string> frontends() const;
  std::vector<std::string> backends() const;
};

// zyolo run --ha (run.ha): the configurations of the pair's two brokers, the primary's first. Each
// binds one frontend, backend and control endpoint of the run's transport, and publishes its
// state on a channel of its own (its ha.bind; its ha.peer is the other's). The frontend, backend
// and control may each be a list of two, the primary's and the backup's; one endpoint is the
// primary's, and the backup's is derived from it: tcp, the port + 10 (5555 -> 5565); ipc and
// inproc, "-backup" added to the name (before ".ipc"). The state channels are ha.bind (the
// primary's) and ha.peer (the backup's) when given, else derived from each one's frontend: tcp,
// the port + 5 (5560, 5570); ipc and inproc, "-ha" added. Throws ConfigError.
std::array<Config, 2> ha_pair(const Config& config);
// The configuration of the clients and workers of such a pair: both frontends and both backends,
// the primary's first ("A,B": they move to the next on silence).
Config ha_nodes(const Config& config);

// The items of a comma-separated endpoint list, as they are (checked by check_endpoint_list).
std::vector<std::string> split_endpoints(std::string_view list);
// Throws ConfigError, naming `what` (a key or a flag), when `list` has an empty item, mixes
// transports (the part before "://"), or names an endpoint twice.
void check_endpoint_list(std::string_view what, std::string_view list);
// Throws ConfigError when the frontend or backend is a list: `who` binds one of each.
void require_single_endpoints(const Config& config, std::string_view who);

// A configuration error: the message names the file, the key and what is wrong with it.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The defaults of config/default.toml.
Config default_config();

// Overlays the TOML text `toml` (named `source` in errors) onto `config`. Throws ConfigError.
// Top-level keys named in `skip` belong to the caller (a scenario's events) and are left alone.
void apply_toml(Config& config, std::string_view toml, const std::string& source,
                const std::vector<std::string_view>& skip = {});

// Requests and duration are alternatives: a source (a file, the flags) that sets one and not the
// other switches the other off.
void settle_run_length(Config& config, bool requests_set, bool duration_set);

// Overlays the TOML file at `path`. Throws ConfigError if it is missing or bad.
void apply_toml_file(Config& config, const std::string& path);

// Checks cross-field rules and ranges of a whole run; throws ConfigError naming the key.
void validate(Config& config);
// The same for the [worker] keys alone (what `zyolo detect` uses).
void validate_worker(const Config& config);

}  // namespace zyolo
