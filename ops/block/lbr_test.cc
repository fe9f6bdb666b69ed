#include "ops/block/lbr.h"

#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "ops/block/block_kernels.h"
#include "ops/linear/gemm.h"
#include "ops/ref/activation.h"
#include "ops/ref/batchnorm.h"
#include "ops/ref/dropout.h"
#include "ops/ref/linear.h"
#include "tests/kernel_tester.h"

namespace ballast::ops {
namespace {

using test::ForEachTarget;
using test::Tol;

// A block with random parameters and non-trivial running statistics.
struct Params {
  Params(int64_t K, int64_t N, bool affine, bool bias, uint64_t seed)
      : K(K),
        N(N),
        w(static_cast<size_t>(K * N)),
        b(static_cast<size_t>(N)),
        gamma(static_cast<size_t>(N)),
        beta(static_cast<size_t>(N)),
        rm(static_cast<size_t>(N)),
        rv(static_cast<size_t>(N)) {
    Generator g(seed);
    g.FillUniform(w, -1, 1);
    g.FillUniform(b, -1, 1);
    g.FillUniform(gamma, 0.5, 1.5);
    g.FillUniform(beta, -0.5, 0.5);
    g.FillUniform(rm, -0.5, 0.5);
    g.FillUniform(rv, 0.5, 2.0);
    p = {w.data(),
         bias ? b.data() : nullptr,
         affine ? gamma.data() : nullptr,
         affine ? beta.data() : nullptr,
         rm.data(),
         rv.data(),
         K,
         N,
         1e-5};
  }
  int64_t K, N;
  std::vector<float> w, b, gamma, beta, rm, rv;
  BlockParams p;
};

// Magnitude scale of the block output for the tolerance: a dot product of
// length K with |x|, |w| <= 1, times the BN scale.
double EvalTol(const Params& P) { return Tol::Dot(P.K, 2.0 * double(P.K)); }

// The references are computed once per case and the kernels then run on
// every target: under emulation the reference costs more than the kernel.
// The book's layer (784 → 256) takes 13 rows rather than 64 (two full row
// tiles and a partial one): under qemu its 64-row runs took 15 of the 19 s
// this test spends per SVE target.
TEST(LbrTest, EvalFusedAndUnfusedMatchTheReferenceOnEveryTarget) {
  for (auto [K, N] :
       {std::pair<int64_t, int64_t>{7, 15}, {33, 17}, {257, 31}, {784, 256}}) {
    for (bool affine : {true, false}) {
      Params P(K, N, affine, /*bias=*/K != 33, uint64_t(K * N));
      for (int64_t M : {int64_t{1}, int64_t{2}, int64_t{5},
                        K * N > 100000 ? int64_t{13} : int64_t{64}}) {
        Generator g{uint64_t(M)};
        std::vector<float> x(static_cast<size_t>(M * K)),
            z(static_cast<size_t>(M * N)), ref(static_cast<size_t>(M * N));
        g.FillUniform(x, -1, 1);
        ref::linear_forward(x.data(), P.p.w, P.p.b, z.data(), M, K, N);
        ref::batchnorm_forward_eval(z.data(), P.p.gamma, P.p.beta,
                                    P.p.running_mean, P.p.running_var,
                                    ref.data(), M, N, 1e-5);
        ref::relu_forward(ref.data(), ref.data(), M * N);
        ForEachTarget([&](const char*) {
          for (bool fused : {true, false}) {
            for (int threads : {1, 2}) {
              Result<EvalBlock> e = EvalBlock::Create(P.p, fused);
              ASSERT_TRUE(e.ok());
              std::vector<float> y(size_t(M * N), NAN);
              ASSERT_TRUE(e->Run(x.data(), M, y.data(), threads).ok());
              for (size_t i = 0; i < y.size(); ++i) {
                ASSERT_NEAR(y[i], ref[i], EvalTol(P))
                    << "M=" << M << " K=" << K << " N=" << N
                    << " fused=" << fused << " threads=" << threads
                    << " i=" << i;
              }
            }
          }
        });
      }
    }
  }
}

// One training case and its reference: linear → batchnorm (train) → relu →
// dropout with the RNG slice, forward and backward.
struct TrainCase {
  TrainCase(int64_t M, int64_t K, int64_t N, double p, bool affine)
      : M(M), K(K), N(N), p(p), P(K, N, affine, true, uint64_t(M + K + N)) {
    Generator g(11);
    x.resize(size_t(M * K));
    d_out.resize(size_t(M * N));
    g.FillUniform(x, -1, 1);
    g.FillUniform(d_out, -1, 1);
    rng = Generator(99).Take(M * N);

    std::vector<float> z(size_t(M * N)), bn(size_t(M * N)), act(size_t(M * N)),
        mean(static_cast<size_t>(N));
    rstd.resize(size_t(N));
    rm = P.rm, rv = P.rv;
    std::vector<uint64_t> keep(size_t(ref::DropoutMaskWords(M * N)));
    int64_t batches = 0;
    ref::linear_forward(x.data(), P.p.w, P.p.b, z.data(), M, K, N);
    ok = ref::batchnorm_forward_train<float>(
             z.data(), P.p.gamma, P.p.beta, bn.data(), mean.data(), rstd.data(),
             {rm.data(), rv.data(), &batches}, M, N, {})
             .ok();
    ref::relu_forward(bn.data(), act.data(), M * N);
    out.resize(size_t(M * N));
    ok = ok && ref::dropout_forward_train(act.data(), out.data(), keep.data(),
                                          M * N, p, rng)
                   .ok();

    std::vector<float> d_act(size_t(M * N)), d_bn(size_t(M * N)),
        dz(size_t(M * N));
    dgamma.resize(size_t(N)), dbeta.resize(size_t(N)), db.resize(size_t(N));
    dx.resize(size_t(M * K)), dw.resize(size_t(N * K));
    ref::dropout_backward(keep.data(), d_out.data(), d_act.data(), M * N, p);
    ref::relu_backward(bn.data(), d_act.data(), d_bn.data(), M * N);
    ref::batchnorm_backward(z.data(), P.p.gamma, mean.data(), rstd.data(),
                            d_bn.data(), dz.data(), dgamma.data(), dbeta.data(),
                            M, N);
    ref::linear_backward(x.data(), P.p.w, dz.data(), dx.data(), dw.data(),
                         db.data(), M, K, N);
  }
  int64_t M, K, N;
  double p;
  Params P;
  std::vector<float> x, d_out;
  RngSlice rng;
  bool ok = false;  // the reference accepted the case
  // Reference results: forward output, running statistics, batch rstd and
  // gradients.
  std::vector<float> out, rm, rv, rstd, dx, dw, db, dgamma, dbeta;
};

// The training kernels (forward, then backward) against the reference.
void CheckTrain(const TrainCase& c, bool fused, int threads) {
  const int64_t M = c.M, K = c.K, N = c.N;
  SCOPED_TRACE(::testing::Message()
               << "M=" << M << " K=" << K << " N=" << N << " p=" << c.p
               << " affine=" << (c.P.p.gamma != nullptr) << " fused=" << fused
               << " threads=" << threads);
  ASSERT_TRUE(c.ok);
  Result<TrainBlock> t = TrainBlock::Create(c.P.p, c.p, 0.1, M);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  std::vector<float> out(size_t(M * N), NAN);
  ASSERT_TRUE(
      t->Forward(c.x.data(), M, out.data(), c.rng, fused, threads).ok());
  // Normalized values are O(1); the GEMM error is amplified by rstd.
  double max_rstd = 0;
  for (float r : c.rstd) max_rstd = std::max(max_rstd, double(r));
  const double tol =
      Tol::Dot(K, 2.0 * K) * max_rstd * 4 / (1 - std::min(c.p, 0.5));
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_NEAR(out[i], c.out[i], tol) << "output " << i;
  }
  for (int64_t n = 0; n < N; ++n) {
    ASSERT_NEAR(t->running_mean()[size_t(n)], c.rm[size_t(n)],
                Tol::Dot(K, 2.0 * K));
    ASSERT_NEAR(t->running_var()[size_t(n)], c.rv[size_t(n)],
                Tol::Dot(K, 4.0 * K * K) + 1e-6 * c.rv[size_t(n)]);
  }

  std::vector<float> gx(size_t(M * K), NAN), gw(size_t(N * K), NAN),
      gb(size_t(N), NAN), gg(size_t(N), NAN), gbeta(size_t(N), NAN);
  ASSERT_TRUE(t->Backward(c.d_out.data(), gx.data(), gw.data(), gb.data(),
                          gg.data(), gbeta.data(), threads)
                  .ok());
  // Gradients sum M terms of O(1/(1-p)) values.
  const double gtol = Tol::Dot(M, 4.0 * M) * max_rstd * 8 + 1e-5;
  for (int64_t n = 0; n < N; ++n) {
    ASSERT_NEAR(gbeta[size_t(n)], c.dbeta[size_t(n)], gtol) << "dbeta " << n;
    ASSERT_NEAR(gg[size_t(n)], c.dgamma[size_t(n)], gtol) << "dgamma " << n;
    ASSERT_NEAR(gb[size_t(n)], c.db[size_t(n)], gtol) << "db " << n;
  }
  for (size_t i = 0; i < c.dw.size(); ++i) {
    ASSERT_NEAR(gw[i], c.dw[i], gtol * 4) << "dW " << i;
  }
  for (size_t i = 0; i < c.dx.size(); ++i) {
    ASSERT_NEAR(gx[i], c.dx[i], Tol::Dot(N, 8.0 * N) * max_rstd + 1e-5)
        << "dX " << i;
  }
}

TEST(LbrTest, TrainingForwardAndBackwardMatchTheReferenceOnEveryTarget) {
  for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{2, 7, 15},
                         {5, 33, 17},
                         {64, 257, 31},
                         {129, 784, 70}}) {
    for (double p : {0.0, 0.5}) {
      const TrainCase c(M, K, N, p, true);
      ForEachTarget([&](const char*) {
        CheckTrain(c, /*fused=*/true, 1);
        CheckTrain(c, /*fused=*/false, 1);
      });
    }
  }
}

// Two threads share a layer's mask words and blocks of rows forward and its
// strips of columns backward, narrow ones (c, one mask word) included; 300
// columns (d) take two draw chunks on one thread.
TEST(LbrTest, TrainingUnfusedEqualsFusedAndThreadsAgree) {
  const TrainCase a(64, 100, 130, 0.3, true), b(17, 31, 65, 0.0, false),
      c(33, 20, 40, 0.5, true), d(20, 16, 300, 0.5, true);
  for (int threads : {1, 2}) {
    for (bool fused : {true, false}) {
      for (const TrainCase* tc : {&a, &b, &c, &d}) {
        CheckTrain(*tc, fused, threads);
      }
    }
  }
}

// Shapes: columns split over two threads, rows split (N <= 64), rows not
// counter-aligned (N % 4 != 0), two draw chunks per row (N > 256).
TEST(LbrTest, DropoutKernelDrawsTheReferenceMask) {
  ForEachTarget([](const char*) {
    for (auto [M, N, threads] : {std::tuple<int64_t, int64_t, int>{7, 100, 2},
                                 {9, 40, 2},
                                 {6, 37, 2},
                                 {5, 300, 1}}) {
      SCOPED_TRACE(::testing::Message() << "M=" << M << " N=" << N);
      const RngSlice rng = Generator(5).Take(M * N);
      std::vector<float> x(size_t(M * N), 1.0f),
          y = x, ref(static_cast<size_t>(M * N));
      std::vector<uint64_t> mask(size_t(M * MaskWordsPerRow(N))),
          ref_mask(size_t(ref::DropoutMaskWords(M * N)));
      Dropout(y.data(), M, N, 0.25, rng, mask.data(), threads);
      ASSERT_TRUE(ref::dropout_forward_train(x.data(), ref.data(),
                                             ref_mask.data(), M * N, 0.25, rng)
                      .ok());
      for (int64_t i = 0; i < M * N; ++i) {
        ASSERT_EQ(y[size_t(i)], ref[size_t(i)]) << i;
        const bool ref_bit = (ref_mask[size_t(i / 64)] >> (i % 64)) & 1;
        ASSERT_EQ(MaskBit(mask.data(), M, i / N, i % N), ref_bit) << i;
      }
    }
  });
}

// Shapes of the block-pass tests: the book's hidden layer and ragged edges.
constexpr std::pair<int64_t, int64_t> kPassShapes[] = {
    {128, 256}, {37, 300}, {20, 130}, {9, 40}};

// Random inputs of the block passes over an [M, N] activation.
struct PassInputs {
  std::vector<float> z, d_out, mean, rstd, gamma, beta;
  PassInputs(int64_t M, int64_t N, Generator& g) {
    const auto random = [&](int64_t n, float lo, float hi) {
      std::vector<float> v(static_cast<size_t>(n));
      for (float& x : v) x = lo + (hi - lo) * float(g.NextDouble());
      return v;
    };
    z = random(M * N, -2, 2), d_out = random(M * N, -1, 1);
    mean = random(N, -0.5f, 0.5f), rstd = random(N, 0.5f, 2);
    gamma = random(N, 0.5f, 1.5f), beta = random(N, -0.5f, 0.5f);
  }
};

// The fused passes share their units among the threads dynamically (forward:
// mask words × blocks of rows; backward: strips of columns): any thread count
// gives the bits of one thread, outputs, masks and gradients alike, on every
// target (the strips are two vectors wide).
TEST(LbrTest, FusedPassesGiveTheSameBitsOnAnyThreadCountOnEveryTarget) {
  ForEachTarget([](const char*) {
    for (auto [M, N] : kPassShapes) {
      Generator g(uint64_t(M * 1000 + N));
      const PassInputs in(M, N, g);
      const auto& [z, d_out, mean, rstd, gamma, beta] = in;
      const RngSlice rng = Generator(9).Take(M * N);
      struct Result {
        std::vector<float> out, dz, dgamma, dbeta, dbias;
        std::vector<uint64_t> mask;
      };
      Result one;
      for (int threads = 1; threads <= 4; ++threads) {
        SCOPED_TRACE(::testing::Message()
                     << "M=" << M << " N=" << N << " threads=" << threads);
        Result r{std::vector<float>(size_t(M * N)),
                 std::vector<float>(size_t(M * N)),
                 std::vector<float>(size_t(N)),
                 std::vector<float>(size_t(N)),
                 std::vector<float>(size_t(N)),
                 std::vector<uint64_t>(size_t(M * MaskWordsPerRow(N)))};
        BnReluDropoutForward(
            {z.data(), mean.data(), rstd.data(), gamma.data(), beta.data(), 0.5,
             rng, r.out.data(), r.mask.data()},
            M, N, threads);
        BnReluDropoutBackward({z.data(), mean.data(), rstd.data(), gamma.data(),
                               d_out.data(), r.mask.data(), 0.5, r.dz.data(),
                               r.dgamma.data(), r.dbeta.data(), r.dbias.data()},
                              M, N, threads);
        if (threads == 1) {
          one = r;
          continue;
        }
        EXPECT_EQ(r.out, one.out);
        EXPECT_EQ(r.mask, one.mask);
        EXPECT_EQ(r.dz, one.dz);
        EXPECT_EQ(r.dgamma, one.dgamma);
        EXPECT_EQ(r.dbeta, one.dbeta);
        EXPECT_EQ(r.dbias, one.dbias);
      }
    }
  });
}

// The forward pass over column ranges of whole mask words
// (BnReluDropoutForwardColumns, which the trainer runs as each thread's
// statistics are ready) gives the bits of the whole pass, outputs and masks,
// on every target; ForwardColumnsAligned says which ranges it takes.
TEST(LbrTest, ForwardOverColumnRangesGivesTheWholePassOnEveryTarget) {
  EXPECT_TRUE(ForwardColumnsAligned(130, 64, 130));
  EXPECT_TRUE(ForwardColumnsAligned(256, 128, 192));
  EXPECT_FALSE(ForwardColumnsAligned(256, 80, 160));
  EXPECT_FALSE(ForwardColumnsAligned(256, 0, 80));
  EXPECT_FALSE(ForwardColumnsAligned(256, 128, 320));
  ForEachTarget([](const char*) {
    for (auto [M, N] : kPassShapes) {
      SCOPED_TRACE(::testing::Message() << "M=" << M << " N=" << N);
      Generator g(uint64_t(M * 1000 + N));
      const PassInputs in(M, N, g);
      const auto& [z, d_out, mean, rstd, gamma, beta] = in;
      const RngSlice rng = Generator(9).Take(M * N);
      const size_t words = size_t(M * MaskWordsPerRow(N));
      std::vector<float> whole(size_t(M * N)), ranges(size_t(M * N), -1.0f);
      std::vector<uint64_t> whole_mask(words), ranges_mask(words, ~0ull);
      BnReluDropoutForward(
          {z.data(), mean.data(), rstd.data(), gamma.data(), beta.data(), 0.5,
           rng, whole.data(), whole_mask.data()},
          M, N, 1);
      const BnForwardArgs a{z.data(),     mean.data(),   rstd.data(),
                            gamma.data(), beta.data(),   0.5,
                            rng,          ranges.data(), ranges_mask.data()};
      // Ranges of one and two words, from the last one down.
      int64_t n1 = N;
      for (int64_t words_in_range = 1; n1 > 0;
           words_in_range = 3 - words_in_range) {
        const int64_t n0 = std::max<int64_t>(
            0, (n1 - 1) / 64 * 64 - (words_in_range - 1) * 64);
        ASSERT_TRUE(ForwardColumnsAligned(N, n0, n1));
        BnReluDropoutForwardColumns(a, M, N, n0, n1);
        n1 = n0;
      }
      EXPECT_EQ(ranges, whole);
      EXPECT_EQ(ranges_mask, whole_mask);
    }
  });
}

// The backward pass writes dz in the weight-gradient GEMM's panel layout too
// (BnBackwardArgs::dz_panels): the same floats as PackB of the row-major dz,
// padding zeroed by PackedB::Layout, alone or beside the row-major dz, on
// one thread and two, on every target.
TEST(LbrTest, BackwardWritesDzInTheGemmPanelLayoutOnEveryTarget) {
  ForEachTarget([](const char*) {
    for (auto [M, N] : kPassShapes) {
      Generator g(uint64_t(M * 7 + N));
      const PassInputs in(M, N, g);
      const auto& [z, d_out, mean, rstd, gamma, beta] = in;
      std::vector<uint64_t> mask(size_t(M * MaskWordsPerRow(N)));
      for (uint64_t& w : mask) {  // a quarter kept
        w = 0;
        for (int b = 0; b < 64; ++b) {
          if (g.NextDouble() < 0.25) w |= uint64_t{1} << b;
        }
      }
      for (int threads : {1, 2}) {
        for (bool rows_too : {false, true}) {
          SCOPED_TRACE(::testing::Message()
                       << "M=" << M << " N=" << N << " threads=" << threads
                       << " rows_too=" << rows_too);
          const size_t mn = static_cast<size_t>(M * N),
                       n = static_cast<size_t>(N);
          std::vector<float> dz(mn), dg(n), db(n), dbias(n), dz2(mn, 7.0f),
              dg2(n), db2(n), dbias2(n);
          BnReluDropoutBackward(
              {z.data(), mean.data(), rstd.data(), gamma.data(), d_out.data(),
               mask.data(), 0.5, dz.data(), dg.data(), db.data(), dbias.data()},
              M, N, threads);
          const PackedB want = PackB(dz.data(), M, N, N, 1);
          PackedB got;
          // Stale values where the padding goes: Layout must zero them.
          float* panels = got.Layout(M + 3, N);
          std::fill(panels, panels + PackedFloats(M + 3, N), 1e30f);
          panels = got.Layout(M, N);
          BnBackwardArgs a{z.data(),
                           mean.data(),
                           rstd.data(),
                           gamma.data(),
                           d_out.data(),
                           mask.data(),
                           0.5,
                           rows_too ? dz2.data() : nullptr,
                           dg2.data(),
                           db2.data(),
                           dbias2.data(),
                           panels,
                           GemmPanelWidth()};
          BnReluDropoutBackward(a, M, N, threads);
          ASSERT_EQ(got.nr(), want.nr());
          ASSERT_EQ(got.k(), want.k());
          ASSERT_EQ(got.n(), want.n());
          const size_t floats = size_t(want.panels() * want.nr() * M);
          EXPECT_EQ(std::vector<float>(got.panel(0), got.panel(0) + floats),
                    std::vector<float>(want.panel(0), want.panel(0) + floats));
          if (rows_too) {
            EXPECT_EQ(dz2, dz);
          } else {
            EXPECT_EQ(dz2, std::vector<float>(mn, 7.0f));
          }
          EXPECT_EQ(dg2, dg);
          EXPECT_EQ(db2, db);
          EXPECT_EQ(dbias2, dbias);
        }
      }
    }
  });
}

TEST(LbrTest, CreateRejectsBadParameters) {
  Params P(8, 4, true, true, 1);
  BlockParams bad = P.p;
  bad.K = 0;
  EXPECT_FALSE(EvalBlock::Create(bad, true).ok());
  EXPECT_FALSE(TrainBlock::Create(P.p, 1.5, 0.1, 8).ok());
  EXPECT_FALSE(TrainBlock::Create(P.p, 0.5, 0.1, 1).ok());
  Result<TrainBlock> t = TrainBlock::Create(P.p, 0.0, 0.1, 8);
  ASSERT_TRUE(t.ok());
  std::vector<float> x(8 * 8), out(8 * 4);
  Status s = t->Forward(x.data(), 1, out.data(), {}, true, 1);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("2 <= rows"), std::string::npos);
  EXPECT_FALSE(t->Forward(x.data(), 9, out.data(), {}, true, 1).ok());
}

}  // namespace
}  // namespace ballast::ops
