// torch.optim.SGD's update of one tensor, elementwise (Highway): standalone
// (SgdUpdate) and as the GEMM epilogue Epilogue::kSgd, which applies it to a
// weight while its gradient tile is still in registers. Both use the same
// vector step (sgd-inl.h), so they give the same bits.
//
//   d = g + weight_decay·w
//   buf = d                             (the first step: torch clones d)
//   buf = buf·momentum + add·d          (later; add = 1 − dampening)
//   w -= lr·(nesterov ? d + momentum·buf : buf)     (with a buffer)
//   w -= lr·d                                       (momentum = 0: no buffer)
//
// Rounded as PyTorch 1.13's x86 CPU kernels round them (AVX2 and AVX-512,
// built with GCC, as Debian's torch is): each `x.add(y, alpha=a)` is one
// fma(y, a, x), each `mul_` a rounded product. So buf·momentum is rounded
// before add·d is fused onto it. Targets with FMA (AVX2, AVX-512, NEON) give
// those bits (optimizer_parity_test checks them on x86); targets without
// round each product. ops/ref/optim.h holds the rule.
#ifndef BALLAST_OPS_OPTIM_SGD_H_
#define BALLAST_OPS_OPTIM_SGD_H_

#include <cstdint>

namespace ballast::ops {

struct SgdArgs {
  float lr = 0.0f, weight_decay = 0.0f;
  float momentum = 0.0f, add = 1.0f;  // add = 1 − dampening
  bool nesterov = false;
  bool has_buf = false;  // false: momentum = 0, no buffer
  bool first = false;    // the buffer's first step: buf = d
};

// Updates w[0, n) (and buf[0, n) when a.has_buf) from the gradient g.
void SgdUpdate(const SgdArgs& a, const float* g, float* w, float* buf,
               int64_t n);

}  // namespace ballast::ops

#endif  // BALLAST_OPS_OPTIM_SGD_H_
