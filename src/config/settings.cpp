// The settings table: see settings.hpp. One row a setting; the rows are data, the functions below
// the only code that reads a value into a Config.
#include "src/config/settings.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <limits>
#include <optional>
#include <sstream>
#include <type_traits>

namespace zyolo {
namespace {

// The accessor of the Config member at `path`, e.g. FIELD(run.clients).
#define FIELD(path) +[](Config& c) -> decltype((c.path)) { return c.path; }

constexpr double kMaxInt = std::numeric_limits<int>::max();
constexpr double kWorkers = kMaxWorkers;
constexpr double kClients = kMaxClients;
constexpr double kHour = 3'600'000;  // ms

// clang-format off
const std::array kSettings = {
  Setting{"run.clients", FIELD(run.clients), 1, kClients, {}, false, "--clients", "N",
          "Client threads, each with one request in flight"},
  Setting{"run.workers", FIELD(run.workers), 1, kWorkers, {}, false, "--workers", "N",
          "Worker threads of the one service"},
  Setting{"run.requests", FIELD(run.requests), 0, 1e9, {}, false, "--requests", "N",
          "Requests in all, spread over the clients; instead of --duration"},
  Setting{"run.duration_s", FIELD(run.duration_s), 0, 1e7, {}, false, "--duration", "S",
          "Run for S seconds; instead of --requests"},
  Setting{"run.service", FIELD(run.service), 0, 0, {}, false, {}, {}, "The service the clients ask for"},
  Setting{"run.transport", FIELD(run.transport), 0, 0, "inproc ipc tcp", true, "--transport", "NAME",
          "Data-plane transport: inproc, ipc or tcp"},
  Setting{"run.broker", FIELD(run.broker), 0, 0, "mdp proxy", false, "--broker", "NAME",
          "mdp: the load-balancing Majordomo broker; proxy: the shared queue, zmq_proxy_steerable "
          "to plain REP workers"},
  Setting{"run.report_interval_ms", FIELD(run.report_interval_ms), 10, kHour, {}, false, {}, {},
          "The report's timeline: one row this often"},
  Setting{"run.progress_ms", FIELD(run.progress_ms), 10, 60'000, {}, false, {}, {},
          "The progress line is redrawn this often"},
  Setting{"run.time_scale", FIELD(run.time_scale), 0.05, 20, {}, false, "--time-scale", "X",
          "Play the run's whole time line X times as long: its length, the scenario's events, "
          "heartbeats, timeouts, reconnects and autoscale delays; 0.5 plays the same faults in "
          "half the time"},
  Setting{"run.ha", FIELD(run.ha), 0, 0, {}, false, {}, {},
          "zyolo run --ha: the broker is a pair with failover (two broker actors)"},
  Setting{"endpoints.inproc_frontend", FIELD(endpoints.inproc_frontend)},
  Setting{"endpoints.inproc_backend", FIELD(endpoints.inproc_backend)},
  Setting{"endpoints.ipc_frontend", FIELD(endpoints.ipc_frontend)},
  Setting{"endpoints.ipc_backend", FIELD(endpoints.ipc_backend)},
  Setting{"endpoints.tcp_frontend", FIELD(endpoints.tcp_frontend)},
  Setting{"endpoints.tcp_backend", FIELD(endpoints.tcp_backend)},
  Setting{"endpoints.inproc_control", FIELD(endpoints.inproc_control)},
  Setting{"endpoints.ipc_control", FIELD(endpoints.ipc_control)},
  Setting{"endpoints.tcp_control", FIELD(endpoints.tcp_control)},
  Setting{"broker.heartbeat_ms", FIELD(broker.heartbeat_ms), 10, 600'000},
  Setting{"broker.liveness", FIELD(broker.liveness), 1, 100},
  Setting{"broker.max_queue", FIELD(broker.max_queue), 1, 1e7},
  Setting{"broker.max_message_bytes", FIELD(broker.max_message_bytes), 1024, kMaxInt},
  Setting{"broker.worker_credit", FIELD(broker.worker_credit), 1, 1000, {}, false, "--worker-credit", "C",
          "Requests the broker may hand one worker at once; 1 is strict LRU (any RFC 7 worker)"},
  Setting{"worker.model", FIELD(worker.model), 0, 0, {}, false, "--model", "MODEL",
          "A YOLO model (.onnx, or darknet .cfg/.weights), 'none' for echo workers, or 'auto' "
          "(the first of worker.auto_models found); clients send images to a model, echo "
          "payloads to 'none'"},
  Setting{"worker.auto_models", FIELD(worker.auto_models)},
  Setting{"worker.family", FIELD(worker.family), 0, 0, "auto yolov8 yolov5 yolox darknet", false,
          "--family", "NAME", "Model family; auto recognises it from the model"},
  Setting{"worker.conf_threshold", FIELD(worker.conf_threshold), 0, 1, {}, false, "--conf", "X",
          "Confidence threshold: weaker detections are dropped"},
  Setting{"worker.nms_threshold", FIELD(worker.nms_threshold), 0.01, 1, {}, false, "--nms", "X",
          "NMS IoU threshold: per class, a box overlapping a stronger one by more is dropped"},
  Setting{"worker.input_size", FIELD(worker.input_size), 0, 8192, {}, false, "--input-size", "N",
          "Square network input in pixels, a multiple of 32; 0 takes the model's own"},
  Setting{"worker.names", FIELD(worker.names)},
  Setting{"worker.cv_threads", FIELD(worker.cv_threads), 0, 256, {}, false, "--cv-threads", "N",
          "OpenCV threads for inference, one process-wide pool; 0 runs on the calling thread only"},
  Setting{"worker.service_ms", FIELD(worker.service_ms), 0, kHour, {}, false, "--service-ms", "MS",
          "Simulated service time of echo workers"},
  Setting{"worker.reconnect_initial_ms", FIELD(worker.reconnect_initial_ms), 1, 600'000},
  Setting{"worker.reconnect_max_ms", FIELD(worker.reconnect_max_ms), 1, kHour},
  Setting{"client.in_flight", FIELD(client.in_flight), 1, 10'000, {}, false, "--in-flight", "K",
          "Requests each client keeps outstanding at once; 1 is synchronous request/reply"},
  Setting{"client.timeout_ms", FIELD(client.timeout_ms), 1, kHour},
  Setting{"client.adaptive_timeout", FIELD(client.adaptive_timeout)},
  Setting{"client.min_timeout_ms", FIELD(client.min_timeout_ms), 1, kHour},
  Setting{"client.deadline_ms", FIELD(client.deadline_ms), 1, 86'400'000},
  Setting{"client.payload_bytes", FIELD(client.payload_bytes), 0, 64 << 20},
  Setting{"client.images", FIELD(client.images), 0, 0, {}, false, "--images", "DIR",
          "Send every .jpg/.png of this folder, round-robin"},
  Setting{"client.save_detections", FIELD(client.save_detections), 0, 0, {}, false,
          "--save-detections", "FILE", "Write each answered request's detections as JSON Lines"},
  Setting{"autoscale.enabled", FIELD(autoscale.enabled), 0, 0, {}, false, "--autoscale", {},
          "Let the controller start and retire workers from the demand it measures (policy in "
          "[autoscale])"},
  Setting{"autoscale.min_workers", FIELD(autoscale.min_workers), 0, kWorkers, {}, false,
          "--min-workers", "N", "With --autoscale: never fewer workers"},
  Setting{"autoscale.max_workers", FIELD(autoscale.max_workers), 1, kWorkers, {}, false,
          "--max-workers", "N", "With --autoscale: never more workers"},
  Setting{"autoscale.target_in_flight", FIELD(autoscale.target_in_flight), 0.01, 1000},
  Setting{"autoscale.interval_ms", FIELD(autoscale.interval_ms), 10, 600'000},
  Setting{"autoscale.client_window_ms", FIELD(autoscale.client_window_ms), 10, kHour},
  Setting{"autoscale.up_delay_ms", FIELD(autoscale.up_delay_ms), 0, kHour},
  Setting{"autoscale.down_delay_ms", FIELD(autoscale.down_delay_ms), 0, kHour},
  Setting{"autoscale.max_step_up", FIELD(autoscale.max_step_up), 0, kWorkers},
  Setting{"autoscale.max_step_down", FIELD(autoscale.max_step_down), 0, kWorkers},
  Setting{"sockets.linger_ms", FIELD(sockets.linger_ms), 0, 600'000},
  Setting{"sockets.sndhwm", FIELD(sockets.sndhwm), 0, 1e7},
  Setting{"sockets.rcvhwm", FIELD(sockets.rcvhwm), 0, 1e7},
  Setting{"sockets.reconnect_ivl_ms", FIELD(sockets.reconnect_ivl_ms), 1, 600'000},
  Setting{"sockets.reconnect_ivl_max_ms", FIELD(sockets.reconnect_ivl_max_ms), 0, kHour},
  Setting{"sockets.heartbeat_ivl_ms", FIELD(sockets.heartbeat_ivl_ms), 0, 600'000},
  Setting{"sockets.heartbeat_timeout_ms", FIELD(sockets.heartbeat_timeout_ms), 0, kHour},
  Setting{"curve.key", FIELD(curve.key), 0, 0, {}, false, "--curve", "FILE",
          "Encrypt and authenticate with CURVE, with this key pair (a NAME.key of 'zyolo keygen')"},
  Setting{"curve.server_key", FIELD(curve.server_key), 0, 0, {}, false, "--server-key", "FILE",
          "With --curve: the broker's public key (its NAME.pub)"},
  Setting{"curve.allow", FIELD(curve.allow), 0, 0, {}, false, "--allow", "DIR",
          "With --curve: a folder of the public keys (*.pub) of the clients and workers let in"},
  Setting{"metrics.listen", FIELD(metrics.listen), 0, 0, {}, false, "--metrics", "HOST:PORT",
          "Serve Prometheus metrics (/metrics), /healthz and /readyz over HTTP here, e.g. "
          "127.0.0.1:9464 (tcp; * for every interface)"},
  Setting{"metrics.refresh_ms", FIELD(metrics.refresh_ms), 10, 60'000},
  Setting{"metrics.linger_ms", FIELD(metrics.linger_ms), 0, kHour},
  Setting{"metrics.buckets", FIELD(metrics.buckets)},
  Setting{"metrics.stage_buckets", FIELD(metrics.stage_buckets)},
  Setting{"metrics.max_header_bytes", FIELD(metrics.max_header_bytes), 256, 1 << 20},
  Setting{"metrics.idle_timeout_ms", FIELD(metrics.idle_timeout_ms), 10, kHour},
  Setting{"metrics.max_connections", FIELD(metrics.max_connections), 1, 100'000},
  Setting{"ha.role", FIELD(ha.role), 0, 0, "primary backup", true, "--ha", "ROLE",
          "Run as one of a broker pair with failover (Binary Star): primary or backup; needs "
          "--ha-bind and --ha-peer"},
  Setting{"ha.bind", FIELD(ha.bind), 0, 0, {}, false, "--ha-bind", "ENDPOINT",
          "With --ha: where this broker publishes its state to its peer, e.g. tcp://*:5560"},
  Setting{"ha.peer", FIELD(ha.peer), 0, 0, {}, false, "--ha-peer", "ENDPOINT",
          "With --ha: the peer's --ha-bind, e.g. tcp://10.0.0.2:5560"},
  Setting{"ha.heartbeat_ms", FIELD(ha.heartbeat_ms), 10, 600'000},
  Setting{"ha.missed", FIELD(ha.missed), 1, 100},
};
// clang-format on
#undef FIELD

bool is_choice(std::string_view choices, std::string_view v) {
  std::string_view rest = choices;
  while (!rest.empty()) {
    const auto space = rest.find(' ');
    if (rest.substr(0, space) == v) return true;
    if (space == std::string_view::npos) break;
    rest.remove_prefix(space + 1);
  }
  return false;
}

std::string range_error(const Setting& s) { return fmt::format("must be between {} and {}", s.lo, s.hi); }

// Stores a whole number, a number, a string or a bool, after the setting's checks.
struct Store {
  const Setting& s;
  Config& c;
  const toml::node& n;

  template <class T> requires std::is_integral_v<T> && (!std::is_same_v<T, bool>)
  std::string operator()(T& (*field)(Config&)) const {
    auto v = n.value_exact<int64_t>();
    if (!v) return "must be a whole number";
    if (static_cast<double>(*v) < s.lo || static_cast<double>(*v) > s.hi) return range_error(s);
    field(c) = static_cast<T>(*v);
    return {};
  }
  std::string operator()(double& (*field)(Config&)) const {
    auto v = n.value<double>();
    if (!v || !(n.is_integer() || n.is_floating_point())) return "must be a number";
    if (!(*v >= s.lo && *v <= s.hi)) return range_error(s);
    field(c) = *v;
    return {};
  }
  std::string operator()(std::string& (*field)(Config&)) const {
    auto v = n.value_exact<std::string>();
    if (!v) return "must be a string";
    if (!s.choices.empty() && !is_choice(s.choices, *v) && !(s.empty_ok && v->empty())) {
      std::string list;
      for (char ch : s.choices) list += ch == ' ' ? std::string(", ") : std::string(1, ch);
      return fmt::format("must be one of {}, not '{}'", list, *v);
    }
    field(c) = *v;
    return {};
  }
  std::string operator()(bool& (*field)(Config&)) const {
    auto v = n.value_exact<bool>();
    if (!v) return "must be true or false";
    field(c) = *v;
    return {};
  }
};

}  // namespace

std::span<const Setting> settings() { return kSettings; }

const Setting* find_setting(std::string_view key) {
  for (const auto& s : kSettings)
    if (s.key == key) return &s;
  return nullptr;
}

const Setting* find_setting_by_flag(std::string_view flag) {
  for (const auto& s : kSettings)
    if (!s.flag.empty() && s.flag == flag) return &s;
  return nullptr;
}

std::string store_setting(const Setting& s, Config& config, const toml::node& value) {
  return std::visit(Store{s, config, value}, s.field);
}

std::string store_setting_text(const Setting& s, Config& config, std::string_view text) {
  struct Parse {
    std::string_view text;
    std::optional<toml::value<int64_t>> whole() const {
      int64_t v = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
      return toml::value<int64_t>(v);
    }
  } parse{text};
  return std::visit(
      [&](auto field) -> std::string {
        using R = std::remove_reference_t<decltype(field(config))>;
        if constexpr (std::is_same_v<R, std::string>) {
          return store_setting(s, config, toml::value<std::string>(std::string(text)));
        } else if constexpr (std::is_same_v<R, bool>) {
          if (text != "true" && text != "false") return "must be true or false";
          return store_setting(s, config, toml::value<bool>(text == "true"));
        } else if constexpr (std::is_same_v<R, double>) {
          double v = 0;
          std::istringstream in{std::string(text)};
          if (!(in >> v) || !in.eof()) return "must be a number";
          return store_setting(s, config, toml::value<double>(v));
        } else {
          auto v = parse.whole();
          if (!v) return "must be a whole number";
          return store_setting(s, config, *v);
        }
      },
      s.field);
}

std::string check_setting(const Setting& s, const Config& config) {
  Config scratch = config;
  return std::visit(
      [&](auto field) -> std::string {
        const auto v = field(scratch);
        using R = std::remove_cv_t<decltype(v)>;
        if constexpr (std::is_same_v<R, std::string> || std::is_same_v<R, bool> ||
                      std::is_same_v<R, double>)
          return store_setting(s, scratch, toml::value<R>(v));
        else
          return store_setting(s, scratch, toml::value<int64_t>(v));
      },
      s.field);
}

std::string setting_text(const Setting& s, Config c) {
  return std::visit(
      [&](auto field) -> std::string {
        const auto& v = field(c);
        using R = std::remove_cvref_t<decltype(v)>;
        if constexpr (std::is_same_v<R, std::string>) return fmt::format("\"{}\"", v);
        else if constexpr (std::is_same_v<R, bool>) return v ? "true" : "false";
        else return fmt::format("{}", v);
      },
      s.field);
}

}  // namespace zyolo
