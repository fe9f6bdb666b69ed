#include "ballast/diagnose.h"

#include <cmath>
#include <string>

#include "ballast/init.h"
#include "ballast/model.h"
#include "ballast/session.h"
#include "runtime/number_text.h"
#include "runtime/train_layers.h"

namespace ballast {
using internal::BuildTrainLayers;
using internal::ParseWhole;

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kStable:
      return "stable";
    case Verdict::kVanishing:
      return "vanishing";
    case Verdict::kExploding:
      return "exploding";
    case Verdict::kSymmetric:
      return "symmetric";
  }
  return "?";
}

namespace {

struct Moments {
  double mean = 0, std = 0;
  bool finite = true;
};

Moments Measure(const float* v, int64_t n) {
  Moments m;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) {
      m.finite = false;
      return m;
    }
    s += v[i];
  }
  m.mean = s / double(n);
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += (v[i] - m.mean) * (v[i] - m.mean);
  m.std = std::sqrt(ss / double(n));
  return m;
}

// Activation name and slope from "leaky_relu:A" etc.
Status ParseAct(const std::string& act, std::string& name, double& slope) {
  name = act, slope = 0.01;
  if (act.rfind("leaky_relu", 0) == 0) {
    name = "leaky_relu";
    if (act.size() > 10) {
      if (act[10] != ':')
        return InvalidArgument("--act '" + act + "': use leaky_relu:A");
      char* end = nullptr;
      slope = std::strtod(act.c_str() + 11, &end);
      if (*end != '\0' || !std::isfinite(slope)) {
        return InvalidArgument("--act '" + act + "': slope is not a number");
      }
    }
  } else if (act != "relu" && act != "tanh" && act != "sigmoid" &&
             act != "identity") {
    return InvalidArgument(
        "--act '" + act +
        "' is not one of relu, tanh, sigmoid, leaky_relu:A, identity");
  }
  return Status::Ok();
}

Status InitWeight(Tensor& w, const DiagnoseOptions& o, const std::string& act,
                  double slope, Generator& gen) {
  const std::string& s = o.init;
  init::Nonlinearity nl = init::Nonlinearity::kLinear;
  if (act == "relu") nl = init::Nonlinearity::kRelu;
  if (act == "tanh") nl = init::Nonlinearity::kTanh;
  if (act == "sigmoid") nl = init::Nonlinearity::kSigmoid;
  if (act == "leaky_relu") nl = init::Nonlinearity::kLeakyRelu;
  // The number after "normal:" or "uniform:": finite, >= 0, nothing after.
  auto number = [&](size_t at, double* v) -> Status {
    if (!ParseWhole(std::string_view(s).substr(at), v) || *v < 0) {
      return InvalidArgument("--init '" + s + "': '" + s.substr(at) +
                             "' is not a number >= 0");
    }
    return Status::Ok();
  };
  double v = 0;
  if (s == "zeros") return init::zeros(w);
  if (s.rfind("normal:", 0) == 0) {
    BALLAST_RETURN_IF_ERROR(number(7, &v));
    return init::normal(w, gen, 0.0, v);
  }
  if (s.rfind("uniform:", 0) == 0) {
    BALLAST_RETURN_IF_ERROR(number(8, &v));
    return init::uniform(w, gen, -v, v);
  }
  if (s == "xavier") return init::xavier_normal(w, gen, o.gain.value_or(1.0));
  if (s == "orthogonal") return init::orthogonal(w, gen, o.gain.value_or(1.0));
  if (s == "kaiming") {
    if (o.gain) {
      // std = gain/√fan_in, as kaiming_normal computes it.
      return init::normal(w, gen, 0.0, *o.gain / std::sqrt(double(w.dim(1))));
    }
    return init::kaiming_normal(
        w, gen, nl == init::Nonlinearity::kLeakyRelu ? slope : 0.0,
        init::FanMode::kFanIn, nl);
  }
  if (s == "default") {
    Tensor none;
    return init::linear_default(w, none, gen);
  }
  return InvalidArgument(
      "--init '" + s +
      "' is not one of zeros, normal:STD, uniform:A, xavier, kaiming, "
      "default, orthogonal");
}

// True when all units (columns) of every row are equal.
bool UnitsIdentical(const float* v, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 1; c < cols; ++c) {
      if (v[r * cols + c] != v[r * cols]) return false;
    }
  }
  return true;
}

}  // namespace

Result<Diagnosis> Diagnose(const DiagnoseOptions& o) {
  if (o.depth < 1 || o.depth > 10000) {
    return InvalidArgument("--depth " + std::to_string(o.depth) +
                           " must be in [1, 10000]");
  }
  // Every layer keeps its weights (width²) and activations (batch × width)
  // for the backward pass: at most 2^28 floats (1 GiB) of each.
  const int64_t kMaxFloats = int64_t{1} << 28;
  if (o.width < 1 || o.width > 65536 || o.batch < 2 || o.batch > kMaxFloats ||
      o.depth * o.width * o.width > kMaxFloats ||
      o.depth * o.batch * o.width > kMaxFloats) {
    return InvalidArgument(
        "--depth " + std::to_string(o.depth) + ", --width " +
        std::to_string(o.width) + ", --batch " + std::to_string(o.batch) +
        ": need width >= 1, batch >= 2, and depth × width² and depth × batch "
        "× width each at most 2^28 floats (1 GiB)");
  }
  if (o.threads < 1 || o.threads > kMaxThreads) {
    return InvalidArgument("diagnose: threads = " + std::to_string(o.threads) +
                           " must be in [1, " + std::to_string(kMaxThreads) +
                           "]");
  }
  std::string act;
  double slope = 0.01;
  BALLAST_RETURN_IF_ERROR(ParseAct(o.act, act, slope));
  Generator gen(o.seed);
  Sequential net(o.width, o.seed);
  for (int i = 0; i < o.depth; ++i) {
    net.Linear(o.width, /*bias=*/o.init == "default");
    if (o.batchnorm) net.BatchNorm1d();
    if (act == "leaky_relu") {
      net.LeakyReLU(slope);
    } else {
      net.Activation(act);
    }
  }
  BALLAST_ASSIGN_OR_RETURN(Graph g, net.Build());
  for (Node& n : g.nodes) {
    if (n.op == "linear")
      BALLAST_RETURN_IF_ERROR(
          InitWeight(n.params["weight"], o, act, slope, gen));
  }
  BALLAST_ASSIGN_OR_RETURN(
      auto layers, BuildTrainLayers(g, /*fuse=*/false, {o.threads, o.batch}));
  const int per_block = o.batchnorm ? 3 : 2;
  const int64_t M = o.batch, N = o.width;
  std::vector<std::vector<float>> outs(layers.size(),
                                       std::vector<float>(size_t(M * N)));
  std::vector<std::vector<float>> grads(layers.size(),
                                        std::vector<float>(size_t(M * N)));
  std::vector<float> x(size_t(M * N)), proj(size_t(M * N));
  gen.FillNormal(x, 0.0, 1.0);
  gen.FillNormal(proj, 0.0, 1.0 / double(M));  // dL/d(out) of L = Σ out ⊙ P / M
  Generator dropout_rng(o.seed);
  const float* in = x.data();
  for (size_t i = 0; i < layers.size(); ++i) {
    BALLAST_RETURN_IF_ERROR(
        layers[i]->Forward(in, M, outs[i].data(), dropout_rng));
    in = outs[i].data();
  }
  const float* dy = proj.data();
  for (size_t i = layers.size(); i-- > 0;) {
    BALLAST_RETURN_IF_ERROR(layers[i]->Backward(dy, grads[i].data(), M));
    dy = grads[i].data();
  }

  Diagnosis d;
  d.options = o;
  // One unit per layer is trivially alike: symmetry needs two to compare.
  bool symmetric = N > 1;
  for (int b = 0; b < o.depth; ++b) {
    const size_t lin = size_t(b * per_block),
                 last = lin + size_t(per_block) - 1;
    LayerStats s;
    s.layer = b + 1;
    const Moments a = Measure(outs[last].data(), M * N);
    const Moments gx = Measure(grads[lin].data(), M * N);
    const Tensor& dw = layers[lin]->params()[0]->grad;
    const Moments gw = Measure(dw.data(), dw.numel());
    s.act_mean = a.finite ? a.mean : NAN;
    s.act_std = a.finite ? a.std : NAN;
    s.grad_std = gx.finite ? gx.std : NAN;
    s.weight_grad_std = gw.finite ? gw.std : NAN;
    if ((!a.finite || !gx.finite || !gw.finite) &&
        d.first_nonfinite_layer == 0) {
      d.first_nonfinite_layer = b + 1;
    }
    if (act == "relu") {
      int64_t dead = 0;
      for (int64_t c = 0; c < N; ++c) {
        bool alive = false;
        for (int64_t m = 0; m < M && !alive; ++m)
          alive = outs[last][size_t(m * N + c)] > 0;
        dead += !alive;
      }
      s.dead_frac = double(dead) / double(N);
    }
    symmetric &= UnitsIdentical(outs[last].data(), M, N);
    d.layers.push_back(s);
  }
  const LayerStats& first = d.layers.front();
  const LayerStats& last = d.layers.back();
  d.act_ratio = last.act_std / first.act_std;
  d.grad_ratio = first.grad_std / last.grad_std;
  // After an overflow the later layers read NaN/Inf (or zeros behind a
  // ReLU): the ratio that describes the run is the overflow itself.
  if (d.first_nonfinite_layer > 0) d.act_ratio = INFINITY;
  if (symmetric) {
    d.verdict = Verdict::kSymmetric;
    d.explanation =
        "every unit of every layer computes the same value: the weights cannot "
        "break the symmetry, so the units can never learn different features";
  } else if (d.first_nonfinite_layer > 0) {
    d.verdict = Verdict::kExploding;
    d.explanation = "values overflowed to Inf/NaN at layer " +
                    std::to_string(d.first_nonfinite_layer);
  } else if (!(d.act_ratio <= 4.0)) {
    d.verdict = Verdict::kExploding;
    d.explanation = "the activation std grows with depth";
  } else if (!(d.act_ratio >= 0.25)) {
    d.verdict = Verdict::kVanishing;
    d.explanation = "the activation std shrinks with depth";
  } else {
    d.verdict = Verdict::kStable;
    d.explanation = "the activation std stays within a factor 4 of layer 1";
  }
  return d;
}

}  // namespace ballast
