#include "ballast/trainer.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ballast/registry.h"
#include "ballast/session.h"
#include "ops/cache_aligned.h"
#include "ops/ref/cross_entropy.h"
#include "ops/tasks.h"
#include "runtime/memory.h"
#include "runtime/number_text.h"
#include "runtime/optimizer.h"
#include "runtime/train_layers.h"

namespace ballast {
using internal::BuildTrainLayers;
using internal::ClipGradNorm;
using internal::FromGraphLayout;
using internal::FusedUpdate;
using internal::MachineMemoryBytes;
using internal::OptimizerStep;
using internal::Param;
using internal::ParseWhole;
using internal::PrepareAdam;
using internal::PrepareSgd;
using internal::SyncToGraph;
using internal::ToGraphLayout;
using internal::TrainLayer;

namespace {

// "nan", "inf" or "-inf", as PyTorch prints them (std::to_string gives
// "-nan" for a NaN with its sign bit set).
std::string NonFiniteName(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return std::to_string(v);
}

}  // namespace

struct Trainer::Impl {
  TrainerOptions opt;
  Graph graph;  // private copy; trained in place
  std::vector<std::unique_ptr<TrainLayer>> layers;
  std::vector<Param*> params;
  std::vector<std::vector<Param*>> layer_params;  // params of each layer
  std::vector<ops::AlignedVector<float>> acts;    // output of each layer
  ops::AlignedVector<float> grad_a, grad_b;       // ping-pong gradients
  int64_t in = 0, out = 0, step = 0;
  Generator rng;
  // With opt.profile: [3·layer + phase] (forward, backward, update), then
  // the loss.
  std::vector<PhaseTime> profile;
  // Loss scratch, split by rows over the threads: on cache lines of their
  // own, as each thread's row_exp (see Loss).
  ops::AlignedVector<double> row_loss, row_exp;
  ops::AlignedVector<uint8_t> row_correct;

  // Runs fn and, when profiling, adds its wall time to profile[slot].
  template <class Fn>
  auto Timed(size_t slot, Fn fn) {
    if (!opt.profile) return fn();
    const auto t0 = std::chrono::steady_clock::now();
    auto result = fn();
    profile[slot].seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    ++profile[slot].steps;
    return result;
  }

  Impl(const TrainerOptions& o) : opt(o), rng(o.seed) {}

  // Brings the graph's tensors up to date with the params kept in panels.
  // The const calls that read the graph (Evaluate, CurrentGraph, Checkpoint)
  // hold graph_mutex from this until they have copied it.
  void SyncGraph() {
    for (Param* p : params) SyncToGraph(*p);
  }
  std::mutex graph_mutex;

  // What the loss will read, checked before the forward pass changes any
  // state (running statistics, the dropout stream).
  Status CheckStepInputs(const float* x, const int32_t* labels,
                         const float* targets, int64_t M) const {
    if (!x) return InvalidArgument("train: the input x is null");
    if (opt.loss != LossKind::kCrossEntropy) {
      return targets ? Status::Ok()
                     : InvalidArgument("train: the MSE loss needs targets");
    }
    if (!labels) return InvalidArgument("train: cross-entropy needs labels");
    return ref::CheckLabels(labels, M, out).WithContext("train: ");
  }

  Status Loss(const float* y, const int32_t* labels, const float* targets,
              int64_t M, float* dy, StepResult& r) {
    const int64_t C = out;
    double total = 0;
    if (opt.loss == LossKind::kCrossEntropy) {
      const double eps = opt.label_smoothing;
      // Rows in parallel, each row's loss kept, then summed in row order:
      // the same bits on any thread count.
      row_loss.resize(size_t(M));
      row_correct.resize(size_t(M));
      const int threads = M * C >= 1024 ? opt.threads : 1;
      // Per thread, exp(z − max) of its row: the softmax divides them by
      // their sum, rather than taking a second exp of z − logsumexp. Each
      // thread's on cache lines of its own: the ten doubles of the book's
      // output layer shared a line with the next thread's, which every row
      // wrote. (No change in the two-thread step beyond the noise: 0.995-
      // 1.003 of the time, 1000 steps alternated, three runs, distant
      // cores.)
      const int64_t e_stride = (C + 7) / 8 * 8;
      row_exp.resize(size_t(threads * e_stride));
      ops::ParallelRun(threads, [&](int task, int tasks) {
        double* e = row_exp.data() + task * e_stride;
        for (int64_t m = M * task / tasks; m < M * (task + 1) / tasks; ++m) {
          const int32_t label = labels[m];
          const float* z = y + m * C;
          double mx = z[0];
          int64_t arg = 0;
          for (int64_t c = 1; c < C; ++c) {
            if (z[c] > mx) mx = z[c], arg = c;
          }
          row_correct[size_t(m)] = arg == label;
          double se = 0;
          for (int64_t c = 0; c < C; ++c) {
            e[c] = std::exp(double(z[c]) - mx);
            se += e[c];
          }
          const double lse = mx + std::log(se);
          double mean_neg_logp = 0;
          for (int64_t c = 0; c < C; ++c) mean_neg_logp += lse - z[c];
          mean_neg_logp /= double(C);
          row_loss[size_t(m)] =
              (1 - eps) * (lse - z[label]) + eps * mean_neg_logp;
          for (int64_t c = 0; c < C; ++c) {
            const double p = e[c] / se;
            const double t = (c == label ? 1 - eps : 0.0) + eps / double(C);
            dy[m * C + c] = float((p - t) / double(M));
          }
        }
      });
      for (int64_t m = 0; m < M; ++m) {
        total += row_loss[size_t(m)];
        r.correct += row_correct[size_t(m)];
      }
      r.loss = total / double(M);
    } else {
      if (!targets) return InvalidArgument("train: MSE needs targets");
      const double n = double(M * C);
      for (int64_t i = 0; i < M * C; ++i) {
        const double d = double(y[i]) - targets[i];
        total += d * d;
        dy[i] = float(2.0 * d / n);
      }
      r.loss = total / n;
    }
    return Status::Ok();
  }

  // Forward, loss and backward. With `update`, each layer's parameters are
  // updated right after its backward pass (its gradient is then still in
  // cache); the result is the same as updating all of them at the end,
  // because a layer's update never feeds the backward of the layers before it
  // (their dX used the weights packed before the update).
  Result<StepResult> ForwardBackward(const float* x, const int32_t* labels,
                                     const float* targets, int64_t M,
                                     bool update) {
    if (M < 2 || M > opt.max_batch) {
      return InvalidArgument(
          "train: batch of " + std::to_string(M) +
          " rows; a training step needs 2 <= rows <= "
          "max_batch = " +
          std::to_string(opt.max_batch) +
          " (BatchNorm needs more than 1 value per channel)");
    }
    BALLAST_RETURN_IF_ERROR(CheckStepInputs(x, labels, targets, M));
    const uint64_t rng_offset = rng.offset();
    const float* in_ptr = x;
    for (size_t i = 0; i < layers.size(); ++i) {
      BALLAST_RETURN_IF_ERROR(Timed(3 * i, [&] {
        return layers[i]->Forward(in_ptr, M, acts[i].data(), rng);
      }));
      in_ptr = acts[i].data();
    }
    StepResult r;
    BALLAST_RETURN_IF_ERROR(Timed(3 * layers.size(), [&] {
      return Loss(in_ptr, labels, targets, M, grad_a.data(), r);
    }));
    if (!std::isfinite(r.loss)) {
      // Nothing has been updated yet but what the forward moves besides its
      // outputs: put that back, so that the failed step changes nothing.
      for (auto& layer : layers) layer->UndoForward();
      rng.set_offset(rng_offset);
      return FailedPrecondition("train: the loss is " + NonFiniteName(r.loss) +
                                " at step " + std::to_string(step + 1));
    }
    float* dy = grad_a.data();
    float* dx = grad_b.data();
    if (update) ++step;
    for (size_t i = layers.size(); i-- > 0;) {
      // A Linear weight is updated inside its gradient GEMM: its gradient is
      // not read back from memory for a separate pass.
      Param* fused = update ? layers[i]->FusableWeight() : nullptr;
      ops::SgdArgs sgd;
      ops::AdamArgs adam;
      FusedUpdate& f = layers[i]->fused_update;
      if (fused && opt.optimizer.kind == OptimizerKind::kSgd) {
        sgd = PrepareSgd(opt.optimizer, *fused);
        f.sgd = &sgd;
      } else if (fused) {
        adam = PrepareAdam(opt.optimizer, step, *fused,
                           opt.optimizer.kind == OptimizerKind::kAdamW);
        f.adam = &adam;
      }
      layers[i]->fused_store_grad = opt.keep_gradients;
      const Status s = Timed(3 * i + 1, [&] {
        return layers[i]->Backward(dy, i > 0 ? dx : nullptr, M);
      });
      f = {};
      BALLAST_RETURN_IF_ERROR(s);
      std::swap(dy, dx);
      if (update) {
        // (PrepareAdam has made Adam's state already.)
        if (fused) fused->has_state = fused->has_state || sgd.has_buf;
        Timed(3 * i + 2, [&] {
          OptimizerStep(opt.optimizer, step, layer_params[i], opt.threads,
                        fused);
          layers[i]->ParamsUpdated();
          return 0;
        });
      }
    }
    return r;
  }

  Result<StepResult> Step(const float* x, const int32_t* labels,
                          const float* targets, int64_t M) {
    // Clipping needs every gradient before any update.
    const bool clip = opt.clip_grad_norm > 0;
    BALLAST_ASSIGN_OR_RETURN(StepResult r,
                             ForwardBackward(x, labels, targets, M, !clip));
    if (clip) {
      ClipGradNorm(params, opt.clip_grad_norm);
      ++step;
      for (size_t i = 0; i < layers.size(); ++i) {
        Timed(3 * i + 2, [&] {
          OptimizerStep(opt.optimizer, step, layer_params[i], opt.threads);
          layers[i]->ParamsUpdated();
          return 0;
        });
      }
    }
    return r;
  }
};

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

// The fewest outputs of a layer whose input gradient is masked (see
// TrainerOptions::masked_input_grad).
constexpr int64_t kMaskedInputGradMinOutputs = 64;

Result<std::unique_ptr<Trainer>> Trainer::Create(
    const Graph& graph, const TrainerOptions& options) {
  if (options.max_batch < 2) {
    return InvalidArgument("train: max_batch = " +
                           std::to_string(options.max_batch) + " must be >= 2");
  }
  if (options.threads < 1 || options.threads > kMaxThreads) {
    return InvalidArgument(
        "train: threads = " + std::to_string(options.threads) +
        " must be in [1, " + std::to_string(kMaxThreads) + "]");
  }
  const OptimizerOptions& o = options.optimizer;
  if (!(o.lr >= 0) || !(o.momentum >= 0) || !(o.weight_decay >= 0) ||
      !(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1) ||
      !(o.eps > 0)) {
    return InvalidArgument(
        "train: optimizer options out of range (lr, momentum and "
        "weight_decay >= 0; betas in [0, 1); eps > 0)");
  }
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
    return InvalidArgument(
        "train: Nesterov momentum requires a momentum and zero dampening");
  }
  if (!(options.label_smoothing >= 0 && options.label_smoothing <= 1)) {
    return InvalidArgument("train: label_smoothing must be in [0, 1]");
  }
  if (!(options.clip_grad_norm >= 0)) {
    return InvalidArgument(
        "train: clip_grad_norm = " + std::to_string(options.clip_grad_norm) +
        " must be >= 0 (0: no clipping)");
  }
  BALLAST_ASSIGN_OR_RETURN(const std::vector<int64_t> widths,
                           graph.Validate(Registry::Builtin()));
  // Every buffer is max_batch × a width: refused before their sizes
  // overflow or pass the machine's memory.
  const int64_t widest_layer = std::max(
      graph.input_features, *std::max_element(widths.begin(), widths.end()));
  const double buffer_bytes =
      double(options.max_batch) * double(widest_layer) * sizeof(float);
  const double memory = MachineMemoryBytes();
  if (memory > 0 && buffer_bytes > memory) {
    return OutOfRange(
        "train: max_batch = " + std::to_string(options.max_batch) +
        " rows of " + std::to_string(widest_layer) +
        " floats need more than the machine's memory for one "
        "buffer; lower max_batch");
  }
  try {
    return CreateChecked(graph, options, widths);
  } catch (const std::bad_alloc&) {
    return OutOfRange("train: the buffers for max_batch = " +
                      std::to_string(options.max_batch) +
                      " rows cannot be allocated; lower max_batch");
  }
}

Result<std::unique_ptr<Trainer>> Trainer::CreateChecked(
    const Graph& graph, const TrainerOptions& options,
    const std::vector<int64_t>& widths) {
  auto impl = std::make_unique<Impl>(options);
  impl->graph = graph;
  for (Node& n : impl->graph.nodes) {
    BALLAST_RETURN_IF_ERROR(Registry::Builtin().ApplyDefaults(n));
    for (auto& [name, t] : n.params) t = t.Clone();  // own the tensors
  }
  BALLAST_ASSIGN_OR_RETURN(
      impl->layers, BuildTrainLayers(impl->graph, options.fuse,
                                     {options.threads, options.max_batch}));
  impl->in = graph.input_features;
  impl->out = widths.back();
  for (size_t i = 1; i < impl->layers.size(); ++i) {
    impl->layers[i]->skip_input_zeros =
        options.skip_zeros && impl->layers[i - 1]->OutputHasZeros();
    if (impl->layers[i]->skip_input_zeros) {
      impl->layers[i]->input_layer = impl->layers[i - 1].get();
    }
    // Each kept value of a masked dX is a dot product over the layer's
    // outputs: over the output layer's 10 it took longer than the dense
    // GEMM (see TrainLayer::dx_mask).
    if (options.masked_input_grad && impl->layers[i - 1]->PassMask() &&
        impl->layers[i]->out >= kMaskedInputGradMinOutputs) {
      impl->layers[i]->dx_mask = impl->layers[i - 1]->PassMask();
    }
  }
  if (!impl->layers.empty()) impl->layers.front()->needs_dx = false;
  int64_t widest = std::max(impl->in, impl->out);
  for (auto& l : impl->layers) {
    impl->acts.emplace_back(size_t(options.max_batch * l->out));
    widest = std::max(widest, l->out);
    impl->layer_params.push_back(l->params());
    for (Param* p : l->params()) impl->params.push_back(p);
  }
  if (options.profile) {
    for (const auto& l : impl->layers) {
      for (const char* phase : {"forward", "backward", "update"}) {
        impl->profile.push_back({l->name, phase, 0.0, 0});
      }
    }
    impl->profile.push_back({"loss", "loss", 0.0, 0});
  }
  impl->grad_a.resize(size_t(options.max_batch * widest));
  impl->grad_b.resize(size_t(options.max_batch * widest));
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

namespace {

// f() with its passes on one team of `threads` threads (see ops/tasks.h),
// and `side` in the team's idle moments.
template <class F>
Result<StepResult> OnTeam(int threads, F f,
                          const StepSideWork* side = nullptr) {
  std::optional<Result<StepResult>> result;
  ops::SideWork work;
  if (side != nullptr && side->chunks > 0 && side->run) {
    work.fn = [](void* ctx, int64_t i) {
      static_cast<const StepSideWork*>(ctx)->run(i);
    };
    work.ctx = const_cast<StepSideWork*>(side);
    work.chunks = side->chunks;
  }
  ops::WithTeam(
      threads, [&] { result = f(); }, work);
  return std::move(*result);
}

}  // namespace

Result<StepResult> Trainer::ComputeGradients(const float* x,
                                             const int32_t* labels,
                                             const float* targets,
                                             int64_t batch) {
  return OnTeam(impl_->opt.threads, [&] {
    return impl_->ForwardBackward(x, labels, targets, batch, /*update=*/false);
  });
}

Result<StepResult> Trainer::Step(const float* x, const int32_t* labels,
                                 const float* targets, int64_t batch) {
  return OnTeam(impl_->opt.threads,
                [&] { return impl_->Step(x, labels, targets, batch); });
}

Result<StepResult> Trainer::Step(const float* x, const int32_t* labels,
                                 const float* targets, int64_t batch,
                                 const StepSideWork& side) {
  if (side.chunks < 0 || (side.chunks > 0 && !side.run)) {
    return InvalidArgument("train: side work of " +
                           std::to_string(side.chunks) +
                           " chunks needs a run function and chunks >= 0");
  }
  return OnTeam(
      impl_->opt.threads,
      [&] { return impl_->Step(x, labels, targets, batch); }, &side);
}

Graph Trainer::CurrentGraph() const {
  std::lock_guard<std::mutex> lock(impl_->graph_mutex);
  impl_->SyncGraph();
  Graph g = impl_->graph;
  for (Node& n : g.nodes) {
    for (auto& [name, t] : n.params) t = t.Clone();
  }
  return g;
}

Result<EvalResult> Trainer::Evaluate(const float* x, const int32_t* labels,
                                     int64_t rows) const {
  if (rows < 1 || !x || !labels) {
    return InvalidArgument("evaluate: " + std::to_string(rows) +
                           " rows at x = " + (x ? "data" : "null") +
                           ", labels = " + (labels ? "data" : "null") +
                           "; needs rows >= 1 and both");
  }
  SessionOptions so;
  so.threads = impl_->opt.threads;
  so.max_batch = std::clamp<int64_t>(rows, 1, 1024);
  // A BatchNorm without running statistics normalizes with the batch's: all
  // rows in one batch, as torch's model(x) in eval mode, not in chunks.
  if (impl_->graph.BatchDependent(Registry::Builtin())) so.max_batch = rows;
  // The rows come as Step takes them: a checkpoint's input_mean/input_std
  // (which a resumed trainer's graph carries) are for `ballast run`.
  so.normalize_input = false;
  std::unique_lock<std::mutex> lock(impl_->graph_mutex);
  impl_->SyncGraph();
  BALLAST_ASSIGN_OR_RETURN(auto session,
                           InferenceSession::Create(impl_->graph, so));
  lock.unlock();
  const int64_t C = session->output_features();
  std::vector<float> y(size_t(so.max_batch * C));
  double loss = 0;
  int64_t correct = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += so.max_batch) {
    const int64_t m = std::min(so.max_batch, rows - r0);
    BALLAST_RETURN_IF_ERROR(session->Run(x + r0 * impl_->in, m, y.data()));
    for (int64_t i = 0; i < m; ++i) {
      const float* z = y.data() + i * C;
      const int32_t label = labels[r0 + i];
      if (label < 0 || label >= C) {
        return OutOfRange("evaluate: label " + std::to_string(label) +
                          " at row " + std::to_string(r0 + i) +
                          " is outside [0, " + std::to_string(C) + ")");
      }
      double mx = z[0];
      int64_t arg = 0;
      for (int64_t c = 1; c < C; ++c) {
        if (z[c] > mx) mx = z[c], arg = c;
      }
      double se = 0;
      for (int64_t c = 0; c < C; ++c) se += std::exp(double(z[c]) - mx);
      loss += mx + std::log(se) - z[label];
      correct += arg == label;
    }
  }
  return EvalResult{loss / double(rows), double(correct) / double(rows)};
}

std::map<std::string, Tensor> Trainer::Gradients() const {
  std::map<std::string, Tensor> out;
  for (Param* p : impl_->params) {
    if (p->grad_stored) out[p->key] = ToGraphLayout(*p, p->grad);
  }
  return out;
}

Status Trainer::set_lr(double lr) {
  if (!(lr >= 0) || !std::isfinite(lr)) {
    return InvalidArgument("train: learning rate " + std::to_string(lr) +
                           " must be finite and >= 0");
  }
  impl_->opt.optimizer.lr = lr;
  return Status::Ok();
}
double Trainer::lr() const { return impl_->opt.optimizer.lr; }
int64_t Trainer::step() const { return impl_->step; }
std::vector<PhaseTime> Trainer::Profile() const { return impl_->profile; }

const char* OptimizerName(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return "sgd";
    case OptimizerKind::kAdam:
      return "adam";
    case OptimizerKind::kAdamW:
      return "adamw";
  }
  return "unknown";
}

Model Trainer::Checkpoint(
    const std::map<std::string, std::string>& metadata) const {
  Model m;
  m.graph = CurrentGraph();
  m.checkpoint = true;
  for (const auto& [k, v] : metadata) m.graph.metadata[k] = v;
  m.graph.metadata["trainer.step"] = std::to_string(impl_->step);
  m.graph.metadata["trainer.rng_seed"] = std::to_string(impl_->rng.seed());
  m.graph.metadata["trainer.rng_offset"] = std::to_string(impl_->rng.offset());
  // The rate of the last step, as the shortest text that reads back as it.
  char lr[32];
  const auto lr_end =
      std::to_chars(lr, lr + sizeof(lr), impl_->opt.optimizer.lr).ptr;
  m.graph.metadata["trainer.lr"] = std::string(lr, lr_end);
  m.graph.metadata["trainer.optimizer"] =
      OptimizerName(impl_->opt.optimizer.kind);
  // The layers (and so the numbering of the batch counts below) follow it.
  m.graph.metadata["trainer.fuse"] = impl_->opt.fuse ? "1" : "0";
  for (size_t i = 0; i < impl_->layers.size(); ++i) {
    if (int64_t* nb = impl_->layers[i]->num_batches()) {
      m.graph.metadata["trainer.num_batches." + std::to_string(i)] =
          std::to_string(*nb);
    }
  }
  for (Param* p : impl_->params) {
    if (!p->has_state) continue;
    if (!p->buf1.empty())
      m.extra["optimizer/" + p->key + "/buf1"] = ToGraphLayout(*p, p->buf1);
    if (!p->buf2.empty())
      m.extra["optimizer/" + p->key + "/buf2"] = ToGraphLayout(*p, p->buf2);
  }
  return m;
}

Result<std::unique_ptr<Trainer>> Trainer::Resume(
    const Model& ck, const TrainerOptions& options) {
  if (!ck.checkpoint) {
    return InvalidArgument(
        "resume: the file is an inference model, not a training "
        "checkpoint");
  }
  BALLAST_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> t,
                           Create(ck.graph, options));
  Impl& m = *t->impl_;
  auto get = [&](const std::string& key) -> Result<uint64_t> {
    auto it = ck.graph.metadata.find(key);
    if (it == ck.graph.metadata.end()) {
      return DataLoss("resume: checkpoint metadata lacks '" + key + "'");
    }
    uint64_t v = 0;
    if (!ParseWhole(it->second, &v)) {
      return DataLoss("resume: checkpoint metadata '" + key + "' = '" +
                      it->second + "' is not a count");
    }
    return v;
  };
  // The optimizer state must be what this trainer's optimizer reads: SGD's
  // momentum buffer is not Adam's first moment, and Adam needs both
  // moments. Adam and AdamW keep the same state (PyTorch loads one's into
  // the other). Checkpoints that predate "trainer.optimizer" are judged by
  // their buffers; one without any (SGD without momentum, or no step yet)
  // any optimizer can continue.
  const OptimizerKind kind = options.optimizer.kind;
  const auto named = ck.graph.metadata.find("trainer.optimizer");
  bool has_buf1 = false, has_buf2 = false;
  for (const auto& [key, tensor] : ck.extra) {
    has_buf1 = has_buf1 || key.ends_with("/buf1");
    has_buf2 = has_buf2 || key.ends_with("/buf2");
  }
  std::string state;  // "sgd", "adam or adamw", or "" (no state)
  if (named != ck.graph.metadata.end()) {
    state = named->second == "sgd" ? "sgd" : "adam or adamw";
  } else if (has_buf2) {
    state = "adam or adamw";
  } else if (has_buf1) {
    state = "sgd";
  }
  if (!state.empty() && (state == "sgd") != (kind == OptimizerKind::kSgd)) {
    return InvalidArgument(
        "resume: the checkpoint holds the state of optimizer " +
        (named != ck.graph.metadata.end() ? named->second : state) +
        ", which " + OptimizerName(kind) + " cannot continue");
  }
  const auto fused = ck.graph.metadata.find("trainer.fuse");
  if (fused != ck.graph.metadata.end() &&
      (fused->second == "1") != options.fuse) {
    return InvalidArgument(
        std::string("resume: the checkpoint was trained with "
                    "TrainerOptions::fuse = ") +
        (fused->second == "1" ? "true" : "false") +
        "; resume it with the same (its layers, and the state they keep, "
        "follow it)");
  }
  BALLAST_ASSIGN_OR_RETURN(const uint64_t step, get("trainer.step"));
  BALLAST_ASSIGN_OR_RETURN(const uint64_t seed, get("trainer.rng_seed"));
  BALLAST_ASSIGN_OR_RETURN(const uint64_t offset, get("trainer.rng_offset"));
  m.step = int64_t(step);
  m.rng = Generator(seed);
  m.rng.set_offset(offset);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    if (int64_t* nb = m.layers[i]->num_batches()) {
      BALLAST_ASSIGN_OR_RETURN(const uint64_t v,
                               get("trainer.num_batches." + std::to_string(i)));
      *nb = int64_t(v);
    }
  }
  for (Param* p : m.params) {
    const Shape shape = p->panels ? p->graph_value.shape() : p->value.shape();
    const std::pair<const char*, Tensor*> bufs[] = {{"buf1", &p->buf1},
                                                    {"buf2", &p->buf2}};
    for (const auto& [name, buf] : bufs) {
      auto it = ck.extra.find("optimizer/" + p->key + "/" + name);
      if (it == ck.extra.end()) continue;
      const Tensor& t = it->second;
      if (!(t.shape() == shape)) {
        return DataLoss("resume: optimizer state of '" + p->key +
                        "' has shape " + t.shape().ToString() +
                        ", the parameter " + shape.ToString());
      }
      *buf = FromGraphLayout(*p, t);
      p->has_state = true;
    }
    if (p->has_state && kind != OptimizerKind::kSgd &&
        (p->buf1.empty() || p->buf2.empty())) {
      return DataLoss("resume: the Adam state of '" + p->key + "' lacks its " +
                      (p->buf1.empty() ? "first" : "second") + " moment");
    }
  }
  return t;
}

}  // namespace ballast
