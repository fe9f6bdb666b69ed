// Deterministic, counter-based random numbers (Philox4x32-10).
//
// What "same seed" guarantees:
// - A Generator is a seed plus an offset into the seed's stream of 128-bit
//   blocks. Every draw reserves a contiguous range of blocks (Take) and element
//   i of that draw is computed from block (first + i / 4) alone, so the value
//   of every element is fixed by (seed, offset, i). Splitting a draw over any
//   number of threads, in any order, gives bit-identical results.
// - Uniform floats and dropout masks are bit-identical on every machine,
//   compiler and SIMD target (integer arithmetic only).
// - Normal values use log/sqrt/cos (Box-Muller in double); they are identical
//   across thread counts and runs of one build, and agree to the last bit or
//   two across C libraries.
// - The same seed and the same sequence of calls give the same numbers; the
//   numbers are not those of PyTorch's CPU generator (which is not
//   counter-based), so parity tests share tensors, not seeds.
#ifndef BALLAST_RNG_H_
#define BALLAST_RNG_H_

#include <array>
#include <cstdint>
#include <span>

namespace ballast {

// One Philox4x32-10 block: 4 random 32-bit words for (key, counter).
std::array<uint32_t, 4> Philox4x32(uint64_t key, uint64_t counter);

// A reserved, immutable slice of a seed's stream; safe to share across
// threads. Element i uses block `first_block + i / 4`, word `i % 4`.
struct RngSlice {
  uint64_t seed = 0;
  uint64_t first_block = 0;

  uint32_t Bits(int64_t i) const {
    return Philox4x32(seed, first_block + uint64_t(i) / 4)[size_t(i) % 4];
  }
  // Uniform in [0, 1) with 24 random bits (exactly representable floats).
  float Uniform(int64_t i) const {
    return float(Bits(i) >> 8) * (1.0f / 16777216.0f);
  }
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}

  uint64_t seed() const { return seed_; }
  // Blocks consumed so far; with the seed, the generator's whole state.
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }

  // Reserves the blocks for `count` 32-bit draws and advances the offset.
  RngSlice Take(int64_t count);

  // Fill helpers (each one Take).
  void FillUniform(std::span<float> out, double lo, double hi);
  // Box-Muller; element i uses block first + i (two words for each value).
  void FillNormal(std::span<float> out, double mean, double std);
  // Uniform double in [0, 1) with 53 random bits, from one block.
  double NextDouble();

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

}  // namespace ballast

#endif  // BALLAST_RNG_H_
