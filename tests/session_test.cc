#include "ballast/session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ballast/model.h"
#include "ballast/registry.h"
#include "ops/linear/gemm.h"
#include "ops/onednn/onednn_block.h"

namespace ballast {
namespace {

bool ops_onednn_available() { return ops::onednn::Available(); }

// Gives every BatchNorm non-trivial statistics and affine parameters, as a
// trained model would have.
void Randomize(Graph& g, uint64_t seed) {
  Generator gen(seed);
  for (Node& n : g.nodes) {
    if (n.op != "batchnorm1d") continue;
    for (auto& [name, t] : n.params) {
      Tensor fresh = t.Clone();
      if (name == "running_var") {
        gen.FillUniform(fresh.span(), 0.3, 3.0);
      } else {
        gen.FillUniform(fresh.span(), -0.8, 0.8);
      }
      t = fresh;
    }
  }
}

Graph BookMlp(uint64_t seed = 0) {
  Sequential net(784, seed);
  net.StandardBlock(256, 0.5).StandardBlock(256, 0.5).Linear(10);
  Result<Graph> g = net.Build();
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  Graph graph = *g;
  Randomize(graph, seed + 1);
  return graph;
}

std::vector<float> RandomInput(int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<float> x(static_cast<size_t>(rows * cols));
  Generator(seed).FillNormal(x, 0.0, 1.0);
  return x;
}

std::vector<float> RunSession(const Graph& g, const SessionOptions& opt,
                              const std::vector<float>& x, int64_t rows) {
  Result<std::unique_ptr<InferenceSession>> s =
      InferenceSession::Create(g, opt);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (!s.ok()) return {};
  std::vector<float> y(static_cast<size_t>(rows * (*s)->output_features()),
                       NAN);
  Status st = (*s)->Run(x.data(), rows, y.data());
  EXPECT_TRUE(st.ok()) << st.ToString();
  return y;
}

// The oracle: every node on the ref backend, no passes.
SessionOptions Reference() {
  SessionOptions o;
  o.backend = Backend::kRef;
  o.fold_batchnorm = o.fuse = o.drop_dropout = false;
  o.fold_input_normalization = false;
  return o;
}

// A double as text that reads back as the same value.
std::string Text(double v) {
  std::ostringstream out;
  out << std::setprecision(17) << v;
  return out.str();
}

// Evaluation outputs of O(1) logits through three layers: float rounding
// of dot products of length ≤ 784, amplified by BN scales ≤ ~1.5 per layer.
double Close(double expected) {
  return 2e-4 * std::max(1.0, std::fabs(expected));
}

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

// `ballast train` records the normalization it trained with in the model's
// metadata; a session applies it, folded into the first Linear or row by row,
// so that C++ and `ballast run` give the same answers.
TEST(SessionTest, AppliesTheInputNormalizationTheModelRecords) {
  const double mu = 0.2860402, sd = 0.3530239;  // Fashion-MNIST's
  const auto normalized = [&](std::vector<float> x) {
    for (float& v : x) v = float((double(v) - mu) / sd);
    return x;
  };
  std::vector<float> x(size_t(5 * 784));
  Generator(9).FillUniform(x, 0.0, 1.0);  // pixels
  Graph plain = BookMlp(7);
  const auto want = RunSession(plain, Reference(), normalized(x), 5);
  Graph g = plain;
  g.metadata["input_mean"] = "0.2860402";
  g.metadata["input_std"] = "0.3530239";
  // Row by row: the bits of normalizing first.
  EXPECT_EQ(RunSession(g, Reference(), x, 5), want);
  for (Backend backend : {Backend::kHwy, Backend::kOnednn, Backend::kRef}) {
    for (bool passes : {false, true}) {
      for (bool fold : {false, true}) {
        SessionOptions opt;
        opt.backend = backend;
        opt.fold_batchnorm = opt.fuse = opt.drop_dropout = passes;
        opt.fold_input_normalization = fold;
        Result<std::unique_ptr<InferenceSession>> s =
            InferenceSession::Create(g, opt);
        ASSERT_TRUE(s.ok()) << s.status().ToString();
        // Applied once: the optimized graph no longer asks for it.
        EXPECT_EQ((*s)->optimized_graph().metadata.count("input_mean"), 0u);
        const auto got = RunSession(g, opt, x, 5);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i) {
          ASSERT_NEAR(got[i], want[i], Close(want[i]))
              << "backend " << int(backend) << " passes " << passes << " fold "
              << fold << " output " << i;
        }
      }
    }
  }
  // With the fold on, the first Linear's weights are what changed.
  SessionOptions folding;
  folding.fold_batchnorm = folding.fuse = folding.drop_dropout = false;
  Result<std::unique_ptr<InferenceSession>> folded =
      InferenceSession::Create(g, folding);
  ASSERT_TRUE(folded.ok());
  EXPECT_EQ((*folded)->optimized_graph().nodes[0].Param("weight").data()[0],
            float(double(plain.nodes[0].Param("weight").data()[0]) / sd));
  // Turned off, the input goes in as it is.
  SessionOptions off = Reference();
  off.normalize_input = false;
  EXPECT_EQ(RunSession(g, off, x, 5), RunSession(plain, Reference(), x, 5));
  // A first Linear without bias, behind an identity, takes the fold too; so
  // does a mean far from 0 against its std, which is applied per value
  // instead (the fold would lose digits to the bias's cancellation).
  for (const auto& [mean, stddev] :
       {std::pair{0.2860402, 0.3530239}, std::pair{100.0, 1.0}}) {
    Sequential behind(784, 6);
    behind.Identity().Linear(256, /*bias=*/false).ReLU().Linear(10);
    Graph b = *behind.Build();
    std::vector<float> raw(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      raw[i] = float(mean + stddev * (double(x[i]) - mu) / sd);
    }
    std::vector<float> normal(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      normal[i] = float((double(raw[i]) - mean) / stddev);
    }
    const auto want_b = RunSession(b, Reference(), normal, 5);
    b.metadata["input_mean"] = Text(mean);
    b.metadata["input_std"] = Text(stddev);
    SessionOptions opt;  // every pass, hwy
    const auto got = RunSession(b, opt, raw, 5);
    // Folded at Fashion-MNIST's statistics, not at mean/std = 100.
    SessionOptions no_other_pass = Reference();
    no_other_pass.fold_input_normalization = true;
    Result<std::unique_ptr<InferenceSession>> s =
        InferenceSession::Create(b, no_other_pass);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    const float w = b.nodes[1].Param("weight").data()[0];
    EXPECT_EQ((*s)->optimized_graph().nodes[1].Param("weight").data()[0],
              mean < 1 ? float(double(w) / stddev) : w)
        << "mean " << mean;
    ASSERT_EQ(got.size(), want_b.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want_b[i],
                  1e-5 * std::max(1.0f, std::fabs(want_b[i])))
          << "mean " << mean << " output " << i;
    }
  }
  // A first node that is no Linear: row by row, whatever the option says.
  Sequential net(784, 4);
  net.ReLU().Linear(10);
  Graph relu_first = *net.Build();
  const auto want_relu = RunSession(relu_first, Reference(), normalized(x), 5);
  relu_first.metadata = g.metadata;
  SessionOptions fold = Reference();
  fold.fold_input_normalization = true;
  EXPECT_EQ(RunSession(relu_first, fold, x, 5), want_relu);
  // An unusable normalization is an error naming the keys.
  g.metadata["input_std"] = Text(0.0);
  Result<std::unique_ptr<InferenceSession>> bad = InferenceSession::Create(g);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not a usable normalization"),
            std::string::npos);
  g.metadata.erase("input_std");
  bad = InferenceSession::Create(g);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("input_mean without input_std"),
            std::string::npos);
}

// A session is immutable: changing the caller's graph afterwards (tensors
// share storage when copied) changes none of its answers, on any backend.
TEST(SessionTest, OwnsItsWeights) {
  for (Backend backend : {Backend::kHwy, Backend::kOnednn, Backend::kRef}) {
    for (bool passes : {false, true}) {
      Graph g = BookMlp(3);
      SessionOptions opt;
      opt.backend = backend;
      opt.fold_batchnorm = opt.fuse = opt.drop_dropout = passes;
      Result<std::unique_ptr<InferenceSession>> s =
          InferenceSession::Create(g, opt);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      const auto x = RandomInput(4, 784, 8);
      std::vector<float> before(40), after(40);
      ASSERT_TRUE((*s)->Run(x.data(), 4, before.data()).ok());
      for (Node& n : g.nodes) {
        for (auto& [name, t] : n.params) {
          for (float& v : t.span()) v = 0;
        }
      }
      ASSERT_TRUE((*s)->Run(x.data(), 4, after.data()).ok());
      EXPECT_EQ(before, after)
          << "backend " << int(backend) << " passes " << passes;
    }
  }
}

class SessionTest : public ::testing::TestWithParam<
                        std::tuple<Backend, bool /*passes*/, int /*threads*/>> {
};

TEST_P(SessionTest, EveryPlanMatchesTheReference) {
  const auto [backend, passes, threads] = GetParam();
  Graph g = BookMlp(7);
  SessionOptions opt;
  opt.backend = backend;
  opt.fold_batchnorm = opt.fuse = opt.drop_dropout = passes;
  opt.threads = threads;
  opt.max_batch = 64;
  for (int64_t rows : {1, 7, 64, 150}) {  // 150 > max_batch: chunked
    const auto x = RandomInput(rows, 784, uint64_t(rows));
    const auto want = RunSession(g, Reference(), x, rows);
    const auto got = RunSession(g, opt, x, rows);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], Close(want[i]))
          << "rows=" << rows << " i=" << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Plans, SessionTest,
    ::testing::Combine(::testing::Values(Backend::kAuto, Backend::kHwy,
                                         Backend::kOnednn, Backend::kRef),
                       ::testing::Bool(), ::testing::Values(1, 2)));

// Layers with few outputs run as dot products along K (NarrowLinear): with
// a fused ReLU, a leaky ReLU and no bias, on one and two threads, they
// match the reference; a layer with a short K between them stays a GEMM.
TEST(SessionTest, NarrowLayersMatchTheReference) {
  Sequential net(300, 5);
  net.Linear(12).ReLU().Linear(70).LeakyReLU(0.2).Linear(9, false);
  Graph g = *net.Build();
  Randomize(g, 6);
  for (bool passes : {true, false}) {
    for (int threads : {1, 2}) {
      SessionOptions opt;
      opt.backend = Backend::kHwy;
      opt.fold_batchnorm = opt.fuse = opt.drop_dropout = passes;
      opt.threads = threads;
      for (int64_t rows : {1, 5, 67}) {
        const auto x = RandomInput(rows, 300, uint64_t(rows) + 40);
        const auto want = RunSession(g, Reference(), x, rows);
        const auto got = RunSession(g, opt, x, rows);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i) {
          ASSERT_NEAR(got[i], want[i], Close(want[i]))
              << "passes=" << passes << " threads=" << threads
              << " rows=" << rows << " i=" << i;
        }
      }
    }
  }
}

TEST(SessionTest, RowsAreIndependentSoBatchStatisticsAreNeverUsed) {
  Graph g = BookMlp(2);
  Result<std::unique_ptr<InferenceSession>> s = InferenceSession::Create(g);
  ASSERT_TRUE(s.ok());
  const auto x = RandomInput(16, 784, 3);
  std::vector<float> batch(16 * 10), row(10);
  ASSERT_TRUE((*s)->Run(x.data(), 16, batch.data()).ok());
  for (int r = 0; r < 16; ++r) {
    ASSERT_TRUE((*s)->Run(x.data() + r * 784, 1, row.data()).ok());
    for (int j = 0; j < 10; ++j) {
      EXPECT_EQ(row[size_t(j)], batch[size_t(r * 10 + j)]) << r << ", " << j;
    }
  }
}

// A batch split by rows over the threads (SessionOptions::split_rows: each
// thread runs every layer on its rows, in its slice of the workspace) gives
// the bits of one thread and of each layer split by columns: for batches
// below the split (one task), at it, split unevenly over three threads, in
// max_batch chunks, with the input normalization applied row by row (a
// slice of its buffer too) or folded, fused or not, and for a graph whose
// BatchNorm uses the batch's statistics (never split).
TEST(SessionTest, SplittingTheBatchByRowsGivesTheBitsOfOneThread) {
  Graph normalized = BookMlp(11);
  normalized.metadata["input_mean"] = "100";  // too far to fold: per value
  normalized.metadata["input_std"] = "2";
  Graph folded = BookMlp(12);
  folded.metadata["input_mean"] = "0.25";
  folded.metadata["input_std"] = "0.5";
  Sequential batch_stats(784, 13);
  batch_stats.Linear(64).BatchNorm1d(1e-5, 0.1, true, false).ReLU().Linear(10);
  const Graph graphs[] = {BookMlp(10), normalized, folded,
                          *batch_stats.Build()};
  for (const Graph& g : graphs) {
    for (bool passes : {true, false}) {
      SessionOptions one;
      one.backend = Backend::kHwy;
      one.fold_batchnorm = one.fuse = one.drop_dropout = passes;
      one.max_batch = 96;
      for (int64_t rows : {1, 7, 8, 13, 96, 200}) {
        // Batch statistics need 2 to max_batch rows.
        if ((rows < 2 || rows > one.max_batch) &&
            g.BatchDependent(Registry::Builtin())) {
          continue;
        }
        const auto x = RandomInput(rows, 784, uint64_t(rows) + 50);
        const std::vector<float> want = RunSession(g, one, x, rows);
        for (int threads : {2, 3}) {
          for (bool split : {true, false}) {
            SessionOptions opt = one;
            opt.threads = threads;
            opt.split_rows = split;
            EXPECT_EQ(RunSession(g, opt, x, rows), want)
                << "rows " << rows << ", " << threads << " threads, split "
                << split << ", passes " << passes << ", " << g.nodes.size()
                << " nodes";
          }
        }
      }
    }
  }
}

// A row's outputs are the same bits whatever it runs with: alone, in a
// batch, or in max_batch chunks with a short last one. Inputs long enough
// that the GEMM splits K into blocks (the wide and short tiles once summed
// it in one, and a two-row last chunk came out differently).
TEST(SessionTest, ARowGetsTheSameBitsInAnyBatchAndAnyChunks) {
  // Inputs over two K blocks and a bit on any machine (the blocks follow L2).
  const int64_t in = 2 * ops::GemmKBlockMax() + 37;
  Sequential net(in, 4);
  net.StandardBlock(64, 0.5).Linear(10);
  Graph g = *net.Build();
  Randomize(g, 5);
  const int64_t rows = 258;
  const auto x = RandomInput(rows, in, 6);
  for (Backend backend : {Backend::kHwy, Backend::kRef}) {
    for (int threads : {1, 2}) {
      SessionOptions opt;
      opt.backend = backend;
      opt.threads = threads;
      opt.max_batch = 512;
      const std::vector<float> whole = RunSession(g, opt, x, rows);
      opt.max_batch = 256;  // chunks of 256 and 2
      EXPECT_EQ(RunSession(g, opt, x, rows), whole);
      opt.max_batch = 3;
      EXPECT_EQ(RunSession(g, opt, x, rows), whole);
      auto s = InferenceSession::Create(g, opt);
      ASSERT_TRUE(s.ok());
      std::vector<float> row(10);
      for (int64_t r : {0, 1, 100, 257}) {
        ASSERT_TRUE((*s)->Run(x.data() + r * in, 1, row.data()).ok());
        EXPECT_EQ(row, std::vector<float>(whole.begin() + r * 10,
                                          whole.begin() + r * 10 + 10))
            << "row " << r << " alone, backend " << BackendName(backend) << ", "
            << threads << " thread(s)";
      }
    }
  }
}

// The kernels read a chunk's input while they write its output: Run in
// place is refused, not answered wrongly, on every backend and however
// the buffers overlap.
TEST(SessionTest, RunRefusesAnOutputOverlappingTheInput) {
  Sequential net(64, 1);
  net.Linear(64).ReLU();
  const Graph g = *net.Build();
  std::vector<Backend> backends = {Backend::kHwy, Backend::kRef};
  if (ops_onednn_available()) backends.push_back(Backend::kOnednn);
  for (Backend backend : backends) {
    SessionOptions opt;
    opt.backend = backend;
    auto s = InferenceSession::Create(g, opt);
    ASSERT_TRUE(s.ok());
    std::vector<float> buf = RandomInput(9, 64, 2);
    for (size_t offset : {size_t{0}, size_t{64}, size_t{100}}) {
      const Status st = (*s)->Run(buf.data(), 4, buf.data() + offset);
      ASSERT_FALSE(st.ok()) << "offset " << offset;
      EXPECT_NE(st.message().find("overlaps the input"), std::string::npos)
          << st.ToString();
    }
    std::vector<float> before = buf;
    EXPECT_TRUE((*s)->Run(buf.data(), 4, buf.data() + 4 * 64).ok());
    EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + 4 * 64, before.begin()));
  }
}

TEST(SessionTest, PlanReportsBackendsAndTheFusedGraph) {
  Graph g = BookMlp();
  SessionOptions opt;
  auto s = InferenceSession::Create(g, opt);
  ASSERT_TRUE(s.ok());
  ASSERT_EQ((*s)->plan().size(), 3u);
  EXPECT_EQ((*s)->plan()[0].backend, "hwy");
  EXPECT_EQ((*s)->plan()[0].out_features, 256);
  opt.fold_batchnorm = opt.fuse = opt.drop_dropout = false;
  s = InferenceSession::Create(g, opt);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->plan().size(), 9u);
  EXPECT_EQ((*s)->plan()[1].op, "batchnorm1d");
  opt = {};
  opt.backend = Backend::kOnednn;
  s = InferenceSession::Create(g, opt);
  ASSERT_TRUE(s.ok());
  if (ops_onednn_available()) {
    for (const PlannedNode& p : (*s)->plan()) EXPECT_EQ(p.backend, "onednn");
  }
  opt.backend = Backend::kRef;
  s = InferenceSession::Create(g, opt);
  for (const PlannedNode& p : (*s)->plan()) EXPECT_EQ(p.backend, "ref");
}

TEST(SessionTest, RejectsBadOptionsAndInputs) {
  Graph g = BookMlp();
  SessionOptions opt;
  opt.threads = 0;
  EXPECT_FALSE(InferenceSession::Create(g, opt).ok());
  opt.threads = kMaxThreads + 1;  // a team libgomp could not start
  EXPECT_FALSE(InferenceSession::Create(g, opt).ok());
  opt = {};
  opt.max_batch = 0;
  EXPECT_FALSE(InferenceSession::Create(g, opt).ok());
  auto s = InferenceSession::Create(g);
  ASSERT_TRUE(s.ok());
  Result<Tensor> r = (*s)->Run(Tensor::Zeros({3, 700}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("[batch, 784]"), std::string::npos);
  EXPECT_FALSE((*s)->Run(nullptr, 2, nullptr).ok());
  EXPECT_TRUE((*s)->Run(Tensor::Zeros({2, 784})).ok());
}

// torch.relu keeps a NaN: a NaN input must come out NaN, fused or not, and
// leave the other rows alone. (x86's maxps turned it into 0 in the ReLU
// epilogue, and the output looked like a valid prediction.) oneDNN's fused
// ReLU post-op still does that; it is the comparison backend, not ours.
TEST(SessionTest, ANaNInputComesOutNaNAsInTorch) {
  Graph g = BookMlp(4);
  auto x = RandomInput(3, 784, 5);
  const std::vector<float> clean = RunSession(g, Reference(), x, 3);
  x[784 + 100] = NAN;  // row 1
  for (Backend backend : {Backend::kHwy, Backend::kOnednn, Backend::kRef}) {
    for (bool passes : {false, true}) {
      SessionOptions opt;
      opt.backend = backend;
      opt.fold_batchnorm = opt.fuse = opt.drop_dropout = passes;
      const std::vector<float> y = RunSession(g, opt, x, 3);
      const bool onednn_fused =
          backend == Backend::kOnednn && passes && ops_onednn_available();
      for (int j = 0; j < 10; ++j) {
        EXPECT_TRUE(onednn_fused || std::isnan(y[size_t(10 + j)]))
            << "backend " << int(backend) << " passes " << passes << " output "
            << j << " = " << y[size_t(10 + j)];
        for (int r : {0, 2}) {
          EXPECT_NEAR(y[size_t(r * 10 + j)], clean[size_t(r * 10 + j)],
                      Close(clean[size_t(r * 10 + j)]));
        }
      }
    }
  }
}

// Buffers past the machine's memory are an error before any allocation (a
// 300-byte model of one ReLU over 2^30 inputs used to abort on bad_alloc).
TEST(SessionTest, RefusesBuffersLargerThanTheMachine) {
  Graph g;
  g.input_features = int64_t{1} << 30;
  Node relu;
  relu.name = "relu";
  relu.op = "relu";
  g.nodes.push_back(relu);
  SessionOptions opt;
  opt.max_batch = 64;
  auto s = InferenceSession::Create(g, opt);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(s.status().message().find("more than the machine's memory"),
            std::string::npos)
      << s.status().ToString();
}

TEST(SessionTest, BatchStatisticsModelsRefuseToBeChunked) {
  Sequential net(6, 1);
  net.Linear(5).BatchNorm1d(1e-5, 0.1, true, /*track_running_stats=*/false);
  SessionOptions opt;
  opt.max_batch = 4;
  auto s = InferenceSession::Create(*net.Build(), opt);
  ASSERT_TRUE(s.ok());
  std::vector<float> x(6 * 6, 1.0f), y(6 * 5);
  Status st = (*s)->Run(x.data(), 6, y.data());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("max_batch"), std::string::npos);
  st = (*s)->Run(x.data(), 1, y.data());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("more than 1 value per channel"),
            std::string::npos);
  EXPECT_TRUE((*s)->Run(x.data(), 4, y.data()).ok());
}

// A user's op through the public registration API: y = factor·x.
class ScaleKernel : public OpKernel {
 public:
  ScaleKernel(double factor, int64_t width) : factor_(factor), width_(width) {}
  Status Run(const float* x, int64_t rows, float* y) const override {
    for (int64_t i = 0; i < rows * width_; ++i) y[i] = float(x[i] * factor_);
    return Status::Ok();
  }

 private:
  double factor_;
  int64_t width_;
};

// Linear(4 → 3), then a node of a user's op.
Graph LinearThen(const std::string& op, const std::string& name) {
  Sequential net(4, 1);
  net.Linear(3);
  Graph g = *net.Build();
  Node n;
  n.name = name;
  n.op = op;
  g.nodes.push_back(n);
  return g;
}

// Copies its input and records the rows of every call.
class RowsKernel : public OpKernel {
 public:
  RowsKernel(int64_t width, std::mutex* mu, std::multiset<int64_t>* calls)
      : width_(width), mu_(mu), calls_(calls) {}
  Status Run(const float* x, int64_t rows, float* y) const override {
    std::copy(x, x + rows * width_, y);
    std::lock_guard<std::mutex> lock(*mu_);
    calls_->insert(rows);
    return Status::Ok();
  }

 private:
  int64_t width_;
  std::mutex* mu_;
  std::multiset<int64_t>* calls_;
};

// How Run splits a batch, seen from a kernel: by rows into one task per
// thread from 4 rows a thread (13 rows on 3 threads: 4, 4 and 5), else
// whole (the layers split by columns), and whole with split_rows off or
// one thread; the outputs the same bits every way.
TEST(RegistryTest, AKernelGetsEachThreadsShareOfTheRows) {
  std::mutex mu;
  std::multiset<int64_t> calls;
  Registry reg = Registry::WithBuiltins();
  ASSERT_TRUE(reg.RegisterOp({"rows",
                              "y = x",
                              {},
                              {},
                              [](const Node&, int64_t in) -> Result<int64_t> {
                                return in;
                              },
                              nullptr})
                  .ok());
  ASSERT_TRUE(reg.RegisterKernel(
                     "rows", {"ref", nullptr,
                              [&](const Node&, const KernelContext& c)
                                  -> Result<std::unique_ptr<OpKernel>> {
                                return std::unique_ptr<OpKernel>(
                                    new RowsKernel(c.in_features, &mu, &calls));
                              }})
                  .ok());
  const Graph g = LinearThen("rows", "record");
  const auto x = RandomInput(13, 4, 21);
  std::vector<float> want;
  struct Case {
    int threads;
    bool split;
    int64_t rows;
    std::multiset<int64_t> calls;
  };
  for (const Case& c : {Case{1, true, 13, {13}}, Case{3, true, 13, {4, 4, 5}},
                        Case{3, true, 11, {11}}, Case{3, false, 13, {13}},
                        Case{2, true, 8, {4, 4}}, Case{2, true, 7, {7}}}) {
    SessionOptions opt;
    opt.registry = &reg;
    opt.threads = c.threads;
    opt.split_rows = c.split;
    calls.clear();
    const std::vector<float> y = RunSession(g, opt, x, c.rows);
    EXPECT_EQ(calls, c.calls) << c.threads << " threads, split " << c.split
                              << ", " << c.rows << " rows";
    if (c.rows != 13) continue;
    if (want.empty()) want = y;
    EXPECT_EQ(y, want) << c.threads << " threads";
  }
}

TEST(RegistryTest, UsersRegisterTheirOwnOpAndRunIt) {
  Registry reg = Registry::WithBuiltins();
  ASSERT_TRUE(reg.RegisterOp({"scale",
                              "y = factor·x",
                              {{"factor", AttrType::kFloat, 1.0, "multiplier"}},
                              {},
                              [](const Node&, int64_t in) -> Result<int64_t> {
                                return in;
                              },
                              nullptr})
                  .ok());
  ASSERT_TRUE(
      reg.RegisterKernel("scale", {"ref", nullptr,
                                   [](const Node& n, const KernelContext& c)
                                       -> Result<std::unique_ptr<OpKernel>> {
                                     return std::unique_ptr<OpKernel>(
                                         new ScaleKernel(n.GetFloat("factor"),
                                                         c.in_features));
                                   }})
          .ok());
  EXPECT_FALSE(reg.RegisterOp({"scale", "", {}, {}, nullptr, nullptr}).ok());
  EXPECT_FALSE(reg.RegisterKernel("nope", {"ref", nullptr, nullptr}).ok());

  Graph g = LinearThen("scale", "times3");
  g.nodes.back().attrs["factor"] = 3.0;
  EXPECT_FALSE(InferenceSession::Create(g).ok());  // builtin registry
  SessionOptions opt;
  opt.registry = &reg;
  auto s = InferenceSession::Create(g, opt);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> y(3), base(3);
  ASSERT_TRUE((*s)->Run(x.data(), 1, y.data()).ok());
  g.nodes.pop_back();
  auto plain = InferenceSession::Create(g);
  ASSERT_TRUE((*plain)->Run(x.data(), 1, base.data()).ok());
  for (int j = 0; j < 3; ++j)
    EXPECT_FLOAT_EQ(y[size_t(j)], 3 * base[size_t(j)]);
}

// A user's op that infers no width, or whose kernel comes out null, is an
// error at Create, not a crash at Run.
TEST(RegistryTest, AUsersOpWithoutWidthOrKernelIsRefused) {
  for (int mode : {0, 1}) {
    Registry reg = Registry::WithBuiltins();
    ASSERT_TRUE(
        reg.RegisterOp({"odd",
                        "a broken op",
                        {},
                        {},
                        [mode](const Node&, int64_t in) -> Result<int64_t> {
                          return mode == 0 ? int64_t{-3} : in;
                        },
                        nullptr})
            .ok());
    ASSERT_TRUE(
        reg.RegisterKernel("odd", {"ref", nullptr,
                                   [](const Node&, const KernelContext&)
                                       -> Result<std::unique_ptr<OpKernel>> {
                                     return std::unique_ptr<OpKernel>();
                                   }})
            .ok());
    const Graph g = LinearThen("odd", "odd");
    SessionOptions opt;
    opt.registry = &reg;
    auto s = InferenceSession::Create(g, opt);
    ASSERT_FALSE(s.ok()) << "mode " << mode;
    EXPECT_NE(s.status().message().find(mode == 0 ? "gives -3 output features"
                                                  : "null pointer"),
              std::string::npos)
        << s.status().ToString();
  }
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

// 8 threads × 1000 runs on one session against serial results.
TEST(SessionConcurrencyTest, ManyThreadsOneSessionMatchSerialResults) {
  Graph g = BookMlp(4);
  for (Backend backend : {Backend::kHwy, Backend::kOnednn}) {
    SessionOptions opt;
    opt.backend = backend;
    opt.max_batch = 8;
    auto s = InferenceSession::Create(g, opt);
    ASSERT_TRUE(s.ok());
    const InferenceSession& session = **s;
    constexpr int kThreads = 8, kRuns = 1000;
    std::vector<std::vector<float>> inputs, expected;
    for (int t = 0; t < kThreads; ++t) {
      const int64_t rows = 1 + t % 3;
      inputs.push_back(RandomInput(rows, 784, uint64_t(100 + t)));
      expected.emplace_back(static_cast<size_t>(rows * 10));
      ASSERT_TRUE(
          session.Run(inputs.back().data(), rows, expected.back().data()).ok());
    }
    std::vector<int> mismatches(kThreads, 0);
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&, t] {
        const int64_t rows = 1 + t % 3;
        std::vector<float> y(static_cast<size_t>(rows * 10));
        for (int r = 0; r < kRuns; ++r) {
          if (!session.Run(inputs[size_t(t)].data(), rows, y.data()).ok() ||
              y != expected[size_t(t)]) {
            ++mismatches[size_t(t)];
          }
        }
      });
    }
    for (std::thread& w : workers) w.join();
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_EQ(mismatches[size_t(t)], 0)
          << BackendName(backend) << " thread " << t;
    }
  }
}

}  // namespace
}  // namespace ballast
