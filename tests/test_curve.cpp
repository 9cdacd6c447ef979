// CURVE security between processes: `zyolo keygen`, a broker that lets in only the public keys of
// its allow-list (through its ZAP handler actor, threads/zap.cpp), and encrypted traffic. Known
// workers and clients are served; a stranger with a key of its own, and a client with no CURVE at
// all, get nothing, and the broker counts and names the refused key. A byte tap between client and
// broker shows the MDP frames in clear on plain tcp, and not with CURVE. A broker pair's state
// channel is CURVE too, and lets in only the other broker of the pair.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "process.hpp"
#include "run_binary.hpp"
#include "scenario_runs.hpp"
#include "sockets.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using zyolo_test::Process;

// A folder of key pairs made by `zyolo keygen`, and an allow-list folder with some of their
// public halves; removed at the end.
struct KeyFolder {
  const std::string dir = "/tmp/zyolo-test-curve-" + std::to_string(::getpid());
  const std::string allow = dir + "/allow";
  explicit KeyFolder(const std::vector<std::string>& allowed) {
    fs::create_directories(allow);
    auto r = zyolo_test::zyolo("keygen broker worker client stranger --dir " + dir);
    INFO(r.out, r.err);
    REQUIRE(r.code == 0);
    for (const auto& name : allowed) fs::copy_file(dir + "/" + name + ".pub", allow + "/" + name + ".pub");
  }
  ~KeyFolder() { fs::remove_all(dir); }
  std::string key(const std::string& name) const { return dir + "/" + name + ".key"; }
  std::string pub(const std::string& name) const { return dir + "/" + name + ".pub"; }
  // The public key (Z85) a key file holds.
  std::string public_of(const std::string& name) const {
    const std::string text = zyolo_test::slurp(pub(name));
    const auto at = text.find("public = \"");
    REQUIRE(at != std::string::npos);
    return text.substr(at + 10, 40);
  }
  // The secret key (Z85) a key pair file holds.
  std::string secret_of(const std::string& name) const {
    const std::string text = zyolo_test::slurp(key(name));
    const auto at = text.find("secret = \"");
    REQUIRE(at != std::string::npos);
    return text.substr(at + 10, 40);
  }
  // The flags that make a worker or client process a CURVE client with key pair `name`.
  std::string peer_flags(const std::string& name) const {
    return " --curve " + key(name) + " --server-key " + pub("broker");
  }
};

// A tcp relay on loopback that keeps every byte the connecting side sends: a wire tap between
// clients and the broker. It serves any number of connections (Lazy Pirate opens new ones)
// until stop().
class Tap {
 public:
  explicit Tap(int target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = loopback(0);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    REQUIRE(::pipe(stop_) == 0);
    thread_ = std::thread([this] { relay(); });
  }
  ~Tap() { stop(); }

  // Stops the relay and returns what the connecting side sent.
  std::string stop() {
    if (thread_.joinable()) {
      (void)!::write(stop_[1], "x", 1);
      thread_.join();
      for (int fd : {listener_, stop_[0], stop_[1]}) ::close(fd);
    }
    return seen_;
  }

  int port = 0;

 private:
  static sockaddr_in loopback(int p) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(p));
    return addr;
  }

  void relay() {
    std::vector<std::pair<int, int>> pairs;  // (accepted, to the target)
    while (true) {
      std::vector<pollfd> fds = {{stop_[0], POLLIN, 0}, {listener_, POLLIN, 0}};
      for (auto [a, b] : pairs) {
        fds.push_back({a, POLLIN, 0});
        fds.push_back({b, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds[0].revents) break;
      std::vector<std::pair<int, int>> open;  // the pairs still open after this round
      for (std::size_t k = 0; k < pairs.size(); ++k) {
        const auto [a, b] = pairs[k];
        const bool ok = copy(fds[2 + 2 * k].revents, a, b, true) && copy(fds[3 + 2 * k].revents, b, a, false);
        if (ok) {
          open.emplace_back(a, b);
        } else {
          ::close(a);
          ::close(b);
        }
      }
      if (fds[1].revents & POLLIN) {  // a new connection: polled from the next round on
        const int a = ::accept(listener_, nullptr, nullptr);
        const int b = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr = loopback(target_port_);
        if (::connect(b, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
          open.emplace_back(a, b);
        } else {
          ::close(a);
          ::close(b);
        }
      }
      pairs = std::move(open);
    }
    for (auto [a, b] : pairs) ::close(a), ::close(b);
  }

  // Copies what is readable on `from` to `to`; false once either side is closed.
  bool copy(short revents, int from, int to, bool keep) {
    if (!revents) return true;
    char buffer[65536];
    const ssize_t n = ::read(from, buffer, sizeof buffer);
    if (n <= 0) return false;
    if (keep) seen_.append(buffer, static_cast<std::size_t>(n));
    for (ssize_t sent = 0; sent < n;) {
      const ssize_t w = ::write(to, buffer + sent, static_cast<std::size_t>(n - sent));
      if (w <= 0) return false;
      sent += w;
    }
    return true;
  }

  int target_port_;
  int listener_ = -1, stop_[2] = {-1, -1};
  std::string seen_;  // written by the relay thread only; read after join
  std::thread thread_;
};

// A broker and two workers on free loopback ports, with `curve` flags (empty: plain tcp).
struct Fleet : zyolo_test::Endpoints {
  std::unique_ptr<Process> broker, workers;

  Fleet(const std::vector<std::string>& broker_curve, const std::vector<std::string>& worker_curve) {
    std::vector<std::string> b = broker_args();
    b.insert(b.end(), broker_curve.begin(), broker_curve.end());
    broker = std::make_unique<Process>(b);
    REQUIRE(broker->wait_for("ready", 20s));
    std::vector<std::string> w = {"workers", "--connect", backend, "--workers", "2", "--model", "none"};
    w.insert(w.end(), worker_curve.begin(), worker_curve.end());
    workers = std::make_unique<Process>(w);
    REQUIRE(workers->wait_for("ready", 20s));
  }

  // Stops workers and broker with SIGTERM; returns the broker's output.
  std::string stop() {
    workers->signal(SIGTERM);
    CHECK(workers->wait() == 0);
    broker->signal(SIGTERM);
    CHECK(broker->wait() == 0);
    return broker->output();
  }
};

// Clients that give up fast: a stranger's requests end as errors within a few seconds.
const zyolo_test::TempFile kImpatient("impatient.toml", "[client]\ntimeout_ms = 500\ndeadline_ms = 2000\n");

}  // namespace

TEST_CASE("zyolo keygen writes a secret key pair and a public key, and never overwrites them by accident") {
  KeyFolder keys({});
  struct stat st {};
  REQUIRE(::stat(keys.key("client").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  const std::string pair = zyolo_test::slurp(keys.key("client"));
  CHECK(zyolo_test::has(pair, "public = \"" + keys.public_of("client") + "\""));
  CHECK(zyolo_test::has(pair, "secret = \""));
  CHECK_FALSE(zyolo_test::has(zyolo_test::slurp(keys.pub("client")), "secret"));
  CHECK(keys.public_of("client") != keys.public_of("stranger"));

  auto again = zyolo_test::zyolo("keygen client --dir " + keys.dir);
  CHECK(again.code == 2);
  CHECK(zyolo_test::has(again.err, "exists"));
  const std::string before = keys.public_of("client");
  CHECK(zyolo_test::zyolo("keygen client --force --dir " + keys.dir).code == 0);
  CHECK(keys.public_of("client") != before);

  auto bad = zyolo_test::zyolo("keygen ../x --dir " + keys.dir);
  CHECK(bad.code == 2);
  CHECK(zyolo_test::has(bad.err, "plain file name"));
}

TEST_CASE("bad CURVE settings are refused at start, each with a clear error") {
  KeyFolder keys({"client"});
  const std::string ep = " --frontend tcp://127.0.0.1:1 --backend tcp://127.0.0.1:2 --control tcp://127.0.0.1:3";
  const std::string connect = " --connect tcp://127.0.0.1:1 --model none";
  struct Case {
    std::string args, error;
  };
  const fs::path empty = keys.dir + "/empty";
  fs::create_directories(empty);
  const Case cases[] = {
      {"broker" + ep + " --curve " + keys.dir + "/nope.key --allow " + keys.allow, "no such key file"},
      {"broker" + ep + " --curve " + keys.key("broker"), "needs --allow"},
      {"broker" + ep + " --curve " + keys.key("broker") + " --allow " + empty.string(), "holds no .pub files"},
      {"broker" + ep + " --curve " + keys.pub("broker") + " --allow " + keys.allow, "has no 'secret' key"},
      {"workers" + connect + " --curve " + keys.key("client"), "needs --server-key"},
      {"clients" + connect + " --requests 1 --server-key " + keys.pub("broker"), "needs --curve"},
      {"clients" + connect + " --requests 1 --curve " + keys.key("client") + " --server-key " + keys.dir + "/x.pub",
       "no such key file"},
  };
  for (const auto& c : cases) {
    auto r = zyolo_test::zyolo(c.args);
    INFO(c.args, "\n", r.err);
    CHECK(r.code == 2);
    CHECK(zyolo_test::has(r.err, c.error));
  }
  // A secret key others can read is no secret.
  fs::permissions(keys.key("client"), fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  auto open = zyolo_test::zyolo("clients" + connect + " --requests 1" + keys.peer_flags("client"));
  CHECK(open.code == 2);
  CHECK(zyolo_test::has(open.err, "chmod 600"));
  // zyolo run keeps its actors in one process: [curve] is an error there, not ignored.
  zyolo_test::TempFile config("curve.toml", "[curve]\nkey = \"" + keys.key("broker") + "\"\n");
  auto run = zyolo_test::zyolo("run --requests 1 --model none --config " + config.path);
  CHECK(run.code == 2);
  CHECK(zyolo_test::has(run.err, "one process"));
}

TEST_CASE("with CURVE a known client is served over encrypted tcp; a stranger and a plain client get nothing") {
  KeyFolder keys({"worker", "client"});
  Fleet fleet({"--curve", keys.key("broker"), "--allow", keys.allow},
              {"--curve", keys.key("worker"), "--server-key", keys.pub("broker")});

  Tap tap(fleet.frontend_port);
  auto j = zyolo_test::run_report("clients --connect tcp://127.0.0.1:" + std::to_string(tap.port) +
                                  " --model none --clients 2 --requests 100" + keys.peer_flags("client"));
  const std::string wire = tap.stop();
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["answered"] == 100);
  CHECK(wire.size() > 100 * 40);            // the requests went through the tap ...
  CHECK(zyolo_test::has(wire, "CURVE"));    // ... after a CURVE greeting (in clear, by design)
  CHECK_FALSE(zyolo_test::has(wire, "MDPC01"));  // ... and encrypted: no MDP header in clear

  // A client with a key pair the broker does not know: refused at the door, every request ends
  // as an error (504) at its deadline: accounted for, so the exit code is 0.
  auto stranger = zyolo_test::zyolo("clients --connect " + fleet.frontend + " --model none --requests 2 --quiet --config " +
                                    kImpatient.path + keys.peer_flags("stranger"));
  INFO(stranger.out, stranger.err);
  CHECK(stranger.code == 0);
  CHECK(zyolo_test::has(stranger.out, "sent 2  answered 0  errors 2"));
  // A client without CURVE cannot even complete the handshake.
  auto plain = zyolo_test::zyolo("clients --connect " + fleet.frontend + " --model none --requests 2 --quiet --config " +
                                 kImpatient.path);
  INFO(plain.out, plain.err);
  CHECK(plain.code == 0);
  CHECK(zyolo_test::has(plain.out, "sent 2  answered 0  errors 2"));

  const std::string out = fleet.stop();
  INFO(out);
  CHECK(zyolo_test::has(out, "replies 100"));  // the stranger's and the plain client's: none
  CHECK(zyolo_test::has(out, "curve: 2 keys allowed"));
  CHECK(zyolo_test::has(out, "refused public key " + keys.public_of("stranger")));
  CHECK_FALSE(zyolo_test::has(out, "refused public key " + keys.public_of("client")));
  CHECK_FALSE(zyolo_test::has(out, "refused 0"));
}

TEST_CASE("the same tap on plain tcp sees the MDP frames in clear (the check above can fail)") {
  Fleet fleet({}, {});
  Tap tap(fleet.frontend_port);
  auto j = zyolo_test::run_report("clients --connect tcp://127.0.0.1:" + std::to_string(tap.port) +
                                  " --model none --clients 2 --requests 100");
  const std::string wire = tap.stop();
  zyolo_test::check_nothing_lost(j);
  CHECK(zyolo_test::has(wire, "MDPC01"));
  CHECK_FALSE(zyolo_test::has(wire, "CURVE"));
  fleet.stop();
}

TEST_CASE(
    "a broker pair with CURVE: the state channel is encrypted and lets in only the other broker; "
    "the backup takes over") {
  KeyFolder keys({"worker", "client"});
  // Both brokers hold the one key pair "broker", which clients and workers know.
  const zyolo_test::TempFile config("pair.toml",
                                    "[ha]\nheartbeat_ms = 200\nmissed = 2\n"
                                    "[broker]\nheartbeat_ms = 200\n"
                                    "[client]\ntimeout_ms = 500\n");
  zyolo_test::Endpoints pe, be;
  const std::string pbind = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  const std::string bbind = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  auto broker = [&](const zyolo_test::Endpoints& ep, const std::string& role,
                    const std::string& bind, const std::string& peer) {
    auto a = ep.broker_args();
    a.insert(a.end(), {"--ha", role, "--ha-bind", bind, "--ha-peer", peer, "--curve",
                       keys.key("broker"), "--allow", keys.allow, "--config", config.path});
    return std::make_unique<Process>(a);
  };
  auto primary = broker(pe, "primary", pbind, bbind);
  auto backup = broker(be, "backup", bbind, pbind);
  REQUIRE(primary->wait_for("ready", 20s));
  REQUIRE(backup->wait_for("ready", 20s));

  // Two listeners on the primary's state channel, CURVE clients of the pair's key: one with the
  // pair's own key pair (as the backup is) hears the states; one with a client's key, let in on
  // the data plane, is refused on this one and hears nothing.
  zmq::context_t ctx;
  auto listener = [&](const std::string& name) {
    zmq::socket_t s(ctx, zmq::socket_type::sub);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::curve_publickey, keys.public_of(name));
    s.set(zmq::sockopt::curve_secretkey, keys.secret_of(name));
    s.set(zmq::sockopt::curve_serverkey, keys.public_of("broker"));
    s.set(zmq::sockopt::subscribe, "");
    s.connect(pbind);
    return s;
  };
  zmq::socket_t peer = listener("broker"), intruder = listener("client");
  int heard = 0, intruded = 0;
  for (const auto until = std::chrono::steady_clock::now() + 10s;
       heard < 5 && std::chrono::steady_clock::now() < until;) {
    if (zyolo_test::recv(peer, 100ms)) ++heard;
    while (zyolo_test::recv(intruder, 0ms)) ++intruded;
  }
  CHECK(heard == 5);  // a second, at 200 ms: the primary publishes through CURVE
  CHECK(intruded == 0);

  // The workers know both brokers; the primary stops, and the clients' requests make the backup
  // ACTIVE. That takes the backup having heard the primary ACTIVE over the encrypted channel
  // (a backup that never did serves nobody), and a worker moving to it.
  Process workers({"workers", "--connect", pe.backend + "," + be.backend, "--workers", "1",
                   "--model", "none", "--config", config.path, "--curve", keys.key("worker"),
                   "--server-key", keys.pub("broker")});
  REQUIRE(workers.wait_for("ready", 20s));
  primary->signal(SIGTERM);
  CHECK(primary->wait() == 0);
  const std::string pout = primary->output();
  INFO(pout);
  CHECK(zyolo_test::has(pout, "ha: stopped ACTIVE (primary)"));
  CHECK(zyolo_test::has(pout, "refused public key " + keys.public_of("client")));
  auto j = zyolo_test::run_report("clients --connect " + pe.frontend + "," + be.frontend +
                                  " --model none --requests 20 --config " + config.path +
                                  keys.peer_flags("client"));
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["answered"] == 20);
  workers.signal(SIGTERM);
  CHECK(workers.wait() == 0);
  backup->signal(SIGTERM);
  CHECK(backup->wait() == 0);
  const std::string bout = backup->output();
  INFO(bout);
  CHECK(zyolo_test::has(bout, "ha: stopped ACTIVE (backup): transitions 2"));  // BACKUP, PASSIVE, ACTIVE
  CHECK(zyolo_test::has(bout, "refused 0"));
}
