#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/ref/cross_entropy.h"
#include "tests/gradcheck.h"

namespace ballast::ref {
namespace {

using ballast::testing::ExpectGradientMatches;
using ballast::testing::RandomVector;

// Rounding error of a sum of a few O(1) doubles.
constexpr double kRoundoff = 1e-15;

TEST(RefCrossEntropyTest, ForwardMatchesHandComputedValue) {
  // Row 0: log(e + e² + e³) − 3; row 1: log 3 (uniform over 3 classes).
  const std::vector<double> logits = {1, 2, 3, 1, 1, 1};
  const std::vector<int32_t> labels = {2, 0};
  double loss = 0;
  ASSERT_TRUE(
      cross_entropy_forward(logits.data(), labels.data(), 2, 3, &loss).ok());
  EXPECT_DOUBLE_EQ(loss, (0.40760596444438013 + 1.0986122886681098) / 2);
}

TEST(RefCrossEntropyTest, StableForHugeLogits) {
  // Naive exp(1e4) overflows; log-sum-exp gives exact answers here.
  const std::vector<float> logits = {1e4f, -1e4f, 0, 1e4f, -1e4f, 0};
  const std::vector<int32_t> labels = {0, 1};
  float loss = 0;
  ASSERT_TRUE(
      cross_entropy_forward(logits.data(), labels.data(), 2, 3, &loss).ok());
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_EQ(loss, (0.0f + 2e4f) / 2);  // row 0 loses 0, row 1 loses 2e4

  std::vector<float> dlogits(6);
  ASSERT_TRUE(cross_entropy_backward(logits.data(), labels.data(), 2, 3, 1.0f,
                                     dlogits.data())
                  .ok());
  // softmax is one-hot on class 0 in both rows; divided by M = 2.
  EXPECT_EQ(dlogits, (std::vector<float>{0, 0, 0, 0.5f, -0.5f, 0}));
}

TEST(RefCrossEntropyTest, LabelOutOfRangeIsAnError) {
  const std::vector<float> logits(6, 0.0f);
  float loss = 0;
  std::vector<float> dlogits(6);
  for (int32_t bad : {-1, 3}) {
    const std::vector<int32_t> labels = {0, bad};
    const Status fwd =
        cross_entropy_forward(logits.data(), labels.data(), 2, 3, &loss);
    EXPECT_EQ(fwd.code(), StatusCode::kOutOfRange) << "label " << bad;
    EXPECT_NE(fwd.message().find("label " + std::to_string(bad)),
              std::string::npos)
        << fwd.message();
    EXPECT_NE(fwd.message().find("row 1"), std::string::npos) << fwd.message();
    const Status bwd = cross_entropy_backward(logits.data(), labels.data(), 2,
                                              3, 1.0f, dlogits.data());
    EXPECT_EQ(bwd.code(), StatusCode::kOutOfRange) << "label " << bad;
  }
}

TEST(RefCrossEntropyTest, EmptyBatchIsAnError) {
  float loss = 0;
  const Status s = cross_entropy_forward<float>(nullptr, nullptr, 0, 3, &loss);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

TEST(RefCrossEntropyTest, BackwardRowsSumToZero) {
  constexpr int64_t M = 4, C = 5;
  const std::vector<double> logits = RandomVector(M * C, 1, -4.0, 4.0);
  const std::vector<int32_t> labels = {0, 4, 2, 2};
  std::vector<double> dlogits(M * C);
  ASSERT_TRUE(cross_entropy_backward(logits.data(), labels.data(), M, C, 1.0,
                                     dlogits.data())
                  .ok());
  for (int64_t m = 0; m < M; ++m) {
    double sum = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      sum += dlogits[m * C + c];
      // Only the label's entry is negative: p − 1 < 0, others p > 0.
      EXPECT_EQ(dlogits[m * C + c] < 0, c == labels[m]) << m << ", " << c;
    }
    EXPECT_NEAR(sum, 0.0, kRoundoff) << "row " << m;
  }
}

TEST(RefCrossEntropyTest, BackwardMatchesFiniteDifferences) {
  constexpr int64_t M = 3, C = 4;
  constexpr double kDloss = 0.7;  // upstream gradient of the scalar loss
  std::vector<double> logits = RandomVector(M * C, 2, -3.0, 3.0);
  const std::vector<int32_t> labels = {3, 0, 1};
  std::vector<double> dlogits(M * C);
  ASSERT_TRUE(cross_entropy_backward(logits.data(), labels.data(), M, C, kDloss,
                                     dlogits.data())
                  .ok());
  ExpectGradientMatches(
      [&] {
        double loss = 0;
        EXPECT_TRUE(
            cross_entropy_forward(logits.data(), labels.data(), M, C, &loss)
                .ok());
        return kDloss * loss;
      },
      logits.data(), dlogits, "dlogits");
}

}  // namespace
}  // namespace ballast::ref
