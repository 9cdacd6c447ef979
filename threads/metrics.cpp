// The metrics actor: zyolo's live Prometheus endpoint (README, "Metrics").
//
// It binds a ZMQ_STREAM socket on tcp://HOST:PORT (metrics.listen): libzmq accepts
// the TCP connections and hands this thread each one's bytes as [routing id][data], with an empty
// data frame when a connection opens or closes; sending [routing id][empty] closes it. On that
// socket it speaks just enough HTTP/1.1 (src/wire/http.hpp): GET or HEAD of /metrics, /healthz and
// /readyz, keep-alive, several requests on one connection in order.
//
// It shares nothing with the fleet. What /metrics serves comes in EXPOSE messages on its pipe:
// its parent (the supervisor) renders the fleet's families from the STATS and records its actors
// already send it, with the reasons the process is not healthy or not ready, and sends them here
// each metrics.refresh_ms. This thread adds only what it knows itself: its own HTTP counters and
// the process's (/proc/self), read at each scrape. One thread, one socket, no lock.
//
// Bad input costs the fleet nothing: each connection holds at most metrics.max_header_bytes
// of a request head (more is answered 431 and closed); a head that is not HTTP/1.x is answered
// 400 and closed; another method 405; a connection that sends no whole request within
// metrics.idle_timeout_ms is closed; connections beyond metrics.max_connections are closed as
// they open; an answer the peer cannot take now (its queue at the high-water mark) closes it. Each
// of these is counted (STATS: MetricsServerStats; and in /metrics as zyolo_http_*).
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "src/wire/actor.hpp"
#include "src/wire/exposition.hpp"
#include "src/wire/frames.hpp"
#include "src/wire/http.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/stats.hpp"
#include "threads/actors.hpp"

namespace zyolo {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The process's own numbers, as Prometheus' client libraries name them (process_*).
struct ProcessNumbers {
  double cpu_s = 0, start_time_s = 0;
  long resident_bytes = 0, virtual_bytes = 0, open_fds = 0, max_fds = 0;
};

// When this process started, in seconds since the epoch: its start in clock ticks after boot
// (/proc/self/stat, field 22) plus the boot time (/proc/stat, btime).
double process_start_time() {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  const auto paren = line.rfind(')');  // the command name may hold spaces: count after it
  if (paren == std::string::npos) return 0;
  std::istringstream rest(line.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
  }
  const double ticks = std::strtod(field.c_str(), nullptr);
  std::ifstream proc_stat("/proc/stat");
  for (std::string key; proc_stat >> key;) {
    if (key == "btime") {
      double boot = 0;
      proc_stat >> boot;
      return boot + ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
    std::getline(proc_stat, line);
  }
  return 0;
}

ProcessNumbers read_process(double start_time_s) {
  ProcessNumbers p;
  p.start_time_s = start_time_s;
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0)
    p.cpu_s = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
              static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  if (statm >> pages >> resident) {
    const long page = sysconf(_SC_PAGESIZE);
    p.virtual_bytes = pages * page;
    p.resident_bytes = resident * page;
  }
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec))
    ++p.open_fds;
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0) p.max_fds = static_cast<long>(files.rlim_cur);
  return p;
}

struct Connection {
  std::string buffer;  // what it sent that is not answered yet
  Clock::time_point heard_at;
};

class MetricsServer {
 public:
  MetricsServer(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config)
      : pipe_(pipe),
        socket_(ctx, zmq::socket_type::stream),
        max_head_(static_cast<std::size_t>(config.metrics.max_header_bytes)),
        idle_(config.metrics.idle_timeout_ms),
        max_connections_(static_cast<std::size_t>(config.metrics.max_connections)),
        start_time_s_(process_start_time()) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::stream_notify,
                1);                         // an empty frame when a connection opens or closes
    socket_.set(zmq::sockopt::sndhwm, 64);  // answers a connection has not taken; more closes it
    if (config.metrics.listen.starts_with('['))
      socket_.set(zmq::sockopt::ipv6, true);  // [::1]:9464
    try {
      bind(config.metrics.listen);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error(fmt::format("metrics.listen (--metrics) {}: cannot listen: {}",
                                           config.metrics.listen, e.what()));
    }
  }

  void run() {
    while (true) {
      zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0},
                                 {socket_.handle(), 0, ZMQ_POLLIN, 0}};
      const bool timers = !connections_.empty() || !closing_.empty();
      zmq::poll(items, 2, timers ? idle_ / 4 + milliseconds(1) : milliseconds(-1));
      if (items[0].revents & ZMQ_POLLIN) {
        auto m = recv_pipe(pipe_);
        if (!m || m->command == PipeCommand::Term) return;
        if (m->command == PipeCommand::Stats)
          send_pipe(pipe_, PipeCommand::Stats, args_of(stats()));
        if (m->command == PipeCommand::Expose)
          if (auto e = decode_args<Exposed>(*m)) {
            exposed_ = std::move(*e);
            fed_ = true;
          }
      }
      // Everything waiting, in turn: one connection's burst does not wait for the pipe long.
      for (int k = 0; k < 256 && (items[1].revents & ZMQ_POLLIN); ++k) {
        auto frames = recv_frames(socket_, zmq::recv_flags::dontwait);
        if (!frames) break;
        if (frames->size() == 2) on_data((*frames)[0].to_string(), (*frames)[1].to_string_view());
      }
      close_idle();
    }
  }

 private:
  // Binds tcp://HOST:PORT. libzmq takes HOST as an address, *, or an interface's name; a host
  // name (localhost) is looked up here instead, and its first address taken.
  void bind(const std::string& listen) {
    try {
      socket_.bind("tcp://" + listen);
      return;
    } catch (const zmq::error_t& e) {
      if (e.num() != ENODEV) throw;
    }
    const auto colon = listen.rfind(':');
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(listen.substr(0, colon).c_str(), nullptr, &hints, &found) != 0 || !found)
      throw std::runtime_error(fmt::format(
          "metrics.listen (--metrics) {}: '{}' is not an address, an interface or a host name "
          "known here",
          listen, listen.substr(0, colon)));
    char ip[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr, ip, sizeof ip);
    freeaddrinfo(found);
    socket_.bind(fmt::format("tcp://{}{}", ip, listen.substr(colon)));
  }

  void on_data(const std::string& id, std::string_view data) {
    if (const auto closing = closing_.find(id); closing != closing_.end()) {
      if (data.empty()) closing_.erase(closing);  // it went: nothing left to close
      return;  // what it sent after we closed it is not read
    }
    auto it = connections_.find(id);
    if (data.empty()) {  // a connection opened, or closed
      if (it == connections_.end()) {
        ++n_.connections_opened;
        if (connections_.size() >= max_connections_) {
          ++n_.dropped["overflow"];
          return close(id, false);
        }
        connections_.emplace(id, Connection{{}, Clock::now()});
      } else {
        if (!it->second.buffer.empty()) ++n_.dropped["closed_mid_request"];
        connections_.erase(it);
      }
      return;
    }
    if (it == connections_.end()) return;  // data of one closed here: libzmq drops it too
    Connection& c = it->second;
    c.heard_at = Clock::now();
    c.buffer.append(data);
    // Every whole request, in order (pipelining); what is left waits for more.
    while (!c.buffer.empty()) {
      const HttpParsed p = parse_http_request(c.buffer, max_head_);
      if (p.status == HttpParse::Incomplete) return;
      if (p.status == HttpParse::TooLarge)
        return answer_and_close(id, 431, "request head too large\n");
      if (p.status == HttpParse::Malformed)
        return answer_and_close(id, 400, fmt::format("bad request: {}\n", p.why));
      const HttpRequest& r = p.request;
      const bool head = r.method == "HEAD";
      if (!head && r.method != "GET") return answer_and_close(id, 405, "only GET and HEAD\n");
      if (r.has_body) return answer_and_close(id, 400, "bad request: a GET or HEAD with a body\n");
      const bool keep = r.keep_alive;
      const std::size_t length = r.length;
      if (!respond(id, r.path, head, keep)) return;  // closed: `c` is gone
      if (!keep) return close(id, true);
      c.buffer.erase(0, length);
    }
  }

  // Answers one request; false when the answer could not be sent (the connection is closed).
  bool respond(const std::string& id, std::string_view path, bool head, bool keep) {
    int status = 200;
    std::string body;
    std::string_view type = "text/plain; charset=utf-8";
    if (path == "/metrics") {
      body = exposition();
      type = kExpositionContentType;
    } else if (path == "/healthz") {
      if (!exposed_.unhealthy.empty()) status = 503;
      body = (status == 200 ? "ok" : exposed_.unhealthy) + "\n";
    } else if (path == "/readyz") {
      const std::string why = fed_ ? exposed_.unready : "starting";
      if (!why.empty()) status = 503;
      body = (status == 200 ? "ready" : why) + "\n";
    } else {
      status = 404;
      body = "not found: try /metrics, /healthz or /readyz\n";
    }
    return send(id, status, http_response(status, type, body, keep, head));
  }

  void answer_and_close(const std::string& id, int status, const std::string& body) {
    if (send(id, status, http_response(status, "text/plain; charset=utf-8", body, false)))
      close(id, true);
  }

  // Sends [id][bytes] without waiting; counts the status. A peer whose queue is full, or gone,
  // is closed and counted instead.
  bool send(const std::string& id, int status, const std::string& bytes) {
    bool sent = false;
    try {
      sent = socket_.send(zmq::buffer(id), zmq::send_flags::sndmore | zmq::send_flags::dontwait)
                 .has_value() &&
             socket_.send(zmq::buffer(bytes), zmq::send_flags::dontwait).has_value();
    } catch (const zmq::error_t&) {  // EHOSTUNREACH: it went
    }
    if (!sent) {
      ++n_.dropped["send_failed"];
      close(id, true);
      return false;
    }
    ++n_.responses[std::to_string(status)];
    return true;
  }

  // Closes a connection: [id][empty] (libzmq closes it once what was sent before has gone). One
  // libzmq cannot take the close of yet waits in closing_ and is tried again each pass.
  void close(const std::string& id, bool known) {
    if (!send_close(id)) closing_.insert(id);
    if (known) connections_.erase(id);  // last: `id` may be its key
  }

  // Sends [id][empty]: true once libzmq took it, or the connection is gone already; false when
  // the id frame is refused (EAGAIN: the connection's pipe is at its high-water mark, or is going
  // because the peer left and libzmq has not yet said so). The empty frame must then not be sent:
  // a STREAM socket takes a frame sent alone without sndmore as the routing id of a message, so
  // every frame after it would be taken one place off (ids as data, data as ids) and the endpoint
  // would answer no one again.
  bool send_close(const std::string& id) {
    try {
      if (!socket_.send(zmq::buffer(id), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
      (void)socket_.send(zmq::message_t(), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {  // EHOSTUNREACH: it went
    }
    return true;
  }

  // Closes the connections silent for metrics.idle_timeout_ms: a request half sent is dropped and
  // counted; an idle keep-alive connection is closed, as a server may.
  void close_idle() {
    for (auto it = closing_.begin(); it != closing_.end();) it = send_close(*it) ? closing_.erase(it) : std::next(it);
    const auto now = Clock::now();
    for (auto it = connections_.begin(); it != connections_.end();) {
      const auto next = std::next(it);
      if (now - it->second.heard_at >= idle_) {
        ++n_.dropped[it->second.buffer.empty() ? "idle" : "slow_request"];
        close(it->first, true);
      }
      it = next;
    }
  }

  MetricsServerStats stats() const {
    MetricsServerStats s = n_;
    s.connections = static_cast<long>(connections_.size() + closing_.size());
    return s;
  }

  // The fleet's families, then this thread's, then the process's.
  std::string exposition() const {
    Exposition e;
    const MetricsServerStats s = stats();
    e.family("zyolo_http_responses_total", "counter",
             "HTTP responses of this metrics endpoint, by status code");
    for (const auto& [code, n] : s.responses)
      e.sample("zyolo_http_responses_total", {{"code", code}}, n);
    e.family("zyolo_http_dropped_total", "counter",
             "HTTP connections of this endpoint closed without an answer, by reason");
    for (const char* reason :
         {"idle", "slow_request", "closed_mid_request", "overflow", "send_failed"}) {
      const auto it = s.dropped.find(reason);
      e.sample("zyolo_http_dropped_total", {{"reason", reason}},
               it == s.dropped.end() ? 0L : it->second);
    }
    e.single("zyolo_http_connections", "gauge", "HTTP connections open to this endpoint",
             s.connections);
    const ProcessNumbers p = read_process(start_time_s_);
    e.single("process_cpu_seconds_total", "counter",
             "Total user and system CPU time spent in seconds.", p.cpu_s);
    e.single("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
             p.resident_bytes);
    e.single("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
             p.virtual_bytes);
    e.single("process_open_fds", "gauge", "Number of open file descriptors.", p.open_fds);
    e.single("process_max_fds", "gauge", "Maximum number of open file descriptors.", p.max_fds);
    e.single("process_start_time_seconds", "gauge",
             "Start time of the process since unix epoch in seconds.", p.start_time_s);
    return exposed_.families + e.take();
  }

  zmq::socket_ref pipe_;
  zmq::socket_t socket_;
  std::size_t max_head_;
  milliseconds idle_;
  std::size_t max_connections_;
  double start_time_s_;
  std::map<std::string, Connection> connections_;  // by routing id
  std::set<std::string> closing_;  // closed here, the close not yet taken by libzmq (close())
  Exposed exposed_;
  bool fed_ = false;  // an EXPOSE came
  MetricsServerStats n_;
};

}  // namespace

void metrics_server(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config) {
  MetricsServer server(ctx, pipe, config);
  signal_ready(pipe);
  server.run();
}

}  // namespace zyolo
