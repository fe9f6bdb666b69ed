// The fused elementwise passes of one training step of the book's MLP
// (batch 128, 256 columns, dropout 0.5): BatchNorm → ReLU → dropout forward
// (with its Philox draws) and its backward, on 1 and 2 threads. They sit
// between the GEMMs, so their share of a step and how they scale with
// threads bound the step's own scaling. GB/s counts the floats each pass
// reads and writes once.
//
//   build/benchmarks/block_pass_bench
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "ballast/rng.h"
#include "ops/block/block_kernels.h"
#include "ops/cache_aligned.h"

namespace ballast::ops {
namespace {

constexpr int64_t kM = 128, kN = 256;

struct Pass {
  // The trainer's buffers are cache-line aligned too (see cache_aligned.h).
  AlignedVector<float> z, mean, rstd, gamma, beta, out, d_out, dz, dg, db,
      dbias;
  AlignedVector<uint64_t> mask;
  Pass()
      : z(kM * kN),
        mean(kN),
        rstd(kN, 1.0f),
        gamma(kN, 1.0f),
        beta(kN, 0.0f),
        out(kM * kN),
        d_out(kM * kN),
        dz(kM * kN),
        dg(kN),
        db(kN),
        dbias(kN),
        mask(size_t(kM * MaskWordsPerRow(kN))) {
    std::mt19937 gen(1);
    std::normal_distribution<float> n01;
    for (float& v : z) v = n01(gen);
    for (float& v : d_out) v = n01(gen);
  }
};

void BM_BnReluDropoutForward(benchmark::State& state) {
  const int threads = int(state.range(0));
  Pass p;
  Generator rng(7);
  for (auto _ : state) {
    const BnForwardArgs a{p.z.data(),        p.mean.data(), p.rstd.data(),
                          p.gamma.data(),    p.beta.data(), 0.5,
                          rng.Take(kM * kN), p.out.data(),  p.mask.data()};
    BnReluDropoutForward(a, kM, kN, threads);
    benchmark::DoNotOptimize(p.out.data());
  }
  state.counters["GB/s"] = benchmark::Counter(
      double(kM * kN) * 8, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_BnReluDropoutBackward(benchmark::State& state) {
  const int threads = int(state.range(0));
  Pass p;
  const BnForwardArgs f{p.z.data(),
                        p.mean.data(),
                        p.rstd.data(),
                        p.gamma.data(),
                        p.beta.data(),
                        0.5,
                        Generator(7).Take(kM * kN),
                        p.out.data(),
                        p.mask.data()};
  BnReluDropoutForward(f, kM, kN, 1);
  for (auto _ : state) {
    const BnBackwardArgs a{
        p.z.data(),     p.mean.data(), p.rstd.data(), p.gamma.data(),
        p.d_out.data(), p.mask.data(), 0.5,           p.dz.data(),
        p.dg.data(),    p.db.data(),   p.dbias.data()};
    BnReluDropoutBackward(a, kM, kN, threads);
    benchmark::DoNotOptimize(p.dz.data());
  }
  // Pass 1 reads z and d_out; pass 2 reads them again and writes dz.
  state.counters["GB/s"] = benchmark::Counter(
      double(kM * kN) * 20, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_BnReluDropoutForward)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_BnReluDropoutBackward)->Arg(1)->Arg(2)->UseRealTime();

}  // namespace
}  // namespace ballast::ops

BENCHMARK_MAIN();
