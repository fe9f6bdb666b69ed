#include <cmath>
#include <string>

#include "ballast/init.h"
#include "ballast/model.h"
#include "runtime/memory.h"

namespace ballast {
using internal::ZerosWithinMemory;

Sequential::Sequential(int64_t in_features, uint64_t seed)
    : features_(in_features), gen_(seed) {
  graph_.input_features = in_features;
  if (in_features < 1) {
    error_ = InvalidArgument("Sequential: in_features = " +
                             std::to_string(in_features) + " must be >= 1");
  }
}

Node& Sequential::Add(const std::string& op, const std::string& prefix) {
  Node n;
  n.op = op;
  n.name = prefix.empty() ? op + std::to_string(graph_.nodes.size())
                          : prefix + "." + op;
  graph_.nodes.push_back(std::move(n));
  return graph_.nodes.back();
}

namespace {
std::string BlockPrefix(int block) {
  return block > 0 ? "block" + std::to_string(block) : "";
}
}  // namespace

Sequential& Sequential::Linear(int64_t out_features, bool bias) {
  if (!error_.ok()) return *this;
  if (out_features < 1) {
    error_ = InvalidArgument("Sequential: Linear(" + std::to_string(features_) +
                             ", " + std::to_string(out_features) +
                             "): out_features must be >= 1");
    return *this;
  }
  Node& n = Add("linear", BlockPrefix(in_block_));
  n.attrs["in_features"] = features_;
  n.attrs["out_features"] = out_features;
  n.attrs["bias"] = bias;
  const std::string what = "Sequential: Linear(" + std::to_string(features_) +
                           ", " + std::to_string(out_features) + ") weight";
  Result<Tensor> w = ZerosWithinMemory({out_features, features_}, what);
  if (!w.ok()) {
    error_ = w.status();
    return *this;
  }
  Tensor b = bias ? Tensor::Zeros({out_features}) : Tensor();
  Status s = init::linear_default(*w, b, gen_);
  if (!s.ok()) error_ = s;
  n.params["weight"] = *w;
  if (bias) n.params["bias"] = b;
  features_ = out_features;
  return *this;
}

Sequential& Sequential::BatchNorm1d(double eps, std::optional<double> momentum,
                                    bool affine, bool track_running_stats) {
  if (!error_.ok()) return *this;
  // (momentum -1 is how the graph spells torch's None: refused as a value.)
  if (!(eps > 0) || !std::isfinite(eps) ||
      (momentum && !(*momentum >= 0 && *momentum <= 1))) {
    error_ = InvalidArgument(
        "Sequential: BatchNorm1d(eps = " + std::to_string(eps) +
        ", momentum = " +
        (momentum ? std::to_string(*momentum) : std::string("None")) +
        "): eps must be finite and > 0, momentum in [0, 1] or None");
    return *this;
  }
  Node& n = Add("batchnorm1d", BlockPrefix(in_block_));
  n.attrs["num_features"] = features_;
  n.attrs["eps"] = eps;
  n.attrs["momentum"] = momentum ? *momentum : -1.0;
  n.attrs["affine"] = affine;
  n.attrs["track_running_stats"] = track_running_stats;
  Tensor g, b, rm, rv;
  if (affine) g = Tensor::Zeros({features_}), b = Tensor::Zeros({features_});
  if (track_running_stats) {
    rm = Tensor::Zeros({features_}), rv = Tensor::Zeros({features_});
  }
  Status s = init::batchnorm_default(g, b, rm, rv);
  if (!s.ok()) error_ = s;
  if (affine) n.params["weight"] = g, n.params["bias"] = b;
  if (track_running_stats) {
    n.params["running_mean"] = rm, n.params["running_var"] = rv;
  }
  return *this;
}

Sequential& Sequential::ReLU() {
  if (error_.ok()) Add("relu", BlockPrefix(in_block_));
  return *this;
}
Sequential& Sequential::LeakyReLU(double negative_slope) {
  if (error_.ok() && !std::isfinite(negative_slope)) {
    error_ = InvalidArgument("Sequential: LeakyReLU(negative_slope = " +
                             std::to_string(negative_slope) +
                             "): the slope must be finite");
  }
  if (error_.ok()) {
    Add("leaky_relu", BlockPrefix(in_block_)).attrs["negative_slope"] =
        negative_slope;
  }
  return *this;
}
Sequential& Sequential::Tanh() {
  if (error_.ok()) Add("tanh", BlockPrefix(in_block_));
  return *this;
}
Sequential& Sequential::Sigmoid() {
  if (error_.ok()) Add("sigmoid", BlockPrefix(in_block_));
  return *this;
}
Sequential& Sequential::Identity() {
  if (error_.ok()) Add("identity", BlockPrefix(in_block_));
  return *this;
}
Sequential& Sequential::Dropout(double p) {
  if (!error_.ok()) return *this;
  if (!(p >= 0.0 && p <= 1.0)) {
    error_ = InvalidArgument("Sequential: Dropout(p = " + std::to_string(p) +
                             "): p must be in [0, 1]");
    return *this;
  }
  Add("dropout", BlockPrefix(in_block_)).attrs["p"] = p;
  return *this;
}

Sequential& Sequential::Activation(const std::string& name) {
  if (name == "relu") return ReLU();
  if (name == "leaky_relu") return LeakyReLU();
  if (name == "tanh") return Tanh();
  if (name == "sigmoid") return Sigmoid();
  if (name == "identity") return Identity();
  if (error_.ok()) {
    error_ = InvalidArgument("Sequential: activation '" + name +
                             "' is not one of relu, leaky_relu, tanh, "
                             "sigmoid, identity");
  }
  return *this;
}

Sequential& Sequential::StandardBlock(int64_t out_features, double dropout,
                                      const std::string& activation) {
  in_block_ = ++block_count_;
  Linear(out_features).BatchNorm1d().Activation(activation).Dropout(dropout);
  in_block_ = 0;
  return *this;
}

Result<Graph> Sequential::Build() const {
  if (!error_.ok()) return error_;
  if (graph_.nodes.empty()) {
    return InvalidArgument("Sequential: no layers were added");
  }
  // Each graph its own weights: training or changing one leaves the
  // Sequential and the other graphs built from it as they were.
  Graph g = graph_;
  for (Node& n : g.nodes) {
    for (auto& [name, t] : n.params) t = t.Clone();
  }
  return g;
}

}  // namespace ballast
