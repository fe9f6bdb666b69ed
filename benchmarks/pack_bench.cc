// Packing weights into GEMM panels, as the trainer does after every update:
// W [out, in] transposed into panels for the forward GEMM (B = Wᵀ), W as is for
// dX (B = W) and the batch X [M, in] for dW. Compared with a plain copy of the
// same bytes, the floor for any packing.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "ops/linear/gemm.h"

namespace ballast::ops {
namespace {

// Args: rows, cols, transposed (0/1), threads.
void BM_Pack(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const bool transposed = state.range(2) != 0;
  const int threads = int(state.range(3));
  std::vector<float> src(size_t(rows * cols), 0.5f);
  PackedB packed;
  for (auto _ : state) {
    // transposed: B(k, n) = W[n][k] with W [rows = N, cols = K].
    if (transposed) {
      PackBInto(packed, src.data(), cols, rows, 1, cols, threads);
    } else {
      PackBInto(packed, src.data(), rows, cols, cols, 1, threads);
    }
    benchmark::DoNotOptimize(&packed);
  }
  state.SetBytesProcessed(state.iterations() * rows * cols * 4);
}

void BM_Copy(benchmark::State& state) {
  const int64_t n = state.range(0) * state.range(1);
  std::vector<float> src(static_cast<size_t>(n), 0.5f), dst(src.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), size_t(n) * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 4);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "cols", "transposed", "threads"});
  for (int threads : {1, 2}) {
    for (int transposed : {0, 1}) {
      b->Args({256, 784, transposed, threads});  // first Linear of the MLP
      b->Args({256, 256, transposed, threads});
      b->Args({128, 784, transposed, threads});  // a batch of inputs
      b->Args({1024, 1024, transposed, threads});
    }
  }
}

BENCHMARK(BM_Pack)->Apply(Shapes)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Copy)
    ->ArgNames({"rows", "cols"})
    ->Args({256, 784})
    ->Args({256, 256})
    ->Args({1024, 1024})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ballast::ops

BENCHMARK_MAIN();
