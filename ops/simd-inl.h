// Small Highway helpers shared by the kernels; included per target.
#if defined(BALLAST_OPS_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BALLAST_OPS_SIMD_INL_H_
#undef BALLAST_OPS_SIMD_INL_H_
#else
#define BALLAST_OPS_SIMD_INL_H_
#endif

#include <cstring>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// max(v, 0) as torch.relu computes it: a NaN stays NaN (x86's maxps returns
// its second operand when either is NaN, so Max(v, 0) would make it 0, and
// a NaN input would come out as a plausible number) and −0 becomes +0.
template <class D>
HWY_INLINE hn::Vec<D> Relu(D d, hn::Vec<D> v) {
  return hn::IfThenZeroElse(hn::Le(v, hn::Zero(d)), v);
}

// v where v > 0, else v·slope (torch's leaky_relu; a NaN stays NaN).
template <class D>
HWY_INLINE hn::Vec<D> LeakyRelu(D d, hn::Vec<D> v, hn::TFromD<D> slope) {
  return hn::IfThenElse(hn::Gt(v, hn::Zero(d)), v,
                        hn::Mul(v, hn::Set(d, slope)));
}

// Loads `valid` floats, zero-filling the other lanes, without reading past
// p + valid.
template <class D>
HWY_INLINE hn::Vec<D> LoadPartial(D d, const hn::TFromD<D>* p, size_t valid) {
  if (valid >= hn::Lanes(d)) return hn::LoadU(d, p);
  HWY_ALIGN hn::TFromD<D> buf[hn::MaxLanes(d)] = {};
  std::memcpy(buf, p, valid * sizeof(buf[0]));
  return hn::Load(d, buf);
}

// Stores the first `valid` lanes without touching memory past them (another
// thread may own the bytes after a row's last column; BlendedStore on some
// targets reads and rewrites the whole vector).
template <class D>
HWY_INLINE void StorePartial(D d, hn::Vec<D> v, hn::TFromD<D>* p,
                             size_t valid) {
  if (valid >= hn::Lanes(d)) {
    hn::StoreU(v, d, p);
    return;
  }
  HWY_ALIGN hn::TFromD<D> buf[hn::MaxLanes(d)];
  hn::Store(v, d, buf);
  std::memcpy(p, buf, valid * sizeof(buf[0]));
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#endif  // BALLAST_OPS_SIMD_INL_H_
