// Registry: op schemas and their kernels, per backend, in priority order.
//
// A schema names an op, its typed attributes (with defaults), its parameter
// tensors, and infers the output width from the input width, validating the
// node as it goes. Each op has kernels for one or more backends ("hwy",
// "onednn", "ref", or a user's own); a kernel's `supports` may decline a
// node, a "ref" kernel never does. Users add ops through the same API:
//
//   ballast::Registry reg = ballast::Registry::WithBuiltins();
//   reg.RegisterOp({.name = "scale", .attrs = {{"factor", AttrType::kFloat,
//                   1.0}}, .infer = ...});
//   reg.RegisterKernel("scale", {.backend = "ref", .create = ...});
//   SessionOptions opt; opt.registry = &reg;
#ifndef BALLAST_REGISTRY_H_
#define BALLAST_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ballast/graph.h"
#include "ballast/status.h"

namespace ballast {

enum class AttrType { kInt, kFloat, kBool, kString };
const char* AttrTypeName(AttrType t);

struct AttrSpec {
  std::string name;
  AttrType type = AttrType::kFloat;
  AttrValue default_value = 0.0;
  std::string doc;
};

struct ParamSpec {
  std::string name;
  bool optional = false;
};

struct OpSchema {
  std::string name;
  std::string doc;
  std::vector<AttrSpec> attrs;
  std::vector<ParamSpec> params;
  // Output width for an input of `in_features`; validates the node's
  // attribute values and parameter shapes. Attribute types, unknown
  // attributes and required parameters are checked before it is called.
  std::function<Result<int64_t>(const Node&, int64_t in_features)> infer;
  // Whether the op's output for a row depends on the other rows of the
  // batch (BatchNorm without running statistics). Such graphs cannot be
  // split into chunks of max_batch rows.
  std::function<bool(const Node&)> batch_dependent;
};

// A kernel instance for one node: weights prepared at creation; Run is const
// and safe to call from many threads at once.
class OpKernel {
 public:
  virtual ~OpKernel() = default;
  // x [rows, in] → y [rows, out]; y never aliases x. Called from many
  // threads at once (InferenceSession::Run is), and on a session of several
  // threads also on a share of a batch's rows from inside a parallel run
  // (SessionOptions::split_rows), where an OpenMP region of the kernel's
  // own gets one thread: each row's outputs must depend on that row alone,
  // unless the op is batch-dependent (OpSchema::batch_dependent), and then
  // the graph is never split.
  virtual Status Run(const float* x, int64_t rows, float* y) const = 0;
};

struct KernelContext {
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t max_batch = 0;
  int threads = 1;
};

struct KernelSpec {
  std::string backend;  // "hwy", "onednn", "ref", ...
  // nullptr: supports every node.
  std::function<bool(const Node&, const KernelContext&)> supports;
  std::function<Result<std::unique_ptr<OpKernel>>(const Node&,
                                                  const KernelContext&)>
      create;
};

class Registry {
 public:
  // The built-in ops: linear, batchnorm1d, relu, leaky_relu, tanh, sigmoid,
  // identity, dropout. Shared and immutable.
  static const Registry& Builtin();
  // A mutable copy of the built-ins, to register more ops into.
  static Registry WithBuiltins();

  // Fails when the name is taken or the schema is incomplete.
  Status RegisterOp(OpSchema schema);
  // Appends a kernel (lower priority than those registered before it).
  Status RegisterKernel(const std::string& op, KernelSpec kernel);

  const OpSchema* FindOp(const std::string& name) const;
  const std::vector<KernelSpec>& Kernels(const std::string& op) const;
  std::vector<std::string> OpNames() const;

  // The node checked against its schema (see Graph::Validate).
  Result<int64_t> InferNode(const Node& node, int64_t in_features) const;
  // Fills the attributes the node leaves out with the schema's defaults.
  Status ApplyDefaults(Node& node) const;

 private:
  std::map<std::string, OpSchema> ops_;
  std::map<std::string, std::vector<KernelSpec>> kernels_;
};

}  // namespace ballast

#endif  // BALLAST_REGISTRY_H_
