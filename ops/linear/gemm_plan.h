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

// Rows and column panels one thread owns; m_chunk indexes the statistics
// chunk of its rows.
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

// threads = tn × tm: tn groups of panels, tm groups of rows.
struct GemmPlan {
  int threads = 1;
  int tn = 1, tm = 1;
  int64_t kc = 256;

  static GemmPlan Make(int threads, int64_t m, int64_t k, int64_t panels,
                       int64_t kc_max) {
    GemmPlan plan;
    const int64_t row_tiles = (m + kGemmMR - 1) / kGemmMR;
    // Never more threads than there are tiles.
    const int64_t tiles = std::max<int64_t>(1, row_tiles * panels);
    plan.threads = int(std::clamp<int64_t>(threads, 1, tiles));
    // Split panels first: each thread streams only its share of B.
    plan.tn = int(std::min<int64_t>(plan.threads, panels));
    if (plan.tn < 1) plan.tn = 1;
    plan.tm = plan.threads / plan.tn;
    plan.threads = plan.tn * plan.tm;
    if (m <= kGemmSmallM || k <= kc_max) {
      plan.kc = std::max<int64_t>(k, 1);
    } else {
      // Equal K blocks no longer than kc_max, a multiple of 8.
      const int64_t blocks = (k + kc_max - 1) / kc_max;
      plan.kc = ((k + blocks - 1) / blocks + 7) / 8 * 8;
    }
    return plan;
  }

  GemmRange Range(int t, int64_t m, int64_t panels) const {
    GemmRange r;
    const int tn_i = t % tn, tm_i = t / tn;
    r.p_begin = panels * tn_i / tn;
    r.p_end = panels * (tn_i + 1) / tn;
    // Row groups start on tile boundaries.
    const int64_t row_tiles = (m + kGemmMR - 1) / kGemmMR;
    r.m_begin = std::min(m, row_tiles * tm_i / tm * kGemmMR);
    r.m_end = std::min(m, row_tiles * (tm_i + 1) / tm * kGemmMR);
    r.m_chunk = tm_i;
    return r;
  }
};

}  // namespace ballast::ops

#endif  // BALLAST_OPS_LINEAR_GEMM_PLAN_H_
