// InferenceSession: serve a model on the CPU.
//
// Built from a Graph and options: the graph is validated, the inference
// passes run (fold the model's input normalization into its first Linear,
// fold BatchNorm into the Linear before it, fuse Linear with its
// activation, drop Dropout), a kernel is chosen for every node from the
// registry, weights are packed once, and activation buffers are planned for
// max_batch rows. The session is immutable afterwards:
// - Run may be called from many threads at once; each call takes a
//   workspace from a pool (a new one is allocated only when more calls run
//   concurrently than ever before), so the steady state allocates nothing
//   on the hwy and ref backends. (oneDNN's allocates its argument maps and
//   memory objects on every call: 26 allocations for the book's MLP.)
// - BatchNorm always normalizes with its running statistics (folded into the
//   weights when the pass is on): a session has no training mode to forget
//   to leave. (BatchNorm with track_running_stats = false uses the batch's
//   own statistics, as PyTorch does in eval.)
// - A batch above max_batch is run in chunks of max_batch rows, which gives
//   the same result since rows are independent — except in graphs with a
//   batch-dependent node (BatchNorm without running statistics), where it is
//   an error.
#ifndef BALLAST_SESSION_H_
#define BALLAST_SESSION_H_

#include <memory>
#include <string>
#include <vector>

#include "ballast/graph.h"
#include "ballast/registry.h"
#include "ballast/status.h"
#include "ballast/tensor.h"

namespace ballast {

enum class Backend { kAuto, kHwy, kOnednn, kRef };
const char* BackendName(Backend b);
Result<Backend> ParseBackend(const std::string& name);  // auto|hwy|onednn|ref

// The most threads a session, a trainer or a diagnosis takes: a team past
// what the machine can start would end the process inside libgomp.
inline constexpr int kMaxThreads = 1024;

struct SessionOptions {
  int threads = 1;  // 1 to kMaxThreads
  Backend backend = Backend::kAuto;
  bool fold_batchnorm = true;  // pass: BN into the preceding Linear
  bool fuse = true;            // pass: Linear + activation in one kernel
  bool drop_dropout = true;    // pass: remove Dropout and Identity
  // The input normalization a model's metadata holds (input_mean and
  // input_std, as `ballast train` writes them): x ← (x − mean)/std before
  // the first node. Folded into the first Linear's weights when nothing but
  // identities and dropouts come before it and |mean|/std <= 4
  // (fold_input_normalization; the folded bias cancels a share of the sums
  // that grows with |mean|/std), else applied to each value as it comes in.
  bool normalize_input = true;
  bool fold_input_normalization = true;  // pass: into the first Linear
  int64_t max_batch = 256;
  const Registry* registry = nullptr;  // nullptr: Registry::Builtin()
  // With threads > 1, a batch of enough rows is split by rows: each thread
  // runs every layer on its share of the rows, so that no layer's output
  // crosses to another core, and only the weights, which no one writes, are
  // shared. The same bits as one thread (a row's outputs never depend on
  // the rows beside it). Below that, and where this is false, each layer is
  // split by columns. Not for graphs with a batch-dependent node, nor on the
  // oneDNN backend (which threads itself).
  bool split_rows = true;
};

// What the session runs for one node after the passes.
struct PlannedNode {
  std::string name, op, backend;
  int64_t in_features = 0, out_features = 0;
};

class InferenceSession {
 public:
  static Result<std::unique_ptr<InferenceSession>> Create(
      const Graph& graph, const SessionOptions& options = {});
  ~InferenceSession();

  // input [batch, in_features] → output [batch, out_features], row-major.
  Status Run(const float* input, int64_t batch, float* output) const;
  // Convenience: a [batch, in] tensor in, a new [batch, out] tensor out.
  Result<Tensor> Run(const Tensor& input) const;

  int64_t input_features() const;
  int64_t output_features() const;
  const SessionOptions& options() const;
  const std::vector<PlannedNode>& plan() const;
  // The graph after the passes (what the kernels were built from). Its
  // tensors share the session's weights (tensors copy shallowly): read
  // them, do not write them.
  const Graph& optimized_graph() const;

 private:
  struct Impl;
  explicit InferenceSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The inference passes on their own (Create runs them).
// BN folding: BN(x·Wᵀ + b) → x·W'ᵀ + b' with s = γ/√(running_var + ε),
// W' = diag(s)·W, b' = s⊙(b − running_mean) + β, for a batchnorm1d with
// running statistics right after a linear. Other BNs are left in place.
Result<Graph> FoldBatchNorm(const Graph& graph);
// linear followed by relu or leaky_relu → linear with attribute
// activation = "relu" | "leaky_relu" (and negative_slope).
Result<Graph> FuseActivations(const Graph& graph);
// Removes dropout and identity nodes.
Result<Graph> DropDropout(const Graph& graph);

// Input normalization x ← (x − mean)/std folded into the graph's first
// linear: W' = W/std, b' = b − (mean/std)·W·1. An error if another node than
// identities and dropouts comes before it.
Result<Graph> FoldInputNormalization(const Graph& graph, double mean,
                                     double std);

}  // namespace ballast

#endif  // BALLAST_SESSION_H_
