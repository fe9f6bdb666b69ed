#include "ops/optim/sgd.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ops/linear/gemm.h"
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

// Whether Highway's MulAdd on this target is one fused multiply-add.
bool HasFma(const char* target) {
  const std::string t = target;
  return t.rfind("AVX2", 0) == 0 || t.rfind("AVX3", 0) == 0 || t == "NEON" ||
         t.rfind("SVE", 0) == 0;
}

// Each element as ops/ref/optim.h's rule (torch's rounding) gives it: the
// same bits with FMA, within a few ulps where each product is rounded.
void ExpectUlpsOrBits(const char* target, float got, float want,
                      const char* what, int64_t i) {
  if (HasFma(target)) {
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
  ForEachTarget([](const char*) {
    for (const SgdArgs& a : Cases()) {
      for (int threads : {1, 2}) {
        for (bool panels : {false, true}) {
          for (int64_t n : {10, 64, 100}) {
            const int64_t m = 31, k = 20;  // dWᵀ [m, n] = Aᵀ·B, K = batch
            Generator gen(static_cast<uint64_t>(n * 7 + threads));
            Buffer x(size_t(k * m)), dz(size_t(k * n));
            x.FillUniform(gen), dz.FillUniform(gen);
            const PackedB b = PackB(dz.data(), k, n, n, 1);
            const int64_t width = panels ? PanelLayoutWidth(n) : n;
            const size_t size = size_t(panels ? PackedFloats(m, n) : m * n);
            std::vector<float> w0(size), b0(size);
            gen.FillUniform(w0, -1, 1), gen.FillUniform(b0, -1, 1);
            GemmArgs args{x.data(), 1, m, m, nullptr, width, threads};
            if (panels) args.y_panel_stride = m * width;
            // Separate: gradient GEMM, then SgdUpdate over the same storage.
            std::vector<float> g1(size, 0.0f), w1 = w0, b1 = b0;
            args.y = g1.data();
            ASSERT_TRUE(Gemm(args, b, Epilogue::kNone, {}).ok());
            SgdUpdate(a, g1.data(), w1.data(), a.has_buf ? b1.data() : nullptr,
                      int64_t(size));
            // Fused.
            std::vector<float> g2(size, 0.0f), w2 = w0, b2 = b0;
            args.y = g2.data();
            EpilogueArgs ep;
            ep.sgd = &a, ep.update_w = w2.data();
            ep.sgd_buf = a.has_buf ? b2.data() : nullptr;
            ASSERT_TRUE(Gemm(args, b, Epilogue::kSgd, ep).ok());
            // Where no gradient is stored (panel padding) neither path may
            // move the weight: the separate update saw g = 0 there.
            for (size_t i = 0; i < size; ++i) {
              if (g1[i] == 0.0f && g2[i] == 0.0f) w2[i] = w1[i], b2[i] = b1[i];
            }
            EXPECT_EQ(g2, g1) << "gradient, N=" << n;
            EXPECT_EQ(w2, w1) << "weight, N=" << n;
            if (a.has_buf) {
              EXPECT_EQ(b2, b1) << "buffer, N=" << n;
            }
          }
        }
      }
    }
  });
}

}  // namespace
}  // namespace ballast::ops
