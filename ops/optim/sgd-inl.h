// The vector step of the SGD update (see sgd.h); included per Highway target
// by sgd.cc and by the GEMM (its kSgd epilogue).
#if defined(BALLAST_OPS_OPTIM_SGD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BALLAST_OPS_OPTIM_SGD_INL_H_
#undef BALLAST_OPS_OPTIM_SGD_INL_H_
#else
#define BALLAST_OPS_OPTIM_SGD_INL_H_
#endif

#include "hwy/highway.h"
#include "ops/optim/sgd.h"
#include "ops/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Updates the `valid` lanes of w (and buf) at these pointers from g.
template <class D>
HWY_INLINE void SgdStep(D d, const SgdArgs& a, hn::Vec<D> g, float* w,
                        float* buf, size_t valid) {
  const auto wv = LoadPartial(d, w, valid);
  // torch adds weight_decay·w only when weight_decay != 0 (0·inf is NaN).
  const auto dv = a.weight_decay != 0.0f
                      ? hn::MulAdd(hn::Set(d, a.weight_decay), wv, g)
                      : g;
  if (!a.has_buf) {
    StorePartial(d, hn::NegMulAdd(hn::Set(d, a.lr), dv, wv), w, valid);
    return;
  }
  // torch: buf.mul_(momentum).add_(d, alpha=1 − dampening).
  const auto bv = a.first ? dv
                          : hn::MulAdd(dv, hn::Set(d, a.add),
                                       hn::Mul(LoadPartial(d, buf, valid),
                                               hn::Set(d, a.momentum)));
  StorePartial(d, bv, buf, valid);
  const auto step =
      a.nesterov ? hn::MulAdd(hn::Set(d, a.momentum), bv, dv) : bv;
  StorePartial(d, hn::NegMulAdd(hn::Set(d, a.lr), step, wv), w, valid);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#endif  // BALLAST_OPS_OPTIM_SGD_INL_H_
