// SgdUpdate on every Highway target (see sgd.h).
#include "ops/optim/sgd.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/optim/sgd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/optim/sgd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void SgdUpdateImpl(const SgdArgs& a, const float* g, float* w, float* buf,
                   int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t L = int64_t(hn::Lanes(d));
  for (int64_t i = 0; i < n; i += L) {
    const size_t v = size_t(n - i < L ? n - i : L);
    SgdStep(d, a, LoadPartial(d, g + i, v), w + i,
            a.has_buf ? buf + i : nullptr, v);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace ballast::ops {

HWY_EXPORT(SgdUpdateImpl);

void SgdUpdate(const SgdArgs& a, const float* g, float* w, float* buf,
               int64_t n) {
  HWY_DYNAMIC_DISPATCH(SgdUpdateImpl)(a, g, w, buf, n);
}

}  // namespace ballast::ops
#endif  // HWY_ONCE
