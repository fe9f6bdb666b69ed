// Sequential: build a Graph the way the PyTorch example reads.
//
//   ballast::Sequential net(784, /*seed=*/0);
//   net.StandardBlock(256, 0.5).StandardBlock(256, 0.5).Linear(10);
//   ballast::Result<ballast::Graph> g = net.Build();
//
// StandardBlock(out, p) = Linear(out) → BatchNorm1d → activation (ReLU by
// default) → Dropout(p). Parameters start as PyTorch's do: Linear weight
// and bias U(±1/√in), BatchNorm γ = 1, β = 0, running mean 0, variance 1,
// drawn from a Philox generator seeded with `seed`. A bad argument (width
// 0, p outside [0, 1], an unknown activation, a BatchNorm eps <= 0 or
// momentum outside [0, 1] — std::nullopt is torch's None, the cumulative
// average — a slope that is not finite) is reported by Build.
#ifndef BALLAST_MODEL_H_
#define BALLAST_MODEL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "ballast/graph.h"
#include "ballast/rng.h"
#include "ballast/status.h"

namespace ballast {

class Sequential {
 public:
  explicit Sequential(int64_t in_features, uint64_t seed = 0);

  Sequential& Linear(int64_t out_features, bool bias = true);
  Sequential& BatchNorm1d(double eps = 1e-5,
                          std::optional<double> momentum = 0.1,
                          bool affine = true, bool track_running_stats = true);
  Sequential& ReLU();
  Sequential& LeakyReLU(double negative_slope = 0.01);
  Sequential& Tanh();
  Sequential& Sigmoid();
  Sequential& Identity();
  Sequential& Dropout(double p = 0.5);
  // "relu", "leaky_relu" (slope 0.01), "tanh", "sigmoid" or "identity".
  Sequential& Activation(const std::string& name);
  Sequential& StandardBlock(int64_t out_features, double dropout = 0.5,
                            const std::string& activation = "relu");

  int64_t features() const { return features_; }
  Result<Graph> Build() const;

 private:
  Node& Add(const std::string& op, const std::string& prefix);

  Graph graph_;
  int64_t features_;
  Generator gen_;
  Status error_;
  int block_count_ = 0;  // StandardBlocks added so far
  int in_block_ = 0;     // the block being added (names its nodes)
};

}  // namespace ballast

#endif  // BALLAST_MODEL_H_
