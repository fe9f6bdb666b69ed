// The threads of a parallel pass, as T tasks (target-independent).
//
// A pass calls ParallelRun(T, body): body(t, T) runs once for each t in
// [0, T), as the body of an OpenMP region of T threads would, and returns
// when all have. Outside a team each task is a thread of its own OpenMP
// region. Inside WithTeam (the trainer runs a whole step in one), the
// region is the team's, opened once: the calling thread publishes the
// tasks, runs task 0, then takes whatever task no helper has taken yet, and
// waits only for the tasks a helper did take. A helper the host has
// descheduled, or that wakes late, then costs nothing: the calling thread
// runs its share (an OpenMP join waits for every thread of the team).
//
// What a task computes depends on t and T only, never on which thread runs
// it, so results are the same bits either way. Tasks must not wait for one
// another (no barrier inside a body): split such a pass into two runs.
//
// A team can also carry side work (SideWork: the trainer's next batch),
// which its threads take up in the moments they would otherwise spin.
#ifndef BALLAST_OPS_TASKS_H_
#define BALLAST_OPS_TASKS_H_

#include <cstdint>
#include <type_traits>

namespace ballast::ops {

using TaskFn = void (*)(void* ctx, int t, int T);

// Runs fn(ctx, t, T) for t in [0, T); see ParallelRun.
void RunTasks(int T, TaskFn fn, void* ctx);

// The threads to use when the caller names none: OpenMP's default
// (OMP_NUM_THREADS, or one per CPU this process may run on), at least 1.
int DefaultThreads();

// Whether a pass called here must keep to the calling thread: inside a task,
// or inside an OpenMP region the caller opened (not a team's).
bool InParallel();

// Calls body(t, T) for every t in [0, T), on up to T threads (T < 1 counts
// as 1). If tasks throw, the others still run, and the first exception is
// rethrown here once all have finished.
template <class Body>
void ParallelRun(int T, Body&& body) {
  if (T <= 1) {
    body(0, 1);
    return;
  }
  using B = std::remove_reference_t<Body>;
  RunTasks(
      T, [](void* ctx, int t, int n) { (*static_cast<B*>(ctx))(t, n); },
      const_cast<void*>(static_cast<const void*>(&body)));
}

// Calls body(i) for every i in [0, n), in T contiguous blocks (as
// `#pragma omp parallel for schedule(static)`), for passes whose iterations
// are independent.
template <class Body>
void ParallelFor(int64_t n, int T, Body&& body) {
  ParallelRun(T, [&](int t, int tasks) {
    for (int64_t i = n * t / tasks, end = n * (t + 1) / tasks; i < end; ++i) {
      body(i);
    }
  });
}

// Work for a team's threads in the moments they would otherwise spin: a
// helper waiting for the next run (while the calling thread runs the step's
// serial code, or a task longer than the helper's), the calling thread
// waiting for a helper's task. fn(ctx, i) runs once for each i in
// [0, chunks), in any order, on any of the team's threads, and all of it
// before RunWithTeam returns (what is left when the step returns runs then,
// on the calling thread and any helper still spinning). It must not touch
// what the step reads or writes; a ParallelRun inside a chunk runs on the
// chunk's thread. A chunk delays the task its thread takes
// next: keep chunks to a microsecond or two. If chunks throw, the others
// still run, and the first exception is rethrown when all is done (the
// step's own instead, if it threw).
struct SideWork {
  void (*fn)(void* ctx, int64_t chunk) = nullptr;
  void* ctx = nullptr;
  int64_t chunks = 0;
};

// Runs step() on the calling thread while `threads` − 1 helpers serve the
// ParallelRun calls it makes, all in one OpenMP region, and the team does
// `side` in its idle moments (see SideWork). Nested, or with one thread, it
// calls step(), then runs `side`.
void RunWithTeam(int threads, void (*step)(void*), void* ctx,
                 SideWork side = {});

// Tests only: while held, helpers take no task (as if the host had
// descheduled them), so the calling thread runs them all.
void HoldHelpersForTesting(bool hold);

template <class Step>
void WithTeam(int threads, Step&& step, SideWork side = {}) {
  using S = std::remove_reference_t<Step>;
  RunWithTeam(
      threads, [](void* ctx) { (*static_cast<S*>(ctx))(); },
      const_cast<void*>(static_cast<const void*>(&step)), side);
}

}  // namespace ballast::ops

#endif  // BALLAST_OPS_TASKS_H_
