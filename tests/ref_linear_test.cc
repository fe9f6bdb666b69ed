#include <gtest/gtest.h>

#include <vector>

#include "ops/ref/linear.h"
#include "tests/gradcheck.h"

namespace ballast::ref {
namespace {

using ballast::testing::Dot;
using ballast::testing::ExpectGradientMatches;
using ballast::testing::RandomVector;

TEST(RefLinearTest, ForwardMatchesHandComputedExample) {
  // x [2, 3], W [2, 3] (out = 2, in = 3), b [2].
  const std::vector<float> x = {1, 2, 3, -1, 0, 2};
  const std::vector<float> w = {1, 0, -1, 0.5f, 2, 1};
  const std::vector<float> b = {0.25f, -1};
  std::vector<float> y(4);
  linear_forward(x.data(), w.data(), b.data(), y.data(), 2, 3, 2);
  // Row 0: 1 − 3 + 0.25 = −1.75; 0.5 + 4 + 3 − 1 = 6.5.
  // Row 1: −1 − 2 + 0.25 = −2.75; −0.5 + 0 + 2 − 1 = 0.5.
  EXPECT_EQ(y, (std::vector<float>{-1.75f, 6.5f, -2.75f, 0.5f}));
}

TEST(RefLinearTest, NullBiasMeansNoBias) {
  const std::vector<double> x = RandomVector(3 * 5, 1);
  const std::vector<double> w = RandomVector(4 * 5, 2);
  const std::vector<double> zeros(4, 0.0);
  std::vector<double> y_null(12), y_zero(12);
  linear_forward(x.data(), w.data(), static_cast<const double*>(nullptr),
                 y_null.data(), 3, 5, 4);
  linear_forward(x.data(), w.data(), zeros.data(), y_zero.data(), 3, 5, 4);
  EXPECT_EQ(y_null, y_zero);
  // y[1, 2] = Σ_k x[1, k]·W[2, k].
  double expected = 0.0;
  for (int k = 0; k < 5; ++k) expected += x[5 + k] * w[2 * 5 + k];
  EXPECT_DOUBLE_EQ(y_null[1 * 4 + 2], expected);
}

TEST(RefLinearTest, BackwardMatchesHandComputedExample) {
  // x [2, 2], W [1, 2], dy [2, 1].
  const std::vector<double> x = {1, 2, 3, 4};
  const std::vector<double> w = {0.5, -1};
  const std::vector<double> dy = {2, -1};
  std::vector<double> dx(4), dw(2), db(1);
  linear_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                  db.data(), 2, 2, 1);
  EXPECT_EQ(dx, (std::vector<double>{1, -2, -0.5, 1}));  // dy·W
  EXPECT_EQ(dw, (std::vector<double>{-1, 0}));           // dyᵀ·x
  EXPECT_EQ(db, (std::vector<double>{1}));               // Σ_m dy
}

TEST(RefLinearTest, BackwardSkipsNullOutputs) {
  const std::vector<double> x = RandomVector(6, 3), w = RandomVector(6, 4),
                            dy = RandomVector(4, 5);
  std::vector<double> dx_all(6), dw_all(6), db_all(2), dw_only(6);
  linear_backward(x.data(), w.data(), dy.data(), dx_all.data(), dw_all.data(),
                  db_all.data(), 2, 3, 2);
  linear_backward<double>(x.data(), w.data(), dy.data(), nullptr,
                          dw_only.data(), nullptr, 2, 3, 2);
  EXPECT_EQ(dw_only, dw_all);
}

TEST(RefLinearTest, GradientsMatchFiniteDifferences) {
  constexpr int64_t M = 3, K = 5, N = 4;
  std::vector<double> x = RandomVector(M * K, 10), w = RandomVector(N * K, 11),
                      b = RandomVector(N, 12);
  const std::vector<double> dy = RandomVector(M * N, 13);
  std::vector<double> y(M * N);
  auto loss = [&] {
    linear_forward(x.data(), w.data(), b.data(), y.data(), M, K, N);
    return Dot(y, dy);
  };
  std::vector<double> dx(M * K), dw(N * K), db(N);
  linear_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                  db.data(), M, K, N);
  ExpectGradientMatches(loss, x.data(), dx, "dx");
  ExpectGradientMatches(loss, w.data(), dw, "dW");
  ExpectGradientMatches(loss, b.data(), db, "db");
}

}  // namespace
}  // namespace ballast::ref
