// A zyolo process started by a test, whose stdout the test reads line by line, and free
// endpoints for a broker process (test_processes, test_partition, test_curve).
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "run_binary.hpp"
#include "sockets.hpp"

extern char** environ;

namespace zyolo_test {

using namespace std::chrono_literals;

// A zyolo process whose stdout the test reads line by line; killed (SIGKILL) if still running
// when it goes out of scope, or when the test program dies without unwinding (a crash, a
// sanitizer's halt): setpriv sets its parent-death signal, so no orphan keeps holding ctest's
// output and ctest fails at once instead of waiting out the test's TIMEOUT.
class Process {
 public:
  // `args` are zyolo's; with `netns`, it runs inside that network namespace (ip netns exec, which
  // execs zyolo: setpriv execs ip, so the pid is zyolo's own). Start it from the thread that
  // lives as long as it does: the parent-death signal follows the thread that spawned it.
  explicit Process(const std::vector<std::string>& args, const std::string& netns = "") {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    std::vector<std::string> all = {"setpriv", "--pdeathsig", "KILL", "--"};
    if (!netns.empty()) all.insert(all.end(), {"ip", "netns", "exec", netns});
    all.push_back(ZYOLO_BINARY);
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
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
    while (!has(seen_, text)) {
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
  int frontend_port = free_port();
  std::string frontend = "tcp://127.0.0.1:" + std::to_string(frontend_port);
  std::string backend = "tcp://127.0.0.1:" + std::to_string(free_port());
  std::string control = "tcp://127.0.0.1:" + std::to_string(free_port());
  std::vector<std::string> broker_args() const {
    return {"broker", "--frontend", frontend, "--backend", backend, "--control", control};
  }
};

}  // namespace zyolo_test
