// The standard block Linear → BatchNorm1d → ReLU (→ Dropout) on the Highway
// backend, fused and unfused, for evaluation and training. These compose the
// GEMM (ops/linear/gemm.h) and the block passes (block_kernels.h); the
// runtime and the benchmarks use them.
//
// Evaluation, fused:   BN folded into W', b'; one GEMM with a bias+ReLU
//                      epilogue (dropout is the identity).
// Evaluation, unfused: GEMM; bias pass; BN scale/shift pass; ReLU pass.
// Training forward, fused: GEMM with a bias + column-statistics epilogue;
//                      one pass for BN + ReLU + dropout (mask bits).
// Training forward, unfused: GEMM; bias pass; moments pass; BN pass; ReLU
//                      pass; dropout pass.
// Training backward, fused: one pass through the masks and BN per column
//                      block, then dW = dZᵀ·X and dX = dZ·W.
// Training backward, unfused: dropout pass; ReLU pass; BN backward; GEMMs.
#ifndef BALLAST_OPS_BLOCK_LBR_H_
#define BALLAST_OPS_BLOCK_LBR_H_

#include <cstdint>
#include <vector>

#include "ballast/rng.h"
#include "ballast/status.h"
#include "ops/linear/gemm.h"

namespace ballast::ops {

struct BlockParams {
  const float* w = nullptr;      // [N, K]
  const float* b = nullptr;      // [N] or nullptr
  const float* gamma = nullptr;  // [N] or nullptr (affine = false)
  const float* beta = nullptr;
  const float* running_mean = nullptr;  // [N]
  const float* running_var = nullptr;   // [N]
  int64_t K = 0, N = 0;
  double eps = 1e-5;
};

// Evaluation of one block; weights packed once at creation.
class EvalBlock {
 public:
  static Result<EvalBlock> Create(const BlockParams& p, bool fused);
  // x [M, K] → y [M, N]. Unfused runs its passes in place on y.
  Status Run(const float* x, int64_t M, float* y, int threads) const;
  bool fused() const { return fused_; }

 private:
  bool fused_ = true;
  int64_t K_ = 0, N_ = 0;
  PackedB packed_;
  std::vector<float> bias_, scale_, shift_;
};

// Training of one block: forward with batch statistics and backward.
class TrainBlock {
 public:
  // Copies the parameters; `p.running_*` are the initial running stats.
  static Result<TrainBlock> Create(const BlockParams& p, double dropout,
                                   double momentum, int64_t max_batch);

  // x [M, K] → out [M, N]; updates the running statistics (PyTorch's rule).
  Status Forward(const float* x, int64_t M, float* out, const RngSlice& rng,
                 bool fused, int threads);
  // Gradients for the last Forward, on the path it took (fused: one pass
  // through the masks; unfused: dropout, ReLU and BN backward passes).
  // dx [M, K] (nullptr to
  // skip), dw [N, K], db [N], dgamma [N], dbeta [N].
  Status Backward(const float* d_out, float* dx, float* dw, float* db,
                  float* dgamma, float* dbeta, int threads);

  const std::vector<float>& running_mean() const { return running_mean_; }
  const std::vector<float>& running_var() const { return running_var_; }
  const std::vector<float>& batch_mean() const { return mean_; }
  const std::vector<float>& batch_rstd() const { return rstd_; }
  const std::vector<uint64_t>& pass_mask() const { return mask_; }

 private:
  void UpdateRunning(const double* mean, const double* var, int64_t M);

  int64_t K_ = 0, N_ = 0, max_batch_ = 0, M_ = 0;
  double eps_ = 1e-5, p_ = 0.0, momentum_ = 0.1;
  std::vector<float> w_, b_, gamma_, beta_, running_mean_, running_var_;
  bool affine_ = true;
  PackedB packed_w_;   // B = Wᵀ for the forward
  PackedB packed_wt_;  // B = W for dX = dZ·W
  PackedB packed_x_;   // B = X for dW = dZᵀ·X, repacked every backward
  const float* x_ = nullptr;  // the last forward's input (caller keeps it)
  std::vector<float> z_, mean_, rstd_;
  std::vector<double> mean_d_, var_d_;
  std::vector<uint64_t> mask_;
  std::vector<float> dz_, bn_, dbn_, scratch_scale_, scratch_shift_;
  bool unfused_forward_ = false;
};

}  // namespace ballast::ops

#endif  // BALLAST_OPS_BLOCK_LBR_H_
