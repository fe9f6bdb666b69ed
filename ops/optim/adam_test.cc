#include "ops/optim/adam.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ops/ref/optim.h"
#include "tests/kernel_tester.h"

namespace ballast::ops {
namespace {

using test::Buffer;
using test::ForEachTarget;

// Adam with L2 weight decay, AdamW, and Adam without decay at a late step.
std::vector<AdamArgs> Cases() {
  AdamArgs adam;
  adam.weight_decay = 1e-3f;
  adam.bias_correction2_sqrt = float(std::sqrt(1 - std::pow(0.999, 3)));
  adam.neg_step_size = float(-1e-2 / (1 - std::pow(0.9, 3)));
  AdamArgs adamw = adam;
  adamw.weight_decay = 0.0f, adamw.decoupled = true;
  adamw.decay = float(1 - 1e-2 * 1e-2);
  AdamArgs plain = adam;
  plain.weight_decay = 0.0f;
  plain.bias_correction2_sqrt = float(std::sqrt(1 - std::pow(0.999, 500)));
  plain.neg_step_size = float(-1e-3 / (1 - std::pow(0.9, 500)));
  return {adam, adamw, plain};
}

bool HasFma(const std::string& t) {
  return t.rfind("AVX2", 0) == 0 || t.rfind("AVX3", 0) == 0 || t == "NEON" ||
         t.rfind("SVE", 0) == 0;
}

// Every element as ops/ref/optim.h's rule (torch's rounding) gives it: the
// same bits where MulAdd is fused, within a few ulps where it is not.
TEST(AdamTest, UpdateFollowsTorchsRuleOnEveryTarget) {
  ForEachTarget([](const char* target) {
    for (const AdamArgs& a : Cases()) {
      for (int64_t n : {1, 15, 16, 17, 100, 1000}) {
        Generator gen(static_cast<uint64_t>(n));
        const size_t count = size_t(n);
        Buffer g(count), w(count), m(count), v(count);
        g.FillUniform(gen), w.FillUniform(gen), m.FillUniform(gen, -0.1f, 0.1f);
        v.FillUniform(gen, 0.0f, 0.01f);
        std::vector<float> wr = w.ToVector(), mr = m.ToVector(),
                           vr = v.ToVector();
        for (int64_t i = 0; i < n; ++i) {
          const size_t k = size_t(i);
          ref::adam_step(a, g[k], wr[k], mr[k], vr[k]);
        }
        AdamUpdate(a, g.data(), w.data(), m.data(), v.data(), n);
        for (int64_t i = 0; i < n; ++i) {
          const size_t k = size_t(i);
          if (HasFma(target)) {
            ASSERT_EQ(w[k], wr[k]) << "w at " << i << ", n = " << n;
            ASSERT_EQ(m[k], mr[k]) << "m at " << i;
            ASSERT_EQ(v[k], vr[k]) << "v at " << i;
          } else {
            ASSERT_NEAR(w[k], wr[k], 1e-6 * (1 + std::fabs(wr[k]))) << i;
            ASSERT_NEAR(m[k], mr[k], 1e-6 * (1 + std::fabs(mr[k]))) << i;
            ASSERT_NEAR(v[k], vr[k], 1e-6 * (1 + std::fabs(vr[k]))) << i;
          }
        }
      }
    }
  });
}

// Past the n-th element nothing is read or written (the Buffer's guard
// floats stay NaN, and a NaN read would reach w).
TEST(AdamTest, TouchesOnlyItsRange) {
  ForEachTarget([](const char*) {
    const AdamArgs a = Cases()[0];
    for (int64_t n : {3, 17}) {
      std::vector<float> g(64, 0.5f), w(64, 1.0f), m(64, 0.0f), v(64, 0.0f);
      for (size_t i = size_t(n); i < 64; ++i) {
        w[i] = m[i] = v[i] = -7.0f;
      }
      AdamUpdate(a, g.data(), w.data(), m.data(), v.data(), n);
      for (size_t i = 0; i < 64; ++i) {
        if (int64_t(i) < n) {
          EXPECT_NE(w[i], 1.0f) << i;
        } else {
          EXPECT_EQ(w[i], -7.0f) << i;
          EXPECT_EQ(m[i], -7.0f) << i;
          EXPECT_EQ(v[i], -7.0f) << i;
        }
      }
    }
  });
}

}  // namespace
}  // namespace ballast::ops
