// The textbook outcomes at depth 50, width 256 (as PyTorch shows them).
#include "ballast/diagnose.h"

#include <gtest/gtest.h>

#include "ballast/session.h"

namespace ballast {
namespace {

Diagnosis Stack(const std::string& init, const std::string& act, bool bn,
                std::optional<double> gain = std::nullopt) {
  DiagnoseOptions o;
  o.init = init, o.act = act, o.batchnorm = bn, o.gain = gain;
  Result<Diagnosis> d = Diagnose(o);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? *d : Diagnosis{};
}

TEST(DiagnoseTest, KaimingWithReluKeepsTheStdWithinAFactorFour) {
  Diagnosis d = Stack("kaiming", "relu", false);
  EXPECT_EQ(d.verdict, Verdict::kStable);
  EXPECT_GT(d.act_ratio, 0.25);
  EXPECT_LT(d.act_ratio, 4.0);
  ASSERT_EQ(d.layers.size(), 50u);
}

TEST(DiagnoseTest, XavierWithTanhNeedsTanhsGain) {
  Diagnosis with_gain = Stack("xavier", "tanh", false, 5.0 / 3.0);
  EXPECT_EQ(with_gain.verdict, Verdict::kStable);
  EXPECT_GT(with_gain.act_ratio, 0.25);
  EXPECT_LT(with_gain.act_ratio, 4.0);
  // With gain 1 the std decays slowly, to about 0.16 of layer 1's.
  Diagnosis gain_one = Stack("xavier", "tanh", false, 1.0);
  EXPECT_GT(gain_one.act_ratio, 0.08);
  EXPECT_LT(gain_one.act_ratio, 0.3);
}

TEST(DiagnoseTest, SmallNormalWeightsVanishAndLargeOnesExplode) {
  Diagnosis small = Stack("normal:0.01", "relu", false);
  EXPECT_EQ(small.verdict, Verdict::kVanishing);
  EXPECT_LT(small.act_ratio, 1e-6);
  Diagnosis large = Stack("normal:1", "relu", false);
  EXPECT_EQ(large.verdict, Verdict::kExploding);
  // Overflow is a finding, not a crash: it names the layer.
  EXPECT_GT(large.first_nonfinite_layer, 1);
  EXPECT_LE(large.first_nonfinite_layer, 50);
}

TEST(DiagnoseTest, ZerosMakeEveryUnitIdentical) {
  Diagnosis d = Stack("zeros", "relu", false);
  EXPECT_EQ(d.verdict, Verdict::kSymmetric);
  Diagnosis t = Stack("zeros", "tanh", false);
  EXPECT_EQ(t.verdict, Verdict::kSymmetric);
}

TEST(DiagnoseTest, BatchNormRestoresTheBadInitializations) {
  for (const char* init : {"normal:0.01", "normal:1"}) {
    Diagnosis d = Stack(init, "relu", true);
    EXPECT_EQ(d.verdict, Verdict::kStable) << init;
    EXPECT_EQ(d.first_nonfinite_layer, 0) << init;
  }
}

TEST(DiagnoseTest, DeadReluUnitsAndBadArguments) {
  Diagnosis d = Stack("kaiming", "relu", false);
  for (const LayerStats& s : d.layers) {
    EXPECT_GE(s.dead_frac, 0.0);
    EXPECT_LE(s.dead_frac, 1.0);
  }
  DiagnoseOptions o;
  o.act = "swish";
  EXPECT_FALSE(Diagnose(o).ok());
  o = {};
  o.init = "he";
  EXPECT_FALSE(Diagnose(o).ok());
  o = {};
  o.depth = 0;
  EXPECT_FALSE(Diagnose(o).ok());
  for (int threads : {0, -5, kMaxThreads + 1}) {
    o = {};
    o.threads = threads;
    EXPECT_FALSE(Diagnose(o).ok()) << threads;
  }
}

// One unit per layer has nothing to be symmetric with: a width-1 stack gets
// the verdict of its statistics (it was always "symmetric").
TEST(DiagnoseTest, OneUnitPerLayerIsNotSymmetric) {
  DiagnoseOptions o;
  o.width = 1, o.depth = 5, o.batch = 64, o.init = "kaiming";
  const Result<Diagnosis> d = Diagnose(o);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_NE(d->verdict, Verdict::kSymmetric);
}

}  // namespace
}  // namespace ballast
