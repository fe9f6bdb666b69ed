// Trainer: train a Graph (e.g. from Sequential) on the CPU.
//
// Step(x, y) runs the training forward with batch statistics (BatchNorm
// running statistics updated exactly as PyTorch does; dropout masks from a
// seeded counter-based RNG), the loss, the backward pass and the optimizer
// update. With `fuse` on (the default), Linear → BatchNorm1d → ReLU
// (→ Dropout) runs as one GEMM with a statistics epilogue plus one pass
// forward, and one pass plus two GEMMs backward. Evaluate() serves the
// current weights through an InferenceSession (running statistics, folded).
// The mode is a type: a Trainer always trains, a session always serves.
#ifndef BALLAST_TRAINER_H_
#define BALLAST_TRAINER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ballast/format.h"
#include "ballast/graph.h"
#include "ballast/status.h"

namespace ballast {

enum class OptimizerKind { kSgd, kAdam, kAdamW };
// "sgd", "adam", "adamw": the names of `ballast train --optimizer`, also
// recorded in checkpoints ("trainer.optimizer").
const char* OptimizerName(OptimizerKind kind);
enum class LossKind { kCrossEntropy, kMse };

// PyTorch's update rules (torch.optim.SGD / Adam / AdamW, 1.13).
struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kSgd;
  double lr = 0.05;
  double momentum = 0.0;   // SGD
  double dampening = 0.0;  // SGD
  bool nesterov = false;   // SGD
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // Adam, AdamW
};

struct TrainerOptions {
  OptimizerOptions optimizer;
  LossKind loss = LossKind::kCrossEntropy;
  double label_smoothing = 0.0;  // cross-entropy
  // > 0: scale every gradient so that their global L2 norm is at most this,
  // as torch.nn.utils.clip_grad_norm_ (norm + 1e-6); 0: off; < 0 an error.
  double clip_grad_norm = 0.0;
  // Threads of each Step: one OpenMP region per step, whose passes the
  // calling thread hands out as tasks (a step called from inside an active
  // OpenMP region runs on the calling thread). The results are the same bits
  // on every run with the same count.
  int threads = 1;
  uint64_t seed = 0;  // dropout stream
  int64_t max_batch = 256;
  bool fuse = true;
  bool profile = false;  // time each phase of Step (see Trainer::Profile)
  // False: a Linear weight updated inside its gradient GEMM (SGD, Adam and
  // AdamW update it there, unless clip_grad_norm > 0) does not have its
  // gradient stored, which nothing else reads (the update is the same
  // bits); Gradients() then leaves those weights out. `ballast train` sets
  // it.
  bool keep_gradients = true;
  // A fused block whose input is another fused block's output (after ReLU
  // and dropout) skips that input's zeros in its forward and weight-gradient
  // GEMMs when under 30% of the batch is nonzero: the same sums in the same
  // order, so the same bits as the dense GEMMs while the weights and
  // gradients are finite. False: dense always.
  bool skip_zeros = true;
  // A Linear after a fused block computes its input gradient only where
  // that block's ReLU and dropout pass it (a quarter of it in the book's
  // recipe), one dot product per value; the block's backward reads nothing
  // else (layers of 64 outputs or more: over fewer the dense GEMM is
  // faster). A step whose mask passes 30% or more (dropout under about 0.3)
  // computes the whole of it with the dense GEMM, which is faster there.
  // The dot products sum in another order than the dense GEMM: the last
  // bits differ from `false` (always dense). The book's MLP: a training step
  // took 0.97-0.98 of the time on one thread, 0.99 on two.
  bool masked_input_grad = true;
};

// Wall time of one phase of Step, summed over the steps since Create.
struct PhaseTime {
  std::string layer;  // the layer's graph nodes joined by '+', or "loss"
  std::string phase;  // "forward", "backward" (with remaking the forms of W
                      // that dX reads, and the update of a weight its
                      // gradient GEMM applies), "update" (the optimizer's
                      // other updates)
  double seconds = 0.0;
  int64_t steps = 0;
};

struct StepResult {
  double loss = 0.0;
  int64_t correct = 0;  // cross-entropy: rows whose argmax is the label
};

// Work for a step's threads in the moments they would otherwise wait: a
// helper while the calling thread runs the step's serial code or a longer
// task, the calling thread while it waits for a helper's task. run(i) is
// called once for each i in [0, chunks), in any order, on any of the step's
// threads; all of it is done when Step returns (on one thread, or a step
// called inside a parallel region, after the step). It must not touch what
// the step reads or writes, and a chunk should take a microsecond or two:
// the thread in one takes its next task that much later. If run throws,
// the other chunks still run and Step rethrows the exception. `ballast
// train` gathers the next batch this way.
struct StepSideWork {
  int64_t chunks = 0;
  std::function<void(int64_t chunk)> run;
};

struct EvalResult {
  double loss = 0.0, accuracy = 0.0;
};

class Trainer {
 public:
  static Result<std::unique_ptr<Trainer>> Create(const Graph& graph,
                                                 const TrainerOptions& options);
  // Restores a checkpoint (Checkpoint(), saved with SaveModel): weights,
  // running statistics, optimizer state, step count and RNG offset. The
  // options are the caller's: the rates, loss and schedule are not read
  // from the checkpoint (`ballast train` records its flags in the metadata
  // and takes them back itself). The optimizer must be able to continue the
  // state (SGD's momentum is not Adam's moments).
  static Result<std::unique_ptr<Trainer>> Resume(const Model& checkpoint,
                                                 const TrainerOptions& options);
  ~Trainer();

  // x [batch, in]; labels [batch] (cross-entropy) or targets [batch, out]
  // (MSE, pass nullptr labels). 2 <= batch <= max_batch. Sizes, pointers and
  // labels are checked before anything changes. A loss that comes out NaN or
  // infinite (a NaN in x, weights gone non-finite) is an error naming the
  // step, and that step changes nothing either: no update is made, and what
  // its forward pass moved (BatchNorm's running statistics and batch count,
  // which a forward in train mode in torch leaves moved; the dropout RNG) is
  // put back; only Profile() counts its forward and loss. Training can go
  // on with other batches from this trainer.
  Result<StepResult> Step(const float* x, const int32_t* labels,
                          const float* targets, int64_t batch);
  // The same, with `side` done on the step's threads (see StepSideWork).
  Result<StepResult> Step(const float* x, const int32_t* labels,
                          const float* targets, int64_t batch,
                          const StepSideWork& side);
  // Forward + loss + backward without the update (gradients() then holds
  // them); for tests and gradient checks.
  Result<StepResult> ComputeGradients(const float* x, const int32_t* labels,
                                      const float* targets, int64_t batch);
  // Cross-entropy loss and accuracy in evaluation mode on rows as Step takes
  // them (no input normalization from the graph's metadata is applied; the
  // loss is the plain cross-entropy whatever TrainerOptions::loss and
  // label_smoothing say). rows >= 1, in chunks of 1024 rows, or all at once
  // where a BatchNorm has no running statistics (it normalizes with the
  // batch's, as torch's model(x) does in eval mode).
  Result<EvalResult> Evaluate(const float* x, const int32_t* labels,
                              int64_t rows) const;

  // The graph with the current weights and running statistics (copies).
  Graph CurrentGraph() const;
  // "node.param" → gradient of the last step (without the weights whose
  // gradient was not stored: TrainerOptions::keep_gradients).
  std::map<std::string, Tensor> Gradients() const;
  // The learning rate of the steps to come: for a schedule, ScheduledLr
  // (ballast/schedule.h) before each epoch.
  // An error (and no change) unless lr is finite and >= 0.
  Status set_lr(double lr);
  double lr() const;
  int64_t step() const;
  // With TrainerOptions::profile: each layer's forward, backward and update
  // time, layer by layer from the input, then the loss's. Empty without it.
  std::vector<PhaseTime> Profile() const;
  // A checkpoint (format flag set): graph, optimizer state, step, RNG offset
  // and `metadata` merged into the graph metadata.
  Model Checkpoint(const std::map<std::string, std::string>& metadata) const;

 private:
  struct Impl;
  explicit Trainer(std::unique_ptr<Impl> impl);
  // Create past its checks of the options and sizes.
  static Result<std::unique_ptr<Trainer>> CreateChecked(
      const Graph& graph, const TrainerOptions& options,
      const std::vector<int64_t>& widths);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ballast

#endif  // BALLAST_TRAINER_H_
