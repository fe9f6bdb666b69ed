// See tasks.h.
#include "ops/tasks.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <thread>

namespace ballast::ops {
namespace {

void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// A helper spins this long for the next tasks before it sleeps, as long as
// libgomp's threads spin by default. The passes of a training step follow
// one another within microseconds, but the host may stop the calling thread
// for longer; a helper asleep then wakes when the step ends, and the end of
// the region waits for it. (With 200 µs, a helper slept in 2 of 100 steps,
// and steps over 1 ms came half again as often as on OpenMP's regions.)
constexpr auto kSpinTime = std::chrono::milliseconds(10);
// With more threads than cores, a spinning helper takes a core another
// thread needs: it sleeps almost at once.
constexpr auto kOversubscribedSpinTime = std::chrono::microseconds(2);
// Spins (some 10-50 µs) after which the calling thread, waiting for a
// helper's task, yields now and then.
constexpr int kLongWaitSpins = 1 << 12;
// OpenMP threads a run outside a team asks for at most; more tasks share
// them.
constexpr int kMaxRegionThreads = 1024;

// The first exception of a run's tasks, rethrown on the calling thread once
// the run has joined (a task that throws must not leave the others running
// on the caller's data, nor end the process from a helper).
class Failure {
 public:
  template <class F>
  void Run(F&& f) {
    try {
      f();
    } catch (...) {
      if (!failed_.exchange(true, std::memory_order_acq_rel)) {
        error_ = std::current_exception();
      }
    }
  }
  // After the join: rethrows the first exception, if any.
  void Rethrow() {
    if (!failed_.load(std::memory_order_acquire)) return;
    std::exception_ptr e = std::move(error_);
    error_ = nullptr;
    failed_.store(false, std::memory_order_relaxed);
    std::rethrow_exception(e);
  }

 private:
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

// The state a team's threads share. `claim` packs the epoch (one per
// ParallelRun), the number of tasks and the next task not yet taken, so
// that a helper claims a task of the run it saw, or none.
struct Team {
  alignas(64) std::atomic<uint64_t> claim{0};
  alignas(64) std::atomic<int> done{0};       // tasks helpers finished this run
  alignas(64) std::atomic<uint32_t> bell{0};  // rung for sleeping helpers
  std::atomic<int> sleepers{0};
  std::atomic<bool> stop{false};
  // The run's task, written before its epoch is published.
  std::atomic<TaskFn> fn{nullptr};
  std::atomic<void*> ctx{nullptr};
  uint32_t epoch = 0;           // the calling thread's count of runs
  int level = 0;                // omp_get_level() inside the team's region
  bool oversubscribed = false;  // more threads than cores
  Failure failure;              // of the run's tasks
  // Side work (see SideWork): the next chunk to take, and the chunks done.
  SideWork side;
  alignas(64) std::atomic<int64_t> side_next{0};
  alignas(64) std::atomic<int64_t> side_done{0};
  Failure side_failure;
};

constexpr int kTaskBits = 16;
constexpr uint64_t kTaskMask = (uint64_t{1} << kTaskBits) - 1;
uint64_t Pack(uint32_t epoch, int tasks, int next) {
  return uint64_t(epoch) << 32 | uint64_t(tasks) << kTaskBits | uint64_t(next);
}
uint32_t EpochOf(uint64_t c) { return uint32_t(c >> 32); }

// The team whose step runs on this thread, and how deep in tasks it is.
thread_local Team* tl_team = nullptr;
thread_local int tl_task_depth = 0;
std::atomic<bool> g_hold_helpers{false};

struct InTask {
  InTask() { ++tl_task_depth; }
  ~InTask() { --tl_task_depth; }
  InTask(const InTask&) = delete;
  InTask& operator=(const InTask&) = delete;
};

// Takes the next task of run `epoch` into *t; false once all are taken or
// the run is over.
bool Claim(Team& team, uint32_t epoch, int* t) {
  uint64_t c = team.claim.load(std::memory_order_acquire);
  for (;;) {
    const int tasks = int(c >> kTaskBits & kTaskMask);
    const int next = int(c & kTaskMask);
    if (EpochOf(c) != epoch || next >= tasks) return false;
    if (team.claim.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
      *t = next;
      return true;
    }
  }
}

// Runs the next chunk of the team's side work; false when none is left.
bool TakeSide(Team& team) {
  const int64_t n = team.side.chunks;
  if (team.side_next.load(std::memory_order_relaxed) >= n) return false;
  const int64_t i = team.side_next.fetch_add(1, std::memory_order_relaxed);
  if (i >= n) return false;
  InTask in_task;
  team.side_failure.Run([&] { team.side.fn(team.side.ctx, i); });
  team.side_done.fetch_add(1, std::memory_order_release);
  return true;
}

void Ring(Team& team) {
  if (team.sleepers.load(std::memory_order_seq_cst) > 0) {
    team.bell.fetch_add(1, std::memory_order_seq_cst);
    team.bell.notify_all();
  }
}

void RunOnTeam(Team& team, int T, TaskFn fn, void* ctx) {
  team.fn.store(fn, std::memory_order_relaxed);
  team.ctx.store(ctx, std::memory_order_relaxed);
  team.done.store(0, std::memory_order_relaxed);
  const uint32_t epoch = ++team.epoch;
  // Task 0 is the calling thread's from the start.
  team.claim.store(Pack(epoch, T, 1), std::memory_order_seq_cst);
  Ring(team);
  int mine = 1;
  {
    InTask in_task;
    team.failure.Run([&] { fn(ctx, 0, T); });
    int t = 0;
    while (Claim(team, epoch, &t)) {
      team.failure.Run([&] { fn(ctx, t, T); });
      ++mine;
    }
  }
  for (int spins = 1; team.done.load(std::memory_order_acquire) < T - mine;
       ++spins) {
    // Idle until then: a chunk of side work.
    if (TakeSide(team)) continue;
    // A helper with no core of its own needs this one's to finish; one
    // away for long (another process on its core) may be given this one.
    if ((team.oversubscribed || spins >= kLongWaitSpins) && spins % 64 == 0) {
      std::this_thread::yield();
    } else {
      Pause();
    }
  }
  team.failure.Rethrow();
}

// A helper's loop: wait for a run (spinning, then asleep), take its tasks
// while any is left, until the step is over.
void Serve(Team& team) {
  uint32_t seen = 0;
  for (;;) {
    uint64_t c = 0;
    const auto spin_time =
        team.oversubscribed ? kOversubscribedSpinTime : kSpinTime;
    auto spin_start = std::chrono::steady_clock::now();
    for (int spins = 1;; ++spins) {
      c = team.claim.load(std::memory_order_acquire);
      if (EpochOf(c) != seen || team.stop.load(std::memory_order_acquire)) {
        break;
      }
      if (!g_hold_helpers.load(std::memory_order_relaxed) && TakeSide(team)) {
        spin_start = std::chrono::steady_clock::now();
        continue;
      }
      Pause();
      if (spins % 256 != 0 ||
          std::chrono::steady_clock::now() - spin_start < spin_time) {
        continue;
      }
      const uint32_t bell = team.bell.load(std::memory_order_seq_cst);
      team.sleepers.fetch_add(1, std::memory_order_seq_cst);
      if (EpochOf(team.claim.load(std::memory_order_seq_cst)) == seen &&
          !team.stop.load(std::memory_order_seq_cst)) {
        team.bell.wait(bell, std::memory_order_seq_cst);
      }
      team.sleepers.fetch_sub(1, std::memory_order_seq_cst);
      spin_start = std::chrono::steady_clock::now();
    }
    // The step ends only after its last run has joined: no task is left.
    if (team.stop.load(std::memory_order_acquire)) return;
    seen = EpochOf(c);
    if (g_hold_helpers.load(std::memory_order_relaxed)) continue;
    // Read after the epoch: if a later run has replaced them, the claim
    // below fails, as the epoch has moved on.
    const TaskFn fn = team.fn.load(std::memory_order_relaxed);
    void* ctx = team.ctx.load(std::memory_order_relaxed);
    const int T = int(c >> kTaskBits & kTaskMask);
    InTask in_task;
    int t = 0;
    while (Claim(team, seen, &t)) {
      team.failure.Run([&] { fn(ctx, t, T); });
      team.done.fetch_add(1, std::memory_order_release);
    }
  }
}

}  // namespace

int DefaultThreads() { return std::max(1, omp_get_max_threads()); }

bool InParallel() {
  if (tl_task_depth > 0) return true;
  // The step's thread, in its team's region, hands out tasks; in a region
  // the step opened inside it, it keeps to itself.
  return tl_team == nullptr ? omp_in_parallel()
                            : omp_get_level() > tl_team->level;
}

void RunTasks(int T, TaskFn fn, void* ctx) {
  if (T <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  // Inside a task, or with more tasks than a claim counts: on this thread,
  // in order.
  if (InParallel() || (tl_team != nullptr && T > int(kTaskMask))) {
    InTask in_task;
    Failure failure;
    for (int t = 0; t < T; ++t) failure.Run([&] { fn(ctx, t, T); });
    failure.Rethrow();
    return;
  }
  if (tl_team != nullptr) {
    RunOnTeam(*tl_team, T, fn, ctx);
    return;
  }
  Failure failure;
#pragma omp parallel num_threads(std::min(T, kMaxRegionThreads))
  {
    // OpenMP may give fewer threads than asked: they share the tasks.
    const int n = omp_get_num_threads();
    for (int t = omp_get_thread_num(); t < T; t += n) {
      failure.Run([&] { fn(ctx, t, T); });
    }
  }
  failure.Rethrow();
}

void RunWithTeam(int threads, void (*step)(void*), void* ctx, SideWork side) {
  if (threads <= 1 || InParallel() || tl_team != nullptr) {
    std::exception_ptr error;
    try {
      step(ctx);
    } catch (...) {
      error = std::current_exception();
    }
    Failure side_failure;
    InTask in_task;  // as on a team: passes inside a chunk keep to it
    for (int64_t i = 0; i < side.chunks; ++i) {
      side_failure.Run([&] { side.fn(side.ctx, i); });
    }
    if (error) std::rethrow_exception(error);
    side_failure.Rethrow();
    return;
  }
  Team team;
  team.oversubscribed = threads > omp_get_num_procs();
  team.side = side;
  std::exception_ptr error;
#pragma omp parallel num_threads(threads)
  {
    if (omp_get_thread_num() == 0) {
      team.level = omp_get_level();
      tl_team = &team;
      try {
        step(ctx);
      } catch (...) {
        error = std::current_exception();
      }
      tl_team = nullptr;
      // What the helpers have not taken: here, and on any helper still
      // spinning.
      while (TakeSide(team)) {
      }
      for (int spins = 1;
           team.side_done.load(std::memory_order_acquire) < team.side.chunks;
           ++spins) {
        if (spins % 64 == 0) {
          std::this_thread::yield();
        } else {
          Pause();
        }
      }
      team.stop.store(true, std::memory_order_seq_cst);
      Ring(team);
    } else {
      Serve(team);
    }
  }
  if (error) std::rethrow_exception(error);
  team.side_failure.Rethrow();
}

void HoldHelpersForTesting(bool hold) {
  g_hold_helpers.store(hold, std::memory_order_relaxed);
}

}  // namespace ballast::ops
