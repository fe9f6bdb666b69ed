// Training-mode layers of the Trainer (internal). Each keeps what its
// backward pass needs from the forward pass of the same step.
#ifndef BALLAST_RUNTIME_TRAIN_LAYERS_H_
#define BALLAST_RUNTIME_TRAIN_LAYERS_H_

#include <memory>
#include <string>
#include <vector>

#include "ballast/graph.h"
#include "ballast/rng.h"
#include "ballast/status.h"
#include "runtime/optimizer.h"

namespace ballast::internal {

struct TrainContext {
  int threads = 1;
  int64_t max_batch = 0;
};

// The optimizer step a weight-gradient GEMM applies as its epilogue: SGD or
// Adam/AdamW, or none.
struct FusedUpdate {
  const ops::SgdArgs* sgd = nullptr;
  const ops::AdamArgs* adam = nullptr;
  bool any() const { return sgd != nullptr || adam != nullptr; }
};

class TrainLayer {
 public:
  virtual ~TrainLayer() = default;
  // x [M, in] → y [M, out]; x stays valid until Backward.
  virtual Status Forward(const float* x, int64_t M, float* y,
                         Generator& rng) = 0;
  // dy [M, out] → dx [M, in] (nullptr: not needed); fills the grads.
  virtual Status Backward(const float* dy, float* dx, int64_t M) = 0;
  // After the optimizer changed the parameters (the forms of the weight
  // that dX reads are remade from it when next needed).
  virtual void ParamsUpdated() {}
  // The weight a Linear layer can update inside its gradient GEMM (the
  // GEMM's kSgd and kAdam epilogues), or nullptr.
  virtual Param* FusableWeight() { return nullptr; }
  // Set by the trainer for one Backward: update FusableWeight() with these
  // arguments as its gradient is computed.
  FusedUpdate fused_update;
  // With fused_update: whether to store the gradient too (see
  // TrainerOptions::keep_gradients).
  bool fused_store_grad = true;
  std::vector<Param*> params() {
    std::vector<Param*> out;
    for (Param& p : params_) out.push_back(&p);
    return out;
  }
  // BatchNorm's num_batches_tracked, for checkpoints (nullptr: none).
  virtual int64_t* num_batches() { return nullptr; }
  // Puts back the state the last Forward changed besides its outputs
  // (BatchNorm's running statistics and batch count), after a step whose
  // loss came out non-finite: the failed step then changes nothing.
  virtual void UndoForward() {}
  int64_t in = 0, out = 0;
  std::string name;  // the graph nodes it runs, joined by '+'
  // False for the first layer: nothing consumes its input gradient, so it
  // neither computes dX nor keeps W packed for it.
  bool needs_dx = true;
  // Whether the output has zeros a next Linear may skip (after ReLU), and
  // whether this layer's input does, as set by the trainer
  // (TrainerOptions::skip_zeros).
  virtual bool OutputHasZeros() const { return false; }
  bool skip_input_zeros = false;
  // The bits of the last output that are not ±0 (word-major, as PassMask),
  // when the layer knows them exactly; nullptr otherwise. With
  // skip_input_zeros, the trainer points `input_layer` at the layer before,
  // whose mask then indexes this layer's input without reading it whole.
  virtual const uint64_t* NonzeroMask() const { return nullptr; }
  const TrainLayer* input_layer = nullptr;
  // The mask of M × out bits through which this layer's backward reads its
  // output gradient (a fused block's pass mask: kept by dropout and
  // positive), valid from Forward to Backward; nullptr: read whole.
  virtual const uint64_t* PassMask() const { return nullptr; }
  // Set by the trainer (TrainerOptions::masked_input_grad) to the pass mask
  // of the layer before, when that layer reads dX only through it: a Linear
  // layer then computes dX only there (zeros elsewhere) in the steps whose
  // mask passes under 30% (above, the dense GEMM is faster), from Wᵀ
  // instead of packed W. Ignored by other layers.
  const uint64_t* dx_mask = nullptr;

 protected:
  std::vector<Param> params_;
};

// Splits the graph's nodes into training layers. The nodes' tensors are
// trained in place (the caller owns a private copy of the graph). With
// `fuse`, Linear → BatchNorm1d → ReLU (→ Dropout) becomes one fused layer.
Result<std::vector<std::unique_ptr<TrainLayer>>> BuildTrainLayers(
    Graph& graph, bool fuse, const TrainContext& ctx);

}  // namespace ballast::internal

#endif  // BALLAST_RUNTIME_TRAIN_LAYERS_H_
