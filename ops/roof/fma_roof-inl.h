#if defined(BALLAST_OPS_ROOF_FMA_ROOF_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BALLAST_OPS_ROOF_FMA_ROOF_INL_H_
#undef BALLAST_OPS_ROOF_FMA_ROOF_INL_H_
#else
#define BALLAST_OPS_ROOF_FMA_ROOF_INL_H_
#endif

#include <cstdint>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Runs `iters` rounds of 12 independent FMAs; returns the FLOPs done and a
// sink value so the work cannot be optimized away.
double FmaChains(int64_t iters, float* sink) {
  const hn::ScalableTag<float> d;
  const auto b = hn::Set(d, 1.0000001f), c = hn::Set(d, 1e-7f);
  auto a0 = hn::Set(d, 0.f), a1 = hn::Set(d, 1.f), a2 = hn::Set(d, 2.f);
  auto a3 = hn::Set(d, 3.f), a4 = hn::Set(d, 4.f), a5 = hn::Set(d, 5.f);
  auto a6 = hn::Set(d, 6.f), a7 = hn::Set(d, 7.f), a8 = hn::Set(d, 8.f);
  auto a9 = hn::Set(d, 9.f), a10 = hn::Set(d, 10.f), a11 = hn::Set(d, 11.f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = hn::MulAdd(a0, b, c), a1 = hn::MulAdd(a1, b, c);
    a2 = hn::MulAdd(a2, b, c), a3 = hn::MulAdd(a3, b, c);
    a4 = hn::MulAdd(a4, b, c), a5 = hn::MulAdd(a5, b, c);
    a6 = hn::MulAdd(a6, b, c), a7 = hn::MulAdd(a7, b, c);
    a8 = hn::MulAdd(a8, b, c), a9 = hn::MulAdd(a9, b, c);
    a10 = hn::MulAdd(a10, b, c), a11 = hn::MulAdd(a11, b, c);
  }
  auto s = hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)),
                   hn::Add(hn::Add(a4, a5), hn::Add(a6, a7)));
  s = hn::Add(s, hn::Add(hn::Add(a8, a9), hn::Add(a10, a11)));
  *sink = hn::GetLane(hn::SumOfLanes(d, s));
  return double(iters) * 12.0 * 2.0 * double(hn::Lanes(d));
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#endif  // BALLAST_OPS_ROOF_FMA_ROOF_INL_H_
