// dX = dZ·W only where the layer before keeps a gradient: the input
// gradient of a Linear after a fused block (Linear → BatchNorm1d → ReLU →
// Dropout) is read by that block's backward pass through its pass mask
// (ops/block/block_kernels.h), so the other three quarters of dX (the book's
// recipe) need not be computed. Each kept value is one dot product over K;
// the others are written as zeros.
#ifndef BALLAST_OPS_LINEAR_MASKED_INPUT_GRAD_H_
#define BALLAST_OPS_LINEAR_MASKED_INPUT_GRAD_H_

#include <cstdint>

namespace ballast::ops {

struct MaskedInputGradArgs {
  const float* dz = nullptr;  // [M, K] row-major
  int64_t M = 0, K = 0, N = 0;
  // Wᵀ [N, K] row-major (row stride K), for W [K, N]: each kept value reads
  // one row. (Read from the trainer's panel layout, a row's pieces lie a
  // panel apart, N·W floats, which for N = 256 and AVX2's 16-float panels
  // put all sixteen in one L1 set: the kernel then ran slower than the
  // dense GEMM. AVX3's 64-float pieces, four lines each, read in place: see
  // wt_panel_width.)
  const float* wt = nullptr;
  // Pass mask [M, N], word-major (MaskWord in ops/block/block_kernels.h).
  const uint64_t* mask = nullptr;
  float* dx = nullptr;  // [M, N] row-major
  // 0: wt is row-major as above. Else wt is Wᵀ in the GEMM's panel layout
  // of that width (the trainer's weights, ops::PanelB): Wᵀ(n, k) at
  // (k / W)·N·W + n·W + k % W, a power of two and a multiple of two vectors
  // (see MaskedPanelsReadable). The same bits as row-major.
  int64_t wt_panel_width = 0;
};

// Whether MaskedInputGrad reads Wᵀ in place in panels `width` wide, on the
// current target: a row's pieces, `width` floats each, hold two vectors at
// least, and at least four cache lines (a row of narrower pieces falls into
// a few L1 sets; see `wt`).
bool MaskedPanelsReadable(int64_t width);

// dx(m, n) = Σ_k dz(m, k)·Wᵀ(n, k) where the mask bit (m, n) is set, else
// 0. The sum runs in vector lanes over k and is then reduced: not the bits
// of the GEMM (one chain per output over k), the same bits on any thread
// count. Blocks of 32 rows are split over `threads`; a block reads each row
// of Wᵀ once for all its rows that keep that column, four dot products at a
// time sharing the loads of Wᵀ. The scalar twin is ref::linear_backward's
// dX (masked_input_grad_test).
//
// Hidden layer of the book's MLP (M = 128, K = N = 256, a quarter kept,
// AVX2, one thread, calls alternated, medians of 400): 0.66 of the dense
// GEMM's time with blocks of 16 rows; blocks of 32 took 0.85-0.96 of that
// (the rows of Wᵀ come from L2 once per block, and half as many blocks read
// them), blocks of 64 1.06-1.09 of 32 (the block's dZ no longer fits L1).
// One dot product per value, without the shared loads: 1.04.
// Over the output layer's K = 10 a dot product is mostly its reduction:
// the trainer keeps the dense GEMM there (kMaskedInputGradMinOutputs).
void MaskedInputGrad(const MaskedInputGradArgs& args, int threads);

}  // namespace ballast::ops

#endif  // BALLAST_OPS_LINEAR_MASKED_INPUT_GRAD_H_
