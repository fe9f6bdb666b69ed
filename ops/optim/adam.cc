// AdamUpdate on every Highway target (see adam.h).
#include "ops/optim/adam.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/optim/adam.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/optim/adam-inl.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void AdamUpdateImpl(const AdamArgs& a, const float* g, float* w, float* m,
                    float* v, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t L = int64_t(hn::Lanes(d));
  // A copy no store can alias: its scalars stay in registers.
  const AdamArgs args = a;
  for (int64_t i = 0; i < n; i += L) {
    const size_t valid = size_t(n - i < L ? n - i : L);
    AdamStep(d, args, LoadPartial(d, g + i, valid), w + i, m + i, v + i, valid);
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
