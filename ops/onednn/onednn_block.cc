#include "ops/onednn/onednn_block.h"

#include <string>
#include <utility>

namespace ballast::ops::onednn {

const char* EvalModeName(EvalMode mode) {
  switch (mode) {
    case EvalMode::kFolded:
      return "folded";
    case EvalMode::kPostOps:
      return "post-ops";
    case EvalMode::kUnfused:
      return "unfused";
  }
  return "unknown";
}

}  // namespace ballast::ops::onednn

#if BALLAST_HAVE_ONEDNN

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "dnnl.hpp"
#include "dnnl_debug.h"
#include "ops/ref/fold.h"

namespace ballast::ops::onednn {
namespace {

constexpr const char* kEvalOp = "onednn eval block";
constexpr const char* kTrainOp = "onednn train block";

// Primitive sets kept per object; the least recently used goes first.
constexpr size_t kMaxCachedShapes = 64;

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using Args = std::unordered_map<int, memory>;

// Sets the calling thread's OpenMP thread count for the lifetime of the
// guard and restores the previous value (see the header, "Threads").
class ThreadsGuard {
 public:
  explicit ThreadsGuard(int threads) : saved_(omp_get_max_threads()) {
    omp_set_num_threads(threads);
  }
  ~ThreadsGuard() { omp_set_num_threads(saved_); }
  ThreadsGuard(const ThreadsGuard&) = delete;
  ThreadsGuard& operator=(const ThreadsGuard&) = delete;

 private:
  int saved_;
};

// A Status raised while building primitives, carried to the Guarded
// boundary like oneDNN's own exceptions.
struct StatusError : std::exception {
  explicit StatusError(Status s) : status(std::move(s)) {}
  const char* what() const noexcept override {
    return status.message().c_str();
  }
  Status status;
};

// Runs `body` (returning Status) and turns every exception into a Status
// that names the op: no exception leaves the backend.
template <typename F>
Status Guarded(const char* op, F&& body) {
  try {
    return body();
  } catch (const StatusError& e) {
    return e.status;
  } catch (const dnnl::error& e) {
    std::string m = std::string(op) + ": oneDNN error: " + e.what() +
                    " (status " + dnnl_status2str(e.status) + ")";
    return e.status == dnnl_unimplemented ? Unimplemented(std::move(m))
                                          : Internal(std::move(m));
  } catch (const std::bad_alloc&) {
    return Internal(std::string(op) + ": out of memory");
  } catch (const std::exception& e) {
    return Internal(std::string(op) + ": " + e.what());
  } catch (...) {
    return Internal(std::string(op) + ": unknown exception");
  }
}

Status CheckThreads(const char* op, int threads) {
  if (threads < 1) {
    return InvalidArgument(std::string(op) + ": threads = " +
                           std::to_string(threads) + " must be >= 1");
  }
  return Status::Ok();
}

Status CheckParams(const char* op, const BlockParams& p, bool need_stats) {
  if (p.K < 1 || p.N < 1) {
    return InvalidArgument(std::string(op) + ": K = " + std::to_string(p.K) +
                           ", N = " + std::to_string(p.N) +
                           ": both must be >= 1");
  }
  if (!p.w) return InvalidArgument(std::string(op) + ": weights w is null");
  if (need_stats && (!p.running_mean || !p.running_var)) {
    return InvalidArgument(std::string(op) +
                           ": running_mean and running_var are required");
  }
  if (!(p.eps > 0) || !std::isfinite(p.eps)) {
    return InvalidArgument(std::string(op) + ": eps = " +
                           std::to_string(p.eps) + " must be finite and > 0");
  }
  return Status::Ok();
}

// Where the caller's pointer is bound directly, the primitive must take the
// plain row-major layout we asked for.
void CheckLayout(const char* op, const char* what, const memory::desc& got,
                 const memory::desc& want) {
  if (got != want) {
    throw StatusError(Internal(
        std::string(op) + ": oneDNN chose a non-plain layout for " + what));
  }
}

memory::desc Plain(int64_t rows, int64_t cols) {
  return memory::desc({rows, cols}, dt::f32, tag::ab);
}
memory::desc Vec(int64_t n) { return memory::desc({n}, dt::f32, tag::a); }

// A memory object over a caller's or our own buffer (or none yet); the
// handle is re-pointed per call with set_data_handle.
memory Bind(const memory::desc& md, const dnnl::engine& eng,
            const float* data = nullptr) {
  return memory(md, eng, const_cast<float*>(data));
}

// One scratchpad buffer shared by primitives that never run at the same
// time, allocated by oneDNN (aligned) for the largest request. The memory
// objects For() hands out do not own it: keep buffer() alive with them.
class Scratchpad {
 public:
  void Need(const dnnl::primitive_desc& pd) {
    const memory::desc md = pd.scratchpad_desc();
    if (md.get_size() > largest_.get_size()) largest_ = md;
  }
  void Allocate(const dnnl::engine& eng) {
    if (largest_.get_size() > 0) buffer_ = memory(largest_, eng);
  }
  const memory& buffer() const { return buffer_; }
  // A memory object for `pd`'s scratchpad aliasing the shared buffer.
  memory For(const dnnl::primitive_desc& pd, const dnnl::engine& eng) const {
    const memory::desc md = pd.scratchpad_desc();
    return memory(md, eng,
                  md.get_size() > 0 ? buffer_.get_data_handle() : nullptr);
  }

 private:
  memory::desc largest_;
  memory buffer_;
};

struct Step {
  dnnl::primitive prim;
  Args args;
};

// Adds a primitive and its arguments, and books its scratchpad.
template <typename Prim, typename Pd>
void AddStep(std::vector<Step>& steps, std::vector<dnnl::primitive_desc>& pds,
             Scratchpad& sp, const Pd& pd, Args args) {
  sp.Need(pd);
  steps.push_back({Prim(pd), std::move(args)});
  pds.push_back(pd);
}

// Allocates the shared scratchpad and gives each step its view of it;
// returns the buffer, which the caller keeps as long as the steps.
memory AttachScratchpad(std::vector<Step>& steps,
                        const std::vector<dnnl::primitive_desc>& pds,
                        Scratchpad& sp, const dnnl::engine& eng) {
  sp.Allocate(eng);
  for (size_t i = 0; i < steps.size(); ++i) {
    steps[i].args[DNNL_ARG_SCRATCHPAD] = sp.For(pds[i], eng);
  }
  return sp.buffer();
}

void Execute(const std::vector<Step>& steps, size_t first, size_t count,
             dnnl::stream& strm) {
  for (size_t i = first; i < first + count; ++i) {
    steps[i].prim.execute(strm, steps[i].args);
  }
  strm.wait();
}

dnnl::primitive_attr UserScratchpadAttr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// A small LRU map from (M, threads) to the primitives built for it.
template <typename Entry>
class ShapeCache {
 public:
  Entry* Find(int64_t M, int threads) {
    auto it = map_.find({M, threads});
    if (it == map_.end()) return nullptr;
    it->second.last_use = ++tick_;
    return it->second.entry.get();
  }
  Entry* Insert(int64_t M, int threads, std::unique_ptr<Entry> e) {
    if (map_.size() >= kMaxCachedShapes) {
      auto oldest = map_.begin();
      for (auto it = map_.begin(); it != map_.end(); ++it) {
        if (it->second.last_use < oldest->second.last_use) oldest = it;
      }
      map_.erase(oldest);
    }
    Slot& s = map_[{M, threads}];
    s.entry = std::move(e);
    s.last_use = ++tick_;
    return s.entry.get();
  }

 private:
  struct Slot {
    std::unique_ptr<Entry> entry;
    uint64_t last_use = 0;
  };
  std::map<std::pair<int64_t, int>, Slot> map_;
  uint64_t tick_ = 0;
};

}  // namespace

bool Available() { return true; }

// --- evaluation -------------------------------------------------------------

struct EvalBlock::Impl {
  struct Entry {
    memory src, dst;  // bound to the caller's x and y on each Run
    std::vector<Step> steps;
    memory scratchpad;  // owns what the steps' scratchpad arguments view
  };

  EvalMode mode = EvalMode::kFolded;
  int64_t K = 0, N = 0;
  double eps = 1e-5;
  bool relu = true;
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  // Plain parameters: W (W' when folded) [N, K]; the bias b (zeros when
  // absent) or b'; kPostOps: s and t as {1, N}; kUnfused: the running mean
  // and variance and [γ; β] as {2, N}.
  std::vector<float> w, bias, scale, shift, mean, var, scale_shift;
  // W reordered into each layout an inner_product asked for (usually one).
  std::vector<std::pair<memory::desc, memory>> packed;
  ShapeCache<Entry> cache;
  std::mutex mu;

  memory PackedWeights(const memory::desc& md) {
    for (const auto& [d, m] : packed) {
      if (d == md) return m;
    }
    memory user = Bind(Plain(N, K), eng, w.data());
    memory out(md, eng);
    dnnl::reorder(user, out).execute(strm, user, out);
    strm.wait();
    packed.emplace_back(md, out);
    return out;
  }

  std::unique_ptr<Entry> Build(int64_t M) {
    auto e = std::make_unique<Entry>();
    const memory::desc src_md = Plain(M, K), dst_md = Plain(M, N),
                       bias_md = Vec(N), row_md = Plain(1, N);
    e->src = Bind(src_md, eng);
    e->dst = Bind(dst_md, eng);
    const dnnl::primitive_attr attr = UserScratchpadAttr();
    Scratchpad sp;
    std::vector<dnnl::primitive_desc> pds;

    dnnl::primitive_attr ip_attr = attr;
    if (mode != EvalMode::kUnfused) {
      dnnl::post_ops po;
      if (mode == EvalMode::kPostOps) {
        po.append_binary(dnnl::algorithm::binary_mul, row_md);
        po.append_binary(dnnl::algorithm::binary_add, row_md);
      }
      if (relu) {
        po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      }
      ip_attr.set_post_ops(po);
    }
    const dnnl::inner_product_forward::primitive_desc ip_pd(
        dnnl::inner_product_forward::desc(
            dnnl::prop_kind::forward_inference, src_md,
            memory::desc({N, K}, dt::f32, tag::any), bias_md, dst_md),
        ip_attr, eng);
    CheckLayout(kEvalOp, "x", ip_pd.src_desc(), src_md);
    CheckLayout(kEvalOp, "y", ip_pd.dst_desc(), dst_md);
    CheckLayout(kEvalOp, "the bias", ip_pd.bias_desc(), bias_md);
    Args ip_args{{DNNL_ARG_SRC, e->src},
                 {DNNL_ARG_WEIGHTS, PackedWeights(ip_pd.weights_desc())},
                 {DNNL_ARG_BIAS, Bind(bias_md, eng, bias.data())},
                 {DNNL_ARG_DST, e->dst}};
    if (mode == EvalMode::kPostOps) {
      ip_args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] =
          Bind(row_md, eng, scale.data());
      ip_args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1] =
          Bind(row_md, eng, shift.data());
    }
    AddStep<dnnl::inner_product_forward>(e->steps, pds, sp, ip_pd,
                                         std::move(ip_args));

    if (mode == EvalMode::kUnfused) {
      // BatchNorm and ReLU in place on y.
      const dnnl::batch_normalization_forward::primitive_desc bn_pd(
          dnnl::batch_normalization_forward::desc(
              dnnl::prop_kind::forward_inference, dst_md, float(eps),
              dnnl::normalization_flags::use_global_stats |
                  dnnl::normalization_flags::use_scale_shift),
          attr, eng);
      CheckLayout(kEvalOp, "batchnorm data", bn_pd.dst_desc(), dst_md);
      AddStep<dnnl::batch_normalization_forward>(
          e->steps, pds, sp, bn_pd,
          {{DNNL_ARG_SRC, e->dst},
           {DNNL_ARG_DST, e->dst},
           {DNNL_ARG_MEAN, Bind(bn_pd.mean_desc(), eng, mean.data())},
           {DNNL_ARG_VARIANCE, Bind(bn_pd.variance_desc(), eng, var.data())},
           {DNNL_ARG_SCALE_SHIFT,
            Bind(bn_pd.weights_desc(), eng, scale_shift.data())}});

      if (relu) {
        const dnnl::eltwise_forward::primitive_desc relu_pd(
            dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference,
                                        dnnl::algorithm::eltwise_relu, dst_md,
                                        0.0f, 0.0f),
            attr, eng);
        CheckLayout(kEvalOp, "relu data", relu_pd.dst_desc(), dst_md);
        AddStep<dnnl::eltwise_forward>(
            e->steps, pds, sp, relu_pd,
            {{DNNL_ARG_SRC, e->dst}, {DNNL_ARG_DST, e->dst}});
      }
    }
    e->scratchpad = AttachScratchpad(e->steps, pds, sp, eng);
    return e;
  }
};

EvalBlock::EvalBlock(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EvalBlock::~EvalBlock() = default;
EvalMode EvalBlock::mode() const { return impl_->mode; }
int64_t EvalBlock::K() const { return impl_->K; }
int64_t EvalBlock::N() const { return impl_->N; }

Result<std::unique_ptr<EvalBlock>> EvalBlock::Create(const BlockParams& p,
                                                     EvalMode mode) {
  // kFolded without running statistics is a plain Linear (no BatchNorm).
  const bool plain_linear =
      mode == EvalMode::kFolded && !p.running_mean && !p.running_var;
  BALLAST_RETURN_IF_ERROR(
      CheckParams(kEvalOp, p, /*need_stats=*/!plain_linear));
  if (mode != EvalMode::kFolded && mode != EvalMode::kPostOps &&
      mode != EvalMode::kUnfused) {
    return InvalidArgument(std::string(kEvalOp) + ": unknown mode " +
                           std::to_string(int(mode)));
  }
  std::unique_ptr<Impl> impl;
  Status s = Guarded(kEvalOp, [&]() -> Status {
    impl = std::make_unique<Impl>();
    Impl& m = *impl;
    m.mode = mode, m.K = p.K, m.N = p.N, m.eps = p.eps, m.relu = p.relu;
    const size_t N = size_t(p.N), NK = size_t(p.N) * size_t(p.K);
    m.w.resize(NK);
    m.bias.assign(N, 0.0f);
    if (plain_linear) {
      std::copy(p.w, p.w + NK, m.w.begin());
      if (p.b) std::copy(p.b, p.b + N, m.bias.begin());
      return Status::Ok();
    }
    if (mode == EvalMode::kFolded) {
      ref::fold_batchnorm(p.w, p.b, p.gamma, p.beta, p.running_mean,
                          p.running_var, p.eps, p.K, p.N, m.w.data(),
                          m.bias.data());
      return Status::Ok();
    }
    std::copy(p.w, p.w + NK, m.w.begin());
    if (p.b) std::copy(p.b, p.b + N, m.bias.begin());
    if (mode == EvalMode::kPostOps) {
      // Only s and t are wanted from the fold; W' and b' are scratch.
      std::vector<float> w_unused(NK), b_unused(N);
      m.scale.resize(N), m.shift.resize(N);
      ref::fold_batchnorm(p.w, p.b, p.gamma, p.beta, p.running_mean,
                          p.running_var, p.eps, p.K, p.N, w_unused.data(),
                          b_unused.data(), m.scale.data(), m.shift.data());
    } else {
      m.mean.assign(p.running_mean, p.running_mean + N);
      m.var.assign(p.running_var, p.running_var + N);
      m.scale_shift.resize(2 * N);
      for (size_t n = 0; n < N; ++n) {
        m.scale_shift[n] = p.gamma ? p.gamma[n] : 1.0f;
        m.scale_shift[N + n] = p.beta ? p.beta[n] : 0.0f;
      }
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return std::unique_ptr<EvalBlock>(new EvalBlock(std::move(impl)));
}

Status EvalBlock::Run(const float* x, int64_t M, float* y, int threads) {
  Impl& m = *impl_;
  if (M < 0) {
    return InvalidArgument(std::string(kEvalOp) + ": batch M = " +
                           std::to_string(M) + " must be >= 0");
  }
  if (M == 0) return Status::Ok();
  if (!x || !y) {
    return InvalidArgument(std::string(kEvalOp) + ": x or y is null");
  }
  BALLAST_RETURN_IF_ERROR(CheckThreads(kEvalOp, threads));
  std::lock_guard<std::mutex> lock(m.mu);
  ThreadsGuard guard(threads);
  return Guarded(kEvalOp, [&]() -> Status {
    Impl::Entry* e = m.cache.Find(M, threads);
    if (!e) e = m.cache.Insert(M, threads, m.Build(M));
    e->src.set_data_handle(const_cast<float*>(x));
    e->dst.set_data_handle(y);
    Execute(e->steps, 0, e->steps.size(), m.strm);
    return Status::Ok();
  });
}

// --- training ---------------------------------------------------------------

struct TrainBlock::Impl {
  // Steps, in order: forward (inner product, batchnorm, relu), then backward
  // (relu, batchnorm, inner product data, inner product weights).
  enum : size_t {
    kIpFwd,
    kBnFwd,
    kReluFwd,
    kReluBwd,
    kBnBwd,
    kIpBwdData,
    kIpBwdWeights,
    kSteps
  };
  struct Entry {
    // Bound on each call: the caller's out, d_out, dx, dw, db and our
    // per-batch buffers (which move when a larger batch grows them).
    memory x, z, ybn, out, d_out, dybn, dz, dx, dw, db;
    std::vector<Step> steps;
    memory scratchpad;  // owns what the steps' scratchpad arguments view
  };

  int64_t K = 0, N = 0;
  double eps = 1e-5, momentum = 0.1;
  bool has_bias = false, affine = false;
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  // Parameters (plain): W [N, K], b [N] (zeros when absent), [γ; β] {2, N}.
  std::vector<float> w, b, scale_shift, running_mean, running_var;
  // The last Forward's batch (M_last rows) and what Backward needs of it.
  int64_t M_last = 0;
  std::vector<float> x, z, ybn, mean, var, dybn, dz, dscale_shift;
  std::vector<float> dw_unused, db_unused;  // for skipped dw/db outputs
  ShapeCache<Entry> cache;
  std::mutex mu;

  std::unique_ptr<Entry> Build(int64_t M) {
    auto e = std::make_unique<Entry>();
    const memory::desc x_md = Plain(M, K), z_md = Plain(M, N),
                       w_md = Plain(N, K), b_md = Vec(N);
    e->x = Bind(x_md, eng), e->z = Bind(z_md, eng), e->ybn = Bind(z_md, eng);
    e->out = Bind(z_md, eng), e->d_out = Bind(z_md, eng);
    e->dybn = Bind(z_md, eng), e->dz = Bind(z_md, eng);
    e->dx = Bind(x_md, eng), e->dw = Bind(w_md, eng), e->db = Bind(b_md, eng);
    const memory w_mem = Bind(w_md, eng, w.data());
    const memory b_mem = Bind(b_md, eng, b.data());
    const dnnl::primitive_attr attr = UserScratchpadAttr();
    Scratchpad sp;
    std::vector<dnnl::primitive_desc> pds;
    auto& steps = e->steps;

    const dnnl::inner_product_forward::primitive_desc ip_pd(
        dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_training,
                                          x_md, w_md, b_md, z_md),
        attr, eng);
    CheckLayout(kTrainOp, "x", ip_pd.src_desc(), x_md);
    CheckLayout(kTrainOp, "w", ip_pd.weights_desc(), w_md);
    CheckLayout(kTrainOp, "z", ip_pd.dst_desc(), z_md);
    AddStep<dnnl::inner_product_forward>(steps, pds, sp, ip_pd,
                                         {{DNNL_ARG_SRC, e->x},
                                          {DNNL_ARG_WEIGHTS, w_mem},
                                          {DNNL_ARG_BIAS, b_mem},
                                          {DNNL_ARG_DST, e->z}});

    const auto flags = dnnl::normalization_flags::use_scale_shift;
    const dnnl::batch_normalization_forward::primitive_desc bn_pd(
        dnnl::batch_normalization_forward::desc(
            dnnl::prop_kind::forward_training, z_md, float(eps), flags),
        attr, eng);
    CheckLayout(kTrainOp, "batchnorm data", bn_pd.dst_desc(), z_md);
    const memory ss_mem = Bind(bn_pd.weights_desc(), eng, scale_shift.data());
    // mean and var are [N], sized at Create, so they never move: bound once.
    const memory mean_mem = Bind(bn_pd.mean_desc(), eng, mean.data());
    const memory var_mem = Bind(bn_pd.variance_desc(), eng, var.data());
    Args bn_args{{DNNL_ARG_SRC, e->z},
                 {DNNL_ARG_DST, e->ybn},
                 {DNNL_ARG_SCALE_SHIFT, ss_mem},
                 {DNNL_ARG_MEAN, mean_mem},
                 {DNNL_ARG_VARIANCE, var_mem}};
    memory workspace;
    if (bn_pd.workspace_desc().get_size() > 0) {
      workspace = memory(bn_pd.workspace_desc(), eng);
      bn_args[DNNL_ARG_WORKSPACE] = workspace;
    }
    AddStep<dnnl::batch_normalization_forward>(steps, pds, sp, bn_pd, bn_args);

    const dnnl::eltwise_forward::primitive_desc relu_pd(
        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training,
                                    dnnl::algorithm::eltwise_relu, z_md, 0.0f,
                                    0.0f),
        attr, eng);
    CheckLayout(kTrainOp, "relu data", relu_pd.dst_desc(), z_md);
    AddStep<dnnl::eltwise_forward>(
        steps, pds, sp, relu_pd,
        {{DNNL_ARG_SRC, e->ybn}, {DNNL_ARG_DST, e->out}});

    const dnnl::eltwise_backward::primitive_desc relu_bwd_pd(
        dnnl::eltwise_backward::desc(dnnl::algorithm::eltwise_relu, z_md, z_md,
                                     0.0f, 0.0f),
        attr, eng, relu_pd);
    CheckLayout(kTrainOp, "relu gradient", relu_bwd_pd.diff_src_desc(), z_md);
    AddStep<dnnl::eltwise_backward>(steps, pds, sp, relu_bwd_pd,
                                    {{DNNL_ARG_SRC, e->ybn},
                                     {DNNL_ARG_DIFF_DST, e->d_out},
                                     {DNNL_ARG_DIFF_SRC, e->dybn}});

    const dnnl::batch_normalization_backward::primitive_desc bn_bwd_pd(
        dnnl::batch_normalization_backward::desc(dnnl::prop_kind::backward,
                                                 z_md, z_md, float(eps), flags),
        attr, eng, bn_pd);
    CheckLayout(kTrainOp, "batchnorm gradient", bn_bwd_pd.diff_src_desc(),
                z_md);
    Args bn_bwd_args{
        {DNNL_ARG_SRC, e->z},
        {DNNL_ARG_MEAN, mean_mem},
        {DNNL_ARG_VARIANCE, var_mem},
        {DNNL_ARG_DIFF_DST, e->dybn},
        {DNNL_ARG_SCALE_SHIFT, ss_mem},
        {DNNL_ARG_DIFF_SRC, e->dz},
        {DNNL_ARG_DIFF_SCALE_SHIFT,
         Bind(bn_bwd_pd.diff_weights_desc(), eng, dscale_shift.data())}};
    if (workspace) bn_bwd_args[DNNL_ARG_WORKSPACE] = workspace;
    AddStep<dnnl::batch_normalization_backward>(steps, pds, sp, bn_bwd_pd,
                                                std::move(bn_bwd_args));

    const dnnl::inner_product_backward_data::primitive_desc ip_bwd_data_pd(
        dnnl::inner_product_backward_data::desc(x_md, w_md, z_md), attr, eng,
        ip_pd);
    CheckLayout(kTrainOp, "dx", ip_bwd_data_pd.diff_src_desc(), x_md);
    CheckLayout(kTrainOp, "w (backward)", ip_bwd_data_pd.weights_desc(), w_md);
    AddStep<dnnl::inner_product_backward_data>(steps, pds, sp, ip_bwd_data_pd,
                                               {{DNNL_ARG_DIFF_DST, e->dz},
                                                {DNNL_ARG_WEIGHTS, w_mem},
                                                {DNNL_ARG_DIFF_SRC, e->dx}});

    const dnnl::inner_product_backward_weights::primitive_desc ip_bwd_w_pd(
        dnnl::inner_product_backward_weights::desc(x_md, w_md, b_md, z_md),
        attr, eng, ip_pd);
    CheckLayout(kTrainOp, "dw", ip_bwd_w_pd.diff_weights_desc(), w_md);
    CheckLayout(kTrainOp, "db", ip_bwd_w_pd.diff_bias_desc(), b_md);
    AddStep<dnnl::inner_product_backward_weights>(
        steps, pds, sp, ip_bwd_w_pd,
        {{DNNL_ARG_SRC, e->x},
         {DNNL_ARG_DIFF_DST, e->dz},
         {DNNL_ARG_DIFF_WEIGHTS, e->dw},
         {DNNL_ARG_DIFF_BIAS, e->db}});

    e->scratchpad = AttachScratchpad(steps, pds, sp, eng);
    return e;
  }

  Entry* Get(int64_t M, int threads) {
    Entry* e = cache.Find(M, threads);
    return e ? e : cache.Insert(M, threads, Build(M));
  }
};

TrainBlock::TrainBlock(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrainBlock::~TrainBlock() = default;

Result<std::unique_ptr<TrainBlock>> TrainBlock::Create(const BlockParams& p) {
  BALLAST_RETURN_IF_ERROR(CheckParams(kTrainOp, p, /*need_stats=*/false));
  std::unique_ptr<Impl> impl;
  Status s = Guarded(kTrainOp, [&]() -> Status {
    impl = std::make_unique<Impl>();
    Impl& m = *impl;
    const size_t N = size_t(p.N), NK = size_t(p.N) * size_t(p.K);
    m.K = p.K, m.N = p.N, m.eps = p.eps;
    m.has_bias = p.b != nullptr;
    m.affine = p.gamma != nullptr || p.beta != nullptr;
    m.w.assign(p.w, p.w + NK);
    m.b.assign(N, 0.0f);
    if (p.b) std::copy(p.b, p.b + N, m.b.begin());
    m.scale_shift.resize(2 * N);
    for (size_t n = 0; n < N; ++n) {
      m.scale_shift[n] = p.gamma ? p.gamma[n] : 1.0f;
      m.scale_shift[N + n] = p.beta ? p.beta[n] : 0.0f;
    }
    m.running_mean.assign(N, 0.0f);
    m.running_var.assign(N, 1.0f);
    if (p.running_mean)
      std::copy(p.running_mean, p.running_mean + N, m.running_mean.begin());
    if (p.running_var)
      std::copy(p.running_var, p.running_var + N, m.running_var.begin());
    m.mean.resize(N), m.var.resize(N), m.dscale_shift.resize(2 * N);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return std::unique_ptr<TrainBlock>(new TrainBlock(std::move(impl)));
}

Status TrainBlock::Forward(const float* x, int64_t M, float* out, int threads) {
  Impl& m = *impl_;
  if (M < 2) {
    return InvalidArgument(
        std::string(kTrainOp) +
        ": expected more than 1 value per channel when training, got a batch "
        "of M = " +
        std::to_string(M) + " rows");
  }
  if (!x || !out) {
    return InvalidArgument(std::string(kTrainOp) + ": x or out is null");
  }
  BALLAST_RETURN_IF_ERROR(CheckThreads(kTrainOp, threads));
  std::lock_guard<std::mutex> lock(m.mu);
  ThreadsGuard guard(threads);
  return Guarded(kTrainOp, [&]() -> Status {
    m.M_last = 0;  // until this batch is complete
    const size_t MK = size_t(M) * size_t(m.K), MN = size_t(M) * size_t(m.N);
    if (m.x.size() < MK) m.x.resize(MK);
    if (m.z.size() < MN) {
      m.z.resize(MN), m.ybn.resize(MN), m.dybn.resize(MN), m.dz.resize(MN);
    }
    std::copy(x, x + MK, m.x.begin());
    Impl::Entry* e = m.Get(M, threads);
    e->x.set_data_handle(m.x.data());
    e->z.set_data_handle(m.z.data());
    e->ybn.set_data_handle(m.ybn.data());
    e->out.set_data_handle(out);
    Execute(e->steps, Impl::kIpFwd, 3, m.strm);
    // oneDNN's variance is the biased σ²_B (it normalizes with it, as
    // PyTorch does); PyTorch's running_var takes the unbiased σ²_B·M/(M−1).
    const double mo = m.momentum, unbias = double(M) / double(M - 1);
    for (int64_t n = 0; n < m.N; ++n) {
      m.running_mean[n] =
          float((1 - mo) * double(m.running_mean[n]) + mo * double(m.mean[n]));
      m.running_var[n] = float((1 - mo) * double(m.running_var[n]) +
                               mo * double(m.var[n]) * unbias);
    }
    m.M_last = M;
    return Status::Ok();
  });
}

Status TrainBlock::Backward(const float* d_out, float* dx, float* dw, float* db,
                            float* dgamma, float* dbeta, int threads) {
  Impl& m = *impl_;
  if (!d_out) return InvalidArgument(std::string(kTrainOp) + ": d_out is null");
  BALLAST_RETURN_IF_ERROR(CheckThreads(kTrainOp, threads));
  std::lock_guard<std::mutex> lock(m.mu);
  if (m.M_last == 0) {
    return FailedPrecondition(std::string(kTrainOp) +
                              ": Backward needs a successful Forward first");
  }
  ThreadsGuard guard(threads);
  return Guarded(kTrainOp, [&]() -> Status {
    const int64_t M = m.M_last;
    const size_t N = size_t(m.N);
    Impl::Entry* e = m.Get(M, threads);
    e->x.set_data_handle(m.x.data());
    e->z.set_data_handle(m.z.data());
    e->ybn.set_data_handle(m.ybn.data());
    e->d_out.set_data_handle(const_cast<float*>(d_out));
    e->dybn.set_data_handle(m.dybn.data());
    e->dz.set_data_handle(m.dz.data());
    Execute(e->steps, Impl::kReluBwd, 2, m.strm);
    if (dgamma) std::copy_n(m.dscale_shift.begin(), N, dgamma);
    if (dbeta) std::copy_n(m.dscale_shift.begin() + N, N, dbeta);
    if (dx) {
      e->dx.set_data_handle(dx);
      Execute(e->steps, Impl::kIpBwdData, 1, m.strm);
    }
    if (dw || db) {
      if (!dw) m.dw_unused.resize(N * size_t(m.K)), dw = m.dw_unused.data();
      if (!db) m.db_unused.resize(N), db = m.db_unused.data();
      e->dw.set_data_handle(dw);
      e->db.set_data_handle(db);
      Execute(e->steps, Impl::kIpBwdWeights, 1, m.strm);
    }
    return Status::Ok();
  });
}

const float* TrainBlock::running_mean() const {
  return impl_->running_mean.data();
}
const float* TrainBlock::running_var() const {
  return impl_->running_var.data();
}
Status TrainBlock::set_momentum(double momentum) {
  if (!(momentum >= 0 && momentum <= 1)) {
    return InvalidArgument(std::string(kTrainOp) + ": momentum = " +
                           std::to_string(momentum) + " must lie in [0, 1]");
  }
  impl_->momentum = momentum;
  return Status::Ok();
}
double TrainBlock::momentum() const { return impl_->momentum; }
float* TrainBlock::w() { return impl_->w.data(); }
float* TrainBlock::b() { return impl_->has_bias ? impl_->b.data() : nullptr; }
float* TrainBlock::gamma() {
  return impl_->affine ? impl_->scale_shift.data() : nullptr;
}
float* TrainBlock::beta() {
  return impl_->affine ? impl_->scale_shift.data() + impl_->N : nullptr;
}
int64_t TrainBlock::K() const { return impl_->K; }
int64_t TrainBlock::N() const { return impl_->N; }

}  // namespace ballast::ops::onednn

#else  // !BALLAST_HAVE_ONEDNN: every entry point reports the missing backend.

namespace ballast::ops::onednn {
namespace {
Status NotBuilt(const char* op) {
  return Unimplemented(std::string(op) +
                       ": built without oneDNN (BALLAST_WITH_ONEDNN=OFF)");
}
}  // namespace

bool Available() { return false; }

struct EvalBlock::Impl {};
EvalBlock::EvalBlock(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EvalBlock::~EvalBlock() = default;
Result<std::unique_ptr<EvalBlock>> EvalBlock::Create(const BlockParams&,
                                                     EvalMode) {
  return NotBuilt("onednn eval block");
}
Status EvalBlock::Run(const float*, int64_t, float*, int) {
  return NotBuilt("onednn eval block");
}
EvalMode EvalBlock::mode() const { return EvalMode::kFolded; }
int64_t EvalBlock::K() const { return 0; }
int64_t EvalBlock::N() const { return 0; }

struct TrainBlock::Impl {};
TrainBlock::TrainBlock(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrainBlock::~TrainBlock() = default;
Result<std::unique_ptr<TrainBlock>> TrainBlock::Create(const BlockParams&) {
  return NotBuilt("onednn train block");
}
Status TrainBlock::Forward(const float*, int64_t, float*, int) {
  return NotBuilt("onednn train block");
}
Status TrainBlock::Backward(const float*, float*, float*, float*, float*,
                            float*, int) {
  return NotBuilt("onednn train block");
}
const float* TrainBlock::running_mean() const { return nullptr; }
const float* TrainBlock::running_var() const { return nullptr; }
Status TrainBlock::set_momentum(double) {
  return NotBuilt("onednn train block");
}
double TrainBlock::momentum() const { return 0.0; }
float* TrainBlock::w() { return nullptr; }
float* TrainBlock::b() { return nullptr; }
float* TrainBlock::gamma() { return nullptr; }
float* TrainBlock::beta() { return nullptr; }
int64_t TrainBlock::K() const { return 0; }
int64_t TrainBlock::N() const { return 0; }

}  // namespace ballast::ops::onednn

#endif  // BALLAST_HAVE_ONEDNN
