#include "ops/block/lbr.h"

#include <cmath>
#include <cstring>
#include <string>

#include "ops/block/block_kernels.h"
#include "ops/ref/fold.h"

namespace ballast::ops {
namespace {

Status CheckParams(const BlockParams& p, const char* what) {
  if (p.K < 1 || p.N < 1) {
    return InvalidArgument(std::string(what) + ": K = " + std::to_string(p.K) +
                           " and N = " + std::to_string(p.N) +
                           " must both be >= 1");
  }
  if (p.w == nullptr || p.running_mean == nullptr || p.running_var == nullptr) {
    return InvalidArgument(std::string(what) +
                           ": weight and running statistics are required");
  }
  if (!(p.eps > 0)) {
    return InvalidArgument(std::string(what) +
                           ": eps = " + std::to_string(p.eps) + " must be > 0");
  }
  return Status::Ok();
}

std::vector<float> CopyOr(const float* p, int64_t n, float fill) {
  return p ? std::vector<float>(p, p + n) : std::vector<float>(size_t(n), fill);
}

}  // namespace

Result<EvalBlock> EvalBlock::Create(const BlockParams& p, bool fused) {
  BALLAST_RETURN_IF_ERROR(CheckParams(p, "linear_bn_relu eval"));
  EvalBlock e;
  e.fused_ = fused;
  e.K_ = p.K;
  e.N_ = p.N;
  const size_t N = size_t(p.N);
  std::vector<float> w_folded(size_t(p.K) * N);
  e.bias_.resize(N);
  e.scale_.resize(N);
  e.shift_.resize(N);
  ref::fold_batchnorm(p.w, p.b, p.gamma, p.beta, p.running_mean, p.running_var,
                      p.eps, p.K, p.N, w_folded.data(), e.bias_.data(),
                      e.scale_.data(), e.shift_.data());
  if (fused) {
    e.packed_ = PackB(w_folded.data(), p.K, p.N, 1, p.K);
  } else {
    e.packed_ = PackB(p.w, p.K, p.N, 1, p.K);
    e.bias_ = CopyOr(p.b, p.N, 0.0f);
  }
  return e;
}

Status EvalBlock::Run(const float* x, int64_t M, float* y, int threads) const {
  const GemmArgs args{x, K_, 1, M, y, N_, threads};
  if (fused_) {
    EpilogueArgs ep;
    ep.bias = bias_.data();
    return Gemm(args, packed_, Epilogue::kBiasRelu, ep);
  }
  BALLAST_RETURN_IF_ERROR(Gemm(args, packed_, Epilogue::kNone, {}));
  BiasAdd(y, M, N_, bias_.data(), threads);
  ScaleShift(y, M, N_, scale_.data(), shift_.data(), threads);
  Relu(y, y, M * N_, threads);
  return Status::Ok();
}

Result<TrainBlock> TrainBlock::Create(const BlockParams& p, double dropout,
                                      double momentum, int64_t max_batch) {
  BALLAST_RETURN_IF_ERROR(CheckParams(p, "linear_bn_relu train"));
  if (!(dropout >= 0.0 && dropout <= 1.0)) {
    return InvalidArgument("linear_bn_relu train: dropout p = " +
                           std::to_string(dropout) + " must be in [0, 1]");
  }
  if (max_batch < 2) {
    return InvalidArgument(
        "linear_bn_relu train: max_batch = " + std::to_string(max_batch) +
        " must be >= 2 (BatchNorm needs 2 rows)");
  }
  TrainBlock t;
  t.K_ = p.K;
  t.N_ = p.N;
  t.max_batch_ = max_batch;
  t.eps_ = p.eps;
  t.p_ = dropout;
  t.momentum_ = momentum;
  t.w_.assign(p.w, p.w + p.K * p.N);
  t.b_ = CopyOr(p.b, p.N, 0.0f);
  t.affine_ = p.gamma != nullptr;
  t.gamma_ = CopyOr(p.gamma, p.N, 1.0f);
  t.beta_ = CopyOr(p.beta, p.N, 0.0f);
  t.running_mean_.assign(p.running_mean, p.running_mean + p.N);
  t.running_var_.assign(p.running_var, p.running_var + p.N);
  t.packed_w_ = PackB(t.w_.data(), p.K, p.N, 1, p.K);
  t.packed_wt_ = PackB(t.w_.data(), p.N, p.K, p.K, 1);
  const size_t N = size_t(p.N);
  t.z_.resize(size_t(max_batch) * N);
  t.mean_.resize(N);
  t.rstd_.resize(N);
  t.mean_d_.resize(N);
  t.var_d_.resize(N);
  t.mask_.resize(size_t(max_batch * MaskWordsPerRow(p.N)));
  return t;
}

void TrainBlock::UpdateRunning(const double* mean, const double* var,
                               int64_t M) {
  const double m = momentum_;
  const double unbias = double(M) / double(M - 1);
  for (int64_t n = 0; n < N_; ++n) {
    running_mean_[size_t(n)] =
        float((1 - m) * running_mean_[size_t(n)] + m * mean[n]);
    running_var_[size_t(n)] =
        float((1 - m) * running_var_[size_t(n)] + m * var[n] * unbias);
    mean_[size_t(n)] = float(mean[n]);
    rstd_[size_t(n)] = float(1.0 / std::sqrt(var[n] + eps_));
  }
}

Status TrainBlock::Forward(const float* x, int64_t M, float* out,
                           const RngSlice& rng, bool fused, int threads) {
  if (M < 2 || M > max_batch_) {
    return InvalidArgument("linear_bn_relu train: batch of " +
                           std::to_string(M) +
                           " rows; training needs 2 <= rows <= max_batch = " +
                           std::to_string(max_batch_));
  }
  x_ = x;
  M_ = M;
  const GemmArgs args{x, K_, 1, M, z_.data(), N_, threads};
  if (fused) {
    EpilogueArgs ep;
    ep.bias = b_.data();
    ep.mean = mean_d_.data();
    ep.var = var_d_.data();
    BALLAST_RETURN_IF_ERROR(Gemm(args, packed_w_, Epilogue::kBiasStats, ep));
    UpdateRunning(mean_d_.data(), var_d_.data(), M);
    BnForwardArgs a{z_.data(),     mean_.data(), rstd_.data(),
                    gamma_.data(), beta_.data(), p_,
                    rng,           out,          mask_.data()};
    BnReluDropoutForward(a, M, N_, threads);
    unfused_forward_ = false;
    return Status::Ok();
  }
  // Unfused: one trip over memory per op.
  BALLAST_RETURN_IF_ERROR(Gemm(args, packed_w_, Epilogue::kNone, {}));
  BiasAdd(z_.data(), M, N_, b_.data(), threads);
  ColumnMoments(z_.data(), M, N_, mean_d_.data(), var_d_.data(), threads);
  UpdateRunning(mean_d_.data(), var_d_.data(), M);
  std::vector<float>& scale = scratch_scale_;
  std::vector<float>& shift = scratch_shift_;
  scale.resize(size_t(N_));
  shift.resize(size_t(N_));
  for (int64_t n = 0; n < N_; ++n) {
    scale[size_t(n)] = gamma_[size_t(n)] * rstd_[size_t(n)];
    shift[size_t(n)] = beta_[size_t(n)] - mean_[size_t(n)] * scale[size_t(n)];
  }
  // bn_ keeps the ReLU input for the unfused backward, as autograd would.
  bn_.resize(size_t(M * N_));
  std::memcpy(bn_.data(), z_.data(), size_t(M * N_) * sizeof(float));
  ScaleShift(bn_.data(), M, N_, scale.data(), shift.data(), threads);
  Relu(bn_.data(), out, M * N_, threads);
  if (p_ > 0) Dropout(out, M, N_, p_, rng, mask_.data(), threads);
  unfused_forward_ = true;
  return Status::Ok();
}

Status TrainBlock::Backward(const float* d_out, float* dx, float* dw, float* db,
                            float* dgamma, float* dbeta, int threads) {
  if (x_ == nullptr) {
    return FailedPrecondition("linear_bn_relu train: Backward before Forward");
  }
  const int64_t M = M_;
  dz_.resize(size_t(M * N_));
  BnBackwardArgs a{z_.data(),
                   mean_.data(),
                   rstd_.data(),
                   affine_ ? gamma_.data() : nullptr,
                   d_out,
                   mask_.data(),
                   p_,
                   dz_.data(),
                   dgamma,
                   dbeta,
                   db};
  if (unfused_forward_) {
    // One trip over memory per op: dropout, ReLU, then BatchNorm.
    dbn_.resize(size_t(M * N_));
    const float* g = d_out;
    if (p_ > 0) {
      DropoutBackward(mask_.data(), d_out, dbn_.data(), M, N_, p_, threads);
      g = dbn_.data();
    }
    ReluBackward(bn_.data(), g, dbn_.data(), M * N_, threads);
    a.d_out = dbn_.data();
    a.pass_mask = nullptr;
  }
  BnReluDropoutBackward(a, M, N_, threads);
  // dW [N, K] = dZᵀ·X: A(n, m) = dz[m·N + n], B(m, k) = x[m·K + k].
  PackBInto(packed_x_, x_, M, K_, K_, 1, threads);
  BALLAST_RETURN_IF_ERROR(Gemm({dz_.data(), 1, N_, N_, dw, K_, threads},
                               packed_x_, Epilogue::kNone, {}));
  if (dx) {
    // dX [M, K] = dZ·W: B(n, k) = w[n·K + k].
    BALLAST_RETURN_IF_ERROR(Gemm({dz_.data(), N_, 1, M, dx, K_, threads},
                                 packed_wt_, Epilogue::kNone, {}));
  }
  return Status::Ok();
}

}  // namespace ballast::ops
