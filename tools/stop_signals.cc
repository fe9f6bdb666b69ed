#include "tools/stop_signals.h"

#include <atomic>
#include <csignal>
#include <cstdio>

namespace ballast::cli {
namespace {

// Ctrl-C, kill, a closed terminal.
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};
constexpr int kCount = 3;

// The first stop signal received, or 0. (The handler may run on any
// thread.)
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);
// Which of kStopSignals are handled (those not ignored at the start).
bool g_handled[kCount] = {};

void OnStopSignal(int sig) {
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, sig);
  // A second one, of any of them, ends the process as usual.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int i = 0; i < kCount; ++i) {
    if (g_handled[i]) sigaction(kStopSignals[i], &dfl, nullptr);
  }
}

}  // namespace

StopSignals::StopSignals() {
  static_assert(sizeof(old_) / sizeof(old_[0]) == kCount);
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < kCount; ++i) {
    sigaction(kStopSignals[i], nullptr, &old_[i]);
    g_handled[i] = old_[i].sa_handler != SIG_IGN;
    if (g_handled[i]) sigaction(kStopSignals[i], &sa, nullptr);
  }
}

StopSignals::~StopSignals() {
  for (int i = 0; i < kCount; ++i) {
    sigaction(kStopSignals[i], &old_[i], nullptr);
  }
}

int StopSignalReceived() { return g_stop_signal.load(); }

const char* StopSignalName(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP";
}

int EndBySignal(int sig) {
  std::fflush(nullptr);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
  return 128 + sig;
}

}  // namespace ballast::cli
