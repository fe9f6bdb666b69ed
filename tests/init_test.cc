#include "ballast/init.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace ballast::init {
namespace {

struct Moments {
  double mean = 0, std = 0, min = 0, max = 0;
};

Moments Measure(const Tensor& t) {
  Moments m;
  double s = 0, ss = 0;
  m.min = m.max = t.data()[0];
  for (float v : t.span()) {
    s += v;
    m.min = std::min(m.min, double(v));
    m.max = std::max(m.max, double(v));
  }
  m.mean = s / t.numel();
  for (float v : t.span()) ss += (v - m.mean) * (v - m.mean);
  m.std = std::sqrt(ss / t.numel());
  return m;
}

// Sampling tolerance for a mean or std estimated from n draws: 5 standard
// errors, so a correct initializer fails with probability ~1e-6 while a
// wrong gain or fan (a factor of √2 or more) fails for sure.
double SamplingTol(double std, int64_t n) {
  return 5.0 * std / std::sqrt(double(n));
}

void ExpectUniform(const Tensor& t, double bound) {
  Moments m = Measure(t);
  const double std = bound / std::sqrt(3.0);
  EXPECT_GE(m.min, -bound);
  EXPECT_LE(m.max, bound);
  EXPECT_GT(m.max, 0.99 * bound);  // the range is actually used
  EXPECT_LT(m.min, -0.99 * bound);
  EXPECT_NEAR(m.mean, 0.0, SamplingTol(std, t.numel()));
  EXPECT_NEAR(m.std, std, 3 * SamplingTol(std, t.numel()));
}

void ExpectNormal(const Tensor& t, double mean, double std) {
  Moments m = Measure(t);
  EXPECT_NEAR(m.mean, mean, SamplingTol(std, t.numel()));
  EXPECT_NEAR(m.std, std, 3 * SamplingTol(std, t.numel()));
}

TEST(InitTest, CalculateGainMatchesTorch) {
  EXPECT_DOUBLE_EQ(*calculate_gain(Nonlinearity::kLinear), 1.0);
  EXPECT_DOUBLE_EQ(*calculate_gain(Nonlinearity::kConv2d), 1.0);
  EXPECT_DOUBLE_EQ(*calculate_gain(Nonlinearity::kSigmoid), 1.0);
  EXPECT_DOUBLE_EQ(*calculate_gain(Nonlinearity::kTanh), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(*calculate_gain(Nonlinearity::kRelu), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(*calculate_gain(Nonlinearity::kLeakyRelu),
                   std::sqrt(2.0 / (1.0 + 0.01 * 0.01)));
  EXPECT_DOUBLE_EQ(*calculate_gain(Nonlinearity::kLeakyRelu, 0.2),
                   std::sqrt(2.0 / 1.04));
  EXPECT_DOUBLE_EQ(*calculate_gain(Nonlinearity::kSelu), 0.75);
}

TEST(InitTest, NonlinearityNamesRoundTripAndUnknownNamesFail) {
  for (const char* name : {"linear", "conv1d", "conv_transpose3d", "sigmoid",
                           "tanh", "relu", "leaky_relu", "selu"}) {
    Result<Nonlinearity> nl = ParseNonlinearity(name);
    ASSERT_TRUE(nl.ok()) << name;
    EXPECT_EQ(NonlinearityName(*nl), name);
  }
  Result<Nonlinearity> bad = ParseNonlinearity("swish");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'swish'"), std::string::npos);
  EXPECT_FALSE(ParseFanMode("fan_avg").ok());
}

TEST(InitTest, FansFollowTorchForLinearAndConvShapes) {
  Tensor w = Tensor::Zeros({256, 784});
  EXPECT_EQ(calculate_fans(w)->fan_in, 784);
  EXPECT_EQ(calculate_fans(w)->fan_out, 256);
  Tensor conv = Tensor::Zeros({16, 3, 5, 5});
  EXPECT_EQ(calculate_fans(conv)->fan_in, 75);
  EXPECT_EQ(calculate_fans(conv)->fan_out, 400);
  Tensor vec = Tensor::Zeros({10});
  Result<Fans> r = calculate_fans(vec);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("fewer than 2 dimensions"),
            std::string::npos);
}

TEST(InitTest, ConstantSchemes) {
  Tensor t = Tensor::Full({3, 4}, 5.0f);
  ASSERT_TRUE(zeros(t).ok());
  EXPECT_EQ(Measure(t).max, 0.0);
  ASSERT_TRUE(ones(t).ok());
  EXPECT_EQ(Measure(t).min, 1.0);
  ASSERT_TRUE(constant(t, -0.25).ok());
  EXPECT_EQ(Measure(t).max, -0.25);
  Tensor empty;
  EXPECT_FALSE(zeros(empty).ok());
}

TEST(InitTest, NormalAndUniformHaveRequestedMoments) {
  Generator gen(0);
  Tensor t = Tensor::Zeros({400, 500});
  ASSERT_TRUE(normal(t, gen, 1.5, 0.2).ok());
  ExpectNormal(t, 1.5, 0.2);
  ASSERT_TRUE(uniform(t, gen, -3, 3).ok());
  ExpectUniform(t, 3);
}

TEST(InitTest, NormalAndUniformRejectBadArguments) {
  Generator gen(0);
  Tensor t = Tensor::Zeros({4, 4});
  Status s = normal(t, gen, 0, -1);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("std = -1"), std::string::npos);
  s = uniform(t, gen, 1, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("a <= b"), std::string::npos);
  EXPECT_FALSE(normal(t, gen, NAN, 1).ok());
}

TEST(InitTest, XavierUsesBothFans) {
  Generator gen(1);
  Tensor t = Tensor::Zeros({300, 700});
  ASSERT_TRUE(xavier_uniform(t, gen).ok());
  ExpectUniform(t, std::sqrt(6.0 / 1000.0));
  const double tanh_gain = *calculate_gain(Nonlinearity::kTanh);
  ASSERT_TRUE(xavier_normal(t, gen, tanh_gain).ok());
  ExpectNormal(t, 0, tanh_gain * std::sqrt(2.0 / 1000.0));
}

TEST(InitTest, KaimingModesAndNonlinearities) {
  Generator gen(2);
  Tensor t = Tensor::Zeros({256, 784});
  // torch defaults: a = 0, fan_in, leaky_relu → gain √2.
  ASSERT_TRUE(kaiming_uniform(t, gen).ok());
  ExpectUniform(t, std::sqrt(3.0) * std::sqrt(2.0) / std::sqrt(784.0));
  ASSERT_TRUE(
      kaiming_normal(t, gen, 0, FanMode::kFanOut, Nonlinearity::kRelu).ok());
  ExpectNormal(t, 0, std::sqrt(2.0) / std::sqrt(256.0));
  ASSERT_TRUE(
      kaiming_normal(t, gen, 0.2, FanMode::kFanIn, Nonlinearity::kLeakyRelu)
          .ok());
  ExpectNormal(t, 0, std::sqrt(2.0 / 1.04) / std::sqrt(784.0));
  ASSERT_TRUE(
      kaiming_uniform(t, gen, 0, FanMode::kFanIn, Nonlinearity::kTanh).ok());
  ExpectUniform(t, std::sqrt(3.0) * (5.0 / 3.0) / std::sqrt(784.0));
}

TEST(InitTest, FanBasedSchemesRejectVectorsAndZeroFans) {
  Generator gen(3);
  Tensor vec = Tensor::Zeros({10});
  EXPECT_FALSE(kaiming_uniform(vec, gen).ok());
  EXPECT_FALSE(kaiming_normal(vec, gen).ok());
  EXPECT_FALSE(xavier_uniform(vec, gen).ok());
  EXPECT_FALSE(xavier_normal(vec, gen).ok());
  EXPECT_FALSE(orthogonal(vec, gen).ok());
  Tensor zero_fan = Tensor::Zeros({4, 0});
  Status s = kaiming_uniform(zero_fan, gen);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("fan_in is 0"), std::string::npos);
  EXPECT_FALSE(xavier_normal(zero_fan, gen).ok());
}

TEST(InitTest, OrthogonalRowsOrColumnsAreOrthonormalTimesGain) {
  Generator gen(4);
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{64, 32}, {32, 64}, {50, 50}}) {
    Tensor t = Tensor::Zeros({rows, cols});
    const double gain = 2.0;
    ASSERT_TRUE(orthogonal(t, gen, gain).ok());
    // QᵀQ = gain²·I over the shorter side.
    const bool tall = rows >= cols;
    const int64_t k = tall ? cols : rows, n = tall ? rows : cols;
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < n; ++e) {
          const float* d = t.data();
          dot += tall ? double(d[e * cols + i]) * d[e * cols + j]
                      : double(d[i * cols + e]) * d[j * cols + e];
        }
        EXPECT_NEAR(dot, i == j ? gain * gain : 0.0, 1e-5) << i << "," << j;
      }
    }
  }
}

TEST(InitTest, LinearDefaultIsUniformOverOneOverSqrtFanInNotHe) {
  Generator gen(5);
  Tensor w = Tensor::Zeros({512, 784}), b = Tensor::Zeros({512});
  ASSERT_TRUE(linear_default(w, b, gen).ok());
  const double bound = 1.0 / std::sqrt(784.0);
  EXPECT_DOUBLE_EQ(*linear_default_bound(784), bound);
  ExpectUniform(w, bound);
  Moments mb = Measure(b);
  EXPECT_LE(mb.max, bound);
  EXPECT_GE(mb.min, -bound);
  // He (kaiming_normal, relu) would have std √2/√784, √6 times larger.
  EXPECT_LT(Measure(w).std, 0.5 * std::sqrt(2.0 / 784.0));
  Tensor bad_bias = Tensor::Zeros({3});
  EXPECT_FALSE(linear_default(w, bad_bias, gen).ok());
  Tensor no_bias;
  EXPECT_TRUE(linear_default(w, no_bias, gen).ok());
}

TEST(InitTest, BatchNormDefaults) {
  Tensor g = Tensor::Full({8}, 3), b = Tensor::Full({8}, 3),
         rm = Tensor::Full({8}, 3), rv = Tensor::Full({8}, 3);
  ASSERT_TRUE(batchnorm_default(g, b, rm, rv).ok());
  EXPECT_EQ(Measure(g).min, 1.0);
  EXPECT_EQ(Measure(b).max, 0.0);
  EXPECT_EQ(Measure(rm).max, 0.0);
  EXPECT_EQ(Measure(rv).min, 1.0);
  Tensor none;  // affine = false: no γ/β
  EXPECT_TRUE(batchnorm_default(none, none, rm, rv).ok());
}

TEST(InitTest, SameSeedSameWeights) {
  Tensor a = Tensor::Zeros({64, 64}), b = Tensor::Zeros({64, 64});
  Generator g1(11), g2(11);
  ASSERT_TRUE(kaiming_normal(a, g1).ok());
  ASSERT_TRUE(kaiming_normal(b, g2).ok());
  EXPECT_TRUE(std::equal(a.span().begin(), a.span().end(), b.span().begin()));
}

}  // namespace
}  // namespace ballast::init
