// The fleet as separate OS processes over tcp on loopback, as a user starts it in three terminals:
// `zyolo broker`, `zyolo workers`, `zyolo clients`. Everything is answered; then the broker is
// killed with SIGKILL mid-run and started again on the same endpoints, and the clients still end
// with nothing lost and nothing delivered twice. Broker and workers stop cleanly on SIGTERM.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "run_binary.hpp"
#include "scenario_runs.hpp"
#include "sockets.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;

// A zyolo process whose stdout the test reads line by line; killed (SIGKILL) if still running
// when it goes out of scope.
class Process {
 public:
  explicit Process(const std::vector<std::string>& args) {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    std::vector<std::string> all = {ZYOLO_BINARY};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, ZYOLO_BINARY, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out_ = fds[0];
    REQUIRE(rc == 0);
  }
  ~Process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Reads stdout until a line holds `text` (true) or `timeout` passes or stdout closes (false).
  bool wait_for(const std::string& text, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!zyolo_test::has(seen_, text)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return false;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buffer[4096];
      const auto n = ::read(out_, buffer, sizeof buffer);
      if (n <= 0) return false;
      seen_.append(buffer, static_cast<std::size_t>(n));
    }
    return true;
  }

  void signal(int sig) { REQUIRE(::kill(pid_, sig) == 0); }

  // Waits for the process to end and reads the rest of its stdout; its exit code, or 128 + the
  // signal that ended it.
  int wait() {
    int status = 0;
    REQUIRE(::waitpid(pid_, &status, 0) == pid_);
    pid_ = -1;
    char buffer[4096];
    for (ssize_t n; (n = ::read(out_, buffer, sizeof buffer)) > 0;) seen_.append(buffer, static_cast<std::size_t>(n));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  const std::string& output() const { return seen_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string seen_;
};

// Three free loopback ports: the broker's frontend, backend and control endpoints.
struct Endpoints {
  std::string frontend = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  std::string backend = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  std::string control = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  std::vector<std::string> broker_args() const {
    return {"broker", "--frontend", frontend, "--backend", backend, "--control", control};
  }
};

}  // namespace

TEST_CASE("broker, workers and clients as three processes over tcp: everything answered") {
  Endpoints ep;
  Process broker(ep.broker_args());
  REQUIRE(broker.wait_for("ready", 20s));
  Process workers({"workers", "--connect", ep.backend, "--workers", "2", "--model", "none"});
  REQUIRE(workers.wait_for("ready", 20s));
  auto j = zyolo_test::run_report("clients --connect " + ep.frontend + " --model none --clients 4 --requests 300");
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["answered"] == 300);
  CHECK(j["run"]["transport"] == "tcp");
  workers.signal(SIGTERM);
  CHECK(workers.wait() == 0);
  CHECK(zyolo_test::has(workers.output(), "w0 "));
  broker.signal(SIGTERM);
  CHECK(broker.wait() == 0);
  INFO(broker.output());
  CHECK(zyolo_test::has(broker.output(), "replies 300"));
}

TEST_CASE("a worker-pool process sized by its own controller from the broker's demand over tcp") {
  Endpoints ep;
  Process broker(ep.broker_args());
  REQUIRE(broker.wait_for("ready", 20s));
  Process workers({"workers", "--connect", ep.backend, "--control", ep.control, "--autoscale",
                   "--workers", "1", "--max-workers", "8", "--model", "none", "--service-ms", "20"});
  REQUIRE(workers.wait_for("ready", 20s));
  auto j = zyolo_test::run_report("clients --connect " + ep.frontend + " --model none --clients 6 --duration 4");
  zyolo_test::check_nothing_lost(j);
  workers.signal(SIGTERM);
  CHECK(workers.wait() == 0);
  INFO(workers.output());
  // Six closed-loop clients are a demand of six: w0 and the five the controller started served.
  for (const char* id : {"w0 ", "w1 ", "w2 ", "w3 ", "w4 ", "w5 "}) CHECK(zyolo_test::has(workers.output(), id));
  CHECK_FALSE(zyolo_test::has(workers.output(), "w6 "));
  CHECK(zyolo_test::has(workers.output(), "5 workers started"));
  broker.signal(SIGTERM);
  CHECK(broker.wait() == 0);
}

TEST_CASE("the broker killed with SIGKILL mid-run and started again: nothing lost or delivered twice") {
  Endpoints ep;
  auto broker = std::make_unique<Process>(ep.broker_args());
  REQUIRE(broker->wait_for("ready", 20s));
  Process workers({"workers", "--connect", ep.backend, "--workers", "2", "--model", "none"});
  REQUIRE(workers.wait_for("ready", 20s));
  const std::string report = "/tmp/zyolo-test-processes-" + std::to_string(::getpid()) + ".json";
  Process clients({"clients", "--connect", ep.frontend, "--model", "none", "--clients", "4", "--duration", "7",
                   "--quiet", "--report", report});
  // The fault's timing, not synchronisation: the clients are well into their run at 1.5 s.
  std::this_thread::sleep_for(1500ms);
  broker->signal(SIGKILL);
  CHECK(broker->wait() == 128 + SIGKILL);
  broker = std::make_unique<Process>(ep.broker_args());  // the same endpoints, at once
  REQUIRE(broker->wait_for("ready", 20s));
  CHECK(clients.wait() == 0);  // exit 0: every request ended, none lost or delivered twice
  auto j = nlohmann::json::parse(zyolo_test::slurp(report));
  std::remove(report.c_str());
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["retries"].get<long>() >= 1);  // what was in flight at the kill came back
  // The new broker served: answers in the last two seconds of the run.
  long late = 0;
  const double end = j["run"]["elapsed_s"];
  for (const auto& row : j["timeline"])
    if (row["t"].get<double>() > end - 2.0) late += row["answered"].get<long>();
  CHECK(late > 0);
  broker->signal(SIGTERM);
  CHECK(broker->wait() == 0);
  workers.signal(SIGTERM);
  CHECK(workers.wait() == 0);
}
