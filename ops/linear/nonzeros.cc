// Nonzeros::Index on every Highway target (see nonzeros.h).
#include "ops/linear/nonzeros.h"

#include <algorithm>
#include <cstddef>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/linear/nonzeros.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/block/block_kernels.h"
#include "ops/tasks.h"

// Once, not per target (foreach_target.h includes this file again).
#ifndef BALLAST_OPS_LINEAR_NONZEROS_ONCE_
#define BALLAST_OPS_LINEAR_NONZEROS_ONCE_
namespace ballast::ops {
// What each task of Nonzeros::IndexFromMask reads and writes.
struct MaskIndexArgs {
  const float* x;
  const uint64_t* mask;
  int64_t M, K;
  int32_t* row_start;
  int32_t* row_index;
  float* row_value;
  int32_t* col_start;
  int32_t* col_index;
  float* col_value;
  uint64_t* col_bits;  // the mask transposed (see Nonzeros::col_bits_)
};
}  // namespace ballast::ops
#endif  // BALLAST_OPS_LINEAR_NONZEROS_ONCE_

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_AVX2
// For 8 lanes: the lanes of mask bits m in order, 4 bits each. Highway's
// own Compress on AVX2 copies its 1 KiB table to the stack on every call,
// which took longer than compressing one float at a time (Zen 3).
struct CompressTable {
  uint32_t lanes[256];
};
constexpr CompressTable MakeCompressTable() {
  CompressTable t{};
  for (uint32_t m = 0; m < 256; ++m) {
    uint32_t packed = 0, n = 0;
    for (uint32_t j = 0; j < 8; ++j) {
      if (m >> j & 1) packed |= j << (4 * n++);
    }
    t.lanes[m] = packed;
  }
  return t;
}
static constexpr CompressTable kCompressTable = MakeCompressTable();
#endif

// Writes the nonzeros of row[0, K) (index, value) from `index` and `value`
// on; returns their count. Whole vectors are compressed (a NaN is not equal
// to zero, so it is kept) and stored whole, within the row's own K slots.
// The tail goes one value at a time.
int64_t CompressRowImpl(const float* HWY_RESTRICT row, int64_t K,
                        int32_t* HWY_RESTRICT index,
                        float* HWY_RESTRICT value) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const int64_t L = int64_t(hn::Lanes(d));
  // Highway's Iota goes through memory (a stall per call): once, then adds.
  const auto lanes = hn::Iota(di, 0);
#if HWY_TARGET == HWY_AVX2
  const auto shift = hn::ShiftLeft<2>(lanes);
  const auto seven = hn::Set(di, 7);
#endif
  int64_t n = 0, k = 0;
  for (; k + L <= K; k += L) {
    const auto v = hn::LoadU(d, row + k);
    const auto keep = hn::Not(hn::Eq(v, hn::Zero(d)));
    const auto at = hn::Add(lanes, hn::Set(di, int32_t(k)));
#if HWY_TARGET == HWY_AVX2
    uint8_t bits[8];
    hn::StoreMaskBits(d, keep, bits);
    const auto packed = hn::Set(di, int32_t(kCompressTable.lanes[bits[0]]));
    const auto perm = hn::And(hn::Shr(packed, shift), seven);
    hn::StoreU(hn::TableLookupLanes(v, hn::IndicesFromVec(d, perm)), d,
               value + n);
    hn::StoreU(hn::TableLookupLanes(at, hn::IndicesFromVec(di, perm)), di,
               index + n);
    n += __builtin_popcount(bits[0]);
#else
    hn::StoreU(hn::Compress(v, keep), d, value + n);
    hn::StoreU(hn::Compress(at, hn::RebindMask(di, keep)), di, index + n);
    n += int64_t(hn::CountTrue(d, keep));
#endif
  }
  // The scalar twin of the loop above, for the row's last values: each slot
  // is written and the end advances past nonzeros only.
  for (; k < K; ++k) {
    index[n] = int32_t(k);
    value[n] = row[k];
    n += row[k] != 0.0f;
  }
  return n;
}

// The number of values of x[0, n) that are not ±0.
int64_t CountNonzerosImpl(const float* HWY_RESTRICT x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t L = int64_t(hn::Lanes(d));
  int64_t count = 0, i = 0;
  for (; i + L <= n; i += L) {
    count +=
        int64_t(hn::CountTrue(d, hn::Eq(hn::LoadU(d, x + i), hn::Zero(d))));
  }
  count = i - count;
  for (; i < n; ++i) count += x[i] != 0.0f;  // the scalar twin, for the tail
  return count;
}

// The bit counting and walking of the mask below run compiled for each
// target: on x86 the baseline has no popcnt instruction, and each count was
// a call into libgcc.

// Transposes a 64 × 64 bit matrix in place: bit j of a[i] becomes bit i of
// a[j]. Six rounds, each swapping the off-diagonal blocks of every 2s × 2s
// block (s = 32, 16, ..., 1): the high s bits of row i with the low s bits
// of row i + s.
HWY_INLINE void Transpose64(uint64_t* a) {
  static constexpr uint64_t kLow[6] = {
      0x00000000FFFFFFFFull, 0x0000FFFF0000FFFFull, 0x00FF00FF00FF00FFull,
      0x0F0F0F0F0F0F0F0Full, 0x3333333333333333ull, 0x5555555555555555ull};
  for (int round = 0, s = 32; round < 6; ++round, s >>= 1) {
    const uint64_t low = kLow[round];
    for (int i = 0; i < 64; i = (i + s + 1) & ~s) {  // i with bit s clear
      const uint64_t t = ((a[i] >> s) ^ a[i + s]) & low;
      a[i] ^= t << s;
      a[i + s] ^= t;
    }
  }
}

HWY_INLINE int CountBits(uint64_t w) { return __builtin_popcountll(w); }
// The bits of a row's last mask word that hold columns (< K).
HWY_INLINE uint64_t TailBits(int64_t K) {
  return K % 64 ? (uint64_t{1} << (K % 64)) - 1 : ~uint64_t{0};
}
HWY_INLINE int LowestBit(uint64_t w) { return __builtin_ctzll(w); }

// Word w of row m of a mask of M rows, without bits past column K.
HWY_INLINE uint64_t MaskWordOf(const uint64_t* mask, int64_t M, int64_t K,
                               int64_t w, int64_t m) {
  return mask[MaskWord(M, m, w * 64)] &
         (w == MaskWordsPerRow(K) - 1 ? TailBits(K) : ~uint64_t{0});
}

// The set bits of a word-major mask of M × K bits (none past column K).
int64_t CountMaskBitsImpl(const uint64_t* HWY_RESTRICT mask, int64_t M,
                          int64_t K) {
  int64_t count = 0;
  for (int64_t w = 0; w < MaskWordsPerRow(K); ++w) {
    for (int64_t m = 0; m < M; ++m) {
      count += CountBits(MaskWordOf(mask, M, K, w, m));
    }
  }
  return count;
}

// Task t of `team` of Nonzeros::IndexFromMask: rows [M·t/team, M·(t+1)/team)
// for the row lists, mask words likewise for the column lists.
void IndexFromMaskTaskImpl(const MaskIndexArgs& a, int t, int team) {
  const int64_t M = a.M, K = a.K;
  const int64_t words = MaskWordsPerRow(K);
  const int64_t row_words = (M + 63) / 64;  // 64-row blocks
  const auto word = [&](int64_t w, int64_t m) {
    return MaskWordOf(a.mask, M, K, w, m);
  };
  const int64_t m0 = M * t / team, m1 = M * (t + 1) / team;
  const int64_t w0 = words * t / team, w1 = words * (t + 1) / team;
  const int64_t k0 = std::min(K, w0 * 64), k1 = std::min(K, w1 * 64);
  int32_t* HWY_RESTRICT row_index = a.row_index;
  float* HWY_RESTRICT row_value = a.row_value;
  int32_t n = 0;
  for (int64_t m = 0; m < m0; ++m) {
    for (int64_t w = 0; w < words; ++w) n += CountBits(word(w, m));
  }
  // A row's compressed vectors are stored whole (CompressRowImpl), within
  // the K slots from the row's first: past its own count, into slots the
  // next rows then overwrite. Rows whose K slots would reach past the
  // task's lists (its last few) are walked by their bits instead, so that
  // no store crosses into the next task's lists, and the walk writes
  // nothing past them: memory stays safe even if the floats and the mask
  // disagree (the lists are then wrong, as the caller was). (Against the
  // walk on every row, with the counting compiled for the baseline, which
  // called libgcc for each popcount: 11.0-11.6 µs against 14.1-14.6 on one
  // thread, 6.2-6.6 against 7.8-8.1 on two; 128 × 256 at 22.5%, eight
  // masks in turn, medians of 20000 calls, three runs alternated.)
  int32_t task_end = n;
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t w = 0; w < words; ++w) task_end += CountBits(word(w, m));
  }
  for (int64_t m = m0; m < m1; ++m) {
    const float* row = a.x + m * K;
    if (n + K <= task_end) {
      n += int32_t(CompressRowImpl(row, K, row_index + n, row_value + n));
    } else {
      for (int64_t w = 0; w < words; ++w) {
        for (uint64_t bits = word(w, m); bits != 0 && n < task_end;
             bits &= bits - 1) {
          const int32_t k = int32_t(w * 64 + LowestBit(bits));
          row_index[n] = k;
          row_value[n++] = row[k];
        }
      }
    }
    a.row_start[m + 1] = n;
  }
  // The task's words transposed: column k's rows in col_bits_.
  uint64_t block[64];
  for (int64_t w = w0; w < w1; ++w) {
    for (int64_t b = 0; b < row_words; ++b) {
      const int64_t rows = std::min<int64_t>(64, M - b * 64);
      for (int64_t i = 0; i < rows; ++i) block[i] = word(w, b * 64 + i);
      std::fill(block + rows, block + 64, 0);
      Transpose64(block);
      for (int64_t j = 0; j < 64; ++j) {
        a.col_bits[size_t((w * 64 + j) * row_words + b)] = block[j];
      }
    }
  }
  int32_t* HWY_RESTRICT col_index = a.col_index;
  float* HWY_RESTRICT col_value = a.col_value;
  n = 0;
  for (int64_t w = 0; w < w0; ++w) {
    for (int64_t m = 0; m < M; ++m) n += CountBits(word(w, m));
  }
  for (int64_t k = k0; k < k1; ++k) {
    for (int64_t b = 0; b < row_words; ++b) {
      for (uint64_t bits = a.col_bits[size_t(k * row_words + b)]; bits != 0;
           bits &= bits - 1) {
        const int32_t m = int32_t(b * 64 + LowestBit(bits));
        col_index[n] = m;
        col_value[n++] = a.x[m * K + k];
      }
    }
    a.col_start[k + 1] = n;
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ballast::ops {

HWY_EXPORT(CompressRowImpl);
HWY_EXPORT(CountNonzerosImpl);
HWY_EXPORT(CountMaskBitsImpl);
HWY_EXPORT(IndexFromMaskTaskImpl);

double Nonzeros::Density(const float* x, int64_t M, int64_t K) {
  const int64_t n = M * K;
  return n > 0
             ? double(HWY_DYNAMIC_DISPATCH(CountNonzerosImpl)(x, n)) / double(n)
             : 0.0;
}

bool Nonzeros::Reset(int64_t M, int64_t K) {
  // 32-bit positions: a larger matrix is left unindexed, as if dense.
  if (M < 0 || K < 0 || (K > 0 && M >= (int64_t{1} << 31) / K)) {
    m_ = k_ = 0;
    row_start_.assign(1, 0);
    col_start_.assign(1, 0);
    return false;
  }
  m_ = M, k_ = K;
  const size_t total = size_t(M * K);
  row_index_.resize(total + 1), row_value_.resize(total + 1);
  col_index_.resize(total + 1), col_value_.resize(total + 1);
  row_start_.assign(size_t(M + 1), 0);
  col_start_.assign(size_t(K + 1), 0);
  return true;
}

double Nonzeros::Index(const float* x, int64_t M, int64_t K, int threads) {
  if (!Reset(M, K)) return 1.0;
  // A second thread pays from about 2^14 values (the trainer's 128 × 256).
  const int T = InParallel() || M * K < (int64_t{1} << 14)
                    ? 1
                    : int(std::clamp<int64_t>(threads, 1, M));
  // Each thread compresses its rows, row m into slots m·K on (it writes at
  // most its K; the one slot more keeps data() valid for an empty matrix),
  // and counts its nonzeros per column. After the prefix sums, it moves its
  // rows into place, and fills its own range of columns from every row's
  // entries in that range, rows in increasing order: the result does not
  // depend on the number of threads. (Scattering its own rows into every
  // column instead made the threads write the two ends of each column's
  // run, cache lines apart by a few entries: on two threads the index took
  // 0.95-1.31 of one thread's time, against 0.59-0.86 now.)
  // Everything is allocated here: no task throws.
  const size_t total = size_t(M * K);
  tmp_index_.resize(total + 1), tmp_value_.resize(total + 1);
  scratch_.assign(size_t(T) * size_t(K), 0);
  ParallelRun(T, [&](int t, int team) {
    const int64_t m0 = M * t / team, m1 = M * (t + 1) / team;
    int32_t* count = scratch_.data() + size_t(t) * size_t(K);
    for (int64_t m = m0; m < m1; ++m) {
      int32_t* index = tmp_index_.data() + m * K;
      const int64_t n = HWY_DYNAMIC_DISPATCH(CompressRowImpl)(
          x + m * K, K, index, tmp_value_.data() + m * K);
      row_start_[size_t(m + 1)] = int32_t(n);
      for (int64_t j = 0; j < n; ++j) ++count[index[j]];
    }
  });
  for (int64_t m = 0; m < M; ++m) {
    row_start_[size_t(m + 1)] += row_start_[size_t(m)];
  }
  // Column k's first slot, then (in task 0's counts) its next free slot as
  // the columns are filled.
  int32_t at = 0;
  for (int64_t k = 0; k < K; ++k) {
    col_start_[size_t(k)] = at;
    for (int u = 0; u < T; ++u) {
      at += scratch_[size_t(u) * size_t(K) + size_t(k)];
    }
    scratch_[size_t(k)] = col_start_[size_t(k)];
  }
  col_start_[size_t(K)] = at;
  ParallelRun(T, [&](int t, int team) {
    const int64_t m0 = M * t / team, m1 = M * (t + 1) / team;
    for (int64_t m = m0; m < m1; ++m) {
      const int32_t begin = row_start_[size_t(m)];
      const int32_t n = row_start_[size_t(m + 1)] - begin;
      std::copy_n(tmp_index_.data() + m * K, n, row_index_.data() + begin);
      std::copy_n(tmp_value_.data() + m * K, n, row_value_.data() + begin);
    }
    const int64_t k0 = K * t / team, k1 = K * (t + 1) / team;
    int32_t* next = scratch_.data();
    for (int64_t m = 0; m < M && k0 < k1; ++m) {
      const int32_t* index = tmp_index_.data() + m * K;
      const float* value = tmp_value_.data() + m * K;
      const int32_t n = row_start_[size_t(m + 1)] - row_start_[size_t(m)];
      // The row's entries in [k0, k1): index increases along the row.
      int32_t j =
          int32_t(std::lower_bound(index, index + n, int32_t(k0)) - index);
      for (; j < n && index[j] < k1; ++j) {
        const int32_t pos = next[index[j]]++;
        col_index_[size_t(pos)] = int32_t(m);
        col_value_[size_t(pos)] = value[j];
      }
    }
  });
  return total ? double(row_start_[size_t(M)]) / double(total) : 0.0;
}

double Nonzeros::MaskDensity(const uint64_t* mask, int64_t M, int64_t K) {
  if (M <= 0 || K <= 0) return 0.0;
  return double(HWY_DYNAMIC_DISPATCH(CountMaskBitsImpl)(mask, M, K)) /
         double(M * K);
}

double Nonzeros::IndexFromMask(const float* x, const uint64_t* mask, int64_t M,
                               int64_t K, int threads) {
  if (!Reset(M, K)) return 1.0;
  const int64_t words = MaskWordsPerRow(K);
  const int64_t row_words = (M + 63) / 64;  // 64-row blocks
  // Each task fills the words of its columns: no clearing needed.
  col_bits_.resize(size_t(words * 64 * row_words));
  // Rows split over the threads for the row lists, mask words (64 columns)
  // for the column lists, in one run: each task counts the set bits before
  // its rows and before its words itself (a few hundred popcounts), so it
  // knows where its lists start without waiting for the others' counts. As
  // Index: the same result on any number. (Two runs, the counts written by
  // each task between them, cost the two-thread step a run's entry and join
  // more.)
  const int T = InParallel() || M * K < (int64_t{1} << 14)
                    ? 1
                    : int(std::clamp<int64_t>(threads, 1, M));
  const MaskIndexArgs args{x,
                           mask,
                           M,
                           K,
                           row_start_.data(),
                           row_index_.data(),
                           row_value_.data(),
                           col_start_.data(),
                           col_index_.data(),
                           col_value_.data(),
                           col_bits_.data()};
  ParallelRun(T, [&](int t, int team) {
    HWY_DYNAMIC_DISPATCH(IndexFromMaskTaskImpl)(args, t, team);
  });
  const int64_t total = M * K;
  return total ? double(row_start_[size_t(M)]) / double(total) : 0.0;
}

}  // namespace ballast::ops
#endif  // HWY_ONCE
