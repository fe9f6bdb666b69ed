// The vector step of the Adam update (see adam.h); included per Highway
// target by adam.cc and by the GEMM (its kAdam epilogue).
#if defined(BALLAST_OPS_OPTIM_ADAM_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BALLAST_OPS_OPTIM_ADAM_INL_H_
#undef BALLAST_OPS_OPTIM_ADAM_INL_H_
#else
#define BALLAST_OPS_OPTIM_ADAM_INL_H_
#endif

#include "hwy/highway.h"
#include "ops/optim/adam.h"
#include "ops/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Updates the `valid` lanes of w, m and v at these pointers from g.
template <class D>
HWY_INLINE void AdamStep(D d, const AdamArgs& a, hn::Vec<D> g, float* w,
                         float* m, float* v, size_t valid) {
  auto wv = LoadPartial(d, w, valid);
  if (a.decoupled) {
    wv = hn::Mul(wv, hn::Set(d, a.decay));  // param.mul_(1 − lr·wd)
  } else if (a.weight_decay != 0.0f) {
    g = hn::MulAdd(wv, hn::Set(d, a.weight_decay), g);  // grad.add(param)
  }
  // exp_avg.mul_(β1).add_(g, alpha=1 − β1)
  const auto mv =
      hn::MulAdd(g, hn::Set(d, a.one_minus_beta1),
                 hn::Mul(LoadPartial(d, m, valid), hn::Set(d, a.beta1)));
  // exp_avg_sq.mul_(β2).addcmul_(g, g, value=1 − β2)
  const auto vv =
      hn::MulAdd(hn::Mul(hn::Set(d, a.one_minus_beta2), g), g,
                 hn::Mul(LoadPartial(d, v, valid), hn::Set(d, a.beta2)));
  const auto denom =
      hn::Add(hn::Div(hn::Sqrt(vv), hn::Set(d, a.bias_correction2_sqrt)),
              hn::Set(d, a.eps));
  // param.addcdiv_(exp_avg, denom, value=−step_size)
  wv = hn::Add(wv, hn::Div(hn::Mul(hn::Set(d, a.neg_step_size), mv), denom));
  StorePartial(d, mv, m, valid);
  StorePartial(d, vv, v, valid);
  StorePartial(d, wv, w, valid);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#endif  // BALLAST_OPS_OPTIM_ADAM_INL_H_
