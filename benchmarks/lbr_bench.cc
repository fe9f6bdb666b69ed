// Google Benchmark: the standard block, every mode × backend × fused/unfused
// × threads {1, 2} × M × (K, N). Counters: GFLOP/s and the share of the FMA
// roof measured at start-up in this same run (per thread count).
//   ./build/benchmarks/lbr_bench --benchmark_filter='eval/hwy'
#include <benchmark/benchmark.h>

#include <map>
#include <string>

#include "benchmarks/lbr_cases.h"
#include "ops/roof/fma_roof.h"

namespace ballast::bench {
namespace {

std::map<int, double>& Roof() {
  static std::map<int, double> roof;
  return roof;
}

void RunCase(benchmark::State& state, CaseSpec spec) {
  Result<std::unique_ptr<Case>> c = MakeCase(spec);
  if (!c.ok()) {
    state.SkipWithError(c.status().message().c_str());
    return;
  }
  for (auto _ : state) {
    Status s = (*c)->Run();
    if (!s.ok()) {
      state.SkipWithError(s.message().c_str());
      return;
    }
  }
  const double flops = spec.Flops();
  state.counters["GFLOPs"] = benchmark::Counter(
      flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["roof_pct"] =
      benchmark::Counter(flops * 1e-9 / Roof()[spec.threads] * 100,
                         benchmark::Counter::kIsIterationInvariantRate);
}

void RegisterAll() {
  const std::pair<int64_t, int64_t> kn[] = {
      {784, 256}, {256, 256}, {1024, 1024}, {4096, 4096}};
  for (Mode mode : {Mode::kEval, Mode::kTrainFwd, Mode::kTrainFwdBwd}) {
    for (Backend backend : {Backend::kHwy, Backend::kOnednn, Backend::kRef}) {
      for (bool fused : {true, false}) {
        for (int threads : {1, 2}) {
          for (auto [K, N] : kn) {
            for (int64_t M : {1, 16, 64, 256, 1024}) {
              if (mode != Mode::kEval && M < 2) continue;
              // The scalar oracle is only timed where it finishes quickly.
              if (backend == Backend::kRef &&
                  (threads > 1 || double(M) * K * N > 5e7)) {
                continue;
              }
              CaseSpec s{mode, backend, fused, M, K, N, threads, 0.0};
              benchmark::RegisterBenchmark(
                  (std::string(ModeName(mode)) + "/" + BackendName(backend) +
                   (fused ? "/fused" : "/unfused") + "/M:" + std::to_string(M) +
                   "/K:" + std::to_string(K) + "/N:" + std::to_string(N) +
                   "/threads:" + std::to_string(threads))
                      .c_str(),
                  RunCase, s)
                  ->UseRealTime()
                  ->Unit(benchmark::kMicrosecond);
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace ballast::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  for (int t : {1, 2}) {
    ballast::bench::Roof()[t] = ballast::ops::MeasureFmaRoofGflops(t, 0.6);
    benchmark::AddCustomContext("fma_roof_gflops_" + std::to_string(t) + "t",
                                std::to_string(ballast::bench::Roof()[t]));
  }
  benchmark::AddCustomContext("simd_target", ballast::ops::CurrentSimdTarget());
  ballast::bench::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
