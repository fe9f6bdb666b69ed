// Reference (scalar oracle) Linear: y = x·Wᵀ + b, W is [out, in] as in
// torch.nn.Linear. Plain loops, no SIMD, no threads; T is float or double
// (double for gradient checks). Sums accumulate in double.
#ifndef BALLAST_OPS_REF_LINEAR_H_
#define BALLAST_OPS_REF_LINEAR_H_

#include <cstdint>

namespace ballast::ref {

// x [M, K], w [N, K], b [N] or nullptr → y [M, N].
template <typename T>
void linear_forward(const T* x, const T* w, const T* b, T* y, int64_t M,
                    int64_t K, int64_t N) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = b ? double(b[n]) : 0.0;
      for (int64_t k = 0; k < K; ++k) {
        acc += double(x[m * K + k]) * double(w[n * K + k]);
      }
      y[m * N + n] = T(acc);
    }
  }
}

// Given dy [M, N]: dx = dy·W [M, K], dW = dyᵀ·x [N, K], db = Σ_m dy [N].
// Any of dx, dw, db may be nullptr to skip it. Outputs are overwritten.
template <typename T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db,
                     int64_t M, int64_t K, int64_t N) {
  if (dx) {
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) {
        double acc = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          acc += double(dy[m * N + n]) * double(w[n * K + k]);
        }
        dx[m * K + k] = T(acc);
      }
    }
  }
  if (dw) {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        double acc = 0.0;
        for (int64_t m = 0; m < M; ++m) {
          acc += double(dy[m * N + n]) * double(x[m * K + k]);
        }
        dw[n * K + k] = T(acc);
      }
    }
  }
  if (db) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0.0;
      for (int64_t m = 0; m < M; ++m) acc += double(dy[m * N + n]);
      db[n] = T(acc);
    }
  }
}

}  // namespace ballast::ref

#endif  // BALLAST_OPS_REF_LINEAR_H_
