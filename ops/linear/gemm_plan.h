// How one GEMM call is split over threads and K blocks (target-independent).
#ifndef BALLAST_OPS_LINEAR_GEMM_PLAN_H_
#define BALLAST_OPS_LINEAR_GEMM_PLAN_H_

#include <algorithm>
#include <cstdint>

namespace ballast::ops {

inline constexpr int kGemmMR = 6;          // rows per register tile
inline constexpr int64_t kGemmSmallM = 4;  // M <= this streams whole panels

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

// The rows and column panels of one work unit; m_chunk indexes the
// statistics chunk of its rows.
struct GemmRange {
  int64_t m_begin = 0, m_end = 0, p_begin = 0, p_end = 0;
  int m_chunk = 0;
};

// Shifted per-column sums of one chunk of rows ([n] each).
struct GemmStatsChunk {
  double* shift = nullptr;
  double* sum = nullptr;
  double* sumsq = nullptr;
  float* shift_f = nullptr;  // the shift as float, for the vector sums
  int64_t rows = 0;
};

// The work of one call: units of one column panel × one block of rows,
// panel-major (unit u = p·row_blocks + row block), shared among the threads
// by WorkRanges (ops/work_ranges.h). Thread t's home range is a contiguous
// run of units, so with as many panels as threads it starts on its own
// panels, as a static split would: each thread streams only its share of B.
// The row blocks depend on M alone, never on the thread count, and so do the
// statistics chunks (one per row block): every thread count gives the same
// bits.
struct GemmPlan {
  int threads = 1;
  int64_t kc = 256;
  int64_t m = 0, panels = 0;
  int64_t mb = kGemmMR;  // rows per block, a multiple of kGemmMR
  int64_t row_blocks = 1;

  // Row blocks of at least 2 tiles, and at most 16 blocks: units small
  // enough that the threads finish close together (the last unit decides
  // when the call ends), few enough that the statistics chunks stay long.
  static int64_t RowsPerBlock(int64_t m) {
    const int64_t tiles = (m + kGemmMR - 1) / kGemmMR;
    return std::max<int64_t>(2, (tiles + 15) / 16) * kGemmMR;
  }

  static GemmPlan Make(int threads, int64_t m, int64_t k, int64_t panels,
                       int64_t kc_max) {
    GemmPlan plan;
    plan.m = m;
    plan.panels = panels;
    plan.mb = RowsPerBlock(m);
    plan.row_blocks = std::max<int64_t>(1, (m + plan.mb - 1) / plan.mb);
    // Never more threads than there are units.
    plan.threads = int(
        std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, plan.units())));
    if (m <= kGemmSmallM || k <= kc_max) {
      plan.kc = std::max<int64_t>(k, 1);
    } else {
      // Equal K blocks no longer than kc_max, a multiple of 8.
      const int64_t blocks = (k + kc_max - 1) / kc_max;
      plan.kc = ((k + blocks - 1) / blocks + 7) / 8 * 8;
    }
    return plan;
  }

  int64_t units() const { return row_blocks * panels; }

  GemmRange Unit(int64_t u) const {
    GemmRange r;
    r.p_begin = u / row_blocks;
    r.p_end = r.p_begin + 1;
    const int64_t rb = u % row_blocks;
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

}  // namespace ballast::ops

#endif  // BALLAST_OPS_LINEAR_GEMM_PLAN_H_
