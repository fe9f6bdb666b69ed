// The oneDNN block against the scalar reference ops (ops/ref) evaluated in
// double. Every tolerance is a named forward-error bound in units of float's
// ε, scaled by the magnitudes the computation goes through (see BlockTol).
#include "ops/onednn/onednn_block.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ops/ref/activation.h"
#include "ops/ref/batchnorm.h"
#include "ops/ref/linear.h"
#include "tests/kernel_tester.h"

namespace ballast::ops::onednn {
namespace {

using test::Buffer;
using test::Tol;

#define SKIP_WITHOUT_ONEDNN()                                            \
  do {                                                                   \
    if (!Available()) {                                                  \
      GTEST_SKIP() << "ballast was built without oneDNN "                \
                      "(BALLAST_WITH_ONEDNN=OFF or libdnnl-dev absent)"; \
    }                                                                    \
  } while (0)

const int64_t kEvalMs[] = {1, 2, 5, 64, 129};
const int64_t kTrainMs[] = {2, 5, 64, 129};  // training needs M >= 2
const std::pair<int64_t, int64_t> kShapes[] = {
    {7, 15}, {33, 17}, {784, 256}, {257, 31}};  // (K, N)
const EvalMode kModes[] = {EvalMode::kFolded, EvalMode::kPostOps,
                           EvalMode::kUnfused};
constexpr double kEps = Tol::kEps;  // float's ε
constexpr double kMomentum = 0.1;

std::vector<double> ToDouble(const float* p, size_t n) {
  return std::vector<double>(p, p + n);
}
std::vector<double> Abs(std::vector<double> v) {
  for (double& e : v) e = std::fabs(e);
  return v;
}

// A block with random parameters and running statistics on the scale of
// z = x·Wᵀ + b for x, W uniform in [-1, 1] (σ_z ≈ √K/3).
struct Params {
  Params(int64_t K, int64_t N, bool affine, bool bias, uint64_t seed)
      : K(K),
        N(N),
        w(size_t(K * N)),
        b(static_cast<size_t>(N)),
        gamma(static_cast<size_t>(N)),
        beta(static_cast<size_t>(N)),
        rm(static_cast<size_t>(N)),
        rv(static_cast<size_t>(N)) {
    Generator g(seed);
    const double sigma = std::sqrt(double(K)) / 3;
    g.FillUniform(w, -1, 1);
    g.FillUniform(b, -1, 1);
    g.FillUniform(gamma, -1.5, 1.5);
    g.FillUniform(beta, -1, 1);
    g.FillUniform(rm, -0.5 * sigma, 0.5 * sigma);
    g.FillUniform(rv, 0.5 * sigma * sigma, 2 * sigma * sigma);
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
  double Gamma(int64_t n) const { return p.gamma ? p.gamma[n] : 1.0; }
  double Beta(int64_t n) const { return p.beta ? p.beta[n] : 0.0; }
  double Bias(int64_t n) const { return p.b ? p.b[n] : 0.0; }

  int64_t K, N;
  std::vector<float> w, b, gamma, beta, rm, rv;
  BlockParams p;
};

std::string Describe(const Params& P, int64_t M, int threads) {
  return "M=" + std::to_string(M) + " K=" + std::to_string(P.K) +
         " N=" + std::to_string(P.N) + " threads=" + std::to_string(threads) +
         (P.p.gamma ? " affine" : " no-affine") +
         (P.p.b ? " bias" : " no-bias");
}

// Named tolerances: worst-case forward-error bounds of the float
// computation against the double oracle (real errors are far smaller; the
// largest ratio seen is recorded as the test property max_err_over_tol).
struct BlockTol {
  // Evaluation, y = relu(s·(x·Wᵀ + b − rm) + β): a K-term dot product plus a
  // few elementwise roundings (fold or post-ops or BN), each bounded by ε
  // times `mag` = |s|·(Σ|x·w| + |b| + |rm|) + |β|.
  static double Eval(int64_t K, double mag) { return Tol::Dot(K + 6, mag); }

  // Training: one unit of relative error of the normalized value
  // x̂ = (z − μ)·rstd in column c. z carries (K + 2)·ε·Σ|x·w| and μ another
  // (K + M + 4)·ε·max_m Σ|x·w| (the dot products and an M-term sum); both
  // are multiplied by rstd, so the unit is
  //   u_c = (2K + 2M + 8)·ε·max(1, κ_c),  κ_c = rstd_c·max_m(Σ|x·w| + |b|),
  // κ_c the condition number of normalizing column c. Then
  // |δx̂| <= u_c·(1 + |x̂|) and |δrstd|/rstd <= u_c.
  static double Unit(int64_t K, int64_t M, double kappa) {
    return double(2 * K + 2 * M + 8) * kEps * std::max(1.0, kappa);
  }
  // An M-term float sum against the exact one: (M + 2)·ε·Σ|terms|.
  static double Sum(int64_t M, double abs_sum) {
    return double(M + 2) * kEps * abs_sum + 1e-30;
  }
};

// Expects |actual − expected| <= tol elementwise (NaN fails) and reports
// the first few misses; returns max |actual − expected|/tol.
double ExpectAllNear(const std::string& what, const float* actual,
                     const std::vector<double>& expected,
                     const std::vector<double>& tol, int64_t cols) {
  double worst = 0;
  int misses = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double err = std::fabs(double(actual[i]) - expected[i]);
    if (!(err <= tol[i])) {
      if (++misses <= 5) {
        ADD_FAILURE() << what << " at row " << int64_t(i) / cols << " column "
                      << int64_t(i) % cols << ": got " << actual[i]
                      << ", expected " << expected[i] << ", tolerance "
                      << tol[i];
      }
    } else {
      worst = std::max(worst, err / tol[i]);
    }
  }
  if (misses > 5) ADD_FAILURE() << what << ": " << misses << " misses in all";
  return worst;
}

// The largest error/tolerance ratio in a test, recorded when it ends.
class RatioRecorder {
 public:
  void Add(double r) { worst_ = std::max(worst_, r); }
  ~RatioRecorder() {
    ::testing::Test::RecordProperty("max_err_over_tol", std::to_string(worst_));
  }

 private:
  double worst_ = 0;
};

// --- evaluation ---------------------------------------------------------

// y and its tolerance from ref::linear_forward + ref::batchnorm_forward_eval
// + ref::relu_forward in double.
void EvalReference(const Params& P, const std::vector<float>& x, int64_t M,
                   std::vector<double>& y, std::vector<double>& tol) {
  const int64_t K = P.K, N = P.N;
  const std::vector<double> xd = ToDouble(x.data(), x.size()),
                            wd = ToDouble(P.w.data(), P.w.size()),
                            bd = ToDouble(P.b.data(), P.b.size()),
                            gd = ToDouble(P.gamma.data(), P.gamma.size()),
                            betad = ToDouble(P.beta.data(), P.beta.size()),
                            rmd = ToDouble(P.rm.data(), P.rm.size()),
                            rvd = ToDouble(P.rv.data(), P.rv.size());
  std::vector<double> z(size_t(M * N)), mag(size_t(M * N));
  y.assign(size_t(M * N), 0.0);
  ref::linear_forward(xd.data(), wd.data(), P.p.b ? bd.data() : nullptr,
                      z.data(), M, K, N);
  ref::batchnorm_forward_eval(z.data(), P.p.gamma ? gd.data() : nullptr,
                              P.p.beta ? betad.data() : nullptr, rmd.data(),
                              rvd.data(), y.data(), M, N, P.p.eps);
  ref::relu_forward(y.data(), y.data(), M * N);
  const std::vector<double> xa = Abs(xd), wa = Abs(wd);
  ref::linear_forward<double>(xa.data(), wa.data(), nullptr, mag.data(), M, K,
                              N);
  tol.resize(size_t(M * N));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      const double s = P.Gamma(n) / std::sqrt(rvd[size_t(n)] + P.p.eps);
      const size_t i = size_t(m * N + n);
      tol[i] = BlockTol::Eval(K, std::fabs(s) * (mag[i] + std::fabs(P.Bias(n)) +
                                                 std::fabs(rmd[size_t(n)])) +
                                     std::fabs(P.Beta(n)));
    }
  }
}

void CheckEvalMode(EvalMode mode) {
  RatioRecorder worst;
  uint64_t seed = 1;
  for (auto [K, N] : kShapes) {
    for (bool affine : {true, false}) {
      for (bool bias : {true, false}) {
        const Params P(K, N, affine, bias, seed++);
        auto block = EvalBlock::Create(P.p, mode);
        ASSERT_TRUE(block.ok()) << block.status().ToString();
        // One block for every batch size and thread count: the primitives
        // for each (M, threads) are cached and reused by the second pass.
        for (int pass = 0; pass < 2; ++pass) {
          for (int threads : {1, 2}) {
            for (int64_t M : kEvalMs) {
              SCOPED_TRACE(std::string(EvalModeName(mode)) + " " +
                           Describe(P, M, threads) + " pass " +
                           std::to_string(pass));
              Generator g(seed * 1000 + uint64_t(M));
              const size_t misalign = size_t(M % 2);  // odd M: unaligned
              Buffer x(size_t(M * K), misalign), y(size_t(M * N), misalign);
              x.FillUniform(g);
              std::vector<double> ref, tol;
              EvalReference(P, x.ToVector(), M, ref, tol);
              const Status s = (*block)->Run(x.data(), M, y.data(), threads);
              ASSERT_TRUE(s.ok()) << s.ToString();
              worst.Add(ExpectAllNear("y", y.data(), ref, tol, N));
            }
          }
        }
      }
    }
  }
}

TEST(OnednnEvalTest, FoldedMatchesTheReference) {
  SKIP_WITHOUT_ONEDNN();
  CheckEvalMode(EvalMode::kFolded);
}

TEST(OnednnEvalTest, PostOpsMatchesTheReference) {
  SKIP_WITHOUT_ONEDNN();
  CheckEvalMode(EvalMode::kPostOps);
}

TEST(OnednnEvalTest, UnfusedMatchesTheReference) {
  SKIP_WITHOUT_ONEDNN();
  CheckEvalMode(EvalMode::kUnfused);
}

// Folded without running statistics: a plain Linear (the session's onednn
// kernel for linear nodes), with and without the ReLU.
TEST(OnednnEvalTest, FoldedWithoutStatisticsIsAPlainLinear) {
  SKIP_WITHOUT_ONEDNN();
  for (bool relu : {false, true}) {
    for (auto [K, N] : {std::pair<int64_t, int64_t>{33, 17}, {784, 256}}) {
      Params P(K, N, /*affine=*/false, /*bias=*/true, uint64_t(K + N));
      BlockParams p = P.p;
      p.running_mean = p.running_var = nullptr;
      p.relu = relu;
      auto block = EvalBlock::Create(p, EvalMode::kFolded);
      ASSERT_TRUE(block.ok()) << block.status().ToString();
      for (int64_t M : {1, 5, 64}) {
        Generator g{uint64_t(M)};
        Buffer x(static_cast<size_t>(M * K)), y(static_cast<size_t>(M * N));
        x.FillUniform(g);
        ASSERT_TRUE((*block)->Run(x.data(), M, y.data(), 1).ok());
        std::vector<double> xd(x.data(), x.data() + M * K),
            wd(P.w.begin(), P.w.end()), bd(P.b.begin(), P.b.end()),
            want(size_t(M * N));
        ref::linear_forward(xd.data(), wd.data(), bd.data(), want.data(), M, K,
                            N);
        if (relu) ref::relu_forward(want.data(), want.data(), M * N);
        for (int64_t i = 0; i < M * N; ++i) {
          ASSERT_NEAR(y[size_t(i)], want[size_t(i)], Tol::Dot(K, double(K) + 1))
              << "relu=" << relu << " M=" << M << " K=" << K << " i=" << i;
        }
      }
    }
  }
  // One statistic without the other is still an error.
  Params P(8, 4, false, true, 1);
  BlockParams half = P.p;
  half.running_var = nullptr;
  EXPECT_FALSE(EvalBlock::Create(half, EvalMode::kFolded).ok());
}

TEST(OnednnEvalTest, ModesAgreeAndRunsAreRepeatable) {
  SKIP_WITHOUT_ONEDNN();
  const Params P(257, 31, true, true, 99);
  const int64_t M = 64;
  Generator g(7);
  Buffer x(size_t(M * P.K));
  x.FillUniform(g);
  std::vector<double> ref, tol;
  EvalReference(P, x.ToVector(), M, ref, tol);
  for (EvalMode mode : kModes) {
    SCOPED_TRACE(EvalModeName(mode));
    auto block = EvalBlock::Create(P.p, mode);
    ASSERT_TRUE(block.ok()) << block.status().ToString();
    EXPECT_EQ((*block)->mode(), mode);
    for (int threads : {1, 2}) {
      Buffer y1(size_t(M * P.N)), y2(size_t(M * P.N));
      ASSERT_TRUE((*block)->Run(x.data(), M, y1.data(), threads).ok());
      ASSERT_TRUE((*block)->Run(x.data(), M, y2.data(), threads).ok());
      EXPECT_EQ(y1.ToVector(), y2.ToVector()) << "threads " << threads;
      ExpectAllNear("y", y1.data(), ref, tol, P.N);
    }
    // M = 0 is a no-op.
    EXPECT_TRUE((*block)->Run(x.data(), 0, nullptr, 1).ok());
  }
}

// --- training -----------------------------------------------------------

// The double oracle for one training step of a block and the tolerances of
// every output (BlockTol).
struct TrainReference {
  // Forward: ref::linear_forward, ref::batchnorm_forward_train (which also
  // applies PyTorch's running-statistics rule), ref::relu_forward.
  TrainReference(const Params& P, const std::vector<float>& x_in, int64_t M)
      : P(P),
        M(M),
        x(ToDouble(x_in.data(), x_in.size())),
        w(ToDouble(P.w.data(), P.w.size())) {
    const int64_t K = P.K, N = P.N;
    const std::vector<double> bd = ToDouble(P.b.data(), P.b.size()),
                              gd = ToDouble(P.gamma.data(), P.gamma.size()),
                              betad = ToDouble(P.beta.data(), P.beta.size());
    z.resize(size_t(M * N));
    ybn.resize(size_t(M * N));
    out.resize(size_t(M * N));
    mean.resize(static_cast<size_t>(N));
    rstd.resize(static_cast<size_t>(N));
    running_mean = ToDouble(P.rm.data(), P.rm.size());
    running_var = ToDouble(P.rv.data(), P.rv.size());
    ref::linear_forward(x.data(), w.data(), P.p.b ? bd.data() : nullptr,
                        z.data(), M, K, N);
    ref::BatchNormOptions opt;
    opt.eps = P.p.eps;
    opt.momentum = kMomentum;
    const Status s = ref::batchnorm_forward_train<double>(
        z.data(), P.p.gamma ? gd.data() : nullptr,
        P.p.beta ? betad.data() : nullptr, ybn.data(), mean.data(), rstd.data(),
        {running_mean.data(), running_var.data(), nullptr}, M, N, opt);
    EXPECT_TRUE(s.ok()) << s.ToString();
    ref::relu_forward(ybn.data(), out.data(), M * N);

    // Tolerances.
    const std::vector<double> xa = Abs(x), wa = Abs(w);
    std::vector<double> magz(size_t(M * N));
    ref::linear_forward<double>(xa.data(), wa.data(), nullptr, magz.data(), M,
                                K, N);
    unit.resize(static_cast<size_t>(N));
    out_tol.resize(size_t(M * N));
    rm_tol.resize(static_cast<size_t>(N));
    rv_tol.resize(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) {
      double zmax = 0;
      for (int64_t m = 0; m < M; ++m) {
        zmax = std::max(zmax, magz[size_t(m * N + n)] + std::fabs(P.Bias(n)));
      }
      const double r = rstd[size_t(n)], sigma = 1 / r;
      unit[size_t(n)] = BlockTol::Unit(K, M, r * zmax);
      const double u = unit[size_t(n)];
      for (int64_t m = 0; m < M; ++m) {
        const size_t i = size_t(m * N + n);
        const double xh = std::fabs(Xhat(m, n));
        out_tol[i] = std::fabs(P.Gamma(n)) * (u * (1 + xh) + 4 * kEps * xh) +
                     4 * kEps * std::fabs(P.Beta(n)) + 1e-30;
      }
      // δμ <= (K + M + 4)·ε·zmax; δσ² <= 2σ·δ(z − μ) + (M + 4)·ε·σ² with
      // δ(z − μ) <= (2K + M + 4)·ε·zmax.
      const double d_mu = double(K + M + 4) * kEps * zmax;
      const double d_var = 2 * sigma * double(2 * K + M + 4) * kEps * zmax +
                           double(M + 4) * kEps * sigma * sigma;
      rm_tol[size_t(n)] = kMomentum * d_mu +
                          4 * kEps * std::fabs(running_mean[size_t(n)]) + 1e-30;
      rv_tol[size_t(n)] = kMomentum * double(M) / double(M - 1) * d_var +
                          4 * kEps * std::fabs(running_var[size_t(n)]) + 1e-30;
    }
  }

  double Xhat(int64_t m, int64_t n) const {
    return (z[size_t(m * P.N + n)] - mean[size_t(n)]) * rstd[size_t(n)];
  }

  // Backward for d_out, with the ReLU mask taken from the backend's own
  // output (out > 0 ⇔ ŷ > 0): where ŷ is within rounding of 0 the float and
  // double masks may differ, and one flipped mask bit moves a whole column
  // of the BN gradient. Then ref::batchnorm_backward, ref::linear_backward.
  void Backward(const std::vector<float>& d_out_in, const float* backend_out) {
    const int64_t K = P.K, N = P.N;
    const std::vector<double> d_out =
                                  ToDouble(d_out_in.data(), d_out_in.size()),
                              mask_src = ToDouble(backend_out, size_t(M * N)),
                              gd = ToDouble(P.gamma.data(), P.gamma.size());
    std::vector<double> g(size_t(M * N));
    ref::relu_backward(mask_src.data(), d_out.data(), g.data(), M * N);
    dz.resize(size_t(M * N));
    dgamma.resize(static_cast<size_t>(N));
    dbeta.resize(static_cast<size_t>(N));
    ref::batchnorm_backward(z.data(), P.p.gamma ? gd.data() : nullptr,
                            mean.data(), rstd.data(), g.data(), dz.data(),
                            dgamma.data(), dbeta.data(), M, N);
    dx.resize(size_t(M * K));
    dw.resize(size_t(N * K));
    db.resize(static_cast<size_t>(N));
    ref::linear_backward(x.data(), w.data(), dz.data(), dx.data(), dw.data(),
                         db.data(), M, K, N);

    // Tolerances: dβ and dγ are M-term sums (dγ's terms carry x̂'s error);
    // dz = γ·rstd·(g − dβ/M − x̂·dγ/M) carries rstd's, x̂'s, dβ's and dγ's
    // errors; dx, dW, db are dot products of dz (with its error) with W, x
    // and 1.
    dgamma_tol.resize(static_cast<size_t>(N));
    dbeta_tol.resize(static_cast<size_t>(N));
    std::vector<double> dz_tol(size_t(M * N));
    for (int64_t n = 0; n < N; ++n) {
      const double u = unit[size_t(n)];
      double sum_g = 0, sum_gx = 0, sum_g_err = 0;
      for (int64_t m = 0; m < M; ++m) {
        const double ag = std::fabs(g[size_t(m * N + n)]),
                     xh = std::fabs(Xhat(m, n));
        sum_g += ag, sum_gx += ag * xh, sum_g_err += ag * u * (1 + xh);
      }
      dbeta_tol[size_t(n)] = BlockTol::Sum(M, sum_g);
      dgamma_tol[size_t(n)] = sum_g_err + BlockTol::Sum(M, sum_gx);
      const double gr = std::fabs(P.Gamma(n)) * rstd[size_t(n)];
      const double adb = std::fabs(dbeta[size_t(n)]) / double(M),
                   adg = std::fabs(dgamma[size_t(n)]) / double(M);
      for (int64_t m = 0; m < M; ++m) {
        const double ag = std::fabs(g[size_t(m * N + n)]),
                     xh = std::fabs(Xhat(m, n));
        const double terms = ag + adb + xh * adg;
        dz_tol[size_t(m * N + n)] =
            gr * ((u + 6 * kEps) * terms + dbeta_tol[size_t(n)] / double(M) +
                  u * (1 + xh) * adg + xh * dgamma_tol[size_t(n)] / double(M));
      }
    }
    const std::vector<double> xa = Abs(x), wa = Abs(w), dza = Abs(dz);
    std::vector<double> dx_mag(size_t(M * K)), dw_mag(size_t(N * K)),
        db_mag(static_cast<size_t>(N)), dx_err(size_t(M * K)),
        dw_err(size_t(N * K)), db_err(static_cast<size_t>(N));
    ref::linear_backward(xa.data(), wa.data(), dza.data(), dx_mag.data(),
                         dw_mag.data(), db_mag.data(), M, K, N);
    ref::linear_backward(xa.data(), wa.data(), dz_tol.data(), dx_err.data(),
                         dw_err.data(), db_err.data(), M, K, N);
    dx_tol.resize(dx.size());
    dw_tol.resize(dw.size());
    db_tol.resize(db.size());
    for (size_t i = 0; i < dx.size(); ++i) {
      dx_tol[i] = Tol::Dot(N, dx_mag[i]) + dx_err[i];
    }
    for (size_t i = 0; i < dw.size(); ++i) {
      dw_tol[i] = Tol::Dot(M, dw_mag[i]) + dw_err[i];
    }
    for (size_t i = 0; i < db.size(); ++i) {
      db_tol[i] = Tol::Dot(M, db_mag[i]) + db_err[i];
    }
  }

  const Params& P;
  int64_t M;
  std::vector<double> x, w, z, ybn, out, mean, rstd, running_mean, running_var;
  std::vector<double> unit, out_tol, rm_tol, rv_tol;
  std::vector<double> dz, dx, dw, db, dgamma, dbeta;
  std::vector<double> dx_tol, dw_tol, db_tol, dgamma_tol, dbeta_tol;
};

// One Forward (and optionally Backward) of a fresh block per case.
void CheckTraining(bool backward) {
  RatioRecorder worst;
  uint64_t seed = 1000;
  for (auto [K, N] : kShapes) {
    for (bool affine : {true, false}) {
      for (bool bias : {true, false}) {
        const Params P(K, N, affine, bias, seed++);
        for (int threads : {1, 2}) {
          for (int64_t M : kTrainMs) {
            SCOPED_TRACE(Describe(P, M, threads));
            Generator g(seed * 1000 + uint64_t(M));
            const size_t misalign = size_t(M % 2);
            Buffer x(size_t(M * K), misalign), out(size_t(M * N), misalign);
            x.FillUniform(g);
            auto block = TrainBlock::Create(P.p);
            ASSERT_TRUE(block.ok()) << block.status().ToString();
            TrainBlock& b = **block;
            ASSERT_TRUE(b.set_momentum(kMomentum).ok());
            const Status s = b.Forward(x.data(), M, out.data(), threads);
            ASSERT_TRUE(s.ok()) << s.ToString();
            TrainReference ref(P, x.ToVector(), M);
            if (!backward) {
              worst.Add(
                  ExpectAllNear("out", out.data(), ref.out, ref.out_tol, N));
              worst.Add(ExpectAllNear("running_mean", b.running_mean(),
                                      ref.running_mean, ref.rm_tol, N));
              worst.Add(ExpectAllNear("running_var", b.running_var(),
                                      ref.running_var, ref.rv_tol, N));
              continue;
            }
            Buffer d_out(size_t(M * N)), dx(size_t(M * K), misalign),
                dw(size_t(N * K)), db(static_cast<size_t>(N)),
                dgamma(static_cast<size_t>(N)), dbeta(static_cast<size_t>(N));
            d_out.FillUniform(g);
            const Status sb =
                b.Backward(d_out.data(), dx.data(), dw.data(), db.data(),
                           dgamma.data(), dbeta.data(), threads);
            ASSERT_TRUE(sb.ok()) << sb.ToString();
            ref.Backward(d_out.ToVector(), out.data());
            worst.Add(ExpectAllNear("dbeta", dbeta.data(), ref.dbeta,
                                    ref.dbeta_tol, N));
            worst.Add(ExpectAllNear("dgamma", dgamma.data(), ref.dgamma,
                                    ref.dgamma_tol, N));
            worst.Add(ExpectAllNear("db", db.data(), ref.db, ref.db_tol, N));
            worst.Add(ExpectAllNear("dw", dw.data(), ref.dw, ref.dw_tol, K));
            worst.Add(ExpectAllNear("dx", dx.data(), ref.dx, ref.dx_tol, K));
          }
        }
      }
    }
  }
}

TEST(OnednnTrainTest, ForwardOutputAndRunningStatisticsMatchTheReference) {
  SKIP_WITHOUT_ONEDNN();
  CheckTraining(/*backward=*/false);
}

TEST(OnednnTrainTest, BackwardGradientsMatchTheReference) {
  SKIP_WITHOUT_ONEDNN();
  CheckTraining(/*backward=*/true);
}

// oneDNN's variance output is biased (what it normalizes with); the running
// variance must take the unbiased σ²·M/(M − 1), which at M = 2 is twice it.
TEST(OnednnTrainTest, RunningVarianceTakesTheUnbiasedBatchVariance) {
  SKIP_WITHOUT_ONEDNN();
  const int64_t K = 1, N = 1, M = 2;
  const float w = 1, x[] = {1, 3}, rm = 0, rv = 1;
  auto block =
      TrainBlock::Create({&w, nullptr, nullptr, nullptr, &rm, &rv, K, N, 1e-5});
  ASSERT_TRUE(block.ok());
  float out[2];
  ASSERT_TRUE((*block)->Forward(x, M, out, 1).ok());
  // μ = 2, biased σ² = 1, unbiased = 2.
  EXPECT_FLOAT_EQ((*block)->running_mean()[0], 0.9f * 0 + 0.1f * 2);
  EXPECT_FLOAT_EQ((*block)->running_var()[0], 0.9f * 1 + 0.1f * 2);
  // And the output is normalized with the biased one: ±1/√(1 + ε).
  EXPECT_NEAR(out[0], 0.0f, 0.0f);
  EXPECT_NEAR(out[1], 1 / std::sqrt(1 + 1e-5), 4 * kEps);
}

// Several steps over alternating batch sizes and thread counts (cached
// primitives reused, buffers regrown), a momentum change, and repeatability.
TEST(OnednnTrainTest, RepeatedStepsTrackRunningStatisticsAcrossShapes) {
  SKIP_WITHOUT_ONEDNN();
  const Params P(33, 17, true, true, 5);
  auto block = TrainBlock::Create(P.p);
  ASSERT_TRUE(block.ok());
  TrainBlock& b = **block;
  std::vector<double> rm = ToDouble(P.rm.data(), P.rm.size()),
                      rv = ToDouble(P.rv.data(), P.rv.size());
  const std::vector<double> gd = ToDouble(P.gamma.data(), P.gamma.size()),
                            betad = ToDouble(P.beta.data(), P.beta.size()),
                            wd = ToDouble(P.w.data(), P.w.size()),
                            bd = ToDouble(P.b.data(), P.b.size());
  const struct {
    int64_t M;
    int threads;
    double momentum;
  } steps[] = {{64, 2, 0.1}, {5, 1, 0.1},  {129, 2, 0.3},
               {64, 1, 0.3}, {64, 2, 0.3}, {5, 2, 0.3}};
  Generator g(11);
  for (const auto& st : steps) {
    SCOPED_TRACE("M=" + std::to_string(st.M) +
                 " threads=" + std::to_string(st.threads));
    ASSERT_TRUE(b.set_momentum(st.momentum).ok());
    Buffer x(size_t(st.M * P.K)), out(size_t(st.M * P.N)),
        again(size_t(st.M * P.N));
    x.FillUniform(g);
    ASSERT_TRUE(b.Forward(x.data(), st.M, out.data(), st.threads).ok());
    std::vector<double> xd = ToDouble(x.data(), x.size()),
                        z(size_t(st.M * P.N)), y(z.size());
    ref::linear_forward(xd.data(), wd.data(), bd.data(), z.data(), st.M, P.K,
                        P.N);
    ref::BatchNormOptions opt;
    opt.momentum = st.momentum;
    ASSERT_TRUE(ref::batchnorm_forward_train<double>(
                    z.data(), gd.data(), betad.data(), y.data(), nullptr,
                    nullptr, {rm.data(), rv.data(), nullptr}, st.M, P.N, opt)
                    .ok());
    // A loose bound (the per-step bounds are tested above): 1e-4 relative.
    for (int64_t n = 0; n < P.N; ++n) {
      EXPECT_NEAR(b.running_mean()[n], rm[size_t(n)],
                  1e-4 * (1 + std::fabs(rm[size_t(n)])));
      EXPECT_NEAR(b.running_var()[n], rv[size_t(n)],
                  1e-4 * (1 + std::fabs(rv[size_t(n)])));
    }
    // The same batch again gives the same output bit for bit (the running
    // statistics move, but do not enter training normalization).
    ASSERT_TRUE(b.Forward(x.data(), st.M, again.data(), st.threads).ok());
    EXPECT_EQ(out.ToVector(), again.ToVector());
    ASSERT_TRUE(ref::batchnorm_forward_train<double>(
                    z.data(), gd.data(), betad.data(), y.data(), nullptr,
                    nullptr, {rm.data(), rv.data(), nullptr}, st.M, P.N, opt)
                    .ok());
  }
}

TEST(OnednnTrainTest, BackwardSkipsNullOutputsAndIsRepeatable) {
  SKIP_WITHOUT_ONEDNN();
  const Params P(257, 31, true, true, 8);
  const int64_t M = 64;
  auto block = TrainBlock::Create(P.p);
  ASSERT_TRUE(block.ok());
  TrainBlock& b = **block;
  Generator g(4);
  Buffer x(size_t(M * P.K)), out(size_t(M * P.N)), d_out(size_t(M * P.N));
  x.FillUniform(g), d_out.FillUniform(g);
  ASSERT_TRUE(b.Forward(x.data(), M, out.data(), 2).ok());
  Buffer dx(size_t(M * P.K)), dw(size_t(P.N * P.K)), db(size_t(P.N)),
      dg(size_t(P.N)), dbeta(size_t(P.N));
  ASSERT_TRUE(b.Backward(d_out.data(), dx.data(), dw.data(), db.data(),
                         dg.data(), dbeta.data(), 2)
                  .ok());
  Buffer dw2(size_t(P.N * P.K)), db2(size_t(P.N));
  ASSERT_TRUE(b.Backward(d_out.data(), nullptr, dw2.data(), nullptr, nullptr,
                         nullptr, 2)
                  .ok());
  EXPECT_EQ(dw.ToVector(), dw2.ToVector());
  ASSERT_TRUE(b.Backward(d_out.data(), nullptr, nullptr, db2.data(), nullptr,
                         nullptr, 2)
                  .ok());
  EXPECT_EQ(db.ToVector(), db2.ToVector());
  ASSERT_TRUE(
      b.Backward(d_out.data(), nullptr, nullptr, nullptr, nullptr, nullptr, 2)
          .ok());
}

// --- threads, errors, the build --------------------------------------------

TEST(OnednnBlockTest, CallsRestoreTheOpenMpThreadCount) {
  SKIP_WITHOUT_ONEDNN();
  const Params P(33, 17, true, true, 3);
  const int64_t M = 5;
  Generator g(2);
  Buffer x(size_t(M * P.K)), y(size_t(M * P.N)), d(size_t(M * P.N)),
      dw(size_t(P.N * P.K));
  x.FillUniform(g), d.FillUniform(g);
  auto eval = EvalBlock::Create(P.p, EvalMode::kPostOps);
  auto train = TrainBlock::Create(P.p);
  ASSERT_TRUE(eval.ok() && train.ok());
  const int saved = omp_get_max_threads();
  omp_set_num_threads(3);
  for (int threads : {1, 2}) {
    EXPECT_TRUE((*eval)->Run(x.data(), M, y.data(), threads).ok());
    EXPECT_EQ(omp_get_max_threads(), 3);
    EXPECT_TRUE((*train)->Forward(x.data(), M, y.data(), threads).ok());
    EXPECT_EQ(omp_get_max_threads(), 3);
    EXPECT_TRUE((*train)
                    ->Backward(d.data(), nullptr, dw.data(), nullptr, nullptr,
                               nullptr, threads)
                    .ok());
    EXPECT_EQ(omp_get_max_threads(), 3);
  }
  // Also after a failed call.
  EXPECT_FALSE((*train)->Forward(x.data(), 1, y.data(), 2).ok());
  EXPECT_EQ(omp_get_max_threads(), 3);
  omp_set_num_threads(saved);
}

void ExpectError(const Status& s, StatusCode code, const std::string& prefix,
                 const std::string& detail) {
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_EQ(s.message().rfind(prefix, 0), 0u) << s.message();
  EXPECT_NE(s.message().find(detail), std::string::npos) << s.message();
}

TEST(OnednnBlockTest, ErrorsNameTheOpTheValueAndTheRule) {
  SKIP_WITHOUT_ONEDNN();
  const std::string ev = "onednn eval block: ", tr = "onednn train block: ";
  Params P(7, 15, true, true, 1);
  BlockParams bad = P.p;
  bad.K = 0;
  ExpectError(EvalBlock::Create(bad, EvalMode::kFolded).status(),
              StatusCode::kInvalidArgument, ev, "K = 0");
  ExpectError(TrainBlock::Create(bad).status(), StatusCode::kInvalidArgument,
              tr, "K = 0");
  bad = P.p, bad.w = nullptr;
  ExpectError(EvalBlock::Create(bad, EvalMode::kUnfused).status(),
              StatusCode::kInvalidArgument, ev, "w is null");
  bad = P.p, bad.running_var = nullptr;
  ExpectError(EvalBlock::Create(bad, EvalMode::kPostOps).status(),
              StatusCode::kInvalidArgument, ev, "running_var");
  EXPECT_TRUE(TrainBlock::Create(bad).ok());  // training defaults: 0 and 1
  bad = P.p, bad.eps = 0;
  ExpectError(EvalBlock::Create(bad, EvalMode::kFolded).status(),
              StatusCode::kInvalidArgument, ev, "eps");

  auto eval = EvalBlock::Create(P.p, EvalMode::kFolded);
  auto train = TrainBlock::Create(P.p);
  ASSERT_TRUE(eval.ok() && train.ok());
  std::vector<float> x(7 * 4), y(15 * 4);
  ExpectError((*eval)->Run(x.data(), -1, y.data(), 1),
              StatusCode::kInvalidArgument, ev, "M = -1");
  ExpectError((*eval)->Run(nullptr, 2, y.data(), 1),
              StatusCode::kInvalidArgument, ev, "null");
  ExpectError((*eval)->Run(x.data(), 2, y.data(), 0),
              StatusCode::kInvalidArgument, ev, "threads = 0 must be >= 1");
  ExpectError((*train)->Backward(y.data(), nullptr, y.data(), nullptr, nullptr,
                                 nullptr, 1),
              StatusCode::kFailedPrecondition, tr, "Forward first");
  ExpectError((*train)->Forward(x.data(), 1, y.data(), 1),
              StatusCode::kInvalidArgument, tr,
              "expected more than 1 value per channel");
  ExpectError((*train)->set_momentum(1.5), StatusCode::kInvalidArgument, tr,
              "momentum = 1.5");
}

TEST(OnednnBlockTest, AvailableMatchesWhatCreateDoes) {
  Params P(7, 15, true, true, 1);
  auto eval = EvalBlock::Create(P.p, EvalMode::kFolded);
  auto train = TrainBlock::Create(P.p);
  if (Available()) {
    EXPECT_TRUE(eval.ok()) << eval.status().ToString();
    EXPECT_TRUE(train.ok()) << train.status().ToString();
  } else {
    EXPECT_EQ(eval.status().code(), StatusCode::kUnimplemented);
    EXPECT_EQ(train.status().code(), StatusCode::kUnimplemented);
    EXPECT_NE(eval.status().message().find("built without oneDNN"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace ballast::ops::onednn
