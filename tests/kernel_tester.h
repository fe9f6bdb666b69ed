// Shared helpers for kernel tests: the sizes to sweep, every compiled Highway
// target, NaN-prefilled and deliberately misaligned buffers, and named
// tolerances.
#ifndef BALLAST_TESTS_KERNEL_TESTER_H_
#define BALLAST_TESTS_KERNEL_TESTER_H_

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "ballast/rng.h"
#include "hwy/targets.h"

namespace ballast::test {

// True unless BALLAST_TEST_TARGETS (comma-separated Highway target names,
// e.g. "SVE2_128") is set and does not list `name`.
inline bool TargetSelected(const char* name) {
  const char* list = std::getenv("BALLAST_TEST_TARGETS");
  if (list == nullptr || *list == '\0') return true;
  std::stringstream items(list);
  for (std::string item; std::getline(items, item, ',');) {
    if (item == name) return true;
  }
  return false;
}

// Runs `body` once per Highway target compiled in and supported here
// (AVX3, AVX2, SSE4, SSSE3, SCALAR on x86), then restores dispatch. With
// BALLAST_TEST_TARGETS set, only once per listed target, and it is an error
// if none of them is supported (the aarch64 reruns at other SVE vector
// lengths use this to test only the targets those lengths add).
inline void ForEachTarget(const std::function<void(const char*)>& body) {
  int ran = 0;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    if (!TargetSelected(hwy::TargetName(target))) continue;
    ++ran;
    hwy::SetSupportedTargetsForTest(target);
    const char* name = hwy::TargetName(target);
    SCOPED_TRACE(std::string("target ") + name);
    body(name);
  }
  hwy::SetSupportedTargetsForTest(0);
  ASSERT_GT(ran, 0) << "BALLAST_TEST_TARGETS="
                    << std::getenv("BALLAST_TEST_TARGETS")
                    << " names no target supported here";
}

// Whether Highway's MulAdd is one fused multiply-add on target `name` (a
// hwy::TargetName): on these, the optimizers give torch's bits.
inline bool TargetHasFma(const std::string& name) {
  return name.rfind("AVX2", 0) == 0 || name.rfind("AVX3", 0) == 0 ||
         name == "NEON" || name.rfind("SVE", 0) == 0;
}

// A float buffer whose data() is `misalign` floats past a 64-byte boundary,
// prefilled with NaN so unwritten outputs show up.
class Buffer {
 public:
  explicit Buffer(size_t n, size_t misalign = 0)
      : storage_(n + misalign + 16, std::numeric_limits<float>::quiet_NaN()),
        n_(n) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(storage_.data());
    const size_t skip = ((64 - addr % 64) % 64) / sizeof(float);
    data_ = storage_.data() + skip + misalign;
  }
  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return n_; }
  float& operator[](size_t i) { return data_[i]; }
  float operator[](size_t i) const { return data_[i]; }
  void FillUniform(Generator& g, float lo = -1, float hi = 1) {
    g.FillUniform({data_, n_}, lo, hi);
  }
  std::vector<float> ToVector() const { return {data_, data_ + n_}; }

 private:
  std::vector<float> storage_;
  float* data_;
  size_t n_;
};

// Named tolerances, as functions of the computation's scale.
struct Tol {
  static constexpr double kEps = std::numeric_limits<float>::epsilon();
  // A dot product of length k in float against a double oracle: the
  // recursive-summation bound (k + 2)·ε·Σ|aᵢbᵢ| (+2 for bias and epilogue).
  static double Dot(int64_t k, double abs_sum) {
    return double(k + 2) * kEps * abs_sum + 1e-30;
  }
  // One elementwise float op against a double oracle.
  static double Elementwise(double expected) {
    return 4 * kEps * std::max(1.0, std::fabs(expected));
  }
};

}  // namespace ballast::test

#endif  // BALLAST_TESTS_KERNEL_TESTER_H_
