// Per-target GEMM micro-kernel and driver; included once per Highway target
// by gemm.cc through foreach_target.h. See gemm.h for the contract.
//
// Register tile: MR rows × NV vectors. The accumulators are named variables,
// not arrays, so the code also compiles for SVE's sizeless vectors; the
// `if constexpr` guards let the compiler drop those a smaller tile does not
// use.

// Per-target include guard (the Highway idiom for -inl.h files).
#if defined(BALLAST_OPS_LINEAR_GEMM_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BALLAST_OPS_LINEAR_GEMM_INL_H_
#undef BALLAST_OPS_LINEAR_GEMM_INL_H_
#else
#define BALLAST_OPS_LINEAR_GEMM_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <vector>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "ops/linear/gemm.h"
#include "ops/linear/gemm_config-inl.h"
#include "ops/linear/gemm_plan.h"
#include "ops/linear/pack_b-inl.h"
#include "ops/linear/packed_a.h"
#include "ops/optim/adam-inl.h"
#include "ops/optim/sgd-inl.h"
#include "ops/simd-inl.h"
#include "ops/tasks.h"
#include "ops/work_ranges.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Everything a tile needs that is fixed for one call.
struct TileCtx {
  const float* a;
  int64_t a_rs, a_cs;
  float* y;
  int64_t ldy, n;
  int64_t y_panel_stride;  // > 0: Y in the panel layout
  BPanels b;
  EpilogueArgs ep;
  GemmStatsChunk* stats;         // kBiasStats: this unit's sums
  const SparseRows* a_nonzeros;  // see GemmArgs
  // With a_next_step > 0, a full tile prefetches a_next + k·a_next_step at
  // step k: the rows of A the next tile reads (see GemmUnit).
  const float* a_next = nullptr;
  int64_t a_next_step = 0;
  // A packed by tiles (kPackA): this thread's copy; full tiles read it.
  PackedA* a_packed = nullptr;
};

// Epilogue for one output vector; `col` is the first column of the vector.
template <Epilogue E>
HWY_INLINE VF ApplyEpilogue(DF d, VF acc, const TileCtx& c, int64_t col,
                            size_t valid) {
  if constexpr (E == Epilogue::kBias || E == Epilogue::kBiasRelu ||
                E == Epilogue::kBiasLeakyRelu || E == Epilogue::kBiasStats) {
    if (c.ep.bias) acc = hn::Add(acc, LoadPartial(d, c.ep.bias + col, valid));
  }
  if constexpr (E == Epilogue::kScaleShift || E == Epilogue::kScaleShiftRelu) {
    const VF shift =
        c.ep.shift ? LoadPartial(d, c.ep.shift + col, valid) : hn::Zero(d);
    acc = hn::MulAdd(acc, LoadPartial(d, c.ep.scale + col, valid), shift);
  }
  if constexpr (E == Epilogue::kBiasRelu || E == Epilogue::kScaleShiftRelu) {
    acc = Relu(d, acc);
  }
  if constexpr (E == Epilogue::kBiasLeakyRelu) {
    acc = LeakyRelu(d, acc, c.ep.slope);
  }
  return acc;
}

// Whether the epilogue updates a weight from its gradient (kSgd, kAdam).
constexpr bool UpdatesWeight(Epilogue e) {
  return e == Epilogue::kSgd || e == Epilogue::kAdam;
}

// kSgd, kAdam: updates the weight (and the optimizer's state) where gradient
// vector g was just stored at y, from g still in a register.
template <Epilogue E>
HWY_INLINE void UpdateAfterStore(DF d, const TileCtx& c, const float* y, VF g,
                                 size_t valid) {
  if (valid == 0) return;
  const ptrdiff_t off = y - c.y;
  if constexpr (E == Epilogue::kSgd) {
    SgdStep(d, *c.ep.sgd, g, c.ep.update_w + off,
            c.ep.sgd_buf ? c.ep.sgd_buf + off : nullptr, valid);
  } else if constexpr (E == Epilogue::kAdam) {
    AdamStep(d, *c.ep.adam, g, c.ep.update_w + off, c.ep.adam_m + off,
             c.ep.adam_v + off, valid);
  }
}

// kSgd, kAdam: fetches the weight and state rows that the epilogue of a tile
// updates (MR rows of `cols` floats from y, as Y lies), so that they arrive
// while the tile's K loop runs. In the trainer the first layer's weight and
// momentum (800 KB each) come from L3 and each tile's update waited on them:
// its gradient GEMM took 0.90-0.94 of the time with L2 flushed before each
// call, and training steps 0.988-0.989 of the time on one thread, 0.996-0.997
// on two (AVX2, 600 steps alternated with the library before, 3 and 2 runs).
template <int MR>
HWY_INLINE void PrefetchUpdateRows(const TileCtx& c, const float* y,
                                   int64_t cols) {
  constexpr int64_t kLineFloats = 64 / int64_t(sizeof(float));
  const ptrdiff_t off = y - c.y;
  float* const state[3] = {c.ep.sgd_buf, c.ep.adam_m, c.ep.adam_v};
  for (int64_t r = 0; r < MR; ++r) {
    for (int64_t j = 0; j < cols; j += kLineFloats) {
      const int64_t at = off + r * c.ldy + j;
      hwy::Prefetch(c.ep.update_w + at);
      for (float* s : state) {
        if (s) hwy::Prefetch(s + at);
      }
    }
  }
}

// Adds the shifted sums of vector j of a tile (columns n0 + j on, `valid` of
// them; MR rows, y0 for row 0, ...) to the unit's chunk (indexed from column
// n0): per column, Σ(y − y₀) and Σ(y − y₀)² over the rows in float, then
// into double. y₀ is the chunk's first row, set by its first tile, so the
// float terms are of the size of the spread, not of the mean. The
// statistics epilogue passes the tile's values still in registers (not
// reloading the rows just stored: the forward GEMMs took 0.974-0.996 of the
// time); AccumulateStats reloads them for a GEMM over A's nonzeros.
template <int MR>
HWY_INLINE void AccumulateStatsFromRegisters(DF d, GemmStatsChunk& s, int64_t j,
                                             size_t valid, bool first_tile,
                                             VF y0, VF y1, VF y2, VF y3, VF y4,
                                             VF y5) {
  HWY_ALIGN float s1[hn::MaxLanes(d)];
  HWY_ALIGN float s2[hn::MaxLanes(d)];
  if (first_tile) {
    hn::Store(y0, d, s1);
    for (size_t i = 0; i < valid; ++i) {
      s.shift_f[j + int64_t(i)] = s1[i];
      s.shift[j + int64_t(i)] = s1[i];
    }
  }
  const VF shift = LoadPartial(d, s.shift_f + j, valid);
  VF sum = hn::Zero(d), sumsq = hn::Zero(d);
  const auto add_row = [&](VF y) HWY_ATTR {
    const VF dv = hn::Sub(y, shift);
    sum = hn::Add(sum, dv);
    sumsq = hn::MulAdd(dv, dv, sumsq);
  };
  add_row(y0);
  if constexpr (MR > 1) add_row(y1);
  if constexpr (MR > 2) add_row(y2);
  if constexpr (MR > 3) add_row(y3);
  if constexpr (MR > 4) add_row(y4);
  if constexpr (MR > 5) add_row(y5);
  hn::Store(sum, d, s1);
  hn::Store(sumsq, d, s2);
  double* HWY_RESTRICT out_sum = s.sum + j;
  double* HWY_RESTRICT out_sumsq = s.sumsq + j;
  for (size_t i = 0; i < valid; ++i) {
    out_sum[i] = first_tile ? double(s1[i]) : out_sum[i] + s1[i];
    out_sumsq[i] = first_tile ? double(s2[i]) : out_sumsq[i] + s2[i];
  }
}

// AccumulateStatsFromRegisters over the stored rows [m0, m0 + mr) of a
// tile, columns [n0, n0 + cols).
HWY_NOINLINE void AccumulateStats(const TileCtx& c, int64_t m0, int mr,
                                  int64_t n0, int64_t cols, bool first_tile) {
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  for (int64_t j = 0; j < cols; j += L) {
    const size_t v = size_t(std::min<int64_t>(L, cols - j));
    const float* y = c.y + m0 * c.ldy + n0 + j;
    // Named rows, not an array of vectors (SVE's are sizeless).
    const auto row = [&](int i) HWY_ATTR {
      return i < mr ? LoadPartial(d, y + i * c.ldy, v) : hn::Zero(d);
    };
    const VF r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4),
             r5 = row(5);
    GemmStatsChunk& s = *c.stats;
#define BALLAST_STATS_ROWS(MR)                                               \
  case MR:                                                                   \
    AccumulateStatsFromRegisters<MR>(d, s, j, v, first_tile, r0, r1, r2, r3, \
                                     r4, r5);                                \
    break;
    static_assert(kGemmMR == 6, "one case per row count of a tile");
    switch (mr) {
      BALLAST_STATS_ROWS(1)
      BALLAST_STATS_ROWS(2)
      BALLAST_STATS_ROWS(3)
      BALLAST_STATS_ROWS(4)
      BALLAST_STATS_ROWS(5)
      BALLAST_STATS_ROWS(6)
      default:
        break;
    }
#undef BALLAST_STATS_ROWS
  }
}

// Row r of a tile, with A(m0 + r, k) = `value`.
#define BALLAST_GEMM_ROW_X(r, value)         \
  if constexpr (MR > r) {                    \
    const VF av = hn::Set(d, value);         \
    c##r##0 = hn::MulAdd(av, b0, c##r##0);   \
    if constexpr (NVA > 1) {                 \
      c##r##1 = hn::MulAdd(av, b1, c##r##1); \
    }                                        \
    if constexpr (NVA == 4) {                \
      c##r##2 = hn::MulAdd(av, b2, c##r##2); \
      c##r##3 = hn::MulAdd(av, b3, c##r##3); \
    }                                        \
  }
// From row pointer a<r> at step k.
#define BALLAST_GEMM_ROW(r) BALLAST_GEMM_ROW_X(r, a##r[k * c.a_cs])
// One step k of a tile whose rows' values are adjacent from a_k (A read
// down its columns, or packed), with B's row k at b_k.
#define BALLAST_GEMM_STEP_T(a_k, b_k) \
  {                                   \
    const float* const ak = (a_k);    \
    const float* const bkk = (b_k);   \
    BALLAST_GEMM_LOAD_B(bkk)          \
    BALLAST_GEMM_ROW_X(0, ak[0])      \
    BALLAST_GEMM_ROW_X(1, ak[1])      \
    BALLAST_GEMM_ROW_X(2, ak[2])      \
    BALLAST_GEMM_ROW_X(3, ak[3])      \
    BALLAST_GEMM_ROW_X(4, ak[4])      \
    BALLAST_GEMM_ROW_X(5, ak[5])      \
  }

#define BALLAST_GEMM_STORE_ROW(r)                                   \
  if constexpr (MR > r) {                                           \
    float* yr = y_panel + (m0 + r) * c.ldy;                         \
    if (!first) {                                                   \
      c##r##0 = hn::Add(c##r##0, LoadPartial(d, yr, v0));           \
      if constexpr (NVA > 1) {                                      \
        c##r##1 = hn::Add(c##r##1, LoadPartial(d, yr + L, v1));     \
      }                                                             \
      if constexpr (NVA == 4) {                                     \
        c##r##2 = hn::Add(c##r##2, LoadPartial(d, yr + 2 * L, v2)); \
        c##r##3 = hn::Add(c##r##3, LoadPartial(d, yr + 3 * L, v3)); \
      }                                                             \
    }                                                               \
    if (last) {                                                     \
      c##r##0 = ApplyEpilogue<E>(d, c##r##0, c, n0, v0);            \
      if constexpr (NVA > 1) {                                      \
        c##r##1 = ApplyEpilogue<E>(d, c##r##1, c, n0 + L, v1);      \
      }                                                             \
      if constexpr (NVA == 4) {                                     \
        c##r##2 = ApplyEpilogue<E>(d, c##r##2, c, n0 + 2 * L, v2);  \
        c##r##3 = ApplyEpilogue<E>(d, c##r##3, c, n0 + 3 * L, v3);  \
      }                                                             \
    }                                                               \
    if (store) {                                                    \
      if (v0) StorePartial(d, c##r##0, yr, v0);                     \
      if constexpr (NVA > 1) {                                      \
        if (v1) StorePartial(d, c##r##1, yr + L, v1);               \
      }                                                             \
      if constexpr (NVA == 4) {                                     \
        if (v2) StorePartial(d, c##r##2, yr + 2 * L, v2);           \
        if (v3) StorePartial(d, c##r##3, yr + 3 * L, v3);           \
      }                                                             \
    }                                                               \
    if constexpr (UpdatesWeight(E)) {                               \
      if (last) {                                                   \
        UpdateAfterStore<E>(d, c, yr, c##r##0, v0);                 \
        if constexpr (NVA > 1) {                                    \
          UpdateAfterStore<E>(d, c, yr + L, c##r##1, v1);           \
        }                                                           \
        if constexpr (NVA == 4) {                                   \
          UpdateAfterStore<E>(d, c, yr + 2 * L, c##r##2, v2);       \
          UpdateAfterStore<E>(d, c, yr + 3 * L, c##r##3, v3);       \
        }                                                           \
      }                                                             \
    }                                                               \
  }

// One MR × NR tile of Y over k in [k0, k0 + kc) of panel p. `first`: no
// earlier K block (start from zero); `last`: apply the epilogue. NVA is the
// number of panel vectors computed: kNV, or 1 for a last panel whose valid
// columns fit one vector (N = 10 would otherwise waste 54 of 64 columns).
template <int MR, Epilogue E, int NVA>
HWY_NOINLINE void Tile(const TileCtx& c, int64_t m0, int64_t p, int64_t k0,
                       int64_t kc, bool first, bool last, bool first_tile) {
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  const int64_t nr = kNV * L;
  const int64_t n0 = p * nr;
  int64_t ldb;
  const float* bp = c.b.Row(p, k0, &ldb);
  const float* a0 = c.a + (m0 + 0) * c.a_rs + k0 * c.a_cs;
  const float* a1 = c.a + (m0 + (MR > 1 ? 1 : 0)) * c.a_rs + k0 * c.a_cs;
  const float* a2 = c.a + (m0 + (MR > 2 ? 2 : 0)) * c.a_rs + k0 * c.a_cs;
  const float* a3 = c.a + (m0 + (MR > 3 ? 3 : 0)) * c.a_rs + k0 * c.a_cs;
  const float* a4 = c.a + (m0 + (MR > 4 ? 4 : 0)) * c.a_rs + k0 * c.a_cs;
  const float* a5 = c.a + (m0 + (MR > 5 ? 5 : 0)) * c.a_rs + k0 * c.a_cs;
  // Valid columns of this panel (0 past N).
  const int64_t cols = std::min<int64_t>(nr, c.n - n0);
  float* y_panel = c.y + (c.y_panel_stride ? p * c.y_panel_stride : n0);
  if constexpr (UpdatesWeight(E)) {
    if (last) PrefetchUpdateRows<MR>(c, y_panel + m0 * c.ldy, cols);
  }
  VF c00 = hn::Zero(d), c01 = c00, c02 = c00, c03 = c00;
  VF c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  VF c20 = c00, c21 = c00, c22 = c00, c23 = c00;
  VF c30 = c00, c31 = c00, c32 = c00, c33 = c00;
  VF c40 = c00, c41 = c00, c42 = c00, c43 = c00;
  VF c50 = c00, c51 = c00, c52 = c00, c53 = c00;
#define BALLAST_GEMM_LOAD_B(bk)    \
  const VF b0 = hn::LoadU(d, bk);  \
  VF b1 = b0, b2 = b0, b3 = b0;    \
  if constexpr (NVA > 1) {         \
    b1 = hn::LoadU(d, bk + L);     \
  }                                \
  if constexpr (NVA == 4) {        \
    b2 = hn::LoadU(d, bk + 2 * L); \
    b3 = hn::LoadU(d, bk + 3 * L); \
  }
  if (MR == kGemmMR && c.a_packed != nullptr) {
    // A packed (see PackedA): the tile's MR values at step k are adjacent,
    // and the next tile's follow this one's. (The loop unrolled over four k
    // left GCC short of registers: accumulators spilled to the stack.)
    const int64_t next = c.a_packed->tile_floats;
    const float* ap = c.a_packed->Tile(m0 / kGemmMR) + k0 * kGemmMR;
    const float* bk = bp;
    // Two k per turn, as below: 0.90-0.97 of the time of one on the GEMMs
    // kPackA quotes, one thread and two (two of twenty cases 1.01-1.02).
    // A turn reads 48 bytes of the tile, so one fetch per turn reaches
    // every line of the next.
    int64_t k = 0;
    for (; k + 2 <= kc; k += 2, ap += 2 * kGemmMR, bk += 2 * ldb) {
      hwy::Prefetch(ap + next);
      BALLAST_GEMM_STEP_T(ap, bk)
      BALLAST_GEMM_STEP_T(ap + kGemmMR, bk + ldb)
    }
    for (; k < kc; ++k, ap += kGemmMR, bk += ldb) {
      hwy::Prefetch(ap + next);
      BALLAST_GEMM_STEP_T(ap, bk)
    }
  } else if (c.a_rs == 1 && MR == kGemmMR) {
    // A read down its columns (Xᵀ of a weight gradient): the tile's MR
    // values at step k are adjacent, so one pointer with constant offsets
    // serves all rows, and the next tile's lines are at constant offsets
    // from it too. Six pointers advancing by a runtime stride left the loop
    // short of registers (strides reloaded from the stack every step) and
    // about 35 instructions for 12 FMAs. The trainer's weight-gradient
    // GEMMs (784 or 256 × 128 × 256) took 0.80-0.87 of the time this way,
    // on one thread and on two (AVX2; calls of the two loops alternated,
    // medians of 400).
    // At each k the tile reads a few floats of another row of X, lines
    // that the next two tiles read again and that no hardware prefetcher
    // follows; after the layers between a batch's forward and its
    // backward, X comes from L3. So the tile fetches the next tile's lines
    // (the first layer's weight gradient in the trainer: 7% faster on one
    // thread, 6% on two, every one of 8 paired runs faster); the next tile
    // may open the next unit, as a thread mostly takes its units in order.
    // The last tiles fetch lines no tile reads: a prefetch never faults,
    // and the loop stays one. The next tile's values at step k are
    // ap[MR, 2·MR): the line of the first is this tile's last value's or
    // starts there, so fetching the line of the last suffices.
    // On 16-column targets the loop takes two k per turn: the trainer's
    // weight-gradient GEMMs with the SGD epilogue took 0.88-0.95 of the
    // time of one k per turn with both fetches, on one thread and on two
    // (AVX2, calls alternated, medians of 300; one k per turn with one
    // fetch: 0.96-0.98).
    const float* ap = a0;
    const int64_t step = c.a_cs;
    const float* bk = bp;
    int64_t k = 0;
    if constexpr (kNV == 2) {
      for (; k + 2 <= kc; k += 2, ap += 2 * step, bk += 2 * ldb) {
        hwy::Prefetch(ap + 2 * kGemmMR - 1);
        hwy::Prefetch(ap + step + 2 * kGemmMR - 1);
        BALLAST_GEMM_STEP_T(ap, bk)
        BALLAST_GEMM_STEP_T(ap + step, bk + ldb)
      }
    }
    for (; k < kc; ++k, ap += step, bk += ldb) {
      hwy::Prefetch(ap + 2 * kGemmMR - 1);
      BALLAST_GEMM_STEP_T(ap, bk)
    }
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      const float* bk = bp + k * ldb;
      // Small tiles stream the weights: fetch a few rows ahead.
      if constexpr (MR <= 4) hwy::Prefetch(bk + 8 * ldb);
      if constexpr (MR == kGemmMR) {
        if (c.a_next_step != 0) hwy::Prefetch(c.a_next + k * c.a_next_step);
      }
      BALLAST_GEMM_LOAD_B(bk)
      BALLAST_GEMM_ROW(0)
      BALLAST_GEMM_ROW(1)
      BALLAST_GEMM_ROW(2)
      BALLAST_GEMM_ROW(3)
      BALLAST_GEMM_ROW(4)
      BALLAST_GEMM_ROW(5)
    }
  }
#undef BALLAST_GEMM_LOAD_B
  // Valid columns of each vector of this panel.
  auto valid = [&](int v) {
    return size_t(std::clamp<int64_t>(cols - v * L, 0, L));
  };
  const size_t v0 = valid(0), v1 = valid(1), v2 = valid(2), v3 = valid(3);
  // kSgd and kAdam may leave a gradient that nothing reads unstored (see
  // EpilogueArgs::store_grad); an earlier K block's partial sums are
  // always stored.
  const bool store = !UpdatesWeight(E) || c.ep.store_grad || !(first && last);
  BALLAST_GEMM_STORE_ROW(0)
  BALLAST_GEMM_STORE_ROW(1)
  BALLAST_GEMM_STORE_ROW(2)
  BALLAST_GEMM_STORE_ROW(3)
  BALLAST_GEMM_STORE_ROW(4)
  BALLAST_GEMM_STORE_ROW(5)
  if constexpr (E == Epilogue::kBiasStats) {
    if (last) {
      AccumulateStatsFromRegisters<MR>(d, *c.stats, 0, v0, first_tile, c00, c10,
                                       c20, c30, c40, c50);
      if constexpr (NVA > 1) {
        if (v1) {
          AccumulateStatsFromRegisters<MR>(d, *c.stats, L, v1, first_tile, c01,
                                           c11, c21, c31, c41, c51);
        }
      }
      if constexpr (NVA == 4) {
        if (v2) {
          AccumulateStatsFromRegisters<MR>(d, *c.stats, 2 * L, v2, first_tile,
                                           c02, c12, c22, c32, c42, c52);
        }
        if (v3) {
          AccumulateStatsFromRegisters<MR>(d, *c.stats, 3 * L, v3, first_tile,
                                           c03, c13, c23, c33, c43, c53);
        }
      }
    }
  }
}

#undef BALLAST_GEMM_ROW
#undef BALLAST_GEMM_STEP_T
#undef BALLAST_GEMM_ROW_X
#undef BALLAST_GEMM_STORE_ROW

// The wide tile: MR (1 or 2) rows × V = kGemmWideChains / MR vectors, the
// G = V / kNV whole panels from p on. A one-row tile of one panel has kNV
// independent FMA chains; with an FMA latency of 4 cycles and two FMA units
// it needs 8 to issue every cycle. Batch-1 serving ran at a quarter of the
// FMA rate and at the same speed whether the weights came from L1, L2 or L3.
// Each column still sums over k in order from zero, one FMA per k, in the
// K blocks of the one-panel tile, each block's sums added to the earlier
// blocks' as that tile adds them: the same bits, so that a row's outputs do
// not depend on how many rows it runs with.
#define BALLAST_WIDE_VEC(j, ...)                             \
  if constexpr (V > j) {                                     \
    const float* bj = bk + (j / kNV) * ps + (j % kNV) * L;   \
    const VF b = hn::LoadU(d, bj);                           \
    c0##j = hn::MulAdd(a0v, b, c0##j);                       \
    if constexpr (MR > 1) c1##j = hn::MulAdd(a1v, b, c1##j); \
  }

// Vector j of row r of the tile in Y.
#define BALLAST_WIDE_Y(r, j)                                   \
  (c.y_panel_stride ? c.y + (p + j / kNV) * c.y_panel_stride + \
                          (m0 + r) * c.ldy + (j % kNV) * L     \
                    : c.y + (m0 + r) * c.ldy + n0 + j * L)

#define BALLAST_WIDE_STORE(r, j)                                        \
  if constexpr (MR > r && V > j) {                                      \
    float* yj = BALLAST_WIDE_Y(r, j);                                   \
    if (!first) c##r##j = hn::Add(c##r##j, hn::LoadU(d, yj));           \
    if (last) {                                                         \
      c##r##j = ApplyEpilogue<E>(d, c##r##j, c, n0 + j * L, size_t(L)); \
    }                                                                   \
    if (!UpdatesWeight(E) || c.ep.store_grad || !(first && last)) {     \
      hn::StoreU(c##r##j, d, yj);                                       \
    }                                                                   \
    if (last) UpdateAfterStore<E>(d, c, yj, c##r##j, size_t(L));        \
  }

// Over k in [k0, k0 + kc) (see Tile for `first` and `last`).
template <int MR, Epilogue E>
HWY_NOINLINE void WideTile(const TileCtx& c, int64_t m0, int64_t p, int64_t k0,
                           int64_t kc, bool first, bool last) {
  constexpr int V = int(kGemmWideChains) / MR;
  static_assert(MR * V == kGemmWideChains && V % kNV == 0);
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  const int64_t n0 = p * kNV * L;
  const int64_t ps = c.b.panel_stride;
  int64_t ld;
  const float* b0 = c.b.Row(p, k0, &ld);
  const float* a0 = c.a + m0 * c.a_rs + k0 * c.a_cs;
  const float* a1 = c.a + (m0 + (MR > 1 ? 1 : 0)) * c.a_rs + k0 * c.a_cs;
  VF c00 = hn::Zero(d), c01 = c00, c02 = c00, c03 = c00;
  VF c04 = c00, c05 = c00, c06 = c00, c07 = c00;
  VF c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  VF c14 = c00, c15 = c00, c16 = c00, c17 = c00;  // never used (V = 4)
#define BALLAST_WIDE_STEP \
  BALLAST_WIDE_VEC(0)     \
  BALLAST_WIDE_VEC(1)     \
  BALLAST_WIDE_VEC(2)     \
  BALLAST_WIDE_VEC(3)     \
  BALLAST_WIDE_VEC(4)     \
  BALLAST_WIDE_VEC(5)     \
  BALLAST_WIDE_VEC(6)     \
  BALLAST_WIDE_VEC(7)
  for (int64_t k = 0; k < kc; ++k) {
    const float* bk = b0 + k * ld;
    const VF a0v = hn::Set(d, a0[k * c.a_cs]);
    const VF a1v = hn::Set(d, a1[k * c.a_cs]);
    BALLAST_WIDE_STEP
  }
#undef BALLAST_WIDE_STEP
  (void)a1;
  BALLAST_WIDE_STORE(0, 0)
  BALLAST_WIDE_STORE(0, 1)
  BALLAST_WIDE_STORE(0, 2)
  BALLAST_WIDE_STORE(0, 3)
  BALLAST_WIDE_STORE(0, 4)
  BALLAST_WIDE_STORE(0, 5)
  BALLAST_WIDE_STORE(0, 6)
  BALLAST_WIDE_STORE(0, 7)
  BALLAST_WIDE_STORE(1, 0)
  BALLAST_WIDE_STORE(1, 1)
  BALLAST_WIDE_STORE(1, 2)
  BALLAST_WIDE_STORE(1, 3)
}

#undef BALLAST_WIDE_VEC
#undef BALLAST_WIDE_STORE
#undef BALLAST_WIDE_Y

// The K blocks of a GEMM over A's nonzeros (see GemmUnit): the rows of B a
// block reads for one wide tile's group of panels. The nonzeros read B's
// rows at random, and 4 panels × 256 rows (the trainer's forward on AVX2,
// 64 KiB) do not stay in L1: in 32 KiB blocks its forward GEMM at a
// quarter nonzero (operands on malloc's 16-byte alignment; aligned, as the
// trainer's are, 0.55-0.59) took 0.71-0.74 of the dense GEMM's time on one
// thread against 0.93-0.95 in one block (16 KiB: 0.73-0.75); the weight
// gradient's (128 rows of dZ, one block) 0.75-0.81 (medians of 1500 calls
// alternated).
constexpr int64_t kSparseBlockBytes = int64_t{32} << 10;

// The GEMM over A's nonzeros (see GemmUnit) for rows [m_begin, m_end) of
// the group of kGemmWideChains / kNV panels from p, over one K block: each
// row a one-row wide tile of kGemmWideChains vectors that sums only its
// row's nonzeros below k_end, from cursor[m - m_begin] on (the cursor is
// advanced past them), in K order, one FMA per term: the same bits as the
// dense tile wherever B is finite. `first`: from zero, else on from the sums
// the block before stored; `last`: apply the epilogue. One call runs all
// the rows, with the pointers and Y's offsets set up once: a call per row
// (the dense wide tile's code, a pointer reloaded in the loop) took
// 1.20-1.22 of the time of the forward GEMM (128 × 256 × 256, a quarter
// nonzero, AVX2, medians of 3000 calls alternated) and 1.10-1.14 of the
// weight gradient's.
template <Epilogue E>
HWY_NOINLINE void SparseWideRows(const TileCtx& c, int64_t m_begin,
                                 int64_t m_end, int64_t p, int32_t* cursor,
                                 int64_t k_end, bool first, bool last) {
  constexpr int V = int(kGemmWideChains);
  static_assert(V == 8 && V % kNV == 0, "eight named chains");
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  const int64_t n0 = p * kNV * L;
  const int64_t ps = c.b.panel_stride;
  int64_t ld;
  const float* b0 = c.b.Row(p, 0, &ld);
  // Y's offsets of the tile's vectors j from the start of a row.
  int64_t yoff[V];
  for (int j = 0; j < V; ++j) {
    yoff[j] = c.y_panel_stride
                  ? (p + j / kNV) * c.y_panel_stride + (j % kNV) * L
                  : n0 + j * L;
  }
  const int32_t* HWY_RESTRICT start = c.a_nonzeros->start;
  const int32_t* HWY_RESTRICT index = c.a_nonzeros->index;
  const float* HWY_RESTRICT value = c.a_nonzeros->value;
  const bool store = !last || !UpdatesWeight(E) || c.ep.store_grad;
  for (int64_t m = m_begin; m < m_end; ++m) {
    float* HWY_RESTRICT y = c.y + m * c.ldy;
    VF c0 = hn::Zero(d), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
       c7 = c0;
    if (!first) {
      c0 = hn::LoadU(d, y + yoff[0]), c1 = hn::LoadU(d, y + yoff[1]);
      c2 = hn::LoadU(d, y + yoff[2]), c3 = hn::LoadU(d, y + yoff[3]);
      c4 = hn::LoadU(d, y + yoff[4]), c5 = hn::LoadU(d, y + yoff[5]);
      c6 = hn::LoadU(d, y + yoff[6]), c7 = hn::LoadU(d, y + yoff[7]);
    }
    const int32_t end = start[m + 1];
    int32_t t = cursor[m - m_begin];
    for (; t < end && index[t] < k_end; ++t) {
      const float* HWY_RESTRICT bk = b0 + int64_t(index[t]) * ld;
      const VF av = hn::Set(d, value[t]);
      // Vector j of the row of B: panel p + j / kNV, vector j % kNV of it.
      const auto b = [&](int j) HWY_ATTR {
        return hn::LoadU(d, bk + (j / kNV) * ps + (j % kNV) * L);
      };
      c0 = hn::MulAdd(av, b(0), c0), c1 = hn::MulAdd(av, b(1), c1);
      c2 = hn::MulAdd(av, b(2), c2), c3 = hn::MulAdd(av, b(3), c3);
      c4 = hn::MulAdd(av, b(4), c4), c5 = hn::MulAdd(av, b(5), c5);
      c6 = hn::MulAdd(av, b(6), c6), c7 = hn::MulAdd(av, b(7), c7);
    }
    cursor[m - m_begin] = t;
    const auto put = [&](int j, VF v) HWY_ATTR {
      float* yj = y + yoff[j];
      if (last) v = ApplyEpilogue<E>(d, v, c, n0 + j * L, size_t(L));
      if (store) hn::StoreU(v, d, yj);
      if (last) UpdateAfterStore<E>(d, c, yj, v, size_t(L));
    };
    put(0, c0), put(1, c1), put(2, c2), put(3, c3);
    put(4, c4), put(5, c5), put(6, c6), put(7, c7);
  }
}

template <Epilogue E, int NVA>
void TileRows(const TileCtx& c, int mr, int64_t m0, int64_t p, int64_t k0,
              int64_t kc, bool first, bool last, bool first_tile) {
  switch (mr) {
    case 1:
      return Tile<1, E, NVA>(c, m0, p, k0, kc, first, last, first_tile);
    case 2:
      return Tile<2, E, NVA>(c, m0, p, k0, kc, first, last, first_tile);
    case 3:
      return Tile<3, E, NVA>(c, m0, p, k0, kc, first, last, first_tile);
    case 4:
      return Tile<4, E, NVA>(c, m0, p, k0, kc, first, last, first_tile);
    case 5:
      return Tile<5, E, NVA>(c, m0, p, k0, kc, first, last, first_tile);
    default:
      return Tile<6, E, NVA>(c, m0, p, k0, kc, first, last, first_tile);
  }
}

template <Epilogue E>
void TileAnyRows(const TileCtx& c, int mr, int64_t m0, int64_t p, int64_t k0,
                 int64_t kc, bool first, bool last, bool first_tile) {
  const int64_t L = int64_t(hn::Lanes(DF()));
  const bool one_vector = c.n - p * kNV * L <= L;
  if (one_vector) {
    return TileRows<E, 1>(c, mr, m0, p, k0, kc, first, last, first_tile);
  }
  return TileRows<E, kNV>(c, mr, m0, p, k0, kc, first, last, first_tile);
}

// One work unit (see GemmPlan): rows [m_begin, m_end) of panels
// [p, p_end), K in blocks of plan.kc. `prefetch_a`: fetch the next tile's rows
// of a row-major A ahead (see below).
template <Epilogue E>
void GemmUnit(TileCtx c, const GemmPlan& plan, const GemmRange& r,
              bool prefetch_a) {
  const int64_t K = c.b.k;
  if (c.a_nonzeros != nullptr) {
    // Row by row, each summing its nonzeros: wide tiles over the unit's
    // group of panels (when whole), in K blocks of kSparseBlockBytes of the
    // group's rows of B, each row's sums going on from the last block's
    // (the same chains, so the same bits).
    const int64_t rows = r.m_end - r.m_begin;
    if (r.p + plan.group <= std::min(r.p_end, c.b.n / c.b.nr)) {
      thread_local std::vector<int32_t> cursor;
      cursor.resize(size_t(rows));
      for (int64_t i = 0; i < rows; ++i) {
        cursor[size_t(i)] = c.a_nonzeros->start[r.m_begin + i];
      }
      const int64_t row_bytes =
          kGemmWideChains * int64_t(hn::Lanes(DF())) * int64_t(sizeof(float));
      const int64_t kb = std::max<int64_t>(8, kSparseBlockBytes / row_bytes);
      for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += kb) {
        SparseWideRows<E>(c, r.m_begin, r.m_end, r.p, cursor.data(),
                          std::min(K, k0 + kb), k0 == 0, k0 + kb >= K);
      }
      return;
    }
    // A last, partial group: the dense tile over A's rows (one K block).
    for (int64_t m = r.m_begin; m < r.m_end; m += kGemmMR) {
      const int mr = int(std::min<int64_t>(kGemmMR, r.m_end - m));
      for (int64_t q = r.p; q < r.p_end; ++q) {
        TileAnyRows<E>(c, mr, m, q, 0, K, true, true, m == r.m_begin);
      }
    }
    return;
  }
  if (plan.group > 1) {
    // At most kGemmWideM rows: wide tiles over the unit's whole panels, the
    // one-panel tile for the rest (a last, narrower panel), K in the blocks
    // of the other rows' tiles.
    const int mr = int(r.m_end - r.m_begin);
    const int64_t g = kGemmWideChains / (mr * kNV);
    const int64_t whole = std::min(r.p_end, c.b.n / c.b.nr);
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += plan.kc) {
      const int64_t kc = std::min(plan.kc, K - k0);
      const bool first = k0 == 0, last = k0 + kc >= K;
      int64_t q = r.p;
      for (; g > 1 && q + g <= whole; q += g) {
        if (mr == 1) {
          WideTile<1, E>(c, r.m_begin, q, k0, kc, first, last);
        } else {
          WideTile<2, E>(c, r.m_begin, q, k0, kc, first, last);
        }
      }
      for (; q < r.p_end; ++q) {
        TileAnyRows<E>(c, mr, r.m_begin, q, k0, kc, first, last, true);
      }
      if (K == 0) break;
    }
    return;
  }
  const int64_t p = r.p;
  for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += plan.kc) {
    const int64_t kc = std::min(plan.kc, K - k0);
    const bool first = k0 == 0, last = k0 + kc >= K;
    for (int64_t m = r.m_begin; m < r.m_end; m += kGemmMR) {
      const int mr = int(std::min<int64_t>(kGemmMR, r.m_end - m));
      // Row-major A read in place on several threads: on the thread's
      // first panel, fetch the next tile's rows while this one computes.
      // Half of them may sit in the other core's cache (its thread wrote
      // them), where the hardware prefetcher does not reach ahead of the
      // misses. Later panels and single-threaded calls find A in their own
      // cache on 64-column targets; 16-column targets fetch ahead on every
      // panel (kPrefetchAEveryPanel). A packed tile fetches the next packed
      // tile itself.
      c.a_next_step = 0;
      if (c.a_packed != nullptr && mr == kGemmMR) {
        c.a_packed->Ensure(c.a, c.a_rs, m / kGemmMR);
      } else if (prefetch_a && c.a_cs == 1 && m + 2 * kGemmMR <= plan.m &&
                 kc > 0) {
        c.a_next = c.a + (m + kGemmMR) * c.a_rs + k0;
        c.a_next_step = (kGemmMR * c.a_rs + kc - 1) / kc;
      }
      TileAnyRows<E>(c, mr, m, p, k0, kc, first, last, m == r.m_begin);
    }
    if (K == 0) break;
  }
}

// The statistics of panels [p0, p1) into ep.mean and ep.var, then handed on
// (ep.stats_ready): from the sums the epilogue left in their chunks, or first
// summed by a pass over their stored columns of Y (stats.pass, whose row
// blocks depend on M alone as the epilogue's do: the same bits). The merge
// runs here, compiled for the target as GemmTyped's is (the compiler may
// contract its multiply-adds differently per target).
void FinishPanelStats(const TileCtx& base, const GemmStats& stats,
                      const GemmPlan& plan, const EpilogueArgs& ep, int64_t p0,
                      int64_t p1) {
  const int64_t nr = base.b.nr, n = base.n;
  const GemmPlan& chunk_plan = stats.pass ? *stats.pass : plan;
  if (stats.pass) {
    for (int64_t u = p0 * chunk_plan.row_blocks; u < p1 * chunk_plan.row_blocks;
         ++u) {
      const GemmRange r = chunk_plan.Unit(u);
      TileCtx c = base;
      c.stats = &stats.chunks[r.p * chunk_plan.row_blocks + r.m_chunk];
      const int64_t n0 = r.p * nr, cols = std::min(nr, n - n0);
      for (int64_t m = r.m_begin; m < r.m_end; m += kGemmMR) {
        const int mr = int(std::min<int64_t>(kGemmMR, r.m_end - m));
        AccumulateStats(c, m, mr, n0, cols, m == r.m_begin);
      }
    }
  }
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n0 = p * nr;
    MergeStats(stats.chunks + p * chunk_plan.row_blocks, chunk_plan.row_blocks,
               std::min(nr, n - n0), ep.mean + n0, ep.var + n0);
  }
  ep.stats_ready(std::min(n, p0 * nr), std::min(n, p1 * nr));
}

template <Epilogue E>
void GemmTyped(const GemmArgs& args, const BPanels& b, const EpilogueArgs& ep,
               const GemmPlan& plan, const GemmStats* stats, WorkRanges* work) {
  const TileCtx base{args.a,
                     args.a_row_stride,
                     args.a_col_stride,
                     args.y,
                     args.ldy,
                     b.n,
                     args.y_panel_stride,
                     b,
                     ep,
                     nullptr,
                     args.a_nonzeros};
  // Row-major A (a_rs = 1 is read down its columns by one pointer already),
  // dense, one-panel units, M of at least two tiles, and enough panels per
  // thread to repay the packing.
  const bool pack = kPackA && args.a_nonzeros == nullptr && plan.group == 1 &&
                    args.a_col_stride == 1 && args.a_row_stride != 1 &&
                    args.m >= 2 * kGemmMR &&
                    plan.panels >= kPackAMinPanels * plan.threads;
  // This thread's packed A, reset for this call (nullptr: not packed).
  const auto packed_a = [&]() -> PackedA* {
    if (!pack) return nullptr;
    PackedA& packed = ThreadPackedA();
    packed.Reset(args.m, b.k);
    return &packed;
  };
  // The epilogue's sums go to the unit's chunk.
  GemmStatsChunk* const epilogue_chunks =
      E == Epilogue::kBiasStats && stats ? stats->chunks : nullptr;
  const auto run = [&](const GemmRange& r, bool prefetch_a, PackedA* packed) {
    TileCtx c = base;
    c.a_packed = packed;
    if (epilogue_chunks) {
      c.stats = &epilogue_chunks[r.p * plan.row_blocks + r.m_chunk];
    }
    if (r.m_begin < r.m_end) GemmUnit<E>(c, plan, r, prefetch_a);
  };
  if (plan.threads <= 1) {
    PackedA* packed = packed_a();
    for (int64_t u = 0; u < plan.units(); ++u) {
      run(plan.Unit(u), kPrefetchAEveryPanel, packed);
    }
    if (stats) FinishPanelStats(base, *stats, plan, ep, 0, plan.panels);
    return;
  }
  work->Reset(plan.threads, plan.units());
  ParallelRun(plan.threads, [&](int t, int) {
    PackedA* packed = packed_a();
    int64_t u = 0, first_panel = -1;
    while (work->Next(t, &u)) {
      const GemmRange r = plan.Unit(u);
      if (first_panel < 0) first_panel = r.p;
      run(r, kPrefetchAEveryPanel || r.p == first_panel, packed);
    }
  });
  if (stats) {
    // Each task finishes its home panels, whose units its thread mostly
    // computed itself: finished on one thread, half of the sums crossed to
    // it from the other core, and back on the next call. (In the GEMM's own
    // run, each task waiting for any unit of its panels the other had taken,
    // the two-thread training step took 0.997-1.002 of the time: not kept.)
    ParallelRun(plan.threads, [&](int t, int T) {
      const int64_t p0 = plan.panels * t / T, p1 = plan.panels * (t + 1) / T;
      FinishPanelStats(base, *stats, plan, ep, p0, p1);
    });
  }
}

void GemmImpl(const GemmArgs& args, const BPanels& b, Epilogue e,
              const EpilogueArgs& ep, const GemmPlan& plan,
              const GemmStats* stats, WorkRanges* work) {
  switch (e) {
    case Epilogue::kNone:
      return GemmTyped<Epilogue::kNone>(args, b, ep, plan, stats, work);
    case Epilogue::kBias:
      return GemmTyped<Epilogue::kBias>(args, b, ep, plan, stats, work);
    case Epilogue::kBiasRelu:
      return GemmTyped<Epilogue::kBiasRelu>(args, b, ep, plan, stats, work);
    case Epilogue::kBiasLeakyRelu:
      return GemmTyped<Epilogue::kBiasLeakyRelu>(args, b, ep, plan, stats,
                                                 work);
    case Epilogue::kScaleShift:
      return GemmTyped<Epilogue::kScaleShift>(args, b, ep, plan, stats, work);
    case Epilogue::kScaleShiftRelu:
      return GemmTyped<Epilogue::kScaleShiftRelu>(args, b, ep, plan, stats,
                                                  work);
    case Epilogue::kBiasStats:
      return GemmTyped<Epilogue::kBiasStats>(args, b, ep, plan, stats, work);
    case Epilogue::kSgd:
      return GemmTyped<Epilogue::kSgd>(args, b, ep, plan, stats, work);
    case Epilogue::kAdam:
      return GemmTyped<Epilogue::kAdam>(args, b, ep, plan, stats, work);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#endif  // BALLAST_OPS_LINEAR_GEMM_INL_H_
