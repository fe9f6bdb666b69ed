// Per-target constants of the GEMM: the register tile's width and the
// choices that depend on it. Included by gemm-inl.h and pack_b-inl.h.

// Per-target include guard (the Highway idiom for -inl.h files).
#if defined(BALLAST_OPS_LINEAR_GEMM_CONFIG_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BALLAST_OPS_LINEAR_GEMM_CONFIG_INL_H_
#undef BALLAST_OPS_LINEAR_GEMM_CONFIG_INL_H_
#else
#define BALLAST_OPS_LINEAR_GEMM_CONFIG_INL_H_
#endif

#include <cstdint>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace ballast::ops {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Vectors per panel: 4 where the ISA has 32 vector registers (AVX-512, NEON,
// SVE) or for the scalar fallback; 2 on 16-register x86 targets.
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3
constexpr int kNV = 2;
#else
constexpr int kNV = 4;
#endif

// Whether a row-major A is packed into tiles (PackedA) before the tiles read
// it, on the 16-register targets (16-column panels on AVX2, 8 on SSE4). On
// AVX2 a call has four times the panels of a 64-column target and each panel
// re-reads all of A, six rows at a time from six places. Packed, a tile reads
// one stream through one pointer. On AVX2 the trainer's and the serving GEMMs
// with row-major A (128 × 784 × 256, 128 × 256 × 256, batch 16 and
// 64 × 784 × 256, 512 × 1024 × 1024) took 0.80-0.93 of the time on one
// thread, packing included, and 0.87-1.04 on two (calls alternated, medians
// of 400; see docs/KERNELS.md). Not measured on SSE4 nor on the 64-column
// targets, which keep the unpacked reads.
constexpr bool kPackA = kNV == 2;
// Each thread packs every tile it reads, whatever share of the panels it
// computes: packed for fewer panels than this per thread, a call took longer
// than unpacked. On AVX2, 128 × 784 × N on one thread: 1.93× the time at one
// panel, 1.24 at two, 1.00 at three, 0.94 at four, 0.83 at eight; on two
// threads: 1.17 at four panels, 0.96 at eight, 0.91 at sixteen. (SSE4's
// 8-column panels would likely need more; not measured.)
constexpr int64_t kPackAMinPanels = 4;

// Whether every panel, not only a thread's first, fetches the next tile's
// rows of a row-major A read in place (see GemmUnit): on the 16-column
// targets, for the calls not packed (too few panels per thread). There
// each tile reads twice the A per flop of a 64-column target, and A no
// longer stays in L1 from one panel to the next: without it the trainer's
// row-major-A GEMMs took 1.07-1.18× as long on one thread and 1.07-1.14× on
// two (AVX2, before the packing; see docs/KERNELS.md). On AVX-512 it cost
// single-threaded calls about 5%.
constexpr bool kPrefetchAEveryPanel = kNV == 2;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

inline int64_t PanelWidth() { return kNV * int64_t(hn::Lanes(DF())); }
inline int64_t VectorLanes() { return int64_t(hn::Lanes(DF())); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace ballast::ops
HWY_AFTER_NAMESPACE();

#endif  // BALLAST_OPS_LINEAR_GEMM_CONFIG_INL_H_
