// Parameter updates with PyTorch's rules (internal to the Trainer).
#ifndef BALLAST_RUNTIME_OPTIMIZER_H_
#define BALLAST_RUNTIME_OPTIMIZER_H_

#include <string>
#include <vector>

#include "ballast/tensor.h"
#include "ballast/trainer.h"

namespace ballast {

// One trainable tensor: its value (shared with the trainer's graph), its
// gradient and the optimizer's state for it.
struct Param {
  std::string key;  // "node.param"
  Tensor value, grad;
  Tensor buf1, buf2;  // SGD: momentum buffer; Adam: exp_avg, exp_avg_sq
  bool has_state = false;
};

// Applies one update to every parameter; `step` counts updates from 1.
void OptimizerStep(const OptimizerOptions& o, int64_t step,
                   std::vector<Param*>& params, int threads = 1);

// torch.nn.utils.clip_grad_norm_: scales the gradients by
// max_norm/(total + 1e-6) when the global L2 norm exceeds max_norm.
// Returns the norm before clipping.
double ClipGradNorm(std::vector<Param*>& params, double max_norm);

}  // namespace ballast

#endif  // BALLAST_RUNTIME_OPTIMIZER_H_
