// Scalar twin of ops/optim: torch.optim.SGD's and Adam's rules, one element
// at a time, rounded as PyTorch 1.13's CPU kernels round them (each
// `x.add(y, alpha=a)` one fma(y, a, x), each `mul_` a rounded product). The
// oracle the vector updates and the GEMM's kSgd and kAdam epilogues are
// tested against: bit for bit on targets with FMA. (See ops/optim/sgd.h and
// adam.h: the rounding of torch's x86 build.)
#ifndef BALLAST_OPS_REF_OPTIM_H_
#define BALLAST_OPS_REF_OPTIM_H_

#include <cmath>

#include "ops/optim/adam.h"
#include "ops/optim/sgd.h"

namespace ballast::ref {

// One element: gradient g, weight w, momentum buffer buf (unused without).
inline void sgd_step(const ops::SgdArgs& a, float g, float& w, float& buf) {
  const float d = a.weight_decay != 0.0f ? std::fma(w, a.weight_decay, g) : g;
  if (!a.has_buf) {
    w = std::fma(d, -a.lr, w);
    return;
  }
  buf = a.first ? d : std::fma(d, a.add, buf * a.momentum);
  w = std::fma(a.nesterov ? std::fma(buf, a.momentum, d) : buf, -a.lr, w);
}

// One element: gradient g, weight w, first and second moments m and v.
inline void adam_step(const ops::AdamArgs& a, float g, float& w, float& m,
                      float& v) {
  if (a.decoupled) {
    w *= a.decay;  // AdamW: param.mul_(1 − lr·weight_decay)
  } else if (a.weight_decay != 0.0f) {
    g = std::fma(w, a.weight_decay, g);  // grad.add(param, alpha=wd)
  }
  m = std::fma(g, a.one_minus_beta1, m * a.beta1);
  v = std::fma(a.one_minus_beta2 * g, g, v * a.beta2);  // addcmul_
  const float denom = std::sqrt(v) / a.bias_correction2_sqrt + a.eps;
  w += (a.neg_step_size * m) / denom;  // addcdiv_(m, denom, −step_size)
}

}  // namespace ballast::ref

#endif  // BALLAST_OPS_REF_OPTIM_H_
