// The Trainer against PyTorch (golden values from
// tests/parity/make_train_golden.py, made at test time): loss within 1e-5
// relative, every gradient within 1e-4 (cross-entropy, with label smoothing,
// and MSE), parameters and BatchNorm running statistics after 3 optimizer
// steps within 1e-5 (gradient clipping too), fused and unfused; and the
// learning-rate schedules' rates per epoch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ballast/format.h"
#include "ballast/schedule.h"
#include "ballast/trainer.h"

namespace ballast {
namespace {

using nlohmann::json;

struct Golden {
  json j;
  Model model;
};

std::optional<Golden> Load(std::string* why) {
  const char* dir = std::getenv("BALLAST_GOLDEN_DIR");
  if (!dir) {
    *why = "BALLAST_GOLDEN_DIR is not set; run through ctest (-L parity)";
    return std::nullopt;
  }
  std::ifstream f(std::string(dir) + "/train_golden.json");
  if (!f) {
    *why =
        "no golden values: PyTorch is not importable from /usr/bin/python3 "
        "(install python3-torch python3-xxhash and run ctest -L parity)";
    return std::nullopt;
  }
  Golden g;
  f >> g.j;
  Result<Model> m = LoadModel(std::string(dir) + "/train_model.blst");
  if (!m.ok()) {
    *why = m.status().ToString();
    return std::nullopt;
  }
  g.model = *m;
  return g;
}

// |a − b| <= tol·max(1, |b|).
void ExpectClose(const float* got, const json& want, double tol,
                 const std::string& what) {
  for (size_t i = 0; i < want.size(); ++i) {
    const double w = want[i].get<double>();
    ASSERT_NEAR(got[i], w, tol * std::max(1.0, std::fabs(w)))
        << what << "[" << i << "]";
  }
}

const Tensor* FindParam(const Graph& g, const std::string& key) {
  for (const Node& n : g.nodes) {
    for (const auto& [name, t] : n.params) {
      if (n.name + "." + name == key) return &t;
    }
  }
  return nullptr;
}

// Skipped without golden values.
class TrainParityTest : public ::testing::TestWithParam<bool /*fuse*/> {
 protected:
  void SetUp() override {
    std::string why;
    golden_ = Load(&why);
    if (!golden_) GTEST_SKIP() << why;
  }
  const Golden& g() const { return *golden_; }
  // Default options, fused or not.
  TrainerOptions Options() const {
    TrainerOptions o;
    o.fuse = GetParam();
    return o;
  }

 private:
  std::optional<Golden> golden_;
};

// One step's loss and gradients from the golden weights against `want`
// ({"loss", "grads"}).
void ExpectStepMatches(const Golden& g, TrainerOptions opt, const json& want,
                       const float* targets = nullptr) {
  auto t = Trainer::Create(g.model.graph, opt);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const std::vector<float> x = g.j["x"].get<std::vector<float>>();
  const std::vector<int32_t> y = g.j["labels"].get<std::vector<int32_t>>();
  Result<StepResult> r =
      (*t)->ComputeGradients(x.data(), y.data(), targets, 32);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const double loss = want["loss"];
  EXPECT_NEAR(r->loss, loss, 1e-5 * std::fabs(loss));
  const auto grads = (*t)->Gradients();
  for (auto& [key, values] : want["grads"].items()) {
    auto it = grads.find(key);
    ASSERT_NE(it, grads.end()) << "no gradient for " << key;
    ExpectClose(it->second.data(), values, 1e-4, "grad " + key);
  }
}

TEST_P(TrainParityTest, LossAndGradientsMatchPyTorch) {
  TrainerOptions opt = Options();
  ExpectStepMatches(g(), opt, g().j);
}

TEST_P(TrainParityTest, LabelSmoothingMatchesPyTorch) {
  TrainerOptions opt = Options();
  opt.label_smoothing = g().j["smoothing"]["eps"];
  ExpectStepMatches(g(), opt, g().j["smoothing"]);
}

TEST_P(TrainParityTest, MseMatchesPyTorch) {
  TrainerOptions opt = Options();
  opt.loss = LossKind::kMse;
  const std::vector<float> targets =
      g().j["mse"]["targets"].get<std::vector<float>>();
  ExpectStepMatches(g(), opt, g().j["mse"], targets.data());
}

TEST_P(TrainParityTest, ThreeOptimizerStepsMatchPyTorch) {
  const std::vector<float> x = g().j["x"].get<std::vector<float>>();
  const std::vector<int32_t> y = g().j["labels"].get<std::vector<int32_t>>();
  for (auto& [name, want] : g().j["after3"].items()) {
    SCOPED_TRACE(name);
    TrainerOptions opt = Options();
    OptimizerOptions& o = opt.optimizer;
    if (name == "sgd") o = {OptimizerKind::kSgd, 0.05, 0.9, 0, false, 1e-3};
    if (name == "sgd_nesterov")
      o = {OptimizerKind::kSgd, 0.05, 0.9, 0, true, 0};
    if (name == "adam") o = {OptimizerKind::kAdam, 1e-2, 0, 0, false, 1e-3};
    if (name == "adamw") o = {OptimizerKind::kAdamW, 1e-2, 0, 0, false, 1e-2};
    if (name == "sgd_clip") {
      o = {OptimizerKind::kSgd, 0.05, 0.9, 0, false, 1e-3};
      opt.clip_grad_norm = 0.5;  // CLIP in make_train_golden.py
    }
    auto t = Trainer::Create(g().model.graph, opt);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    for (int step = 0; step < 3; ++step) {
      std::vector<float> xs = x;
      for (float& v : xs) v *= float(1 + 0.1 * step);
      ASSERT_TRUE((*t)->Step(xs.data(), y.data(), nullptr, 32).ok());
    }
    const Graph now = (*t)->CurrentGraph();
    for (auto& [key, values] : want.items()) {
      const Tensor* p = FindParam(now, key);
      ASSERT_NE(p, nullptr) << key;
      ExpectClose(p->data(), values, 1e-5, key);
    }
  }
}

TEST(LrScheduleParityTest, RatesPerEpochMatchPyTorchSchedulers) {
  std::string why;
  std::optional<Golden> g = Load(&why);
  if (!g) GTEST_SKIP() << why;
  ASSERT_TRUE(g->j.contains("schedules"));
  for (auto& [name, spec] : g->j["schedules"].items()) {
    SCOPED_TRACE(name);
    LrSchedule s;
    ASSERT_TRUE(
        ParseScheduleKind(spec["kind"].get<std::string>().c_str(), &s.kind));
    s.step_size = spec.value("step_size", 1);
    s.gamma = spec.value("gamma", 0.1);
    s.total_epochs = spec["epochs"];
    s.warmup_epochs = spec.value("warmup", 0);
    ASSERT_TRUE(ValidateSchedule(s).ok());
    const double base = spec["base"];
    const std::vector<double> lrs = spec["lrs"].get<std::vector<double>>();
    for (size_t e = 0; e < lrs.size(); ++e) {
      // PyTorch's chainable forms multiply ratios epoch after epoch: a few
      // ulps from the closed forms.
      EXPECT_NEAR(ScheduledLr(base, s, int(e)), lrs[e], 1e-12 * base)
          << "epoch " << e;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(FusedAndUnfused, TrainParityTest, ::testing::Bool());

}  // namespace
}  // namespace ballast
