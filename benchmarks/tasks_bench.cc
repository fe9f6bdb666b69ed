// What one parallel pass costs beyond its work: an OpenMP region against a
// run on a training step's team (ops/tasks.h), with `spin_ns` of serial work
// between passes as a step has, and tasks of `work_ns` each.
//   build/benchmarks/tasks_bench --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <omp.h>

#include <chrono>

#include "ops/tasks.h"

namespace ballast::ops {
namespace {

void Busy(int64_t ns) {
  const auto end =
      std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns);
  while (std::chrono::steady_clock::now() < end) {
  }
}

// Arguments: threads, serial ns between passes, ns of work per task.
void BM_OpenMpRegion(benchmark::State& state) {
  const int threads = int(state.range(0));
  const int64_t spin_ns = state.range(1), work_ns = state.range(2);
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    { Busy(work_ns); }
    Busy(spin_ns);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_TeamRun(benchmark::State& state) {
  const int threads = int(state.range(0));
  const int64_t spin_ns = state.range(1), work_ns = state.range(2);
  WithTeam(threads, [&] {
    for (auto _ : state) {
      ParallelRun(threads, [&](int, int) { Busy(work_ns); });
      Busy(spin_ns);
    }
  });
  state.SetItemsProcessed(state.iterations());
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads", "serial_ns", "task_ns"});
  for (int64_t work : {0, 5000}) b->Args({2, 1000, work});
  b->UseRealTime();
}

BENCHMARK(BM_OpenMpRegion)->Apply(Args);
BENCHMARK(BM_TeamRun)->Apply(Args);

}  // namespace
}  // namespace ballast::ops

BENCHMARK_MAIN();
