// Per-target bodies of the block passes (see block_kernels.h).
#if defined(BALLAST_OPS_BLOCK_BLOCK_KERNELS_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef BALLAST_OPS_BLOCK_BLOCK_KERNELS_INL_H_
#undef BALLAST_OPS_BLOCK_BLOCK_KERNELS_INL_H_
#else
#define BALLAST_OPS_BLOCK_BLOCK_KERNELS_INL_H_
#endif

#include <algorithm>
#include <cstring>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "ops/block/block_kernels.h"
#include "ops/block/block_split.h"
#include "ops/simd-inl.h"
#include "ops/tasks.h"
#include "ops/work_ranges.h"

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
  ParallelFor(M, threads, [&](int64_t m) {
    const DF d;
    const size_t L = hn::Lanes(d);
    float* row = y + m * N;
    for (int64_t n = 0; n < N; n += int64_t(L)) {
      const size_t v = Valid(n, N, L);
      StorePartial(
          d, hn::Add(LoadPartial(d, row + n, v), LoadPartial(d, bias + n, v)),
          row + n, v);
    }
  });
}

void ScaleShiftImpl(float* y, int64_t M, int64_t N, const float* scale,
                    const float* shift, int threads) {
  ParallelFor(M, threads, [&](int64_t m) {
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
  });
}

// Calls body(i, valid) for every vector of [0, n_total), in chunks of 1024
// elements spread over the threads.
template <class Body>
HWY_INLINE void ForEachVector(int64_t n_total, int threads, Body body) {
  const int64_t chunks = (n_total + 1023) / 1024;
  ParallelFor(chunks, threads, [&](int64_t c) {
    const int64_t L = int64_t(hn::Lanes(DF()));
    const int64_t end = std::min(n_total, (c + 1) * 1024);
    for (int64_t i = c * 1024; i < end; i += L) {
      body(i, Valid(i, end, size_t(L)));
    }
  });
}

void ReluImpl(const float* x, float* y, int64_t n_total, int threads) {
  ForEachVector(n_total, threads, [=](int64_t i, size_t v) {
    const DF d;
    StorePartial(d, Relu(d, LoadPartial(d, x + i, v)), y + i, v);
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

#if HWY_TARGET != HWY_SCALAR
// One vector of Philox4x32-10 blocks, one block per 64-bit lane, counters
// ctr. Each word is kept in the low half of its lane; the high halves carry
// garbage that MulEven ignores, so the rounds need no masking. Returns the
// draws (word >> 8) of words 0 | 1 << 32 and 2 | 3 << 32.
template <class D64, class V = hn::Vec<D64>>
HWY_INLINE void PhiloxVector(D64 d64, V ctr, const uint64_t* HWY_RESTRICT keys,
                             V& w01, V& w23) {
  const hn::Repartition<uint32_t, D64> d32;
  const auto m0 = hn::BitCast(d32, hn::Set(d64, uint64_t{0xD2511F53u}));
  const auto m1 = hn::BitCast(d32, hn::Set(d64, uint64_t{0xCD9E8D57u}));
  V c0 = ctr, c1 = hn::ShiftRight<32>(ctr);
  V c2 = hn::Zero(d64), c3 = c2;
  // hi(p) into the low half by swapping the 32-bit halves of each lane: a
  // shuffle, where a 64-bit shift would compete with the multiplies for
  // AVX-512's one port that does both.
  const auto high_half = [&](V p) {
    return hn::BitCast(d64, hn::Shuffle2301(hn::BitCast(d32, p)));
  };
  for (int round = 0; round < 10; ++round) {
    const V p0 = hn::MulEven(hn::BitCast(d32, c0), m0);
    const V p1 = hn::MulEven(hn::BitCast(d32, c2), m1);
    c0 = hn::Xor(hn::Xor(high_half(p1), c1), hn::Set(d64, keys[2 * round]));
    c1 = p1;
    c2 = hn::Xor(hn::Xor(high_half(p0), c3), hn::Set(d64, keys[2 * round + 1]));
    c3 = p0;
  }
  // Low half: word >> 8, i.e. bits 8..31 at 0..23; high half: the next
  // word's bits 8..31 at 32..55.
  const V lo = hn::Set(d64, uint64_t{0x0000000000FFFFFFu});
  const V hi = hn::Set(d64, uint64_t{0x00FFFFFF00000000u});
  w01 = hn::Or(hn::And(hn::ShiftRight<8>(c0), lo),
               hn::And(hn::ShiftLeft<24>(c1), hi));
  w23 = hn::Or(hn::And(hn::ShiftRight<8>(c2), lo),
               hn::And(hn::ShiftLeft<24>(c3), hi));
}

#endif  // HWY_TARGET != HWY_SCALAR

// Dropout draws (word >> 8, 24 bits) of Philox4x32-10 (see Philox4x32 in
// runtime/rng.cc, its scalar twin) for `blocks` consecutive counters from
// `counter`. The draws of block b land in out[2b] (words 0 | 1 << 32) and
// out[2b + 1] (words 2 | 3 << 32), so that read as int32 they are in
// element order. Stores whole vectors: `out` holds 2·blocks rounded up to
// 2·lanes. Two vectors of blocks go through the rounds side by side, so that
// one's multiplies overlap the other's latency.
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
  const size_t L = hn::Lanes(d64);
  uint64_t keys[20];
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  for (int round = 0; round < 10; ++round) {
    keys[2 * round] = k0, keys[2 * round + 1] = k1;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  // Iota once: built per call it goes through memory (8 scalar stores and
  // a vector load that the store buffer cannot forward).
  const auto iota = hn::Iota(d64, 0);
  const auto counters = [&](uint64_t first) {
    return hn::Add(iota, hn::Set(d64, first));
  };
  size_t b0 = 0;
  for (; b0 + 2 * L <= blocks; b0 += 2 * L) {
    hn::Vec<D64> a01, a23, b01, b23;
    PhiloxVector(d64, counters(counter + b0), keys, a01, a23);
    PhiloxVector(d64, counters(counter + b0 + L), keys, b01, b23);
    hn::StoreInterleaved2(a01, a23, d64, out + 2 * b0);
    hn::StoreInterleaved2(b01, b23, d64, out + 2 * (b0 + L));
  }
  for (; b0 < blocks; b0 += L) {
    hn::Vec<D64> a01, a23;
    PhiloxVector(d64, counters(counter + b0), keys, a01, a23);
    hn::StoreInterleaved2(a01, a23, d64, out + 2 * b0);
  }
#endif
}

// Columns a pass draws for at once: a row of the book's 256-wide layers.
constexpr size_t kDrawChunk = 256;

// Dropout draws of elements [i0, i0 + count), count <= kDrawChunk, as int32
// (read through Highway's loads, which copy bytes): element i is word i % 4
// of block rng.first_block + i / 4, shifted right by 8.
struct ChunkDraws {
  using D64 = hn::ScalableTag<uint64_t>;
  // PhiloxDraws stores whole vectors of blocks: up to kDrawChunk / 4 + 1
  // blocks, rounded up to a vector, two words each.
  static constexpr size_t kWords =
      2 * (kDrawChunk / 4 + 1 + hn::MaxLanes(D64()));
  HWY_ALIGN uint64_t raw[kWords] = {};

  void Draw(const RngSlice& rng, int64_t i0, size_t count) {
    const uint64_t first = uint64_t(i0) / 4;
    const size_t skip = size_t(uint64_t(i0) % 4);
    PhiloxDraws(rng.seed, rng.first_block + first, (skip + count + 3) / 4, raw);
    // Not counter-aligned (N % 4 != 0): move the chunk's first draw to the
    // front.
    if (skip != 0) {
      std::memmove(raw, reinterpret_cast<const char*>(raw) + 4 * skip,
                   count * sizeof(int32_t));
    }
  }
  const int32_t* bits() const { return reinterpret_cast<const int32_t*>(raw); }
  // Keep mask for the lanes at offset `off` of the chunk (p > 0).
  hn::Mask<DF> Keep(DF d, size_t off, int32_t threshold) const {
    const DI di;
    return hn::RebindMask(
        d, hn::Gt(hn::LoadU(di, bits() + off), hn::Set(di, threshold - 1)));
  }
};

// Packs a mask's `valid` lanes into bits [offset, offset + valid) of *word.
// Reads back only the bytes StoreMaskBits wrote: a wider load that spans
// them and an older store cannot be forwarded from the store buffer and
// stalls (it cost more than the rest of the forward pass on AVX-512).
HWY_INLINE void AppendMaskBits(DF d, hn::Mask<DF> m, size_t valid,
                               size_t offset, uint64_t* word) {
  uint8_t bytes[8 + (hn::MaxLanes(d) + 7) / 8];
  const size_t written = hn::StoreMaskBits(d, m, bytes);
  uint64_t v = 0;
  std::memcpy(&v, bytes, std::min<size_t>(written, sizeof(v)));
  if (valid < 64) v &= (uint64_t{1} << valid) - 1;
  *word |= v << offset;
}

// Walks columns [n0, n1) of row m (n0 a multiple of 64) in words of 64 (≥
// one vector each, since a vector has at most 64 float lanes), calling
// body(n, valid, word_offset, &word) for each vector and storing each word
// it fills into the mask of M rows (see MaskWord).
template <class Body>
HWY_INLINE void ForEachMaskWord(int64_t n0, int64_t n1, uint64_t* mask,
                                int64_t M, int64_t m, Body body) {
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  for (int64_t w0 = n0; w0 < n1; w0 += 64) {
    uint64_t word = 0;
    const int64_t wend = std::min(n1, w0 + 64);
    for (int64_t n = w0; n < wend; n += L) {
      body(n, Valid(n, wend, size_t(L)), size_t(n - w0), &word);
    }
    mask[MaskWord(M, m, w0)] = word;
  }
}

// Calls body(m, n0, n1, draws) for each chunk of ≤ kDrawChunk columns of
// the thread's share of [M, N] (see BlockSplit), with the chunk's dropout
// draws in `draws` when `dropout`.
template <class Body>
HWY_INLINE void ForEachDrawChunk(const BlockSplit& s, int64_t N, bool dropout,
                                 const RngSlice& rng, Body body) {
  ChunkDraws draws;
  for (int64_t m = s.m_begin; m < s.m_end; ++m) {
    for (int64_t n0 = s.n_begin; n0 < s.n_end; n0 += int64_t(kDrawChunk)) {
      const int64_t n1 = std::min(s.n_end, n0 + int64_t(kDrawChunk));
      if (dropout) draws.Draw(rng, m * N + n0, size_t(n1 - n0));
      body(m, n0, n1, draws);
    }
  }
}

void DropoutImpl(float* y, int64_t M, int64_t N, double p, const RngSlice& rng,
                 uint64_t* mask, int threads) {
  const int32_t threshold = int32_t(DropoutThreshold(p));
  const float scale = p < 1.0 ? float(1.0 / (1.0 - p)) : 0.0f;
  ParallelRun(threads, [&](int t, int T) {
    const DF d;
    const BlockSplit s = BlockSplit::Of(M, N, t, T);
    ForEachDrawChunk(
        s, N, true, rng,
        [&](int64_t m, int64_t n0, int64_t n1, const ChunkDraws& draws) {
          float* row = y + m * N;
          ForEachMaskWord(
              n0, n1, mask, M, m,
              [&](int64_t n, size_t v, size_t off, uint64_t* word) {
                const auto keep = draws.Keep(d, size_t(n - n0), threshold);
                const auto r = hn::IfThenElseZero(
                    keep,
                    hn::Mul(LoadPartial(d, row + n, v), hn::Set(d, scale)));
                StorePartial(d, r, row + n, v);
                AppendMaskBits(d, keep, v, off, word);
              });
        });
  });
}

// The mask bits of a vector's `valid` lanes, in bits [0, valid).
HWY_INLINE uint64_t MaskBits(DF d, hn::Mask<DF> m, size_t valid) {
  uint64_t v = 0;
  AppendMaskBits(d, m, valid, 0, &v);
  return v;
}

// What one thread's forward pass reads and writes, as plain locals: the
// inner loop keeps them in registers (closures over references made it
// reload each from the stack for every vector).
struct ForwardRow {
  const float* HWY_RESTRICT z;  // row m
  float* HWY_RESTRICT out;      // row m
  const float* HWY_RESTRICT mean;
  const float* HWY_RESTRICT rstd;
  const float* HWY_RESTRICT gamma;    // nullptr: 1
  const float* HWY_RESTRICT beta;     // nullptr: 0
  const int32_t* HWY_RESTRICT draws;  // of column n0; nullptr: no dropout
  int32_t threshold;
  float scale;
};

// Columns [n0, n1) of row m (n0 a multiple of 64): out and the pass mask.
HWY_INLINE void ForwardChunk(const ForwardRow& r, int64_t n0, int64_t n1,
                             uint64_t* HWY_RESTRICT mask, int64_t M,
                             int64_t m) {
  const DF d;
  const DI di;
  const int64_t L = int64_t(hn::Lanes(d));
  const float* HWY_RESTRICT z = r.z;
  float* HWY_RESTRICT out = r.out;
  const float* HWY_RESTRICT mean = r.mean;
  const float* HWY_RESTRICT rstd = r.rstd;
  const float* HWY_RESTRICT gamma = r.gamma;
  const float* HWY_RESTRICT beta = r.beta;
  const int32_t* HWY_RESTRICT draws = r.draws;
  const auto vscale = hn::Set(d, r.scale);
  const auto below = hn::Set(di, r.threshold - 1);
  for (int64_t w0 = n0; w0 < n1; w0 += 64) {
    uint64_t word = 0;
    const int64_t wend = std::min(n1, w0 + 64);
    for (int64_t n = w0; n < wend; n += L) {
      const size_t v = Valid(n, wend, size_t(L));
      // bn = γ·(z − μ)·rstd + β
      const auto rs = LoadPartial(d, rstd + n, v);
      const auto gr = gamma ? hn::Mul(LoadPartial(d, gamma + n, v), rs) : rs;
      const auto xc =
          hn::Sub(LoadPartial(d, z + n, v), LoadPartial(d, mean + n, v));
      const auto b = beta ? LoadPartial(d, beta + n, v) : hn::Zero(d);
      const auto bn = hn::MulAdd(xc, gr, b);
      auto pass = hn::Gt(bn, hn::Zero(d));
      auto y = Relu(d, bn);
      if (draws) {
        const auto keep =
            hn::RebindMask(d, hn::Gt(hn::LoadU(di, draws + (n - n0)), below));
        pass = hn::And(pass, keep);
        y = hn::IfThenElseZero(keep, hn::Mul(y, vscale));
      }
      StorePartial(d, y, out + n, v);
      word |= MaskBits(d, pass, v) << (n - w0);
    }
    mask[MaskWord(M, m, w0)] = word;
  }
}

// With more than one thread, the units of BlockUnits are shared through
// `work`; the result does not depend on which thread runs which.
// The forward pass over one share of [M, N].
void ForwardShare(const BnForwardArgs& a, int64_t M, int64_t N,
                  const BlockSplit& s) {
  const bool dropout = a.p > 0.0;
  const int32_t threshold = int32_t(DropoutThreshold(a.p));
  const float scale = a.p < 1.0 ? float(1.0 / (1.0 - a.p)) : 0.0f;
  ForEachDrawChunk(
      s, N, dropout, a.rng,
      [&](int64_t m, int64_t n0, int64_t n1, const ChunkDraws& chunk) {
        const ForwardRow r{a.z + m * N,
                           a.out + m * N,
                           a.mean,
                           a.rstd,
                           a.gamma,
                           a.beta,
                           dropout ? chunk.bits() : nullptr,
                           threshold,
                           scale};
        ForwardChunk(r, n0, n1, a.pass_mask, M, m);
      });
}

void BnReluDropoutForwardColumnsImpl(const BnForwardArgs& a, int64_t M,
                                     int64_t N, int64_t n0, int64_t n1) {
  BlockSplit s;
  s.m_begin = 0, s.m_end = M, s.n_begin = n0, s.n_end = n1;
  ForwardShare(a, M, N, s);
}

void BnReluDropoutForwardImpl(const BnForwardArgs& a, int64_t M, int64_t N,
                              int threads, WorkRanges* work) {
  const auto run = [&](const BlockSplit& s) { ForwardShare(a, M, N, s); };
  const BlockUnits units = BlockUnits::Of(M, N, threads);
  threads = int(std::min<int64_t>(threads, units.count()));
  if (threads <= 1) {
    run(BlockSplit::Of(M, N, 0, 1));
    return;
  }
  work->Reset(threads, units.count());
  ParallelRun(threads, [&](int t, int) {
    int64_t u = 0;
    while (work->Next(t, &u)) run(units.Unit(u));
  });
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
  ParallelFor(M, threads, [&](int64_t m) {
    const DF d;
    const int64_t L = int64_t(hn::Lanes(d));
    for (int64_t n = 0; n < N; n += L) {
      const size_t v = Valid(n, N, size_t(L));
      const auto keep =
          MaskFromWord(d, mask[MaskWord(M, m, n)], size_t(n % 64));
      const auto g = hn::IfThenElseZero(
          keep, hn::Mul(LoadPartial(d, dy + m * N + n, v), hn::Set(d, scale)));
      StorePartial(d, g, dx + m * N + n, v);
    }
  });
}

// BatchNorm backward over [M, N]. With a pass mask (the fused path) the
// incoming gradient is g = d_out·mask/(1 − p); without one (the unfused path,
// after separate dropout and ReLU backward passes) g = d_out. Pass 1 sums g
// and g·x̂ per column, pass 2 writes dz and sums it for the bias.
//
// Both passes walk a strip of two vectors of columns down all the rows, the
// sums in registers, and pass 2 follows pass 1 strip by strip: a strip's
// rows are still in L1, and no sum goes through memory. Each column is
// summed over its rows in row order, whichever thread runs its strip:
// deterministic, and the same bits on any thread count.
//
// What the backward passes read, copied into the thread's own locals by
// the helpers below (see ForwardRow).
struct BackwardArgs {
  const float* z;
  const float* d_out;
  const float* mean;
  const float* rstd;
  const float* gamma;    // nullptr: 1
  const uint64_t* mask;  // nullptr: d_out is the BN gradient
  float scale;           // 1/(1 − p) with a mask
  int64_t M, N;
};

// One vector of a strip: columns [n, n + valid) (valid may be 0: the lane
// then reads and writes nothing) and the pass-mask words of its columns, one
// per row (word-major, see MaskWord).
struct StripLane {
  int64_t n;
  size_t valid;
  const uint64_t* words;  // nullptr without a mask
  size_t shift;           // the vector's first bit in its word
};

HWY_INLINE StripLane LaneOf(const BackwardArgs& a, int64_t n, int64_t c1) {
  const DF d;
  const size_t v = n < c1 ? Valid(n, c1, hn::Lanes(d)) : 0;
  // An empty lane (past c1) reads no mask.
  return {n, v, a.mask && v > 0 ? a.mask + MaskWord(a.M, 0, n) : nullptr,
          size_t(n % 64)};
}

// The keep mask of row m: the word's bits [shift, shift + lanes). A vector
// of at least 8 lanes starts on a byte of the word (lanes divide 64), and
// its bits load straight from memory; narrower ones go through a copy.
HWY_INLINE hn::Mask<DF> Keep(DF d, const StripLane& s, int64_t m) {
  if constexpr (hn::MaxLanes(d) >= 8 && HWY_TARGET != HWY_SCALAR) {
    if (hn::Lanes(d) >= 8) {
      return hn::LoadMaskBits(
          d, reinterpret_cast<const uint8_t*>(s.words + m) + s.shift / 8);
    }
  }
  return MaskFromWord(d, s.words[m], s.shift);
}

// g = d_out·mask·scale at row m of a strip lane.
HWY_INLINE hn::Vec<DF> Incoming(DF d, const float* HWY_RESTRICT dyr,
                                const StripLane& s, int64_t m,
                                hn::Vec<DF> vscale) {
  const auto dy = hn::Mul(LoadPartial(d, dyr + s.n, s.valid), vscale);
  if (s.words == nullptr) return dy;
  return hn::IfThenElseZero(Keep(d, s, m), dy);
}

// Rows ahead that pass 1 prefetches.
constexpr int64_t kStripPrefetchRows = 8;

// Pass 1 over rows [m0, m1) of the strip (s0, s1): Σ g into sum_g and
// Σ g·x̂ into sum_gx, at the strip's columns.
// `a` by value: a local whose address never escapes, so the loop keeps its
// fields in registers.
HWY_INLINE void StripSums(const BackwardArgs a, int64_t m0, int64_t m1,
                          const StripLane s0, const StripLane s1,
                          float* HWY_RESTRICT sum_g,
                          float* HWY_RESTRICT sum_gx) {
  const DF d;
  const auto vscale = hn::Set(d, a.scale);
  const auto mean0 = LoadPartial(d, a.mean + s0.n, s0.valid);
  const auto mean1 = LoadPartial(d, a.mean + s1.n, s1.valid);
  const auto rs0 = LoadPartial(d, a.rstd + s0.n, s0.valid);
  const auto rs1 = LoadPartial(d, a.rstd + s1.n, s1.valid);
  auto g0 = hn::Zero(d), g1 = hn::Zero(d);
  auto gx0 = hn::Zero(d), gx1 = hn::Zero(d);
  for (int64_t m = m0; m < m1; ++m) {
    const float* HWY_RESTRICT dyr = a.d_out + m * a.N;
    const float* HWY_RESTRICT zr = a.z + m * a.N;
    // z was written by the forward pass and is usually back in L3 by now;
    // the stride prefetcher alone leaves the first pass over a strip
    // waiting on it (block 1's pass in the trainer: 8% faster on one
    // thread, 10% on two, medians of 8 paired runs).
    if (m + kStripPrefetchRows < m1) {
      const int64_t ahead = kStripPrefetchRows * a.N;
      hwy::Prefetch(zr + ahead + s0.n);
      hwy::Prefetch(zr + ahead + s1.n);
      hwy::Prefetch(dyr + ahead + s0.n);
      hwy::Prefetch(dyr + ahead + s1.n);
    }
    const auto i0 = Incoming(d, dyr, s0, m, vscale);
    const auto i1 = Incoming(d, dyr, s1, m, vscale);
    const auto x0 =
        hn::Mul(hn::Sub(LoadPartial(d, zr + s0.n, s0.valid), mean0), rs0);
    const auto x1 =
        hn::Mul(hn::Sub(LoadPartial(d, zr + s1.n, s1.valid), mean1), rs1);
    g0 = hn::Add(g0, i0);
    g1 = hn::Add(g1, i1);
    gx0 = hn::MulAdd(i0, x0, gx0);
    gx1 = hn::MulAdd(i1, x1, gx1);
  }
  StorePartial(d, g0, sum_g + s0.n, s0.valid);
  StorePartial(d, g1, sum_g + s1.n, s1.valid);
  StorePartial(d, gx0, sum_gx + s0.n, s0.valid);
  StorePartial(d, gx1, sum_gx + s1.n, s1.valid);
}

// Where StripDz stores one vector of dz: row m at out + m·ld.
struct DzOut {
  float* out;  // nullptr: not stored
  int64_t ld;
};

// The vector at column n of dz in a's row-major and panel outputs.
HWY_INLINE void DzOutsOf(const BnBackwardArgs& a, int64_t M, int64_t N,
                         const StripLane& s, DzOut* rows, DzOut* panels) {
  const int64_t n = s.n;
  *rows = {a.dz && s.valid ? a.dz + n : nullptr, N};
  *panels = {nullptr, 0};
  if (a.dz_panels != nullptr && s.valid) {
    const int64_t w = a.panel_width;
    *panels = {a.dz_panels + n / w * M * w + n % w, w};
  }
}

// Pass 2 over rows [m0, m1) of the strip: dz = γ·rstd·(g − dβ/M − x̂·dγ/M)
// into its row-major (r0, r1) and panel (p0, p1) outputs, each vector's
// where given, and Σ dz into sum_dz, at the strip's columns.
HWY_INLINE void StripDz(const BackwardArgs a, int64_t m0, int64_t m1,
                        const StripLane s0, const StripLane s1,
                        const float* HWY_RESTRICT dbeta,
                        const float* HWY_RESTRICT dgamma, const DzOut r0,
                        const DzOut r1, const DzOut p0, const DzOut p1,
                        float* HWY_RESTRICT sum_dz) {
  const DF d;
  const auto vscale = hn::Set(d, a.scale);
  const auto inv_m = hn::Set(d, 1.0f / float(a.M));
  const auto mean0 = LoadPartial(d, a.mean + s0.n, s0.valid);
  const auto mean1 = LoadPartial(d, a.mean + s1.n, s1.valid);
  const auto rs0 = LoadPartial(d, a.rstd + s0.n, s0.valid);
  const auto rs1 = LoadPartial(d, a.rstd + s1.n, s1.valid);
  // γ·rstd, or rstd without γ.
  const auto k0 =
      a.gamma ? hn::Mul(LoadPartial(d, a.gamma + s0.n, s0.valid), rs0) : rs0;
  const auto k1 =
      a.gamma ? hn::Mul(LoadPartial(d, a.gamma + s1.n, s1.valid), rs1) : rs1;
  const auto mg0 = hn::Mul(LoadPartial(d, dbeta + s0.n, s0.valid), inv_m);
  const auto mg1 = hn::Mul(LoadPartial(d, dbeta + s1.n, s1.valid), inv_m);
  const auto mgx0 = hn::Mul(LoadPartial(d, dgamma + s0.n, s0.valid), inv_m);
  const auto mgx1 = hn::Mul(LoadPartial(d, dgamma + s1.n, s1.valid), inv_m);
  auto acc0 = hn::Zero(d), acc1 = hn::Zero(d);
  for (int64_t m = m0; m < m1; ++m) {
    const float* HWY_RESTRICT dyr = a.d_out + m * a.N;
    const float* HWY_RESTRICT zr = a.z + m * a.N;
    const auto x0 =
        hn::Mul(hn::Sub(LoadPartial(d, zr + s0.n, s0.valid), mean0), rs0);
    const auto x1 =
        hn::Mul(hn::Sub(LoadPartial(d, zr + s1.n, s1.valid), mean1), rs1);
    const auto dz0 =
        hn::Mul(k0, hn::Sub(hn::Sub(Incoming(d, dyr, s0, m, vscale), mg0),
                            hn::Mul(x0, mgx0)));
    const auto dz1 =
        hn::Mul(k1, hn::Sub(hn::Sub(Incoming(d, dyr, s1, m, vscale), mg1),
                            hn::Mul(x1, mgx1)));
    if (r0.out) StorePartial(d, dz0, r0.out + m * r0.ld, s0.valid);
    if (r1.out) StorePartial(d, dz1, r1.out + m * r1.ld, s1.valid);
    if (p0.out) StorePartial(d, dz0, p0.out + m * p0.ld, s0.valid);
    if (p1.out) StorePartial(d, dz1, p1.out + m * p1.ld, s1.valid);
    acc0 = hn::Add(acc0, dz0);
    acc1 = hn::Add(acc1, dz1);
  }
  StorePartial(d, acc0, sum_dz + s0.n, s0.valid);
  StorePartial(d, acc1, sum_dz + s1.n, s1.valid);
}

// The strips (two vectors of columns each) are the units, shared among the
// threads through `work`: each thread starts on its own columns and one that
// runs out takes strips from another. `scratch`: 64-byte aligned,
// PartialStride(N) floats per thread, for Σ dz when there is no bias
// gradient to put it in.
void BnReluDropoutBackwardImpl(const BnBackwardArgs& a, int64_t M, int64_t N,
                               int threads, float* scratch, WorkRanges* work) {
  const float scale = a.pass_mask == nullptr ? 1.0f
                      : a.p < 1.0            ? float(1.0 / (1.0 - a.p))
                                             : 0.0f;
  const BackwardArgs b{a.z,         a.d_out, a.mean, a.rstd, a.gamma,
                       a.pass_mask, scale,   M,      N};
  const int64_t L = int64_t(hn::Lanes(DF()));
  const int64_t strips = (N + 2 * L - 1) / (2 * L);
  const auto strip = [&](int64_t u, float* dbias) {
    const int64_t n = u * 2 * L;
    const StripLane s0 = LaneOf(b, n, N), s1 = LaneOf(b, n + L, N);
    StripSums(b, 0, M, s0, s1, a.dbeta, a.dgamma);
    DzOut r0, r1, p0, p1;
    DzOutsOf(a, M, N, s0, &r0, &p0);
    DzOutsOf(a, M, N, s1, &r1, &p1);
    StripDz(b, 0, M, s0, s1, a.dbeta, a.dgamma, r0, r1, p0, p1, dbias);
  };
  threads = int(std::min<int64_t>(threads, strips));
  if (threads <= 1) {
    for (int64_t u = 0; u < strips; ++u) strip(u, a.dbias ? a.dbias : scratch);
    return;
  }
  work->Reset(threads, strips);
  ParallelRun(threads, [&](int t, int) {
    float* dbias = a.dbias ? a.dbias : scratch + PartialStride(N) * t;
    int64_t u = 0;
    while (work->Next(t, &u)) strip(u, dbias);
  });
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#endif  // BALLAST_OPS_BLOCK_BLOCK_KERNELS_INL_H_
