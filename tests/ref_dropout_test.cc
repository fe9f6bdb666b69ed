#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "ballast/rng.h"
#include "ops/ref/dropout.h"
#include "tests/gradcheck.h"

namespace ballast::ref {
namespace {

using ballast::testing::Dot;
using ballast::testing::ExpectGradientMatches;
using ballast::testing::RandomVector;

bool MaskBit(const std::vector<uint64_t>& mask, int64_t i) {
  return (mask[i / 64] >> (i % 64)) & 1;
}

// Inputs with no zeros, so a zero output can only mean "dropped".
std::vector<float> NonZeroInput(int64_t n) {
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = float(i % 13) + 0.5f;
  return x;
}

struct DropoutRun {
  std::vector<float> y;
  std::vector<uint64_t> mask;
};
DropoutRun RunDropout(const std::vector<float>& x, double p,
                      const RngSlice& slice) {
  const int64_t n = int64_t(x.size());
  DropoutRun r{std::vector<float>(n),
               std::vector<uint64_t>(DropoutMaskWords(n))};
  EXPECT_TRUE(
      dropout_forward_train(x.data(), r.y.data(), r.mask.data(), n, p, slice)
          .ok());
  return r;
}

TEST(RefDropoutTest, ZeroProbabilityIsIdentity) {
  const std::vector<float> x = NonZeroInput(130);
  const DropoutRun r = RunDropout(x, 0.0, {.seed = 1});
  EXPECT_EQ(r.y, x);
  for (int64_t i = 0; i < 130; ++i) EXPECT_TRUE(MaskBit(r.mask, i)) << i;
}

TEST(RefDropoutTest, ProbabilityOneGivesZeros) {
  const std::vector<float> x = NonZeroInput(130);
  const DropoutRun r = RunDropout(x, 1.0, {.seed = 1});
  EXPECT_EQ(r.y, std::vector<float>(130, 0.0f));
  EXPECT_EQ(r.mask, std::vector<uint64_t>(3, 0));
}

TEST(RefDropoutTest, ProbabilityOutsideUnitIntervalIsAnError) {
  std::vector<float> x(4, 1.0f), y(4);
  uint64_t mask = 0;
  for (double p : {-0.1, 1.5, std::nan("")}) {
    const Status s = dropout_forward_train(x.data(), y.data(), &mask, 4, p,
                                           RngSlice{.seed = 1});
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "p = " << p;
    EXPECT_NE(s.message().find("[0, 1]"), std::string::npos) << s.message();
  }
}

TEST(RefDropoutTest, KeptFractionIsOneMinusP) {
  constexpr int64_t kN = 200000;
  const std::vector<float> x(kN, 1.0f);
  for (double p : {0.1, 0.5, 0.8}) {
    const DropoutRun r = RunDropout(x, p, {.seed = 42, .first_block = 9});
    int64_t kept = 0;
    for (int64_t i = 0; i < kN; ++i) kept += MaskBit(r.mask, i);
    // Binomial(n, 1 − p): allow 6 standard deviations.
    const double sigma = std::sqrt(p * (1 - p) / double(kN));
    EXPECT_NEAR(double(kept) / kN, 1.0 - p, 6 * sigma) << "p = " << p;
  }
}

TEST(RefDropoutTest, KeptValuesAreScaledByInverseKeepProbability) {
  constexpr double kP = 0.3;
  const std::vector<float> x = NonZeroInput(1000);
  const DropoutRun r = RunDropout(x, kP, {.seed = 7});
  const float scale = float(1.0 / (1.0 - kP));
  int64_t kept = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (r.y[i] != 0.0f) {
      EXPECT_EQ(r.y[i], x[i] * scale) << i;
      ++kept;
    }
  }
  EXPECT_GT(kept, 600);  // about 700 of 1000
}

TEST(RefDropoutTest, MaskBitsMatchOutputs) {
  constexpr int64_t kN = 197;  // not a multiple of 64
  const std::vector<float> x = NonZeroInput(kN);
  const DropoutRun r = RunDropout(x, 0.5, {.seed = 3});
  int64_t kept = 0;
  for (int64_t i = 0; i < kN; ++i) {
    EXPECT_EQ(MaskBit(r.mask, i), r.y[i] != 0.0f) << i;
    kept += MaskBit(r.mask, i);
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, kN);
  // Bits past n in the last word stay clear.
  EXPECT_EQ(r.mask.back() >> (kN % 64), 0u);
}

TEST(RefDropoutTest, SameSliceGivesSameMask) {
  const std::vector<float> x = NonZeroInput(500);
  const RngSlice slice{.seed = 11, .first_block = 5};
  const DropoutRun a = RunDropout(x, 0.4, slice);
  const DropoutRun b = RunDropout(x, 0.4, slice);
  EXPECT_EQ(a.mask, b.mask);
  EXPECT_EQ(a.y, b.y);
}

TEST(RefDropoutTest, DifferentSeedsOrBlocksGiveDifferentMasks) {
  const std::vector<float> x = NonZeroInput(500);
  const DropoutRun a = RunDropout(x, 0.5, {.seed = 1});
  const DropoutRun b = RunDropout(x, 0.5, {.seed = 2});
  const DropoutRun c = RunDropout(x, 0.5, {.seed = 1, .first_block = 1000});
  EXPECT_NE(a.mask, b.mask);
  EXPECT_NE(a.mask, c.mask);
}

TEST(RefDropoutTest, GeneratorTakesDisjointSlices) {
  Generator gen(5);
  const std::vector<float> x = NonZeroInput(256);
  const DropoutRun a = RunDropout(x, 0.5, gen.Take(256));
  const DropoutRun b = RunDropout(x, 0.5, gen.Take(256));
  EXPECT_NE(a.mask, b.mask);
}

TEST(RefDropoutTest, BackwardMatchesFiniteDifferences) {
  constexpr int64_t kN = 150;
  constexpr double kP = 0.25;
  const RngSlice slice{.seed = 9};
  std::vector<double> x = RandomVector(kN, 1);
  const std::vector<double> dy = RandomVector(kN, 2);
  std::vector<double> y(kN);
  std::vector<uint64_t> mask(DropoutMaskWords(kN));
  // The mask is a function of (slice, i) only, so it is fixed while x moves.
  auto loss = [&] {
    EXPECT_TRUE(
        dropout_forward_train(x.data(), y.data(), mask.data(), kN, kP, slice)
            .ok());
    return Dot(y, dy);
  };
  loss();
  std::vector<double> dx(kN);
  dropout_backward(mask.data(), dy.data(), dx.data(), kN, kP);
  ExpectGradientMatches(loss, x.data(), dx, "dropout dx");
  for (int64_t i = 0; i < kN; ++i) {
    EXPECT_DOUBLE_EQ(dx[i], MaskBit(mask, i) ? dy[i] / (1 - kP) : 0.0) << i;
  }
}

}  // namespace
}  // namespace ballast::ref
