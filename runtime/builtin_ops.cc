// The built-in ops: schemas (attributes, parameters, shape inference and
// validation) and their kernels on the hwy, onednn and ref backends.
#include "runtime/builtin_ops.h"

#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "ballast/registry.h"
#include "ops/block/block_kernels.h"
#include "ops/linear/gemm.h"
#include "ops/linear/narrow_linear.h"
#include "ops/onednn/onednn_block.h"
#include "ops/ref/activation.h"
#include "ops/ref/batchnorm.h"
#include "ops/ref/linear.h"

namespace ballast::internal {
namespace {

std::string Str(int64_t v) { return std::to_string(v); }

Status CheckParamShape(const Node& node, const std::string& param,
                       const Shape& expected, const std::string& why) {
  const Tensor& t = node.Param(param);
  if (t.empty()) {
    return InvalidArgument("parameter '" + param + "' is missing (" + why +
                           ")");
  }
  if (!(t.shape() == expected)) {
    return InvalidArgument(param + " has shape " + t.shape().ToString() +
                           "; expected " + expected.ToString() + " " + why);
  }
  return Status::Ok();
}

// --- linear -----------------------------------------------------------------

Result<int64_t> InferLinear(const Node& n, int64_t in) {
  const int64_t out = n.GetInt("out_features");
  const int64_t declared_in = n.GetInt("in_features");
  if (out < 1) {
    return InvalidArgument("out_features = " + Str(out) + " must be >= 1");
  }
  if (declared_in != 0 && declared_in != in) {
    return InvalidArgument("input has " + Str(in) +
                           " features, in_features says " + Str(declared_in));
  }
  BALLAST_RETURN_IF_ERROR(CheckParamShape(
      n, "weight", Shape{out, in}, "for " + Str(in) + " input features"));
  const bool bias = n.GetBool("bias", true);
  if (bias) {
    BALLAST_RETURN_IF_ERROR(
        CheckParamShape(n, "bias", Shape{out}, "(bias = true)"));
  } else if (!n.Param("bias").empty()) {
    return InvalidArgument("has a bias tensor but bias = false");
  }
  const std::string act = n.GetString("activation", "none");
  if (act != "none" && act != "relu" && act != "leaky_relu") {
    return InvalidArgument("activation '" + act +
                           "' is not one of none, relu, leaky_relu");
  }
  return out;
}

ops::Epilogue LinearEpilogue(const Node& n) {
  const std::string act = n.GetString("activation", "none");
  if (act == "relu") return ops::Epilogue::kBiasRelu;
  if (act == "leaky_relu") return ops::Epilogue::kBiasLeakyRelu;
  return ops::Epilogue::kBias;
}

class HwyLinear : public OpKernel {
 public:
  HwyLinear(const Node& n, const KernelContext& ctx)
      : K_(ctx.in_features),
        N_(ctx.out_features),
        threads_(ctx.threads),
        epilogue_(LinearEpilogue(n)),
        slope_(float(n.GetFloat("negative_slope", 0.01))),
        bias_(size_t(N_), 0.0f) {
    const Tensor& w = n.Param("weight");
    // Few outputs (a classifier's last layer): dot products over W as torch
    // keeps it, [N, K], instead of a GEMM panel mostly padding (see
    // ops/linear/narrow_linear.h).
    if (ops::NarrowLinearPays(N_, K_)) {
      w_rows_.assign(w.data(), w.data() + N_ * K_);
    } else {
      packed_ = ops::PackB(w.data(), K_, N_, 1, K_, ctx.threads);
    }
    const Tensor& b = n.Param("bias");
    if (!b.empty()) std::memcpy(bias_.data(), b.data(), b.nbytes());
  }
  Status Run(const float* x, int64_t rows, float* y) const override {
    if (!w_rows_.empty()) {
      return ops::NarrowLinear({x, K_, rows, w_rows_.data(), N_, K_,
                                bias_.data(), y, N_, slope_, threads_},
                               epilogue_);
    }
    ops::EpilogueArgs ep;
    ep.bias = bias_.data();
    ep.slope = slope_;
    return ops::Gemm({x, K_, 1, rows, y, N_, threads_}, packed_, epilogue_, ep);
  }

 private:
  int64_t K_, N_;
  int threads_;
  ops::Epilogue epilogue_;
  float slope_;
  std::vector<float> bias_;
  ops::PackedB packed_;
  std::vector<float> w_rows_;  // W [N, K] for NarrowLinear, or empty
};

// oneDNN objects serialize concurrent calls (see onednn_block.h); the
// session gives each concurrent run its own object through a small pool.
class OnednnLinear : public OpKernel {
 public:
  static Result<std::unique_ptr<OpKernel>> Make(const Node& n,
                                                const KernelContext& ctx) {
    auto k = std::unique_ptr<OnednnLinear>(new OnednnLinear(n, ctx));
    BALLAST_RETURN_IF_ERROR(k->Grow());  // create one object up front
    return std::unique_ptr<OpKernel>(std::move(k));
  }
  Status Run(const float* x, int64_t rows, float* y) const override {
    std::unique_ptr<ops::onednn::EvalBlock> block;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        block = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!block) {
      BALLAST_ASSIGN_OR_RETURN(block, Create());
    }
    Status s = block->Run(x, rows, y, threads_);
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(block));
    return s;
  }

 private:
  OnednnLinear(const Node& n, const KernelContext& ctx)
      : K_(ctx.in_features),
        N_(ctx.out_features),
        threads_(ctx.threads),
        relu_(n.GetString("activation", "none") == "relu"),
        w_(n.Param("weight").span().begin(), n.Param("weight").span().end()),
        b_(size_t(N_), 0.0f) {
    const Tensor& b = n.Param("bias");
    if (!b.empty()) std::memcpy(b_.data(), b.data(), b.nbytes());
  }
  Result<std::unique_ptr<ops::onednn::EvalBlock>> Create() const {
    // The folded inner product without running statistics is a plain
    // Linear; the ReLU only when fused into this node.
    ops::onednn::BlockParams p{w_.data(), b_.data(), nullptr, nullptr,
                               nullptr,   nullptr,   K_,      N_};
    p.relu = relu_;
    return ops::onednn::EvalBlock::Create(p, ops::onednn::EvalMode::kFolded);
  }
  Status Grow() {
    BALLAST_ASSIGN_OR_RETURN(auto block, Create());
    free_.push_back(std::move(block));
    return Status::Ok();
  }

  int64_t K_, N_;
  int threads_;
  bool relu_;
  std::vector<float> w_, b_;
  mutable std::mutex mu_;
  mutable std::vector<std::unique_ptr<ops::onednn::EvalBlock>> free_;
};

class RefLinear : public OpKernel {
 public:
  RefLinear(const Node& n, const KernelContext& ctx)
      : node_(n), K_(ctx.in_features), N_(ctx.out_features) {}
  Status Run(const float* x, int64_t rows, float* y) const override {
    const Tensor& b = node_.Param("bias");
    ref::linear_forward(x, node_.Param("weight").data(),
                        b.empty() ? nullptr : b.data(), y, rows, K_, N_);
    const std::string act = node_.GetString("activation", "none");
    if (act == "relu") ref::relu_forward(y, y, rows * N_);
    if (act == "leaky_relu") {
      ref::leaky_relu_forward(y, y, rows * N_,
                              node_.GetFloat("negative_slope", 0.01));
    }
    return Status::Ok();
  }

 private:
  Node node_;  // shares the parameter storage
  int64_t K_, N_;
};

// --- batchnorm1d
// --------------------------------------------------------------

Result<int64_t> InferBatchNorm(const Node& n, int64_t in) {
  const int64_t declared = n.GetInt("num_features");
  if (declared != 0 && declared != in) {
    return InvalidArgument("input has " + Str(in) +
                           " features, num_features says " + Str(declared));
  }
  const double eps = n.GetFloat("eps", 1e-5);
  if (!(eps > 0) || !std::isfinite(eps)) {
    return InvalidArgument("eps = " + std::to_string(eps) + " must be > 0");
  }
  const double momentum = n.GetFloat("momentum", 0.1);
  if (momentum > 1.0 || std::isnan(momentum)) {
    return InvalidArgument("momentum = " + std::to_string(momentum) +
                           " must be in [0, 1] (or negative for None)");
  }
  if (n.GetBool("affine", true)) {
    BALLAST_RETURN_IF_ERROR(
        CheckParamShape(n, "weight", Shape{in}, "(affine = true)"));
    BALLAST_RETURN_IF_ERROR(
        CheckParamShape(n, "bias", Shape{in}, "(affine = true)"));
  }
  if (n.GetBool("track_running_stats", true)) {
    BALLAST_RETURN_IF_ERROR(CheckParamShape(n, "running_mean", Shape{in},
                                            "(track_running_stats = true)"));
    BALLAST_RETURN_IF_ERROR(CheckParamShape(n, "running_var", Shape{in},
                                            "(track_running_stats = true)"));
    for (float v : n.Param("running_var").span()) {
      if (!(v >= 0)) {
        return InvalidArgument("running_var holds " + std::to_string(v) +
                               "; variances must be >= 0");
      }
    }
  }
  return in;
}

bool BatchDependentBatchNorm(const Node& n) {
  return !n.GetBool("track_running_stats", true);
}

// Evaluation BN as y = x·s + t per column; with track_running_stats = false
// the batch's own (biased) statistics are computed on every call.
class HwyBatchNorm : public OpKernel {
 public:
  HwyBatchNorm(const Node& n, const KernelContext& ctx)
      : N_(ctx.in_features),
        threads_(ctx.threads),
        eps_(n.GetFloat("eps")),
        track_(n.GetBool("track_running_stats")),
        gamma_(size_t(N_), 1.0f),
        beta_(size_t(N_), 0.0f),
        scale_(size_t(N_)),
        shift_(size_t(N_)) {
    if (n.GetBool("affine")) {
      std::memcpy(gamma_.data(), n.Param("weight").data(), size_t(N_) * 4);
      std::memcpy(beta_.data(), n.Param("bias").data(), size_t(N_) * 4);
    }
    if (track_) {
      const float* rm = n.Param("running_mean").data();
      const float* rv = n.Param("running_var").data();
      for (int64_t c = 0; c < N_; ++c) {
        const double s = gamma_[size_t(c)] / std::sqrt(double(rv[c]) + eps_);
        scale_[size_t(c)] = float(s);
        shift_[size_t(c)] = float(beta_[size_t(c)] - double(rm[c]) * s);
      }
    }
  }
  Status Run(const float* x, int64_t rows, float* y) const override {
    std::memcpy(y, x, size_t(rows * N_) * sizeof(float));
    if (track_) {
      ops::ScaleShift(y, rows, N_, scale_.data(), shift_.data(), threads_);
      return Status::Ok();
    }
    if (rows < 2) {
      return InvalidArgument(
          "batchnorm1d without running statistics normalizes with the "
          "batch's: expected more than 1 value per channel, got " +
          Str(rows) + " row");
    }
    // Per calling thread, grown once: Run may be called concurrently and
    // allocates nothing in the steady state.
    thread_local std::vector<double> mean, var;
    thread_local std::vector<float> scale, shift;
    mean.resize(size_t(N_)), var.resize(size_t(N_));
    scale.resize(size_t(N_)), shift.resize(size_t(N_));
    ops::ColumnMoments(x, rows, N_, mean.data(), var.data(), threads_);
    for (int64_t c = 0; c < N_; ++c) {
      const double s = gamma_[size_t(c)] / std::sqrt(var[size_t(c)] + eps_);
      scale[size_t(c)] = float(s);
      shift[size_t(c)] = float(beta_[size_t(c)] - mean[size_t(c)] * s);
    }
    ops::ScaleShift(y, rows, N_, scale.data(), shift.data(), threads_);
    return Status::Ok();
  }

 private:
  int64_t N_;
  int threads_;
  double eps_;
  bool track_;
  std::vector<float> gamma_, beta_, scale_, shift_;
};

class RefBatchNorm : public OpKernel {
 public:
  RefBatchNorm(const Node& n, const KernelContext& ctx)
      : node_(n), N_(ctx.in_features) {}
  Status Run(const float* x, int64_t rows, float* y) const override {
    const bool affine = node_.GetBool("affine");
    const float* g = affine ? node_.Param("weight").data() : nullptr;
    const float* b = affine ? node_.Param("bias").data() : nullptr;
    if (node_.GetBool("track_running_stats")) {
      ref::batchnorm_forward_eval(x, g, b, node_.Param("running_mean").data(),
                                  node_.Param("running_var").data(), y, rows,
                                  N_, node_.GetFloat("eps"));
      return Status::Ok();
    }
    ref::BatchNormOptions opt;
    opt.eps = node_.GetFloat("eps");
    opt.track_running_stats = false;
    return ref::batchnorm_forward_train<float>(x, g, b, y, nullptr, nullptr, {},
                                               rows, N_, opt);
  }

 private:
  Node node_;
  int64_t N_;
};

// --- elementwise
// ---------------------------------------------------------------

Result<int64_t> InferSame(const Node&, int64_t in) { return in; }

Result<int64_t> InferDropout(const Node& n, int64_t in) {
  const double p = n.GetFloat("p", 0.5);
  if (!(p >= 0.0 && p <= 1.0)) {
    return InvalidArgument("p = " + std::to_string(p) + " must be in [0, 1]");
  }
  return in;
}

Result<int64_t> InferLeaky(const Node& n, int64_t in) {
  if (!std::isfinite(n.GetFloat("negative_slope", 0.01))) {
    return InvalidArgument("negative_slope must be finite");
  }
  return in;
}

// An elementwise kernel from a function (x, y, n).
template <class F>
class Elementwise : public OpKernel {
 public:
  Elementwise(int64_t width, F f) : width_(width), f_(f) {}
  Status Run(const float* x, int64_t rows, float* y) const override {
    f_(x, y, rows * width_);
    return Status::Ok();
  }

 private:
  int64_t width_;
  F f_;
};

template <class F>
KernelSpec ElementwiseKernel(const char* backend, F make_fn) {
  return {
      backend, nullptr,
      [make_fn](const Node& n,
                const KernelContext& ctx) -> Result<std::unique_ptr<OpKernel>> {
        auto fn = make_fn(n, ctx);
        return std::unique_ptr<OpKernel>(
            new Elementwise<decltype(fn)>(ctx.in_features, fn));
      }};
}

template <class K>
KernelSpec SimpleKernel(const char* backend) {
  return {backend, nullptr,
          [](const Node& n,
             const KernelContext& ctx) -> Result<std::unique_ptr<OpKernel>> {
            return std::unique_ptr<OpKernel>(new K(n, ctx));
          }};
}

Status AddOps(Registry& r) {
  BALLAST_RETURN_IF_ERROR(r.RegisterOp(
      {"linear",
       "y = x·Wᵀ + b (torch.nn.Linear), optionally fused with an activation",
       {{"in_features", AttrType::kInt, int64_t{0}, "0: taken from the input"},
        {"out_features", AttrType::kInt, int64_t{0}, "output width (>= 1)"},
        {"bias", AttrType::kBool, true, "has a bias"},
        {"activation", AttrType::kString, std::string("none"),
         "none | relu | leaky_relu (set by the fuse pass)"},
        {"negative_slope", AttrType::kFloat, 0.01, "for leaky_relu"}},
       {{"weight"}, {"bias", true}},
       InferLinear,
       nullptr}));
  BALLAST_RETURN_IF_ERROR(r.RegisterOp(
      {"batchnorm1d",
       "BatchNorm1d in evaluation: running statistics (batch statistics when "
       "track_running_stats = false)",
       {{"num_features", AttrType::kInt, int64_t{0}, "0: taken from the input"},
        {"eps", AttrType::kFloat, 1e-5, "added to the variance"},
        {"momentum", AttrType::kFloat, 0.1,
         "running-statistics update in training; < 0 means None"},
        {"affine", AttrType::kBool, true, "has γ (weight) and β (bias)"},
        {"track_running_stats", AttrType::kBool, true,
         "has running_mean and running_var"}},
       {{"weight", true},
        {"bias", true},
        {"running_mean", true},
        {"running_var", true}},
       InferBatchNorm,
       BatchDependentBatchNorm}));
  for (const char* op : {"relu", "tanh", "sigmoid", "identity"}) {
    BALLAST_RETURN_IF_ERROR(r.RegisterOp(
        {op, std::string(op) + ", elementwise", {}, {}, InferSame, nullptr}));
  }
  BALLAST_RETURN_IF_ERROR(r.RegisterOp(
      {"leaky_relu",
       "x where x > 0, else negative_slope·x",
       {{"negative_slope", AttrType::kFloat, 0.01, "slope for x <= 0"}},
       {},
       InferLeaky,
       nullptr}));
  BALLAST_RETURN_IF_ERROR(r.RegisterOp(
      {"dropout",
       "inverted dropout; the identity at inference",
       {{"p", AttrType::kFloat, 0.5, "drop probability in [0, 1]"}},
       {},
       InferDropout,
       nullptr}));
  return Status::Ok();
}

Status AddKernels(Registry& r) {
  // linear: hwy first (it is the faster here), then onednn, then ref.
  BALLAST_RETURN_IF_ERROR(
      r.RegisterKernel("linear", SimpleKernel<HwyLinear>("hwy")));
  BALLAST_RETURN_IF_ERROR(r.RegisterKernel(
      "linear", {"onednn",
                 [](const Node& n, const KernelContext&) {
                   const std::string act = n.GetString("activation", "none");
                   return ops::onednn::Available() &&
                          (act == "none" || act == "relu");
                 },
                 OnednnLinear::Make}));
  BALLAST_RETURN_IF_ERROR(
      r.RegisterKernel("linear", SimpleKernel<RefLinear>("ref")));
  BALLAST_RETURN_IF_ERROR(
      r.RegisterKernel("batchnorm1d", SimpleKernel<HwyBatchNorm>("hwy")));
  BALLAST_RETURN_IF_ERROR(
      r.RegisterKernel("batchnorm1d", SimpleKernel<RefBatchNorm>("ref")));
  BALLAST_RETURN_IF_ERROR(r.RegisterKernel(
      "relu", ElementwiseKernel("hwy", [](const Node&, const KernelContext& c) {
        const int t = c.threads;
        return
            [t](const float* x, float* y, int64_t n) { ops::Relu(x, y, n, t); };
      })));
  BALLAST_RETURN_IF_ERROR(r.RegisterKernel(
      "relu", ElementwiseKernel("ref", [](const Node&, const KernelContext&) {
        return [](const float* x, float* y, int64_t n) {
          ref::relu_forward(x, y, n);
        };
      })));
  BALLAST_RETURN_IF_ERROR(r.RegisterKernel(
      "leaky_relu",
      ElementwiseKernel("ref", [](const Node& node, const KernelContext&) {
        const double slope = node.GetFloat("negative_slope");
        return [slope](const float* x, float* y, int64_t n) {
          ref::leaky_relu_forward(x, y, n, slope);
        };
      })));
  BALLAST_RETURN_IF_ERROR(r.RegisterKernel(
      "tanh", ElementwiseKernel("ref", [](const Node&, const KernelContext&) {
        return [](const float* x, float* y, int64_t n) {
          ref::tanh_forward(x, y, n);
        };
      })));
  BALLAST_RETURN_IF_ERROR(r.RegisterKernel(
      "sigmoid",
      ElementwiseKernel("ref", [](const Node&, const KernelContext&) {
        return [](const float* x, float* y, int64_t n) {
          ref::sigmoid_forward(x, y, n);
        };
      })));
  for (const char* op : {"identity", "dropout"}) {
    BALLAST_RETURN_IF_ERROR(r.RegisterKernel(
        op, ElementwiseKernel("ref", [](const Node&, const KernelContext&) {
          return [](const float* x, float* y, int64_t n) {
            std::memcpy(y, x, size_t(n) * sizeof(float));
          };
        })));
  }
  return Status::Ok();
}

}  // namespace

Status RegisterBuiltins(Registry& registry) {
  BALLAST_RETURN_IF_ERROR(AddOps(registry));
  return AddKernels(registry);
}

}  // namespace ballast::internal
