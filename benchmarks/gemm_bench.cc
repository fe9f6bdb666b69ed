// The GEMMs of one training step of the book's MLP (784-256-256-10, batch
// 128) and the eval shape of issue 3, on ballast's GEMM with B packed once
// (outside the timing) or read in place (RowMajorB, where B is row-major),
// and, beside them, on oneDNN's dnnl_sgemm with the same operand layouts.
// GFLOP/s counts 2·M·K·N.
//
// BM_SparseGemm: the hidden layer's two GEMMs that read a ReLU + dropout
// output (128 × 256 at a given density of nonzeros), dense and over A's
// nonzeros (GemmArgs::a_nonzeros), with and without indexing them
// (ops::Nonzeros) in the timing. Its GFLOP/s counts the dense product's
// 2·M·K·N whatever runs, so it compares times directly.
//
// BM_MaskedInputGrad: the hidden layer's input gradient dX = dZ·W [128,
// 256] where the first layer's pass mask keeps it (a given density), by
// ops::MaskedInputGrad from Wᵀ row-major or from the trainer's panels read in
// place, against the dense GEMM from W packed. GFLOP/s counts the dense
// product's 2·M·K·N here too.
//
//   build/benchmarks/gemm_bench --benchmark_filter=threads:1
//   build/benchmarks/gemm_bench --benchmark_filter=SparseGemm
//   build/benchmarks/gemm_bench --benchmark_filter=MaskedInputGrad
//
// BM_NarrowLinear: a layer with few outputs in evaluation, y = x·Wᵀ + b, by
// the GEMM (W packed into panels a vector or more wide) and by
// ops::NarrowLinear (dot products along K), the two modes of one case back
// to back: the book's output layer (256 → 10) at batch 1, 64 and 256, then
// other widths at batch 64 (where NarrowLinearPays draws its line).
//
//   build/benchmarks/gemm_bench --benchmark_filter=NarrowLinear
#include <benchmark/benchmark.h>

#include <algorithm>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "ops/block/block_kernels.h"
#include "ops/cache_aligned.h"
#include "ops/linear/gemm.h"
#include "ops/linear/masked_input_grad.h"
#include "ops/linear/narrow_linear.h"
#include "ops/linear/nonzeros.h"
#ifdef BALLAST_HAVE_ONEDNN
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#endif

namespace ballast::ops {
namespace {

// A GEMM Y[M, N] = A·B as the trainer calls it. a_t: A is stored transposed
// ([K, M], as dZ is for dW = dZᵀ·X). b_t: B(k, n) = src[n·K + k] (Wᵀ of the
// forward), else src[k·N + n] (W of dX = dZ·W, X of dW).
struct Shape {
  const char* name;
  int64_t m, k, n;
  bool a_t, b_t;
};

constexpr Shape kShapes[] = {
    {"fwd_784x256", 128, 784, 256, false, true},
    {"fwd_256x256", 128, 256, 256, false, true},
    {"fwd_256x10", 128, 256, 10, false, true},
    {"dw_784x256", 256, 128, 784, true, false},
    {"dw_256x256", 256, 128, 256, true, false},
    {"dw_256x10", 10, 128, 256, true, false},
    {"dwt_784x256", 784, 128, 256, true, false},  // dWᵀ = Xᵀ·dZ
    {"dwt_256x256", 256, 128, 256, true, false},
    {"dwt_256x10", 256, 128, 10, true, false},
    {"fwd_t_784x256", 128, 784, 256, false, false},  // X·Wᵀ, Wᵀ stored
    {"dx_256x256", 128, 256, 256, false, false},
    {"eval_1024", 512, 1024, 1024, false, true},
};

// Operands on cache-line boundaries, as the trainer's tensors and buffers
// are: from malloc's 16-byte alignment, a 32-byte load of a 64-byte panel
// row crosses a line every other time, and the GEMM over A's nonzeros (8
// such loads per term) took 1.3x as long as on aligned weights.
using Floats = AlignedVector<float>;

Floats Random(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Floats v(static_cast<size_t>(n));
  for (float& x : v) x = u(gen);
  return v;
}

void RunBallast(benchmark::State& state, const Shape& s, int threads,
                bool in_place) {
  if (in_place && s.b_t) {
    state.SkipWithError("B is transposed: only packed B");
    return;
  }
  const Floats a = Random(s.m * s.k, 1), b = Random(s.k * s.n, 2);
  Floats y(size_t(s.m * s.n));
  const PackedB packed = s.b_t ? PackB(b.data(), s.k, s.n, 1, s.k)
                               : PackB(b.data(), s.k, s.n, s.n, 1);
  const RowMajorB row_major{b.data(), s.k, s.n, s.n};
  const GemmArgs args{a.data(), s.a_t ? 1 : s.k, s.a_t ? s.m : 1, s.m, y.data(),
                      s.n,      threads};
  for (auto _ : state) {
    const Status st = in_place ? Gemm(args, row_major, Epilogue::kNone, {})
                               : Gemm(args, packed, Epilogue::kNone, {});
    if (!st.ok()) state.SkipWithError(st.message().c_str());
    benchmark::DoNotOptimize(y.data());
  }
}

void RunOneDnn(benchmark::State& state, const Shape& s, int threads) {
#ifdef BALLAST_HAVE_ONEDNN
  omp_set_num_threads(threads);  // oneDNN uses the OpenMP pool
  const Floats a = Random(s.m * s.k, 1), b = Random(s.k * s.n, 2);
  Floats y(size_t(s.m * s.n));
  for (auto _ : state) {
    dnnl_sgemm(s.a_t ? 'T' : 'N', s.b_t ? 'T' : 'N', s.m, s.n, s.k, 1.0f,
               a.data(), s.a_t ? s.m : s.k, b.data(), s.b_t ? s.k : s.n, 0.0f,
               y.data(), s.n);
    benchmark::DoNotOptimize(y.data());
  }
#else
  (void)s, (void)threads;
  state.SkipWithError("built without oneDNN");
#endif
}

constexpr const char* kBackends[] = {"ballast packed B", "ballast in-place B",
                                     "onednn"};

// Args: shape index, threads, backend (kBackends) — the backends of a shape
// run back to back, so machine noise hits them alike.
void BM_Gemm(benchmark::State& state) {
  const Shape& s = kShapes[state.range(0)];
  const int threads = int(state.range(1));
  if (state.range(2) < 2) {
    RunBallast(state, s, threads, state.range(2) == 1);
  } else {
    RunOneDnn(state, s, threads);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * double(s.m * s.k * s.n) * double(state.iterations()),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(std::string(s.name) + " " + kBackends[state.range(2)]);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"shape", "threads", "backend"});
  for (int threads : {1, 2}) {
    for (int i = 0; i < int(std::size(kShapes)); ++i) {
      for (int backend : {0, 1, 2}) {
        if (backend != 1 || !kShapes[i].b_t) b->Args({i, threads, backend});
      }
    }
  }
}

BENCHMARK(BM_Gemm)->Apply(Shapes)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The trainer's GEMMs over a hidden activation X [128, 256] with `density`
// nonzeros (the rest exact zeros, as ReLU and dropout leave them):
// forward Y = X·W with W in the panel layout and the bias epilogue, and
// weight gradient dWᵀ = Xᵀ·dZ with dZ packed on every call (the trainer's
// backward pass writes it packed), written in the panel layout with the
// fused SGD step (the gradient not stored), as train_layers.cc runs them.
constexpr const char* kSparseGemms[] = {"forward", "weight gradient"};
constexpr const char* kSparseModes[] = {"dense", "nonzeros",
                                        "index + nonzeros"};

// Args: GEMM (kSparseGemms), density in percent, threads, mode
// (kSparseModes) — the modes of one case back to back.
void BM_SparseGemm(benchmark::State& state) {
  const bool forward = state.range(0) == 0;
  const double density = double(state.range(1)) / 100.0;
  const int threads = int(state.range(2)), mode = int(state.range(3));
  constexpr int64_t kBatch = 128, kIn = 256, kOut = 256;
  Floats x = Random(kBatch * kIn, 1);
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (float& v : x) v = u(gen) < density ? v : 0.0f;
  const Floats dz = Random(kBatch * kOut, 4), bias = Random(kOut, 5);
  const int64_t packed = PackedFloats(kIn, kOut);
  Floats w = Random(packed, 6), velocity(size_t(packed), 0.0f),
         y(size_t(std::max(packed, kBatch * kOut)));
  const SgdArgs sgd{.lr = 0.05f, .momentum = 0.9f, .has_buf = true};
  EpilogueArgs ep{bias.data()};
  ep.sgd = &sgd, ep.update_w = w.data(), ep.sgd_buf = velocity.data();
  ep.store_grad = false;
  // Forward: A = X [128, 256]; weight gradient: A = Xᵀ [256, 128].
  GemmArgs a =
      forward
          ? GemmArgs{x.data(), kIn, 1, kBatch, y.data(), kOut, threads}
          : GemmArgs{x.data(), 1, kIn, kIn, y.data(), PanelLayoutWidth(kOut),
                     threads};
  if (!forward) a.y_panel_stride = kIn * PanelLayoutWidth(kOut);
  const PanelB panels{w.data(), kIn, kOut};
  PackedB dz_packed;
  Nonzeros nz;
  nz.Index(x.data(), kBatch, kIn, threads);
  SparseRows index;
  for (auto _ : state) {
    if (mode == 2) nz.Index(x.data(), kBatch, kIn, threads);
    if (mode > 0) {
      index = forward ? nz.rows() : nz.cols();
      a.a_nonzeros = &index;
    }
    if (!forward) {
      PackBInto(dz_packed, dz.data(), kBatch, kOut, kOut, 1, threads);
    }
    const Status st = forward ? Gemm(a, panels, Epilogue::kBias, ep)
                              : Gemm(a, dz_packed, Epilogue::kSgd, ep);
    if (!st.ok()) {
      state.SkipWithError(st.message().c_str());
      break;
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(w.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * double(kBatch * kIn * kOut) * double(state.iterations()),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(std::string(kSparseGemms[state.range(0)]) + " " +
                 kSparseModes[mode]);
}

void SparseCases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"gemm", "density%", "threads", "mode"});
  for (int threads : {1, 2}) {
    for (int gemm : {0, 1}) {
      for (int density : {10, 25, 30, 40, 50}) {
        for (int mode : {0, 1, 2}) b->Args({gemm, density, threads, mode});
      }
    }
  }
}

BENCHMARK(BM_SparseGemm)
    ->Apply(SparseCases)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

constexpr const char* kInputGradModes[] = {"dense GEMM", "masked, rows",
                                           "masked, panels in place"};

// Args: density of the mask in percent, threads, mode (kInputGradModes).
void BM_MaskedInputGrad(benchmark::State& state) {
  const double density = double(state.range(0)) / 100.0;
  const int threads = int(state.range(1)), mode = int(state.range(2));
  // dZ [M, K] (the hidden layer's outputs), W [K, N] (its inputs).
  constexpr int64_t kBatch = 128, kOut = 256, kIn = 256;
  const Floats dz = Random(kBatch * kOut, 1);
  const int64_t width = PanelLayoutWidth(kOut);
  if (mode == 2 && !MaskedPanelsReadable(width)) {
    state.SkipWithError("this target reads Wᵀ row-major (narrow panels)");
    return;
  }
  // Wᵀ [N, K] in the trainer's panel layout, and row-major.
  const Floats panels = Random(PackedFloats(kIn, kOut), 2);
  Floats rows(size_t(kIn * kOut));
  PanelsToRows(panels.data(), kIn, kOut, rows.data());
  PackedB w;
  PackBFromPanels(w, panels.data(), kIn, kOut);
  AlignedVector<uint64_t> mask(size_t(kBatch * MaskWordsPerRow(kIn)), 0);
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int64_t m = 0; m < kBatch; ++m) {
    for (int64_t n = 0; n < kIn; ++n) {
      if (u(gen) < density) {
        mask[size_t(MaskWord(kBatch, m, n))] |= uint64_t{1} << (n % 64);
      }
    }
  }
  Floats dx(size_t(kBatch * kIn));
  MaskedInputGradArgs args{dz.data(),   kBatch,      kOut,     kIn,
                           rows.data(), mask.data(), dx.data()};
  if (mode == 2) args.wt = panels.data(), args.wt_panel_width = width;
  for (auto _ : state) {
    if (mode == 0) {
      const Status st =
          Gemm({dz.data(), kOut, 1, kBatch, dx.data(), kIn, threads}, w,
               Epilogue::kNone, {});
      if (!st.ok()) {
        state.SkipWithError(st.message().c_str());
        break;
      }
    } else {
      MaskedInputGrad(args, threads);
    }
    benchmark::DoNotOptimize(dx.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * double(kBatch * kIn * kOut) * double(state.iterations()),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(kInputGradModes[mode]);
}

void InputGradCases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"density%", "threads", "mode"});
  for (int threads : {1, 2}) {
    for (int density : {10, 25, 30, 35, 40, 50}) {
      for (int mode : {0, 1, 2}) b->Args({density, threads, mode});
    }
  }
}

BENCHMARK(BM_MaskedInputGrad)
    ->Apply(InputGradCases)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

constexpr const char* kNarrowModes[] = {"GEMM", "narrow"};

// Args: batch, inputs, outputs, threads, mode (kNarrowModes).
void BM_NarrowLinear(benchmark::State& state) {
  const int64_t M = state.range(0), kIn = state.range(1), kOut = state.range(2);
  const int threads = int(state.range(3)), mode = int(state.range(4));
  const Floats x = Random(M * kIn, 1), w = Random(kOut * kIn, 2),
               bias = Random(kOut, 3);
  Floats y(size_t(M * kOut));
  const PackedB packed = PackB(w.data(), kIn, kOut, 1, kIn);
  EpilogueArgs ep;
  ep.bias = bias.data();
  const NarrowLinearArgs narrow{x.data(), kIn,  M,           w.data(),
                                kOut,     kIn,  bias.data(), y.data(),
                                kOut,     0.0f, threads};
  for (auto _ : state) {
    const Status st = mode == 0
                          ? Gemm({x.data(), kIn, 1, M, y.data(), kOut, threads},
                                 packed, Epilogue::kBias, ep)
                          : NarrowLinear(narrow, Epilogue::kBias);
    if (!st.ok()) {
      state.SkipWithError(st.message().c_str());
      break;
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * double(M * kIn * kOut) * double(state.iterations()),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(kNarrowModes[mode]);
}

void NarrowCases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "in", "out", "threads", "mode"});
  for (int threads : {1, 2}) {
    for (int batch : {1, 64, 256}) {
      for (int mode : {0, 1}) b->Args({batch, 256, 10, threads, mode});
    }
  }
  struct Layer {
    int in, out;
  };
  for (const Layer l :
       {Layer{8, 10}, Layer{16, 16}, Layer{64, 4}, Layer{256, 1},
        Layer{256, 16}, Layer{1024, 10}, Layer{784, 16}, Layer{100, 3}}) {
    for (int mode : {0, 1}) b->Args({64, l.in, l.out, 1, mode});
  }
}

BENCHMARK(BM_NarrowLinear)
    ->Apply(NarrowCases)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ballast::ops

BENCHMARK_MAIN();
