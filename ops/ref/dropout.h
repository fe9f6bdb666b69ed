// Reference inverted dropout over n elements. Training keeps element i with
// probability 1 − p (bit i of `mask` set) and scales kept elements by
// 1/(1 − p); evaluation is the identity (no call needed). p = 1 drops all.
//
// The keep decision for element i is `slice.Uniform(i) >= p`, a function of
// (seed, offset, i) only, so every kernel that draws masks from the same
// RngSlice draws the same mask whatever its vector width or thread count.
// mask: DropoutMaskWords(n) 64-bit words, bit i % 64 of word i / 64.
#ifndef BALLAST_OPS_REF_DROPOUT_H_
#define BALLAST_OPS_REF_DROPOUT_H_

#include <cstdint>
#include <string>

#include "ballast/rng.h"
#include "ballast/status.h"

namespace ballast::ref {

inline int64_t DropoutMaskWords(int64_t n) { return (n + 63) / 64; }

inline Status CheckDropoutP(double p) {
  if (!(p >= 0.0 && p <= 1.0)) {
    return InvalidArgument("dropout: probability p = " + std::to_string(p) +
                           " must be in [0, 1]");
  }
  return Status::Ok();
}

template <typename T>
Status dropout_forward_train(const T* x, T* y, uint64_t* mask, int64_t n,
                             double p, const RngSlice& slice) {
  BALLAST_RETURN_IF_ERROR(CheckDropoutP(p));
  const T scale = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
  for (int64_t w = 0; w < DropoutMaskWords(n); ++w) mask[w] = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = p < 1.0 && double(slice.Uniform(i)) >= p;
    if (keep) mask[i / 64] |= uint64_t{1} << (i % 64);
    y[i] = keep ? x[i] * scale : T(0);
  }
  return Status::Ok();
}

// dx = dy·mask/(1 − p).
template <typename T>
void dropout_backward(const uint64_t* mask, const T* dy, T* dx, int64_t n,
                      double p) {
  const T scale = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = (mask[i / 64] >> (i % 64)) & 1;
    dx[i] = keep ? dy[i] * scale : T(0);
  }
}

}  // namespace ballast::ref

#endif  // BALLAST_OPS_REF_DROPOUT_H_
