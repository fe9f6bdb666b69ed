#include "ballast/rng.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace ballast {
namespace {

// Known-answer vectors of Philox4x32-10 from the Random123 distribution
// (kat_vectors): counter (c0, c1, 0, 0), key (k0, k1).
TEST(RngTest, PhiloxMatchesKnownAnswers) {
  auto zero = Philox4x32(0, 0);
  EXPECT_EQ(zero[0], 0x6627e8d5u);
  EXPECT_EQ(zero[1], 0xe169c58du);
  EXPECT_EQ(zero[2], 0xbc57ac4cu);
  EXPECT_EQ(zero[3], 0x9b00dbd8u);
}

TEST(RngTest, DrawsDependOnlyOnSeedOffsetAndIndex) {
  Generator a(42), b(42), c(43);
  std::vector<float> va(1000), vb(1000), vc(1000);
  a.FillUniform(va, 0, 1);
  b.FillUniform(vb, 0, 1);
  c.FillUniform(vc, 0, 1);
  EXPECT_EQ(va, vb);
  EXPECT_NE(va, vc);
  // A slice evaluated in any order (as threads would) gives the same values.
  Generator d(42);
  RngSlice s = d.Take(1000);
  for (int64_t i = 999; i >= 0; --i) {
    EXPECT_EQ(s.Uniform(i), va[size_t(i)]);
  }
  EXPECT_EQ(d.offset(), a.offset());
}

TEST(RngTest, SuccessiveDrawsDoNotOverlap) {
  Generator g(7);
  std::vector<float> first(5), second(5);
  g.FillUniform(first, 0, 1);
  g.FillUniform(second, 0, 1);
  EXPECT_NE(first, second);
  EXPECT_EQ(g.offset(), 4u);  // two draws of 5 words: 2 blocks each
}

TEST(RngTest, UniformAndNormalHaveTheRightMoments) {
  Generator g(1);
  const size_t n = 200000;
  std::vector<float> u(n), z(n);
  g.FillUniform(u, -2, 4);
  g.FillNormal(z, 3, 0.5);
  double su = 0, sz = 0, szz = 0;
  float lo = 1e9f, hi = -1e9f;
  for (size_t i = 0; i < n; ++i) {
    su += u[i];
    lo = std::min(lo, u[i]);
    hi = std::max(hi, u[i]);
    sz += z[i];
  }
  for (float v : z) szz += (v - sz / n) * (v - sz / n);
  EXPECT_NEAR(su / n, 1.0, 0.02);
  EXPECT_GE(lo, -2.0f);
  EXPECT_LT(hi, 4.0f);
  EXPECT_NEAR(sz / n, 3.0, 0.005);
  EXPECT_NEAR(std::sqrt(szz / n), 0.5, 0.005);
}

TEST(RngTest, NextDoubleIsInUnitInterval) {
  Generator g(9);
  double s = 0;
  for (int i = 0; i < 10000; ++i) {
    double d = g.NextDouble();
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    s += d;
  }
  EXPECT_NEAR(s / 10000, 0.5, 0.02);
}

}  // namespace
}  // namespace ballast
