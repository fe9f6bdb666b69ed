// The optimizers' elementwise updates on the book's first weight (784×256
// floats, 0.8 MB, so the update streams from L2 and L3 as in a step): the
// Highway kernels against their scalar twins (ops/ref/optim.h), in bytes a
// second (Adam reads w, g, m, v and writes w, m, v; SGD with momentum reads
// w, g, buf and writes w, buf).
//   build/benchmarks/optim_bench --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "ballast/rng.h"
#include "ops/optim/adam.h"
#include "ops/optim/sgd.h"
#include "ops/ref/optim.h"

namespace ballast::ops {
namespace {

constexpr int64_t kFloats = 784 * 256;

struct Buffers {
  std::vector<float> g, w, m, v;
  Buffers() : g(kFloats), w(kFloats), m(kFloats), v(kFloats) {
    Generator gen(1);
    gen.FillUniform(g, -0.1, 0.1), gen.FillUniform(w, -1, 1);
    gen.FillUniform(m, -0.01, 0.01), gen.FillUniform(v, 0, 1e-4);
  }
};

AdamArgs Adam() {
  AdamArgs a;
  a.bias_correction2_sqrt = float(std::sqrt(1 - std::pow(0.999, 100)));
  a.neg_step_size = float(-1e-3 / (1 - std::pow(0.9, 100)));
  return a;
}

void BM_Adam(benchmark::State& state) {
  Buffers b;
  const AdamArgs a = Adam();
  for (auto _ : state) {
    AdamUpdate(a, b.g.data(), b.w.data(), b.m.data(), b.v.data(), kFloats);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kFloats * 7 * 4);
}

void BM_AdamScalarTwin(benchmark::State& state) {
  Buffers b;
  const AdamArgs a = Adam();
  for (auto _ : state) {
    for (int64_t i = 0; i < kFloats; ++i) {
      ref::adam_step(a, b.g[size_t(i)], b.w[size_t(i)], b.m[size_t(i)],
                     b.v[size_t(i)]);
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kFloats * 7 * 4);
}

SgdArgs Sgd() { return {.lr = 0.05f, .momentum = 0.9f, .has_buf = true}; }

void BM_SgdMomentum(benchmark::State& state) {
  Buffers b;
  const SgdArgs a = Sgd();
  for (auto _ : state) {
    SgdUpdate(a, b.g.data(), b.w.data(), b.m.data(), kFloats);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kFloats * 5 * 4);
}

void BM_SgdMomentumScalarTwin(benchmark::State& state) {
  Buffers b;
  const SgdArgs a = Sgd();
  for (auto _ : state) {
    for (int64_t i = 0; i < kFloats; ++i) {
      ref::sgd_step(a, b.g[size_t(i)], b.w[size_t(i)], b.m[size_t(i)]);
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kFloats * 5 * 4);
}

BENCHMARK(BM_Adam);
BENCHMARK(BM_AdamScalarTwin);
BENCHMARK(BM_SgdMomentum);
BENCHMARK(BM_SgdMomentumScalarTwin);

}  // namespace
}  // namespace ballast::ops

BENCHMARK_MAIN();
