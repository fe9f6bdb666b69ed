// Elementwise passes of the standard block Linear → BatchNorm1d → ReLU →
// Dropout, vectorized with Highway and split over threads as the tasks of
// ops/tasks.h (OpenMP threads, or a training step's team). The
// fused passes share their units (forward: a group of 64-column mask words
// × a block of rows; backward: a strip of columns) among the threads
// dynamically, as the GEMMs do (ops/work_ranges.h): each thread starts on its
// own columns, and threads on cores of unequal speed finish together. Unfused
// dropout splits by columns (ops/block/block_split.h).
//
// Unfused passes (one trip over memory each) exist so fused and unfused
// plans can be compared on equal terms; the fused training passes do BN, ReLU
// and dropout in one trip forward and one (per column block) backward.
// All arrays are row-major [M, N] unless noted; `threads` is the caller's.
#ifndef BALLAST_OPS_BLOCK_BLOCK_KERNELS_H_
#define BALLAST_OPS_BLOCK_BLOCK_KERNELS_H_

#include <cstdint>

#include "ballast/rng.h"

namespace ballast::ops {

// --- unfused passes ---------------------------------------------------------
// y[m, n] += bias[n]
void BiasAdd(float* y, int64_t M, int64_t N, const float* bias, int threads);
// y[m, n] = y[m, n]·scale[n] + shift[n]  (BatchNorm in evaluation)
void ScaleShift(float* y, int64_t M, int64_t N, const float* scale,
                const float* shift, int threads);
// y = max(x, 0) over n elements (x == y allowed)
void Relu(const float* x, float* y, int64_t n, int threads);
// dx = dy where x > 0, else 0
void ReluBackward(const float* x, const float* dy, float* dx, int64_t n,
                  int threads);
// dx = dy·keep/(1 − p) with the mask of Dropout()
void DropoutBackward(const uint64_t* mask, const float* dy, float* dx,
                     int64_t M, int64_t N, double p, int threads);
// Per-column mean and biased variance of z [M, N], two passes in double.
void ColumnMoments(const float* z, int64_t M, int64_t N, double* mean,
                   double* var, int threads);
// Inverted dropout in place over [M, N] with the same keep rule and bit
// layout as the fused pass (see MaskWordsPerRow).
void Dropout(float* y, int64_t M, int64_t N, double p, const RngSlice& rng,
             uint64_t* mask, int threads);

// --- fused training passes --------------------------------------------------
// Masks hold one bit per element in 64-bit words, word-major: the word of
// columns [64·w, 64·w + 64) of row m is mask[w·M + m], bit n % 64. A
// thread writes whole words: its columns' run of words, or (the fused
// forward pass) a block of 16 rows of them. M·words per row words in all.
inline int64_t MaskWordsPerRow(int64_t N) { return (N + 63) / 64; }
inline int64_t MaskWord(int64_t M, int64_t m, int64_t n) {
  return n / 64 * M + m;
}
inline bool MaskBit(const uint64_t* mask, int64_t M, int64_t m, int64_t n) {
  return (mask[MaskWord(M, m, n)] >> (n % 64)) & 1;
}

// The keep rule shared by every dropout kernel: element i = m·N + n is kept
// when rng.Uniform(i) >= p, i.e. (rng.Bits(i) >> 8) >= ceil(p·2²⁴).
uint32_t DropoutThreshold(double p);

struct BnForwardArgs {
  const float* z;       // [M, N] Linear output (with bias)
  const float* mean;    // [N] batch mean
  const float* rstd;    // [N] 1/√(var + ε)
  const float* gamma;   // [N] or nullptr (affine = false)
  const float* beta;    // [N] or nullptr
  double p = 0.0;       // dropout probability
  RngSlice rng;         // dropout stream for this call, M·N draws
  float* out;           // [M, N] activations
  uint64_t* pass_mask;  // bit set where the gradient flows: kept and BN > 0
};
// out = dropout(relu(γ·(z − μ)·rstd + β)), one trip.
void BnReluDropoutForward(const BnForwardArgs& a, int64_t M, int64_t N,
                          int threads);
// The same over columns [n0, n1) of all M rows only, on the calling thread
// (the statistics' StatsReady hands a thread its columns as soon as their
// mean and variance are known). The pass mask is written in whole words, so
// n0 must be a multiple of 64 and n1 one too or N: ForwardColumnsAligned.
void BnReluDropoutForwardColumns(const BnForwardArgs& a, int64_t M, int64_t N,
                                 int64_t n0, int64_t n1);
inline bool ForwardColumnsAligned(int64_t N, int64_t n0, int64_t n1) {
  return n0 % 64 == 0 && (n1 % 64 == 0 || n1 == N) && 0 <= n0 && n0 <= n1 &&
         n1 <= N;
}

struct BnBackwardArgs {
  const float* z;
  const float* mean;
  const float* rstd;
  const float* gamma;         // nullptr: γ = 1
  const float* d_out;         // [M, N] gradient w.r.t. the block output
  const uint64_t* pass_mask;  // nullptr: d_out is already the BN gradient
  double p = 0.0;
  float* dz;      // [M, N] gradient w.r.t. z, or nullptr (see dz_panels)
  float* dgamma;  // [N] (always written, even if affine = false)
  float* dbeta;   // [N]
  float* dbias;   // [N] Σ_m dz (the Linear bias gradient) or nullptr
  // dz again (or only, with dz = nullptr) in the GEMM's panel layout of an
  // [M, N] B, panels `panel_width` wide (a multiple of the vector length):
  // dz(m, n) at [(n / W)·M·W + m·W + n % W]. The weight gradient's GEMM
  // reads dZ so, and this saves it packing dZ. Padding columns past N are
  // left as they are.
  float* dz_panels = nullptr;
  int64_t panel_width = 0;
};
// Through dropout and ReLU (the pass mask), then BatchNorm:
//   g = d_out·mask/(1 − p),  dβ = Σ g,  dγ = Σ g·x̂,
//   dz = γ·rstd·(g − dβ/M − x̂·dγ/M).
// Two streaming passes per strip of columns; the same bits on any thread
// count. Without a pass mask this is the plain BatchNorm backward
// (g = d_out) of the unfused path.
void BnReluDropoutBackward(const BnBackwardArgs& a, int64_t M, int64_t N,
                           int threads);

}  // namespace ballast::ops

#endif  // BALLAST_OPS_BLOCK_BLOCK_KERNELS_H_
