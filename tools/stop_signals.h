// Signals that ask a long command (`ballast train`) to stop at its next safe
// point instead of ending the process on the spot.
#ifndef BALLAST_TOOLS_STOP_SIGNALS_H_
#define BALLAST_TOOLS_STOP_SIGNALS_H_

#include <signal.h>

namespace ballast::cli {

// While alive, SIGINT, SIGTERM and SIGHUP ask the command to stop: the first
// is recorded (StopSignalReceived) and a second, of any of them, ends the
// process as usual. A signal the process started with ignored (SIGINT in a
// background job of a script, SIGHUP under nohup) stays ignored. System
// calls interrupted by one restart (SA_RESTART): the command polls.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_[3]{};
};

// The first stop signal received while a StopSignals was alive, or 0.
int StopSignalReceived();

// "SIGINT", "SIGTERM" or "SIGHUP".
const char* StopSignalName(int sig);

// Ends the process by `sig` with its default action (so that a calling
// shell sees the signal, and a script stops too), after flushing stdio;
// returns 128 + sig if the process survives it.
int EndBySignal(int sig);

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_STOP_SIGNALS_H_
