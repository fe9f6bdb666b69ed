// Parameter initializers with torch.nn.init semantics.
//
// Names follow torch.nn.init so that a PyTorch recipe reads the same here:
//   torch.nn.init.kaiming_normal_(w, mode='fan_out', nonlinearity='relu')
//   ballast::init::kaiming_normal(w, gen, 0.0, FanMode::kFanOut,
//   Nonlinearity::kRelu)
// Fans follow torch's _calculate_fan_in_and_fan_out: for a tensor of shape
// [out, in, k...], fan_in = in·Πk and fan_out = out·Πk; it needs >= 2 dims.
// Random draws come from a seeded ballast::Generator (see rng.h); the values
// are not those of torch's generator, the distributions are.
#ifndef BALLAST_INIT_H_
#define BALLAST_INIT_H_

#include <optional>
#include <string_view>

#include "ballast/rng.h"
#include "ballast/status.h"
#include "ballast/tensor.h"

namespace ballast::init {

enum class Nonlinearity {
  kLinear,
  kConv1d,
  kConv2d,
  kConv3d,
  kConvTranspose1d,
  kConvTranspose2d,
  kConvTranspose3d,
  kSigmoid,
  kTanh,
  kRelu,
  kLeakyRelu,
  kSelu,
};

enum class FanMode { kFanIn, kFanOut };

// "relu", "leaky_relu", "conv2d", ... (torch's spelling) → enum.
Result<Nonlinearity> ParseNonlinearity(std::string_view name);
std::string_view NonlinearityName(Nonlinearity nl);
Result<FanMode> ParseFanMode(std::string_view name);  // "fan_in" | "fan_out"

// torch.nn.init.calculate_gain: 1 for linear, conv* and sigmoid; 5/3 for
// tanh; √2 for relu; √(2/(1 + a²)) for leaky_relu (a = `param`, 0.01 when
// unset, as torch's None); 3/4 for selu.
Result<double> calculate_gain(Nonlinearity nl,
                              std::optional<double> param = std::nullopt);

struct Fans {
  int64_t fan_in = 0;
  int64_t fan_out = 0;
};
Result<Fans> calculate_fans(const Tensor& t);

Status zeros(Tensor& t);
Status ones(Tensor& t);
Status constant(Tensor& t, double value);
// N(mean, std²); std must be >= 0.
Status normal(Tensor& t, Generator& gen, double mean = 0.0, double std = 1.0);
// U(a, b); needs a <= b.
Status uniform(Tensor& t, Generator& gen, double a = 0.0, double b = 1.0);

// U(±gain·√(6/(fan_in + fan_out))).
Status xavier_uniform(Tensor& t, Generator& gen, double gain = 1.0);
// N(0, gain²·2/(fan_in + fan_out)).
Status xavier_normal(Tensor& t, Generator& gen, double gain = 1.0);

// std = calculate_gain(nl, a)/√fan, bound = √3·std. torch's defaults:
// a = 0, mode = fan_in, nonlinearity = leaky_relu (so the gain is √2).
Status kaiming_uniform(Tensor& t, Generator& gen, double a = 0.0,
                       FanMode mode = FanMode::kFanIn,
                       Nonlinearity nl = Nonlinearity::kLeakyRelu);
Status kaiming_normal(Tensor& t, Generator& gen, double a = 0.0,
                      FanMode mode = FanMode::kFanIn,
                      Nonlinearity nl = Nonlinearity::kLeakyRelu);

// A (semi-)orthogonal matrix from the QR decomposition of a normal matrix,
// signs fixed by diag(R), scaled by gain; tensors of >= 2 dims are viewed
// as [dim0, numel/dim0].
Status orthogonal(Tensor& t, Generator& gen, double gain = 1.0);

// torch.nn.Linear.reset_parameters: kaiming_uniform(a = √5) on the weight
// [out, in], which is U(±1/√in), and the bias U(±1/√in). This is not He
// init. `bias` may be empty.
Status linear_default(Tensor& weight, Tensor& bias, Generator& gen);
// The bound 1/√fan_in used by linear_default.
Result<double> linear_default_bound(int64_t fan_in);

// torch.nn.BatchNorm1d defaults: γ = 1, β = 0, running_mean = 0,
// running_var = 1. Any tensor may be empty (affine = false, or
// track_running_stats = false).
Status batchnorm_default(Tensor& gamma, Tensor& beta, Tensor& running_mean,
                         Tensor& running_var);

}  // namespace ballast::init

#endif  // BALLAST_INIT_H_
