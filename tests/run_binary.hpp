// Running the zyolo binary as a user does, for the tests that drive it as a process.
#pragma once

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

namespace zyolo_test {

struct Result {
  int code = -1;  // the exit code, or 128 + the signal that ended it
  std::string out, err;
};

// The whole content of a file ("" if it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A TCP port that is free on loopback right now.
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A config overlay ([endpoints]) with free tcp ports and ipc paths of this process's own, so that
// fleets of tests running side by side never share an endpoint over tcp or ipc, whichever
// transport they take (in the tcp pass, the build's default); inproc needs none.
inline std::string own_endpoints_toml() {
  const std::string tag = std::to_string(::getpid()), tcp = "tcp://127.0.0.1:", ipc = "ipc:///tmp/zyolo-test-" + tag;
  return "[endpoints]\ntcp_frontend = \"" + tcp + std::to_string(free_port()) + "\"\ntcp_backend = \"" + tcp +
         std::to_string(free_port()) + "\"\ntcp_control = \"" + tcp + std::to_string(free_port()) +
         "\"\nipc_frontend = \"" + ipc + "-frontend.ipc\"\nipc_backend = \"" + ipc +
         "-backend.ipc\"\nipc_control = \"" + ipc + "-control.ipc\"\n";
}

// Runs the zyolo binary with `args` (shell words), capturing its exit code, stdout and stderr.
// A `run` gets endpoints of its own first (own_endpoints_toml; a --config in `args` overlays it).
inline Result zyolo(const std::string& args) {
  const std::string tmp = "/tmp/zyolo-test-run-" + std::to_string(::getpid());
  std::string words = args;
  if (words.starts_with("run ")) {
    std::ofstream(tmp + ".toml") << own_endpoints_toml();
    words = "run --config " + tmp + ".toml " + words.substr(4);
  }
  const std::string cmd = std::string(ZYOLO_BINARY) + " " + words + " >" + tmp + ".out 2>" + tmp + ".err";
  const int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(tmp + ".out");
  r.err = slurp(tmp + ".err");
  for (const char* end : {".out", ".err", ".toml"}) std::remove((tmp + end).c_str());
  return r;
}

// A file under /tmp holding `text`, removed when it goes out of scope.
struct TempFile {
  std::string path;
  TempFile(const std::string& name, const std::string& text)
      : path("/tmp/zyolo-test-" + std::to_string(::getpid()) + "-" + name) {
    std::ofstream(path) << text;
  }
  ~TempFile() { std::remove(path.c_str()); }
};

inline bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace zyolo_test
