// Graph: a model as a chain of named nodes over [batch, features] tensors.
//
// Each node reads the previous node's output (the first reads the graph
// input) and carries its op name, typed attributes and parameter tensors
// ("weight", "bias", "running_mean", ...). Nodes and attributes are checked
// against the op schemas of a Registry (registry.h) by Validate, which also
// infers every node's output width.
#ifndef BALLAST_GRAPH_H_
#define BALLAST_GRAPH_H_

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "ballast/status.h"
#include "ballast/tensor.h"

namespace ballast {

using AttrValue = std::variant<int64_t, double, bool, std::string>;

struct Node {
  std::string name;  // unique in the graph, e.g. "block1.linear"
  std::string op;    // a registered op, e.g. "linear"
  std::map<std::string, AttrValue> attrs;
  std::map<std::string, Tensor> params;

  // Typed attribute access; the schema's default fills in a missing one.
  int64_t GetInt(const std::string& name, int64_t fallback = 0) const;
  double GetFloat(const std::string& name, double fallback = 0.0) const;
  bool GetBool(const std::string& name, bool fallback = false) const;
  std::string GetString(const std::string& name,
                        const std::string& fallback = "") const;
  // The parameter, or an empty tensor when absent.
  const Tensor& Param(const std::string& name) const;
};

class Registry;

struct Graph {
  int64_t input_features = 0;
  std::vector<Node> nodes;
  std::map<std::string, std::string> metadata;

  // Checks op names, attributes (types, ranges) and parameter shapes
  // against `registry`; returns the width of every node's output. Errors
  // name the node, e.g. "node 'fc2' (linear): weight has shape [10, 300];
  // expected [10, 256] for 256 input features".
  Result<std::vector<int64_t>> Validate(const Registry& registry) const;
  Result<int64_t> OutputFeatures(const Registry& registry) const;
  int64_t ParameterCount() const;
  // Whether a row's output depends on the other rows of its batch (a node
  // whose schema says so: BatchNorm without running statistics). Unknown
  // ops count as independent; Validate reports them.
  bool BatchDependent(const Registry& registry) const;
};

}  // namespace ballast

#endif  // BALLAST_GRAPH_H_
