// Split brain refused: a broker pair (Binary Star, `zyolo broker --ha`) as processes over tcp in
// three network namespaces joined by veth links (iproute2):
//
//              [10.78.1.1] primary [10.78.3.1] ---- [10.78.3.2] backup [10.78.2.1]
//                   |                 (the pair's state channel only)          |
//              [10.78.1.2] ------------- clients, workers -------------- [10.78.2.2]
//
// Clients and workers (in their own namespace, which forwards nothing) reach both brokers; the
// brokers reach each other only over their own link: no namespace has a default route, so no
// packet between them can go another way. Mid-run the test turns that link off for 5 s, five
// times the peer's expiry (ha.heartbeat_ms x ha.missed, 1 s): each broker hears its peer go silent,
// but the clients still reach the primary, so none votes for the backup, which must stay PASSIVE
// while the primary stays ACTIVE and keeps answering. With the link back the pair agree again
// (each hears the other, no state changes), and the clients end with nothing lost or delivered
// twice. Each broker's state is read from its metrics at least every 100 ms; at no reading are
// both ACTIVE.
//
// A second case cuts the primary off from everything: the clients' timeouts bring them to the
// backup, whose peer is silent, so their vote makes it ACTIVE, and the workers follow it. The
// primary, alone, stays ACTIVE too (it cannot know), and serves nobody: nobody reaches it. Healed,
// the two ACTIVE brokers hear each other and the backup yields: the workers and clients go back to
// the primary, nothing lost or delivered twice, and from then on no reading has two ACTIVE.
// Network namespaces need root (CI has it); without it the test fails, saying so.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "metrics_get.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "run_binary.hpp"
#include "scenario_runs.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using zyolo_test::Process;
using zyolo_test::ip;

// True when a shell command line exits 0 (its output discarded).
bool succeeds(const std::string& cmd) {
  return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
}

// The primary's, the backup's and the clients' and workers' namespaces, named after this test
// process (so that runs side by side never share one; the addresses are private to them), and
// their three veth links; removed at the end (with them go their interfaces; processes still
// inside are killed first by Process).
class Network {
 public:
  Network() {
    REQUIRE_MESSAGE(::geteuid() == 0,
                    "the pair partition test makes network namespaces: run it as root");
    REQUIRE_MESSAGE(succeeds("ip -V"), "the pair partition test needs iproute2 (ip)");
    try {  // a step that fails removes what the steps before it made
      for (const auto& ns : {primary, backup, nodes}) {
        ip("netns add " + ns);
        ip("-n " + ns + " link set lo up");
      }
      zyolo_test::veth(primary, "to-nodes", "10.78.1.1", nodes, "to-primary", "10.78.1.2");
      zyolo_test::veth(backup, "to-nodes", "10.78.2.1", nodes, "to-backup", "10.78.2.2");
      zyolo_test::veth(primary, "to-backup", "10.78.3.1", backup, "to-primary", "10.78.3.2");
      // The nodes' namespace reaches both brokers and must never carry a packet from one to the
      // other (the brokers have no route through it either: no default routes anywhere).
      REQUIRE(succeeds("ip netns exec " + nodes + " sysctl -qw net.ipv4.ip_forward=0"));
    } catch (...) {
      remove();
      throw;
    }
  }
  ~Network() { remove(); }
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Turns the brokers' own link off or on (the primary's end; the backup's loses its carrier).
  void pair_link(bool up) { ip("-n " + primary + " link set to-backup " + (up ? "up" : "down")); }
  // Turns the primary's link to the clients and workers off or on.
  void primary_link(bool up) { ip("-n " + primary + " link set to-nodes " + (up ? "up" : "down")); }

  // Whether namespace `ns` has a route to `address` (ip route get fails: unreachable).
  bool route(const std::string& ns, const std::string& address) const {
    return succeeds("ip -n " + ns + " route get " + address);
  }

  const std::string tag = std::to_string(::getpid());
  const std::string primary = "zyolo-hp" + tag, backup = "zyolo-hb" + tag, nodes = "zyolo-hn" + tag;

 private:
  void remove() {
    for (const auto& ns : {primary, backup, nodes})
      std::system(("ip netns del " + ns + " 2>/dev/null").c_str());
  }

};

// A TCP socket in network namespace `ns` (a socket stays in the namespace it was made in; only a
// short-lived thread of this process enters it), or -1.
int socket_in(const std::string& ns) {
  int fd = -1;
  std::thread([&] {
    const int netns = ::open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (netns < 0) return;
    if (::setns(netns, CLONE_NEWNET) == 0) fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ::close(netns);
  }).join();
  return fd;
}

// GET /metrics from `host`:`port`, from inside namespace `ns`: the answer, or "" when nobody
// answers.
std::string scrape(const std::string& ns, const std::string& host, int port) {
  const int fd = socket_in(ns);
  REQUIRE(fd >= 0);
  return zyolo_test::get_metrics(fd, host, port);
}

// The sum of the samples whose line starts with `series` ("name" or "name{label=...") in
// exposition text; -1 when there is none.
double sum_of(const std::string& text, const std::string& series) {
  double sum = -1;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(series)) continue;
    const auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    const std::string name = line.substr(0, line.find_first_of("{ "));
    if (name != series.substr(0, series.find('{'))) continue;  // a longer name with this prefix
    sum = (sum < 0 ? 0 : sum) + std::stod(line.substr(space + 1));
  }
  return sum;
}

// What one reading of a broker's metrics says.
struct Reading {
  std::string state;        // "" when the broker does not answer
  double peer_up = -1;      // zyolo_ha_peer_up
  double peer_lost = -1;    // zyolo_ha_peer_lost_total
  double answered = -1;     // zyolo_requests_total{status="200"}
  double dropped = -1;      // zyolo_ha_dropped_total
  double transitions = -1;  // zyolo_ha_transitions_total
};

std::string show(const Reading& r) {
  return r.state + " (peer up " + std::to_string(static_cast<long>(r.peer_up)) + ", lost " +
         std::to_string(static_cast<long>(r.peer_lost)) + ", answered " +
         std::to_string(static_cast<long>(r.answered)) + ")";
}

// One broker of the pair: its namespace and its address on the nodes' link. Its metrics listen
// on its own loopback, read from inside its namespace: whichever links are down.
struct Broker {
  std::string ns, address;
  std::string endpoint(int port) const { return "tcp://" + address + ":" + std::to_string(port); }

  Reading read() const {
    const std::string text = scrape(ns, "127.0.0.1", 9464);
    Reading r;
    for (const char* s : {"PRIMARY", "BACKUP", "ACTIVE", "PASSIVE"})
      if (zyolo_test::has(text, std::string("zyolo_ha_state{state=\"") + s + "\"} 1")) r.state = s;
    r.peer_up = sum_of(text, "zyolo_ha_peer_up");
    r.peer_lost = sum_of(text, "zyolo_ha_peer_lost_total");
    r.answered = sum_of(text, "zyolo_requests_total{service=\"yolo\",status=\"200\"}");
    r.dropped = sum_of(text, "zyolo_ha_dropped_total");
    r.transitions = sum_of(text, "zyolo_ha_transitions_total");
    return r;
  }
};

// The network, the pair started (the primary ACTIVE, the backup PASSIVE, each hearing the other),
// its workers and clients, and the readings of both brokers. The clients wait `timeout_ms` for an
// answer (no adaptive timeout) and run `duration_s`.
// Not scaled by ZYOLO_TEST_TIME_SCALE: what is timed is the network (the peer's expiry against the
// cuts), and the clients' timeout is far above any answer's time, under a sanitizer too.
class Pair {
 public:
  // The peer expires after 1 s: four heartbeats, so that a busy machine (a sanitizer's build and
  // other tests beside this one) delaying a broker's heartbeat is not taken for a cut.
  static constexpr int kHeartbeatMs = 250, kMissed = 4;
  static constexpr std::chrono::milliseconds kExpiry{kHeartbeatMs * kMissed};

  Pair(int timeout_ms, int duration_s) {
    std::ofstream(config) << "[ha]\nheartbeat_ms = " << kHeartbeatMs << "\nmissed = " << kMissed
                          << "\n[broker]\nheartbeat_ms = 250\nliveness = 3\n[client]\ntimeout_ms = "
                          << timeout_ms
                          << "\nadaptive_timeout = false\n[metrics]\nrefresh_ms = 50\n";
    // The pair's state channel binds and connects on the brokers' own link only.
    primary_ = std::make_unique<Process>(
        broker_args(p, "primary", "tcp://10.78.3.1:5560", "tcp://10.78.3.2:5560"), net.primary);
    backup_ = std::make_unique<Process>(
        broker_args(b, "backup", "tcp://10.78.3.2:5560", "tcp://10.78.3.1:5560"), net.backup);
    REQUIRE(primary_->wait_for("ready", 20s));
    REQUIRE(backup_->wait_for("ready", 20s));

    // The brokers reach each other only over their own link: neither has a route to the other's
    // address on the nodes' side, and the nodes' namespace forwards nothing.
    CHECK_FALSE(net.route(net.primary, b.address));
    CHECK_FALSE(net.route(net.backup, p.address));
    CHECK(net.route(net.primary, "10.78.3.2"));
    CHECK(
        succeeds("test \"$(ip netns exec " + net.nodes + " sysctl -n net.ipv4.ip_forward)\" = 0"));

    REQUIRE(watch(
        [&] {
          return rp.state == "ACTIVE" && rb.state == "PASSIVE" && rp.peer_up == 1 &&
                 rb.peer_up == 1;
        },
        20s, 20ms));
    workers_ = std::make_unique<Process>(
        std::vector<std::string>{"workers", "--connect", p.endpoint(5556) + "," + b.endpoint(5556),
                                 "--workers", "2", "--model", "none", "--config", config},
        net.nodes);
    REQUIRE(workers_->wait_for("ready", 20s));
    clients_ = std::make_unique<Process>(
        std::vector<std::string>{"clients", "--connect", p.endpoint(5555) + "," + b.endpoint(5555),
                                 "--model", "none", "--clients", "4", "--duration",
                                 std::to_string(duration_s), "--quiet", "--report", report,
                                 "--config", config},
        net.nodes);
    // Answers flow through the primary.
    REQUIRE(watch([&] { return rp.answered >= 20; }, 10s, 50ms));
    CHECK(rp.state == "ACTIVE");
    CHECK(rb.state == "PASSIVE");
    CHECK(rb.peer_lost == 0);
  }
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;

  // Reads both brokers until `done` says so (true) or `timeout` passes (false), every `every`.
  // A reading with both ACTIVE is counted (and said, the first time) unless the test allows it.
  template <class Done>
  bool watch(Done done, std::chrono::milliseconds timeout, std::chrono::milliseconds every) {
    const auto until = Clock::now() + timeout;
    for (;;) {
      rp = p.read();
      rb = b.read();
      ++readings;
      if (rp.state == "ACTIVE" && rb.state == "ACTIVE") {
        if (!dual_allowed) {
          if (both_active == 0) MESSAGE("both ACTIVE: primary ", show(rp), ", backup ", show(rb));
          ++both_active;
        } else {
          ++both_active_allowed;
        }
      }
      if (done()) return true;
      if (Clock::now() >= until) {
        MESSAGE("primary ", show(rp), ", backup ", show(rb));
        return false;
      }
      std::this_thread::sleep_for(every);  // the readings' pace, not ordering anything
    }
  }

  // Waits for the clients' end and returns their report.
  nlohmann::json clients_report() {
    const int code = clients_->wait();
    INFO(clients_->output());
    CHECK(code == 0);  // exit 0: every request ended, none lost or delivered twice
    return nlohmann::json::parse(zyolo_test::slurp(report));
  }

  // Stops the workers and the brokers (each must exit 0) and returns the brokers' stdout.
  std::pair<std::string, std::string> stop() {
    workers_->signal(SIGTERM);
    CHECK(workers_->wait() == 0);
    primary_->signal(SIGTERM);
    backup_->signal(SIGTERM);
    CHECK(primary_->wait() == 0);
    CHECK(backup_->wait() == 0);
    return {primary_->output(), backup_->output()};
  }

  Network net;
  Broker p{net.primary, "10.78.1.1"}, b{net.backup, "10.78.2.1"};
  // A file of this test's own, removed at the end (a failed start included).
  struct Removed {
    std::string path;
    ~Removed() { std::remove(path.c_str()); }
  };
  const Removed config_file{"/tmp/zyolo-test-ha-partition-" + net.tag + ".toml"};
  const Removed report_file{"/tmp/zyolo-test-ha-partition-" + net.tag + ".json"};
  const std::string& config = config_file.path;
  const std::string& report = report_file.path;
  Reading rp, rb;                // the latest readings
  long readings = 0;             // readings of both brokers
  long both_active = 0;          // readings with both ACTIVE where that is not allowed
  long both_active_allowed = 0;  // ... and where it is (the primary cut off from everyone)
  bool dual_allowed = false;

 private:
  std::vector<std::string> broker_args(const Broker& self, const std::string& role,
                                       const std::string& bind, const std::string& peer) const {
    return {"broker",
            "--frontend",
            self.endpoint(5555),
            "--backend",
            self.endpoint(5556),
            "--control",
            self.endpoint(5557),
            "--ha",
            role,
            "--ha-bind",
            bind,
            "--ha-peer",
            peer,
            "--metrics",
            "127.0.0.1:9464",
            "--config",
            config};
  }

  std::unique_ptr<Process> primary_, backup_, workers_, clients_;
};

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

TEST_CASE(
    "the link between the brokers cut while clients reach the primary: the backup stays passive, "
    "the pair agree again, nothing lost") {
  // The clients wait 4 s for an answer: none of them times out and moves to the backup while the
  // primary answers, so no vote reaches the backup.
  Pair pair(4000, 10);
  auto& rp = pair.rp;
  auto& rb = pair.rb;

  // The cut: the brokers' link down for 5 s, five expiries. Each hears its peer go silent; no
  // client comes to the backup, so it stays PASSIVE; the primary stays ACTIVE and serves.
  const auto cut_at = Clock::now();
  pair.net.pair_link(false);
  CHECK_FALSE(pair.net.route(pair.net.primary, "10.78.3.2"));  // the only way between them is gone
  const double answered_at_cut = rp.answered;
  double noticed_ms = -1;
  bool backup_moved = false, primary_moved = false;
  (void)pair.watch(
      [&] {
        if (noticed_ms < 0 && rb.peer_lost >= 1 && rb.peer_up == 0) noticed_ms = ms_since(cut_at);
        backup_moved = backup_moved || rb.state != "PASSIVE";
        primary_moved = primary_moved || rp.state != "ACTIVE";
        return Clock::now() - cut_at >= 5 * Pair::kExpiry;
      },
      10s, 100ms);
  MESSAGE("the backup noticed the cut after ", noticed_ms, " ms (expiry ", Pair::kExpiry.count(),
          " ms)");
  CHECK(noticed_ms > 0);  // the cut was real: the backup heard its peer go silent
  CHECK(rb.peer_lost >= 1);
  CHECK(rb.peer_up == 0);
  CHECK(rp.peer_up == 0);
  CHECK(rp.peer_lost >= 1);
  CHECK_FALSE(backup_moved);  // split brain refused: no client voted for the backup
  CHECK_FALSE(primary_moved);
  CHECK(rb.dropped == 0);                // no client came to it
  CHECK(rp.answered > answered_at_cut);  // the clients were answered all along

  // The link back: each hears the other again, and neither changes state.
  const auto heal_at = Clock::now();
  pair.net.pair_link(true);
  CHECK(pair.watch([&] { return rp.peer_up == 1 && rb.peer_up == 1; }, 10s, 50ms));
  MESSAGE("the pair heard each other again ", ms_since(heal_at), " ms after the link came back");
  CHECK(rp.state == "ACTIVE");
  CHECK(rb.state == "PASSIVE");
  const double answered_at_heal = rp.answered;
  CHECK(pair.watch([&] { return rp.answered > answered_at_heal + 20; }, 5s, 100ms));

  // The clients end: every request answered once, none retried (none went to the backup).
  const auto j = pair.clients_report();
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["retries"] == 0);
  (void)pair.watch([&] { return true; }, 0ms, 0ms);
  CHECK(rp.state == "ACTIVE");
  CHECK(rb.state == "PASSIVE");
  CHECK(rb.dropped == 0);
  CHECK(pair.both_active == 0);
  MESSAGE(pair.readings, " readings of both brokers");

  const auto [primary, backup] = pair.stop();
  INFO(primary);
  INFO(backup);
  // One state change each, at the start; no client came to the backup.
  CHECK(zyolo_test::has(
      primary, "zyolo broker: ha: stopped ACTIVE (primary): transitions 1 dropped 0 peer lost "));
  CHECK(zyolo_test::has(
      backup, "zyolo broker: ha: stopped PASSIVE (backup): transitions 1 dropped 0 peer lost "));
}

TEST_CASE(
    "the primary cut off from everyone: the backup takes over on the clients' vote; healed, the "
    "backup yields and everyone returns to the primary, nothing lost") {
  // The clients give up on a broker after 1.5 s without an answer (past the peer's expiry), and
  // move to the other.
  Pair pair(1500, 12);
  auto& rp = pair.rp;
  auto& rb = pair.rb;

  // The primary's links down, to the nodes and to the backup: it stays ACTIVE, alone, serving
  // nobody (two ACTIVE readings are expected here: nobody can reach the primary). The clients
  // time out, come to the backup and make it ACTIVE; the workers follow.
  const auto cut_at = Clock::now();
  pair.dual_allowed = true;
  pair.net.primary_link(false);
  pair.net.pair_link(false);
  CHECK_FALSE(pair.net.route(pair.net.primary, "10.78.3.2"));
  CHECK_FALSE(pair.net.route(pair.net.primary, "10.78.1.2"));
  REQUIRE(pair.watch([&] { return rb.state == "ACTIVE"; }, 10s, 50ms));
  MESSAGE("the backup became ACTIVE ", ms_since(cut_at), " ms after the primary was cut off");
  CHECK(rb.peer_up == 0);
  REQUIRE(pair.watch([&] { return rb.answered >= 20; }, 10s, 50ms));
  MESSAGE("the backup answered 20 requests ", ms_since(cut_at), " ms after the cut");
  CHECK(rp.state == "ACTIVE");  // alone, unreachable
  const double primary_answered_alone = rp.answered, backup_answered_alone = rb.answered;
  // Both ACTIVE for a second more, and only the backup serves: nobody reaches the primary.
  const auto both_from = Clock::now();
  (void)pair.watch([&] { return Clock::now() - both_from >= 1s; }, 5s, 100ms);
  CHECK(rp.state == "ACTIVE");
  CHECK(rb.state == "ACTIVE");
  CHECK(rp.answered == primary_answered_alone);
  CHECK(rb.answered > backup_answered_alone);

  // Healed: the primary hears the backup ACTIVE (it stays), the backup hears the primary ACTIVE
  // and yields; its workers hear no heartbeat and move on, its clients are turned away and move
  // on, to the primary, which answers again.
  const auto heal_at = Clock::now();
  pair.net.primary_link(true);
  pair.net.pair_link(true);
  REQUIRE(pair.watch(
      [&] {
        return rp.state == "ACTIVE" && rb.state == "PASSIVE" && rp.peer_up == 1 && rb.peer_up == 1;
      },
      10s, 20ms));
  MESSAGE("the backup yielded ", ms_since(heal_at), " ms after the heal");
  pair.dual_allowed = false;
  CHECK(pair.watch([&] { return rp.answered >= primary_answered_alone + 20; }, 10s, 50ms));
  MESSAGE("the primary answered 20 more requests ", ms_since(heal_at), " ms after the heal");
  const double backup_answered = rb.answered;

  const auto j = pair.clients_report();
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["retries"].get<long>() >= 4);  // each client moved at least once
  (void)pair.watch([&] { return true; }, 0ms, 0ms);
  CHECK(rp.state == "ACTIVE");
  CHECK(rb.state == "PASSIVE");
  CHECK(rb.answered == backup_answered);  // the backup served nobody after it yielded
  CHECK(pair.both_active == 0);           // from the heal on, never two ACTIVE
  MESSAGE(pair.readings, " readings of both brokers, ", pair.both_active_allowed,
          " with both ACTIVE while the primary was cut off");

  const auto [primary, backup] = pair.stop();
  INFO(primary);
  INFO(backup);
  // The primary never changed state after the start; the backup became PASSIVE, then ACTIVE
  // (the vote), then PASSIVE again (it yielded).
  CHECK(zyolo_test::has(
      primary, "zyolo broker: ha: stopped ACTIVE (primary): transitions 1 dropped 0 peer lost "));
  CHECK(zyolo_test::has(backup, "zyolo broker: ha: stopped PASSIVE (backup): transitions 3 "));
}
