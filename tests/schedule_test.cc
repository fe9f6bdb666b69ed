// Learning-rate schedules (ballast/schedule.h): the closed forms at points
// worked out by hand, and the fields out of range. The rates against
// torch.optim.lr_scheduler are in train_parity_test (label parity).
#include "ballast/schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

namespace ballast {
namespace {

TEST(ScheduleTest, ConstantKeepsTheBaseRate) {
  const LrSchedule s;
  for (int e = 0; e < 5; ++e) EXPECT_EQ(ScheduledLr(0.05, s, e), 0.05);
}

TEST(ScheduleTest, StepDecaysByGammaEveryStepSizeEpochs) {
  LrSchedule s;
  s.kind = ScheduleKind::kStep;
  s.step_size = 3;
  s.gamma = 0.5;
  const double want[] = {1, 1, 1, 0.5, 0.5, 0.5, 0.25};
  for (int e = 0; e < 7; ++e) EXPECT_EQ(ScheduledLr(1.0, s, e), want[e]) << e;
}

TEST(ScheduleTest, CosineFallsToHalfAtHalfwayAndToZeroAtTheEnd) {
  LrSchedule s;
  s.kind = ScheduleKind::kCosine;
  s.total_epochs = 4;
  EXPECT_EQ(ScheduledLr(0.2, s, 0), 0.2);
  EXPECT_NEAR(ScheduledLr(0.2, s, 1),
              0.1 * (1 + std::cos(std::numbers::pi / 4)), 1e-15);
  EXPECT_NEAR(ScheduledLr(0.2, s, 2), 0.1, 1e-15);
  EXPECT_NEAR(ScheduledLr(0.2, s, 4), 0.0, 1e-15);
}

TEST(ScheduleTest, WarmupRisesLinearlyThenLeavesTheScheduleAlone) {
  LrSchedule s;
  s.warmup_epochs = 3;
  EXPECT_DOUBLE_EQ(ScheduledLr(1.0, s, 0), 0.25);
  EXPECT_DOUBLE_EQ(ScheduledLr(1.0, s, 1), 0.5);
  EXPECT_DOUBLE_EQ(ScheduledLr(1.0, s, 2), 0.75);
  EXPECT_EQ(ScheduledLr(1.0, s, 3), 1.0);  // the full rate after N epochs
  s.kind = ScheduleKind::kStep;
  s.step_size = 2;
  s.gamma = 0.1;
  // Both factors: 1/4 · 1 at epoch 0, 3/4 · 0.1 at epoch 2, 0.1 at 3.
  EXPECT_DOUBLE_EQ(ScheduledLr(1.0, s, 0), 0.25);
  EXPECT_DOUBLE_EQ(ScheduledLr(1.0, s, 2), 0.075);
  EXPECT_DOUBLE_EQ(ScheduledLr(1.0, s, 3), 0.1);
}

TEST(ScheduleTest, FieldsOutOfRangeAreNamed) {
  LrSchedule s;
  s.kind = ScheduleKind::kStep;
  s.step_size = 0;
  EXPECT_NE(ValidateSchedule(s).message().find("step_size = 0"),
            std::string::npos);
  s.step_size = 1;
  s.gamma = -1;
  EXPECT_NE(ValidateSchedule(s).message().find("gamma"), std::string::npos);
  s.gamma = NAN;
  EXPECT_FALSE(ValidateSchedule(s).ok());
  s = {};
  s.kind = ScheduleKind::kCosine;
  s.total_epochs = 0;
  EXPECT_NE(ValidateSchedule(s).message().find("total_epochs"),
            std::string::npos);
  s = {};
  s.warmup_epochs = -1;
  EXPECT_NE(ValidateSchedule(s).message().find("warmup_epochs"),
            std::string::npos);
  EXPECT_TRUE(ValidateSchedule(LrSchedule{}).ok());
}

TEST(ScheduleTest, NamesParse) {
  ScheduleKind k = ScheduleKind::kConstant;
  EXPECT_TRUE(ParseScheduleKind("cosine", &k));
  EXPECT_EQ(k, ScheduleKind::kCosine);
  EXPECT_TRUE(ParseScheduleKind("step", &k));
  EXPECT_EQ(k, ScheduleKind::kStep);
  EXPECT_FALSE(ParseScheduleKind("linear", &k));
  EXPECT_EQ(k, ScheduleKind::kStep);  // untouched
}

}  // namespace
}  // namespace ballast
