// The machine's fp32 FMA roof, measured the way ../shared/peers/peak.cc does:
// 12 independent chains of vector FMAs on the best Highway target, on
// `threads` threads at once. Benchmarks quote kernels as a share of it.
#ifndef BALLAST_OPS_ROOF_FMA_ROOF_H_
#define BALLAST_OPS_ROOF_FMA_ROOF_H_

#include <string>

namespace ballast::ops {

// GFLOP/s summed over threads; runs for about `seconds`.
double MeasureFmaRoofGflops(int threads, double seconds = 0.25);

// Name of the Highway target the kernels dispatch to here, e.g. "AVX3".
const char* CurrentSimdTarget();

// Every Highway target compiled in and supported by this CPU, best first,
// space-separated (e.g. "SVE2 SVE NEON EMU128" under qemu-aarch64 -cpu max).
std::string SupportedSimdTargets();

}  // namespace ballast::ops

#endif  // BALLAST_OPS_ROOF_FMA_ROOF_H_
