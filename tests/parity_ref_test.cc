// PyTorch parity of the ref ops and the initializers' formulas.
//
// tests/parity/make_golden.py writes the golden JSON files at test time (ctest
// test parity_golden) into $BALLAST_GOLDEN_DIR; without them, every test here
// is skipped and says how to enable it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ballast/init.h"
#include "ballast/tensor.h"
#include "ops/ref/batchnorm.h"
#include "ops/ref/cross_entropy.h"
#include "tests/gradcheck.h"

namespace ballast {
namespace {

using json = nlohmann::json;
using ballast::testing::ExpectAllNear;

// Mixed relative tolerance of a float32 ref op against PyTorch float32: both
// round differently (the ref accumulates in double), a few ulps of O(1)
// values.
constexpr double kFloat32ParityTol = 1e-5;
// The same for float64: only the order of operations differs.
constexpr double kFloat64ParityTol = 1e-10;
// calculate_gain and the init bounds are closed forms in double.
constexpr double kFormulaTol = 1e-12;
// torch draws U(−b, b) in float32; its observed maximum may exceed the double
// bound b by the rounding of b to float.
constexpr double kFloat32Rounding = 1e-7;
// On layers this large the observed max |w| is within 3% of the bound.
constexpr double kObservedBoundSlack = 0.03;

double ParityTol(const std::string& dtype) {
  return dtype == "float64" ? kFloat64ParityTol : kFloat32ParityTol;
}

// The parsed golden file, or nullopt with *why saying what is missing and how
// to get it.
std::optional<json> LoadGolden(const std::string& file, std::string* why) {
  const char* dir = std::getenv("BALLAST_GOLDEN_DIR");
  const std::string enable =
      "; the ctest test parity_golden writes it with "
      "/usr/bin/python3 tests/parity/make_golden.py when torch imports: "
      "install python3-torch (scripts/install-deps.sh) and run "
      "`ctest -L parity`";
  if (dir == nullptr || *dir == '\0') {
    *why =
        "BALLAST_GOLDEN_DIR is not set, so there is no golden " + file + enable;
    return std::nullopt;
  }
  const std::filesystem::path path = std::filesystem::path(dir) / file;
  std::ifstream in(path);
  if (!in) {
    *why = "golden file " + path.string() + " does not exist" + enable;
    return std::nullopt;
  }
  return json::parse(in);
}

template <typename T>
std::vector<T> Values(const json& j) {
  std::vector<T> v;
  if (j.is_array() && !j.empty() && j.front().is_array()) {  // a matrix
    for (const json& row : j) {
      for (const json& x : row) v.push_back(T(x.get<double>()));
    }
  } else {
    for (const json& x : j) v.push_back(T(x.get<double>()));
  }
  return v;
}

ref::BatchNormOptions BatchNormOptionsOf(const json& c) {
  ref::BatchNormOptions opt;
  opt.eps = c["eps"].get<double>();
  opt.momentum = c["momentum"].is_null()
                     ? std::nullopt
                     : std::optional<double>(c["momentum"].get<double>());
  opt.affine = c["affine"].get<bool>();
  opt.track_running_stats = c["track_running_stats"].get<bool>();
  return opt;
}

// Replays a golden BatchNorm1d case: the training steps, then eval. Checks
// training outputs and gradients when `check_train`, eval outputs when
// `check_eval`.
template <typename T>
void ReplayBatchNorm(const json& c, bool check_train, bool check_eval) {
  const int64_t M = c["M"], C = c["C"];
  const ref::BatchNormOptions opt = BatchNormOptionsOf(c);
  const double tol = ParityTol(c["dtype"].get<std::string>());
  std::vector<T> gamma, beta, running_mean, running_var;
  if (opt.affine) {
    gamma = Values<T>(c["gamma"]);
    beta = Values<T>(c["beta"]);
  }
  ref::BatchNormRunning<T> running;
  int64_t num_batches = 0;
  if (opt.track_running_stats) {
    running_mean = Values<T>(c["initial_running_mean"]);
    running_var = Values<T>(c["initial_running_var"]);
    running = {running_mean.data(), running_var.data(), &num_batches};
  }
  const T* g = opt.affine ? gamma.data() : nullptr;
  const T* b = opt.affine ? beta.data() : nullptr;

  for (size_t s = 0; s < c["steps"].size(); ++s) {
    SCOPED_TRACE("training step " + std::to_string(s));
    const json& step = c["steps"][s];
    const std::vector<T> x = Values<T>(step["x"]), dy = Values<T>(step["dy"]);
    std::vector<T> y(M * C), mean(C), rstd(C);
    ASSERT_TRUE(ref::batchnorm_forward_train(x.data(), g, b, y.data(),
                                             mean.data(), rstd.data(), running,
                                             M, C, opt)
                    .ok());
    if (!check_train) continue;
    ExpectAllNear(y, Values<double>(step["y"]), tol, "y");
    if (opt.track_running_stats) {
      ExpectAllNear(running_mean, Values<double>(step["running_mean"]), tol,
                    "running_mean");
      ExpectAllNear(running_var, Values<double>(step["running_var"]), tol,
                    "running_var");
      EXPECT_EQ(num_batches, step["num_batches_tracked"].get<int64_t>());
    }
    std::vector<T> dx(M * C), dgamma(C), dbeta(C);
    ref::batchnorm_backward(x.data(), g, mean.data(), rstd.data(), dy.data(),
                            dx.data(), dgamma.data(), dbeta.data(), M, C);
    ExpectAllNear(dx, Values<double>(step["dx"]), tol, "dx");
    if (opt.affine) {
      ExpectAllNear(dgamma, Values<double>(step["dgamma"]), tol, "dgamma");
      ExpectAllNear(dbeta, Values<double>(step["dbeta"]), tol, "dbeta");
    }
  }

  if (!check_eval) return;
  const std::vector<T> x = Values<T>(c["eval"]["x"]);
  std::vector<T> y(M * C);
  if (opt.track_running_stats) {
    ref::batchnorm_forward_eval(x.data(), g, b, running_mean.data(),
                                running_var.data(), y.data(), M, C, opt.eps);
  } else {  // no running statistics: eval normalizes with the batch's own
    ASSERT_TRUE(ref::batchnorm_forward_train<T>(x.data(), g, b, y.data(),
                                                nullptr, nullptr, {}, M, C, opt)
                    .ok());
  }
  ExpectAllNear(y, Values<double>(c["eval"]["y"]), tol, "eval y");
}

void ReplayBatchNormCases(const json& golden, bool check_train,
                          bool check_eval) {
  ASSERT_FALSE(golden["cases"].empty());
  for (const json& c : golden["cases"]) {
    SCOPED_TRACE("batchnorm case " + c["name"].get<std::string>());
    if (c["dtype"] == "float64") {
      ReplayBatchNorm<double>(c, check_train, check_eval);
    } else {
      ReplayBatchNorm<float>(c, check_train, check_eval);
    }
  }
}

TEST(ParityRefTest, BatchNormTrainingMatchesTorch) {
  std::string why;
  const std::optional<json> golden = LoadGolden("batchnorm.json", &why);
  if (!golden) GTEST_SKIP() << why;
  ReplayBatchNormCases(*golden, /*check_train=*/true, /*check_eval=*/false);
}

TEST(ParityRefTest, BatchNormEvalMatchesTorch) {
  std::string why;
  const std::optional<json> golden = LoadGolden("batchnorm.json", &why);
  if (!golden) GTEST_SKIP() << why;
  ReplayBatchNormCases(*golden, /*check_train=*/false, /*check_eval=*/true);
}

template <typename T>
void CheckCrossEntropy(const json& c, bool check_loss, bool check_grad) {
  const int64_t M = c["M"], C = c["C"];
  const double tol = ParityTol(c["dtype"].get<std::string>());
  const std::vector<T> logits = Values<T>(c["logits"]);
  const std::vector<int32_t> labels = c["labels"].get<std::vector<int32_t>>();
  if (check_loss) {
    T loss = 0;
    ASSERT_TRUE(
        ref::cross_entropy_forward(logits.data(), labels.data(), M, C, &loss)
            .ok());
    EXPECT_TRUE(std::isfinite(loss));
    const double expected = c["loss"];
    EXPECT_NEAR(loss, expected, testing::MixedTol(expected, tol));
  }
  if (check_grad) {
    std::vector<T> dlogits(M * C);
    ASSERT_TRUE(ref::cross_entropy_backward(logits.data(), labels.data(), M, C,
                                            T(1), dlogits.data())
                    .ok());
    ExpectAllNear(dlogits, Values<double>(c["dlogits"]), tol, "dlogits");
  }
}

void CheckCrossEntropyCases(const json& golden, bool check_loss,
                            bool check_grad) {
  ASSERT_FALSE(golden["cases"].empty());
  for (const json& c : golden["cases"]) {
    SCOPED_TRACE("cross_entropy case " + c["name"].get<std::string>());
    if (c["dtype"] == "float64") {
      CheckCrossEntropy<double>(c, check_loss, check_grad);
    } else {
      CheckCrossEntropy<float>(c, check_loss, check_grad);
    }
  }
}

TEST(ParityRefTest, CrossEntropyLossMatchesTorch) {
  std::string why;
  const std::optional<json> golden = LoadGolden("cross_entropy.json", &why);
  if (!golden) GTEST_SKIP() << why;
  CheckCrossEntropyCases(*golden, /*check_loss=*/true, /*check_grad=*/false);
}

TEST(ParityRefTest, CrossEntropyGradientMatchesTorch) {
  std::string why;
  const std::optional<json> golden = LoadGolden("cross_entropy.json", &why);
  if (!golden) GTEST_SKIP() << why;
  CheckCrossEntropyCases(*golden, /*check_loss=*/false, /*check_grad=*/true);
}

TEST(ParityRefTest, LinearDefaultBoundMatchesTorch) {
  std::string why;
  const std::optional<json> golden = LoadGolden("init.json", &why);
  if (!golden) GTEST_SKIP() << why;
  ASSERT_FALSE((*golden)["linear_default"].empty());
  for (const json& l : (*golden)["linear_default"]) {
    const int64_t fan_in = l["in_features"];
    SCOPED_TRACE("nn.Linear(" + std::to_string(fan_in) + ", " +
                 l["out_features"].dump() + ")");
    const Result<double> bound = init::linear_default_bound(fan_in);
    ASSERT_TRUE(bound.ok()) << bound.status().ToString();
    // The formula torch evaluates, for the weight and for the bias.
    const double weight_bound = l["weight_bound"], bias_bound = l["bias_bound"];
    EXPECT_NEAR(*bound, weight_bound, kFormulaTol * weight_bound);
    EXPECT_NEAR(*bound, bias_bound, kFormulaTol * bias_bound);
    // What torch's init actually drew: never beyond ballast's bound (up to
    // float rounding), and close to it on layers this large.
    for (const char* key : {"max_abs_weight", "max_abs_bias"}) {
      const double observed = l[key];
      EXPECT_LE(observed, *bound * (1 + kFloat32Rounding)) << key;
      EXPECT_GE(observed, *bound * (1 - kObservedBoundSlack)) << key;
    }
  }
}

TEST(ParityRefTest, CalculateFansMatchesTorch) {
  std::string why;
  const std::optional<json> golden = LoadGolden("init.json", &why);
  if (!golden) GTEST_SKIP() << why;
  ASSERT_FALSE((*golden)["fans"].empty());
  for (const json& f : (*golden)["fans"]) {
    SCOPED_TRACE("shape " + f["shape"].dump());
    const std::vector<int64_t> dims = f["shape"].get<std::vector<int64_t>>();
    const Result<Shape> shape = Shape::Make(dims);
    ASSERT_TRUE(shape.ok()) << shape.status().ToString();
    const Result<init::Fans> fans = init::calculate_fans(Tensor::Zeros(*shape));
    if (f.contains("error")) {
      EXPECT_FALSE(fans.ok()) << "torch: " << f["error"].get<std::string>();
      continue;
    }
    ASSERT_TRUE(fans.ok()) << fans.status().ToString();
    EXPECT_EQ(fans->fan_in, f["fan_in"].get<int64_t>());
    EXPECT_EQ(fans->fan_out, f["fan_out"].get<int64_t>());
  }
}

TEST(ParityRefTest, CalculateGainMatchesTorch) {
  std::string why;
  const std::optional<json> golden = LoadGolden("init.json", &why);
  if (!golden) GTEST_SKIP() << why;
  ASSERT_FALSE((*golden)["gains"].empty());
  for (const json& g : (*golden)["gains"]) {
    const std::string name = g["nonlinearity"].get<std::string>();
    SCOPED_TRACE("calculate_gain('" + name + "', " + g["param"].dump() + ")");
    const Result<init::Nonlinearity> nl = init::ParseNonlinearity(name);
    ASSERT_TRUE(nl.ok()) << nl.status().ToString();
    EXPECT_EQ(init::NonlinearityName(*nl), name);
    const std::optional<double> param =
        g["param"].is_null() ? std::nullopt
                             : std::optional<double>(g["param"].get<double>());
    const Result<double> gain = init::calculate_gain(*nl, param);
    ASSERT_TRUE(gain.ok()) << gain.status().ToString();
    const double expected = g["gain"];
    EXPECT_NEAR(*gain, expected, kFormulaTol * expected);
  }
}

}  // namespace
}  // namespace ballast
