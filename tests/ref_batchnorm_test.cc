#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "ops/ref/batchnorm.h"
#include "tests/gradcheck.h"

namespace ballast::ref {
namespace {

using ballast::testing::Dot;
using ballast::testing::ExpectAllNear;
using ballast::testing::ExpectGradientMatches;
using ballast::testing::RandomVector;

// Forward results are computed in double from the same formula; only the
// order of operations differs.
constexpr double kForwardTol = 1e-12;

// Per-channel statistics of x [M, C], computed independently of the op.
struct ColumnStats {
  std::vector<double> mean, biased_var, unbiased_var;
};
ColumnStats Stats(const std::vector<double>& x, int64_t M, int64_t C) {
  ColumnStats s{std::vector<double>(C), std::vector<double>(C),
                std::vector<double>(C)};
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0.0;
    for (int64_t m = 0; m < M; ++m) sum += x[m * C + c];
    s.mean[c] = sum / double(M);
    double ss = 0.0;
    for (int64_t m = 0; m < M; ++m) {
      ss += (x[m * C + c] - s.mean[c]) * (x[m * C + c] - s.mean[c]);
    }
    s.biased_var[c] = ss / double(M);
    s.unbiased_var[c] = ss / double(M - 1);
  }
  return s;
}

TEST(RefBatchNormTest, TrainForwardHandComputed) {
  // One channel holding {1, 3}: μ = 2, biased σ² = 1 (unbiased would be 2).
  const std::vector<double> x = {1, 3};
  const double gamma = 2, beta = 0.5, eps = 1e-5;
  std::vector<double> y(2);
  double mean = 0, rstd = 0;
  ASSERT_TRUE(batchnorm_forward_train<double>(x.data(), &gamma, &beta, y.data(),
                                              &mean, &rstd, {}, 2, 1,
                                              {.eps = eps})
                  .ok());
  const double expected_rstd = 1.0 / std::sqrt(1.0 + eps);
  EXPECT_DOUBLE_EQ(mean, 2.0);
  EXPECT_DOUBLE_EQ(rstd, expected_rstd);
  EXPECT_DOUBLE_EQ(y[0], -2.0 * expected_rstd + 0.5);
  EXPECT_DOUBLE_EQ(y[1], 2.0 * expected_rstd + 0.5);
}

TEST(RefBatchNormTest, TrainForwardNormalizesEachChannel) {
  constexpr int64_t M = 16, C = 3;
  const std::vector<double> x = RandomVector(M * C, 1, 2.0, 7.0);
  std::vector<double> y(M * C);
  ASSERT_TRUE(batchnorm_forward_train<double>(x.data(), nullptr, nullptr,
                                              y.data(), nullptr, nullptr, {}, M,
                                              C, {.affine = false})
                  .ok());
  const ColumnStats in = Stats(x, M, C), out = Stats(y, M, C);
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_NEAR(out.mean[c], 0.0, kForwardTol);
    // Normalized by the biased variance: σ²_y = σ²/(σ² + ε).
    EXPECT_NEAR(out.biased_var[c], in.biased_var[c] / (in.biased_var[c] + 1e-5),
                kForwardTol);
  }
}

TEST(RefBatchNormTest, AffineFalseEqualsUnitGammaZeroBeta) {
  constexpr int64_t M = 5, C = 4;
  const std::vector<double> x = RandomVector(M * C, 2);
  const std::vector<double> ones(C, 1.0), zeros(C, 0.0);
  std::vector<double> y_none(M * C), y_unit(M * C);
  ASSERT_TRUE(batchnorm_forward_train<double>(x.data(), nullptr, nullptr,
                                              y_none.data(), nullptr, nullptr,
                                              {}, M, C, {.affine = false})
                  .ok());
  ASSERT_TRUE(batchnorm_forward_train<double>(x.data(), ones.data(),
                                              zeros.data(), y_unit.data(),
                                              nullptr, nullptr, {}, M, C, {})
                  .ok());
  EXPECT_EQ(y_none, y_unit);
}

// Gradient check of the training forward (batch statistics depend on x).
void CheckTrainGradients(bool affine) {
  constexpr int64_t M = 6, C = 3;
  std::vector<double> x = RandomVector(M * C, 3, -2.0, 3.0);
  std::vector<double> gamma = RandomVector(C, 4, 0.5, 2.0);
  std::vector<double> beta = RandomVector(C, 5);
  const std::vector<double> dy = RandomVector(M * C, 6);
  const double* g = affine ? gamma.data() : nullptr;
  const double* b = affine ? beta.data() : nullptr;
  const BatchNormOptions opt{.affine = affine};

  std::vector<double> y(M * C), mean(C), rstd(C);
  auto loss = [&] {
    EXPECT_TRUE(batchnorm_forward_train(x.data(), g, b, y.data(), mean.data(),
                                        rstd.data(), {}, M, C, opt)
                    .ok());
    return Dot(y, dy);
  };
  loss();  // fills mean and rstd for backward
  std::vector<double> dx(M * C), dgamma(C), dbeta(C);
  batchnorm_backward(x.data(), g, mean.data(), rstd.data(), dy.data(),
                     dx.data(), affine ? dgamma.data() : nullptr,
                     affine ? dbeta.data() : nullptr, M, C);
  ExpectGradientMatches(loss, x.data(), dx, "dx");
  if (affine) {
    ExpectGradientMatches(loss, gamma.data(), dgamma, "dgamma");
    ExpectGradientMatches(loss, beta.data(), dbeta, "dbeta");
  }
}

TEST(RefBatchNormTest, TrainGradientsMatchFiniteDifferences) {
  CheckTrainGradients(/*affine=*/true);
}

TEST(RefBatchNormTest, TrainGradientsWithoutAffineMatchFiniteDifferences) {
  CheckTrainGradients(/*affine=*/false);
}

TEST(RefBatchNormTest, EvalBackwardMatchesFiniteDifferences) {
  constexpr int64_t M = 4, C = 3;
  constexpr double eps = 1e-3;
  std::vector<double> x = RandomVector(M * C, 7);
  const std::vector<double> gamma = RandomVector(C, 8, 0.5, 2.0),
                            beta = RandomVector(C, 9),
                            running_mean = RandomVector(C, 10),
                            running_var = RandomVector(C, 11, 0.2, 3.0),
                            dy = RandomVector(M * C, 12);
  std::vector<double> y(M * C);
  auto loss = [&] {
    batchnorm_forward_eval(x.data(), gamma.data(), beta.data(),
                           running_mean.data(), running_var.data(), y.data(), M,
                           C, eps);
    return Dot(y, dy);
  };
  std::vector<double> dx(M * C);
  batchnorm_backward_eval(gamma.data(), running_var.data(), dy.data(),
                          dx.data(), M, C, eps);
  ExpectGradientMatches(loss, x.data(), dx, "dx");
}

TEST(RefBatchNormTest, EvalUsesRunningStatistics) {
  // Two channels, running mean {1, −2}, running var {4, 0.25}.
  const std::vector<double> x = {3, -2, -1, -1.5};
  const std::vector<double> gamma = {1, 2}, beta = {0, 1};
  const std::vector<double> rm = {1, -2}, rv = {4, 0.25};
  std::vector<double> y(4);
  batchnorm_forward_eval(x.data(), gamma.data(), beta.data(), rm.data(),
                         rv.data(), y.data(), 2, 2, /*eps=*/0.0);
  EXPECT_EQ(y, (std::vector<double>{1, 1, -1, 3}));
}

// Runs `steps` training steps on fresh batches and returns the batches.
std::vector<std::vector<double>> TrainSteps(int steps, int64_t M, int64_t C,
                                            const BatchNormOptions& opt,
                                            BatchNormRunning<double> running) {
  std::vector<std::vector<double>> batches;
  for (int s = 0; s < steps; ++s) {
    batches.push_back(RandomVector(M * C, 100 + s, -1.0 + s, 2.0 + 2 * s));
    std::vector<double> y(M * C);
    EXPECT_TRUE(batchnorm_forward_train<double>(batches.back().data(), nullptr,
                                                nullptr, y.data(), nullptr,
                                                nullptr, running, M, C, opt)
                    .ok());
  }
  return batches;
}

// Exponential moving average with a constant momentum m from the initial
// statistics r0, in closed form:
//   r_k = (1 − m)^k·r0 + Σ_{j=1..k} m·(1 − m)^(k − j)·s_j.
void CheckConstantMomentum(double m, const BatchNormOptions& opt) {
  constexpr int64_t M = 7, C = 3;
  constexpr int kSteps = 4;
  std::vector<double> rm(C, 0.0), rv(C, 1.0);  // PyTorch's initial values
  int64_t nbt = 0;
  const auto batches =
      TrainSteps(kSteps, M, C, opt, {rm.data(), rv.data(), &nbt});
  EXPECT_EQ(nbt, kSteps);
  for (int64_t c = 0; c < C; ++c) {
    double expected_mean = std::pow(1 - m, kSteps) * 0.0;
    double expected_var = std::pow(1 - m, kSteps) * 1.0;
    for (int j = 1; j <= kSteps; ++j) {
      const ColumnStats s = Stats(batches[j - 1], M, C);
      const double w = m * std::pow(1 - m, kSteps - j);
      expected_mean += w * s.mean[c];
      expected_var += w * s.unbiased_var[c];  // running_var is unbiased
    }
    EXPECT_NEAR(rm[c], expected_mean, kForwardTol) << "channel " << c;
    EXPECT_NEAR(rv[c], expected_var, kForwardTol) << "channel " << c;
  }
}

TEST(RefBatchNormTest, RunningStatsDefaultMomentumClosedForm) {
  CheckConstantMomentum(0.1, {});
}

TEST(RefBatchNormTest, RunningStatsCustomMomentumClosedForm) {
  CheckConstantMomentum(0.35, {.momentum = 0.35});
}

TEST(RefBatchNormTest, RunningStatsCumulativeAverageWhenMomentumIsNull) {
  // m = 1/num_batches_tracked: the running statistics are the plain averages
  // of the batch statistics (the initial 0 and 1 get weight 0).
  constexpr int64_t M = 5, C = 2;
  constexpr int kSteps = 3;
  std::vector<double> rm(C, 0.0), rv(C, 1.0);
  int64_t nbt = 0;
  const auto batches = TrainSteps(kSteps, M, C, {.momentum = std::nullopt},
                                  {rm.data(), rv.data(), &nbt});
  EXPECT_EQ(nbt, kSteps);
  for (int64_t c = 0; c < C; ++c) {
    double mean_sum = 0.0, var_sum = 0.0;
    for (const auto& batch : batches) {
      const ColumnStats s = Stats(batch, M, C);
      mean_sum += s.mean[c];
      var_sum += s.unbiased_var[c];
    }
    EXPECT_NEAR(rm[c], mean_sum / kSteps, kForwardTol) << "channel " << c;
    EXPECT_NEAR(rv[c], var_sum / kSteps, kForwardTol) << "channel " << c;
  }
}

TEST(RefBatchNormTest, TrackRunningStatsFalseLeavesRunningStatsUntouched) {
  constexpr int64_t M = 4, C = 3;
  std::vector<double> rm = {0.5, -1, 2}, rv = {1, 2, 3};
  int64_t nbt = 7;
  const auto batches = TrainSteps(2, M, C, {.track_running_stats = false},
                                  {rm.data(), rv.data(), &nbt});
  EXPECT_EQ(rm, (std::vector<double>{0.5, -1, 2}));
  EXPECT_EQ(rv, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(nbt, 7);
}

TEST(RefBatchNormTest, TrainNormalizesWithBatchNotRunningStats) {
  // Whatever the running statistics hold, training output uses the batch's.
  constexpr int64_t M = 4, C = 2;
  const std::vector<double> x = RandomVector(M * C, 20, 5.0, 9.0);
  std::vector<double> rm = {100, -100}, rv = {50, 0.01};
  int64_t nbt = 0;
  std::vector<double> y_tracked(M * C), y_free(M * C);
  ASSERT_TRUE(batchnorm_forward_train<double>(
                  x.data(), nullptr, nullptr, y_tracked.data(), nullptr,
                  nullptr, {rm.data(), rv.data(), &nbt}, M, C, {})
                  .ok());
  ASSERT_TRUE(batchnorm_forward_train<double>(x.data(), nullptr, nullptr,
                                              y_free.data(), nullptr, nullptr,
                                              {}, M, C, {})
                  .ok());
  ExpectAllNear(y_tracked, y_free, kForwardTol, "y");
}

TEST(RefBatchNormTest, SingleRowTrainingIsAnError) {
  const std::vector<double> x = {1, 2, 3, 4};
  std::vector<double> y(4);
  const Status s = batchnorm_forward_train<double>(
      x.data(), nullptr, nullptr, y.data(), nullptr, nullptr, {}, 1, 4, {});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("more than 1 value per channel"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("[1, 4]"), std::string::npos) << s.message();
}

TEST(RefBatchNormTest, NonPositiveEpsIsAnError) {
  const std::vector<double> x = {1, 2, 3, 4};
  std::vector<double> y(4);
  for (double eps : {0.0, -1e-5, std::nan("")}) {
    const Status s = batchnorm_forward_train<double>(x.data(), nullptr, nullptr,
                                                     y.data(), nullptr, nullptr,
                                                     {}, 2, 2, {.eps = eps});
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "eps " << eps;
    EXPECT_NE(s.message().find("eps"), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace ballast::ref
