#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/ref/activation.h"
#include "tests/gradcheck.h"

namespace ballast::ref {
namespace {

using ballast::testing::Dot;
using ballast::testing::ExpectGradientMatches;
using ballast::testing::RandomVector;
using ballast::testing::RandomVectorAwayFromZero;

constexpr int64_t kN = 17;

TEST(RefActivationTest, ReluForwardKnownPoints) {
  const std::vector<float> x = {-2.0f, -0.0f, 0.0f, 0.5f, 3.0f};
  std::vector<float> y(x.size());
  relu_forward(x.data(), y.data(), int64_t(x.size()));
  EXPECT_EQ(y, (std::vector<float>{0, 0, 0, 0.5f, 3}));
}

TEST(RefActivationTest, ReluBackwardIsZeroAtZero) {
  // PyTorch's threshold_backward passes the gradient only where x > 0.
  const std::vector<float> x = {-1, 0, 1}, dy = {5, 6, 7};
  std::vector<float> dx(3);
  relu_backward(x.data(), dy.data(), dx.data(), 3);
  EXPECT_EQ(dx, (std::vector<float>{0, 0, 7}));
}

TEST(RefActivationTest, ReluInPlace) {
  std::vector<float> x = {-1, 2, -3, 4};
  relu_forward(x.data(), x.data(), 4);
  EXPECT_EQ(x, (std::vector<float>{0, 2, 0, 4}));
}

TEST(RefActivationTest, LeakyReluAppliesSlopeToNegativesOnly) {
  const std::vector<double> x = {-2, -0.5, 0, 1.5};
  std::vector<double> y(4), dx(4);
  leaky_relu_forward(x.data(), y.data(), 4, /*slope=*/0.2);
  EXPECT_EQ(y, (std::vector<double>{-0.4, -0.1, 0, 1.5}));
  const std::vector<double> dy = {1, 1, 1, 1};
  leaky_relu_backward(x.data(), dy.data(), dx.data(), 4, 0.2);
  EXPECT_EQ(dx, (std::vector<double>{0.2, 0.2, 0.2, 1}));
}

TEST(RefActivationTest, TanhForwardKnownPoints) {
  const std::vector<double> x = {0, 1, -1, 20};
  std::vector<double> y(4);
  tanh_forward(x.data(), y.data(), 4);
  EXPECT_EQ(y[0], 0.0);
  EXPECT_DOUBLE_EQ(y[1], 0.76159415595576489);
  EXPECT_DOUBLE_EQ(y[2], -0.76159415595576489);
  EXPECT_DOUBLE_EQ(y[3], 1.0);
}

TEST(RefActivationTest, SigmoidForwardKnownPoints) {
  const std::vector<double> x = {0, 2, -2};
  std::vector<double> y(3);
  sigmoid_forward(x.data(), y.data(), 3);
  EXPECT_EQ(y[0], 0.5);
  EXPECT_DOUBLE_EQ(y[1], 0.88079707797788243);
  EXPECT_DOUBLE_EQ(y[2], 0.11920292202211755);
}

TEST(RefActivationTest, SigmoidOfLargeMagnitudeIsFinite) {
  const std::vector<float> xf = {100, -100};
  std::vector<float> yf(2);
  sigmoid_forward(xf.data(), yf.data(), 2);
  EXPECT_EQ(yf[0], 1.0f);
  EXPECT_TRUE(std::isfinite(yf[1]));
  EXPECT_GE(yf[1], 0.0f);
  EXPECT_LT(yf[1], 1e-30f);

  const std::vector<double> xd = {100, -100};
  std::vector<double> yd(2);
  sigmoid_forward(xd.data(), yd.data(), 2);
  EXPECT_EQ(yd[0], 1.0);
  EXPECT_DOUBLE_EQ(yd[1], std::exp(-100.0) / (1.0 + std::exp(-100.0)));
}

TEST(RefActivationTest, ReluGradientMatchesFiniteDifferences) {
  std::vector<double> x = RandomVectorAwayFromZero(kN, 1);
  const std::vector<double> dy = RandomVector(kN, 2);
  std::vector<double> y(kN), dx(kN);
  relu_backward(x.data(), dy.data(), dx.data(), kN);
  ExpectGradientMatches(
      [&] {
        relu_forward(x.data(), y.data(), kN);
        return Dot(y, dy);
      },
      x.data(), dx, "relu dx");
}

TEST(RefActivationTest, LeakyReluGradientMatchesFiniteDifferences) {
  constexpr double kSlope = 0.01;
  std::vector<double> x = RandomVectorAwayFromZero(kN, 3);
  const std::vector<double> dy = RandomVector(kN, 4);
  std::vector<double> y(kN), dx(kN);
  leaky_relu_backward(x.data(), dy.data(), dx.data(), kN, kSlope);
  ExpectGradientMatches(
      [&] {
        leaky_relu_forward(x.data(), y.data(), kN, kSlope);
        return Dot(y, dy);
      },
      x.data(), dx, "leaky_relu dx");
}

TEST(RefActivationTest, TanhGradientMatchesFiniteDifferences) {
  std::vector<double> x = RandomVector(kN, 5, -3.0, 3.0);
  const std::vector<double> dy = RandomVector(kN, 6);
  std::vector<double> y(kN), dx(kN);
  tanh_forward(x.data(), y.data(), kN);
  tanh_backward(y.data(), dy.data(), dx.data(), kN);  // takes the output
  ExpectGradientMatches(
      [&] {
        tanh_forward(x.data(), y.data(), kN);
        return Dot(y, dy);
      },
      x.data(), dx, "tanh dx");
}

TEST(RefActivationTest, SigmoidGradientMatchesFiniteDifferences) {
  std::vector<double> x = RandomVector(kN, 7, -6.0, 6.0);
  const std::vector<double> dy = RandomVector(kN, 8);
  std::vector<double> y(kN), dx(kN);
  sigmoid_forward(x.data(), y.data(), kN);
  sigmoid_backward(y.data(), dy.data(), dx.data(), kN);  // takes the output
  ExpectGradientMatches(
      [&] {
        sigmoid_forward(x.data(), y.data(), kN);
        return Dot(y, dy);
      },
      x.data(), dx, "sigmoid dx");
}

}  // namespace
}  // namespace ballast::ref
