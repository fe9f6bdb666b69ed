// The optimizers against PyTorch, bit for bit (golden values from
// tests/parity/make_optimizer_golden.py, made at test time): 5 steps of SGD
// (plain, momentum, dampening with weight decay, Nesterov), Adam and AdamW
// from the same parameter and gradients give the same parameter and buffers,
// on a CPU whose best Highway target has fused multiply-adds (as torch's
// AVX2 and AVX-512 kernels use them).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hwy/detect_targets.h"
#include "hwy/targets.h"
#include "runtime/optimizer.h"
#include "tests/kernel_tester.h"

namespace ballast {
using internal::OptimizerStep;
using internal::Param;

namespace {

using nlohmann::json;

std::string BestTarget() {
  const int64_t targets = hwy::SupportedTargets() & HWY_TARGETS;
  return hwy::TargetName(targets & -targets);
}

Tensor FromJson(const json& values) {
  Tensor t = Tensor::Zeros({int64_t(values.size())});
  for (size_t i = 0; i < values.size(); ++i) {
    t.data()[i] = values[i].get<float>();
  }
  return t;
}

OptimizerOptions OptionsOf(const json& c) {
  const json& o = c["options"];
  const std::string kind = c["kind"];
  OptimizerOptions opt;
  opt.kind = kind == "sgd"    ? OptimizerKind::kSgd
             : kind == "adam" ? OptimizerKind::kAdam
                              : OptimizerKind::kAdamW;
  opt.lr = o.value("lr", 1e-3);
  opt.momentum = o.value("momentum", 0.0);
  opt.dampening = o.value("dampening", 0.0);
  opt.nesterov = o.value("nesterov", false);
  // torch.optim.AdamW's default weight decay is 1e-2, the others' 0.
  opt.weight_decay = o.value("weight_decay", kind == "adamw" ? 1e-2 : 0.0);
  if (o.contains("betas")) {
    opt.beta1 = o["betas"][0], opt.beta2 = o["betas"][1];
  }
  opt.eps = o.value("eps", 1e-8);
  return opt;
}

// Counts the elements whose bits differ, and names the first.
void ExpectSameBits(const Tensor& got, const json& want,
                    const std::string& what) {
  ASSERT_EQ(size_t(got.numel()), want.size()) << what;
  int64_t differ = 0, first = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    if (got.data()[i] != want[i].get<float>()) {
      if (differ++ == 0) first = int64_t(i);
    }
  }
  EXPECT_EQ(differ, 0) << what << ": " << differ << " of " << want.size()
                       << " elements differ from torch's, the first at "
                       << first;
}

TEST(OptimizerParityTest, FiveStepsGiveTorchsBits) {
  const char* dir = std::getenv("BALLAST_GOLDEN_DIR");
  if (!dir)
    GTEST_SKIP() << "BALLAST_GOLDEN_DIR is not set; run ctest -L parity";
  std::ifstream f(std::string(dir) + "/optimizer_golden.json");
  if (!f) {
    GTEST_SKIP() << "no golden values: PyTorch is not importable from "
                    "/usr/bin/python3 (install python3-torch)";
  }
  if (!test::TargetHasFma(BestTarget())) {
    GTEST_SKIP() << "the best Highway target here, " << BestTarget()
                 << ", has no fused multiply-add: the rounding differs";
  }
  const json golden = json::parse(f);
  ASSERT_FALSE(golden["cases"].empty());
  for (const json& c : golden["cases"]) {
    SCOPED_TRACE(c["kind"].get<std::string>() + " " + c["options"].dump());
    const OptimizerOptions opt = OptionsOf(c);
    Param p;
    p.key = "w";
    p.value = FromJson(c["param"]);
    std::vector<Param*> params{&p};
    int64_t step = 0;
    for (const json& g : c["grads"]) {
      p.grad = FromJson(g);
      OptimizerStep(opt, ++step, params);
    }
    const json& after = c["after"];
    ExpectSameBits(p.value, after["param"], "param");
    if (after.contains("momentum_buffer")) {
      ExpectSameBits(p.buf1, after["momentum_buffer"], "momentum buffer");
    }
    if (after.contains("exp_avg")) {
      ExpectSameBits(p.buf1, after["exp_avg"], "exp_avg");
      ExpectSameBits(p.buf2, after["exp_avg_sq"], "exp_avg_sq");
    }
  }
}

}  // namespace
}  // namespace ballast
