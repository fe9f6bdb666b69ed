#include "ballast/registry.h"

#include <cassert>
#include <string>

namespace ballast {

const char* AttrTypeName(AttrType t) {
  switch (t) {
    case AttrType::kInt:
      return "int";
    case AttrType::kFloat:
      return "float";
    case AttrType::kBool:
      return "bool";
    case AttrType::kString:
      return "string";
  }
  return "?";
}

namespace {

bool HasType(const AttrValue& v, AttrType t) {
  switch (t) {
    case AttrType::kInt:
      return std::holds_alternative<int64_t>(v);
    case AttrType::kFloat:  // an int literal is accepted for a float
      return std::holds_alternative<double>(v) ||
             std::holds_alternative<int64_t>(v);
    case AttrType::kBool:
      return std::holds_alternative<bool>(v);
    case AttrType::kString:
      return std::holds_alternative<std::string>(v);
  }
  return false;
}

std::string NodeContext(const Node& node) {
  return "node '" + node.name + "' (" + node.op + "): ";
}

const std::vector<KernelSpec> kNoKernels;

}  // namespace

Status Registry::RegisterOp(OpSchema schema) {
  if (schema.name.empty()) return InvalidArgument("registry: op has no name");
  if (!schema.infer) {
    return InvalidArgument("registry: op '" + schema.name +
                           "' has no shape inference (infer)");
  }
  for (const AttrSpec& a : schema.attrs) {
    if (!HasType(a.default_value, a.type)) {
      return InvalidArgument("registry: op '" + schema.name + "' attribute '" +
                             a.name + "' has a default that is not a " +
                             AttrTypeName(a.type));
    }
  }
  const std::string name = schema.name;
  if (!ops_.emplace(name, std::move(schema)).second) {
    return InvalidArgument("registry: op '" + name + "' is already registered");
  }
  return Status::Ok();
}

Status Registry::RegisterKernel(const std::string& op, KernelSpec kernel) {
  if (!FindOp(op)) {
    return NotFound("registry: cannot add a kernel to unknown op '" + op +
                    "'; register its schema first");
  }
  if (!kernel.create) {
    return InvalidArgument("registry: kernel '" + kernel.backend +
                           "' for op '" + op + "' has no create function");
  }
  kernels_[op].push_back(std::move(kernel));
  return Status::Ok();
}

const OpSchema* Registry::FindOp(const std::string& name) const {
  auto it = ops_.find(name);
  return it == ops_.end() ? nullptr : &it->second;
}

const std::vector<KernelSpec>& Registry::Kernels(const std::string& op) const {
  auto it = kernels_.find(op);
  return it == kernels_.end() ? kNoKernels : it->second;
}

std::vector<std::string> Registry::OpNames() const {
  std::vector<std::string> names;
  for (const auto& [name, schema] : ops_) names.push_back(name);
  return names;
}

Result<int64_t> Registry::InferNode(const Node& node,
                                    int64_t in_features) const {
  const OpSchema* schema = FindOp(node.op);
  if (!schema) {
    return NotFound("node '" + node.name + "': unknown op '" + node.op + "'");
  }
  for (const auto& [name, value] : node.attrs) {
    const AttrSpec* spec = nullptr;
    for (const AttrSpec& a : schema->attrs) {
      if (a.name == name) spec = &a;
    }
    if (!spec) {
      return InvalidArgument(NodeContext(node) + "unknown attribute '" + name +
                             "'");
    }
    if (!HasType(value, spec->type)) {
      return InvalidArgument(NodeContext(node) + "attribute '" + name +
                             "' must be a " + AttrTypeName(spec->type));
    }
  }
  for (const auto& [name, tensor] : node.params) {
    bool known = false;
    for (const ParamSpec& p : schema->params) known |= p.name == name;
    if (!known) {
      return InvalidArgument(NodeContext(node) + "unknown parameter '" + name +
                             "'");
    }
  }
  Result<int64_t> out = schema->infer(node, in_features);
  if (!out.ok()) return out.status().WithContext(NodeContext(node));
  return out;
}

Status Registry::ApplyDefaults(Node& node) const {
  const OpSchema* schema = FindOp(node.op);
  if (!schema) {
    return NotFound("node '" + node.name + "': unknown op '" + node.op + "'");
  }
  for (const AttrSpec& a : schema->attrs) {
    node.attrs.try_emplace(a.name, a.default_value);
  }
  return Status::Ok();
}

}  // namespace ballast

#include "runtime/builtin_ops.h"

namespace ballast {

Registry Registry::WithBuiltins() {
  Registry r;
  Status s = internal::RegisterBuiltins(r);
  assert(s.ok() && "built-in ops must register");
  (void)s;
  return r;
}

const Registry& Registry::Builtin() {
  static const Registry* builtin = new Registry(WithBuiltins());
  return *builtin;
}

}  // namespace ballast
