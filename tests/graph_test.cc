// Building graphs (Sequential), their validation and the inference passes
// (BatchNorm folding, activation fusion, dropout removal, the input
// normalization folded into the first Linear).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ballast/model.h"
#include "ballast/session.h"
#include "tests/session_test_util.h"

namespace ballast {
namespace {

using test::BookMlp;
using test::Close;
using test::RandomInput;
using test::Randomize;
using test::Reference;
using test::RunSession;

TEST(SequentialTest, BuildsTheBookModelWithNamedNodes) {
  Graph g = BookMlp();
  ASSERT_EQ(g.nodes.size(), 9u);
  EXPECT_EQ(g.nodes[0].name, "block1.linear");
  EXPECT_EQ(g.nodes[1].name, "block1.batchnorm1d");
  EXPECT_EQ(g.nodes[3].op, "dropout");
  EXPECT_EQ(g.nodes[4].name, "block2.linear");
  EXPECT_EQ(g.nodes[8].op, "linear");
  EXPECT_EQ(*g.OutputFeatures(Registry::Builtin()), 10);
  EXPECT_EQ(g.ParameterCount(),
            784 * 256 + 256 + 2 * 256 + 256 * 256 + 256 + 2 * 256 + 2570);
}

TEST(SequentialTest, ReportsBadArgumentsAtBuild) {
  EXPECT_FALSE(Sequential(0).Linear(3).Build().ok());
  EXPECT_FALSE(Sequential(4).Linear(0).Build().ok());
  EXPECT_FALSE(Sequential(4).Dropout(1.5).Build().ok());
  EXPECT_FALSE(Sequential(4).BatchNorm1d(-1.0).Build().ok());
  EXPECT_FALSE(Sequential(4).BatchNorm1d(std::nan("")).Build().ok());
  EXPECT_FALSE(Sequential(4).BatchNorm1d(1e-5, 2.0).Build().ok());
  EXPECT_FALSE(Sequential(4).BatchNorm1d(1e-5, -0.5).Build().ok());
  EXPECT_TRUE(Sequential(4).BatchNorm1d(1e-5, std::nullopt).Build().ok());
  EXPECT_FALSE(Sequential(4).LeakyReLU(std::nan("")).Build().ok());
  Result<Graph> g = Sequential(4).StandardBlock(3, 0.1, "swish").Build();
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("'swish'"), std::string::npos);
}

TEST(GraphTest, ValidationErrorsNameTheNodeAndTheRule) {
  Graph g = BookMlp();
  g.nodes[4].params["weight"] = Tensor::Zeros({256, 300});
  Status s = g.Validate(Registry::Builtin()).status();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("node 'block2.linear' (linear)"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("[256, 300]"), std::string::npos);
  EXPECT_NE(s.message().find("[256, 256]"), std::string::npos);

  g = BookMlp();
  g.nodes[1].attrs["eps"] = std::string("tiny");
  s = g.Validate(Registry::Builtin()).status();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("attribute 'eps' must be a float"),
            std::string::npos);

  g = BookMlp();
  g.nodes[2].op = "gelu";
  s = g.Validate(Registry::Builtin()).status();
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find("unknown op 'gelu'"), std::string::npos);

  g = BookMlp();
  g.nodes[3].attrs["p"] = 2.0;
  EXPECT_FALSE(g.Validate(Registry::Builtin()).ok());
  g = BookMlp();
  g.nodes[5].name = g.nodes[0].name;
  EXPECT_FALSE(g.Validate(Registry::Builtin()).ok());
}

TEST(PassesTest, FoldingRemovesBatchNormAndKeepsTheOutputs) {
  Graph g = BookMlp(3);
  Result<Graph> folded = FoldBatchNorm(g);
  ASSERT_TRUE(folded.ok());
  EXPECT_EQ(folded->nodes.size(), 7u);  // two BNs absorbed
  for (const Node& n : folded->nodes) EXPECT_NE(n.op, "batchnorm1d");
  Result<Graph> fused = FuseActivations(*folded);
  ASSERT_TRUE(fused.ok());
  Result<Graph> dropped = DropDropout(*fused);
  ASSERT_TRUE(dropped.ok());
  ASSERT_EQ(dropped->nodes.size(), 3u);  // three linears
  EXPECT_EQ(dropped->nodes[0].GetString("activation"), "relu");
  EXPECT_EQ(dropped->nodes[2].GetString("activation", "none"), "none");

  const auto x = RandomInput(33, 784, 5);
  const auto want = RunSession(g, Reference(), x, 33);
  SessionOptions o = Reference();  // ref kernels on the folded graph
  const auto got = RunSession(*dropped, o, x, 33);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], Close(want[i])) << i;
  }
}

TEST(PassesTest, FoldHandlesNoBiasAndNoAffineAndSkipsBatchStatistics) {
  for (bool bias : {true, false}) {
    for (bool affine : {true, false}) {
      Sequential net(20, 9);
      net.Linear(12, bias).BatchNorm1d(1e-3, 0.1, affine).ReLU().Linear(3);
      Graph g = *net.Build();
      Randomize(g, 10);
      Result<Graph> folded = FoldBatchNorm(g);
      ASSERT_TRUE(folded.ok());
      EXPECT_EQ(folded->nodes.size(), 3u);
      const auto x = RandomInput(8, 20, 11);
      const auto want = RunSession(g, Reference(), x, 8);
      const auto got = RunSession(*folded, Reference(), x, 8);
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], Close(want[i]))
            << "bias=" << bias << " affine=" << affine;
      }
    }
  }
  // Not folded: BN without running statistics, and BN not after a Linear.
  Sequential net(6, 1);
  net.Linear(5).BatchNorm1d(1e-5, 0.1, true, false).ReLU().BatchNorm1d();
  Graph g = *net.Build();
  Result<Graph> folded = FoldBatchNorm(g);
  ASSERT_TRUE(folded.ok());
  EXPECT_EQ(folded->nodes.size(), g.nodes.size());
}

TEST(PassesTest, RefuseBadGraphsInsteadOfCrashing) {
  EXPECT_FALSE(DropDropout(Graph{}).ok());
  Graph g = BookMlp(3);
  g.nodes[1].params["weight"] = Tensor::Zeros({1});  // gamma of 256
  Result<Graph> folded = FoldBatchNorm(g);
  ASSERT_FALSE(folded.ok());
  EXPECT_NE(folded.status().message().find(
                "weight (gamma) has 1 values for 256 outputs"),
            std::string::npos)
      << folded.status().ToString();
  g = BookMlp(3);
  g.nodes[1].params.erase("bias");  // an affine BN without beta
  EXPECT_FALSE(FoldBatchNorm(g).ok());
  // The same after a Linear without bias (a missing parameter of either
  // node is the same empty tensor).
  Sequential no_bias(6, 1);
  no_bias.Linear(4, /*bias=*/false).BatchNorm1d().ReLU().Linear(2);
  g = *no_bias.Build();
  g.nodes[1].params.erase("weight");
  EXPECT_FALSE(FoldBatchNorm(g).ok());
  EXPECT_FALSE(FoldInputNormalization(BookMlp(), 0.5, 0.0).ok());
  Sequential net(6, 1);
  net.BatchNorm1d().Linear(3);
  EXPECT_FALSE(FoldInputNormalization(*net.Build(), 0.5, 2.0).ok());
}

// Widths past the machine are Build's error, not an abort in Create; and
// every graph a Sequential builds has weights of its own.
TEST(SequentialTest, RefusesWeightsPastTheMachineAndBuildsIndependentGraphs) {
  Sequential huge(int64_t{1} << 32, 1);
  huge.Linear(int64_t{1} << 32, false);
  Result<Graph> g = huge.Build();
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("Linear(4294967296, 4294967296)"),
            std::string::npos)
      << g.status().ToString();
  Sequential big(int64_t{1} << 24, 1);
  big.Linear(int64_t{1} << 24);  // 1 PiB
  g = big.Build();
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("more than the machine's memory"),
            std::string::npos)
      << g.status().ToString();

  Sequential net(4, 1);
  net.Linear(3);
  Graph a = *net.Build(), b = *net.Build();
  const float before = b.nodes[0].params["weight"].data()[0];
  a.nodes[0].params["weight"].data()[0] = before + 1.0f;
  EXPECT_EQ(b.nodes[0].params["weight"].data()[0], before);
  EXPECT_EQ((*net.Build()).nodes[0].params["weight"].data()[0], before);
}

}  // namespace
}  // namespace ballast
