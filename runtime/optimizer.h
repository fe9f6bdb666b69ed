// Parameter updates with PyTorch's rules (internal to the Trainer).
#ifndef BALLAST_RUNTIME_OPTIMIZER_H_
#define BALLAST_RUNTIME_OPTIMIZER_H_

#include <string>
#include <vector>

#include "ballast/tensor.h"
#include "ballast/trainer.h"
#include "ops/optim/adam.h"
#include "ops/optim/sgd.h"

namespace ballast::internal {

// One trainable tensor: its value, its gradient and the optimizer's state
// for it, all in the layout the layer computes in. Usually that is the
// graph's layout and `value` shares the graph's storage. A Linear weight
// W [out, in] is instead kept as Wᵀ in the GEMM's panel layout
// (ops::PackedFloats(in, out) floats), so that its GEMMs read and write it
// in place and each thread's share of it is one contiguous range;
// `graph_value` is then the graph's tensor, which SyncToGraph refreshes.
// The optimizers are elementwise (the panels' zero padding stays zero), so
// the layout does not change an update.
struct Param {
  std::string key;  // "node.param"
  Tensor value, grad;
  Tensor buf1, buf2;  // SGD: momentum buffer; Adam: exp_avg, exp_avg_sq
  bool has_state = false;
  bool panels = false;
  // False when the last step updated the weight inside its gradient GEMM
  // without storing the gradient (TrainerOptions::keep_gradients).
  bool grad_stored = true;
  Tensor graph_value;  // panels only: the graph's [out, in] tensor
};

// `t` (value, grad or a buffer of p) in the graph's layout, as a copy.
Tensor ToGraphLayout(const Param& p, const Tensor& t);
// A graph-layout tensor in p's layout, as a copy.
Tensor FromGraphLayout(const Param& p, const Tensor& t);
// Writes a panel-layout param's value into the graph's tensor.
void SyncToGraph(Param& p);

// The SGD update of p's next step (`first` when it has no momentum
// yet); allocates its momentum buffer on the first step.
ops::SgdArgs PrepareSgd(const OptimizerOptions& o, Param& p);

// The Adam (decoupled: AdamW) update of p's step `step` (from 1), its
// scalars as torch computes them; allocates m and v on the first step.
ops::AdamArgs PrepareAdam(const OptimizerOptions& o, int64_t step, Param& p,
                          bool decoupled);

// Applies one update to every parameter but `skip` (already updated);
// `step` counts updates from 1.
void OptimizerStep(const OptimizerOptions& o, int64_t step,
                   std::vector<Param*>& params, int threads = 1,
                   const Param* skip = nullptr);

// torch.nn.utils.clip_grad_norm_: scales the gradients by
// max_norm/(total + 1e-6) when the global L2 norm exceeds max_norm.
// Returns the norm before clipping.
double ClipGradNorm(std::vector<Param*>& params, double max_norm);

}  // namespace ballast::internal

#endif  // BALLAST_RUNTIME_OPTIMIZER_H_
