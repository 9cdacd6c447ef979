// SIGINT and SIGTERM, the signals that stop a run, as an event of the supervisor's poll loop.
#pragma once

#include <signal.h>

namespace zyolo {

// Blocks SIGINT and SIGTERM in the calling thread. Call it before any thread starts (ours,
// ZeroMQ's or OpenCV's): threads inherit the mask, so the signals reach only the signalfd that
// run_fleet polls, instead of killing the process in whichever thread the kernel picks.
void block_stop_signals();

// SIGINT and SIGTERM as a file descriptor the supervisor polls beside its pipes, so a signal is
// one more event of the loop rather than a handler writing to a global flag. Threads started
// while the signals are blocked inherit the mask, so only this descriptor ever sees them.
class SignalFd {
 public:
  SignalFd();
  ~SignalFd();
  SignalFd(const SignalFd&) = delete;
  SignalFd& operator=(const SignalFd&) = delete;
  int fd() const { return fd_; }

 private:
  sigset_t old_{};
  int fd_ = -1;
};

}  // namespace zyolo
