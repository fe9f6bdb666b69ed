#include "ops/linear/masked_input_grad.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ballast/rng.h"
#include "ops/block/block_kernels.h"
#include "ops/linear/gemm.h"
#include "ops/ref/linear.h"
#include "tests/kernel_tester.h"

namespace ballast::ops {
namespace {

using test::ForEachTarget;

// dX = dZ·W at the masked positions, from Wᵀ copied out of the panel
// layout the trainer keeps it in (PanelsToRows, on 1 and 2 threads): against a
// double-precision sum, zeros elsewhere (over a NaN-filled dX), and the same
// bits on 1 and 2 threads, and from the panels in place where the target
// reads them so (ops::MaskedPanelsReadable). K covers one vector, partial
// panels and many panels; N several mask words and a partial one.
TEST(MaskedInputGradTest, DotProductsWhereTheMaskPassesZerosElsewhere) {
  int in_place_cases = 0;
  ForEachTarget([&](const char*) {
    struct Case {
      int64_t m, k, n;
    };
    for (const Case c : {Case{13, 10, 256}, Case{7, 256, 130}, Case{5, 37, 70},
                         Case{128, 256, 256}, Case{3, 1, 5}, Case{9, 64, 64},
                         Case{70, 33, 100}}) {
      SCOPED_TRACE(::testing::Message()
                   << "M=" << c.m << " K=" << c.k << " N=" << c.n);
      Generator g(static_cast<uint64_t>(c.m * 1000 + c.k * 10 + c.n));
      std::vector<float> dz(size_t(c.m * c.k)), w(size_t(c.k * c.n));
      g.FillUniform(dz, -1.0, 1.0);
      g.FillUniform(w, -1.0, 1.0);
      // Wᵀ [N, K] row-major, through the trainer's panel layout.
      std::vector<float> panels(size_t(PackedFloats(c.n, c.k)), NAN);
      PackBTo(panels.data(), w.data(), c.n, c.k, 1, c.n);
      std::vector<float> wt;
      for (int threads : {2, 1}) {
        wt.assign(size_t(c.n * c.k), NAN);
        PanelsToRows(panels.data(), c.n, c.k, wt.data(), threads);
        for (int64_t n = 0; n < c.n; ++n) {
          for (int64_t k = 0; k < c.k; ++k) {
            ASSERT_EQ(wt[size_t(n * c.k + k)], w[size_t(k * c.n + n)])
                << threads << " thread(s)";
          }
        }
      }
      std::vector<uint64_t> mask(size_t(c.m * MaskWordsPerRow(c.n)), 0);
      std::vector<float> u(size_t(c.m * c.n));
      g.FillUniform(u, 0.0, 1.0);
      for (int64_t m = 0; m < c.m; ++m) {
        for (int64_t n = 0; n < c.n; ++n) {
          if (u[size_t(m * c.n + n)] < 0.25f) {
            mask[size_t(MaskWord(c.m, m, n))] |= uint64_t{1} << (n % 64);
          }
        }
      }
      std::vector<float> dx[2];
      for (int threads : {1, 2}) {
        std::vector<float>& out = dx[threads - 1];
        out.assign(size_t(c.m * c.n), NAN);
        MaskedInputGrad(
            {dz.data(), c.m, c.k, c.n, wt.data(), mask.data(), out.data()},
            threads);
      }
      EXPECT_EQ(dx[0], dx[1]) << "1 and 2 threads";
      // Wᵀ read in place from the panels, where the target can: the same
      // bits.
      const int64_t width = PanelLayoutWidth(c.k);
      if (MaskedPanelsReadable(width)) {
        std::vector<float> in_place(size_t(c.m * c.n), NAN);
        MaskedInputGradArgs a{
            dz.data(),      c.m, c.k, c.n, panels.data(), mask.data(),
            in_place.data()};
        a.wt_panel_width = width;
        MaskedInputGrad(a, 2);
        EXPECT_EQ(in_place, dx[0]) << "Wᵀ in panels " << width << " wide";
        ++in_place_cases;
      }
      // The scalar twin: the dense dX = dZ·W of ref::linear_backward (W as
      // torch keeps it, [out = K, in = N]).
      std::vector<float> dense(size_t(c.m * c.n));
      ref::linear_backward<float>(nullptr, w.data(), dz.data(), dense.data(),
                                  nullptr, nullptr, c.m, c.n, c.k);
      int64_t kept = 0;
      for (int64_t m = 0; m < c.m; ++m) {
        for (int64_t n = 0; n < c.n; ++n) {
          const float got = dx[0][size_t(m * c.n + n)];
          if (!MaskBit(mask.data(), c.m, m, n)) {
            ASSERT_EQ(got, 0.0f) << "(" << m << ", " << n << ") is masked";
            continue;
          }
          ++kept;
          double scale = 0;
          for (int64_t k = 0; k < c.k; ++k) {
            scale += std::fabs(double(dz[size_t(m * c.k + k)]) *
                               double(w[size_t(k * c.n + n)]));
          }
          ASSERT_NEAR(got, dense[size_t(m * c.n + n)], 1e-6 * scale + 1e-30)
              << "(" << m << ", " << n << ")";
        }
      }
      EXPECT_GT(kept, 0);
    }
  });
  // Some target of the machine reads the panels in place unless its widest
  // vectors are narrow (AVX2's 16-float panels: pieces of one line).
  if (PanelLayoutWidth(256) >= 64) {
    EXPECT_GT(in_place_cases, 0);
  }
}

}  // namespace
}  // namespace ballast::ops
