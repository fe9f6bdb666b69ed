// `ballast demo`: the book's StandardBlock MLP (784-256-256-10), one forward
// pass in training mode and one in evaluation mode on a random batch, with
// the first BatchNorm's running_mean printed before and after each. Training
// mode updates the running statistics; evaluation mode reads them only.
#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "ballast/init.h"
#include "ballast/rng.h"
#include "ballast/tensor.h"
#include "ops/ref/activation.h"
#include "ops/ref/batchnorm.h"
#include "ops/ref/dropout.h"
#include "ops/ref/linear.h"
#include "tools/commands.h"

namespace ballast::cli {
namespace {

struct Linear {
  Tensor weight, bias;
  int64_t in = 0, out = 0;
};

struct BatchNorm {
  Tensor gamma, beta, running_mean, running_var;
  int64_t num_batches = 0;
};

struct StandardBlock {
  Linear linear;
  BatchNorm bn;
  double dropout = 0.5;
};

struct DemoOptions {
  int batch = 64;
  uint64_t seed = 0;
  int show = 5;
};

Result<Linear> MakeLinear(int64_t in, int64_t out, Generator& gen) {
  Linear l{Tensor::Zeros({out, in}), Tensor::Zeros({out}), in, out};
  BALLAST_RETURN_IF_ERROR(init::linear_default(l.weight, l.bias, gen));
  return l;
}

Result<StandardBlock> MakeBlock(int64_t in, int64_t out, double p,
                                Generator& gen) {
  StandardBlock b;
  BALLAST_ASSIGN_OR_RETURN(b.linear, MakeLinear(in, out, gen));
  b.bn = {Tensor::Zeros({out}), Tensor::Zeros({out}), Tensor::Zeros({out}),
          Tensor::Zeros({out})};
  BALLAST_RETURN_IF_ERROR(init::batchnorm_default(
      b.bn.gamma, b.bn.beta, b.bn.running_mean, b.bn.running_var));
  b.dropout = p;
  return b;
}

// Linear → BatchNorm1d → ReLU → Dropout on x [M, in]; returns [M, out].
Result<Tensor> BlockForward(StandardBlock& b, const Tensor& x, bool training,
                            Generator& gen) {
  const int64_t M = x.dim(0), N = b.linear.out;
  Tensor z = Tensor::Zeros({M, N}), y = Tensor::Zeros({M, N});
  ref::linear_forward(x.data(), b.linear.weight.data(), b.linear.bias.data(),
                      z.data(), M, b.linear.in, N);
  if (training) {
    std::vector<float> mean(static_cast<size_t>(N)),
        rstd(static_cast<size_t>(N));
    BALLAST_RETURN_IF_ERROR(ref::batchnorm_forward_train<float>(
        z.data(), b.bn.gamma.data(), b.bn.beta.data(), y.data(), mean.data(),
        rstd.data(),
        {b.bn.running_mean.data(), b.bn.running_var.data(), &b.bn.num_batches},
        M, N, ref::BatchNormOptions{}));
  } else {
    ref::batchnorm_forward_eval(z.data(), b.bn.gamma.data(), b.bn.beta.data(),
                                b.bn.running_mean.data(),
                                b.bn.running_var.data(), y.data(), M, N, 1e-5);
  }
  ref::relu_forward(y.data(), y.data(), M * N);
  if (training) {
    std::vector<uint64_t> mask(size_t(ref::DropoutMaskWords(M * N)));
    BALLAST_RETURN_IF_ERROR(ref::dropout_forward_train(
        y.data(), y.data(), mask.data(), M * N, b.dropout, gen.Take(M * N)));
  }
  return y;
}

// The first `count` of the first `of` values of t ("..." if some are left
// out); `of` < 0: all of t.
std::string Head(const Tensor& t, int count, int64_t of = -1) {
  const int64_t n = of < 0 ? t.numel() : std::min(of, t.numel());
  std::string s = "[";
  for (int i = 0; i < count && i < n; ++i) {
    s += fmt::format("{}{:.4f}", i ? ", " : "", t.data()[i]);
  }
  return s + (n > count ? ", ...]" : "]");
}

Status RunDemo(const DemoOptions& opt) {
  Generator gen(opt.seed);
  const double p = 0.5;
  BALLAST_ASSIGN_OR_RETURN(StandardBlock b1, MakeBlock(784, 256, p, gen));
  BALLAST_ASSIGN_OR_RETURN(StandardBlock b2, MakeBlock(256, 256, p, gen));
  BALLAST_ASSIGN_OR_RETURN(Linear head, MakeLinear(256, 10, gen));
  fmt::print(
      "model: StandardBlock(784, 256) -> StandardBlock(256, 256) -> "
      "Linear(256, 10)\n"
      "       StandardBlock = Linear -> BatchNorm1d -> ReLU -> Dropout({})\n",
      p);

  Tensor x = Tensor::Zeros({opt.batch, 784});
  gen.FillNormal(x.span(), 0.0, 1.0);
  fmt::print("input: random batch of shape {}\n\n", x.shape().ToString());

  auto forward = [&](bool training) -> Result<Tensor> {
    BALLAST_ASSIGN_OR_RETURN(Tensor h1, BlockForward(b1, x, training, gen));
    BALLAST_ASSIGN_OR_RETURN(Tensor h2, BlockForward(b2, h1, training, gen));
    Tensor out = Tensor::Zeros({opt.batch, 10});
    ref::linear_forward(h2.data(), head.weight.data(), head.bias.data(),
                        out.data(), opt.batch, 256, 10);
    return out;
  };

  fmt::print("block 1 BatchNorm1d running_mean before:          {}\n",
             Head(b1.bn.running_mean, opt.show));
  BALLAST_ASSIGN_OR_RETURN(Tensor train_out, forward(/*training=*/true));
  fmt::print("block 1 BatchNorm1d running_mean after train fwd: {}\n",
             Head(b1.bn.running_mean, opt.show));
  fmt::print(
      "  (training mode normalizes with the batch statistics and "
      "updates the running ones: momentum 0.1)\n");
  const Tensor before_eval = b1.bn.running_mean.Clone();
  BALLAST_ASSIGN_OR_RETURN(Tensor eval_out, forward(/*training=*/false));
  fmt::print("block 1 BatchNorm1d running_mean after eval fwd:  {}\n",
             Head(b1.bn.running_mean, opt.show));
  bool unchanged = true;
  for (int64_t i = 0; i < before_eval.numel(); ++i) {
    unchanged &= before_eval.data()[i] == b1.bn.running_mean.data()[i];
  }
  fmt::print(
      "  (evaluation mode normalizes with the running statistics and "
      "leaves them {})\n",
      unchanged ? "unchanged" : "CHANGED - this is a bug");
  fmt::print("\noutput logits, row 0, train mode: {}\n",
             Head(train_out, 10, train_out.dim(1)));
  fmt::print("output logits, row 0, eval mode:  {}\n",
             Head(eval_out, 10, eval_out.dim(1)));
  return unchanged ? Status::Ok()
                   : Internal("evaluation forward changed running_mean");
}

}  // namespace

void RegisterDemo(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "Build the book's 784-256-256-10 StandardBlock MLP and show how a "
      "training-mode and an evaluation-mode forward pass treat BatchNorm's "
      "running statistics");
  cmd->add_option("--batch", opt->batch, "Rows in the random input batch")
      ->check(CLI::Range(2, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Seed for weights, input and dropout")
      ->capture_default_str();
  cmd->add_option("--show", opt->show, "Running-mean entries to print")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->callback([opt, &exit_code] {
    Status s = RunDemo(*opt);
    if (!s.ok()) {
      std::fprintf(stderr, "ballast demo: %s\n", s.ToString().c_str());
      exit_code = kExitFailure;
    }
  });
}

}  // namespace ballast::cli
