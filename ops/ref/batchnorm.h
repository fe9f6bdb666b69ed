// Reference BatchNorm1d over x [M, C] (batch M, channels C), PyTorch's exact
// semantics:
//   training:   y = γ·(x − μ_B)/√(σ²_B + ε) + β, σ²_B the biased batch
//   variance;
//               running_mean ← (1 − m)·running_mean + m·μ_B,
//               running_var  ← (1 − m)·running_var  + m·σ²_B·M/(M − 1),
//               m = momentum, or 1/num_batches_tracked when momentum is None
//               (a cumulative average); num_batches_tracked += 1.
//   evaluation: y = γ·(x − running_mean)/√(running_var + ε) + β, or the batch
//               statistics when track_running_stats is false.
// affine = false means γ = 1, β = 0 (pass nullptr).
#ifndef BALLAST_OPS_REF_BATCHNORM_H_
#define BALLAST_OPS_REF_BATCHNORM_H_

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "ballast/status.h"

namespace ballast::ref {

struct BatchNormOptions {
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  // nullopt: cumulative average
  bool affine = true;  // informational: γ/β nullptr is what disables them
  bool track_running_stats = true;
};

// Running statistics (nullptr members when track_running_stats is false).
template <typename T>
struct BatchNormRunning {
  T* mean = nullptr;               // [C]
  T* var = nullptr;                // [C]
  int64_t* num_batches = nullptr;  // scalar
};

// Training forward. x [M, C]; gamma, beta [C] or nullptr (affine = false);
// y [M, C]; saves the batch mean and rstd = 1/√(σ²_B + ε) [C] for backward.
// Updates `running` when track_running_stats. Fails when M < 2, as PyTorch
// does ("Expected more than 1 value per channel when training").
template <typename T>
Status batchnorm_forward_train(const T* x, const T* gamma, const T* beta, T* y,
                               T* save_mean, T* save_rstd,
                               BatchNormRunning<T> running, int64_t M,
                               int64_t C, const BatchNormOptions& opt) {
  if (M < 2) {
    return InvalidArgument(
        "batchnorm1d training: expected more than 1 value per channel, got "
        "input of shape [" +
        std::to_string(M) + ", " + std::to_string(C) + "]");
  }
  if (!(opt.eps > 0)) {
    return InvalidArgument("batchnorm1d: eps = " + std::to_string(opt.eps) +
                           " must be > 0");
  }
  const bool track = opt.track_running_stats && running.mean && running.var;
  if (track && !opt.momentum && !running.num_batches) {
    return InvalidArgument(
        "batchnorm1d: momentum = None (cumulative average) needs "
        "num_batches_tracked");
  }
  double factor = 0.0;
  if (track) {
    if (running.num_batches) ++*running.num_batches;
    factor = opt.momentum ? *opt.momentum : 1.0 / double(*running.num_batches);
  }
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0.0;
    for (int64_t m = 0; m < M; ++m) sum += double(x[m * C + c]);
    const double mean = sum / double(M);
    double ss = 0.0;
    for (int64_t m = 0; m < M; ++m) {
      const double d = double(x[m * C + c]) - mean;
      ss += d * d;
    }
    const double var = ss / double(M);  // biased, for normalization
    const double rstd = 1.0 / std::sqrt(var + opt.eps);
    const double g = gamma ? double(gamma[c]) : 1.0;
    const double b = beta ? double(beta[c]) : 0.0;
    for (int64_t m = 0; m < M; ++m) {
      y[m * C + c] = T((double(x[m * C + c]) - mean) * rstd * g + b);
    }
    if (save_mean) save_mean[c] = T(mean);
    if (save_rstd) save_rstd[c] = T(rstd);
    if (track) {
      const double unbiased = ss / double(M - 1);
      running.mean[c] =
          T((1.0 - factor) * double(running.mean[c]) + factor * mean);
      running.var[c] =
          T((1.0 - factor) * double(running.var[c]) + factor * unbiased);
    }
  }
  return Status::Ok();
}

// Evaluation forward with running statistics: x, y [M, C].
template <typename T>
void batchnorm_forward_eval(const T* x, const T* gamma, const T* beta,
                            const T* running_mean, const T* running_var, T* y,
                            int64_t M, int64_t C, double eps) {
  for (int64_t c = 0; c < C; ++c) {
    const double rstd = 1.0 / std::sqrt(double(running_var[c]) + eps);
    const double g = gamma ? double(gamma[c]) : 1.0;
    const double b = beta ? double(beta[c]) : 0.0;
    for (int64_t m = 0; m < M; ++m) {
      y[m * C + c] =
          T((double(x[m * C + c]) - double(running_mean[c])) * rstd * g + b);
    }
  }
}

// Backward of the training forward. With x̂ = (x − μ)·rstd and g = dy·γ:
//   dβ = Σ_m dy,  dγ = Σ_m dy·x̂,
//   dx = rstd·(g − mean_m(g) − x̂·mean_m(g·x̂))
// (the batch statistics depend on x; the running statistics do not enter).
// gamma nullptr means γ = 1; dgamma/dbeta may be nullptr.
template <typename T>
void batchnorm_backward(const T* x, const T* gamma, const T* save_mean,
                        const T* save_rstd, const T* dy, T* dx, T* dgamma,
                        T* dbeta, int64_t M, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    const double mean = double(save_mean[c]), rstd = double(save_rstd[c]);
    const double g = gamma ? double(gamma[c]) : 1.0;
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t m = 0; m < M; ++m) {
      const double xhat = (double(x[m * C + c]) - mean) * rstd;
      sum_dy += double(dy[m * C + c]);
      sum_dy_xhat += double(dy[m * C + c]) * xhat;
    }
    if (dbeta) dbeta[c] = T(sum_dy);
    if (dgamma) dgamma[c] = T(sum_dy_xhat);
    if (dx) {
      const double mean_g = g * sum_dy / double(M);
      const double mean_gx = g * sum_dy_xhat / double(M);
      for (int64_t m = 0; m < M; ++m) {
        const double xhat = (double(x[m * C + c]) - mean) * rstd;
        dx[m * C + c] =
            T(rstd * (g * double(dy[m * C + c]) - mean_g - xhat * mean_gx));
      }
    }
  }
}

// Backward of the evaluation forward (a per-channel affine map):
// dx = dy·γ·rstd_running.
template <typename T>
void batchnorm_backward_eval(const T* gamma, const T* running_var, const T* dy,
                             T* dx, int64_t M, int64_t C, double eps) {
  for (int64_t c = 0; c < C; ++c) {
    const double s = (gamma ? double(gamma[c]) : 1.0) /
                     std::sqrt(double(running_var[c]) + eps);
    for (int64_t m = 0; m < M; ++m)
      dx[m * C + c] = T(double(dy[m * C + c]) * s);
  }
}

}  // namespace ballast::ref

#endif  // BALLAST_OPS_REF_BATCHNORM_H_
