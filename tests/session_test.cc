// InferenceSession: every plan against the reference (backends, passes,
// threads), the input normalization a model records, chunks and row splits
// giving the same bits, errors for bad options and inputs, and many threads
// calling one session.
#include "ballast/session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "ballast/model.h"
#include "ballast/registry.h"
#include "ops/linear/gemm.h"
#include "tests/session_test_util.h"

namespace ballast {
namespace {

using test::BookMlp;
using test::Close;
using test::ops_onednn_available;
using test::RandomInput;
using test::Randomize;
using test::Reference;
using test::RunSession;
using test::Text;

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
