// How one GEMM call is split over threads and K blocks (target-independent).
#ifndef BALLAST_OPS_LINEAR_GEMM_PLAN_H_
#define BALLAST_OPS_LINEAR_GEMM_PLAN_H_

#include <algorithm>
#include <cstdint>

namespace ballast::ops {

inline constexpr int kGemmMR = 6;  // rows per register tile
// Accumulators of the wide tile, which computes one or two rows over several
// panels at once: a one-row tile of one panel has only kNV independent FMA
// chains, too few to hide the FMA latency (see WideTile in gemm-inl.h).
inline constexpr int64_t kGemmWideChains = 8;
inline constexpr int64_t kGemmWideM = 2;  // M <= this takes the wide tile

// B as the micro-kernel walks it: NR-column panels of K rows. Packed B
// (PackedB) has ld = nr and panels one after another; B read in place from a
// row-major matrix has ld = its row stride and panel p at column p·nr, with a
// last panel narrower than the kernel reads packed into `edge` per call.
struct BPanels {
  const float* data = nullptr;
  int64_t k = 0, n = 0, nr = 0;
  int64_t ld = 0;               // floats from row k to row k + 1 of a panel
  int64_t panel_stride = 0;     // floats from panel p to panel p + 1
  const float* edge = nullptr;  // the last panel packed (ld nr), or nullptr

  int64_t panels() const { return nr ? (n + nr - 1) / nr : 0; }
  // Row k of panel p; *stride receives the row stride from there.
  const float* Row(int64_t p, int64_t row, int64_t* stride) const {
    if (edge != nullptr && p == panels() - 1) {
      *stride = nr;
      return edge + row * nr;
    }
    *stride = ld;
    return data + p * panel_stride + row * ld;
  }
};

// The rows and column panels [p, p_end) of one work unit; m_chunk is its row
// block.
struct GemmRange {
  int64_t m_begin = 0, m_end = 0, p = 0, p_end = 0;
  int m_chunk = 0;
};

// Shifted per-column sums of one work unit: one block of rows of one panel
// ([panel width] each, from the panel's first column).
struct GemmStatsChunk {
  double* shift = nullptr;
  double* sum = nullptr;
  double* sumsq = nullptr;
  float* shift_f = nullptr;  // the shift as float, for the vector sums
  int64_t rows = 0;
};

// Merges the shifted sums of panel p's chunks (one per row block, each
// indexed from the panel's first column; see GemmPlan) into mean and biased
// variance of its `cols` columns, chunk by chunk in row order (Chan et al.'s
// pairwise update). Every column has the same row counts, so the weights of
// each merge are scalars and the column loop is free of divisions and of
// dependences between columns.
inline void MergeStats(const GemmStatsChunk* chunks, int64_t count,
                       int64_t cols, double* mean, double* var) {
  std::fill(mean, mean + cols, 0.0);
  std::fill(var, var + cols, 0.0);  // M2, the sum of squared deviations
  double rows = 0;
  for (int64_t i = 0; i < count; ++i) {
    const GemmStatsChunk& c = chunks[i];
    if (c.rows == 0) continue;
    const double nb = double(c.rows), total = rows + nb;
    const double inv_nb = 1.0 / nb, w_mean = nb / total,
                 w_m2 = rows * nb / total;
    for (int64_t j = 0; j < cols; ++j) {
      const double mb = c.shift[j] + c.sum[j] * inv_nb;
      const double m2b = c.sumsq[j] - c.sum[j] * c.sum[j] * inv_nb;
      const double delta = mb - mean[j];
      mean[j] += delta * w_mean;
      var[j] += m2b + delta * delta * w_m2;
    }
    rows = total;
  }
  const double inv_rows = rows > 0 ? 1.0 / rows : 0.0;
  for (int64_t j = 0; j < cols; ++j) var[j] = std::max(0.0, var[j] * inv_rows);
}

// The work of one call: units of one group of column panels (one panel, or
// the panels a wide tile computes together) × one block of rows, group-major
// (unit u = group·row_blocks + row block), shared among the threads
// by WorkRanges (ops/work_ranges.h). Thread t's home range is a contiguous
// run of units, so with as many panels as threads it starts on its own
// panels, as a static split would: each thread streams only its share of B.
// The row blocks depend on M alone, never on the thread count, and so do the
// statistics chunks (one per unit, merged over a panel's row blocks in
// order): every thread count gives the same bits.
struct GemmPlan {
  int threads = 1;
  int64_t kc = 256;
  int64_t m = 0, panels = 0;
  int64_t mb = kGemmMR;  // rows per block: a multiple of kGemmMR, or all M
  int64_t row_blocks = 1;
  int64_t group = 1;  // panels per unit

  // Row blocks of at least 2 tiles, and at most 16 blocks: units small
  // enough that the threads finish close together (the last unit decides
  // when the call ends), few enough that the statistics chunks stay long.
  static int64_t RowsPerBlock(int64_t m) {
    const int64_t tiles = (m + kGemmMR - 1) / kGemmMR;
    return std::max<int64_t>(2, (tiles + 15) / 16) * kGemmMR;
  }

  // `group`: panels per unit (1, or the wide tile's panels for M <=
  // kGemmWideM; the statistics chunks need 1).
  static GemmPlan Make(int threads, int64_t m, int64_t k, int64_t panels,
                       int64_t kc_max, int64_t group = 1) {
    GemmPlan plan;
    plan.m = m;
    plan.panels = panels;
    plan.group = std::max<int64_t>(1, group);
    plan.mb = RowsPerBlock(m);
    plan.row_blocks = std::max<int64_t>(1, (m + plan.mb - 1) / plan.mb);
    // Never more threads than there are units.
    plan.threads = int(
        std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, plan.units())));
    // The same blocks for every M: a row's outputs do not depend on the
    // rows it runs with (a session's chunks, a server's batches).
    if (k <= kc_max) {
      plan.kc = std::max<int64_t>(k, 1);
    } else {
      // Equal K blocks no longer than kc_max, a multiple of 8.
      const int64_t blocks = (k + kc_max - 1) / kc_max;
      plan.kc = ((k + blocks - 1) / blocks + 7) / 8 * 8;
    }
    return plan;
  }

  // Rows in `blocks` equal blocks (a GEMM over A's nonzeros; see
  // GemmPanels). Not with statistics chunks, whose rows are blocks of tiles.
  void SetRowBlocks(int64_t blocks) {
    mb = std::max<int64_t>(1, (m + blocks - 1) / std::max<int64_t>(1, blocks));
    row_blocks = std::max<int64_t>(1, (m + mb - 1) / mb);
  }

  int64_t groups() const { return (panels + group - 1) / group; }
  int64_t units() const { return row_blocks * groups(); }

  // The thread whose home range holds unit u (see WorkRanges::Reset).
  int HomeOf(int64_t u) const { return int(((u + 1) * threads - 1) / units()); }
  // Odd threads walk their home range downwards (ops/work_ranges.h): in the
  // panels that start in one, the row blocks are numbered from the bottom,
  // so that those threads still read A top down, as the hardware prefetcher
  // and the prefetch of the next tile's rows expect (read bottom up, the
  // two-thread trainer took 4.5% longer per epoch, median of 10 paired
  // runs).
  GemmRange Unit(int64_t u) const {
    GemmRange r;
    const int64_t g = u / row_blocks;
    r.p = g * group;
    r.p_end = std::min(panels, r.p + group);
    int64_t rb = u % row_blocks;
    if (threads > 1 && HomeOf(g * row_blocks) % 2 == 1) {
      rb = row_blocks - 1 - rb;
    }
    r.m_begin = std::min(m, rb * mb);
    r.m_end = std::min(m, (rb + 1) * mb);
    r.m_chunk = int(rb);
    return r;
  }
  // The rows of statistics chunk i.
  int64_t ChunkRows(int i) const {
    return std::min(m, (i + 1) * mb) - std::min(m, i * mb);
  }
};

// kBiasStats' state for one call: the chunks of sums (one per unit of the
// GEMM's plan, see GemmPlan), or of `pass`, the plan of a pass over the
// stored Y that sums them after the GEMM (one over A's nonzeros, which has no
// statistics epilogue; nullptr: the epilogue sums them).
struct GemmStats {
  GemmStatsChunk* chunks = nullptr;
  const GemmPlan* pass = nullptr;
};

}  // namespace ballast::ops

#endif  // BALLAST_OPS_LINEAR_GEMM_PLAN_H_
