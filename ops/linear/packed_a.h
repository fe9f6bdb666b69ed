// A row-major A packed by register tiles for one GEMM call, per thread
// (target-independent: plain copies; see kPackA in gemm_config-inl.h).
#ifndef BALLAST_OPS_LINEAR_PACKED_A_H_
#define BALLAST_OPS_LINEAR_PACKED_A_H_

#include <cstdint>
#include <vector>

#include "ops/cache_aligned.h"
#include "ops/linear/gemm_plan.h"

namespace ballast::ops {

// A row-major A packed by tiles of kGemmMR rows for one call (kPackA): in
// tile t, A(t·MR + r, k) at k·MR + r, tiles one after another, each from a
// cache line. Each thread packs its own copy, a tile when it first needs it:
// with one copy packed by both threads before the tiles, half of each
// thread's tiles came from the other core's cache, and two-thread calls
// took 1.02-1.10 of the unpacked time. Rows past the last full tile are
// read in place. The buffer stays with the thread for the next call.
struct PackedA {
  AlignedVector<float> buf;
  std::vector<uint8_t> ready;  // per tile: packed in this call
  int64_t k = 0, tile_floats = 0;

  float* Tile(int64_t t) { return buf.data() + t * tile_floats; }

  // Starts a call with an M × K A: no tile packed yet.
  void Reset(int64_t m, int64_t K) {
    const int64_t tiles = m / kGemmMR;
    const int64_t line = 64 / int64_t(sizeof(float));
    k = K;
    tile_floats = (K * kGemmMR + line - 1) / line * line;
    // One tile more: the last tile's fetches of the next stay in the buffer.
    if (buf.size() < size_t((tiles + 1) * tile_floats)) {
      buf.resize(size_t((tiles + 1) * tile_floats));
    }
    ready.assign(size_t(tiles), 0);
  }

  // Packs tile t of A (row stride a_rs, unit column stride) unless packed.
  void Ensure(const float* a, int64_t a_rs, int64_t t) {
    if (ready[size_t(t)]) return;
    ready[size_t(t)] = 1;
    float* dst = Tile(t);
    const float* s0 = a + t * kGemmMR * a_rs;
    const float *s1 = s0 + a_rs, *s2 = s1 + a_rs, *s3 = s2 + a_rs,
                *s4 = s3 + a_rs, *s5 = s4 + a_rs;
    for (int64_t i = 0; i < k; ++i, dst += kGemmMR) {
      dst[0] = s0[i];
      dst[1] = s1[i];
      dst[2] = s2[i];
      dst[3] = s3[i];
      dst[4] = s4[i];
      dst[5] = s5[i];
    }
  }
};
static_assert(kGemmMR == 6, "PackedA::Ensure packs six rows");

inline PackedA& ThreadPackedA() {
  thread_local PackedA packed;
  return packed;
}

}  // namespace ballast::ops

#endif  // BALLAST_OPS_LINEAR_PACKED_A_H_
