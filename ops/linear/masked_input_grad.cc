// MaskedInputGrad on every Highway target (see masked_input_grad.h).
#include "ops/linear/masked_input_grad.h"

#include <algorithm>
#include <cstring>

#include "ops/block/block_kernels.h"
#include "ops/tasks.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/linear/masked_input_grad.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Where Dots finds w[k..]: a row of Wᵀ, contiguous or (kPanels) in pieces
// of 1 << shift floats, `stride` apart (the panel layout). A piece holds
// whole pairs of vectors, so no pair straddles two. A template parameter,
// so that the contiguous row's loop is the plain one.
template <bool kPanels>
struct WRow {
  const float* w;
  int shift;
  int64_t stride;
  HWY_INLINE const float* At(int64_t k) const {
    if constexpr (!kPanels) return w + k;
    return w + (k >> shift) * stride + (k & ((int64_t{1} << shift) - 1));
  }
};

// dx[r] = Σ_k z[r][k]·w[k] for R rows (1 to 4) of one column: each vector of
// w is loaded once for the R rows, two chains per row, then each row's
// chains are added and reduced across lanes.
template <int R, bool kPanels>
HWY_INLINE void Dots(const float* const* HWY_RESTRICT z,
                     const WRow<kPanels> wrow, int64_t K,
                     float* const* HWY_RESTRICT out) {
  const hn::ScalableTag<float> d;
  const int64_t L = int64_t(hn::Lanes(d));
  auto a0 = hn::Zero(d), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, e0 = a0,
       e1 = a0;
  const float* HWY_RESTRICT z0 = z[0];
  const float* HWY_RESTRICT z1 = z[R > 1 ? 1 : 0];
  const float* HWY_RESTRICT z2 = z[R > 2 ? 2 : 0];
  const float* HWY_RESTRICT z3 = z[R > 3 ? 3 : 0];
  int64_t k = 0;
  for (; k + 2 * L <= K; k += 2 * L) {
    const float* HWY_RESTRICT w = wrow.At(k);
    const auto w0 = hn::LoadU(d, w), w1 = hn::LoadU(d, w + L);
    a0 = hn::MulAdd(hn::LoadU(d, z0 + k), w0, a0);
    a1 = hn::MulAdd(hn::LoadU(d, z0 + k + L), w1, a1);
    if constexpr (R > 1) {
      b0 = hn::MulAdd(hn::LoadU(d, z1 + k), w0, b0);
      b1 = hn::MulAdd(hn::LoadU(d, z1 + k + L), w1, b1);
    }
    if constexpr (R > 2) {
      c0 = hn::MulAdd(hn::LoadU(d, z2 + k), w0, c0);
      c1 = hn::MulAdd(hn::LoadU(d, z2 + k + L), w1, c1);
    }
    if constexpr (R > 3) {
      e0 = hn::MulAdd(hn::LoadU(d, z3 + k), w0, e0);
      e1 = hn::MulAdd(hn::LoadU(d, z3 + k + L), w1, e1);
    }
  }
  for (; k < K; k += L) {
    const size_t v = size_t(K - k < L ? K - k : L);
    const auto w0 = LoadPartial(d, wrow.At(k), v);
    a0 = hn::MulAdd(LoadPartial(d, z0 + k, v), w0, a0);
    if constexpr (R > 1) b0 = hn::MulAdd(LoadPartial(d, z1 + k, v), w0, b0);
    if constexpr (R > 2) c0 = hn::MulAdd(LoadPartial(d, z2 + k, v), w0, c0);
    if constexpr (R > 3) e0 = hn::MulAdd(LoadPartial(d, z3 + k, v), w0, e0);
  }
  *out[0] = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, a1)));
  if constexpr (R > 1)
    *out[1] = hn::GetLane(hn::SumOfLanes(d, hn::Add(b0, b1)));
  if constexpr (R > 2)
    *out[2] = hn::GetLane(hn::SumOfLanes(d, hn::Add(c0, c1)));
  if constexpr (R > 3)
    *out[3] = hn::GetLane(hn::SumOfLanes(d, hn::Add(e0, e1)));
}

// Rows a block visits together: each row of Wᵀ it reads serves every row of
// the block that keeps that column (about a quarter), four at a time. Their
// rows of dZ (32 KiB for K = 256) stay in L1 (see masked_input_grad.h).
constexpr int64_t kMaskedRows = 32;
static_assert(kMaskedRows <= 32, "a column's rows are bits of a uint32_t");

// Block b (rows [32·b, 32·b + 32)) of dX; `shift`: log2 of the panel width
// with kPanels.
template <bool kPanels>
void MaskedBlock(const MaskedInputGradArgs& a, int shift, int64_t b) {
  const int64_t words = MaskWordsPerRow(a.N);
  const int64_t m0 = b * kMaskedRows;
  const int64_t rows = std::min(kMaskedRows, a.M - m0);
  std::memset(a.dx + m0 * a.N, 0, size_t(rows * a.N) * sizeof(float));
  for (int64_t w = 0; w < words; ++w) {
    // The block's rows that keep each column of the word, as bits: each
    // row's set bits visited once (a quarter of them in the book's recipe),
    // not every row for every column.
    uint32_t keeps[64] = {};
    uint64_t any = 0;
    for (int64_t r = 0; r < rows; ++r) {
      uint64_t bits = a.mask[MaskWord(a.M, m0 + r, w * 64)];
      any |= bits;
      for (; bits != 0; bits &= bits - 1) {
        keeps[hwy::Num0BitsBelowLS1Bit_Nonzero64(bits)] |= uint32_t{1} << r;
      }
    }
    while (any != 0) {
      const int bit = int(hwy::Num0BitsBelowLS1Bit_Nonzero64(any));
      any &= any - 1;
      const int64_t n = w * 64 + bit;
      uint32_t keep = keeps[bit];
      const WRow<kPanels> wt =
          kPanels ? WRow<kPanels>{a.wt + n * a.wt_panel_width, shift,
                                  a.N * a.wt_panel_width}
                  : WRow<kPanels>{a.wt + n * a.K, 0, 0};
      const float* z[4];
      float* out[4];
      int count = 0;
      while (keep != 0) {
        const int64_t r = int64_t(hwy::Num0BitsBelowLS1Bit_Nonzero32(keep));
        keep &= keep - 1;
        z[count] = a.dz + (m0 + r) * a.K;
        out[count] = a.dx + (m0 + r) * a.N + n;
        if (++count == 4) {
          Dots<4>(z, wt, a.K, out);
          count = 0;
        }
      }
      switch (count) {
        case 3:
          Dots<3>(z, wt, a.K, out);
          break;
        case 2:
          Dots<2>(z, wt, a.K, out);
          break;
        case 1:
          Dots<1>(z, wt, a.K, out);
          break;
        default:
          break;
      }
    }
  }
}

void MaskedInputGradImpl(const MaskedInputGradArgs& a, int threads) {
  const int64_t blocks = (a.M + kMaskedRows - 1) / kMaskedRows;
  const bool panels = a.wt_panel_width > 0;
  const int shift =
      panels ? hwy::Num0BitsBelowLS1Bit_Nonzero64(uint64_t(a.wt_panel_width))
             : 0;
  ParallelFor(blocks, threads, [&](int64_t b) {
    if (panels) {
      MaskedBlock<true>(a, shift, b);
    } else {
      MaskedBlock<false>(a, shift, b);
    }
  });
}

int64_t VectorLanes() { return int64_t(hn::Lanes(hn::ScalableTag<float>())); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ballast::ops {

HWY_EXPORT(MaskedInputGradImpl);
HWY_EXPORT(VectorLanes);

void MaskedInputGrad(const MaskedInputGradArgs& args, int threads) {
  HWY_DYNAMIC_DISPATCH(MaskedInputGradImpl)(args, threads);
}

bool MaskedPanelsReadable(int64_t width) {
  const int64_t lanes = HWY_DYNAMIC_DISPATCH(VectorLanes)();
  return width > 0 && (width & (width - 1)) == 0 && width % (2 * lanes) == 0 &&
         width * int64_t(sizeof(float)) >= 4 * 64;
}

}  // namespace ballast::ops
#endif  // HWY_ONCE
