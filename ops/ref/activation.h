// Reference elementwise activations over n elements, forward and backward.
// Backward takes what PyTorch's autograd keeps: the input x for relu and
// leaky_relu, the output y for tanh and sigmoid. In-place (y == x) is allowed.
#ifndef BALLAST_OPS_REF_ACTIVATION_H_
#define BALLAST_OPS_REF_ACTIVATION_H_

#include <cmath>
#include <cstdint>

namespace ballast::ref {

// torch.relu: a NaN stays NaN, −0 becomes +0.
template <typename T>
void relu_forward(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] <= T(0) ? T(0) : x[i];
}
// dx = dy where x > 0, else 0 (PyTorch's threshold_backward: 0 at x == 0).
template <typename T>
void relu_backward(const T* x, const T* dy, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > T(0) ? dy[i] : T(0);
}

template <typename T>
void leaky_relu_forward(const T* x, T* y, int64_t n, double slope) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(x[i] * slope);
}
template <typename T>
void leaky_relu_backward(const T* x, const T* dy, T* dx, int64_t n,
                         double slope) {
  for (int64_t i = 0; i < n; ++i)
    dx[i] = x[i] > T(0) ? dy[i] : T(dy[i] * slope);
}

template <typename T>
void tanh_forward(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}
// dx = dy·(1 − y²).
template <typename T>
void tanh_backward(const T* y, const T* dy, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}

// σ(x) = 1/(1 + e^−x), evaluated without overflow for large |x|.
template <typename T>
void sigmoid_forward(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] >= T(0)) {
      y[i] = T(1) / (T(1) + std::exp(-x[i]));
    } else {
      const T e = std::exp(x[i]);
      y[i] = e / (T(1) + e);
    }
  }
}
// dx = dy·y·(1 − y).
template <typename T>
void sigmoid_backward(const T* y, const T* dy, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
}

}  // namespace ballast::ref

#endif  // BALLAST_OPS_REF_ACTIVATION_H_
