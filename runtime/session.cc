#include "ballast/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ops/cache_aligned.h"
#include "ops/tasks.h"
#include "runtime/memory.h"
#include "runtime/number_text.h"

namespace ballast {
using internal::MachineMemoryBytes;
using internal::ParseWhole;

const char* BackendName(Backend b) {
  switch (b) {
    case Backend::kAuto:
      return "auto";
    case Backend::kHwy:
      return "hwy";
    case Backend::kOnednn:
      return "onednn";
    case Backend::kRef:
      return "ref";
  }
  return "?";
}

Result<Backend> ParseBackend(const std::string& name) {
  for (Backend b :
       {Backend::kAuto, Backend::kHwy, Backend::kOnednn, Backend::kRef}) {
    if (name == BackendName(b)) return b;
  }
  return InvalidArgument("backend '" + name +
                         "' is not one of auto, hwy, onednn, ref");
}

namespace {

// Two activation buffers of max_batch × widest layer, ping-ponged between
// nodes; one per concurrent Run. On cache-line boundaries: with the batch
// split by rows (see RowTasks), each task's slice (its first row times the
// widest layer's width) then starts a line of its own when that width is a
// multiple of 16 floats.
struct Workspace {
  ops::AlignedVector<float> a, b;
  ops::AlignedVector<float> x;  // the normalized input, when it is not folded
  std::vector<Status> status;   // of each row task (options.threads)
};

// The input normalization in a graph's metadata, if any (ballast train
// writes input_mean and input_std into models and checkpoints).
Result<std::optional<std::pair<double, double>>> InputNormalization(
    const Graph& g) {
  const auto mean = g.metadata.find("input_mean"),
             stddev = g.metadata.find("input_std");
  const bool has_mean = mean != g.metadata.end(),
             has_std = stddev != g.metadata.end();
  if (!has_mean && !has_std) return std::optional<std::pair<double, double>>();
  if (has_mean != has_std) {
    return InvalidArgument(std::string("model metadata: input_") +
                           (has_mean ? "mean" : "std") + " without input_" +
                           (has_mean ? "std" : "mean") +
                           ": the input normalization is incomplete");
  }
  double mu = 0, sd = 0;
  if (!ParseWhole(mean->second, &mu) || !ParseWhole(stddev->second, &sd) ||
      !(sd > 0)) {
    return InvalidArgument("model metadata: input_mean = '" + mean->second +
                           "', input_std = '" + stddev->second +
                           "' are not a usable normalization (finite numbers, "
                           "input_std > 0)");
  }
  return std::optional<std::pair<double, double>>({mu, sd});
}

// Whether FoldInputNormalization takes the graph and keeps its accuracy: the
// first node past identities and dropouts is a linear, and |mean|/std is
// small. The folded bias cancels (mean/std)·Σ W·x's share of the GEMM's
// sums, which costs about log10(|mean|/std) digits (1.5e-4 relative at
// 100 against 1.5e-6 unfolded, float32 over 784 inputs); past 4 each value
// is normalized as it comes in instead.
bool InputNormalizationFolds(const Graph& g, double mean, double std) {
  constexpr double kMaxMeanOverStd = 4;
  if (std::fabs(mean) > kMaxMeanOverStd * std) return false;
  for (const Node& n : g.nodes) {
    if (n.op != "identity" && n.op != "dropout") return n.op == "linear";
  }
  return false;
}

}  // namespace

// The fewest rows a task of a batch split by rows takes (see RowTasks). The
// book's MLP on two threads (distant cores, `ballast bench mlp --batches`,
// µs per batch, split by rows against each layer split by columns): batch 8
// 19.7 against 23.7, 12 22.6 against 28.6, 32 54.2 against 64.5, 64 95.9
// against 108.8, 256 351 against 376; with 1-3 rows a task the column split
// was faster (batch 4: 19.5 against 17.0, 6: 22.6 against 20.4). One task
// per thread: tasks of 32 rows taken as the threads come free took 1.04 of
// the time at batch 256 and 1.04 at 128 (each task streams every weight).
constexpr int64_t kSplitRowsMin = 4;

struct InferenceSession::Impl {
  SessionOptions options;
  Graph graph;  // after the passes; kernels may point into its tensors
  std::vector<PlannedNode> plan;
  std::vector<std::unique_ptr<OpKernel>> kernels;
  int64_t in_features = 0, out_features = 0, widest = 0;
  bool batch_dependent = false;
  // Whether Run splits a batch by rows over the threads (see RowTasks).
  bool split_rows = false;
  // Normalization applied to each input row (not folded): x ← (x − mean)/std.
  std::optional<std::pair<double, double>> normalize;
  mutable std::mutex pool_mu;
  mutable std::vector<std::unique_ptr<Workspace>> pool;

  std::unique_ptr<Workspace> Acquire() const {
    {
      std::lock_guard<std::mutex> lock(pool_mu);
      if (!pool.empty()) {
        auto ws = std::move(pool.back());
        pool.pop_back();
        return ws;
      }
    }
    auto ws = std::make_unique<Workspace>();
    ws->a.resize(size_t(options.max_batch * widest));
    ws->b.resize(size_t(options.max_batch * widest));
    if (normalize) ws->x.resize(size_t(options.max_batch * in_features));
    if (split_rows) ws->status.resize(size_t(options.threads));
    return ws;
  }
  void Release(std::unique_ptr<Workspace> ws) const {
    std::lock_guard<std::mutex> lock(pool_mu);
    pool.push_back(std::move(ws));
  }

  // The tasks a chunk of `rows` rows is split into, each running every
  // layer on its own rows on one thread (see SessionOptions::split_rows):
  // options.threads, from kSplitRowsMin rows a task; else 1, and the
  // kernels split each layer by columns over all the threads (fewer row
  // tasks than threads would leave threads idle).
  int RowTasks(int64_t rows) const {
    if (!split_rows || rows < kSplitRowsMin * options.threads) return 1;
    return options.threads;
  }
  // rows <= max_batch.
  Status RunChunk(const float* x, int64_t rows, float* y, Workspace& ws) const {
    const int T = RowTasks(rows);
    if (T <= 1) return RunRows(x, rows, y, ws, 0);
    ops::ParallelRun(T, [&](int t, int n) {
      const int64_t r0 = rows * t / n, r1 = rows * (t + 1) / n;
      ws.status[size_t(t)] =
          RunRows(x + r0 * in_features, r1 - r0, y + r0 * out_features, ws, r0);
    });
    for (int t = 0; t < T; ++t) BALLAST_RETURN_IF_ERROR(ws.status[size_t(t)]);
    return Status::Ok();
  }
  // Rows [r0, r0 + rows) of a chunk: x and y point at the first of them;
  // they take the workspace's rows from r0 on.
  Status RunRows(const float* x, int64_t rows, float* y, Workspace& ws,
                 int64_t r0) const {
    const float* in = x;
    float* const a = ws.a.data() + r0 * widest;
    float* const b = ws.b.data() + r0 * widest;
    if (normalize) {
      // As `ballast train` normalized its data.
      const auto [mu, sd] = *normalize;
      float* const xn = ws.x.data() + r0 * in_features;
      for (int64_t i = 0; i < rows * in_features; ++i) {
        xn[i] = float((double(x[i]) - mu) / sd);
      }
      in = xn;
    }
    for (size_t i = 0; i < kernels.size(); ++i) {
      const bool last = i + 1 == kernels.size();
      float* out = last ? y : (in == a ? b : a);
      Status s = kernels[i]->Run(in, rows, out);
      if (!s.ok()) {
        return s.WithContext("node '" + plan[i].name + "' (" + plan[i].op +
                             ", " + plan[i].backend + "): ");
      }
      in = out;
    }
    return Status::Ok();
  }
};

namespace {

// Kernel order for a node: the requested backend first, then the
// registry's priority order; ref never declines.
Result<std::pair<std::unique_ptr<OpKernel>, std::string>> ChooseKernel(
    const Registry& reg, const Node& node, const KernelContext& ctx,
    Backend backend) {
  const std::vector<KernelSpec>& specs = reg.Kernels(node.op);
  if (specs.empty()) {
    return NotFound("node '" + node.name + "': op '" + node.op +
                    "' has no kernels registered");
  }
  std::vector<const KernelSpec*> order;
  if (backend != Backend::kAuto) {
    for (const KernelSpec& k : specs) {
      if (k.backend == BackendName(backend)) order.push_back(&k);
    }
  }
  for (const KernelSpec& k : specs) {
    if (std::find(order.begin(), order.end(), &k) == order.end()) {
      order.push_back(&k);
    }
  }
  Status last_error;
  for (const KernelSpec* k : order) {
    if (k->supports && !k->supports(node, ctx)) continue;
    Result<std::unique_ptr<OpKernel>> made = Internal("not created");
    try {
      made = k->create(node, ctx);
    } catch (const std::bad_alloc&) {
      return OutOfRange("node '" + node.name + "': the " + k->backend +
                        " kernel's memory (packed weights, buffers for "
                        "max_batch = " +
                        std::to_string(ctx.max_batch) +
                        " rows) cannot be allocated");
    }
    if (made.ok() && *made == nullptr) {
      return Internal("node '" + node.name + "': the " + k->backend +
                      " kernel of op '" + node.op +
                      "' was created as a null pointer");
    }
    if (made.ok()) return std::make_pair(std::move(*made), k->backend);
    last_error = made.status();
  }
  return last_error.ok()
             ? NotFound("node '" + node.name + "': no kernel of op '" +
                        node.op + "' supports it")
             : last_error.WithContext("node '" + node.name + "': ");
}

}  // namespace

InferenceSession::InferenceSession(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
InferenceSession::~InferenceSession() = default;

Result<std::unique_ptr<InferenceSession>> InferenceSession::Create(
    const Graph& graph, const SessionOptions& options) {
  const Registry& reg =
      options.registry ? *options.registry : Registry::Builtin();
  if (options.threads < 1 || options.threads > kMaxThreads) {
    return InvalidArgument(
        "session: threads = " + std::to_string(options.threads) +
        " must be in [1, " + std::to_string(kMaxThreads) + "]");
  }
  if (options.max_batch < 1) {
    return InvalidArgument("session: max_batch = " +
                           std::to_string(options.max_batch) + " must be >= 1");
  }
  BALLAST_RETURN_IF_ERROR(graph.Validate(reg).status());
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  Graph g = graph;
  for (Node& n : g.nodes) BALLAST_RETURN_IF_ERROR(reg.ApplyDefaults(n));
  if (options.normalize_input) {
    BALLAST_ASSIGN_OR_RETURN(const auto norm, InputNormalization(graph));
    if (norm && options.fold_input_normalization &&
        InputNormalizationFolds(g, norm->first, norm->second)) {
      BALLAST_ASSIGN_OR_RETURN(
          g, FoldInputNormalization(g, norm->first, norm->second));
    } else {
      impl->normalize = norm;
    }
    // Applied, one way or the other.
    g.metadata.erase("input_mean");
    g.metadata.erase("input_std");
  }
  if (options.fold_batchnorm) {
    BALLAST_ASSIGN_OR_RETURN(g, FoldBatchNorm(g));
  }
  if (options.fuse) {
    BALLAST_ASSIGN_OR_RETURN(g, FuseActivations(g));
  }
  if (options.drop_dropout) {
    BALLAST_ASSIGN_OR_RETURN(g, DropDropout(g));
  }
  BALLAST_ASSIGN_OR_RETURN(std::vector<int64_t> widths, g.Validate(reg));
  // Tensors copy shallowly: a parameter no pass replaced still shares the
  // caller's storage, which a kernel reading the graph (ref) would see
  // change. The session owns its own.
  std::set<const float*> callers;
  for (const Node& n : graph.nodes) {
    for (const auto& [name, t] : n.params) callers.insert(t.data());
  }
  for (Node& n : g.nodes) {
    for (auto& [name, t] : n.params) {
      if (!t.empty() && callers.count(t.data())) t = t.Clone();
    }
  }
  impl->graph = std::move(g);
  impl->in_features = impl->graph.input_features;
  impl->out_features = widths.back();
  int64_t in = impl->in_features;
  impl->widest = in;
  impl->batch_dependent = impl->graph.BatchDependent(reg);
  for (size_t i = 0; i < impl->graph.nodes.size(); ++i) {
    const Node& node = impl->graph.nodes[i];
    const KernelContext ctx{in, widths[i], options.max_batch, options.threads};
    BALLAST_ASSIGN_OR_RETURN(auto chosen,
                             ChooseKernel(reg, node, ctx, options.backend));
    impl->kernels.push_back(std::move(chosen.first));
    impl->plan.push_back({node.name, node.op, chosen.second, in, widths[i]});
    impl->widest = std::max(impl->widest, widths[i]);
    in = widths[i];
  }
  // oneDNN's kernels keep the threading oneDNN gives them (inside a split
  // they would run on one thread each): a session on them measures oneDNN.
  impl->split_rows =
      options.split_rows && options.threads > 1 && !impl->batch_dependent &&
      std::none_of(impl->plan.begin(), impl->plan.end(),
                   [](const PlannedNode& p) { return p.backend == "onednn"; });
  // One workspace up front: the first Run allocates nothing. Sizes past the
  // machine's memory are refused before asking for them (a sanitizer's
  // allocator would abort rather than throw).
  const double bytes = (2.0 * double(impl->widest) +
                        (impl->normalize ? double(impl->in_features) : 0.0)) *
                       double(options.max_batch) * sizeof(float);
  const double memory = MachineMemoryBytes();
  const auto too_large = [&](const std::string& why) {
    return OutOfRange(std::string("session: ") +
                      (impl->normalize ? "the normalized input and " : "") +
                      "two activation buffers of max_batch × widest layer = " +
                      std::to_string(options.max_batch) + " × " +
                      std::to_string(impl->widest) + " floats " + why +
                      "; lower max_batch or check the model's widths");
  };
  if (memory > 0 && bytes > memory) {
    return too_large("need " + std::to_string(int64_t(bytes / (1 << 30))) +
                     " GiB, more than the machine's memory");
  }
  try {
    impl->Release(impl->Acquire());
  } catch (const std::bad_alloc&) {
    return too_large("cannot be allocated");
  }
  return std::unique_ptr<InferenceSession>(
      new InferenceSession(std::move(impl)));
}

Status InferenceSession::Run(const float* input, int64_t batch,
                             float* output) const {
  const Impl& m = *impl_;
  if (batch < 0) {
    return InvalidArgument("session: batch = " + std::to_string(batch) +
                           " must be >= 0");
  }
  if (batch == 0) return Status::Ok();
  if (input == nullptr || output == nullptr) {
    return InvalidArgument("session: input and output must not be null");
  }
  // The kernels read a chunk's input while they write its output (and the
  // next chunk's input lies past this one's output): in place would be
  // wrong answers, not an error.
  const auto begin_in = reinterpret_cast<uintptr_t>(input);
  const auto begin_out = reinterpret_cast<uintptr_t>(output);
  const uintptr_t end_in =
      begin_in + uintptr_t(batch) * uintptr_t(m.in_features) * sizeof(float);
  const uintptr_t end_out =
      begin_out + uintptr_t(batch) * uintptr_t(m.out_features) * sizeof(float);
  if (begin_in < end_out && begin_out < end_in) {
    return InvalidArgument(
        "session: the output overlaps the input; Run cannot work in place, "
        "give it a separate output buffer");
  }
  if (batch > m.options.max_batch && m.batch_dependent) {
    return InvalidArgument(
        "session: batch of " + std::to_string(batch) +
        " rows exceeds "
        "max_batch = " +
        std::to_string(m.options.max_batch) +
        " and the model normalizes with batch statistics (batchnorm1d "
        "without running statistics), so it cannot be split; raise "
        "max_batch");
  }
  std::unique_ptr<Workspace> ws = m.Acquire();
  Status status;
  for (int64_t r0 = 0; r0 < batch && status.ok(); r0 += m.options.max_batch) {
    const int64_t rows = std::min(m.options.max_batch, batch - r0);
    status = m.RunChunk(input + r0 * m.in_features, rows,
                        output + r0 * m.out_features, *ws);
  }
  m.Release(std::move(ws));
  return status;
}

Result<Tensor> InferenceSession::Run(const Tensor& input) const {
  if (input.rank() != 2 || input.dim(1) != impl_->in_features) {
    return InvalidArgument("session: input has shape " +
                           input.shape().ToString() + "; expected [batch, " +
                           std::to_string(impl_->in_features) + "]");
  }
  Tensor out = Tensor::Zeros({input.dim(0), impl_->out_features});
  BALLAST_RETURN_IF_ERROR(Run(input.data(), input.dim(0), out.data()));
  return out;
}

int64_t InferenceSession::input_features() const { return impl_->in_features; }
int64_t InferenceSession::output_features() const {
  return impl_->out_features;
}
const SessionOptions& InferenceSession::options() const {
  return impl_->options;
}
const std::vector<PlannedNode>& InferenceSession::plan() const {
  return impl_->plan;
}
const Graph& InferenceSession::optimized_graph() const { return impl_->graph; }

}  // namespace ballast
