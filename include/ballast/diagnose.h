// Signal propagation through a deep stack: how initialization and
// BatchNorm decide whether activations and gradients vanish, explode or stay
// stable with depth (the book's domino picture, measured).
//
// The stack is depth × [Linear(width, width) (+ BatchNorm1d) + activation],
// fed standard-normal input; the loss is a fixed random projection of the
// output, L = Σ out ⊙ P / batch, so that every layer receives a gradient.
// BatchNorm runs in training mode (batch statistics).
#ifndef BALLAST_DIAGNOSE_H_
#define BALLAST_DIAGNOSE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ballast/status.h"

namespace ballast {

struct DiagnoseOptions {
  int depth = 50;
  int64_t width = 256;
  int64_t batch = 256;
  // zeros | normal:STD | uniform:A | xavier | kaiming | default | orthogonal
  std::string init = "kaiming";
  // Overrides the gain of xavier, kaiming and orthogonal (default: xavier
  // and orthogonal 1, kaiming calculate_gain of the activation).
  std::optional<double> gain;
  std::string act = "relu";  // relu | tanh | sigmoid | leaky_relu:A | identity
  bool batchnorm = false;
  uint64_t seed = 0;
  int threads = 1;
};

struct LayerStats {
  int layer = 0;  // 1-based
  double act_mean = 0, act_std = 0;
  double dead_frac = 0;  // ReLU units that are zero for every row
  double grad_std = 0;   // std of dL/d(input of the layer)
  double weight_grad_std = 0;
};

enum class Verdict { kStable, kVanishing, kExploding, kSymmetric };
const char* VerdictName(Verdict v);

struct Diagnosis {
  DiagnoseOptions options;
  std::vector<LayerStats> layers;
  Verdict verdict = Verdict::kStable;
  double act_ratio = 0;   // act_std last / first
  double grad_ratio = 0;  // grad_std first / last (input side over output side)
  int first_nonfinite_layer = 0;  // 0: none
  std::string explanation;
};

// Thresholds of the verdict: symmetric when every layer's units are
// identical; exploding when a value overflowed or the activation std grew
// more than 4×; vanishing when it shrank below 1/4; stable otherwise.
Result<Diagnosis> Diagnose(const DiagnoseOptions& options);

}  // namespace ballast

#endif  // BALLAST_DIAGNOSE_H_
