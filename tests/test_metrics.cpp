// The metrics endpoint's parts: the HTTP request parser, the exposition writer, the histograms
// actors report, the fleet's metrics across a broker restart, and the metrics actor itself over
// real TCP connections (good requests, bad ones, slow ones, too many). tests/test_scrape.py
// scrapes whole fleets of processes with a real Prometheus parser and promtool.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "process.hpp"
#include "run_binary.hpp"
#include "src/config/config.hpp"
#include "src/fleet/metrics.hpp"
#include "src/wire/actor.hpp"
#include "src/wire/exposition.hpp"
#include "src/wire/http.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/stats.hpp"
#include "threads/actors.hpp"

using namespace zyolo;
using namespace zyolo_test;
using namespace std::chrono_literals;

namespace {

// --- a plain TCP client, as a scraper is ---------------------------------------------------------

// A connected TCP socket to 127.0.0.1:port; closed when it goes out of scope.
struct Tcp {
  int fd = -1;
  explicit Tcp(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~Tcp() { ::close(fd); }
  Tcp(const Tcp&) = delete;
  Tcp& operator=(const Tcp&) = delete;

  void send(std::string_view bytes) const {
    while (!bytes.empty()) {
      const auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return;  // the server closed: what it answered is still readable
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  // Reads until the peer closes or `timeout` passes (a bound for a broken server).
  std::string read_to_close(std::chrono::milliseconds timeout = 5s) const {
    std::string out;
    read_until([&] { return false; }, out, timeout);
    return out;
  }

  // Reads whole responses until `count` have come (Content-Length says where each ends).
  std::vector<std::string> read_responses(std::size_t count,
                                          std::chrono::milliseconds timeout = 5s) const {
    std::string in;
    std::vector<std::string> responses;
    auto take = [&] {
      while (true) {
        const auto end = in.find("\r\n\r\n");
        if (end == std::string::npos) return responses.size() >= count;
        const auto cl = in.find("Content-Length: ");
        REQUIRE(cl < end);
        const std::size_t length = std::stoul(in.substr(cl + 16));
        const bool head = responses.size() < heads.size() && heads[responses.size()];
        const std::size_t total = end + 4 + (head ? 0 : length);
        if (in.size() < total) return responses.size() >= count;
        responses.push_back(in.substr(0, total));
        in.erase(0, total);
      }
    };
    read_until(take, in, timeout);
    return responses;
  }

  // Whether the server closed the connection within `timeout`.
  bool closed_within(std::chrono::milliseconds timeout) const {
    std::string rest;
    return read_until([] { return false; }, rest, timeout);
  }

  std::vector<bool> heads;  // read_responses: which answers are to HEAD requests (no body)

 private:
  // Reads into `out` until done() or the peer closes (true) or the timeout (false).
  template <class Done>
  bool read_until(Done done, std::string& out, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return false;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buffer[65536];
      const auto n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) return true;
      out.append(buffer, static_cast<std::size_t>(n));
    }
    return false;
  }
};

// One request on a new connection; the whole answer (the server closes: Connection: close).
std::string get(int port, const std::string& path, const std::string& method = "GET") {
  Tcp c(port);
  c.send(method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  return c.read_to_close();
}

int status_of(const std::string& response) {
  return response.starts_with("HTTP/1.1 ") ? std::stoi(response.substr(9, 3)) : -1;
}

std::string body_of(const std::string& response) {
  const auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

// The value of one sample line "name{labels} value" in exposition text (-1 when absent).
double sample(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

Config metrics_config(int port) {
  Config c = default_config();
  c.metrics.listen = "127.0.0.1:" + std::to_string(port);
  c.metrics.idle_timeout_ms = 300;
  c.metrics.max_connections = 8;
  c.metrics.max_header_bytes = 1024;
  return c;
}

MetricsServerStats server_stats(Actor& a) {
  REQUIRE(send_pipe(a.pipe(), PipeCommand::Stats));
  auto m = recv_pipe(a.pipe());
  REQUIRE(m);
  auto s = decode_args<MetricsServerStats>(*m);
  REQUIRE(s);
  return *s;
}

// Waits until the actor has seen every connection so far close (they close asynchronously).
void wait_no_connections(Actor& a) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (server_stats(a).connections > 0 && std::chrono::steady_clock::now() < deadline) {
  }
  REQUIRE(server_stats(a).connections == 0);
}

// Waits until something listens on 127.0.0.1:port (a process starting up), up to `timeout`.
void wait_listening(int port, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (up) return;
    std::this_thread::sleep_for(20ms);  // polling another process's start: nothing to wait on
  }
  FAIL("nothing listens on port " << port);
}

}  // namespace

// --- HTTP ----------------------------------------------------------------------------------------

TEST_CASE("http: a request head is read whole, in order, within its cap") {
  const std::string two =
      "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /readyz HTTP/1.1\r\nConnection: "
      "close\r\n\r\n";
  auto p = parse_http_request(two, 8192);
  REQUIRE(p.status == HttpParse::Complete);
  CHECK(p.request.method == "GET");
  CHECK(p.request.path == "/metrics");
  CHECK(p.request.keep_alive);
  CHECK_FALSE(p.request.has_body);
  auto q = parse_http_request(std::string_view(two).substr(p.request.length), 8192);
  REQUIRE(q.status == HttpParse::Complete);
  CHECK(q.request.method == "HEAD");
  CHECK_FALSE(q.request.keep_alive);
  CHECK(p.request.length + q.request.length == two.size());

  CHECK(parse_http_request("GET /metrics HTTP/1.1\r\nHost: a\r\n", 8192).status ==
        HttpParse::Incomplete);
  CHECK(parse_http_request("", 8192).status == HttpParse::Incomplete);
  CHECK(parse_http_request(std::string(100, 'x'), 64).status == HttpParse::TooLarge);
  CHECK(
      parse_http_request("GET / HTTP/1.1\r\nX: " + std::string(100, 'x') + "\r\n\r\n", 64).status ==
      HttpParse::TooLarge);
  // HTTP/1.0 closes unless asked to keep the connection; 1.1 keeps it unless asked to close.
  CHECK_FALSE(parse_http_request("GET / HTTP/1.0\r\n\r\n", 8192).request.keep_alive);
  CHECK(parse_http_request("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n", 8192)
            .request.keep_alive);
  CHECK_FALSE(parse_http_request("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", 8192)
                  .request.keep_alive);
  // A body is flagged, whatever the method: the caller answers and closes.
  CHECK(parse_http_request("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 8192)
            .request.has_body);
  CHECK(parse_http_request("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 8192)
            .request.has_body);
  CHECK_FALSE(
      parse_http_request("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 8192).request.has_body);
  // Leading empty lines are ignored (RFC 9112 2.2).
  CHECK(parse_http_request("\r\n\r\nGET / HTTP/1.1\r\n\r\n", 8192).status == HttpParse::Complete);
  for (const char* bad :
       {"garbage\r\n\r\n", "GET /metrics\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n", "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nno colon\r\n\r\n", "GET / HTTP/1.1\r\n folded: x\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", "\x16\x03\x01 tls\r\n\r\n"}) {
    CAPTURE(bad);
    const auto r = parse_http_request(bad, 8192);
    CHECK(r.status == HttpParse::Malformed);
    CHECK_FALSE(r.why.empty());
  }
}

TEST_CASE("http: a response says its length, and HEAD sends no body") {
  const std::string r = http_response(200, "text/plain", "hello", true);
  CHECK(r == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
  const std::string h = http_response(200, "text/plain", "hello", false, true);
  CHECK(h ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: "
        "close\r\n\r\n");
  CHECK(http_response(405, "text/plain", "", false).find("Allow: GET, HEAD\r\n") !=
        std::string::npos);
}

// --- the exposition format and histograms ------------------------------------------------------

TEST_CASE("exposition: families, escaped labels and cumulative histograms") {
  Histogram h({0.001, 0.01});
  for (const double v : {0.0005, 0.001, 0.005, 0.02, 0.03}) h.observe(v);
  CHECK(h.counts ==
        std::vector<long>{2, 1, 2});  // <= 0.001 (the bound is inclusive), <= 0.01, above
  CHECK(h.count == 5);
  CHECK(h.sum == doctest::Approx(0.0565));
  Exposition e;
  e.family("x_seconds", "histogram", "a \\ help\nline");
  e.histogram("x_seconds", {{"service", "a\"b\\c\nd"}}, h);
  e.family("y_total", "counter", "y");
  e.sample("y_total", {}, 3L);
  e.sample("y_total", {{"k", "v"}}, 0.25);
  CHECK(e.text() ==
        "# HELP x_seconds a \\\\ help\\nline\n"
        "# TYPE x_seconds histogram\n"
        "x_seconds_bucket{service=\"a\\\"b\\\\c\\nd\",le=\"0.001\"} 2\n"
        "x_seconds_bucket{service=\"a\\\"b\\\\c\\nd\",le=\"0.01\"} 3\n"
        "x_seconds_bucket{service=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} 5\n"
        "x_seconds_sum{service=\"a\\\"b\\\\c\\nd\"} 0.0565\n"
        "x_seconds_count{service=\"a\\\"b\\\\c\\nd\"} 5\n"
        "# HELP y_total y\n"
        "# TYPE y_total counter\n"
        "y_total 3\n"
        "y_total{k=\"v\"} 0.25\n");

  Histogram other({0.001, 0.01});
  other.observe(1);
  CHECK(h.add(other));
  CHECK(h.counts == std::vector<long>{2, 1, 3});
  CHECK_FALSE(h.add(Histogram({0.5})));  // other bounds: refused, nothing changed
  CHECK(h.count == 6);
}

TEST_CASE("stats: histograms travel in the broker's and the workers' STATS") {
  BrokerStats b;
  b.services["yolo"].workers = 2;
  b.services["yolo"].replies["200"] = 7;
  b.services["yolo"].queue_wait = Histogram({0.001});
  b.services["yolo"].queue_wait.observe(0.002);
  auto back = decode_args<BrokerStats>(PipeMessage{PipeCommand::Stats, args_of(b)});
  REQUIRE(back);
  CHECK(back->services["yolo"].replies["200"] == 7);
  CHECK(back->services["yolo"].queue_wait.counts == std::vector<long>{0, 1});
  WorkerStats w{
      "w0", "yolo", 1, 0, 0, 0, 0, 0, 0, true, std::vector<Histogram>(4, Histogram({0.1}))};
  w.stages[2].observe(0.05);
  auto wb = decode_args<WorkerStats>(PipeMessage{PipeCommand::Stats, args_of(w)});
  REQUIRE(wb);
  CHECK(wb->registered);
  REQUIRE(wb->stages.size() == 4);
  CHECK(wb->stages[2].counts == std::vector<long>{1, 0});
  // A histogram with a count missing for a bucket does not decode.
  PipeMessage bad{
      PipeCommand::Stats,
      text_frames({R"({"id":"w","service":"s","served":0,"bad_requests":0,"errors":0,"freezes":0,)"
                   R"("reconnects":0,"malformed":0,"crossed_disconnect":0,"registered":false,)"
                   R"("stages":[{"bounds":[0.1],"counts":[1],"sum":0,"count":1}]})"})};
  CHECK_FALSE(decode_args<WorkerStats>(bad));
}

TEST_CASE(
    "fleet metrics: counters stay monotonic across a broker restart, gauges are the new broker's") {
  Config c = default_config();
  validate(c);
  FleetMetrics m(c, true, false, false);
  BrokerStats first;
  first.rejected_busy = 2;
  auto& s = first.services[c.run.service];
  s.workers = 3;
  s.replies["200"] = 10;
  s.queue_wait = Histogram(c.metrics.bounds);
  s.queue_wait.observe(0.001);
  m.broker_started();
  m.broker(first);
  const std::string svc = "{service=\"" + c.run.service + "\"";
  std::string t = m.render();
  CHECK(sample(t, "zyolo_requests_total" + svc + ",status=\"200\"}") == 10);
  CHECK(sample(t, "zyolo_workers" + svc + ",state=\"idle\"}") == 3);
  m.broker_stopped();
  t = m.render();
  CHECK(sample(t, "zyolo_broker_up") == 0);
  CHECK(sample(t, "zyolo_requests_total" + svc + ",status=\"200\"}") == 10);
  CHECK(sample(t, "zyolo_workers" + svc + ",state=\"idle\"}") == 0);
  BrokerStats second;
  second.services[c.run.service].workers = 1;
  second.services[c.run.service].replies["200"] = 4;
  second.services[c.run.service].queue_wait = Histogram(c.metrics.bounds);
  second.services[c.run.service].queue_wait.observe(0.5);
  m.broker_started();
  m.broker(second);
  t = m.render();
  CHECK(sample(t, "zyolo_broker_up") == 1);
  CHECK(sample(t, "zyolo_broker_starts_total") == 2);
  CHECK(sample(t, "zyolo_requests_total" + svc + ",status=\"200\"}") == 14);
  CHECK(sample(t, "zyolo_rejected_total{reason=\"queue_full\"}") == 2);
  CHECK(sample(t, "zyolo_queue_wait_seconds_count" + svc + "}") == 2);
  CHECK(sample(t, "zyolo_workers" + svc + ",state=\"idle\"}") == 1);
}

// --- the metrics actor, over real connections ---------------------------------------------------

TEST_CASE("metrics actor: serves what EXPOSE says, and its health") {
  zmq::context_t ctx = make_context();
  const int port = free_port();
  const Config c = metrics_config(port);
  Actor a(ctx, "metrics", [c](zmq::context_t& x, zmq::socket_ref p) { metrics_server(x, p, c); });

  // Before the first EXPOSE: alive, not ready, and /metrics has the process's own families.
  std::string r = get(port, "/readyz");
  CHECK(status_of(r) == 503);
  CHECK(body_of(r) == "starting\n");
  CHECK(status_of(get(port, "/healthz")) == 200);
  r = get(port, "/metrics");
  CHECK(status_of(r) == 200);
  CHECK(r.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  CHECK(sample(body_of(r), "process_open_fds") > 0);
  CHECK(sample(body_of(r), "process_resident_memory_bytes") > 0);
  CHECK(sample(body_of(r), "process_start_time_seconds") > 1.7e9);

  REQUIRE(send_pipe(a.pipe(), PipeCommand::Expose,
                    args_of(Exposed{"# TYPE a_total counter\na_total 42\n", "", ""})));
  // The pipe and the socket are read by one thread in turn: wait until the new values are served.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (sample(body_of(get(port, "/metrics")), "a_total") != 42 &&
         std::chrono::steady_clock::now() < deadline) {
  }
  CHECK(sample(body_of(get(port, "/metrics")), "a_total") == 42);
  CHECK(status_of(get(port, "/readyz")) == 200);
  REQUIRE(send_pipe(a.pipe(), PipeCommand::Expose,
                    args_of(Exposed{"", "w0 died: no model", "no worker"})));
  r = get(port, "/healthz");
  while (status_of(r) == 200 && std::chrono::steady_clock::now() < deadline)
    r = get(port, "/healthz");
  CHECK(status_of(r) == 503);
  CHECK(body_of(r) == "w0 died: no model\n");
  CHECK(body_of(get(port, "/readyz")) == "no worker\n");

  // HEAD: the headers of GET, no body.
  r = get(port, "/metrics", "HEAD");
  CHECK(status_of(r) == 200);
  CHECK(body_of(r).empty());
  CHECK(r.find("Content-Length: 0\r\n") == std::string::npos);
  CHECK(status_of(get(port, "/nope")) == 404);
  const auto s = server_stats(a);
  CHECK(s.responses.at("200") >= 6);  // at least the six above that were answered 200
  CHECK(s.responses.at("404") == 1);
}

TEST_CASE(
    "metrics actor: keep-alive, pipelined requests, and bad input answered or dropped, counted") {
  zmq::context_t ctx = make_context();
  const int port = free_port();
  const Config c = metrics_config(port);
  Actor a(ctx, "metrics", [c](zmq::context_t& x, zmq::socket_ref p) { metrics_server(x, p, c); });

  {  // Three requests in one write, and one more in pieces, on one connection: answered in order.
    Tcp t(port);
    t.heads = {false, true, false, false};
    t.send(
        "GET /healthz HTTP/1.1\r\n\r\nHEAD /metrics HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET "
        "/rea");
    t.send("dyz HTTP/1.1\r\nHost: x\r\n\r\n");
    const auto rs = t.read_responses(4);
    REQUIRE(rs.size() == 4);
    CHECK(status_of(rs[0]) == 200);
    CHECK(body_of(rs[0]) == "ok\n");
    CHECK(status_of(rs[1]) == 200);
    CHECK(status_of(rs[2]) == 404);
    CHECK(status_of(rs[3]) == 503);
    CHECK_FALSE(t.closed_within(50ms));  // kept open
  }
  for (const auto& [request, status] : std::vector<std::pair<std::string, int>>{
           {std::string("\x16\x03\x01\x02\x00garbage\r\n\r\n", 16), 400},
           {"POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd", 405},
           {"GET /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd", 400},
           {"GET /metrics HTTP/1.1\r\nX: " + std::string(4096, 'x') + "\r\n\r\n", 431}}) {
    CAPTURE(request.substr(0, 40));
    Tcp t(port);
    t.send(request);
    const std::string r = t.read_to_close();  // answered, then closed
    CHECK(status_of(r) == status);
    CHECK(r.find("Connection: close\r\n") != std::string::npos);
  }
  {  // A request half sent, then the peer goes: dropped, counted.
    Tcp t(port);
    t.send("GET /met");
  }
  {  // A request half sent and left: closed after metrics.idle_timeout_ms.
    Tcp t(port);
    t.send("GET /metrics HTTP/1.1\r\n");
    CHECK(t.closed_within(3s));
  }
  wait_no_connections(a);
  {  // More connections than metrics.max_connections (8): the extra ones are closed at once.
    std::vector<std::unique_ptr<Tcp>> many;
    for (int i = 0; i < 12; ++i) many.push_back(std::make_unique<Tcp>(port));
    int answered = 0, closed = 0;
    for (auto& t : many) {
      t->send("GET /metrics HTTP/1.1\r\n\r\n");
      const auto rs = t->read_responses(1, 2s);
      if (rs.size() == 1 && status_of(rs[0]) == 200)
        ++answered;
      else if (t->closed_within(10ms))
        ++closed;
    }
    CHECK(answered == 8);
    CHECK(closed == 4);
  }
  // Each drop counted; the endpoint still answers.
  CHECK(status_of(get(port, "/healthz")) == 200);
  const auto s = server_stats(a);
  CHECK(s.responses.at("400") == 2);
  CHECK(s.responses.at("405") == 1);
  CHECK(s.responses.at("431") == 1);
  CHECK(s.dropped.at("closed_mid_request") == 1);
  CHECK(s.dropped.at("slow_request") == 1);
  CHECK(s.dropped.at("overflow") == 4);
  const std::string text = body_of(get(port, "/metrics"));
  CHECK(sample(text, "zyolo_http_dropped_total{reason=\"overflow\"}") == 4);
  CHECK(sample(text, "zyolo_http_responses_total{code=\"431\"}") == 1);
}

TEST_CASE("metrics actor: a port already taken is a clear error at start") {
  zmq::context_t ctx = make_context();
  const int port = free_port();
  const Config c = metrics_config(port);
  Actor first(ctx, "metrics",
              [c](zmq::context_t& x, zmq::socket_ref p) { metrics_server(x, p, c); });
  try {
    Actor second(ctx, "metrics2",
                 [c](zmq::context_t& x, zmq::socket_ref p) { metrics_server(x, p, c); });
    FAIL("a second endpoint bound the same port");
  } catch (const ActorError& e) {
    CHECK(std::string(e.what()).find(
              "metrics.listen (--metrics) 127.0.0.1:" + std::to_string(port) + ": cannot listen") !=
          std::string::npos);
  }
}

// --- a whole run
// -----------------------------------------------------------------------------------

TEST_CASE("zyolo run --metrics: a broker restart, and the last scrape agrees with the report") {
  const int port = free_port();
  TempFile config("metrics.toml", own_endpoints_toml() + "[metrics]\nlinger_ms = 20000\n");
  TempFile report("metrics-report.json", "");
  Process run({"run", "--config", config.path, "--scenario", "broker-restart", "--time-scale",
               "0.5", "--quiet", "--metrics", "127.0.0.1:" + std::to_string(port), "--report",
               report.path});
  wait_listening(port, 30s);  // it binds before any actor starts
  // Scrapes while it runs, until the run has ended (then it lingers, serving its last values).
  double last_answered = 0;
  bool grew = false;
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string ready = get(port, "/readyz");
    text = body_of(get(port, "/metrics"));
    const double answered =  // none before the first answer
        std::max(0.0, sample(text, "zyolo_client_requests_total{service=\"yolo\",status=\"200\"}"));
    CHECK(answered >= last_answered);  // a counter never goes back, restart or not
    grew = grew || (last_answered > 0 && answered > last_answered);
    last_answered = std::max(last_answered, answered);
    if (body_of(ready) == "the run has ended\n") break;
    std::this_thread::sleep_for(100ms);  // a scraper's interval, not a synchronisation
  }
  CHECK(grew);
  run.signal(SIGINT);  // ends the lingering at once
  CHECK(run.wait() == 0);
  const auto r = nlohmann::json::parse(slurp(report.path));
  const long answered = r["requests"]["answered"].get<long>();
  CHECK(answered > 0);
  CHECK(r["requests"]["lost"].get<long>() == 0);
  CHECK(sample(text, "zyolo_broker_starts_total") == 2);
  CHECK(sample(text, "zyolo_client_requests_total{service=\"yolo\",status=\"200\"}") == answered);
  CHECK(sample(text, "zyolo_client_request_duration_seconds_count{service=\"yolo\"}") == answered);
  CHECK(sample(text, "zyolo_client_retries_total{service=\"yolo\"}") ==
        r["requests"]["retries"].get<long>());
  // The broker's counters, summed over its two lives, as the report sums them.
  CHECK(sample(text, "zyolo_requests_total{service=\"yolo\",status=\"200\"}") ==
        r["broker"]["replies"].get<long>());
  CHECK(sample(text, "zyolo_requeued_total") == r["broker"]["requeued"].get<long>());
  long served = 0;
  for (const auto& w : r["workers"]) served += w["served"].get<long>();
  double served_metric = 0;
  for (std::size_t at = text.find("\nzyolo_worker_requests_total{"); at != std::string::npos;
       at = text.find("\nzyolo_worker_requests_total{", at + 1)) {
    const auto line = text.substr(at + 1, text.find('\n', at + 1) - at - 1);
    if (line.find("status=\"200\"") != std::string::npos)
      served_metric += std::stod(line.substr(line.rfind(' ') + 1));
  }
  CHECK(served_metric == served);
}
