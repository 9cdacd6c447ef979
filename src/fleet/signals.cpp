// The stop signals: see signals.hpp.
#include "src/fleet/signals.hpp"

#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace zyolo {
namespace {

const sigset_t& stop_signals() {
  static const sigset_t set = [] {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    return s;
  }();
  return set;
}

}  // namespace

void block_stop_signals() { pthread_sigmask(SIG_BLOCK, &stop_signals(), nullptr); }

SignalFd::SignalFd() {
  pthread_sigmask(SIG_BLOCK, &stop_signals(), &old_);
  fd_ = signalfd(-1, &stop_signals(), SFD_NONBLOCK | SFD_CLOEXEC);
}

SignalFd::~SignalFd() {
  if (fd_ >= 0) close(fd_);
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

}  // namespace zyolo
