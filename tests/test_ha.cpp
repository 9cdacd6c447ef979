// A broker pair (Binary Star, `zyolo broker --ha`) as separate processes over tcp: the primary
// becomes ACTIVE and the backup PASSIVE; the backup answers no client while the primary lives;
// SIGKILL the primary and a client's request makes the backup ACTIVE, answered by a worker
// registered with it; the primary restarted goes PASSIVE and serves nobody. Each broker's state
// is read from its metrics (zyolo_ha_state), and at no reading are both ACTIVE. The whole fleet
// (workers and clients given both brokers) through a kill of each broker in turn; plain RFC 7
// clients and workers written with raw cppzmq against the pair.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>
#include <zmq_addon.hpp>

#include "metrics_get.hpp"
#include "process.hpp"
#include "run_binary.hpp"
#include "scenario_runs.hpp"
#include "sockets.hpp"

namespace {

using namespace std::chrono_literals;
using namespace zyolo;
using zyolo_test::Endpoints;
using zyolo_test::Process;

// GET /metrics from 127.0.0.1:`port`: the answer, or "" when nobody answers (a broker killed).
std::string scrape(int port) {
  return zyolo_test::get_metrics(::socket(AF_INET, SOCK_STREAM, 0), "127.0.0.1", port);
}

// The value of one sample "name{labels} value" in exposition text (-1 when absent).
double sample_of(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

// The state a broker's metrics say it is in ("" when it does not answer).
std::string state_of(int metrics_port) {
  const std::string text = scrape(metrics_port);
  for (const char* s : {"PRIMARY", "BACKUP", "ACTIVE", "PASSIVE"})
    if (zyolo_test::has(text, std::string("zyolo_ha_state{state=\"") + s + "\"} 1")) return s;
  return "";
}

// One broker of the pair: its endpoints, its pair endpoints and its metrics port.
struct Node {
  Endpoints ep;
  int metrics = zyolo_test::free_port();
  std::vector<std::string> args(const std::string& role, const std::string& bind,
                                const std::string& peer, const std::string& config) const {
    auto a = ep.broker_args();
    a.insert(a.end(), {"--ha", role, "--ha-bind", bind, "--ha-peer", peer, "--metrics",
                       "127.0.0.1:" + std::to_string(metrics), "--config", config});
    return a;
  }
};

// The arguments of a primary `p` and a backup `b` that know each other, on two free ports.
std::pair<std::vector<std::string>, std::vector<std::string>> pair_args(const Node& p, const Node& b,
                                                                        const std::string& config) {
  const std::string pbind = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  const std::string bbind = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  return {p.args("primary", pbind, bbind, config), b.args("backup", bbind, pbind, config)};
}

// A raw MDP client: one DEALER speaking MDPC01 to a broker's frontend.
struct RawClient {
  zmq::context_t ctx;
  zmq::socket_t socket;
  explicit RawClient(const std::string& frontend, const std::string& id)
      : socket(zyolo_test::dealer(ctx, id, frontend)) {}
  // Sends request `id` and waits up to `wait` for its answer: its status, or 0 for none.
  int ask(const std::string& id, std::chrono::milliseconds wait) {
    zyolo_test::send(socket,
                     encode_client_request(
                         "yolo", encode_app_request(id, "", zmq::message_t(id.data(), id.size()))));
    const auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until) {
      auto f = zyolo_test::recv(socket, std::chrono::duration_cast<std::chrono::milliseconds>(
                                            until - std::chrono::steady_clock::now()));
      if (!f) return 0;
      auto m = decode_client_reply(std::move(*f));
      REQUIRE(m.ok());
      auto r = decode_app_reply(std::move(m->body));
      REQUIRE(r.ok());
      if (r->id == id) return r->status;
    }
    return 0;
  }
};

// Both brokers of a pair watched while a test waits: each one's zyolo_ha_state read about every
// 100 ms, and every reading at which both said ACTIVE counted.
struct PairWatch {
  PairWatch(int primary_port, int backup_port)
      : primary_metrics(primary_port), backup_metrics(backup_port) {}
  int primary_metrics, backup_metrics;
  long samples = 0, both_active = 0;
  std::string primary, backup;  // the states read last ("" for a broker that did not answer)
  std::chrono::steady_clock::time_point next = std::chrono::steady_clock::now();

  void sample() {
    primary = state_of(primary_metrics);
    backup = state_of(backup_metrics);
    ++samples;
    if (primary == "ACTIVE" && backup == "ACTIVE") ++both_active;
    next = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  }

  // Samples every ~100 ms until `done()` says true (true) or `timeout` passes (false). `done` is
  // asked between samples; it may block for up to ~100 ms itself (a process's stdout).
  bool until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (std::chrono::steady_clock::now() >= next) sample();
      if (done()) return true;
      if (std::chrono::steady_clock::now() >= deadline) {
        MESSAGE("primary ", primary, ", backup ", backup);
        return false;
      }
      std::this_thread::sleep_until(std::min(next, deadline));  // pacing the samples
    }
  }
  bool states(const std::string& p, const std::string& b, std::chrono::milliseconds timeout) {
    return until([&] { return primary == p && backup == b; }, timeout);
  }
};

// Requests the broker behind metrics `port` forwarded answered 200 (-1 when it does not answer).
double served(int port) {
  return sample_of(scrape(port), "zyolo_requests_total{service=\"yolo\",status=\"200\"}");
}

// The frames of one message as strings: what the plain RFC 7 peers below send and receive, with
// raw cppzmq and nothing of zyolo's codec.
using Parts = std::vector<std::string>;

void send_parts(zmq::socket_t& s, const Parts& parts) {
  for (std::size_t i = 0; i < parts.size(); ++i)
    REQUIRE(s.send(zmq::buffer(parts[i]),
                   i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::dontwait)
                .has_value());
}

// The next message waiting on `s`, if one is.
std::optional<Parts> take_parts(zmq::socket_t& s) {
  std::vector<zmq::message_t> frames;
  if (!zmq::recv_multipart(s, std::back_inserter(frames), zmq::recv_flags::dontwait))
    return std::nullopt;
  Parts parts;
  for (const auto& f : frames) parts.push_back(f.to_string());
  return parts;
}

// An MDP/0.1 worker written from RFC 7 alone: a DEALER to one broker's backend that sends
// ["" "MDPW01" 0x01 service] (READY), ["" "MDPW01" 0x04] (HEARTBEAT) every heartbeat, and answers
// each ["" "MDPW01" 0x02 client "" body] (REQUEST) with ["" "MDPW01" 0x03 client "" body name]
// (REPLY: the body as it came, then who served it). Told DISCONNECT, or hearing nothing from the
// broker for liveness x heartbeat, it opens a new socket and sends READY again, as the RFC says.
// Driven by pump() from the test's thread: no thread of its own.
class PlainWorker {
 public:
  PlainWorker(zmq::context_t& ctx, std::string backend, std::string name,
              std::chrono::milliseconds heartbeat)
      : ctx_(ctx), backend_(std::move(backend)), name_(std::move(name)), heartbeat_(heartbeat) {
    connect();
  }

  // Handles every message waiting, heartbeats when due, reconnects after the broker's silence.
  // Never blocks.
  void pump() {
    while (auto m = take_parts(*socket_)) {
      heard_at_ = Clock::now();
      REQUIRE(m->size() >= 3);
      CHECK((*m)[0].empty());
      CHECK((*m)[1] == "MDPW01");
      const std::string& command = (*m)[2];
      if (command == std::string(1, '\x02')) {
        REQUIRE(m->size() >= 6);
        CHECK((*m)[4].empty());
        served.push_back((*m)[5]);
        send_parts(*socket_, {"", "MDPW01", std::string(1, '\x03'), (*m)[3], "", (*m)[5], name_});
      } else if (command == std::string(1, '\x05')) {
        return connect();
      } else {
        CHECK(command == std::string(1, '\x04'));  // a broker sends nothing else to a worker
      }
    }
    const auto now = Clock::now();
    if (now - heard_at_ > kLiveness * heartbeat_) return connect();
    if (now >= heartbeat_at_) {
      send_parts(*socket_, {"", "MDPW01", std::string(1, '\x04')});
      heartbeat_at_ = now + heartbeat_;
    }
  }

  zmq::socket_t& socket() { return *socket_; }

  std::vector<std::string> served;  // the bodies of the requests it answered, in order
  long connections = 0;

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr int kLiveness = 3;

  void connect() {
    socket_.emplace(ctx_, zmq::socket_type::dealer);
    socket_->set(zmq::sockopt::linger, 0);
    socket_->connect(backend_);
    send_parts(*socket_, {"", "MDPW01", std::string(1, '\x01'), "echo"});
    heard_at_ = Clock::now();
    heartbeat_at_ = heard_at_ + heartbeat_;
    ++connections;
  }

  zmq::context_t& ctx_;
  std::string backend_, name_;
  std::chrono::milliseconds heartbeat_;
  std::optional<zmq::socket_t> socket_;
  Clock::time_point heard_at_, heartbeat_at_;
};

// An MDP/0.1 client written from RFC 7 alone: a DEALER to one broker's frontend that sends
// ["" "MDPC01" service body] and reads ["" "MDPC01" service body...]; on a timeout it closes its
// socket and opens a new one (Lazy Pirate). While it waits, the plain workers are pumped.
class PlainClient {
 public:
  // `type`: DEALER, or REQ, whose socket adds the empty delimiter and strips it from the reply.
  PlainClient(zmq::context_t& ctx, std::string frontend, std::vector<PlainWorker*> workers,
              zmq::socket_type type = zmq::socket_type::dealer)
      : ctx_(ctx), frontend_(std::move(frontend)), workers_(std::move(workers)), type_(type) {
    connect();
  }

  // Sends `body` to `service` and waits up to `wait` for a reply: its frames, or none.
  std::optional<Parts> ask(const std::string& service, const std::string& body,
                           std::chrono::milliseconds wait) {
    send(service, body);
    return next_reply(wait);
  }

  void send(const std::string& service, const std::string& body) {
    if (type_ == zmq::socket_type::req)
      send_parts(*socket_, {"MDPC01", service, body});
    else
      send_parts(*socket_, {"", "MDPC01", service, body});
  }

  // The next reply within `wait`, the workers pumped meanwhile; none: a new socket (Lazy Pirate).
  std::optional<Parts> next_reply(std::chrono::milliseconds wait) {
    const auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until) {
      std::vector<zmq::pollitem_t> items{{socket_->handle(), 0, ZMQ_POLLIN, 0}};
      for (auto* w : workers_) items.push_back({w->socket().handle(), 0, ZMQ_POLLIN, 0});
      zmq::poll(items, std::chrono::milliseconds(20));  // 20 ms at most: the workers' heartbeats
      for (auto* w : workers_) w->pump();
      if (auto reply = take_parts(*socket_)) return reply;
    }
    connect();  // Lazy Pirate: the socket may hold a late reply; a new one never shows it
    return std::nullopt;
  }

  // Lazy Pirate: `body` sent again on a new socket after each `wait` without a reply, `tries`
  // times at most.
  std::optional<Parts> ask_retrying(const std::string& service, const std::string& body,
                                    std::chrono::milliseconds wait, int tries) {
    for (int i = 0; i < tries; ++i)
      if (auto reply = ask(service, body, wait)) return reply;
    return std::nullopt;
  }

 private:
  void connect() {
    socket_.emplace(ctx_, type_);
    socket_->set(zmq::sockopt::linger, 0);
    socket_->connect(frontend_);
  }

  zmq::context_t& ctx_;
  std::string frontend_;
  std::vector<PlainWorker*> workers_;
  zmq::socket_type type_;
  std::optional<zmq::socket_t> socket_;
};

}  // namespace

TEST_CASE(
    "a broker pair over tcp: failover to the backup on a client's vote, the primary back as "
    "passive") {
  // Not scaled by ZYOLO_TEST_TIME_SCALE: the run is short as it is, and a shorter expiry would let
  // a restarted primary that is slow to hear its peer (under a sanitizer) take a client.
  const auto ms = [](long v) { return std::chrono::milliseconds(v); };
  const int heartbeat = 200;  // the peer expires after 2 x this
  const std::string config = "/tmp/zyolo-test-ha-" + std::to_string(::getpid()) + ".toml";
  std::ofstream(config) << "[ha]\nheartbeat_ms = " << heartbeat << "\nmissed = 2\n";
  Node p, b;
  const auto [pargs, bargs] = pair_args(p, b, config);

  bool both_active = false;
  // Waits until the primary's state is `ps` and the backup's `bs` ("" for any); false on timeout.
  auto wait_states = [&](const std::string& ps, const std::string& bs,
                         std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const std::string sp = state_of(p.metrics), sb = state_of(b.metrics);
      both_active = both_active || (sp == "ACTIVE" && sb == "ACTIVE");
      if ((ps.empty() || sp == ps) && (bs.empty() || sb == bs)) return true;
      if (std::chrono::steady_clock::now() >= until) {
        MESSAGE("primary ", sp, ", backup ", sb);
        return false;
      }
      std::this_thread::sleep_for(20ms);  // polling the metrics, not ordering anything
    }
  };

  auto primary = std::make_unique<Process>(pargs);
  Process backup(bargs);
  REQUIRE(primary->wait_for("ready", 20s));
  REQUIRE(backup.wait_for("ready", 20s));
  REQUIRE(wait_states("ACTIVE", "PASSIVE", 10s));
  Process pworker({"workers", "--connect", p.ep.backend, "--workers", "1", "--model", "none"});
  Process bworker({"workers", "--connect", b.ep.backend, "--workers", "1", "--model", "none"});
  REQUIRE(pworker.wait_for("ready", 20s));
  REQUIRE(bworker.wait_for("ready", 20s));

  // The primary serves; the backup, passive while the primary lives, answers nobody.
  RawClient to_primary(p.ep.frontend, "c-primary");
  CHECK(to_primary.ask("p1", 5s) == 200);
  RawClient to_backup(b.ep.frontend, "c-backup");
  for (const char* id : {"b1", "b2", "b3"}) CHECK(to_backup.ask(id, ms(400)) == 0);
  CHECK(wait_states("ACTIVE", "PASSIVE", 1s));

  // The primary dies. After its expiry the next client request makes the backup ACTIVE and is
  // answered by the worker registered with it.
  primary->signal(SIGKILL);
  CHECK(primary->wait() == 128 + SIGKILL);
  std::this_thread::sleep_for(ms(400) + 100ms);  // the fault's timing: past the peer's expiry
  CHECK(state_of(b.metrics) == "PASSIVE");       // time alone changes nothing
  int status = 0;
  for (int i = 0; i < 5 && status == 0; ++i)
    status = to_backup.ask("b4", 2s);  // Lazy Pirate, same id
  CHECK(status == 200);
  CHECK(wait_states("", "ACTIVE", 2s));

  // The primary comes back: it serves nobody, hears the backup ACTIVE and goes PASSIVE.
  primary = std::make_unique<Process>(pargs);
  REQUIRE(primary->wait_for("ready", 20s));
  RawClient again(p.ep.frontend, "c-primary-2");
  CHECK(again.ask("p2", ms(300)) == 0);
  CHECK(wait_states("PASSIVE", "ACTIVE", 10s));
  CHECK(again.ask("p3", ms(300)) == 0);
  CHECK(to_backup.ask("b5", 5s) == 200);  // the backup still serves
  CHECK(wait_states("PASSIVE", "ACTIVE", 1s));
  CHECK_FALSE(both_active);

  for (Process* w : {&pworker, &bworker}) {
    w->signal(SIGTERM);
    CHECK(w->wait() == 0);
  }
  primary->signal(SIGTERM);
  backup.signal(SIGTERM);
  CHECK(primary->wait() == 0);
  CHECK(backup.wait() == 0);
  INFO(primary->output());
  INFO(backup.output());
  // The stop lines name the final state; the restarted primary changed state once (to PASSIVE).
  CHECK(zyolo_test::has(primary->output(),
                        "zyolo broker: ha: stopped PASSIVE (primary): transitions 1 "));
  CHECK(zyolo_test::has(backup.output(),
                        "zyolo broker: ha: stopped ACTIVE (backup): transitions 2 "));
  std::remove(config.c_str());
}

TEST_CASE("two brokers both started as primary: neither serves, both say so") {
  const std::string config = "/tmp/zyolo-test-ha-same-" + std::to_string(::getpid()) + ".toml";
  std::ofstream(config) << "[ha]\nheartbeat_ms = 200\nmissed = 2\n";
  Node a, b;
  const std::string abind = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  const std::string bbind = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  // `a` starts well before `b`: its SUB retries `b` without back-off, so it hears `b` soon after
  // `b` is up (with libzmq's back-off it could take seconds more, and a primary that never heard
  // its peer serves once the expiry has passed).
  Process pa(a.args("primary", abind, bbind, config));
  REQUIRE(pa.wait_for("ready", 20s));
  std::this_thread::sleep_for(1500ms);  // the fault's timing: a start order, not synchronisation
  Process pb(b.args("primary", bbind, abind, config));
  REQUIRE(pb.wait_for("ready", 20s));
  // Each has heard the other say "primary" within a second of `b`'s start.
  const auto heard = [](int port) {
    const auto until = std::chrono::steady_clock::now() + 1s;
    while (std::chrono::steady_clock::now() < until) {
      if (sample_of(scrape(port), "zyolo_ha_anomalies_total{kind=\"same_role\"}") > 0) return true;
      std::this_thread::sleep_for(20ms);  // polling the metrics
    }
    return false;
  };
  CHECK(heard(a.metrics));
  CHECK(heard(b.metrics));
  Process worker({"workers", "--connect", a.ep.backend, "--workers", "1", "--model", "none"});
  REQUIRE(worker.wait_for("ready", 20s));
  RawClient client(a.ep.frontend, "c");
  for (const char* id : {"x1", "x2", "x3", "x4"}) CHECK(client.ask(id, 300ms) == 0);
  CHECK(state_of(a.metrics) == "PRIMARY");
  CHECK(state_of(b.metrics) == "PRIMARY");
  const std::string text = scrape(a.metrics);
  CHECK(zyolo_test::has(text, "zyolo_ha_dropped_total 4"));
  worker.signal(SIGTERM);
  CHECK(worker.wait() == 0);
  pa.signal(SIGTERM);
  pb.signal(SIGTERM);
  CHECK(pa.wait() == 0);
  CHECK(pb.wait() == 0);
  CHECK(zyolo_test::has(pa.output(),
                        "zyolo broker: ha: stopped PRIMARY (primary): transitions 0 dropped 4"));
  std::remove(config.c_str());
}

TEST_CASE("zyolo broker --ha: bad configuration is an error before anything starts") {
  const auto port = [] { return "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port()); };
  const std::string e = port();
  for (const auto& [args, error] : std::vector<std::pair<std::string, std::string>>{
           {"--ha primary --ha-bind " + e, "needs ha.peer (--ha-peer)"},
           {"--ha backup --ha-peer " + e, "needs ha.bind (--ha-bind)"},
           {"--ha primary --ha-bind " + e + " --ha-peer " + e, "is this broker's own ha.bind"},
           {"--ha-peer " + e, "need ha.role (--ha primary or --ha backup)"},
           {"--ha both --ha-bind " + e + " --ha-peer " + port(), "must be one of primary, backup"},
       }) {
    INFO(args);
    const auto r = zyolo_test::zyolo("broker --frontend " + port() + " --backend " + port() +
                                     " --control " + port() + " " + args);
    CHECK(r.code != 0);
    CHECK(zyolo_test::has(r.err, error));
    CHECK_FALSE(zyolo_test::has(r.out, "ready"));
  }
  // zyolo run has one broker: a pair's configuration is refused, not half obeyed.
  const std::string config = "/tmp/zyolo-test-ha-run-" + std::to_string(::getpid()) + ".toml";
  std::ofstream(config) << "[ha]\nrole = \"primary\"\nbind = \"" << port() << "\"\npeer = \""
                        << port() << "\"\n";
  const auto r = zyolo_test::zyolo("run --config " + config + " --requests 5 --model none");
  std::remove(config.c_str());
  CHECK(r.code != 0);
  CHECK(zyolo_test::has(r.err, "ha.role is for zyolo broker --ha"));
}

// Issue #18's whole fleet as processes over tcp: a primary and a backup (`zyolo broker --ha`),
// workers and a clients process each given both (`--connect P,B`; one worker `B,P`, which the
// passive backup sends on to the primary by withholding its heartbeats). Mid-run the primary is
// SIGKILLed: the backup takes over on the clients' vote, the workers move to it after their
// silence, and the first answer after the kill comes within 2 x ha.heartbeat_ms + the client's
// timeout (the peer's expiry, then one client timeout to reach the backup). The primary started
// again goes PASSIVE and the backup keeps serving; then the backup is SIGKILLed and the primary
// takes over the same way. Both brokers' states are read about every 100 ms throughout: never
// both ACTIVE. The clients end with every request answered once.
TEST_CASE("a broker pair with workers and clients: primary killed, restarted, backup killed") {
  // Short heartbeats, so that the run is short. The workers' silence (broker.liveness x
  // broker.heartbeat_ms, 600 ms) is past the peer's expiry (ha.missed x ha.heartbeat_ms, 500
  // ms), so a worker that reaches the survivor before its expiry stays there; the clients' fixed
  // timeout (800 ms) is past both, so the request in flight at the kill votes for the survivor
  // with its first retry and finds the workers there. The workers' back-off is long (2 s): a
  // worker that served the backup goes back to the primary, first of its list, at once; only a
  // whole round of the list heard from nobody waits it out.
  const int ha_heartbeat = 250, client_timeout = 800;
  zyolo_test::TempFile config("ha-fleet.toml",
                              "[ha]\nheartbeat_ms = " + std::to_string(ha_heartbeat) +
                                  "\nmissed = 2\n[broker]\nheartbeat_ms = 200\nliveness = 3\n"
                                  "[worker]\nreconnect_initial_ms = 2000\n"
                                  "[client]\ntimeout_ms = " +
                                  std::to_string(client_timeout) +
                                  "\nadaptive_timeout = false\n[run]\nreport_interval_ms = 20\n");
  const double bound = (2.0 * ha_heartbeat + client_timeout) / 1000.0;
  Node p, b;
  const auto [pargs, bargs] = pair_args(p, b, config.path);
  PairWatch watch(p.metrics, b.metrics);
  const auto ready = [](Process& proc) {
    return [&proc] { return proc.wait_for("ready", 100ms); };
  };

  auto primary = std::make_unique<Process>(pargs);
  auto backup = std::make_unique<Process>(bargs);
  REQUIRE(watch.until(ready(*primary), 20s));
  REQUIRE(watch.until(ready(*backup), 20s));
  REQUIRE(watch.states("ACTIVE", "PASSIVE", 10s));
  // Three workers: two given the pair primary first, one backup first. The backup, PASSIVE
  // with its peer alive, withholds its heartbeats, so that one moves on to the primary: all three
  // serve there before any client comes.
  Process workers({"workers", "--connect", p.ep.backend + "," + b.ep.backend, "--workers", "2",
                   "--model", "none", "--service-ms", "5", "--config", config.path});
  Process backup_first({"workers", "--connect", b.ep.backend + "," + p.ep.backend, "--workers", "1",
                        "--model", "none", "--service-ms", "5", "--config", config.path});
  REQUIRE(watch.until(ready(workers), 20s));
  REQUIRE(watch.until(ready(backup_first), 20s));
  const auto idle_workers = [](int metrics) {
    return sample_of(scrape(metrics), "zyolo_workers{service=\"yolo\",state=\"idle\"}");
  };
  CHECK(watch.until([&] { return idle_workers(p.metrics) == 3 && idle_workers(b.metrics) <= 0; },
                    10s));
  const std::string report = "/tmp/zyolo-test-ha-fleet-" + std::to_string(::getpid()) + ".json";
  const auto started = std::chrono::steady_clock::now();
  Process clients({"clients", "--connect", p.ep.frontend + "," + b.ep.frontend, "--model", "none",
                   "--clients", "4", "--duration", "8", "--config", config.path, "--quiet",
                   "--report", report});
  // Each phase goes on until the broker that serves has answered 100 more (about 0.2 s of work).
  const auto serves = [](int metrics, double from) {
    return [metrics, from] { return served(metrics) >= from + 100; };
  };
  const auto since_start = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  CHECK(watch.until(serves(p.metrics, 0), 10s));

  primary->signal(SIGKILL);
  const double first_kill = since_start();
  CHECK(primary->wait() == 128 + SIGKILL);
  CHECK(watch.until(serves(b.metrics, 0), 10s));
  CHECK(watch.backup == "ACTIVE");

  primary = std::make_unique<Process>(pargs);
  CHECK(watch.until(ready(*primary), 20s));
  CHECK(watch.states("PASSIVE", "ACTIVE", 10s));
  CHECK(watch.until(serves(b.metrics, served(b.metrics)), 10s));  // the backup still serves
  CHECK(watch.states("PASSIVE", "ACTIVE", 1s));
  CHECK(served(p.metrics) <= 0);  // the passive primary served nobody (no service yet: -1)

  backup->signal(SIGKILL);
  const double second_kill = since_start();
  CHECK(backup->wait() == 128 + SIGKILL);
  CHECK(watch.until(serves(p.metrics, 0), 10s));
  CHECK(watch.primary == "ACTIVE");
  REQUIRE(watch.until([&] { return clients.wait_for("zyolo run: ", 100ms); }, 30s));
  const double finished = since_start();
  CHECK(clients.wait() == 0);  // exit 0: every request ended, none lost or delivered twice
  MESSAGE("both brokers' states read " << watch.samples << " times");
  CHECK(watch.both_active == 0);

  for (Process* w : {&workers, &backup_first}) {
    w->signal(SIGTERM);
    CHECK(w->wait() == 0);
  }
  primary->signal(SIGTERM);
  CHECK(primary->wait() == 0);
  INFO(primary->output());
  INFO(workers.output());
  INFO(backup_first.output());
  CHECK_FALSE(zyolo_test::has(backup_first.output(), "served: w0 0\n"));  // it served too
  auto j = nlohmann::json::parse(zyolo_test::slurp(report));
  std::remove(report.c_str());
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["retries"].get<long>() >= 2);  // at each kill what was in flight came back
  // The outages, from the report's timeline: row i counts the answers of [20i, 20i + 20) ms of
  // the run (its "t" is when it was written: later when the process was slow). An outage is a run
  // of rows without answers, from the start of the last row with answers before it to the end of
  // the first after: since answers came every few milliseconds until the kill, its length is at
  // least the time from the kill to the first answer after it, and at most a row more.
  struct Outage {
    double from, length;
  };
  std::vector<Outage> outages;
  const auto& rows = j["timeline"];
  const double bin = 0.02;
  long last = -1;  // the row with answers before
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (rows[i]["answered"].get<long>() == 0) continue;
    if (last >= 0 && static_cast<long>(i) - last > 1)
      outages.push_back({static_cast<double>(last) * bin,
                         static_cast<double>(static_cast<long>(i) + 1 - last) * bin});
    last = static_cast<long>(i);
  }
  // Each kill's outage is the one over 0.3 s (no answer until a client's retry reached the other
  // broker; a slow process can leave a row or two empty anywhere) nearest to it on the clients'
  // clock, which began `start` after `started` (the end of the run less its length: later than
  // it began, since the report is written after the run, so the kills are placed a little early).
  const double start = finished - j["run"]["elapsed_s"].get<double>();
  std::erase_if(outages, [](const Outage& o) { return o.length <= 0.3; });
  const auto outage_at = [&](double kill) {
    Outage nearest{-100, 0};
    for (const Outage& o : outages)
      if (std::abs(o.from - (kill - start)) < std::abs(nearest.from - (kill - start))) nearest = o;
    MESSAGE("killed at " << kill - start << " s of the clients' run: no answer from "
                         << nearest.from << " s for " << nearest.length << " s (bound 2 x "
                         << ha_heartbeat << " + " << client_timeout << " ms = " << bound << " s)");
    CHECK(std::abs(nearest.from - (kill - start)) < 1.0);  // the kill was seen
    CHECK(nearest.length < bound);
    return nearest.length;
  };
  outage_at(first_kill);
  outage_at(second_kill);
  MESSAGE(outages.size() << " outages over 0.3 s in the run; latency max " << j["latency_ms"]["max"]
                         << " ms; retries " << j["requests"]["retries"]);
  // The restarted primary: PASSIVE on hearing the backup, ACTIVE on a client's vote.
  CHECK(zyolo_test::has(primary->output(),
                        "zyolo broker: ha: stopped ACTIVE (primary): transitions 2 "));
}

// RFC 7 as written, against the pair: plain clients (DEALER, and one REQ) and plain workers (raw
// cppzmq, above), one endpoint each, work with whichever broker is ACTIVE: the primary first, the
// backup after the primary's SIGKILL (the client's Lazy Pirate retry is its vote). A broker that
// is PASSIVE while its peer lives serves no plain request (nor hands it to its worker later):
// each one is dropped and counted (zyolo_ha_dropped_total), the backup before the failover, the
// restarted primary after it. (The passive broker withholds its heartbeats, so the plain workers
// registered with it reconnect after each silence, as RFC 7 says, and are served once it is
// ACTIVE.)
TEST_CASE("plain RFC 7 clients and workers against either broker of the pair while it is active") {
  const int heartbeat = 200;
  zyolo_test::TempFile config("ha-plain.toml",
                              "[ha]\nheartbeat_ms = 200\nmissed = 2\n[broker]\n"
                              "heartbeat_ms = 200\nliveness = 3\n");
  Node p, b;
  const auto [pargs, bargs] = pair_args(p, b, config.path);
  PairWatch watch(p.metrics, b.metrics);
  auto primary = std::make_unique<Process>(pargs);
  Process backup(bargs);
  REQUIRE(primary->wait_for("ready", 20s));
  REQUIRE(backup.wait_for("ready", 20s));
  REQUIRE(watch.states("ACTIVE", "PASSIVE", 10s));

  zmq::context_t ctx;
  PlainWorker wp(ctx, p.ep.backend, "wp", std::chrono::milliseconds(heartbeat));
  PlainWorker wb(ctx, b.ep.backend, "wb", std::chrono::milliseconds(heartbeat));
  PlainClient cp(ctx, p.ep.frontend, {&wp, &wb}), cb(ctx, b.ep.frontend, {&wp, &wb});
  const auto dropped = [](int metrics) {
    return sample_of(scrape(metrics), "zyolo_ha_dropped_total");
  };

  // The primary is ACTIVE: once it says (RFC 8's mmi.service) that the plain worker's READY is
  // in, the plain client's request reaches that worker, and the reply is RFC 7's, frame by frame.
  CHECK(watch.until(
      [&] {
        return cp.ask("mmi.service", "echo", 1s) == Parts{"", "MDPC01", "mmi.service", "200"};
      },
      5s));
  CHECK(cp.ask("echo", "p-1", 2s) == Parts{"", "MDPC01", "echo", "p-1", "wp"});
  // Two requests with the same body sent at once, as the guide's asynchronous client (mdclient2)
  // sends "Hello world": RFC 7 bodies carry no request id, so both are served.
  cp.send("echo", "same");
  cp.send("echo", "same");
  for (int i = 0; i < 2; ++i) CHECK(cp.next_reply(2s) == Parts{"", "MDPC01", "echo", "same", "wp"});

  // The backup is PASSIVE and its peer lives: the plain requests to it are dropped and counted.
  for (const char* body : {"b-1", "b-2", "b-3"}) CHECK(cb.ask("echo", body, 400ms) == std::nullopt);
  CHECK(watch.until([&] { return dropped(b.metrics) == 3; }, 2s));
  CHECK(watch.states("ACTIVE", "PASSIVE", 1s));

  // The primary dies: the client's retries to the backup make it ACTIVE (after the primary's
  // expiry), and its plain worker answers. What the backup dropped before never reaches it.
  primary->signal(SIGKILL);
  CHECK(primary->wait() == 128 + SIGKILL);
  CHECK(cb.ask_retrying("echo", "b-4", 1s, 10) == Parts{"", "MDPC01", "echo", "b-4", "wb"});
  CHECK(watch.states("", "ACTIVE", 2s));
  CHECK(cb.ask("echo", "b-5", 2s) == Parts{"", "MDPC01", "echo", "b-5", "wb"});
  CHECK(wb.served == std::vector<std::string>{"b-4", "b-5"});
  CHECK(wp.served == std::vector<std::string>{"p-1", "same", "same"});

  // The primary comes back and goes PASSIVE: a plain request to it is dropped, counted, and not
  // handed to its worker (wp, registered with it again); the backup still serves.
  primary = std::make_unique<Process>(pargs);
  REQUIRE(primary->wait_for("ready", 20s));
  CHECK(watch.states("PASSIVE", "ACTIVE", 10s));
  CHECK(cp.ask("echo", "p-2", 1s) == std::nullopt);
  CHECK(watch.until([&] { return dropped(p.metrics) == 1; }, 2s));
  CHECK(cb.ask("echo", "b-6", 2s) == Parts{"", "MDPC01", "echo", "b-6", "wb"});
  PlainClient req(ctx, b.ep.frontend, {&wp, &wb}, zmq::socket_type::req);  // RFC 7's REQ client
  CHECK(req.ask("echo", "b-7", 2s) == Parts{"MDPC01", "echo", "b-7", "wb"});
  CHECK(wp.served == std::vector<std::string>{"p-1", "same", "same"});
  CHECK(wb.served == std::vector<std::string>{"b-4", "b-5", "b-6", "b-7"});
  CHECK(watch.states("PASSIVE", "ACTIVE", 1s));
  MESSAGE("plain workers connected: wp " << wp.connections << " times, wb " << wb.connections);
  CHECK(watch.both_active == 0);

  primary->signal(SIGTERM);
  backup.signal(SIGTERM);
  CHECK(primary->wait() == 0);
  CHECK(backup.wait() == 0);
  INFO(backup.output());
  CHECK(zyolo_test::has(backup.output(),
                        "zyolo broker: ha: stopped ACTIVE (backup): transitions 2 "));
}
