// Reference softmax cross-entropy from logits, mean over the batch, as
// torch.nn.CrossEntropyLoss(reduction='mean'):
//   loss = (1/M)·Σ_m [logsumexp(z_m) − z_m[y_m]]
//   dz_m = (softmax(z_m) − onehot(y_m))·dloss/M
// Log-sum-exp subtracts the row maximum first, so logits of ±1e4 stay finite.
#ifndef BALLAST_OPS_REF_CROSS_ENTROPY_H_
#define BALLAST_OPS_REF_CROSS_ENTROPY_H_

#include <cmath>
#include <cstdint>
#include <string>

#include "ballast/status.h"

namespace ballast::ref {

inline Status CheckLabels(const int32_t* labels, int64_t M, int64_t C) {
  if (M < 1) return InvalidArgument("cross_entropy: batch is empty");
  for (int64_t m = 0; m < M; ++m) {
    if (labels[m] < 0 || labels[m] >= C) {
      return OutOfRange("cross_entropy: label " + std::to_string(labels[m]) +
                        " at row " + std::to_string(m) + " is outside [0, " +
                        std::to_string(C) + ")");
    }
  }
  return Status::Ok();
}

// Largest of z[0..C). A comparison rather than std::fmax: g++ 12 for aarch64
// stops with an internal compiler error vectorizing an fmax reduction. A NaN
// logit makes the loss NaN either way (it reaches the sum of exponentials).
template <typename T>
double RowMax(const T* z, int64_t C) {
  double mx = double(z[0]);
  for (int64_t c = 1; c < C; ++c) mx = double(z[c]) > mx ? double(z[c]) : mx;
  return mx;
}

// logits [M, C], labels [M] → *loss (mean).
template <typename T>
Status cross_entropy_forward(const T* logits, const int32_t* labels, int64_t M,
                             int64_t C, T* loss) {
  BALLAST_RETURN_IF_ERROR(CheckLabels(labels, M, C));
  double total = 0.0;
  for (int64_t m = 0; m < M; ++m) {
    const T* z = logits + m * C;
    const double mx = RowMax(z, C);
    double se = 0.0;
    for (int64_t c = 0; c < C; ++c) se += std::exp(double(z[c]) - mx);
    total += mx + std::log(se) - double(z[labels[m]]);
  }
  *loss = T(total / double(M));
  return Status::Ok();
}

// dlogits [M, C] = (softmax − onehot)·dloss/M.
template <typename T>
Status cross_entropy_backward(const T* logits, const int32_t* labels, int64_t M,
                              int64_t C, T dloss, T* dlogits) {
  BALLAST_RETURN_IF_ERROR(CheckLabels(labels, M, C));
  const double scale = double(dloss) / double(M);
  for (int64_t m = 0; m < M; ++m) {
    const T* z = logits + m * C;
    const double mx = RowMax(z, C);
    double se = 0.0;
    for (int64_t c = 0; c < C; ++c) se += std::exp(double(z[c]) - mx);
    for (int64_t c = 0; c < C; ++c) {
      const double p = std::exp(double(z[c]) - mx) / se;
      dlogits[m * C + c] = T((p - (c == labels[m] ? 1.0 : 0.0)) * scale);
    }
  }
  return Status::Ok();
}

}  // namespace ballast::ref

#endif  // BALLAST_OPS_REF_CROSS_ENTROPY_H_
