#include "ops/linear/narrow_linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "ballast/rng.h"
#include "tests/kernel_tester.h"

namespace ballast::ops {
namespace {

using test::ForEachTarget;

// The epilogue as torch applies it to x·Wᵀ + b, in double.
double Expected(double v, Epilogue e, double slope) {
  if (e == Epilogue::kBiasRelu) return v > 0 ? v : 0;
  if (e == Epilogue::kBiasLeakyRelu) return v > 0 ? v : v * slope;
  return v;
}

// y = act(x·Wᵀ + b) against a double-precision sum on every target, for
// every epilogue: K shorter than a vector, a partial last vector and many;
// N from 1 to 16 (partial tiles of outputs); M across partial row tiles
// and thread blocks; x and y with row strides wider than the matrix (the
// padding of y stays untouched). One and two threads give the same bits.
TEST(NarrowLinearTest, DotProductsMatchADoubleSumOnEveryTarget) {
  ForEachTarget([](const char*) {
    struct Case {
      int64_t m, k, n;
    };
    for (const Case c : {Case{1, 256, 10}, Case{64, 256, 10}, Case{3, 1, 1},
                         Case{5, 7, 3}, Case{37, 33, 16}, Case{17, 100, 13},
                         Case{257, 64, 5}, Case{2, 16, 4}, Case{0, 8, 2}}) {
      Generator g(uint64_t(c.m * 7919 + c.k * 31 + c.n));
      const int64_t ldx = c.k + 3, ldy = c.n + 2;
      std::vector<float> x(size_t(std::max<int64_t>(1, c.m) * ldx)),
          w(size_t(c.n * c.k)), b(size_t(c.n));
      g.FillUniform(x, -1.0, 1.0);
      g.FillUniform(w, -1.0, 1.0);
      g.FillUniform(b, -1.0, 1.0);
      for (const Epilogue e : {Epilogue::kNone, Epilogue::kBias,
                               Epilogue::kBiasRelu, Epilogue::kBiasLeakyRelu}) {
        SCOPED_TRACE(::testing::Message()
                     << "M=" << c.m << " K=" << c.k << " N=" << c.n << " "
                     << EpilogueName(e));
        std::vector<float> y[2];
        for (int threads : {1, 2}) {
          std::vector<float>& out = y[threads - 1];
          out.assign(size_t(std::max<int64_t>(1, c.m) * ldy), -7.0f);
          NarrowLinearArgs a{x.data(), ldx,        c.m, w.data(), c.n,    c.k,
                             b.data(), out.data(), ldy, 0.125f,   threads};
          ASSERT_TRUE(NarrowLinear(a, e).ok());
        }
        EXPECT_EQ(y[0], y[1]) << "1 and 2 threads";
        for (int64_t m = 0; m < c.m; ++m) {
          for (int64_t n = 0; n < ldy; ++n) {
            const float got = y[0][size_t(m * ldy + n)];
            if (n >= c.n) {
              ASSERT_EQ(got, -7.0f) << "padding (" << m << ", " << n << ")";
              continue;
            }
            double sum = e == Epilogue::kNone ? 0.0 : b[size_t(n)];
            double scale = std::fabs(sum);
            for (int64_t k = 0; k < c.k; ++k) {
              const double p = double(x[size_t(m * ldx + k)]) *
                               double(w[size_t(n * c.k + k)]);
              sum += p;
              scale += std::fabs(p);
            }
            ASSERT_NEAR(got, Expected(sum, e, 0.125), 1e-6 * scale + 1e-30)
                << "(" << m << ", " << n << ")";
          }
        }
      }
    }
  });
}

// A NaN or an infinity in a row of x reaches that row's outputs alone, and
// ReLU keeps the NaN (as torch.relu does); -0 from ReLU is +0.
TEST(NarrowLinearTest, NonFiniteInputsStayInTheirRow) {
  ForEachTarget([](const char*) {
    const int64_t M = 6, K = 40, N = 10;
    std::vector<float> x(size_t(M * K), 0.5f), w(size_t(N * K), 0.25f),
        b(size_t(N), -100.0f), y(size_t(M * N));
    x[size_t(1 * K + 3)] = NAN;
    x[size_t(4 * K + 39)] = INFINITY;
    NarrowLinearArgs a{x.data(), K, M, w.data(), N, K, b.data(), y.data(), N};
    ASSERT_TRUE(NarrowLinear(a, Epilogue::kBiasRelu).ok());
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        const float v = y[size_t(m * N + n)];
        if (m == 1) {
          EXPECT_TRUE(std::isnan(v)) << m << ", " << n;
        } else if (m == 4) {
          EXPECT_EQ(v, INFINITY) << m << ", " << n;
        } else {
          // 40·0.125 − 100 < 0: ReLU gives +0.
          EXPECT_EQ(v, 0.0f);
          EXPECT_FALSE(std::signbit(v));
        }
      }
    }
  });
}

TEST(NarrowLinearTest, RejectsBadShapesAndEpilogues) {
  std::vector<float> x(16, 1.0f), w(16, 1.0f), y(16);
  NarrowLinearArgs a{x.data(), 4, 2, w.data(), 2, 4, nullptr, y.data(), 2};
  EXPECT_TRUE(NarrowLinear(a, Epilogue::kNone).ok());
  const Status st = NarrowLinear(a, Epilogue::kBiasStats);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("bias_stats"), std::string::npos) << st.message();
  NarrowLinearArgs narrow_ld = a;
  narrow_ld.ldx = 3;  // shorter than a row
  EXPECT_FALSE(NarrowLinear(narrow_ld, Epilogue::kNone).ok());
  NarrowLinearArgs no_outputs = a;
  no_outputs.N = 0;
  EXPECT_FALSE(NarrowLinear(no_outputs, Epilogue::kNone).ok());
  NarrowLinearArgs no_y = a;
  no_y.y = nullptr;
  EXPECT_FALSE(NarrowLinear(no_y, Epilogue::kBias).ok());
}

}  // namespace
}  // namespace ballast::ops
