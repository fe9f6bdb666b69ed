#include "ops/roof/fma_roof.h"

#include <omp.h>

#include <algorithm>
#include <chrono>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/roof/fma_roof.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/roof/fma_roof-inl.h"

#if HWY_ONCE
namespace ballast::ops {

HWY_EXPORT(FmaChains);

double MeasureFmaRoofGflops(int threads, double seconds) {
  float sink = 0;
  // Calibrate the iteration count on one short run.
  int64_t iters = 1 << 20;
  auto t0 = std::chrono::steady_clock::now();
  HWY_DYNAMIC_DISPATCH(FmaChains)(iters, &sink);
  const double dt =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  // The roof is a peak: the best of three runs, each a third of the time.
  iters = int64_t(double(iters) * seconds / 3 / std::max(dt, 1e-6));
  double best = 0;
  for (int run = 0; run < 3; ++run) {
    double flops = 0;
    t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    {
      float s = 0;
      flops += HWY_DYNAMIC_DISPATCH(FmaChains)(iters, &s);
      if (s == 12345.f) flops += 1;  // keep the result alive
    }
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    best = std::max(best, flops / elapsed / 1e9);
  }
  return best + (sink == 12345.f ? 1e-9 : 0.0);
}

const char* CurrentSimdTarget() {
  // The best target is the lowest set bit of the supported, compiled ones.
  const int64_t targets = hwy::SupportedTargets() & HWY_TARGETS;
  return hwy::TargetName(targets & -targets);
}

std::string SupportedSimdTargets() {
  std::string names;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    if (!names.empty()) names += ' ';
    names += hwy::TargetName(target);
  }
  return names;
}

}  // namespace ballast::ops
#endif  // HWY_ONCE
