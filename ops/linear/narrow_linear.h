// y = x·Wᵀ + b for a Linear with few outputs (a classifier's last layer:
// the book's 256 → 10), as dot products with K in the vector lanes.
//
// The GEMM (gemm.h) puts outputs in the lanes: ten outputs fill ten of a
// 16-lane panel, and every multiply-add needs a broadcast of its own from a
// row of x, so at batch 64 and 256 it took 1.2-1.4 times oneDNN's time for
// this layer. Here each output is a dot product of a row of x with a row of
// W (torch's [N, K] layout, unpacked), summed lane by lane along K and then
// across the lanes: tiles of up to 4 rows × 4 outputs, 16 chains, two loads
// per four multiply-adds, no padding.
//
// Each row's outputs depend on that row alone and are summed in a fixed
// order (per lane along K, then across the lanes in an order fixed per
// target), so the result is the same bits on any thread count; it differs
// from the GEMM's K-ordered sums in the last bits.
#ifndef BALLAST_OPS_LINEAR_NARROW_LINEAR_H_
#define BALLAST_OPS_LINEAR_NARROW_LINEAR_H_

#include <cstdint>

#include "ballast/status.h"
#include "ops/linear/gemm.h"

namespace ballast::ops {

struct NarrowLinearArgs {
  const float* x = nullptr;  // [M, K], row stride ldx
  int64_t ldx = 0, M = 0;
  const float* w = nullptr;  // [N, K] row-major (row stride K)
  int64_t N = 0, K = 0;
  const float* bias = nullptr;  // [N], or nullptr for none
  float* y = nullptr;           // [M, N], row stride ldy
  int64_t ldy = 0;
  float slope = 0.0f;  // kBiasLeakyRelu's negative slope
  int threads = 1;
};

// Whether NarrowLinear computes a layer of N outputs from K inputs faster
// than the GEMM: fewer than 16 outputs (a GEMM panel of 16 wastes none),
// and K long enough that the multiply-adds outweigh the sums across lanes
// (see narrow_linear.cc for the measurements).
bool NarrowLinearPays(int64_t N, int64_t K);

// Runs y = act(x·Wᵀ + bias) for epilogue kNone, kBias, kBiasRelu or
// kBiasLeakyRelu (ReLU and leaky ReLU as the GEMM's epilogues compute them);
// rows split over `threads` (one inside a parallel region or task).
Status NarrowLinear(const NarrowLinearArgs& args, Epilogue epilogue);

}  // namespace ballast::ops

#endif  // BALLAST_OPS_LINEAR_NARROW_LINEAR_H_
