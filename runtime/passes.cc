// Inference passes over a Graph (declared in ballast/session.h).
#include <cmath>
#include <string>

#include "ballast/session.h"
#include "ops/ref/fold.h"

namespace ballast {

Result<Graph> FoldBatchNorm(const Graph& graph) {
  Graph out = graph;
  out.nodes.clear();
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    const Node* next =
        i + 1 < graph.nodes.size() ? &graph.nodes[i + 1] : nullptr;
    const bool foldable = node.op == "linear" &&
                          node.GetString("activation", "none") == "none" &&
                          next && next->op == "batchnorm1d" &&
                          next->GetBool("track_running_stats", true);
    if (!foldable) {
      out.nodes.push_back(node);
      continue;
    }
    const Tensor& w = node.Param("weight");
    if (w.rank() != 2) {
      return InvalidArgument("fold: node '" + node.name +
                             "' weight is not 2-d: " + w.shape().ToString());
    }
    const int64_t N = w.dim(0), K = w.dim(1);
    const Tensor& rm = next->Param("running_mean");
    const Tensor& rv = next->Param("running_var");
    if (rm.numel() != N || rv.numel() != N) {
      return InvalidArgument("fold: batchnorm '" + next->name + "' has " +
                             std::to_string(rm.numel()) +
                             " running statistics for linear '" + node.name +
                             "' with " + std::to_string(N) + " outputs");
    }
    const bool affine = next->GetBool("affine", true);
    const Tensor& b = node.Param("bias");
    // (Create validates first; a graph passed here directly may not be.)
    // (Param gives one shared empty tensor for any missing parameter.)
    struct Checked {
      const Tensor* tensor;
      bool needed;
      std::string what;
    };
    for (const Checked& c :
         {Checked{&b, false, "linear '" + node.name + "' bias"},
          Checked{&next->Param("weight"), affine,
                  "batchnorm '" + next->name + "' weight (gamma)"},
          Checked{&next->Param("bias"), affine,
                  "batchnorm '" + next->name + "' bias (beta)"}}) {
      const auto& [tensor, needed, what] = c;
      if ((needed || !tensor->empty()) && tensor->numel() != N) {
        return InvalidArgument("fold: " + what + " has " +
                               std::to_string(tensor->numel()) +
                               " values for " + std::to_string(N) + " outputs");
      }
    }
    Node folded;
    folded.name = node.name;
    folded.op = "linear";
    folded.attrs = node.attrs;
    folded.attrs["bias"] = true;
    folded.params["weight"] = Tensor::Zeros({N, K});
    folded.params["bias"] = Tensor::Zeros({N});
    ref::fold_batchnorm(w.data(), b.empty() ? nullptr : b.data(),
                        affine ? next->Param("weight").data() : nullptr,
                        affine ? next->Param("bias").data() : nullptr,
                        rm.data(), rv.data(), next->GetFloat("eps", 1e-5), K, N,
                        folded.params["weight"].data(),
                        folded.params["bias"].data());
    out.nodes.push_back(std::move(folded));
    ++i;  // the BatchNorm is absorbed
  }
  return out;
}

Result<Graph> FuseActivations(const Graph& graph) {
  Graph out = graph;
  out.nodes.clear();
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    const Node* next =
        i + 1 < graph.nodes.size() ? &graph.nodes[i + 1] : nullptr;
    if (node.op == "linear" && node.GetString("activation", "none") == "none" &&
        next && (next->op == "relu" || next->op == "leaky_relu")) {
      Node fused = node;
      fused.attrs["activation"] = next->op;
      if (next->op == "leaky_relu") {
        fused.attrs["negative_slope"] = next->GetFloat("negative_slope", 0.01);
      }
      out.nodes.push_back(std::move(fused));
      ++i;
      continue;
    }
    out.nodes.push_back(node);
  }
  return out;
}

Result<Graph> DropDropout(const Graph& graph) {
  Graph out = graph;
  out.nodes.clear();
  for (const Node& node : graph.nodes) {
    if (node.op != "dropout" && node.op != "identity")
      out.nodes.push_back(node);
  }
  if (out.nodes.empty()) {
    if (graph.nodes.empty()) {
      return InvalidArgument("drop_dropout: the graph has no nodes");
    }
    // A graph of only identities still needs one node to copy through.
    out.nodes.push_back(graph.nodes.front());
  }
  return out;
}

Result<Graph> FoldInputNormalization(const Graph& graph, double mean,
                                     double std) {
  // Identities and dropouts (at inference) pass the input on unchanged.
  size_t first = 0;
  while (first < graph.nodes.size() && (graph.nodes[first].op == "identity" ||
                                        graph.nodes[first].op == "dropout")) {
    ++first;
  }
  if (first == graph.nodes.size() || graph.nodes[first].op != "linear") {
    return InvalidArgument(
        "fold input normalization: the first node (past identities and "
        "dropouts) is not a linear");
  }
  if (!std::isfinite(mean) || !std::isfinite(std) || !(std > 0)) {
    return InvalidArgument(
        "fold input normalization: mean " + std::to_string(mean) + " and std " +
        std::to_string(std) + " are not finite with std > 0");
  }
  const Node& node = graph.nodes[first];
  const Tensor& w = node.Param("weight");
  const Tensor& b = node.Param("bias");
  if (w.rank() != 2 || w.dim(1) != graph.input_features ||
      (!b.empty() && b.numel() != w.dim(0))) {
    return InvalidArgument("fold input normalization: node '" + node.name +
                           "' has weight " + w.shape().ToString() +
                           " and bias " + b.shape().ToString() + " for " +
                           std::to_string(graph.input_features) + " inputs");
  }
  const int64_t N = w.dim(0), K = w.dim(1);
  Graph out = graph;
  Node& folded = out.nodes[first];
  folded.attrs["bias"] = true;
  folded.params["weight"] = Tensor::Zeros({N, K});
  folded.params["bias"] = Tensor::Zeros({N});
  ref::fold_input_normalization(w.data(), b.empty() ? nullptr : b.data(), mean,
                                std, K, N, folded.params["weight"].data(),
                                folded.params["bias"].data());
  return out;
}

}  // namespace ballast
