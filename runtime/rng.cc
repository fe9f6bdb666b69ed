#include "ballast/rng.h"

#include <cmath>
#include <numbers>

namespace ballast {

// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC 2011): ten rounds of two 32x32->64 multiplies and a key schedule
// bumped by the Weyl constants. Counter words 2 and 3 stay zero.
std::array<uint32_t, 4> Philox4x32(uint64_t key, uint64_t counter) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(kM0) * c0;
    const uint64_t p1 = uint64_t(kM1) * c2;
    const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n1 = uint32_t(p1);
    const uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    const uint32_t n3 = uint32_t(p0);
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return {c0, c1, c2, c3};
}

RngSlice Generator::Take(int64_t count) {
  RngSlice slice{seed_, offset_};
  offset_ += (uint64_t(count) + 3) / 4;
  return slice;
}

void Generator::FillUniform(std::span<float> out, double lo, double hi) {
  const RngSlice s = Take(int64_t(out.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = float(lo + (hi - lo) * double(s.Uniform(int64_t(i))));
  }
}

void Generator::FillNormal(std::span<float> out, double mean, double std) {
  // Two words per value: reserve 2 * n draws so value i owns words 2i, 2i+1.
  const RngSlice s = Take(2 * int64_t(out.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t j = 2 * int64_t(i);
    // u1 in (0, 1] keeps the log finite.
    const double u1 = (double(s.Bits(j)) + 1.0) * 0x1p-32;
    const double u2 = double(s.Bits(j + 1)) * 0x1p-32;
    const double z =
        std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    out[i] = float(mean + std * z);
  }
}

double Generator::NextDouble() {
  const RngSlice s = Take(4);
  const uint64_t bits = (uint64_t(s.Bits(0)) << 32) | s.Bits(1);
  return double(bits >> 11) * 0x1p-53;
}

}  // namespace ballast
