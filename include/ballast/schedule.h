// Learning-rate schedules, per epoch, as torch.optim.lr_scheduler's (1.13).
//
// ScheduledLr(base, s, e) is the rate of epoch e (from 0): the base rate
// times the schedule's factor, times a linear warmup's over the first
// `warmup_epochs`. The factors are the closed forms of
//   kConstant  1
//   kStep      StepLR(step_size, gamma):     gamma^(e / step_size)
//   kCosine    CosineAnnealingLR(T_max = total_epochs, eta_min = 0):
//              (1 + cos(π·e / total_epochs)) / 2
//   warmup     LinearLR(start_factor = 1/(w+1), total_iters = w):
//              (e + 1) / (w + 1) for e < w, then 1
// and a warmup with a schedule multiplies them, as ChainedScheduler([warmup,
// schedule]) does. Set it with Trainer::set_lr before each epoch's steps.
#ifndef BALLAST_SCHEDULE_H_
#define BALLAST_SCHEDULE_H_

#include "ballast/status.h"

namespace ballast {

enum class ScheduleKind { kConstant, kStep, kCosine };

// "constant", "step", "cosine"; false for any other name.
bool ParseScheduleKind(const char* name, ScheduleKind* kind);

struct LrSchedule {
  ScheduleKind kind = ScheduleKind::kConstant;
  int step_size = 1;     // kStep: epochs between decays (>= 1)
  double gamma = 0.1;    // kStep: the decay (>= 0)
  int total_epochs = 1;  // kCosine: T_max, the epochs to reach 0 (>= 1)
  int warmup_epochs = 0;
};

// An error naming the field out of range, else Ok.
Status ValidateSchedule(const LrSchedule& s);

// The rate of epoch `epoch` (>= 0) of a valid schedule.
double ScheduledLr(double base_lr, const LrSchedule& s, int epoch);

}  // namespace ballast

#endif  // BALLAST_SCHEDULE_H_
