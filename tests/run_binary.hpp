// Running the zyolo binary as a user does, for the tests that drive it as a process.
#pragma once

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

// Runs the zyolo binary with `args` (shell words), capturing its exit code, stdout and stderr.
inline Result zyolo(const std::string& args) {
  const std::string tmp = "/tmp/zyolo-test-run-" + std::to_string(::getpid());
  const std::string cmd = std::string(ZYOLO_BINARY) + " " + args + " >" + tmp + ".out 2>" + tmp + ".err";
  const int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(tmp + ".out");
  r.err = slurp(tmp + ".err");
  std::remove((tmp + ".out").c_str());
  std::remove((tmp + ".err").c_str());
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
