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

// Dropout draws (word >> 8, 24 bits) of Philox4x32-10 (see Philox4x32 in
// runtime/rng.cc, its scalar twin) for `blocks` consecutive counters from
// `counter`, one block per 64-bit lane. The draws of block b land in
// out[2b] (words 0 | 1 << 32) and out[2b + 1] (words 2 | 3 << 32), so that
// read as int32 they are in element order. Stores whole vectors: `out`
// holds 2·blocks rounded up to 2·lanes. Each 32×32→64 multiply is a MulEven
// on the low halves of the lanes.
HWY_NOINLINE void PhiloxDraws(uint64_t key, uint64_t counter, size_t blocks,
                              uint64_t* HWY_RESTRICT out) {
#if HWY_TARGET == HWY_SCALAR
  // One lane: no 64→32-bit lane view; the scalar twin is the same thing.
  for (size_t b = 0; b < blocks; ++b) {
    const auto w = Philox4x32(key, counter + b);
    out[2 * b] = uint64_t(w[0] >> 8) | uint64_t(w[1] >> 8) << 32;
    out[2 * b + 1] = uint64_t(w[2] >> 8) | uint64_t(w[3] >> 8) << 32;
  }
#else
  using D64 = hn::ScalableTag<uint64_t>;
  const D64 d64;
  const hn::Repartition<uint32_t, D64> d32;
  const size_t L = hn::Lanes(d64);
  const auto low = hn::Set(d64, uint64_t{0xFFFFFFFFu});
  const auto m0 = hn::BitCast(d32, hn::Set(d64, uint64_t{0xD2511F53u}));
  const auto m1 = hn::BitCast(d32, hn::Set(d64, uint64_t{0xCD9E8D57u}));
  for (size_t b0 = 0; b0 < blocks; b0 += L) {
    const auto ctr = hn::Iota(d64, counter + b0);
    auto c0 = hn::And(ctr, low), c1 = hn::ShiftRight<32>(ctr);
    auto c2 = hn::Zero(d64), c3 = hn::Zero(d64);
    uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
    for (int round = 0; round < 10; ++round) {
      const auto p0 = hn::MulEven(hn::BitCast(d32, c0), m0);
      const auto p1 = hn::MulEven(hn::BitCast(d32, c2), m1);
      c0 = hn::Xor(hn::Xor(hn::ShiftRight<32>(p1), c1),
                   hn::Set(d64, uint64_t{k0}));
      c1 = hn::And(p1, low);
      c2 = hn::Xor(hn::Xor(hn::ShiftRight<32>(p0), c3),
                   hn::Set(d64, uint64_t{k1}));
      c3 = hn::And(p0, low);
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // Each word is in the low half of its lane: draw = word >> 8.
    const auto w01 =
        hn::Or(hn::ShiftRight<8>(c0), hn::ShiftLeft<32>(hn::ShiftRight<8>(c1)));
    const auto w23 =
        hn::Or(hn::ShiftRight<8>(c2), hn::ShiftLeft<32>(hn::ShiftRight<8>(c3)));
    hn::StoreInterleaved2(w01, w23, d64, out + 2 * b0);
  }
#endif
}

// Dropout draws for elements [i0, i0 + count), count <= 64: element i is
// word i % 4 of block first_block + i / 4, shifted right by 8.
HWY_INLINE void DropoutBits(const RngSlice& rng, int64_t i0, size_t count,
                            int32_t* out) {
  const uint64_t first = uint64_t(i0) / 4;
  const size_t blocks = size_t((uint64_t(i0) + count - 1) / 4 - first + 1);
  constexpr size_t kMaxBlocks = 64 / 4 + 1;
  HWY_ALIGN uint64_t
      draws[2 * (kMaxBlocks + hn::MaxLanes(hn::ScalableTag<uint64_t>()))];
  PhiloxDraws(rng.seed, rng.first_block + first, blocks, draws);
  const size_t skip = size_t(uint64_t(i0) % 4);
  std::memcpy(out, reinterpret_cast<const char*>(draws) + 4 * skip,
              count * sizeof(int32_t));
}

// Draws of a mask word: the (at most 64) elements from i0, once per word so
// that the vectorized Philox runs on full vectors.
struct WordBits {
  HWY_ALIGN int32_t bits[64 + hn::MaxLanes(DI())] = {};
  void Draw(const RngSlice& rng, int64_t i0, size_t count) {
    DropoutBits(rng, i0, count, bits);
  }
  // Keep mask for the lanes at offset `off` of the word (p > 0).
  hn::Mask<DF> Keep(DF d, size_t off, int32_t threshold) const {
    const DI di;
    return hn::RebindMask(
        d, hn::Gt(hn::LoadU(di, bits + off), hn::Set(di, threshold - 1)));
  }
};

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
    WordBits draws;
    ForEachMaskWord(
        N, mask + m * MaskWordsPerRow(N),
        [&](int64_t n, size_t v, size_t off, uint64_t* word) {
          if (off == 0) {
            draws.Draw(rng, m * N + n, size_t(std::min<int64_t>(64, N - n)));
          }
          const auto keep = draws.Keep(d, off, threshold);
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
    WordBits draws;
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
            if (off == 0) {
              draws.Draw(a.rng, m * N + n,
                         size_t(std::min<int64_t>(64, N - n)));
            }
            const auto keep = draws.Keep(d, off, threshold);
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
