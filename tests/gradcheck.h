// Test helpers: central finite differences, named tolerances and seeded data
// for checking the ref ops' backward passes in double precision.
//
// An op y = f(x) is checked through the scalar L(x) = Σ_i y_i·dy_i for a
// random upstream gradient dy: its exact gradient is what the op's backward
// returns for dy, and (L(x + h·e_i) − L(x − h·e_i))/(2h) approximates it with
// an error O(h²) from truncation plus O(ε/h) from rounding; h = 1e-6 keeps
// both far below kGradCheckTol.
#ifndef BALLAST_TESTS_GRADCHECK_H_
#define BALLAST_TESTS_GRADCHECK_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace ballast::testing {

// Step of the central difference (inputs are O(1)).
inline constexpr double kGradCheckStep = 1e-6;
// Mixed tolerance of a finite-difference gradient: |a − e| ≤ tol·max(1, |e|).
inline constexpr double kGradCheckTol = 1e-6;

// Mixed absolute/relative tolerance: `rel` times max(1, |expected|).
inline double MixedTol(double expected, double rel) {
  return rel * std::max(1.0, std::abs(expected));
}

// Expects actual[i] ≈ expected[i] for every i within MixedTol(expected, rel);
// works for any two indexable containers of numbers. `what` names the
// quantity in failure messages.
template <typename Actual, typename Expected>
void ExpectAllNear(const Actual& actual, const Expected& expected, double rel,
                   const std::string& what) {
  ASSERT_EQ(std::size(actual), std::size(expected)) << what;
  for (size_t i = 0; i < std::size(actual); ++i) {
    const double e = double(expected[i]);
    EXPECT_NEAR(double(actual[i]), e, MixedTol(e, rel))
        << what << " at index " << i;
  }
}

// Numerical gradient of `loss` with respect to x[0..n) by central
// differences. `loss` must read x through the same pointer; every x[i] is
// restored after use.
inline std::vector<double> NumericGradient(const std::function<double()>& loss,
                                           double* x, int64_t n,
                                           double h = kGradCheckStep) {
  std::vector<double> grad(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double plus = loss();
    x[i] = saved - h;
    const double minus = loss();
    x[i] = saved;
    grad[static_cast<size_t>(i)] = (plus - minus) / (2.0 * h);
  }
  return grad;
}

// Checks an analytic gradient against NumericGradient(loss, x, n).
inline void ExpectGradientMatches(const std::function<double()>& loss,
                                  double* x,
                                  const std::vector<double>& analytic,
                                  const std::string& what) {
  const std::vector<double> numeric =
      NumericGradient(loss, x, static_cast<int64_t>(analytic.size()));
  ExpectAllNear(analytic, numeric, kGradCheckTol, what);
}

// Σ_i a_i·b_i, the scalar a gradient check differentiates.
inline double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// n values uniform in [lo, hi) from a fixed seed.
inline std::vector<double> RandomVector(int64_t n, uint32_t seed,
                                        double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(gen);
  return v;
}

// Like RandomVector but every |value| >= margin, for ops with a kink at 0
// (relu, leaky_relu) whose finite differences must not straddle it.
inline std::vector<double> RandomVectorAwayFromZero(int64_t n, uint32_t seed,
                                                    double margin = 0.05) {
  std::vector<double> v = RandomVector(n, seed, -1.0, 1.0);
  for (double& x : v) x = x >= 0 ? x + margin : x - margin;
  return v;
}

}  // namespace ballast::testing

#endif  // BALLAST_TESTS_GRADCHECK_H_
