#include "ballast/graph.h"

#include <set>
#include <string>

#include "ballast/registry.h"

namespace ballast {
namespace {
const Tensor kEmpty;
}  // namespace

int64_t Node::GetInt(const std::string& name, int64_t fallback) const {
  auto it = attrs.find(name);
  if (it == attrs.end()) return fallback;
  if (const int64_t* v = std::get_if<int64_t>(&it->second)) return *v;
  return fallback;
}

double Node::GetFloat(const std::string& name, double fallback) const {
  auto it = attrs.find(name);
  if (it == attrs.end()) return fallback;
  if (const double* v = std::get_if<double>(&it->second)) return *v;
  if (const int64_t* v = std::get_if<int64_t>(&it->second)) return double(*v);
  return fallback;
}

bool Node::GetBool(const std::string& name, bool fallback) const {
  auto it = attrs.find(name);
  if (it == attrs.end()) return fallback;
  if (const bool* v = std::get_if<bool>(&it->second)) return *v;
  return fallback;
}

std::string Node::GetString(const std::string& name,
                            const std::string& fallback) const {
  auto it = attrs.find(name);
  if (it == attrs.end()) return fallback;
  if (const std::string* v = std::get_if<std::string>(&it->second)) return *v;
  return fallback;
}

const Tensor& Node::Param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? kEmpty : it->second;
}

Result<std::vector<int64_t>> Graph::Validate(const Registry& registry) const {
  if (input_features < 1) {
    return InvalidArgument("graph: input_features = " +
                           std::to_string(input_features) + " must be >= 1");
  }
  if (nodes.empty()) return InvalidArgument("graph: has no nodes");
  std::set<std::string> names;
  std::vector<int64_t> widths;
  int64_t features = input_features;
  for (const Node& node : nodes) {
    if (node.name.empty()) {
      return InvalidArgument("graph: a node of op '" + node.op +
                             "' has no name");
    }
    if (!names.insert(node.name).second) {
      return InvalidArgument("graph: node name '" + node.name +
                             "' is used twice");
    }
    BALLAST_ASSIGN_OR_RETURN(features, registry.InferNode(node, features));
    if (features < 1) {
      return InvalidArgument("graph: node '" + node.name + "' (op '" + node.op +
                             "') gives " + std::to_string(features) +
                             " output features; a layer needs at least 1");
    }
    widths.push_back(features);
  }
  return widths;
}

Result<int64_t> Graph::OutputFeatures(const Registry& registry) const {
  BALLAST_ASSIGN_OR_RETURN(std::vector<int64_t> widths, Validate(registry));
  return widths.back();
}

bool Graph::BatchDependent(const Registry& registry) const {
  for (const Node& node : nodes) {
    const OpSchema* schema = registry.FindOp(node.op);
    if (schema && schema->batch_dependent && schema->batch_dependent(node)) {
      return true;
    }
  }
  return false;
}

int64_t Graph::ParameterCount() const {
  int64_t n = 0;
  for (const Node& node : nodes) {
    for (const auto& [name, t] : node.params) {
      if (name != "running_mean" && name != "running_var") n += t.numel();
    }
  }
  return n;
}

}  // namespace ballast
