// NarrowLinear on every Highway target (see narrow_linear.h).
#include "ops/linear/narrow_linear.h"

#include <algorithm>
#include <string>

#include "ops/tasks.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/linear/narrow_linear.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Rows and outputs of one tile: 16 accumulators, each a chain of its own.
constexpr int kRows = 4, kOuts = 4;

// The multiply-add of row r with output o, when the tile has them.
#define BALLAST_NARROW_FMA(r, o)                     \
  if constexpr (R > r && G > o) {                    \
    c##r##o = hn::MulAdd(x##r##v, w##o##v, c##r##o); \
  }
#define BALLAST_NARROW_ROW(r) \
  BALLAST_NARROW_FMA(r, 0)    \
  BALLAST_NARROW_FMA(r, 1)    \
  BALLAST_NARROW_FMA(r, 2)    \
  BALLAST_NARROW_FMA(r, 3)

// The lane sums of a, b, c and e into out[0, 4). Where vectors are whole
// 128-bit blocks (x86, NEON), the four are added as a transpose: lanes
// interleaved in pairs and added, then 64-bit halves, so that lane j holds a
// partial sum of the (j mod 4)-th, then the blocks added: about 13
// operations for four sums. With a SumOfLanes each (some 9 operations a
// sum), the book's output layer at batch 256 took 10.3 µs against 8.2 (the
// GEMM 15.4 and 15.8 in the same runs; AVX3). Elsewhere (SVE, scalar)
// SumOfLanes each.
template <class D, class V>
HWY_INLINE void SumsOf4(D d, V a, V b, V c, V e, float* HWY_RESTRICT out) {
#if (HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128) || \
    HWY_TARGET == HWY_NEON
  const hn::Repartition<uint64_t, D> d64;
  const V ab =
      hn::Add(hn::InterleaveLower(d, a, b), hn::InterleaveUpper(d, a, b));
  const V ce =
      hn::Add(hn::InterleaveLower(d, c, e), hn::InterleaveUpper(d, c, e));
  const auto ab64 = hn::BitCast(d64, ab), ce64 = hn::BitCast(d64, ce);
  const V q = hn::Add(hn::BitCast(d, hn::InterleaveLower(d64, ab64, ce64)),
                      hn::BitCast(d, hn::InterleaveUpper(d64, ab64, ce64)));
  const hn::Full128<float> d128;
#if HWY_TARGET <= HWY_AVX3
  const hn::Full256<float> d256;
  const auto h = hn::Add(hn::LowerHalf(d256, q), hn::UpperHalf(d256, q));
  hn::StoreU(hn::Add(hn::LowerHalf(d128, h), hn::UpperHalf(d128, h)), d128,
             out);
#elif HWY_TARGET == HWY_AVX2
  hn::StoreU(hn::Add(hn::LowerHalf(d128, q), hn::UpperHalf(d128, q)), d128,
             out);
#else
  hn::StoreU(q, d128, out);
#endif
#else
  out[0] = hn::GetLane(hn::SumOfLanes(d, a));
  out[1] = hn::GetLane(hn::SumOfLanes(d, b));
  out[2] = hn::GetLane(hn::SumOfLanes(d, c));
  out[3] = hn::GetLane(hn::SumOfLanes(d, e));
#endif
}

// sums[r·kOuts + o] = Σ_k x_r[k]·w_o[k] for R rows of x (ldx apart) and G
// rows of W (ldw apart): each lane sums its k along K in order (a tail
// shorter than a vector loads zeros past K), then the lanes are added.
template <int R, int G>
HWY_NOINLINE void DotTile(const float* HWY_RESTRICT x, int64_t ldx,
                          const float* HWY_RESTRICT w, int64_t ldw, int64_t K,
                          float* HWY_RESTRICT sums) {
  const hn::ScalableTag<float> d;
  const int64_t L = int64_t(hn::Lanes(d));
  // Rows past R alias row 0 (never read): no pointer past the arrays.
  const float* HWY_RESTRICT x0 = x;
  const float* HWY_RESTRICT x1 = x + (R > 1 ? ldx : 0);
  const float* HWY_RESTRICT x2 = x + (R > 2 ? 2 * ldx : 0);
  const float* HWY_RESTRICT x3 = x + (R > 3 ? 3 * ldx : 0);
  const float* HWY_RESTRICT w0 = w;
  const float* HWY_RESTRICT w1 = w + (G > 1 ? ldw : 0);
  const float* HWY_RESTRICT w2 = w + (G > 2 ? 2 * ldw : 0);
  const float* HWY_RESTRICT w3 = w + (G > 3 ? 3 * ldw : 0);
  auto c00 = hn::Zero(d), c01 = c00, c02 = c00, c03 = c00;
  auto c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  auto c20 = c00, c21 = c00, c22 = c00, c23 = c00;
  auto c30 = c00, c31 = c00, c32 = c00, c33 = c00;
  int64_t k = 0;
  for (; k + L <= K; k += L) {
    const auto x0v = hn::LoadU(d, x0 + k);
    const auto x1v = hn::LoadU(d, x1 + k);
    const auto x2v = hn::LoadU(d, x2 + k);
    const auto x3v = hn::LoadU(d, x3 + k);
    const auto w0v = hn::LoadU(d, w0 + k);
    const auto w1v = hn::LoadU(d, w1 + k);
    const auto w2v = hn::LoadU(d, w2 + k);
    const auto w3v = hn::LoadU(d, w3 + k);
    BALLAST_NARROW_ROW(0)
    BALLAST_NARROW_ROW(1)
    BALLAST_NARROW_ROW(2)
    BALLAST_NARROW_ROW(3)
  }
  if (k < K) {
    const size_t v = size_t(K - k);
    const auto x0v = LoadPartial(d, x0 + k, v);
    const auto x1v = LoadPartial(d, x1 + k, v);
    const auto x2v = LoadPartial(d, x2 + k, v);
    const auto x3v = LoadPartial(d, x3 + k, v);
    const auto w0v = LoadPartial(d, w0 + k, v);
    const auto w1v = LoadPartial(d, w1 + k, v);
    const auto w2v = LoadPartial(d, w2 + k, v);
    const auto w3v = LoadPartial(d, w3 + k, v);
    BALLAST_NARROW_ROW(0)
    BALLAST_NARROW_ROW(1)
    BALLAST_NARROW_ROW(2)
    BALLAST_NARROW_ROW(3)
  }
  SumsOf4(d, c00, c01, c02, c03, sums);
  if constexpr (R > 1) SumsOf4(d, c10, c11, c12, c13, sums + kOuts);
  if constexpr (R > 2) SumsOf4(d, c20, c21, c22, c23, sums + 2 * kOuts);
  if constexpr (R > 3) SumsOf4(d, c30, c31, c32, c33, sums + 3 * kOuts);
}

#undef BALLAST_NARROW_FMA
#undef BALLAST_NARROW_ROW

template <int R>
void DotTileRows(int g, const float* x, int64_t ldx, const float* w,
                 int64_t ldw, int64_t K, float* sums) {
  switch (g) {
    case 1:
      return DotTile<R, 1>(x, ldx, w, ldw, K, sums);
    case 2:
      return DotTile<R, 2>(x, ldx, w, ldw, K, sums);
    case 3:
      return DotTile<R, 3>(x, ldx, w, ldw, K, sums);
    default:
      return DotTile<R, 4>(x, ldx, w, ldw, K, sums);
  }
}

// y = act(sums + bias) for Lanes(d) outputs, as the GEMM's epilogues
// compute it (gemm-inl.h); no bias added without one (kNone; kBias is
// kNone with one).
template <Epilogue E, class D>
HWY_INLINE void FinishLanes(D d, const float* HWY_RESTRICT sums,
                            const float* HWY_RESTRICT bias, float slope,
                            float* HWY_RESTRICT y) {
  auto v = hn::LoadU(d, sums);
  if (bias != nullptr) v = hn::Add(v, hn::LoadU(d, bias));
  if constexpr (E == Epilogue::kBiasRelu) v = Relu(d, v);
  if constexpr (E == Epilogue::kBiasLeakyRelu) v = LeakyRelu(d, v, slope);
  hn::StoreU(v, d, y);
}

// Outputs [0, g) of a row: four lanes at a time, the rest one lane at a
// time (a partial vector through memory stalled on the store forwarding: a
// third of the time at batch 256).
template <Epilogue E>
HWY_INLINE void Finish(const float* HWY_RESTRICT sums,
                       const float* HWY_RESTRICT bias, float slope, int g,
                       float* HWY_RESTRICT y) {
  const hn::CappedTag<float, kOuts> d;
  const hn::CappedTag<float, 1> d1;
  const int L = int(hn::Lanes(d));
  int o = 0;
  for (; o + L <= g; o += L) {
    FinishLanes<E>(d, sums + o, bias ? bias + o : nullptr, slope, y + o);
  }
  for (; o < g; ++o) {
    FinishLanes<E>(d1, sums + o, bias ? bias + o : nullptr, slope, y + o);
  }
}

// Rows [m0, m1) of y.
template <Epilogue E>
void NarrowRows(const NarrowLinearArgs& a, int64_t m0, int64_t m1) {
  HWY_ALIGN float sums[kRows * kOuts];
  for (int64_t m = m0; m < m1; m += kRows) {
    const int r = int(std::min<int64_t>(kRows, m1 - m));
    for (int64_t n = 0; n < a.N; n += kOuts) {
      const int g = int(std::min<int64_t>(kOuts, a.N - n));
      const float* x = a.x + m * a.ldx;
      const float* w = a.w + n * a.K;
      switch (r) {
        case 1:
          DotTileRows<1>(g, x, a.ldx, w, a.K, a.K, sums);
          break;
        case 2:
          DotTileRows<2>(g, x, a.ldx, w, a.K, a.K, sums);
          break;
        case 3:
          DotTileRows<3>(g, x, a.ldx, w, a.K, a.K, sums);
          break;
        default:
          DotTileRows<4>(g, x, a.ldx, w, a.K, a.K, sums);
          break;
      }
      for (int i = 0; i < r; ++i) {
        Finish<E>(sums + i * kOuts, a.bias ? a.bias + n : nullptr, a.slope, g,
                  a.y + (m + i) * a.ldy + n);
      }
    }
  }
}

void NarrowRowsImpl(const NarrowLinearArgs& a, int epilogue, int64_t m0,
                    int64_t m1) {
  switch (Epilogue(epilogue)) {
    case Epilogue::kBiasRelu:
      return NarrowRows<Epilogue::kBiasRelu>(a, m0, m1);
    case Epilogue::kBiasLeakyRelu:
      return NarrowRows<Epilogue::kBiasLeakyRelu>(a, m0, m1);
    default:
      return NarrowRows<Epilogue::kNone>(a, m0, m1);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ballast::ops {

HWY_EXPORT(NarrowRowsImpl);

// gemm_bench --benchmark_filter=NarrowLinear, one thread, AVX3, medians of
// three in each of two runs, the time against the GEMM's: the book's
// 256 → 10 0.21-0.24 at batch 1, 0.53-0.64 at 64 and 0.46-0.53 at 256; at
// batch 64, 256 → 1 0.18-0.21, 64 → 4 0.23-0.27, 100 → 3 0.47-0.64 and
// 1024 → 10 0.56-0.59; but 256 → 16 0.88-0.89 and 784 → 16 0.95-0.99 (the
// GEMM's panel full), and 16 → 16 2.4-2.5 and 8 → 10 2.4-2.6 (a sum across
// the lanes for every one or two multiply-adds).
bool NarrowLinearPays(int64_t N, int64_t K) {
  return N >= 1 && N < 16 && K >= 64;
}

Status NarrowLinear(const NarrowLinearArgs& a, Epilogue epilogue) {
  if (epilogue != Epilogue::kNone && epilogue != Epilogue::kBias &&
      epilogue != Epilogue::kBiasRelu && epilogue != Epilogue::kBiasLeakyRelu) {
    return InvalidArgument(std::string("narrow linear: epilogue ") +
                           EpilogueName(epilogue) + " is not supported");
  }
  if (a.M < 0 || a.N < 1 || a.K < 1 || a.ldx < a.K || a.ldy < a.N ||
      a.x == nullptr || a.w == nullptr || a.y == nullptr) {
    return InvalidArgument("narrow linear: bad shape M=" + std::to_string(a.M) +
                           " N=" + std::to_string(a.N) +
                           " K=" + std::to_string(a.K) + " (ldx " +
                           std::to_string(a.ldx) + ", ldy " +
                           std::to_string(a.ldy) + ") or a null pointer");
  }
  if (a.M == 0) return Status::Ok();
  NarrowLinearArgs args = a;
  if (epilogue == Epilogue::kNone) args.bias = nullptr;
  // Blocks of 16 rows: whole tiles, enough of them to share.
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (a.M + kBlock - 1) / kBlock;
  const int T =
      InParallel() ? 1 : int(std::clamp<int64_t>(a.threads, 1, blocks));
  ParallelRun(T, [&](int t, int tasks) {
    const int64_t b0 = blocks * t / tasks, b1 = blocks * (t + 1) / tasks;
    HWY_DYNAMIC_DISPATCH(NarrowRowsImpl)
    (args, int(epilogue), b0 * kBlock, std::min(a.M, b1 * kBlock));
  });
  return Status::Ok();
}

}  // namespace ballast::ops
#endif  // HWY_ONCE
