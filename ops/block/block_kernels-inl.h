// Per-target bodies of the block passes (see block_kernels.h).
#if defined(BALLAST_OPS_BLOCK_BLOCK_KERNELS_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef BALLAST_OPS_BLOCK_BLOCK_KERNELS_INL_H_
#undef BALLAST_OPS_BLOCK_BLOCK_KERNELS_INL_H_
#else
#define BALLAST_OPS_BLOCK_BLOCK_KERNELS_INL_H_
#endif

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "hwy/highway.h"
#include "ops/block/block_kernels.h"
#include "ops/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<DF>;

// `v` where the lane is in [0, valid), for tails.
HWY_INLINE size_t Valid(int64_t n, int64_t N, size_t lanes) {
  return size_t(std::min<int64_t>(int64_t(lanes), N - n));
}

void BiasAddImpl(float* y, int64_t M, int64_t N, const float* bias,
                 int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const DF d;
    const size_t L = hn::Lanes(d);
    float* row = y + m * N;
    for (int64_t n = 0; n < N; n += int64_t(L)) {
      const size_t v = Valid(n, N, L);
      StorePartial(
          d, hn::Add(LoadPartial(d, row + n, v), LoadPartial(d, bias + n, v)),
          row + n, v);
    }
  }
}

void ScaleShiftImpl(float* y, int64_t M, int64_t N, const float* scale,
                    const float* shift, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const DF d;
    const size_t L = hn::Lanes(d);
    float* row = y + m * N;
    for (int64_t n = 0; n < N; n += int64_t(L)) {
      const size_t v = Valid(n, N, L);
      const auto r =
          hn::MulAdd(LoadPartial(d, row + n, v), LoadPartial(d, scale + n, v),
                     LoadPartial(d, shift + n, v));
      StorePartial(d, r, row + n, v);
    }
  }
}

// Calls body(i, valid) for every vector of [0, n_total), in chunks of 1024
// elements spread over the threads.
template <class Body>
HWY_INLINE void ForEachVector(int64_t n_total, int threads, Body body) {
  const int64_t chunks = (n_total + 1023) / 1024;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t L = int64_t(hn::Lanes(DF()));
    const int64_t end = std::min(n_total, (c + 1) * 1024);
    for (int64_t i = c * 1024; i < end; i += L) {
      body(i, Valid(i, end, size_t(L)));
    }
  }
}

void ReluImpl(const float* x, float* y, int64_t n_total, int threads) {
  ForEachVector(n_total, threads, [=](int64_t i, size_t v) {
    const DF d;
    StorePartial(d, hn::Max(LoadPartial(d, x + i, v), hn::Zero(d)), y + i, v);
  });
}

void ReluBackwardImpl(const float* x, const float* dy, float* dx,
                      int64_t n_total, int threads) {
  ForEachVector(n_total, threads, [=](int64_t i, size_t v) {
    const DF d;
    const auto pos = hn::Gt(LoadPartial(d, x + i, v), hn::Zero(d));
    StorePartial(d, hn::IfThenElseZero(pos, LoadPartial(d, dy + i, v)), dx + i,
                 v);
  });
}

// Raw dropout draws for elements [i0, i0 + count): one Philox block per 4.
HWY_INLINE void DropoutBits(const RngSlice& rng, int64_t i0, size_t count,
                            int32_t* out) {
  int64_t i = i0;
  const int64_t end = i0 + int64_t(count);
  while (i < end) {
    const auto block = Philox4x32(rng.seed, rng.first_block + uint64_t(i) / 4);
    for (int64_t w = i % 4; w < 4 && i < end; ++w, ++i) {
      out[i - i0] = int32_t(block[size_t(w)] >> 8);
    }
  }
}

// Keep mask for the `valid` lanes at element i0 (p > 0).
HWY_INLINE hn::Mask<DF> KeepMask(DF d, const RngSlice& rng, int64_t i0,
                                 size_t valid, int32_t threshold) {
  const DI di;
  HWY_ALIGN int32_t bits[hn::MaxLanes(di)] = {};
  DropoutBits(rng, i0, valid, bits);
  return hn::RebindMask(d,
                        hn::Gt(hn::Load(di, bits), hn::Set(di, threshold - 1)));
}

// Packs a mask's `valid` lanes into bits [offset, offset + valid) of *word.
HWY_INLINE void AppendMaskBits(DF d, hn::Mask<DF> m, size_t valid,
                               size_t offset, uint64_t* word) {
  uint8_t bytes[8 + (hn::MaxLanes(d) + 7) / 8] = {};
  hn::StoreMaskBits(d, m, bytes);
  uint64_t v;
  std::memcpy(&v, bytes, sizeof(v));
  if (valid < 64) v &= (uint64_t{1} << valid) - 1;
  *word |= v << offset;
}

// Walks the columns of row m in words of 64 (≥ one vector each, since a
// vector has at most 64 float lanes), calling body(n, valid, word_offset)
// for each vector and storing the word it fills.
template <class Body>
HWY_INLINE void ForEachMaskWord(int64_t N, uint64_t* row_mask, Body body) {
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  for (int64_t w0 = 0; w0 < N; w0 += 64) {
    uint64_t word = 0;
    const int64_t wend = std::min(N, w0 + 64);
    for (int64_t n = w0; n < wend; n += L) {
      body(n, Valid(n, wend, size_t(L)), size_t(n - w0), &word);
    }
    row_mask[w0 / 64] = word;
  }
}

void DropoutImpl(float* y, int64_t M, int64_t N, double p, const RngSlice& rng,
                 uint64_t* mask, int threads) {
  const int32_t threshold = int32_t(DropoutThreshold(p));
  const float scale = p < 1.0 ? float(1.0 / (1.0 - p)) : 0.0f;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const DF d;
    float* row = y + m * N;
    ForEachMaskWord(
        N, mask + m * MaskWordsPerRow(N),
        [&](int64_t n, size_t v, size_t off, uint64_t* word) {
          const auto keep = KeepMask(d, rng, m * N + n, v, threshold);
          const auto r = hn::IfThenElseZero(
              keep, hn::Mul(LoadPartial(d, row + n, v), hn::Set(d, scale)));
          StorePartial(d, r, row + n, v);
          AppendMaskBits(d, keep, v, off, word);
        });
  }
}

void BnReluDropoutForwardImpl(const BnForwardArgs& a, int64_t M, int64_t N,
                              int threads) {
  const bool dropout = a.p > 0.0;
  const int32_t threshold = int32_t(DropoutThreshold(a.p));
  const float scale = a.p < 1.0 ? float(1.0 / (1.0 - a.p)) : 0.0f;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const DF d;
    const float* z = a.z + m * N;
    float* out = a.out + m * N;
    ForEachMaskWord(
        N, a.pass_mask + m * MaskWordsPerRow(N),
        [&](int64_t n, size_t v, size_t off, uint64_t* word) {
          // bn = γ·(z − μ)·rstd + β
          const auto gr = a.gamma ? hn::Mul(LoadPartial(d, a.gamma + n, v),
                                            LoadPartial(d, a.rstd + n, v))
                                  : LoadPartial(d, a.rstd + n, v);
          const auto xc =
              hn::Sub(LoadPartial(d, z + n, v), LoadPartial(d, a.mean + n, v));
          const auto beta =
              a.beta ? LoadPartial(d, a.beta + n, v) : hn::Zero(d);
          const auto bn = hn::MulAdd(xc, gr, beta);
          auto pass = hn::Gt(bn, hn::Zero(d));
          auto r = hn::IfThenElseZero(pass, bn);
          if (dropout) {
            const auto keep = KeepMask(d, a.rng, m * N + n, v, threshold);
            pass = hn::And(pass, keep);
            r = hn::IfThenElseZero(keep, hn::Mul(r, hn::Set(d, scale)));
          }
          StorePartial(d, r, out + n, v);
          AppendMaskBits(d, pass, v, off, word);
        });
  }
}

// Lanes of a mask word starting at bit `off`, as a float mask.
HWY_INLINE hn::Mask<DF> MaskFromWord(DF d, uint64_t word, size_t off) {
  uint8_t bytes[8 + (hn::MaxLanes(d) + 7) / 8] = {};
  const uint64_t v = word >> off;
  std::memcpy(bytes, &v, sizeof(v));
  return hn::LoadMaskBits(d, bytes);
}

void DropoutBackwardImpl(const uint64_t* mask, const float* dy, float* dx,
                         int64_t M, int64_t N, double p, int threads) {
  const float scale = p < 1.0 ? float(1.0 / (1.0 - p)) : 0.0f;
  const int64_t words = MaskWordsPerRow(N);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const DF d;
    const int64_t L = int64_t(hn::Lanes(d));
    for (int64_t n = 0; n < N; n += L) {
      const size_t v = Valid(n, N, size_t(L));
      const auto keep =
          MaskFromWord(d, mask[m * words + n / 64], size_t(n % 64));
      const auto g = hn::IfThenElseZero(
          keep, hn::Mul(LoadPartial(d, dy + m * N + n, v), hn::Set(d, scale)));
      StorePartial(d, g, dx + m * N + n, v);
    }
  }
}

// BatchNorm backward in two row-major streaming passes. With a pass mask
// (the fused path) the incoming gradient is g = d_out·mask/(1 − p); without
// one (the unfused path, after separate dropout and ReLU backward passes)
// g = d_out. Each thread owns a range of rows: pass 1 sums g and g·x̂ per
// column into its own partial row, the partials are reduced in thread order
// (deterministic for a fixed thread count), and pass 2 writes dz.
void BnReluDropoutBackwardImpl(const BnBackwardArgs& a, int64_t M, int64_t N,
                               int threads, float* partial) {
  const float scale = a.pass_mask == nullptr ? 1.0f
                      : a.p < 1.0            ? float(1.0 / (1.0 - a.p))
                                             : 0.0f;
  const int64_t words = MaskWordsPerRow(N);
  const float inv_m = 1.0f / float(M);
#pragma omp parallel num_threads(threads)
  {
    const DF d;
    const int64_t L = int64_t(hn::Lanes(d));
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t m0 = M * t / nt, m1 = M * (t + 1) / nt;
    float* acc_g = partial + 3 * N * t;
    float* acc_gx = acc_g + N;
    float* acc_dz = acc_gx + N;
    const auto incoming = [&](int64_t m, int64_t n, size_t v) {
      const auto dy =
          hn::Mul(LoadPartial(d, a.d_out + m * N + n, v), hn::Set(d, scale));
      if (a.pass_mask == nullptr) return dy;
      return hn::IfThenElseZero(
          MaskFromWord(d, a.pass_mask[m * words + n / 64], size_t(n % 64)), dy);
    };
    const auto xhat = [&](int64_t m, int64_t n, size_t v) {
      return hn::Mul(hn::Sub(LoadPartial(d, a.z + m * N + n, v),
                             LoadPartial(d, a.mean + n, v)),
                     LoadPartial(d, a.rstd + n, v));
    };
    std::fill(acc_g, acc_g + 3 * N, 0.0f);
    for (int64_t m = m0; m < m1; ++m) {
      for (int64_t n = 0; n < N; n += L) {
        const size_t v = Valid(n, N, size_t(L));
        const auto g = incoming(m, n, v);
        StorePartial(d, hn::Add(LoadPartial(d, acc_g + n, v), g), acc_g + n, v);
        StorePartial(
            d, hn::MulAdd(g, xhat(m, n, v), LoadPartial(d, acc_gx + n, v)),
            acc_gx + n, v);
      }
    }
#pragma omp barrier
    // Reduce the partials; each thread a range of columns, threads in order.
    const int64_t c0 = N * t / nt, c1 = N * (t + 1) / nt;
    for (int64_t n = c0; n < c1; ++n) {
      float sg = 0, sgx = 0;
      for (int i = 0; i < nt; ++i) {
        sg += partial[3 * N * i + n];
        sgx += partial[3 * N * i + N + n];
      }
      a.dbeta[n] = sg;
      a.dgamma[n] = sgx;
    }
#pragma omp barrier
    // Pass 2: dz = γ·rstd·(g − dβ/M − x̂·dγ/M), and Σ dz for the bias.
    for (int64_t m = m0; m < m1; ++m) {
      for (int64_t n = 0; n < N; n += L) {
        const size_t v = Valid(n, N, size_t(L));
        const auto gamma =
            a.gamma ? LoadPartial(d, a.gamma + n, v) : hn::Set(d, 1.0f);
        const auto k = hn::Mul(gamma, LoadPartial(d, a.rstd + n, v));
        const auto mean_g =
            hn::Mul(LoadPartial(d, a.dbeta + n, v), hn::Set(d, inv_m));
        const auto mean_gx =
            hn::Mul(LoadPartial(d, a.dgamma + n, v), hn::Set(d, inv_m));
        const auto dz = hn::Mul(k, hn::Sub(hn::Sub(incoming(m, n, v), mean_g),
                                           hn::Mul(xhat(m, n, v), mean_gx)));
        StorePartial(d, dz, a.dz + m * N + n, v);
        StorePartial(d, hn::Add(LoadPartial(d, acc_dz + n, v), dz), acc_dz + n,
                     v);
      }
    }
    if (a.dbias) {
#pragma omp barrier
      for (int64_t n = c0; n < c1; ++n) {
        float s = 0;
        for (int i = 0; i < nt; ++i) s += partial[3 * N * i + 2 * N + n];
        a.dbias[n] = s;
      }
    }
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#endif  // BALLAST_OPS_BLOCK_BLOCK_KERNELS_INL_H_
