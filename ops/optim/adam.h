// torch.optim.Adam's and AdamW's update of one tensor, elementwise (Highway;
// amsgrad and maximize off):
//
//   w = w·decay                                 (AdamW; decay = 1 − lr·wd)
//   g = g + weight_decay·w                      (Adam, when weight_decay != 0)
//   m = m·β1 + (1 − β1)·g
//   v = v·β2 + (1 − β2)·g·g
//   w = w + (−step_size·m) / (√v / √(1 − β2^t) + eps)
//                                      (step_size = lr / (1 − β1^t))
//
// Rounded as PyTorch 1.13's x86 CPU kernels round them (see ops/optim/sgd.h):
// there GCC also fuses addcmul_'s product and sum, v·β2 + ((1 − β2)·g)·g, into
// one fma after rounding (1 − β2)·g; a torch built otherwise (clang, aarch64)
// may round that sum apart. ops/ref/optim.h holds the rule. The scalars are
// torch's too: computed in double, then rounded to float once (PrepareAdam
// in runtime/optimizer.cc).
#ifndef BALLAST_OPS_OPTIM_ADAM_H_
#define BALLAST_OPS_OPTIM_ADAM_H_

#include <cstdint>

namespace ballast::ops {

struct AdamArgs {
  float beta1 = 0.9f, one_minus_beta1 = 0.1f;
  float beta2 = 0.999f, one_minus_beta2 = 0.001f;
  float weight_decay = 0.0f;  // Adam: L2 on the gradient
  bool decoupled = false;     // AdamW: w·decay instead
  float decay = 1.0f;
  float bias_correction2_sqrt = 1.0f, eps = 1e-8f, neg_step_size = 0.0f;
};

// Updates w, m and v [0, n) from the gradient g.
void AdamUpdate(const AdamArgs& a, const float* g, float* w, float* m, float* v,
                int64_t n);

}  // namespace ballast::ops

#endif  // BALLAST_OPS_OPTIM_ADAM_H_
