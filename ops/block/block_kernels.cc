// Dispatch for the block passes (see block_kernels.h).
#include "ops/block/block_kernels.h"

#include <algorithm>
#include <cmath>

#include "ops/block/block_split.h"
#include "ops/cache_aligned.h"
#include "ops/tasks.h"
#include "ops/work_ranges.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/block/block_kernels.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/block/block_kernels-inl.h"

#if HWY_ONCE
namespace ballast::ops {
namespace {
int Threads(int threads) { return InParallel() ? 1 : std::max(1, threads); }
}  // namespace

HWY_EXPORT(BiasAddImpl);
HWY_EXPORT(ScaleShiftImpl);
HWY_EXPORT(ReluImpl);
HWY_EXPORT(ReluBackwardImpl);
HWY_EXPORT(DropoutBackwardImpl);
HWY_EXPORT(DropoutImpl);
HWY_EXPORT(BnReluDropoutForwardImpl);
HWY_EXPORT(BnReluDropoutForwardColumnsImpl);
HWY_EXPORT(BnReluDropoutBackwardImpl);

uint32_t DropoutThreshold(double p) {
  if (!(p > 0.0)) return 0;
  if (p >= 1.0) return uint32_t{1} << 24;
  return uint32_t(std::ceil(p * 16777216.0));
}

void BiasAdd(float* y, int64_t M, int64_t N, const float* bias, int threads) {
  HWY_DYNAMIC_DISPATCH(BiasAddImpl)(y, M, N, bias, Threads(threads));
}

void ScaleShift(float* y, int64_t M, int64_t N, const float* scale,
                const float* shift, int threads) {
  HWY_DYNAMIC_DISPATCH(ScaleShiftImpl)(y, M, N, scale, shift, Threads(threads));
}

void Relu(const float* x, float* y, int64_t n, int threads) {
  HWY_DYNAMIC_DISPATCH(ReluImpl)(x, y, n, Threads(threads));
}

void ReluBackward(const float* x, const float* dy, float* dx, int64_t n,
                  int threads) {
  HWY_DYNAMIC_DISPATCH(ReluBackwardImpl)(x, dy, dx, n, Threads(threads));
}

void DropoutBackward(const uint64_t* mask, const float* dy, float* dx,
                     int64_t M, int64_t N, double p, int threads) {
  HWY_DYNAMIC_DISPATCH(DropoutBackwardImpl)
  (mask, dy, dx, M, N, p, Threads(threads));
}

void Dropout(float* y, int64_t M, int64_t N, double p, const RngSlice& rng,
             uint64_t* mask, int threads) {
  HWY_DYNAMIC_DISPATCH(DropoutImpl)(y, M, N, p, rng, mask, Threads(threads));
}

// Two passes per column in double, accumulating in the outputs (no
// scratch): exact enough to be the unfused baseline.
void ColumnMoments(const float* z, int64_t M, int64_t N, double* mean,
                   double* var, int threads) {
  (void)threads;
  std::fill(mean, mean + N, 0.0);
  std::fill(var, var + N, 0.0);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) mean[n] += z[m * N + n];
  }
  for (int64_t n = 0; n < N; ++n) mean[n] /= double(M);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      const double d = z[m * N + n] - mean[n];
      var[n] += d * d;
    }
  }
  for (int64_t n = 0; n < N; ++n) var[n] /= double(M);
}

void BnReluDropoutForward(const BnForwardArgs& a, int64_t M, int64_t N,
                          int threads) {
  thread_local WorkRanges work;
  HWY_DYNAMIC_DISPATCH(BnReluDropoutForwardImpl)
  (a, M, N, Threads(threads), &work);
}

void BnReluDropoutForwardColumns(const BnForwardArgs& a, int64_t M, int64_t N,
                                 int64_t n0, int64_t n1) {
  HWY_DYNAMIC_DISPATCH(BnReluDropoutForwardColumnsImpl)(a, M, N, n0, n1);
}

void BnReluDropoutBackward(const BnBackwardArgs& a, int64_t M, int64_t N,
                           int threads) {
  const int t = Threads(threads);
  // Per-thread scratch, 64-byte aligned; grows once, then reused.
  thread_local AlignedVector<float> scratch;
  scratch.resize(size_t(PartialStride(N) * t));
  thread_local WorkRanges work;
  HWY_DYNAMIC_DISPATCH(BnReluDropoutBackwardImpl)
  (a, M, N, t, scratch.data(), &work);
}

}  // namespace ballast::ops
#endif  // HWY_ONCE
