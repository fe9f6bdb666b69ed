// AdamUpdate on every Highway target (see adam.h).
#include "ops/optim/adam.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/optim/adam.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void AdamUpdateImpl(const AdamArgs& a, const float* g, float* w, float* m,
                    float* v, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t L = int64_t(hn::Lanes(d));
  const auto beta1 = hn::Set(d, a.beta1),
             one_minus_beta1 = hn::Set(d, a.one_minus_beta1);
  const auto beta2 = hn::Set(d, a.beta2),
             one_minus_beta2 = hn::Set(d, a.one_minus_beta2);
  const auto weight_decay = hn::Set(d, a.weight_decay);
  const auto decay = hn::Set(d, a.decay);
  const auto bias_correction2_sqrt = hn::Set(d, a.bias_correction2_sqrt);
  const auto eps = hn::Set(d, a.eps);
  const auto neg_step_size = hn::Set(d, a.neg_step_size);
  const bool l2 = !a.decoupled && a.weight_decay != 0.0f;
  for (int64_t i = 0; i < n; i += L) {
    const size_t valid = size_t(n - i < L ? n - i : L);
    auto gv = LoadPartial(d, g + i, valid);
    auto wv = LoadPartial(d, w + i, valid);
    if (a.decoupled) wv = hn::Mul(wv, decay);
    if (l2) gv = hn::MulAdd(wv, weight_decay, gv);
    const auto mv = hn::MulAdd(gv, one_minus_beta1,
                               hn::Mul(LoadPartial(d, m + i, valid), beta1));
    const auto vv = hn::MulAdd(hn::Mul(one_minus_beta2, gv), gv,
                               hn::Mul(LoadPartial(d, v + i, valid), beta2));
    const auto denom =
        hn::Add(hn::Div(hn::Sqrt(vv), bias_correction2_sqrt), eps);
    wv = hn::Add(wv, hn::Div(hn::Mul(neg_step_size, mv), denom));
    StorePartial(d, mv, m + i, valid);
    StorePartial(d, vv, v + i, valid);
    StorePartial(d, wv, w + i, valid);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ballast::ops {

HWY_EXPORT(AdamUpdateImpl);

void AdamUpdate(const AdamArgs& a, const float* g, float* w, float* m, float* v,
                int64_t n) {
  HWY_DYNAMIC_DISPATCH(AdamUpdateImpl)(a, g, w, m, v, n);
}

}  // namespace ballast::ops
#endif  // HWY_ONCE
