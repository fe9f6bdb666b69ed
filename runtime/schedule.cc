// See ballast/schedule.h.
#include "ballast/schedule.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <string>
#include <utility>

namespace ballast {

bool ParseScheduleKind(const char* name, ScheduleKind* kind) {
  for (const auto& [text, k] : {std::pair{"constant", ScheduleKind::kConstant},
                                std::pair{"step", ScheduleKind::kStep},
                                std::pair{"cosine", ScheduleKind::kCosine}}) {
    if (std::strcmp(name, text) == 0) {
      *kind = k;
      return true;
    }
  }
  return false;
}

Status ValidateSchedule(const LrSchedule& s) {
  if (s.kind == ScheduleKind::kStep && s.step_size < 1) {
    return InvalidArgument("schedule: step_size = " +
                           std::to_string(s.step_size) + " must be >= 1");
  }
  if (s.kind == ScheduleKind::kStep &&
      !(s.gamma >= 0 && std::isfinite(s.gamma))) {
    return InvalidArgument("schedule: gamma = " + std::to_string(s.gamma) +
                           " must be a finite number >= 0");
  }
  if (s.kind == ScheduleKind::kCosine && s.total_epochs < 1) {
    return InvalidArgument("schedule: total_epochs = " +
                           std::to_string(s.total_epochs) + " must be >= 1");
  }
  if (s.warmup_epochs < 0) {
    return InvalidArgument("schedule: warmup_epochs = " +
                           std::to_string(s.warmup_epochs) + " must be >= 0");
  }
  return Status::Ok();
}

double ScheduledLr(double base_lr, const LrSchedule& s, int epoch) {
  double lr = base_lr;
  switch (s.kind) {
    case ScheduleKind::kConstant:
      break;
    case ScheduleKind::kStep:
      lr *= std::pow(s.gamma, epoch / std::max(1, s.step_size));
      break;
    case ScheduleKind::kCosine:
      lr *= 0.5 * (1 + std::cos(std::numbers::pi * epoch /
                                std::max(1, s.total_epochs)));
      break;
  }
  if (epoch < s.warmup_epochs) {
    lr *= double(epoch + 1) / double(s.warmup_epochs + 1);
  }
  return lr;
}

}  // namespace ballast
