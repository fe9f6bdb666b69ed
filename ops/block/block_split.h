// How the fused block passes split an [M, N] activation over threads
// (target-independent).
#ifndef BALLAST_OPS_BLOCK_BLOCK_SPLIT_H_
#define BALLAST_OPS_BLOCK_BLOCK_SPLIT_H_

#include <algorithm>
#include <cstdint>

namespace ballast::ops {

// Columns first, in whole 64-column mask words, then rows. The GEMM before
// and after a block pass splits its output over column panels in the same
// way, so with N = 256 on two threads each thread reads the half of z and of
// the incoming gradient that it wrote itself, owns its mask words, and sums
// its columns over all the rows without a partial sum to merge. Narrow
// layers (fewer words than threads) split rows too; the threads of one column
// group then merge their partial column sums in row-group order.
struct BlockSplit {
  int64_t m_begin = 0, m_end = 0, n_begin = 0, n_end = 0;
  int row_group = 0, row_groups = 1, column_groups = 1;

  static BlockSplit Of(int64_t M, int64_t N, int t, int nt) {
    BlockSplit s;
    const int64_t words = (N + 63) / 64;
    const int tn = int(std::clamp<int64_t>(words, 1, std::max(nt, 1)));
    const int tm = std::max(1, nt / tn);
    s.row_groups = tm;
    s.column_groups = tn;
    if (t >= tn * tm) return s;  // an idle thread: empty ranges
    const int ti = t % tn;
    s.row_group = t / tn;
    s.n_begin = std::min(N, words * ti / tn * 64);
    s.n_end = std::min(N, words * (ti + 1) / tn * 64);
    s.m_begin = M * s.row_group / tm;
    s.m_end = M * (s.row_group + 1) / tm;
    return s;
  }
};

// Floats per row of a thread's partial column sums: N rounded up to whole
// 64-byte lines.
inline int64_t PartialStride(int64_t N) { return (N + 15) / 16 * 16; }

}  // namespace ballast::ops

#endif  // BALLAST_OPS_BLOCK_BLOCK_SPLIT_H_
