#include "ops/optim/sgd.h"

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

std::vector<SgdArgs> Cases() {
  std::vector<SgdArgs> cases;
  SgdArgs plain;  // momentum 0
  plain.lr = 0.1f;
  cases.push_back(plain);
  SgdArgs first = plain;  // the first momentum step: buf = d
  first.has_buf = true, first.momentum = 0.9f, first.first = true;
  first.weight_decay = 1e-2f;
  cases.push_back(first);
  SgdArgs later = first;  // later steps, dampening 0.1, Nesterov
  later.first = false, later.add = 0.9f, later.nesterov = true;
  cases.push_back(later);
  SgdArgs heavy = later;  // no dampening, no Nesterov
  heavy.add = 1.0f, heavy.nesterov = false;
  cases.push_back(heavy);
  return cases;
}

// Each element as ops/ref/optim.h's rule (torch's rounding) gives it: the
// same bits with FMA, within a few ulps where each product is rounded.
void ExpectUlpsOrBits(const char* target, float got, float want,
                      const char* what, int64_t i) {
  if (test::TargetHasFma(target)) {
    EXPECT_EQ(got, want) << what << " at " << i;
  } else {
    EXPECT_NEAR(got, want, 4e-7 * (1 + std::fabs(want))) << what << " at " << i;
  }
}

TEST(SgdTest, UpdateFollowsTorchsRuleOnEveryTarget) {
  ForEachTarget([](const char* target) {
    for (const SgdArgs& a : Cases()) {
      for (int64_t n : {1, 15, 16, 17, 100}) {
        Generator gen(static_cast<uint64_t>(n));
        Buffer g(static_cast<size_t>(n)), w(static_cast<size_t>(n)),
            buf(static_cast<size_t>(n));
        g.FillUniform(gen), w.FillUniform(gen), buf.FillUniform(gen);
        std::vector<float> wr = w.ToVector(), br = buf.ToVector();
        for (int64_t i = 0; i < n; ++i) {
          ref::sgd_step(a, g[size_t(i)], wr[size_t(i)], br[size_t(i)]);
        }
        SgdUpdate(a, g.data(), w.data(), a.has_buf ? buf.data() : nullptr, n);
        for (int64_t i = 0; i < n; ++i) {
          ExpectUlpsOrBits(target, w[size_t(i)], wr[size_t(i)], "w", i);
          if (a.has_buf) {
            ExpectUlpsOrBits(target, buf[size_t(i)], br[size_t(i)], "buf", i);
          }
        }
      }
    }
  });
}

// The kSgd epilogue stores the gradient and updates the weight and buffer
// at the same offsets, bit for bit as a separate SgdUpdate over them —
// for a row-major gradient and for the trainer's panel layout.
TEST(SgdTest, GemmEpilogueEqualsASeparateUpdateBitForBit) {
  for (const SgdArgs& a : Cases()) {
    test::ForEachGradientGemm([&](const test::GradientGemm& c) {
      std::vector<float> w0(c.size), b0(c.size);
      c.gen->FillUniform(w0, -1, 1), c.gen->FillUniform(b0, -1, 1);
      // Separate: gradient GEMM, then SgdUpdate over the same storage.
      std::vector<float> g1, w1 = w0, b1 = b0;
      test::GradientInto(c, g1);
      SgdUpdate(a, g1.data(), w1.data(), a.has_buf ? b1.data() : nullptr,
                int64_t(c.size));
      // Fused.
      std::vector<float> g2, w2 = w0, b2 = b0;
      EpilogueArgs ep;
      ep.sgd = &a, ep.update_w = w2.data();
      ep.sgd_buf = a.has_buf ? b2.data() : nullptr;
      ep.store_grad = c.store_grad;
      test::GradientWithUpdate(c, Epilogue::kSgd, ep, g2);
      // Where there is no gradient (panel padding) the fused update leaves
      // all alone; the separate one saw g = 0 there.
      for (size_t i = 0; i < c.size; ++i) {
        if (g1[i] == 0.0f) w2[i] = w1[i], b2[i] = b1[i];
      }
      if (c.store_grad) {
        EXPECT_EQ(g2, g1) << "gradient";
      }
      EXPECT_EQ(w2, w1) << "weight";
      if (a.has_buf) {
        EXPECT_EQ(b2, b1) << "buffer";
      }
    });
  }
}

}  // namespace
}  // namespace ballast::ops
