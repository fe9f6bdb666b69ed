#include "benchmarks/lbr_cases.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "ballast/rng.h"
#include "ops/block/lbr.h"
#include "ops/ref/activation.h"
#include "ops/ref/batchnorm.h"
#include "ops/ref/dropout.h"
#include "ops/ref/fold.h"
#include "ops/ref/linear.h"
#if BALLAST_HAVE_ONEDNN
#include "ops/onednn/onednn_block.h"
#endif

namespace ballast::bench {

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kEval:
      return "eval";
    case Mode::kTrainFwd:
      return "train_fwd";
    case Mode::kTrainFwdBwd:
      return "train_fwd_bwd";
  }
  return "?";
}

const char* BackendName(Backend b) {
  switch (b) {
    case Backend::kRef:
      return "ref";
    case Backend::kHwy:
      return "hwy";
    case Backend::kOnednn:
      return "onednn";
  }
  return "?";
}

double CaseSpec::Flops() const {
  const double f = 2.0 * double(M) * double(K) * double(N);
  return mode == Mode::kTrainFwdBwd ? 3 * f : f;
}

std::string CaseSpec::Label() const {
  return std::string(ModeName(mode)) + " " + BackendName(backend) +
         (fused ? " fused" : " unfused") + " M=" + std::to_string(M) +
         " K=" + std::to_string(K) + " N=" + std::to_string(N) +
         " t=" + std::to_string(threads);
}

namespace {

// Random block parameters and input, shared by every backend.
struct Data {
  explicit Data(const CaseSpec& s)
      : x(size_t(s.M * s.K)),
        w(size_t(s.N * s.K)),
        b(size_t(s.N)),
        gamma(size_t(s.N)),
        beta(size_t(s.N)),
        rm(size_t(s.N)),
        rv(size_t(s.N)),
        out(size_t(s.M * s.N)),
        d_out(size_t(s.M * s.N)),
        dx(size_t(s.M * s.K)),
        dw(size_t(s.N * s.K)),
        db(size_t(s.N)),
        dgamma(size_t(s.N)),
        dbeta(size_t(s.N)) {
    Generator g(1);
    const double bound = 1.0 / std::sqrt(double(s.K));
    g.FillUniform(x, -1, 1);
    g.FillUniform(w, -bound, bound);
    g.FillUniform(b, -bound, bound);
    g.FillUniform(gamma, 0.5, 1.5);
    g.FillUniform(beta, -0.5, 0.5);
    g.FillUniform(rm, -0.1, 0.1);
    g.FillUniform(rv, 0.5, 1.5);
    g.FillUniform(d_out, -1, 1);
    params = {w.data(),  b.data(), gamma.data(), beta.data(), rm.data(),
              rv.data(), s.K,      s.N,          1e-5};
  }
  std::vector<float> x, w, b, gamma, beta, rm, rv, out, d_out, dx, dw, db,
      dgamma, dbeta;
  ops::BlockParams params;
};

class HwyEval : public Case {
 public:
  HwyEval(const CaseSpec& s, ops::EvalBlock block)
      : s_(s), d_(s), block_(std::move(block)) {}
  Status Run() override {
    return block_.Run(d_.x.data(), s_.M, d_.out.data(), s_.threads);
  }
  static Result<std::unique_ptr<Case>> Make(const CaseSpec& s) {
    Data d(s);
    BALLAST_ASSIGN_OR_RETURN(ops::EvalBlock b,
                             ops::EvalBlock::Create(d.params, s.fused));
    return std::unique_ptr<Case>(new HwyEval(s, std::move(b)));
  }

 private:
  CaseSpec s_;
  Data d_;
  ops::EvalBlock block_;
};

class HwyTrain : public Case {
 public:
  HwyTrain(const CaseSpec& s, ops::TrainBlock block)
      : s_(s), d_(s), block_(std::move(block)), gen_(7) {}
  Status Run() override {
    BALLAST_RETURN_IF_ERROR(block_.Forward(d_.x.data(), s_.M, d_.out.data(),
                                           gen_.Take(s_.M * s_.N), s_.fused,
                                           s_.threads));
    if (s_.mode != Mode::kTrainFwdBwd) return Status::Ok();
    return block_.Backward(d_.d_out.data(), d_.dx.data(), d_.dw.data(),
                           d_.db.data(), d_.dgamma.data(), d_.dbeta.data(),
                           s_.threads);
  }
  static Result<std::unique_ptr<Case>> Make(const CaseSpec& s) {
    Data d(s);
    BALLAST_ASSIGN_OR_RETURN(
        ops::TrainBlock b,
        ops::TrainBlock::Create(d.params, s.dropout, 0.1, s.M));
    return std::unique_ptr<Case>(new HwyTrain(s, std::move(b)));
  }

 private:
  CaseSpec s_;
  Data d_;
  ops::TrainBlock block_;
  Generator gen_;
};

// The scalar oracle, single-threaded: the floor every backend must beat.
class RefCase : public Case {
 public:
  explicit RefCase(const CaseSpec& s)
      : s_(s),
        d_(s),
        z_(size_t(s.M * s.N)),
        bn_(size_t(s.M * s.N)),
        wf_(size_t(s.N * s.K)),
        bf_(size_t(s.N)),
        mean_(size_t(s.N)),
        rstd_(size_t(s.N)),
        mask_(size_t(ref::DropoutMaskWords(s.M * s.N))) {
    ref::fold_batchnorm(d_.w.data(), d_.b.data(), d_.gamma.data(),
                        d_.beta.data(), d_.rm.data(), d_.rv.data(), 1e-5, s.K,
                        s.N, wf_.data(), bf_.data());
  }
  Status Run() override {
    const int64_t M = s_.M, K = s_.K, N = s_.N;
    if (s_.mode == Mode::kEval) {
      if (s_.fused) {
        ref::linear_forward(d_.x.data(), wf_.data(), bf_.data(), d_.out.data(),
                            M, K, N);
      } else {
        ref::linear_forward(d_.x.data(), d_.w.data(), d_.b.data(), z_.data(), M,
                            K, N);
        ref::batchnorm_forward_eval(z_.data(), d_.gamma.data(), d_.beta.data(),
                                    d_.rm.data(), d_.rv.data(), d_.out.data(),
                                    M, N, 1e-5);
      }
      ref::relu_forward(d_.out.data(), d_.out.data(), M * N);
      return Status::Ok();
    }
    int64_t batches = 0;
    ref::linear_forward(d_.x.data(), d_.w.data(), d_.b.data(), z_.data(), M, K,
                        N);
    BALLAST_RETURN_IF_ERROR(ref::batchnorm_forward_train<float>(
        z_.data(), d_.gamma.data(), d_.beta.data(), bn_.data(), mean_.data(),
        rstd_.data(), {d_.rm.data(), d_.rv.data(), &batches}, M, N, {}));
    ref::relu_forward(bn_.data(), d_.out.data(), M * N);
    BALLAST_RETURN_IF_ERROR(
        ref::dropout_forward_train(d_.out.data(), d_.out.data(), mask_.data(),
                                   M * N, s_.dropout, gen_.Take(M * N)));
    if (s_.mode != Mode::kTrainFwdBwd) return Status::Ok();
    ref::dropout_backward(mask_.data(), d_.d_out.data(), z_.data(), M * N,
                          s_.dropout);
    ref::relu_backward(bn_.data(), z_.data(), bn_.data(), M * N);
    ref::batchnorm_backward(z_.data(), d_.gamma.data(), mean_.data(),
                            rstd_.data(), bn_.data(), bn_.data(),
                            d_.dgamma.data(), d_.dbeta.data(), M, N);
    ref::linear_backward(d_.x.data(), d_.w.data(), bn_.data(), d_.dx.data(),
                         d_.dw.data(), d_.db.data(), M, K, N);
    return Status::Ok();
  }

 private:
  CaseSpec s_;
  Data d_;
  std::vector<float> z_, bn_, wf_, bf_, mean_, rstd_;
  std::vector<uint64_t> mask_;
  Generator gen_{3};
};

#if BALLAST_HAVE_ONEDNN
class OnednnEval : public Case {
 public:
  OnednnEval(const CaseSpec& s, Data d,
             std::unique_ptr<ops::onednn::EvalBlock> b)
      : s_(s), d_(std::move(d)), block_(std::move(b)) {}
  Status Run() override {
    return block_->Run(d_.x.data(), s_.M, d_.out.data(), s_.threads);
  }
  static Result<std::unique_ptr<Case>> Make(const CaseSpec& s) {
    Data d(s);
    // Fused on oneDNN: BN folded, inner product with a bias + ReLU post-op.
    std::vector<float> wf(d.w.size()), bf(d.b.size());
    ref::fold_batchnorm(d.w.data(), d.b.data(), d.gamma.data(), d.beta.data(),
                        d.rm.data(), d.rv.data(), 1e-5, s.K, s.N, wf.data(),
                        bf.data());
    ops::onednn::BlockParams p{d.w.data(),    d.b.data(),  d.gamma.data(),
                               d.beta.data(), d.rm.data(), d.rv.data(),
                               s.K,           s.N,         1e-5};
    if (s.fused) {
      p.w = wf.data();
      p.b = bf.data();
    }
    BALLAST_ASSIGN_OR_RETURN(auto block,
                             ops::onednn::EvalBlock::Create(
                                 p, s.fused ? ops::onednn::EvalMode::kFolded
                                            : ops::onednn::EvalMode::kUnfused));
    return std::unique_ptr<Case>(
        new OnednnEval(s, std::move(d), std::move(block)));
  }

 private:
  CaseSpec s_;
  Data d_;
  std::unique_ptr<ops::onednn::EvalBlock> block_;
};

class OnednnTrain : public Case {
 public:
  OnednnTrain(const CaseSpec& s, Data d,
              std::unique_ptr<ops::onednn::TrainBlock> b)
      : s_(s), d_(std::move(d)), block_(std::move(b)) {}
  Status Run() override {
    BALLAST_RETURN_IF_ERROR(
        block_->Forward(d_.x.data(), s_.M, d_.out.data(), s_.threads));
    if (s_.mode != Mode::kTrainFwdBwd) return Status::Ok();
    return block_->Backward(d_.d_out.data(), d_.dx.data(), d_.dw.data(),
                            d_.db.data(), d_.dgamma.data(), d_.dbeta.data(),
                            s_.threads);
  }
  static Result<std::unique_ptr<Case>> Make(const CaseSpec& s) {
    if (s.dropout > 0) {
      return Unimplemented("onednn: training blocks run without dropout");
    }
    Data d(s);
    ops::onednn::BlockParams p{d.w.data(),    d.b.data(),  d.gamma.data(),
                               d.beta.data(), d.rm.data(), d.rv.data(),
                               s.K,           s.N,         1e-5};
    BALLAST_ASSIGN_OR_RETURN(auto block, ops::onednn::TrainBlock::Create(p));
    return std::unique_ptr<Case>(
        new OnednnTrain(s, std::move(d), std::move(block)));
  }

 private:
  CaseSpec s_;
  Data d_;
  std::unique_ptr<ops::onednn::TrainBlock> block_;
};
#endif

}  // namespace

Result<std::unique_ptr<Case>> MakeCase(const CaseSpec& s) {
  switch (s.backend) {
    case Backend::kRef:
      return std::unique_ptr<Case>(new RefCase(s));
    case Backend::kHwy:
      return s.mode == Mode::kEval ? HwyEval::Make(s) : HwyTrain::Make(s);
    case Backend::kOnednn:
#if BALLAST_HAVE_ONEDNN
      return s.mode == Mode::kEval ? OnednnEval::Make(s) : OnednnTrain::Make(s);
#else
      return Unimplemented("onednn: ballast was built without oneDNN");
#endif
  }
  return Internal("unknown backend");
}

}  // namespace ballast::bench

namespace ballast::bench {

Result<int64_t> CalibrateBatch(Case& c, double batch_seconds) {
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  int warm = 0;
  do {
    BALLAST_RETURN_IF_ERROR(c.Run());
    ++warm;
  } while (std::chrono::duration<double>(Clock::now() - t0).count() <
               batch_seconds &&
           warm < 1000);
  const double per_call =
      std::chrono::duration<double>(Clock::now() - t0).count() / warm;
  return std::max<int64_t>(1,
                           int64_t(batch_seconds / std::max(per_call, 1e-9)));
}

Result<double> TimeBatch(Case& c, int64_t reps) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  for (int64_t r = 0; r < reps; ++r) BALLAST_RETURN_IF_ERROR(c.Run());
  return std::chrono::duration<double>(Clock::now() - t0).count() /
         double(reps);
}

Result<std::vector<double>> InterleavedMedians(std::vector<Case*> cases,
                                               double seconds_per_case,
                                               int rounds) {
  std::vector<int64_t> reps;
  for (Case* c : cases) {
    BALLAST_ASSIGN_OR_RETURN(const int64_t r,
                             CalibrateBatch(*c, seconds_per_case / rounds));
    reps.push_back(r);
  }
  std::vector<std::vector<double>> times(cases.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < cases.size(); ++i) {
      BALLAST_ASSIGN_OR_RETURN(const double t, TimeBatch(*cases[i], reps[i]));
      times[i].push_back(t);
    }
  }
  std::vector<double> medians;
  for (std::vector<double>& t : times) {
    std::sort(t.begin(), t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

}  // namespace ballast::bench
