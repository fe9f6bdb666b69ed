// How the block passes split an [M, N] activation over threads
// (target-independent).
#ifndef BALLAST_OPS_BLOCK_BLOCK_SPLIT_H_
#define BALLAST_OPS_BLOCK_BLOCK_SPLIT_H_

#include <algorithm>
#include <cstdint>

namespace ballast::ops {

// A static share of an [M, N] activation for thread t of nt (the unfused
// dropout pass, and the whole matrix for one thread): columns first, in
// whole 64-column mask words, then rows. Each thread writes its own
// contiguous run of mask words. Narrow layers (fewer words than threads)
// split rows too.
struct BlockSplit {
  int64_t m_begin = 0, m_end = 0, n_begin = 0, n_end = 0;

  static BlockSplit Of(int64_t M, int64_t N, int t, int nt) {
    BlockSplit s;
    const int64_t words = (N + 63) / 64;
    const int tn = int(std::clamp<int64_t>(words, 1, std::max(nt, 1)));
    const int tm = std::max(1, nt / tn);
    if (t >= tn * tm) return s;  // an idle thread: empty ranges
    const int ti = t % tn, row_group = t / tn;
    s.n_begin = std::min(N, words * ti / tn * 64);
    s.n_end = std::min(N, words * (ti + 1) / tn * 64);
    s.m_begin = M * row_group / tm;
    s.m_end = M * (row_group + 1) / tm;
    return s;
  }
};

// The forward pass's work units, shared among the threads dynamically (see
// ops/work_ranges.h): one group of whole 64-column mask words × one block of
// kRows rows, group-major. There are as many groups as threads (fewer when
// the layer has fewer words), so each thread's home range is its own columns
// over all the rows, as in the static split, and a thread that runs out takes
// blocks of rows from another's columns. Each unit writes its own elements
// and mask words; the pass is elementwise, so the units' shape never changes
// the result.
struct BlockUnits {
  static constexpr int64_t kRows = 16;
  int64_t M = 0, N = 0, words = 1, groups = 1, row_blocks = 1;

  static BlockUnits Of(int64_t M, int64_t N, int threads) {
    BlockUnits u;
    u.M = M, u.N = N;
    u.words = std::max<int64_t>(1, (N + 63) / 64);
    u.groups = std::clamp<int64_t>(threads, 1, u.words);
    u.row_blocks = std::max<int64_t>(1, (M + kRows - 1) / kRows);
    return u;
  }
  int64_t count() const { return groups * row_blocks; }
  // Group g is thread g's home range; odd threads walk theirs downwards
  // (ops/work_ranges.h), so their row blocks are numbered from the bottom
  // and they still read rows top down.
  BlockSplit Unit(int64_t u) const {
    BlockSplit s;
    const int64_t g = u / row_blocks;
    const int64_t rb =
        g % 2 == 1 ? row_blocks - 1 - u % row_blocks : u % row_blocks;
    s.n_begin = std::min(N, words * g / groups * 64);
    s.n_end = std::min(N, words * (g + 1) / groups * 64);
    s.m_begin = std::min(M, rb * kRows);
    s.m_end = std::min(M, rb * kRows + kRows);
    return s;
  }
};

// Floats per row of a thread's scratch column sums: N rounded up to whole
// 64-byte lines.
inline int64_t PartialStride(int64_t N) { return (N + 15) / 16 * 16; }

}  // namespace ballast::ops

#endif  // BALLAST_OPS_BLOCK_BLOCK_SPLIT_H_
