// Reference BatchNorm folding (evaluation): BN(x·Wᵀ + b) = x·W'ᵀ + b' with
//   s = γ/√(running_var + ε),  W' = diag(s)·W,  b' = s ⊙ (b − running_mean) +
//   β.
// A missing bias is zero; affine = false (gamma/beta nullptr) means γ = 1,
// β = 0. Computed in double, rounded once.
#ifndef BALLAST_OPS_REF_FOLD_H_
#define BALLAST_OPS_REF_FOLD_H_

#include <cmath>
#include <cstdint>

namespace ballast::ref {

// w [N, K], b [N] or nullptr → w_out [N, K], b_out [N]; also the per-column
// scale s and shift t = β − running_mean·s (BN eval as y·s + t) when asked.
template <typename T>
void fold_batchnorm(const T* w, const T* b, const T* gamma, const T* beta,
                    const T* running_mean, const T* running_var, double eps,
                    int64_t K, int64_t N, T* w_out, T* b_out,
                    T* scale = nullptr, T* shift = nullptr) {
  for (int64_t n = 0; n < N; ++n) {
    const double s = (gamma ? double(gamma[n]) : 1.0) /
                     std::sqrt(double(running_var[n]) + eps);
    const double be = beta ? double(beta[n]) : 0.0;
    const double bias = b ? double(b[n]) : 0.0;
    for (int64_t k = 0; k < K; ++k)
      w_out[n * K + k] = T(s * double(w[n * K + k]));
    b_out[n] = T(s * (bias - double(running_mean[n])) + be);
    if (scale) scale[n] = T(s);
    if (shift) shift[n] = T(be - double(running_mean[n]) * s);
  }
}

// Input normalization into the Linear that reads it: (x − mean)/std · Wᵀ + b
// = x·W'ᵀ + b' with W' = W/std and b' = b − (mean/std)·Σ_k W[n, k]. Computed
// in double, rounded once. w [N, K], b [N] or nullptr → w_out, b_out.
template <typename T>
void fold_input_normalization(const T* w, const T* b, double mean, double std,
                              int64_t K, int64_t N, T* w_out, T* b_out) {
  for (int64_t n = 0; n < N; ++n) {
    double row_sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      row_sum += double(w[n * K + k]);
      w_out[n * K + k] = T(double(w[n * K + k]) / std);
    }
    b_out[n] = T((b ? double(b[n]) : 0.0) - mean / std * row_sum);
  }
}

}  // namespace ballast::ref

#endif  // BALLAST_OPS_REF_FOLD_H_
