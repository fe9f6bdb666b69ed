// The standard block Linear → BatchNorm1d → ReLU on oneDNN (2.6, CPU engine):
// the second backend and the speed bar for ops/block. Dropout is not here
// (identity at evaluation; training runs with p = 0).
//
// Evaluation, y = relu(BN_eval(x·Wᵀ + b)), three ways (EvalMode):
//   kFolded   BN folded into W' = diag(s)·W, b' = s ⊙ (b − running_mean) + β,
//             s = γ/√(running_var + ε) (ops/ref/fold.h); one inner_product
//             (forward_inference) with bias and an eltwise_relu post-op.
//   kPostOps  unfolded W, b; one inner_product with the post-ops
//             binary_mul(s) · binary_add(t = β − running_mean·s) · relu, each
//             of s and t a per-column {1, N} tensor, so that
//             y = relu(s·(x·Wᵀ + b − running_mean) + β).
//   kUnfused  three primitives, three trips over y: inner_product with bias;
//             batch_normalization forward_inference (use_global_stats +
//             use_scale_shift) in place; eltwise relu in place.
// Weights are reordered once into the layout oneDNN prefers for the inner
// product (format_tag::any).
//
// Training (TrainBlock), BN with batch statistics:
//   forward:  z = x·Wᵀ + b (inner_product forward_training);
//             ŷ = batch_normalization forward_training (use_scale_shift),
//             which outputs the batch mean and the *biased* variance σ²_B;
//             out = relu(ŷ) (eltwise forward_training).
//             The running statistics follow PyTorch (see ops/ref/batchnorm.h):
//             running_mean ← (1 − m)·running_mean + m·μ_B,
//             running_var  ← (1 − m)·running_var  + m·σ²_B·M/(M − 1);
//             oneDNN's variance is biased, so the M/(M − 1) is applied here.
//   backward: relu backward → dŷ; batch_normalization backward (prop_kind
//             backward: dz, dγ, dβ); inner_product backward_data (dx) and
//             backward_weights (dW, db).
//
// Primitives are created on first use for each (batch size M, threads) pair
// and cached (an LRU map of 64 shapes, so that a server cycling through
// many batch sizes does not rebuild them on every call); creation and every
// later run reuse them.
//
// Threads. This oneDNN is built on the OpenMP runtime (libgomp, shared with
// ballast's own kernels) and sizes its parallel work and its scratchpad by
// omp_get_max_threads() when a primitive is *created*; a primitive must then
// run with the same count. So each call with `threads` (>= 1) saves
// omp_get_max_threads(), calls omp_set_num_threads(threads), creates (if
// needed) and executes the primitives, and restores the saved value before
// returning, on success and on error. omp_set_num_threads sets the calling
// thread's OpenMP ICV only; other threads are not affected. This is also why
// the cache key includes `threads`.
//
// Concurrency: Run/Forward/Backward hold a per-object mutex (cached memory
// handles and the scratchpad are per object), so concurrent calls on one
// object are safe but serialized; use one object per calling thread for
// parallel throughput.
//
// Errors (bad sizes, null pointers, any oneDNN exception) come back as a
// Status whose message starts with "onednn eval block: " or
// "onednn train block: "; no exception leaves these functions. Built without
// oneDNN (BALLAST_WITH_ONEDNN=OFF), Create returns Unimplemented and
// Available() is false.
//
// This header exposes no oneDNN or OpenMP type.
#ifndef BALLAST_OPS_ONEDNN_ONEDNN_BLOCK_H_
#define BALLAST_OPS_ONEDNN_ONEDNN_BLOCK_H_

#include <cstdint>
#include <memory>

#include "ballast/status.h"

namespace ballast::ops::onednn {

// True when ballast was built with oneDNN.
bool Available();

enum class EvalMode { kFolded, kPostOps, kUnfused };
const char* EvalModeName(EvalMode mode);

// Borrowed pointers, read during Create only.
struct BlockParams {
  const float* w = nullptr;             // [N, K] (torch.nn.Linear layout)
  const float* b = nullptr;             // [N] or nullptr (no bias)
  const float* gamma = nullptr;         // [N] or nullptr (affine = false: 1)
  const float* beta = nullptr;          // [N] or nullptr (affine = false: 0)
  const float* running_mean = nullptr;  // [N]; TrainBlock: nullptr means 0
  const float* running_var = nullptr;   // [N]; TrainBlock: nullptr means 1
  int64_t K = 0, N = 0;                 // in and out features
  double eps = 1e-5;
  // EvalBlock: false leaves out the ReLU. kFolded with running_mean and
  // running_var both nullptr (and no γ/β) is a plain Linear, W and b as given.
  bool relu = true;
};

// Evaluation of one block: y = relu(BN_eval(x·Wᵀ + b)).
class EvalBlock {
 public:
  static Result<std::unique_ptr<EvalBlock>> Create(const BlockParams& p,
                                                   EvalMode mode);
  // x [M, K] → y [M, N], row-major, any alignment. M = 0 does nothing.
  Status Run(const float* x, int64_t M, float* y, int threads);

  EvalMode mode() const;
  int64_t K() const;
  int64_t N() const;

  ~EvalBlock();
  EvalBlock(const EvalBlock&) = delete;
  EvalBlock& operator=(const EvalBlock&) = delete;

 private:
  struct Impl;
  explicit EvalBlock(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Training forward and backward of one block with p = 0 dropout.
class TrainBlock {
 public:
  // Copies W, b, γ, β and the initial running statistics.
  static Result<std::unique_ptr<TrainBlock>> Create(const BlockParams& p);

  // x [M, K] → out [M, N] with batch statistics (M ≥ 2, as PyTorch requires);
  // updates the running statistics. Keeps a copy of x and the intermediate
  // values for Backward.
  Status Forward(const float* x, int64_t M, float* out, int threads);
  // Gradients for the last Forward's batch, given d_out [M, N]: dx [M, K],
  // dw [N, K], db [N], dgamma [N], dbeta [N]. Any output may be nullptr to
  // skip it (without dx, backward_data does not run; without dw and db,
  // backward_weights does not run). db is Σ_m dz even for a block without a
  // bias. May be called again for the same batch.
  Status Backward(const float* d_out, float* dx, float* dw, float* db,
                  float* dgamma, float* dbeta, int threads);

  const float* running_mean() const;  // [N]
  const float* running_var() const;   // [N]
  // BN momentum m of the running-statistics update; PyTorch's 0.1 by default.
  // Must lie in [0, 1].
  Status set_momentum(double momentum);
  double momentum() const;

  // The parameters in place (row-major, the same layout as BlockParams), for
  // an optimizer to update between steps. gamma()/beta() are nullptr when
  // the block was created without them; b() is nullptr without a bias.
  float* w();
  float* b();
  float* gamma();
  float* beta();
  int64_t K() const;
  int64_t N() const;

  ~TrainBlock();
  TrainBlock(const TrainBlock&) = delete;
  TrainBlock& operator=(const TrainBlock&) = delete;

 private:
  struct Impl;
  explicit TrainBlock(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ballast::ops::onednn

#endif  // BALLAST_OPS_ONEDNN_ONEDNN_BLOCK_H_
