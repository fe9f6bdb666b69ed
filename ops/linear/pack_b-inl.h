// Per-target packing of B into the GEMM's column panels (PackBImpl,
// PackBFromPanelsImpl); included by gemm-inl.h.

// Per-target include guard (the Highway idiom for -inl.h files).
#if defined(BALLAST_OPS_LINEAR_PACK_B_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BALLAST_OPS_LINEAR_PACK_B_INL_H_
#undef BALLAST_OPS_LINEAR_PACK_B_INL_H_
#else
#define BALLAST_OPS_LINEAR_PACK_B_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "hwy/highway.h"
#include "ops/linear/gemm_config-inl.h"
#include "ops/tasks.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// One panel of B = Wᵀ: out[k·nr + j] = w[j·stride_n + k] for j < cols, zero
// past cols. K is walked in blocks of 16, so each row of W is read a cache
// line at a time while the line is hot. Reading one float of each of the nr
// rows per k instead thrashes L1 when the row stride is a multiple of 1 KiB
// (the rows then share a few cache sets); this is 2-3× faster there, and also
// faster than a vector gather of the rows (measured with pack_bench).
inline void PackTransposedPanel(const float* HWY_RESTRICT w, int64_t K,
                                int64_t cols, int64_t stride_n, int64_t nr,
                                float* HWY_RESTRICT out) {
  constexpr int64_t kBlock = 16;
  for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
    const int64_t kb = std::min(kBlock, K - k0);
    for (int64_t j = 0; j < cols; ++j) {
      const float* s = w + j * stride_n + k0;
      float* o = out + k0 * nr + j;
      for (int64_t kk = 0; kk < kb; ++kk) o[kk * nr] = s[kk];
    }
    for (int64_t kk = 0; kk < kb; ++kk) {
      float* o = out + (k0 + kk) * nr;
      for (int64_t c = cols; c < nr; ++c) o[c] = 0.0f;
    }
  }
}

void PackBImpl(const float* src, int64_t K, int64_t N, int64_t stride_k,
               int64_t stride_n, float* dst, int threads) {
  const int64_t nr = PanelWidth();
  const int64_t panels = (N + nr - 1) / nr;
  // Waking a second thread costs more than packing a small matrix (the last
  // Linear's 10 × 256 weights, repacked after every training step).
  if (K * N < (int64_t{1} << 14)) threads = 1;
  ParallelFor(panels, threads, [&](int64_t p) {
    float* out = dst + p * nr * K;
    const int64_t n0 = p * nr, cols = std::min(nr, N - n0);
    if (stride_k == 1 && stride_n != 1) {
      PackTransposedPanel(src + n0 * stride_n, K, cols, stride_n, nr, out);
      return;
    }
    for (int64_t k = 0; k < K; ++k) {
      const float* s = src + k * stride_k + n0 * stride_n;
      float* o = out + k * nr;
      if (stride_n == 1) {
        std::memcpy(o, s, size_t(cols) * sizeof(float));
      } else {
        for (int64_t j = 0; j < cols; ++j) o[j] = s[j * stride_n];
      }
      for (int64_t j = cols; j < nr; ++j) o[j] = 0.0f;
    }
  });
}

// Transposes a rows × cols block: out[r·ld_out + c] = in[c·ld_in + r].
// Whole 4 × 4 squares go through four 4-lane vectors (two rounds of
// interleaves), the edges one float at a time; the SCALAR target (one lane)
// takes the scalar loop throughout, which is also the twin.
inline void TransposeBlock(const float* HWY_RESTRICT in, int64_t ld_in,
                           int64_t rows, int64_t cols, float* HWY_RESTRICT out,
                           int64_t ld_out) {
  int64_t r4 = 0, c4 = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::CappedTag<float, 4> d4;
  if (hn::Lanes(d4) == 4) {
    r4 = rows / 4 * 4, c4 = cols / 4 * 4;
    for (int64_t c = 0; c < c4; c += 4) {
      for (int64_t r = 0; r < r4; r += 4) {
        const float* src = in + c * ld_in + r;
        // Row i of the square: in(c + i, r..r + 3).
        const auto a = hn::LoadU(d4, src);
        const auto b = hn::LoadU(d4, src + ld_in);
        const auto e = hn::LoadU(d4, src + 2 * ld_in);
        const auto f = hn::LoadU(d4, src + 3 * ld_in);
        const auto ab_lo = hn::InterleaveLower(d4, a, b);  // a0 b0 a1 b1
        const auto ef_lo = hn::InterleaveLower(d4, e, f);  // e0 f0 e1 f1
        const auto ab_hi = hn::InterleaveUpper(d4, a, b);  // a2 b2 a3 b3
        const auto ef_hi = hn::InterleaveUpper(d4, e, f);  // e2 f2 e3 f3
        float* dst = out + r * ld_out + c;
        hn::StoreU(hn::ConcatLowerLower(d4, ef_lo, ab_lo), d4, dst);
        hn::StoreU(hn::ConcatUpperUpper(d4, ef_lo, ab_lo), d4, dst + ld_out);
        hn::StoreU(hn::ConcatLowerLower(d4, ef_hi, ab_hi), d4,
                   dst + 2 * ld_out);
        hn::StoreU(hn::ConcatUpperUpper(d4, ef_hi, ab_hi), d4,
                   dst + 3 * ld_out);
      }
    }
  }
#endif
  // The edges: columns past c4 for every row, rows past r4 for the rest.
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = c < c4 ? r4 : 0; r < rows; ++r) {
      out[r * ld_out + c] = in[c * ld_in + r];
    }
  }
}

// B'(k', n') = B(n', k') packed into panels of nr from B [K, N] in the panel
// layout of width w (see PackBFromPanels in gemm.h). Output panel q holds
// source rows k in [q·nr, q·nr + nr) as columns; each source panel s gives it
// one block, a transpose of w × nr floats.
void PackBFromPanelsImpl(const float* panels, int64_t K, int64_t N, int64_t w,
                         float* dst, int threads) {
  const int64_t nr = PanelWidth();
  const int64_t out_panels = (K + nr - 1) / nr;
  ParallelFor(out_panels, threads, [&](int64_t q) {
    const int64_t k0 = q * nr, cols = std::min(nr, K - k0);
    float* out = dst + q * nr * N;
    for (int64_t s = 0; s * w < N; ++s) {
      const int64_t rows = std::min(w, N - s * w);
      TransposeBlock(panels + s * K * w + k0 * w, w, rows, cols,
                     out + s * w * nr, nr);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = cols; j < nr; ++j) out[(s * w + r) * nr + j] = 0.0f;
      }
    }
  });
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#endif  // BALLAST_OPS_LINEAR_PACK_B_INL_H_
