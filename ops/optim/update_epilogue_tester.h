// The cases the kSgd and kAdam epilogue tests share: a weight gradient
// dWᵀ [m, n] = Aᵀ·B on 1 and 2 threads, row-major and in the trainer's panel
// layout, N of 10, 64 and 100, K (the batch) of 20 and of more than one K
// block (partial sums through Y), the gradient stored or not.
#ifndef BALLAST_OPS_OPTIM_UPDATE_EPILOGUE_TESTER_H_
#define BALLAST_OPS_OPTIM_UPDATE_EPILOGUE_TESTER_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <tuple>
#include <vector>

#include "ops/linear/gemm.h"
#include "tests/kernel_tester.h"

namespace ballast::test {

struct GradientGemm {
  ops::GemmArgs args;  // y left for the test to set
  ops::PackedB b;
  size_t size;  // floats of Y (and of the weight and state laid out as Y)
  int64_t n;
  bool store_grad;  // for EpilogueArgs::store_grad
  Generator* gen;   // for the weight and state
};

// Calls body(c) for every case, on every target.
template <class Body>
void ForEachGradientGemm(Body body) {
  ForEachTarget([&](const char*) {
    for (int threads : {1, 2}) {
      for (bool panels : {false, true}) {
        for (const auto& [n, k, store_grad] :
             {std::tuple<int64_t, int64_t, bool>{10, 20, true},
              {64, 20, true},
              {100, 20, true},
              {100, 20, false},
              {64, ops::GemmKBlockMax() + 5, true},
              {100, ops::GemmKBlockMax() + 5, false}}) {
          SCOPED_TRACE(::testing::Message()
                       << "N=" << n << " K=" << k
                       << " store_grad=" << store_grad << " threads=" << threads
                       << " panels=" << panels);
          const int64_t m = 31;
          Generator gen(static_cast<uint64_t>(n * 7 + threads));
          Buffer x(size_t(k * m)), dz(size_t(k * n));
          x.FillUniform(gen), dz.FillUniform(gen);
          const int64_t width = panels ? ops::PanelLayoutWidth(n) : n;
          GradientGemm c{{x.data(), 1, m, m, nullptr, width, threads},
                         ops::PackB(dz.data(), k, n, n, 1),
                         size_t(panels ? ops::PackedFloats(m, n) : m * n),
                         n,
                         store_grad,
                         &gen};
          if (panels) c.args.y_panel_stride = m * width;
          body(c);
        }
      }
    }
  });
}

// The gradient GEMM without an epilogue into y (size floats, zeroed first).
inline void GradientInto(const GradientGemm& c, std::vector<float>& y) {
  y.assign(c.size, 0.0f);
  ops::GemmArgs args = c.args;
  args.y = y.data();
  ASSERT_TRUE(ops::Gemm(args, c.b, ops::Epilogue::kNone, {}).ok());
}

// The same GEMM with epilogue e (its update arguments in ep) into y.
inline void GradientWithUpdate(const GradientGemm& c, ops::Epilogue e,
                               const ops::EpilogueArgs& ep,
                               std::vector<float>& y) {
  y.assign(c.size, 0.0f);
  ops::GemmArgs args = c.args;
  args.y = y.data();
  ASSERT_TRUE(ops::Gemm(args, c.b, e, ep).ok());
}

}  // namespace ballast::test

#endif  // BALLAST_OPS_OPTIM_UPDATE_EPILOGUE_TESTER_H_
