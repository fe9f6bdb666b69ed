// OptimizerStep (runtime/optimizer.h) over threads: a parameter large enough
// to be split over the threads gets the same bits on 1, 2 and 3 of them.
#include "runtime/optimizer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "ballast/rng.h"

namespace ballast {
using internal::OptimizerStep;
using internal::Param;

namespace {

Tensor Uniform(Generator& gen, int64_t n, double lo, double hi) {
  Tensor t = Tensor::Zeros({n});
  gen.FillUniform(t.span(), lo, hi);
  return t;
}

TEST(OptimizerTest, SplittingOverThreadsGivesTheSameBits) {
  const int64_t n = 3 * (int64_t{1} << 15) + 7;  // split: over 2^15 floats
  std::vector<OptimizerOptions> cases(4);
  cases[0].momentum = 0.9, cases[0].weight_decay = 1e-2;
  cases[1].momentum = 0.9, cases[1].nesterov = true;
  cases[2].kind = OptimizerKind::kAdam, cases[2].lr = 1e-3;
  cases[2].weight_decay = 1e-3;
  cases[3].kind = OptimizerKind::kAdamW, cases[3].lr = 1e-3;
  cases[3].weight_decay = 1e-2;
  for (const OptimizerOptions& o : cases) {
    SCOPED_TRACE(OptimizerName(o.kind));
    std::vector<Param> p(3);
    for (int threads = 1; threads <= 3; ++threads) {
      Generator gen(9);
      Param& q = p[size_t(threads - 1)];
      q.value = Uniform(gen, n, -1, 1);
      std::vector<Param*> params{&q};
      for (int64_t step = 1; step <= 3; ++step) {
        q.grad = Uniform(gen, n, -0.1, 0.1);
        OptimizerStep(o, step, params, threads);
      }
    }
    for (size_t t = 1; t < p.size(); ++t) {
      EXPECT_EQ(0, std::memcmp(p[t].value.data(), p[0].value.data(),
                               p[0].value.nbytes()))
          << t + 1 << " threads";
      EXPECT_EQ(0, std::memcmp(p[t].buf1.data(), p[0].buf1.data(),
                               p[0].buf1.nbytes()))
          << t + 1 << " threads";
    }
    // The update moved every weight.
    Generator gen(9);
    const Tensor before = Uniform(gen, n, -1, 1);
    int64_t moved = 0;
    for (int64_t i = 0; i < n; ++i)
      moved += before.data()[i] != p[0].value.data()[i];
    EXPECT_GT(moved, n * 9 / 10);
  }
}

}  // namespace
}  // namespace ballast
