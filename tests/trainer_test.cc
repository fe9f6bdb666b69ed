// Trainer (ballast/trainer.h): steps, optimizers fused into the GEMMs,
// checkpoints and resumption, thread counts, the zero-skipping and masked
// GEMMs, errors.
#include "ballast/trainer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ballast/data.h"
#include "ballast/format.h"
#include "ballast/model.h"
#include "ballast/session.h"
#include "ops/ref/cross_entropy.h"
#include "ops/ref/linear.h"
#include "tests/kernel_tester.h"

namespace ballast {
namespace {

// A learnable problem: the label is the argmax of a fixed linear map of x.
struct Problem {
  int64_t rows, features, classes;
  std::vector<float> x;
  std::vector<int32_t> y;
};

Problem MakeProblem(int64_t rows, int64_t features, int64_t classes,
                    uint64_t seed) {
  Problem p{rows, features, classes,
            std::vector<float>(size_t(rows * features)),
            std::vector<int32_t>(size_t(rows))};
  Generator g(seed);
  g.FillNormal(p.x, 0.0, 1.0);
  std::vector<float> map(size_t(features * classes));
  g.FillNormal(map, 0.0, 1.0);
  for (int64_t r = 0; r < rows; ++r) {
    double best = -1e30;
    for (int64_t c = 0; c < classes; ++c) {
      double s = 0;
      for (int64_t f = 0; f < features; ++f) {
        s += p.x[size_t(r * features + f)] * map[size_t(f * classes + c)];
      }
      if (s > best) best = s, p.y[size_t(r)] = int32_t(c);
    }
  }
  return p;
}

Graph Mlp(int64_t in, int64_t out, double dropout, uint64_t seed) {
  Sequential net(in, seed);
  net.StandardBlock(32, dropout).StandardBlock(24, dropout).Linear(out);
  return *net.Build();
}

void ExpectBitIdentical(const Graph& a, const Graph& b) {
  ASSERT_EQ(a.nodes.size(), b.nodes.size());
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    for (const auto& [name, t] : a.nodes[i].params) {
      const Tensor& u = b.nodes[i].Param(name);
      ASSERT_EQ(t.shape(), u.shape());
      EXPECT_EQ(0, std::memcmp(t.data(), u.data(), t.nbytes()))
          << a.nodes[i].name << "." << name;
    }
  }
}

// Whether any parameter of a and b (of the same shapes) differs in a bit.
bool AnyBitDiffers(const Graph& a, const Graph& b) {
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    for (const auto& [name, t] : a.nodes[i].params) {
      const Tensor& u = b.nodes[i].Param(name);
      if (std::memcmp(t.data(), u.data(), t.nbytes()) != 0) return true;
    }
  }
  return false;
}

TEST(TrainerTest, LearnsASeparableProblem) {
  const Problem p = MakeProblem(512, 10, 4, 1);
  for (bool fuse : {true, false}) {
    TrainerOptions opt;
    opt.fuse = fuse;
    opt.optimizer.lr = 0.1;
    opt.optimizer.momentum = 0.9;
    auto t = Trainer::Create(Mlp(10, 4, 0.1, 2), opt);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    double first = 0, last = 0;
    for (int epoch = 0; epoch < 20; ++epoch) {
      for (int64_t b = 0; b < 512; b += 64) {
        Result<StepResult> r =
            (*t)->Step(p.x.data() + b * 10, p.y.data() + b, nullptr, 64);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        if (epoch == 0 && b == 0) first = r->loss;
        last = r->loss;
      }
    }
    EXPECT_LT(last, 0.5 * first) << "fuse=" << fuse;
    Result<EvalResult> ev = (*t)->Evaluate(p.x.data(), p.y.data(), 512);
    ASSERT_TRUE(ev.ok());
    EXPECT_GT(ev->accuracy, 0.9) << "fuse=" << fuse;
  }
}

// A checkpoint written mid-run and resumed reproduces the uninterrupted run
// bit for bit (weights, running statistics, optimizer state, dropout RNG).
TEST(TrainerTest, ResumingFromACheckpointIsBitExact) {
  const Problem p = MakeProblem(256, 12, 3, 5);
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    TrainerOptions opt;
    opt.optimizer.kind = kind;
    opt.optimizer.lr = kind == OptimizerKind::kSgd ? 0.05 : 1e-3;
    opt.optimizer.momentum = kind == OptimizerKind::kSgd ? 0.9 : 0.0;
    opt.seed = 7;
    const Graph g = Mlp(12, 3, 0.3, 8);
    auto run = [&](Trainer& t, int from, int to) {
      for (int s = from; s < to; ++s) {
        const int64_t b = (s * 32) % 256;
        ASSERT_TRUE(
            t.Step(p.x.data() + b * 12, p.y.data() + b, nullptr, 32).ok());
      }
    };
    auto straight = Trainer::Create(g, opt);
    ASSERT_TRUE(straight.ok());
    run(**straight, 0, 10);

    auto first = Trainer::Create(g, opt);
    ASSERT_TRUE(first.ok());
    run(**first, 0, 4);
    Result<std::vector<uint8_t>> bytes =
        SerializeModel((*first)->Checkpoint({}));
    ASSERT_TRUE(bytes.ok());
    Result<Model> ck = ParseModel(*bytes);
    ASSERT_TRUE(ck.ok()) << ck.status().ToString();
    EXPECT_TRUE(ck->checkpoint);
    auto resumed = Trainer::Resume(*ck, opt);
    ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
    EXPECT_EQ((*resumed)->step(), 4);
    run(**resumed, 4, 10);
    ExpectBitIdentical((*straight)->CurrentGraph(), (*resumed)->CurrentGraph());
  }
}

constexpr OptimizerKind kOptimizers[] = {
    OptimizerKind::kSgd, OptimizerKind::kAdam, OptimizerKind::kAdamW};

// Options for `kind` (SGD with momentum 0.9) and weight decay 1e-3.
TrainerOptions UpdateOptions(OptimizerKind kind) {
  TrainerOptions opt;
  opt.optimizer.kind = kind;
  opt.optimizer.lr = kind == OptimizerKind::kSgd ? 0.05 : 1e-2;
  opt.optimizer.momentum = kind == OptimizerKind::kSgd ? 0.9 : 0.0;
  opt.optimizer.weight_decay = 1e-3;
  return opt;
}

// A trainer after three steps of 32 rows of p (12 features); nullptr (and a
// test failure) on an error.
std::unique_ptr<Trainer> ThreeSteps(const Graph& g, const Problem& p,
                                    const TrainerOptions& opt) {
  auto created = Trainer::Create(g, opt);
  if (!created.ok()) {
    ADD_FAILURE() << created.status().ToString();
    return nullptr;
  }
  std::unique_ptr<Trainer> t = std::move(*created);
  for (int s = 0; s < 3; ++s) {
    auto r =
        t->Step(p.x.data() + s * 32 * 12, p.y.data() + s * 32, nullptr, 32);
    if (!r.ok()) {
      ADD_FAILURE() << r.status().ToString();
      return nullptr;
    }
  }
  return t;
}

// Without kept gradients the fused SGD, Adam and AdamW updates are the same
// bits; only the weights updated inside their gradient GEMM drop out of
// Gradients().
TEST(TrainerTest, NotKeepingGradientsChangesNoWeight) {
  const Problem p = MakeProblem(96, 12, 3, 5);
  const Graph g = Mlp(12, 3, 0.2, 8);
  for (OptimizerKind kind : kOptimizers) {
    SCOPED_TRACE(OptimizerName(kind));
    TrainerOptions opt = UpdateOptions(kind);
    opt.keep_gradients = false;
    const auto some_kept = ThreeSteps(g, p, opt);
    opt.keep_gradients = true;
    const auto all_kept = ThreeSteps(g, p, opt);
    ASSERT_TRUE(some_kept && all_kept);
    ExpectBitIdentical(some_kept->CurrentGraph(), all_kept->CurrentGraph());
    const auto kept = all_kept->Gradients(), some = some_kept->Gradients();
    EXPECT_LT(some.size(), kept.size());
    for (const auto& [key, grad] : some) {
      ASSERT_TRUE(kept.count(key)) << key;
      EXPECT_EQ(0, std::memcmp(grad.data(), kept.at(key).data(), grad.nbytes()))
          << key;
    }
    // The hidden Linear weights are updated in their GEMM (the output
    // layer's too where its 3 outputs fill a panel, as on SCALAR).
    EXPECT_FALSE(some.count("block1.linear.weight"));
    EXPECT_TRUE(some.count("block1.linear.bias"));
  }
}

// The updates fused into the weight-gradient GEMMs are the bits of the
// separate optimizer pass: with a clip norm that never clips, the trainer
// updates every weight after the backward pass instead (it needs the
// global norm first), and the weights come out the same.
TEST(TrainerTest, FusedUpdatesEqualTheSeparatePass) {
  const Problem p = MakeProblem(96, 12, 3, 5);
  const Graph g = Mlp(12, 3, 0.2, 8);
  for (OptimizerKind kind : kOptimizers) {
    SCOPED_TRACE(OptimizerName(kind));
    TrainerOptions opt = UpdateOptions(kind);
    const auto fused = ThreeSteps(g, p, opt);
    opt.clip_grad_norm = 1e30;
    const auto separate = ThreeSteps(g, p, opt);
    ASSERT_TRUE(fused && separate);
    ExpectBitIdentical(fused->CurrentGraph(), separate->CurrentGraph());
  }
}

// SGD with momentum 0.9 or Adam (both fused into the gradient GEMM), on
// `threads`, with no gradient kept: the trainer as `ballast train` runs it.
TrainerOptions StepOptions(OptimizerKind kind, int threads) {
  TrainerOptions opt;
  opt.optimizer.kind = kind;
  opt.optimizer.momentum = kind == OptimizerKind::kSgd ? 0.9 : 0.0;
  opt.threads = threads;
  opt.keep_gradients = false;
  return opt;
}

// A trainer after four steps of 160 rows of p (20 features), each step's
// loss in `losses` when given; nullptr (and a test failure) on an error.
std::unique_ptr<Trainer> FourSteps(const Graph& g, const Problem& p,
                                   const TrainerOptions& opt,
                                   double* losses = nullptr) {
  auto created = Trainer::Create(g, opt);
  if (!created.ok()) {
    ADD_FAILURE() << created.status().ToString();
    return nullptr;
  }
  std::unique_ptr<Trainer> t = std::move(*created);
  for (int s = 0; s < 4; ++s) {
    auto r =
        t->Step(p.x.data() + s * 160 * 20, p.y.data() + s * 160, nullptr, 160);
    if (!r.ok()) {
      ADD_FAILURE() << "step " << s << ": " << r.status().ToString();
      return nullptr;
    }
    if (losses != nullptr) losses[s] = r->loss;
  }
  return t;
}

// Every pass splits its work so that what a thread computes does not depend
// on how many there are (and the step's tasks not on which thread runs
// them): training gives the same bits on 1, 2 and 3 threads, fused or not,
// with SGD and Adam (both fused into the gradient GEMMs).
TEST(TrainerTest, TrainingGivesTheSameBitsOnAnyThreadCount) {
  // On every target: where panels are narrower than the 64-column mask
  // words (AVX2, NEON), three threads hand the BN forward column ranges
  // that are not whole words, and it runs after the statistics instead.
  test::ForEachTarget([](const char*) {
    const Problem p = MakeProblem(640, 20, 5, 11);
    Sequential net(20, 3);
    net.StandardBlock(160, 0.5).StandardBlock(130, 0.5).Linear(5);
    const Graph g = *net.Build();
    for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
      for (bool fuse : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "fuse " << fuse);
        std::unique_ptr<Trainer> one;
        for (int threads : {1, 2, 3}) {
          SCOPED_TRACE(::testing::Message() << "threads " << threads);
          TrainerOptions opt = StepOptions(kind, threads);
          opt.fuse = fuse;
          std::unique_ptr<Trainer> t = FourSteps(g, p, opt);
          ASSERT_NE(t, nullptr);
          if (threads == 1) {
            one = std::move(t);
          } else {
            ExpectBitIdentical(one->CurrentGraph(), t->CurrentGraph());
          }
        }
      }
    }
  });
}

// `ballast train` gathers the next batch while a step runs (StepSideWork):
// the steps see the same batches, so the weights come out the same.
TEST(TrainerTest, GatheringTheNextBatchDuringAStepChangesNothing) {
  const Problem p = MakeProblem(640, 20, 5, 11);
  Dataset d;
  d.rows = p.rows, d.features = p.features, d.classes = p.classes;
  d.x = p.x, d.labels = p.y;
  std::vector<int64_t> order(size_t(d.rows));
  for (int64_t i = 0; i < d.rows; ++i) order[size_t(i)] = i;
  const Graph g = Mlp(20, 5, 0.5, 3);
  for (int threads : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << "threads " << threads);
    const TrainerOptions opt = StepOptions(OptimizerKind::kSgd, threads);
    std::unique_ptr<Trainer> plain = FourSteps(g, p, opt);
    ASSERT_NE(plain, nullptr);
    auto created = Trainer::Create(g, opt);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    Trainer& t = **created;
    std::vector<float> x[2] = {std::vector<float>(160 * 20),
                               std::vector<float>(160 * 20)};
    std::vector<int32_t> y[2] = {std::vector<int32_t>(160),
                                 std::vector<int32_t>(160)};
    const auto rows = [&](int s) {
      return std::span<const int64_t>(order).subspan(size_t(s * 160), 160);
    };
    ASSERT_TRUE(GatherBatch(d, rows(0), x[0].data(), y[0].data()).ok());
    for (int s = 0; s < 4; ++s) {
      const int cur = s % 2, next = 1 - cur;
      std::vector<int> runs(23, 0);  // chunks of 7 rows
      StepSideWork side;
      if (s + 1 < 4) {
        side.chunks = int64_t(runs.size());
        side.run = [&, r = rows(s + 1)](int64_t c) {
          ++runs[size_t(c)];
          GatherBatchRows(d, r, c * 7, std::min<int64_t>(160, c * 7 + 7),
                          x[next].data(), y[next].data());
        };
      }
      auto r = t.Step(x[cur].data(), y[cur].data(), nullptr, 160, side);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      if (s + 1 < 4) {
        for (int n : runs) EXPECT_EQ(n, 1);
      }
    }
    ExpectBitIdentical(plain->CurrentGraph(), t.CurrentGraph());
  }
}

// A fused block after another skips its input's zeros (TrainerOptions::
// skip_zeros): its GEMMs sum the same terms in the same order and the
// statistics take the epilogue's sums, so training gives the same bits as
// the dense GEMMs, with dropout 0.5 (a quarter nonzero) and 0.4 (about 30%:
// steps on both sides of the layer's threshold), fused SGD and Adam, on one
// and two threads. The second block's 130 outputs fill whole wide tiles and
// leave a narrow panel; its K of 160 (the first block's width in the
// forward, the batch in the weight gradient) runs two of AVX2's K blocks.
TEST(TrainerTest, SkippingZerosGivesTheBitsOfTheDenseGemms) {
  const Problem p = MakeProblem(640, 20, 5, 11);
  for (double dropout : {0.5, 0.4}) {
    Sequential net(20, 3);
    net.StandardBlock(160, dropout).StandardBlock(130, dropout).Linear(5);
    const Graph g = *net.Build();
    for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
      for (int threads : {1, 2}) {
        SCOPED_TRACE(::testing::Message()
                     << "dropout " << dropout << ", threads " << threads);
        std::unique_ptr<Trainer> t[2];
        for (int skip = 0; skip < 2; ++skip) {
          TrainerOptions opt = StepOptions(kind, threads);
          opt.skip_zeros = skip == 1;
          t[skip] = FourSteps(g, p, opt);
          ASSERT_NE(t[skip], nullptr);
        }
        ExpectBitIdentical(t[0]->CurrentGraph(), t[1]->CurrentGraph());
      }
    }
  }
}

// The masked input gradient (TrainerOptions::masked_input_grad) of the
// layers after a fused block trains as the dense dX up to rounding (the dot
// products sum in another order): the same losses step by step, with fused
// SGD (dX must read the weight before its update inside the gradient GEMM)
// and Adam, on one and two threads; and with SGD the same weights, though
// not the same bits (dropout 0.5 passes about a quarter, so the masked dX
// runs). (Adam turns the rounding noise that is the whole gradient of a
// Linear bias before BatchNorm into steps of lr.) Either way, one thread and
// two give the same bits.
TEST(TrainerTest, MaskedInputGradientTrainsAsTheDenseOne) {
  const Problem p = MakeProblem(640, 20, 5, 13);
  Sequential net(20, 3);
  net.StandardBlock(160, 0.5).StandardBlock(130, 0.5).Linear(5);
  const Graph g = *net.Build();
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    std::unique_ptr<Trainer> masked[2];
    for (int threads : {1, 2}) {
      SCOPED_TRACE(::testing::Message()
                   << (kind == OptimizerKind::kSgd ? "SGD" : "Adam")
                   << ", threads " << threads);
      std::unique_ptr<Trainer> t[2];
      double loss[2][4];
      for (int mask = 0; mask < 2; ++mask) {
        TrainerOptions opt = StepOptions(kind, threads);
        opt.optimizer.lr = kind == OptimizerKind::kSgd ? 0.05 : 1e-3;
        opt.masked_input_grad = mask == 1;
        t[mask] = FourSteps(g, p, opt, loss[mask]);
        ASSERT_NE(t[mask], nullptr);
      }
      for (int s = 0; s < 4; ++s) {
        EXPECT_NEAR(loss[1][s], loss[0][s], 1e-6 * loss[0][s]) << "step " << s;
      }
      if (kind == OptimizerKind::kSgd) {
        const Graph dense = t[0]->CurrentGraph();
        const Graph sparse = t[1]->CurrentGraph();
        ASSERT_EQ(dense.nodes.size(), sparse.nodes.size());
        EXPECT_TRUE(AnyBitDiffers(dense, sparse));
        for (size_t i = 0; i < dense.nodes.size(); ++i) {
          for (const auto& [name, a] : dense.nodes[i].params) {
            const Tensor& b = sparse.nodes[i].Param(name);
            ASSERT_EQ(a.shape(), b.shape());
            for (int64_t j = 0; j < a.numel(); ++j) {
              ASSERT_NEAR(a.data()[j], b.data()[j],
                          1e-7 + 1e-6 * std::fabs(a.data()[j]))
                  << dense.nodes[i].name << "." << name << "[" << j << "]";
            }
          }
        }
      }
      masked[threads - 1] = std::move(t[1]);
    }
    ExpectBitIdentical(masked[0]->CurrentGraph(), masked[1]->CurrentGraph());
  }
}

// Where the block before passes half its gradient (ReLU, no dropout), the
// dense GEMM is faster than the masked dot products and computes dX: the
// same bits as masked_input_grad = false, on one thread and two.
TEST(TrainerTest, MaskedInputGradientIsTheDenseOneWhereHalfPasses) {
  const Problem p = MakeProblem(640, 20, 5, 13);
  Sequential net(20, 3);
  net.StandardBlock(160, 0.0).StandardBlock(130, 0.0).Linear(5);
  const Graph g = *net.Build();
  for (int threads : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << "threads " << threads);
    std::unique_ptr<Trainer> t[2];
    for (int mask = 0; mask < 2; ++mask) {
      TrainerOptions opt = StepOptions(OptimizerKind::kSgd, threads);
      opt.masked_input_grad = mask == 1;
      t[mask] = FourSteps(g, p, opt);
      ASSERT_NE(t[mask], nullptr);
    }
    ExpectBitIdentical(t[0]->CurrentGraph(), t[1]->CurrentGraph());
  }
}

// A Linear with few outputs and a long input (the output layer's 256 → 10)
// runs its forward as dot products, from a row-major copy of W made after
// each update: every step's loss is that of the weights before it, computed
// in double. A copy that is stale or misread fails here. On every target:
// where ten outputs are wider than a vector (SSE4, scalar), Wᵀ's panel
// layout holds them in several panels.
TEST(TrainerTest, AFewOutputLinearComputesTheLossOfItsCurrentWeights) {
  test::ForEachTarget([](const char*) {
    for (int64_t classes : {10, 3}) {
      for (int threads : {1, 2}) {
        SCOPED_TRACE(::testing::Message()
                     << classes << " classes, threads " << threads);
        const int64_t features = 96, batch = 64;
        const Problem p = MakeProblem(4 * batch, features, classes, 21);
        Sequential net(features, 22);
        net.Linear(classes);
        auto t = Trainer::Create(*net.Build(),
                                 StepOptions(OptimizerKind::kSgd, threads));
        ASSERT_TRUE(t.ok()) << t.status().ToString();
        for (int64_t s = 0; s < 4; ++s) {
          const Graph g = (*t)->CurrentGraph();
          const Node* lin = nullptr;
          for (const Node& n : g.nodes) {
            if (!n.Param("weight").empty()) lin = &n;
          }
          ASSERT_NE(lin, nullptr);
          const Tensor &w = lin->Param("weight"), &b = lin->Param("bias");
          ASSERT_EQ(w.numel(), classes * features);
          const float* x = p.x.data() + s * batch * features;
          const int32_t* y = p.y.data() + s * batch;
          std::vector<double> xd(x, x + batch * features),
              wd(w.data(), w.data() + w.numel()),
              bd(b.data(), b.data() + classes), logits(size_t(batch * classes));
          ref::linear_forward(xd.data(), wd.data(), bd.data(), logits.data(),
                              batch, features, classes);
          double want = 0;
          ASSERT_TRUE(ref::cross_entropy_forward(logits.data(), y, batch,
                                                 classes, &want)
                          .ok());
          Result<StepResult> r = (*t)->Step(x, y, nullptr, batch);
          ASSERT_TRUE(r.ok()) << r.status().ToString();
          EXPECT_NEAR(r->loss, want, 1e-5 * want) << "step " << s;
        }
      }
    }
  });
}

// A checkpoint carries one optimizer's state: another optimizer must not read
// SGD's momentum as Adam's first moment (or find no second moment).
TEST(TrainerTest, ResumingWithAnotherOptimizerIsAnError) {
  const Problem p = MakeProblem(64, 12, 3, 5);
  const Graph g = Mlp(12, 3, 0.0, 8);
  const auto checkpoint = [&](OptimizerKind kind) {
    TrainerOptions opt;
    opt.optimizer.kind = kind;
    opt.optimizer.momentum = kind == OptimizerKind::kSgd ? 0.9 : 0.0;
    auto t = Trainer::Create(g, opt);
    EXPECT_TRUE(t.ok());
    EXPECT_TRUE((*t)->Step(p.x.data(), p.y.data(), nullptr, 32).ok());
    return *ParseModel(*SerializeModel((*t)->Checkpoint({})));
  };
  const Model sgd = checkpoint(OptimizerKind::kSgd);
  const Model adam = checkpoint(OptimizerKind::kAdam);
  EXPECT_EQ(sgd.graph.metadata.at("trainer.optimizer"), "sgd");
  EXPECT_EQ(adam.graph.metadata.at("trainer.optimizer"), "adam");
  TrainerOptions opt;
  for (auto [ck, kind] : {std::pair{&sgd, OptimizerKind::kAdam},
                          std::pair{&sgd, OptimizerKind::kAdamW},
                          std::pair{&adam, OptimizerKind::kSgd}}) {
    opt.optimizer.kind = kind;
    auto r = Trainer::Resume(*ck, opt);
    ASSERT_FALSE(r.ok()) << OptimizerName(kind);
    EXPECT_NE(r.status().message().find(std::string("which ") +
                                        OptimizerName(kind) + " cannot"),
              std::string::npos)
        << r.status().ToString();
  }
  // Adam and AdamW keep the same state, as in PyTorch.
  opt.optimizer.kind = OptimizerKind::kAdamW;
  EXPECT_TRUE(Trainer::Resume(adam, opt).ok());
  // Unfused layers keep their state otherwise than fused ones: named, not
  // mistaken for a damaged file.
  opt.fuse = false;
  auto unfused = Trainer::Resume(adam, opt);
  ASSERT_FALSE(unfused.ok());
  EXPECT_NE(unfused.status().message().find(
                "trained with TrainerOptions::fuse = true"),
            std::string::npos)
      << unfused.status().ToString();
  opt.fuse = true;
  // Without the name (an older checkpoint) the buffers tell.
  Model old = adam;
  old.graph.metadata.erase("trainer.optimizer");
  opt.optimizer.kind = OptimizerKind::kSgd;
  EXPECT_FALSE(Trainer::Resume(old, opt).ok());
  opt.optimizer.kind = OptimizerKind::kAdam;
  EXPECT_TRUE(Trainer::Resume(old, opt).ok());
  // Adam state missing its second moment is damaged, not a fresh start.
  for (auto it = old.extra.begin(); it != old.extra.end();) {
    it = it->first.ends_with("/buf2") ? old.extra.erase(it) : std::next(it);
  }
  old.graph.metadata["trainer.optimizer"] = "adam";
  auto r = Trainer::Resume(old, opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("second moment"), std::string::npos)
      << r.status().ToString();
  // Metadata that is not a count is an error, not an exception.
  old = adam;
  old.graph.metadata["trainer.step"] = "12x";
  r = Trainer::Resume(old, opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("trainer.step"), std::string::npos);
}

// The trainer keeps Linear weights in its GEMM layout; what it hands out —
// gradients, graph, optimizer state in checkpoints — is in the graph's
// layout. After one SGD step with momentum the momentum buffer is the
// gradient itself, and the weight moved by −lr·gradient.
TEST(TrainerTest, GradientsWeightsAndOptimizerStateComeOutInTheGraphLayout) {
  const Problem p = MakeProblem(64, 12, 3, 11);
  TrainerOptions opt;
  opt.optimizer.lr = 0.5;
  opt.optimizer.momentum = 0.9;
  const Graph g = Mlp(12, 3, 0.0, 12);
  auto t = Trainer::Create(g, opt);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE((*t)->Step(p.x.data(), p.y.data(), nullptr, 64).ok());
  const std::map<std::string, Tensor> grads = (*t)->Gradients();
  const Model ck = (*t)->Checkpoint({});
  const Graph after = (*t)->CurrentGraph();
  int weights = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (n.op != "linear") continue;
    const std::string key = n.name + ".weight";
    const Tensor& w0 = n.Param("weight");
    const Tensor& w1 = after.nodes[i].Param("weight");
    const Tensor& grad = grads.at(key);
    const Tensor& buf = ck.extra.at("optimizer/" + key + "/buf1");
    ASSERT_EQ(grad.shape(), w0.shape()) << key;
    ASSERT_EQ(buf.shape(), w0.shape()) << key;
    EXPECT_EQ(0, std::memcmp(buf.data(), grad.data(), grad.nbytes())) << key;
    for (int64_t j = 0; j < w0.numel(); ++j) {
      ASSERT_EQ(w1.data()[j], w0.data()[j] - 0.5f * grad.data()[j])
          << key << " element " << j;
    }
    ++weights;
  }
  EXPECT_EQ(weights, 3);
}

TEST(TrainerTest, ProfileTimesEveryLayerPhaseOfEveryStep) {
  const Problem p = MakeProblem(64, 12, 3, 13);
  for (double clip : {0.0, 1.0}) {  // per-layer updates, and all at the end
    TrainerOptions opt;
    opt.profile = true;
    opt.clip_grad_norm = clip;
    auto t = Trainer::Create(Mlp(12, 3, 0.2, 14), opt);
    ASSERT_TRUE(t.ok());
    for (int s = 0; s < 3; ++s) {
      ASSERT_TRUE((*t)->Step(p.x.data(), p.y.data(), nullptr, 64).ok());
    }
    const std::vector<PhaseTime> prof = (*t)->Profile();
    ASSERT_EQ(prof.size(), 3u * 3u + 1u);  // 2 fused blocks + Linear, loss
    EXPECT_EQ(prof[0].phase, "forward");
    EXPECT_EQ(prof[2].phase, "update");
    EXPECT_EQ(prof.back().layer, "loss");
    for (const PhaseTime& ph : prof) {
      EXPECT_EQ(ph.steps, 3) << ph.layer << " " << ph.phase;
      EXPECT_GT(ph.seconds, 0.0) << ph.layer << " " << ph.phase;
    }
  }
  auto quiet = Trainer::Create(Mlp(12, 3, 0.2, 14), TrainerOptions{});
  ASSERT_TRUE(quiet.ok());
  EXPECT_TRUE((*quiet)->Profile().empty());
}

TEST(TrainerTest, ANonFiniteLossStopsWithTheStepNumber) {
  const Problem p = MakeProblem(64, 6, 3, 9);
  TrainerOptions opt;
  opt.optimizer.lr = 1e30;
  Sequential net(6, 1);
  net.Linear(8).ReLU().Linear(3);
  auto t = Trainer::Create(*net.Build(), opt);
  ASSERT_TRUE(t.ok());
  Status failure;
  for (int s = 0; s < 20 && failure.ok(); ++s) {
    failure = (*t)->Step(p.x.data(), p.y.data(), nullptr, 64).status();
  }
  ASSERT_FALSE(failure.ok());
  EXPECT_NE(failure.message().find("at step"), std::string::npos)
      << failure.message();
}

// A NaN in one input through fused blocks whose zeros the next block skips:
// the first block's pass mask no longer marks its output's nonzeros (a NaN
// fails the test "> 0"), so the next block indexes the floats instead, and
// the NaN reaches the loss rather than being skipped as a zero.
TEST(TrainerTest, ANaNInputStopsBlocksThatSkipZeros) {
  Problem p = MakeProblem(64, 6, 3, 9);
  p.x[5] = NAN;
  Sequential net(6, 1);
  net.StandardBlock(64, 0.5).StandardBlock(64, 0.5).Linear(3);
  auto t = Trainer::Create(*net.Build(), TrainerOptions{});
  ASSERT_TRUE(t.ok());
  const Status failure =
      (*t)->Step(p.x.data(), p.y.data(), nullptr, 64).status();
  ASSERT_FALSE(failure.ok());
  EXPECT_NE(failure.message().find("at step"), std::string::npos)
      << failure.message();
}

// A step whose loss comes out non-finite (here from a NaN input, whose
// batch statistics are NaN) changes nothing either: its forward's moves of
// the running statistics, batch counts and dropout RNG are put back, so the
// next steps give the bits of a trainer that never saw it. Fused and
// unfused layers, one thread and two; BatchNorms with the default momentum,
// with a cumulative average (momentum None: its weight follows the batch
// count) and without running statistics.
TEST(TrainerTest, AStepWithANonFiniteLossLeavesTheTrainerAsItWas) {
  const Problem p = MakeProblem(64, 6, 3, 9);
  std::vector<float> poisoned = p.x;
  poisoned[7] = NAN;
  Sequential other_bns(6, 2);
  other_bns.Linear(32).BatchNorm1d(1e-5, std::nullopt).ReLU().Dropout(0.5);
  other_bns.Linear(24).BatchNorm1d(1e-5, 0.1, true, false).ReLU().Linear(3);
  for (const Graph& g : {Mlp(6, 3, 0.5, 1), *other_bns.Build()}) {
    for (bool fuse : {true, false}) {
      for (int threads : {1, 2}) {
        TrainerOptions opt;
        opt.fuse = fuse;
        opt.threads = threads;
        auto failed = Trainer::Create(g, opt);
        auto clean = Trainer::Create(g, opt);
        ASSERT_TRUE(failed.ok() && clean.ok());
        for (auto* t : {&failed, &clean}) {
          ASSERT_TRUE((**t)->Step(p.x.data(), p.y.data(), nullptr, 64).ok());
        }
        const Status s =
            (*failed)->Step(poisoned.data(), p.y.data(), nullptr, 64).status();
        ASSERT_FALSE(s.ok());
        EXPECT_NE(s.message().find("nan at step 2"), std::string::npos)
            << s.message();
        const Model before = (*clean)->Checkpoint({});
        const Model after = (*failed)->Checkpoint({});
        EXPECT_EQ(before.graph.metadata, after.graph.metadata)
            << "fuse " << fuse << ", " << threads << " threads";
        ExpectBitIdentical(before.graph, after.graph);
        for (int step = 0; step < 3; ++step) {
          ASSERT_TRUE(
              (*failed)->Step(p.x.data(), p.y.data(), nullptr, 64).ok());
          ASSERT_TRUE((*clean)->Step(p.x.data(), p.y.data(), nullptr, 64).ok());
        }
        ExpectBitIdentical((*failed)->CurrentGraph(), (*clean)->CurrentGraph());
        EXPECT_EQ((*clean)->Checkpoint({}).graph.metadata,
                  (*failed)->Checkpoint({}).graph.metadata);
      }
    }
  }
}

TEST(TrainerTest, RejectsBadBatchesLabelsAndOptions) {
  const Problem p = MakeProblem(8, 6, 3, 9);
  auto t = Trainer::Create(Mlp(6, 3, 0.0, 1), {});
  ASSERT_TRUE(t.ok());
  Status s = (*t)->Step(p.x.data(), p.y.data(), nullptr, 1).status();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("more than 1 value per channel"),
            std::string::npos);
  std::vector<int32_t> bad = p.y;
  bad[3] = 7;
  s = (*t)->Step(p.x.data(), bad.data(), nullptr, 8).status();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("label 7 at row 3"), std::string::npos);
  TrainerOptions opt;
  opt.optimizer.lr = -1;
  EXPECT_FALSE(Trainer::Create(Mlp(6, 3, 0.0, 1), opt).ok());
  opt = {};
  opt.optimizer.nesterov = true;  // without momentum
  EXPECT_FALSE(Trainer::Create(Mlp(6, 3, 0.0, 1), opt).ok());
  // Sizes and team sizes past the machine are errors, not crashes.
  opt = {};
  opt.max_batch = int64_t{1} << 60;  // × 32 floats wraps to 0
  EXPECT_FALSE(Trainer::Create(Mlp(6, 3, 0.0, 1), opt).ok());
  opt = {};
  opt.threads = 1 << 30;
  EXPECT_FALSE(Trainer::Create(Mlp(6, 3, 0.0, 1), opt).ok());
  // Null pointers, and rows to evaluate, are checked.
  EXPECT_FALSE((*t)->Step(nullptr, p.y.data(), nullptr, 8).ok());
  EXPECT_FALSE((*t)->Evaluate(p.x.data(), nullptr, 8).ok());
  EXPECT_FALSE((*t)->Evaluate(p.x.data(), p.y.data(), 0).ok());
  // A rate the options would refuse is refused later too, and kept out.
  EXPECT_FALSE((*t)->set_lr(std::nan("")).ok());
  EXPECT_FALSE((*t)->set_lr(-0.1).ok());
  EXPECT_EQ((*t)->lr(), TrainerOptions{}.optimizer.lr);
}

// A BatchNorm without running statistics normalizes with its batch's: the
// evaluation takes every row as one batch (as torch's model(x) in eval
// mode), whatever the count. In chunks of 1024, 1025 rows once left a last
// chunk of one row, an error, and other counts other statistics.
TEST(TrainerTest, EvaluateTakesBatchStatisticsOverEveryRow) {
  const int64_t rows = 1025;
  const Problem p = MakeProblem(rows, 6, 3, 4);
  Sequential net(6, 2);
  net.Linear(8).BatchNorm1d(1e-5, 0.1, true, /*track_running_stats=*/false);
  net.ReLU().Linear(3);
  const Graph g = *net.Build();
  auto t = Trainer::Create(g, {});
  ASSERT_TRUE(t.ok());
  Result<EvalResult> e = (*t)->Evaluate(p.x.data(), p.y.data(), rows);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  SessionOptions so;
  so.max_batch = rows;
  auto s = InferenceSession::Create(g, so);
  ASSERT_TRUE(s.ok());
  std::vector<float> z(size_t(rows * 3));
  ASSERT_TRUE((*s)->Run(p.x.data(), rows, z.data()).ok());
  int64_t correct = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* zr = z.data() + r * 3;
    correct += std::max_element(zr, zr + 3) - zr == p.y[size_t(r)];
  }
  EXPECT_EQ(e->accuracy, double(correct) / double(rows));
}

// A step refused for its labels or pointers changes nothing: the next steps
// give the bits of a trainer that never saw it.
TEST(TrainerTest, ARefusedStepLeavesTheTrainerAsItWas) {
  const Problem p = MakeProblem(64, 6, 3, 9);
  const Graph g = Mlp(6, 3, 0.5, 1);
  auto refused = Trainer::Create(g, {});
  auto clean = Trainer::Create(g, {});
  ASSERT_TRUE(refused.ok() && clean.ok());
  std::vector<int32_t> bad = p.y;
  bad[5] = 3;  // == the output width
  EXPECT_FALSE((*refused)->Step(p.x.data(), bad.data(), nullptr, 32).ok());
  EXPECT_FALSE((*refused)->Step(p.x.data(), nullptr, nullptr, 32).ok());
  for (int step = 0; step < 3; ++step) {
    ASSERT_TRUE((*refused)->Step(p.x.data(), p.y.data(), nullptr, 32).ok());
    ASSERT_TRUE((*clean)->Step(p.x.data(), p.y.data(), nullptr, 32).ok());
  }
  ExpectBitIdentical((*refused)->CurrentGraph(), (*clean)->CurrentGraph());
}

TEST(TrainerTest, MseLossAndGradientClipping) {
  const Problem p = MakeProblem(64, 6, 2, 3);
  std::vector<float> targets(64 * 2);
  for (int64_t r = 0; r < 64; ++r)
    targets[size_t(r * 2 + p.y[size_t(r)])] = 1.0f;
  TrainerOptions opt;
  opt.loss = LossKind::kMse;
  opt.clip_grad_norm = 0.01;
  auto t = Trainer::Create(Mlp(6, 2, 0.0, 4), opt);
  ASSERT_TRUE(t.ok());
  Result<StepResult> r =
      (*t)->ComputeGradients(p.x.data(), nullptr, targets.data(), 64);
  ASSERT_TRUE(r.ok());
  EXPECT_GT(r->loss, 0.0);
  ASSERT_TRUE((*t)->Step(p.x.data(), nullptr, targets.data(), 64).ok());
  double ss = 0;
  for (const auto& [k, g] : (*t)->Gradients()) {
    for (float v : g.span()) ss += double(v) * v;
  }
  EXPECT_LE(std::sqrt(ss), 0.01 * 1.0001);  // clipped before the update
}

}  // namespace
}  // namespace ballast
