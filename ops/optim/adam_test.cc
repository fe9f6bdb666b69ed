#include "ops/optim/adam.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ops/linear/gemm.h"
#include "ops/optim/update_epilogue_tester.h"
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
          if (test::TargetHasFma(target)) {
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

// Past the n-th element nothing is written: the sentinels stay.
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

// The kAdam epilogue stores the gradient and updates the weight and moments
// at the same offsets, bit for bit as a separate AdamUpdate over them — for
// a row-major gradient and for the trainer's panel layout.
TEST(AdamTest, GemmEpilogueEqualsASeparateUpdateBitForBit) {
  for (const AdamArgs& a : Cases()) {
    test::ForEachGradientGemm([&](const test::GradientGemm& c) {
      std::vector<float> w0(c.size), m0(c.size), v0(c.size);
      c.gen->FillUniform(w0, -1, 1), c.gen->FillUniform(m0, -0.1, 0.1);
      c.gen->FillUniform(v0, 0, 0.01);
      // Separate: gradient GEMM, then AdamUpdate over the same storage.
      std::vector<float> g1, w1 = w0, m1 = m0, v1 = v0;
      test::GradientInto(c, g1);
      AdamUpdate(a, g1.data(), w1.data(), m1.data(), v1.data(),
                 int64_t(c.size));
      // Fused.
      std::vector<float> g2, w2 = w0, m2 = m0, v2 = v0;
      EpilogueArgs ep;
      ep.update_w = w2.data();
      ep.adam = &a, ep.adam_m = m2.data(), ep.adam_v = v2.data();
      ep.store_grad = c.store_grad;
      test::GradientWithUpdate(c, Epilogue::kAdam, ep, g2);
      // Where there is no gradient (panel padding) the fused update leaves
      // all alone; the separate one saw g = 0 there.
      for (size_t i = 0; i < c.size; ++i) {
        if (g1[i] == 0.0f) w2[i] = w1[i], m2[i] = m1[i], v2[i] = v1[i];
      }
      if (c.store_grad) {
        EXPECT_EQ(g2, g1) << "gradient";
      }
      EXPECT_EQ(w2, w1) << "weight";
      EXPECT_EQ(m2, m1) << "m";
      EXPECT_EQ(v2, v1) << "v";
    });
  }
}

// The epilogue asks for its arguments.
TEST(AdamTest, GemmEpilogueWithoutItsArgumentsIsAnError) {
  Generator gen(1);
  Buffer x(8), dz(8);
  x.FillUniform(gen), dz.FillUniform(gen);
  const PackedB b = PackB(dz.data(), 2, 4, 4, 1);
  std::vector<float> y(16), w(16);
  EpilogueArgs ep;
  ep.update_w = w.data();
  const Status s =
      Gemm({x.data(), 1, 4, 4, y.data(), 4, 1}, b, Epilogue::kAdam, ep);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("epilogue adam needs"), std::string::npos)
      << s.ToString();
}

}  // namespace
}  // namespace ballast::ops
