// A broker pair (Binary Star, `zyolo broker --ha`) as separate processes over tcp: the primary
// becomes ACTIVE and the backup PASSIVE; the backup answers no client while the primary lives;
// SIGKILL the primary and a client's request makes the backup ACTIVE, answered by a worker
// registered with it; the primary restarted goes PASSIVE and serves nobody. Each broker's state
// is read from its metrics (zyolo_ha_state), and at no reading are both ACTIVE.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "process.hpp"
#include "run_binary.hpp"
#include "sockets.hpp"

namespace {

using namespace std::chrono_literals;
using namespace zyolo;
using zyolo_test::Endpoints;
using zyolo_test::Process;

// GET /metrics from 127.0.0.1:`port`: the body, or "" when nobody answers (a broker killed).
std::string scrape(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string get = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (::send(fd, get.data(), get.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(get.size())) {
      for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 2000) <= 0) break;
        char buffer[65536];
        const auto n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        out.append(buffer, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  return out;
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
  const std::string pbind = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  const std::string bbind = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  const auto pargs = p.args("primary", pbind, bbind, config),
             bargs = b.args("backup", bbind, pbind, config);

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
