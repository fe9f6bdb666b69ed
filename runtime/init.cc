#include "ballast/init.h"

#include <cmath>
#include <string>
#include <vector>

namespace ballast::init {
namespace {

std::string Fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

Status CheckNotEmpty(const Tensor& t, std::string_view scheme) {
  if (t.empty()) {
    return InvalidArgument("init." + std::string(scheme) +
                           ": tensor is empty (no storage)");
  }
  return Status::Ok();
}

Status CheckFinite(double v, std::string_view scheme, std::string_view what) {
  if (!std::isfinite(v)) {
    return InvalidArgument("init." + std::string(scheme) + ": " +
                           std::string(what) + " = " + Fmt(v) +
                           " must be finite");
  }
  return Status::Ok();
}

// The fan that `mode` selects, refusing zero fans (zero-element tensors).
Result<double> SelectFan(const Tensor& t, FanMode mode,
                         std::string_view scheme) {
  Result<Fans> fans = calculate_fans(t);
  if (!fans.ok())
    return fans.status().WithContext("init." + std::string(scheme) + ": ");
  const int64_t fan = mode == FanMode::kFanIn ? fans->fan_in : fans->fan_out;
  if (fan == 0) {
    return InvalidArgument("init." + std::string(scheme) + ": " +
                           (mode == FanMode::kFanIn ? "fan_in" : "fan_out") +
                           " is 0 for a tensor of shape " +
                           t.shape().ToString() +
                           "; fan-based schemes need non-empty dimensions");
  }
  return double(fan);
}

Result<double> SumFans(const Tensor& t, std::string_view scheme) {
  Result<Fans> fans = calculate_fans(t);
  if (!fans.ok())
    return fans.status().WithContext("init." + std::string(scheme) + ": ");
  if (fans->fan_in + fans->fan_out == 0 || fans->fan_in == 0 ||
      fans->fan_out == 0) {
    return InvalidArgument("init." + std::string(scheme) +
                           ": fan_in or fan_out is 0 for a tensor of shape " +
                           t.shape().ToString());
  }
  return double(fans->fan_in + fans->fan_out);
}

}  // namespace

Result<Nonlinearity> ParseNonlinearity(std::string_view name) {
  static constexpr std::pair<std::string_view, Nonlinearity> kNames[] = {
      {"linear", Nonlinearity::kLinear},
      {"conv1d", Nonlinearity::kConv1d},
      {"conv2d", Nonlinearity::kConv2d},
      {"conv3d", Nonlinearity::kConv3d},
      {"conv_transpose1d", Nonlinearity::kConvTranspose1d},
      {"conv_transpose2d", Nonlinearity::kConvTranspose2d},
      {"conv_transpose3d", Nonlinearity::kConvTranspose3d},
      {"sigmoid", Nonlinearity::kSigmoid},
      {"tanh", Nonlinearity::kTanh},
      {"relu", Nonlinearity::kRelu},
      {"leaky_relu", Nonlinearity::kLeakyRelu},
      {"selu", Nonlinearity::kSelu},
  };
  for (const auto& [n, nl] : kNames) {
    if (n == name) return nl;
  }
  return InvalidArgument(
      "init.calculate_gain: unsupported nonlinearity '" + std::string(name) +
      "'; expected one of linear, conv1d, conv2d, conv3d, conv_transpose1d, "
      "conv_transpose2d, conv_transpose3d, sigmoid, tanh, relu, leaky_relu, "
      "selu");
}

std::string_view NonlinearityName(Nonlinearity nl) {
  switch (nl) {
    case Nonlinearity::kLinear:
      return "linear";
    case Nonlinearity::kConv1d:
      return "conv1d";
    case Nonlinearity::kConv2d:
      return "conv2d";
    case Nonlinearity::kConv3d:
      return "conv3d";
    case Nonlinearity::kConvTranspose1d:
      return "conv_transpose1d";
    case Nonlinearity::kConvTranspose2d:
      return "conv_transpose2d";
    case Nonlinearity::kConvTranspose3d:
      return "conv_transpose3d";
    case Nonlinearity::kSigmoid:
      return "sigmoid";
    case Nonlinearity::kTanh:
      return "tanh";
    case Nonlinearity::kRelu:
      return "relu";
    case Nonlinearity::kLeakyRelu:
      return "leaky_relu";
    case Nonlinearity::kSelu:
      return "selu";
  }
  return "unknown";
}

Result<FanMode> ParseFanMode(std::string_view name) {
  if (name == "fan_in") return FanMode::kFanIn;
  if (name == "fan_out") return FanMode::kFanOut;
  return InvalidArgument("init: mode '" + std::string(name) +
                         "' not supported; expected fan_in or fan_out");
}

Result<double> calculate_gain(Nonlinearity nl, std::optional<double> param) {
  switch (nl) {
    case Nonlinearity::kLinear:
    case Nonlinearity::kConv1d:
    case Nonlinearity::kConv2d:
    case Nonlinearity::kConv3d:
    case Nonlinearity::kConvTranspose1d:
    case Nonlinearity::kConvTranspose2d:
    case Nonlinearity::kConvTranspose3d:
    case Nonlinearity::kSigmoid:
      return 1.0;
    case Nonlinearity::kTanh:
      return 5.0 / 3.0;
    case Nonlinearity::kRelu:
      return std::sqrt(2.0);
    case Nonlinearity::kLeakyRelu: {
      const double a = param.value_or(0.01);  // torch: None → 0.01
      if (!std::isfinite(a)) {
        return InvalidArgument("init.calculate_gain: leaky_relu slope " +
                               Fmt(a) + " is not a finite number");
      }
      return std::sqrt(2.0 / (1.0 + a * a));
    }
    case Nonlinearity::kSelu:
      return 3.0 / 4.0;
  }
  return InvalidArgument("init.calculate_gain: unknown nonlinearity");
}

Result<Fans> calculate_fans(const Tensor& t) {
  if (t.rank() < 2) {
    return InvalidArgument(
        "fan in and fan out can not be computed for a tensor of shape " +
        t.shape().ToString() + " (fewer than 2 dimensions)");
  }
  int64_t receptive = 1;
  for (int i = 2; i < t.rank(); ++i) receptive *= t.dim(i);
  return Fans{t.dim(1) * receptive, t.dim(0) * receptive};
}

Status zeros(Tensor& t) { return constant(t, 0.0); }
Status ones(Tensor& t) { return constant(t, 1.0); }

Status constant(Tensor& t, double value) {
  BALLAST_RETURN_IF_ERROR(CheckNotEmpty(t, "constant"));
  for (float& v : t.span()) v = float(value);
  return Status::Ok();
}

Status normal(Tensor& t, Generator& gen, double mean, double std) {
  BALLAST_RETURN_IF_ERROR(CheckNotEmpty(t, "normal"));
  BALLAST_RETURN_IF_ERROR(CheckFinite(mean, "normal", "mean"));
  if (!(std >= 0.0) || !std::isfinite(std)) {
    return InvalidArgument("init.normal: std = " + Fmt(std) +
                           " must be finite and >= 0");
  }
  gen.FillNormal(t.span(), mean, std);
  return Status::Ok();
}

Status uniform(Tensor& t, Generator& gen, double a, double b) {
  BALLAST_RETURN_IF_ERROR(CheckNotEmpty(t, "uniform"));
  BALLAST_RETURN_IF_ERROR(CheckFinite(a, "uniform", "a"));
  BALLAST_RETURN_IF_ERROR(CheckFinite(b, "uniform", "b"));
  if (a > b) {
    return InvalidArgument("init.uniform: expects a <= b, got a = " + Fmt(a) +
                           " > b = " + Fmt(b));
  }
  gen.FillUniform(t.span(), a, b);
  return Status::Ok();
}

Status xavier_uniform(Tensor& t, Generator& gen, double gain) {
  BALLAST_RETURN_IF_ERROR(CheckNotEmpty(t, "xavier_uniform"));
  BALLAST_RETURN_IF_ERROR(CheckFinite(gain, "xavier_uniform", "gain"));
  BALLAST_ASSIGN_OR_RETURN(const double sum, SumFans(t, "xavier_uniform"));
  const double bound = std::sqrt(3.0) * gain * std::sqrt(2.0 / sum);
  gen.FillUniform(t.span(), -bound, bound);
  return Status::Ok();
}

Status xavier_normal(Tensor& t, Generator& gen, double gain) {
  BALLAST_RETURN_IF_ERROR(CheckNotEmpty(t, "xavier_normal"));
  BALLAST_RETURN_IF_ERROR(CheckFinite(gain, "xavier_normal", "gain"));
  BALLAST_ASSIGN_OR_RETURN(const double sum, SumFans(t, "xavier_normal"));
  gen.FillNormal(t.span(), 0.0, gain * std::sqrt(2.0 / sum));
  return Status::Ok();
}

Status kaiming_uniform(Tensor& t, Generator& gen, double a, FanMode mode,
                       Nonlinearity nl) {
  BALLAST_RETURN_IF_ERROR(CheckNotEmpty(t, "kaiming_uniform"));
  BALLAST_ASSIGN_OR_RETURN(const double fan,
                           SelectFan(t, mode, "kaiming_uniform"));
  BALLAST_ASSIGN_OR_RETURN(const double gain, calculate_gain(nl, a));
  const double bound = std::sqrt(3.0) * gain / std::sqrt(fan);
  gen.FillUniform(t.span(), -bound, bound);
  return Status::Ok();
}

Status kaiming_normal(Tensor& t, Generator& gen, double a, FanMode mode,
                      Nonlinearity nl) {
  BALLAST_RETURN_IF_ERROR(CheckNotEmpty(t, "kaiming_normal"));
  BALLAST_ASSIGN_OR_RETURN(const double fan,
                           SelectFan(t, mode, "kaiming_normal"));
  BALLAST_ASSIGN_OR_RETURN(const double gain, calculate_gain(nl, a));
  gen.FillNormal(t.span(), 0.0, gain / std::sqrt(fan));
  return Status::Ok();
}

// Modified Gram-Schmidt, applied twice for orthogonality to rounding
// ("twice is enough"), on the k columns of an n×k matrix (n >= k), in
// double. Leaves R's diagonal positive, which is the sign convention torch
// reaches with q *= sign(diag(r)).
Status orthogonal(Tensor& t, Generator& gen, double gain) {
  BALLAST_RETURN_IF_ERROR(CheckNotEmpty(t, "orthogonal"));
  BALLAST_RETURN_IF_ERROR(CheckFinite(gain, "orthogonal", "gain"));
  if (t.rank() < 2) {
    return InvalidArgument(
        "init.orthogonal: only tensors with 2 or more "
        "dimensions are supported, got shape " +
        t.shape().ToString());
  }
  const int64_t rows = t.dim(0);
  const int64_t cols = t.numel() / (rows == 0 ? 1 : rows);
  if (rows == 0 || cols == 0) {
    return InvalidArgument("init.orthogonal: tensor of shape " +
                           t.shape().ToString() + " has no elements");
  }
  // Work on A = n×k with n >= k: the matrix itself or its transpose.
  const bool transpose = rows < cols;
  const int64_t n = transpose ? cols : rows, k = transpose ? rows : cols;
  std::vector<float> draw(size_t(rows * cols));
  gen.FillNormal(draw, 0.0, 1.0);
  // Column-major copy of A: column j holds A[:, j].
  std::vector<double> q(size_t(n * k));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double v = draw[size_t(r * cols + c)];
      // A = M (rows×cols) or Mᵀ; A[i][j] stored at j*n + i.
      if (transpose) {
        q[size_t(r * n + c)] = v;  // A[c][r]
      } else {
        q[size_t(c * n + r)] = v;  // A[r][c]
      }
    }
  }
  for (int64_t j = 0; j < k; ++j) {
    double* qj = &q[size_t(j * n)];
    for (int pass = 0; pass < 2; ++pass) {
      for (int64_t i = 0; i < j; ++i) {
        const double* qi = &q[size_t(i * n)];
        double dot = 0.0;
        for (int64_t e = 0; e < n; ++e) dot += qi[e] * qj[e];
        for (int64_t e = 0; e < n; ++e) qj[e] -= dot * qi[e];
      }
    }
    double norm = 0.0;
    for (int64_t e = 0; e < n; ++e) norm += qj[e] * qj[e];
    norm = std::sqrt(norm);
    if (norm == 0.0) {
      return Internal("init.orthogonal: drew a rank-deficient matrix");
    }
    for (int64_t e = 0; e < n; ++e) qj[e] /= norm;
  }
  float* out = t.data();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double v = transpose ? q[size_t(r * n + c)] : q[size_t(c * n + r)];
      out[r * cols + c] = float(gain * v);
    }
  }
  return Status::Ok();
}

Result<double> linear_default_bound(int64_t fan_in) {
  if (fan_in <= 0) {
    return InvalidArgument("init.linear_default: in_features = " +
                           std::to_string(fan_in) + " must be > 0");
  }
  // kaiming_uniform with a = √5: gain = √(2/(1 + 5)) = 1/√3, so
  // bound = √3·gain/√fan_in = 1/√fan_in.
  return 1.0 / std::sqrt(double(fan_in));
}

Status linear_default(Tensor& weight, Tensor& bias, Generator& gen) {
  BALLAST_RETURN_IF_ERROR(CheckNotEmpty(weight, "linear_default"));
  BALLAST_RETURN_IF_ERROR(weight.CheckRank("init.linear_default weight", 2));
  BALLAST_RETURN_IF_ERROR(kaiming_uniform(weight, gen, std::sqrt(5.0)));
  if (!bias.empty()) {
    BALLAST_RETURN_IF_ERROR(
        bias.CheckShape("init.linear_default bias", Shape{weight.dim(0)}));
    BALLAST_ASSIGN_OR_RETURN(const double bound,
                             linear_default_bound(weight.dim(1)));
    gen.FillUniform(bias.span(), -bound, bound);
  }
  return Status::Ok();
}

Status batchnorm_default(Tensor& gamma, Tensor& beta, Tensor& running_mean,
                         Tensor& running_var) {
  for (Tensor* t : {&gamma, &running_var}) {
    if (!t->empty()) BALLAST_RETURN_IF_ERROR(ones(*t));
  }
  for (Tensor* t : {&beta, &running_mean}) {
    if (!t->empty()) BALLAST_RETURN_IF_ERROR(zeros(*t));
  }
  return Status::Ok();
}

}  // namespace ballast::init
