// Scalar twin of ops/optim (torch.optim.SGD's rule, in double), the oracle
// the vector update and the GEMM's kSgd epilogue are tested against.
#ifndef BALLAST_OPS_REF_SGD_H_
#define BALLAST_OPS_REF_SGD_H_

#include "ops/optim/sgd.h"

namespace ballast::ref {

// One element: gradient g, weight w, momentum buffer buf (unused without).
inline void sgd_step(const ops::SgdArgs& a, double g, double& w, double& buf) {
  const double d = a.weight_decay != 0.0f ? g + double(a.weight_decay) * w : g;
  if (!a.has_buf) {
    w -= double(a.lr) * d;
    return;
  }
  buf = double(a.keep) * buf + double(a.add) * d;
  w -= double(a.lr) * (a.nesterov ? d + double(a.momentum) * buf : buf);
}

}  // namespace ballast::ref

#endif  // BALLAST_OPS_REF_SGD_H_
