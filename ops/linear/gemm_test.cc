#include "ops/linear/gemm.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "ops/linear/nonzeros.h"
#include "ops/ref/activation.h"
#include "ops/ref/linear.h"
#include "tests/kernel_tester.h"

namespace ballast::ops {
namespace {

using test::Buffer;
using test::ForEachTarget;
using test::Tol;

struct Case {
  int64_t m, k, n;
  Epilogue e = Epilogue::kBiasRelu;
  int threads = 1;
  size_t misalign = 0;
  bool row_major_b = false;  // B = Wᵀ read in place (RowMajorB), not packed
};

// The oracle: ref::linear_forward in double plus the epilogue, and
// Σ|a·b| + |bias| per output for the tolerance.
void Reference(const Case& c, const std::vector<float>& x,
               const std::vector<float>& w, const std::vector<float>& bias,
               const std::vector<float>& scale, const std::vector<float>& shift,
               float slope, std::vector<double>& y, std::vector<double>& mag) {
  std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()),
      xa(x.size()), wa(w.size()), zero(size_t(c.n), 0.0);
  for (size_t i = 0; i < x.size(); ++i) xa[i] = std::fabs(x[i]);
  for (size_t i = 0; i < w.size(); ++i) wa[i] = std::fabs(w[i]);
  y.assign(size_t(c.m * c.n), 0.0);
  mag.assign(size_t(c.m * c.n), 0.0);
  ref::linear_forward(xd.data(), wd.data(), zero.data(), y.data(), c.m, c.k,
                      c.n);
  ref::linear_forward(xa.data(), wa.data(), zero.data(), mag.data(), c.m, c.k,
                      c.n);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double& v = y[size_t(i * c.n + j)];
      double& g = mag[size_t(i * c.n + j)];
      switch (c.e) {
        case Epilogue::kNone:
        case Epilogue::kSgd:  // store the plain product (tested in optim_test)
        case Epilogue::kAdam:
          break;
        case Epilogue::kBias:
        case Epilogue::kBiasStats:
          v += bias[size_t(j)], g += std::fabs(bias[size_t(j)]);
          break;
        case Epilogue::kBiasRelu:
          v = std::max(0.0, v + bias[size_t(j)]),
          g += std::fabs(bias[size_t(j)]);
          break;
        case Epilogue::kBiasLeakyRelu:
          v += bias[size_t(j)], g += std::fabs(bias[size_t(j)]);
          if (v <= 0) v *= slope, g *= std::fabs(slope);
          break;
        case Epilogue::kScaleShift:
        case Epilogue::kScaleShiftRelu:
          v = v * scale[size_t(j)] + shift[size_t(j)];
          g = g * std::fabs(scale[size_t(j)]) + std::fabs(shift[size_t(j)]);
          if (c.e == Epilogue::kScaleShiftRelu) v = std::max(0.0, v);
          break;
      }
    }
  }
}

void RunCase(const Case& c) {
  SCOPED_TRACE(::testing::Message()
               << "M=" << c.m << " K=" << c.k << " N=" << c.n
               << " epilogue=" << EpilogueName(c.e) << " threads=" << c.threads
               << " misalign=" << c.misalign
               << (c.row_major_b ? " B row-major" : " B packed"));
  Generator g(uint64_t(c.m * 1000003 + c.k * 1009 + c.n));
  Buffer x(size_t(c.m * c.k), c.misalign), w(size_t(c.n * c.k), c.misalign),
      bias(size_t(c.n), c.misalign), scale(size_t(c.n)), shift(size_t(c.n)),
      y(size_t(c.m * c.n), c.misalign);
  x.FillUniform(g), w.FillUniform(g), bias.FillUniform(g);
  scale.FillUniform(g, 0.5, 2), shift.FillUniform(g);
  const float slope = 0.1f;
  // The inputs depend only on the shape, so the oracle's results are kept
  // per shape and epilogue: every case runs on every target and thread
  // count, and under emulation the double oracle costs more than the GEMM.
  static std::map<std::tuple<int64_t, int64_t, int64_t, Epilogue>,
                  std::pair<std::vector<double>, std::vector<double>>>
      oracle;
  auto [it, added] = oracle.try_emplace({c.m, c.k, c.n, c.e});
  if (added) {
    Reference(c, x.ToVector(), w.ToVector(), bias.ToVector(), scale.ToVector(),
              shift.ToVector(), slope, it->second.first, it->second.second);
  }
  const std::vector<double>& ref = it->second.first;
  const std::vector<double>& mag = it->second.second;

  std::vector<double> mean(size_t(c.n)), var(size_t(c.n));
  EpilogueArgs ep{bias.data(), scale.data(), shift.data(),
                  slope,       mean.data(),  var.data()};
  GemmArgs args{x.data(), c.k, 1, c.m, y.data(), c.n, c.threads};
  if (c.row_major_b) {
    // Wᵀ [K, N] with a row stride past N and NaN in the gap (Buffer's fill):
    // nothing outside the matrix may reach the result.
    const int64_t ld = c.n + 3;
    Buffer wt(size_t(c.k * ld), c.misalign);
    for (int64_t k = 0; k < c.k; ++k) {
      for (int64_t j = 0; j < c.n; ++j) {
        wt[size_t(k * ld + j)] = w[size_t(j * c.k + k)];
      }
    }
    ASSERT_TRUE(Gemm(args, RowMajorB{wt.data(), c.k, c.n, ld}, c.e, ep).ok());
  } else {
    PackedB packed = PackB(w.data(), c.k, c.n, 1, c.k);
    ASSERT_TRUE(Gemm(args, packed, c.e, ep).ok());
  }
  for (int64_t i = 0; i < c.m * c.n; ++i) {
    ASSERT_NEAR(y[size_t(i)], ref[size_t(i)], Tol::Dot(c.k, mag[size_t(i)]))
        << "at row " << i / c.n << " column " << i % c.n;
  }
  if (c.e == Epilogue::kBiasStats) {
    for (int64_t j = 0; j < c.n; ++j) {
      double s = 0, ss = 0, scale_sum = 0;
      for (int64_t i = 0; i < c.m; ++i) s += ref[size_t(i * c.n + j)];
      const double mu = s / double(c.m);
      for (int64_t i = 0; i < c.m; ++i) {
        const double d = ref[size_t(i * c.n + j)] - mu;
        ss += d * d;
        scale_sum += mag[size_t(i * c.n + j)];
      }
      const double tol = Tol::Dot(c.k, scale_sum / double(c.m));
      ASSERT_NEAR(mean[size_t(j)], mu, tol) << "mean of column " << j;
      ASSERT_NEAR(var[size_t(j)], ss / double(c.m),
                  4 * tol * (tol + std::sqrt(ss / double(c.m))))
          << "variance of column " << j;
    }
  }
}

const int64_t kMs[] = {1, 2, 3, 5, 17, 64, 129};
const int64_t kKNs[] = {1, 7, 15, 16, 17, 31, 33, 255, 257, 784, 1024};
const Epilogue kEpilogues[] = {Epilogue::kNone,       Epilogue::kBias,
                               Epilogue::kBiasRelu,   Epilogue::kBiasLeakyRelu,
                               Epilogue::kScaleShift, Epilogue::kScaleShiftRelu,
                               Epilogue::kBiasStats};

TEST(GemmTest, EverySizeAroundTheVectorWidthOnEveryTarget) {
  ForEachTarget([](const char*) {
    for (int64_t m : kMs) {
      for (int64_t kn : kKNs) {
        // Each of K and N swept with the other small and odd.
        RunCase({m, kn, 17, Epilogue::kBiasRelu, 1, 0});
        RunCase({m, 33, kn, Epilogue::kBiasRelu, 1, 0});
        // Row-major B: its edges are in N (K only changes the row count).
        RunCase({m, 33, kn, Epilogue::kBiasRelu, 1, 0, true});
      }
    }
  });
}

TEST(GemmTest, EveryEpilogueOnEveryTarget) {
  ForEachTarget([](const char*) {
    for (Epilogue e : kEpilogues) {
      for (int64_t m : {1, 5, 64, 129}) RunCase({m, 257, 31, e, 1, 0});
    }
  });
}

// Two threads, and one single-threaded case: one thread takes the same tile
// and K-block paths as each of two, and under qemu every thread count of the
// full set took over a minute.
TEST(GemmTest, TwoThreadsMisalignedPointersAndLargeShapes) {
  ForEachTarget([](const char*) {
    RunCase({129, 1024, 257, Epilogue::kBiasStats, 1, 1});
    const int threads = 2;
    for (Epilogue e : {Epilogue::kBiasRelu, Epilogue::kBiasStats}) {
      RunCase({129, 1024, 257, e, threads, 1});
      RunCase({2, 1024, 1024, e, threads, 0});
      for (bool row_major : {false, true}) {
        RunCase({64, 784, 255, e, threads, 3, row_major});
        RunCase({17, 15, 1024, e, threads, 1, row_major});
      }
    }
  });
}

TEST(GemmTest, ResultsAreIdenticalAcrossRunsForAFixedThreadCount) {
  const int64_t m = 70, k = 300, n = 130;
  Generator g(3);
  Buffer x(size_t(m * k)), w(size_t(n * k));
  x.FillUniform(g), w.FillUniform(g);
  PackedB packed = PackB(w.data(), k, n, 1, k);
  std::vector<double> mean1(static_cast<size_t>(n)),
      var1(static_cast<size_t>(n)), mean2(static_cast<size_t>(n)),
      var2(static_cast<size_t>(n));
  Buffer y1(size_t(m * n)), y2(size_t(m * n));
  EpilogueArgs ep1{nullptr, nullptr, nullptr, 0, mean1.data(), var1.data()};
  EpilogueArgs ep2{nullptr, nullptr, nullptr, 0, mean2.data(), var2.data()};
  ASSERT_TRUE(Gemm({x.data(), k, 1, m, y1.data(), n, 2}, packed,
                   Epilogue::kBiasStats, ep1)
                  .ok());
  ASSERT_TRUE(Gemm({x.data(), k, 1, m, y2.data(), n, 2}, packed,
                   Epilogue::kBiasStats, ep2)
                  .ok());
  EXPECT_EQ(y1.ToVector(), y2.ToVector());
  EXPECT_EQ(mean1, mean2);
  EXPECT_EQ(var1, var2);
}

// The threads share the tiles dynamically (ops/work_ranges.h), and the
// statistics are summed in row blocks fixed by M alone: any thread count,
// and any timing, gives the bits of one thread, on every target (the panel
// width, and so the units, differ between targets).
TEST(GemmTest, ResultsAreIdenticalOnEveryThreadCountOnEveryTarget) {
  ForEachTarget([](const char*) {
    struct Shape {
      int64_t m, k, n;
      bool a_transposed;  // A read down its columns (a weight gradient)
    };
    for (const Shape s :
         {Shape{128, 300, 256, false}, Shape{784, 128, 256, true},
          Shape{13, 64, 10, false}}) {
      Generator g(11);
      Buffer x(size_t(s.m * s.k)), w(size_t(s.n * s.k)), bias(size_t(s.n));
      x.FillUniform(g), w.FillUniform(g), bias.FillUniform(g);
      const PackedB packed = PackB(w.data(), s.k, s.n, 1, s.k);
      std::vector<float> y1;
      std::vector<double> mean1, var1;
      for (int threads = 1; threads <= 4; ++threads) {
        SCOPED_TRACE(testing::Message() << "M=" << s.m << " K=" << s.k << " N="
                                        << s.n << " threads=" << threads);
        std::vector<double> mean(size_t(s.n)), var(size_t(s.n));
        Buffer y(size_t(s.m * s.n));
        const GemmArgs args{x.data(),
                            s.a_transposed ? 1 : s.k,
                            s.a_transposed ? s.m : 1,
                            s.m,
                            y.data(),
                            s.n,
                            threads};
        const Epilogue e =
            s.a_transposed ? Epilogue::kNone : Epilogue::kBiasStats;
        ASSERT_TRUE(
            Gemm(args, packed, e,
                 {bias.data(), nullptr, nullptr, 0, mean.data(), var.data()})
                .ok());
        if (threads == 1) {
          y1 = y.ToVector(), mean1 = mean, var1 = var;
          continue;
        }
        EXPECT_EQ(y.ToVector(), y1);
        if (e == Epilogue::kBiasStats) {
          EXPECT_EQ(mean, mean1);
          EXPECT_EQ(var, var1);
        }
      }
    }
  });
}

// Σy² − (Σy)²/n in float would lose the whole variance here: the mean is
// 1e4 times the standard deviation.
TEST(GemmTest, StatisticsSurviveAMeanFarLargerThanTheSpread) {
  const int64_t m = 256, k = 4, n = 3;
  Generator g(5);
  Buffer x(size_t(m * k)), w(size_t(n * k)), bias(static_cast<size_t>(n));
  x.FillUniform(g, -1e-2f, 1e-2f), w.FillUniform(g);
  for (int64_t j = 0; j < n; ++j) bias[size_t(j)] = 100.0f;
  PackedB packed = PackB(w.data(), k, n, 1, k);
  std::vector<double> mean(static_cast<size_t>(n)), var(static_cast<size_t>(n));
  Buffer y(size_t(m * n));
  for (int threads : {1, 2}) {
    ASSERT_TRUE(
        Gemm({x.data(), k, 1, m, y.data(), n, threads}, packed,
             Epilogue::kBiasStats,
             {bias.data(), nullptr, nullptr, 0, mean.data(), var.data()})
            .ok());
    for (int64_t j = 0; j < n; ++j) {
      double s = 0, ss = 0;
      for (int64_t i = 0; i < m; ++i) s += y[size_t(i * n + j)];
      for (int64_t i = 0; i < m; ++i) {
        const double d = y[size_t(i * n + j)] - s / m;
        ss += d * d;
      }
      EXPECT_NEAR(var[size_t(j)], ss / m, 1e-3 * ss / m) << "column " << j;
    }
  }
}

// StatsReady hands on each thread's columns once their mean and variance
// are final: disjoint ranges covering [0, N), each seen with the values the
// call ends with, from the statistics epilogue and from the pass after a
// GEMM over A's nonzeros, on 1 to 3 threads, N within one panel (where the
// GEMM over A's nonzeros runs the dense one instead) and over five whole
// panels and a partial one (enough for a group of panels on every target).
TEST(GemmTest, StatsReadyCoversEveryColumnOnceWithItsFinalStatistics) {
  ForEachTarget([](const char*) {
    for (int64_t n : {int64_t{5}, 5 * GemmPanelWidth() + 7}) {
      const int64_t m = 50, k = 9;
      Generator g(static_cast<uint64_t>(n));
      Buffer x(size_t(m * k)), w(size_t(n * k)), bias(static_cast<size_t>(n));
      x.FillUniform(g), w.FillUniform(g), bias.FillUniform(g);
      for (size_t i = 0; i < x.size(); i += 3) x.data()[i] = 0.0f;
      Nonzeros nz;
      nz.Index(x.data(), m, k);
      const SparseRows rows = nz.rows();
      const PackedB packed = PackB(w.data(), k, n, 1, k);
      for (int threads = 1; threads <= 3; ++threads) {
        for (bool pass : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "n=" << n << " threads="
                                            << threads << " pass=" << pass);
          const size_t cols = static_cast<size_t>(n);
          std::vector<double> mean(cols), var(cols);
          // Each column: how often it was handed on, and its statistics then.
          struct Seen {
            std::vector<int> count;
            std::vector<double> mean, var;
            const double *m, *v;
          } seen{std::vector<int>(cols), std::vector<double>(cols),
                 std::vector<double>(cols), mean.data(), var.data()};
          const StatsReady ready{[](void* ctx, int64_t n0, int64_t n1) {
                                   auto* s = static_cast<Seen*>(ctx);
                                   for (int64_t j = n0; j < n1; ++j) {
                                     ++s->count[size_t(j)];
                                     s->mean[size_t(j)] = s->m[j],
                                     s->var[size_t(j)] = s->v[j];
                                   }
                                 },
                                 &seen};
          Buffer y(size_t(m * n));
          EpilogueArgs ep{bias.data()};
          ep.mean = mean.data(), ep.var = var.data();
          ep.stats_ready = ready;
          GemmArgs args{x.data(), k, 1, m, y.data(), n, threads};
          args.a_nonzeros = pass ? &rows : nullptr;
          ASSERT_TRUE(Gemm(args, packed, Epilogue::kBiasStats, ep).ok());
          EXPECT_EQ(seen.count, std::vector<int>(cols, 1));
          EXPECT_EQ(seen.mean, mean);
          EXPECT_EQ(seen.var, var);
        }
      }
    }
  });
}

// A row-major A is packed by tiles on 16-register targets (PackedA in
// packed_a.h); A stored transposed is read in place down its columns. Both
// sum each output over k in order, so they give the same bits: every
// epilogue but SGD's, a partial last tile, K in several blocks, 1 and 2
// threads, and one thread's packed copy reused by the next call with other
// values. N is wide enough to be packed on two threads (8 or more 16-column
// panels) except N = 40, which is packed only on SSE4's 8-column panels on
// one.
TEST(GemmTest, PackedRowMajorAMatchesTransposedABitForBit) {
  ForEachTarget([](const char*) {
    const int64_t long_k = GemmKBlockMax() + 37;
    struct Shape {
      int64_t m, k, n;
    };
    for (const Shape s :
         {Shape{12, 2, 130}, Shape{13, 7, 40}, Shape{47, 300, 129},
          Shape{128, 200, 150}, Shape{13, long_k, 128}}) {
      for (const Epilogue e : kEpilogues) {
        for (int threads : {1, 2}) {
          SCOPED_TRACE(testing::Message()
                       << "M=" << s.m << " K=" << s.k << " N=" << s.n
                       << " epilogue=" << EpilogueName(e)
                       << " threads=" << threads);
          Generator g(uint64_t(s.m * 31 + s.k));
          Buffer w(size_t(s.n * s.k)), bias(size_t(s.n)), scale(size_t(s.n)),
              shift(size_t(s.n));
          w.FillUniform(g), bias.FillUniform(g), shift.FillUniform(g);
          scale.FillUniform(g, 0.5, 2);
          const PackedB packed = PackB(w.data(), s.k, s.n, 1, s.k);
          // Two calls with other A values: the second may not reuse the
          // first's packed tiles.
          for (int call = 0; call < 2; ++call) {
            Buffer x(size_t(s.m * s.k)), xt(size_t(s.k * s.m));
            x.FillUniform(g);
            for (int64_t i = 0; i < s.m; ++i) {
              for (int64_t k = 0; k < s.k; ++k) {
                xt[size_t(k * s.m + i)] = x[size_t(i * s.k + k)];
              }
            }
            Buffer y(size_t(s.m * s.n)), yt(size_t(s.m * s.n));
            std::vector<double> mean(size_t(s.n)), var(size_t(s.n)),
                mean_t(size_t(s.n)), var_t(size_t(s.n));
            ASSERT_TRUE(Gemm({x.data(), s.k, 1, s.m, y.data(), s.n, threads},
                             packed, e,
                             {bias.data(), scale.data(), shift.data(), 0.1f,
                              mean.data(), var.data()})
                            .ok());
            ASSERT_TRUE(Gemm({xt.data(), 1, s.m, s.m, yt.data(), s.n, threads},
                             packed, e,
                             {bias.data(), scale.data(), shift.data(), 0.1f,
                              mean_t.data(), var_t.data()})
                            .ok());
            ASSERT_EQ(y.ToVector(), yt.ToVector()) << "call " << call;
            if (e == Epilogue::kBiasStats) {
              EXPECT_EQ(mean, mean_t);
              EXPECT_EQ(var, var_t);
            }
          }
        }
      }
    }
  });
}

TEST(GemmTest, StridedOperandsComputeTransposedProducts) {
  // dW = dZᵀ·X: A = dZᵀ read with strides (1, N); B(m, k) = X[m][k].
  const int64_t m = 37, n = 19, k = 23;
  Generator g(7);
  Buffer dz(size_t(m * n)), x(size_t(m * k)), dw(size_t(n * k));
  dz.FillUniform(g), x.FillUniform(g);
  PackedB packed = PackB(x.data(), m, k, /*stride_k=*/k, /*stride_n=*/1);
  ASSERT_TRUE(
      Gemm({dz.data(), 1, n, n, dw.data(), k, 2}, packed, Epilogue::kNone, {})
          .ok());
  std::vector<float> ref(size_t(n * k));
  ref::linear_backward<float>(x.data(), nullptr, dz.data(), nullptr, ref.data(),
                              nullptr, m, k, n);
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(dw[i], ref[i], Tol::Dot(m, double(m))) << i;
  }
}

TEST(GemmTest, RowMajorOperandsComputeTheTransposedWeightGradient) {
  // dWᵀ [K, N] = Xᵀ·dZ with both read in place: A(k, m) = X[m][k], B = dZ.
  ForEachTarget([](const char*) {
    for (int threads : {1, 2}) {
      for (int64_t n : {10, 16, 256}) {
        const int64_t m = 128, k = 37;
        Generator g(static_cast<uint64_t>(n));
        Buffer dz(size_t(m * n)), x(size_t(m * k)), dwt(size_t(k * n));
        dz.FillUniform(g), x.FillUniform(g);
        ASSERT_TRUE(Gemm({x.data(), 1, k, k, dwt.data(), n, threads},
                         RowMajorB{dz.data(), m, n, n}, Epilogue::kNone, {})
                        .ok());
        std::vector<float> ref(size_t(n * k));
        ref::linear_backward<float>(x.data(), nullptr, dz.data(), nullptr,
                                    ref.data(), nullptr, m, k, n);
        for (int64_t j = 0; j < n; ++j) {
          for (int64_t i = 0; i < k; ++i) {
            ASSERT_NEAR(dwt[size_t(i * n + j)], ref[size_t(j * k + i)],
                        Tol::Dot(m, double(m)))
                << "dW[" << j << "][" << i << "], N=" << n;
          }
        }
      }
    }
  });
}

// n floats that end where an unreadable page begins: reading one float past
// the end faults.
class GuardedFloats {
 public:
  explicit GuardedFloats(size_t n) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t bytes = (n * sizeof(float) + page - 1) / page * page;
    size_ = bytes + page;
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    base_ = static_cast<char*>(p);
    if (mprotect(base_ + bytes, page, PROT_NONE) != 0) return;
    data_ = reinterpret_cast<float*>(base_ + bytes) - n;
  }
  ~GuardedFloats() {
    if (base_) munmap(base_, size_);
  }
  float* data() { return data_; }

 private:
  char* base_ = nullptr;
  size_t size_ = 0;
  float* data_ = nullptr;
};

TEST(GemmTest, RowMajorBNeverReadsPastItsLastRowAndMatchesPackedBitForBit) {
  ForEachTarget([](const char*) {
    for (int64_t n : {1, 10, 16, 17, 40, 64, 70, 784}) {
      const int64_t m = 7, k = 5;
      SCOPED_TRACE(::testing::Message() << "N=" << n);
      Generator g(static_cast<uint64_t>(n));
      Buffer x(size_t(m * k)), y_packed(size_t(m * n)), y_row(size_t(m * n));
      x.FillUniform(g);
      GuardedFloats wt(size_t(k * n));  // Wᵀ [K, N], tight rows
      ASSERT_NE(wt.data(), nullptr);
      g.FillUniform({wt.data(), size_t(k * n)}, -1, 1);
      const GemmArgs a{x.data(), k, 1, m, y_row.data(), n, 1};
      ASSERT_TRUE(
          Gemm(a, RowMajorB{wt.data(), k, n, n}, Epilogue::kNone, {}).ok());
      const PackedB packed = PackB(wt.data(), k, n, n, 1);
      ASSERT_TRUE(Gemm({x.data(), k, 1, m, y_packed.data(), n, 1}, packed,
                       Epilogue::kNone, {})
                      .ok());
      EXPECT_EQ(y_row.ToVector(), y_packed.ToVector());
    }
  });
}

// The trainer's weight layout: Wᵀ kept in panels in its own storage (PanelB),
// its gradient written into the same layout (y_panel_stride), and W packed
// from it for dX (PackBFromPanels). Each is compared with the ordinary
// path, which sums in the same order, so bit for bit.
TEST(GemmTest, PanelLayoutOperandsMatchTheOrdinaryPathBitForBit) {
  ForEachTarget([](const char*) {
    for (int threads : {1, 2}) {
      // K = 131: several output panels of PackBFromPanels, the last partial,
      // and edges of its 4 × 4 transpose squares in both directions.
      for (auto [n, k] : {std::pair<int64_t, int64_t>{1, 37},
                          {10, 37},
                          {16, 37},
                          {17, 37},
                          {64, 37},
                          {100, 37},
                          {256, 37},
                          {10, 131},
                          {17, 131},
                          {100, 131}}) {
        const int64_t m = 13;
        SCOPED_TRACE(::testing::Message()
                     << "N=" << n << " K=" << k << " threads=" << threads);
        Generator g(static_cast<uint64_t>(n + 100 * threads));
        Buffer x(size_t(m * k)), w(size_t(n * k));  // W [N, K]
        x.FillUniform(g), w.FillUniform(g);
        const int64_t width = PanelLayoutWidth(n);
        ASSERT_TRUE(width == GemmPanelWidth() || n <= width);
        std::vector<float> panels(size_t(PackedFloats(k, n)), NAN);
        PackBTo(panels.data(), w.data(), k, n, 1, k, threads);
        // Forward: Y = X·Wᵀ.
        Buffer y_ref(size_t(m * n)), y(size_t(m * n));
        ASSERT_TRUE(Gemm({x.data(), k, 1, m, y_ref.data(), n, threads},
                         PackB(w.data(), k, n, 1, k), Epilogue::kNone, {})
                        .ok());
        ASSERT_TRUE(Gemm({x.data(), k, 1, m, y.data(), n, threads},
                         PanelB{panels.data(), k, n}, Epilogue::kNone, {})
                        .ok());
        EXPECT_EQ(y.ToVector(), y_ref.ToVector());
        // dX = Y·W through W packed from the panels.
        Buffer dx_ref(size_t(m * k)), dx(size_t(m * k));
        ASSERT_TRUE(Gemm({y.data(), n, 1, m, dx_ref.data(), k, threads},
                         PackB(w.data(), n, k, k, 1), Epilogue::kNone, {})
                        .ok());
        PackedB from_panels;
        PackBFromPanels(from_panels, panels.data(), k, n, threads);
        ASSERT_TRUE(Gemm({y.data(), n, 1, m, dx.data(), k, threads},
                         from_panels, Epilogue::kNone, {})
                        .ok());
        EXPECT_EQ(dx.ToVector(), dx_ref.ToVector());
        // dWᵀ [K, N] = Xᵀ·Y written in the panel layout.
        Buffer dwt_ref(size_t(k * n));
        const PackedB y_packed = PackB(y.data(), m, n, n, 1);
        ASSERT_TRUE(Gemm({x.data(), 1, k, k, dwt_ref.data(), n, threads},
                         y_packed, Epilogue::kNone, {})
                        .ok());
        std::vector<float> dwt(size_t(PackedFloats(k, n)), 0.0f);
        GemmArgs a{x.data(), 1, k, k, dwt.data(), width, threads};
        a.y_panel_stride = k * width;
        ASSERT_TRUE(Gemm(a, y_packed, Epilogue::kNone, {}).ok());
        for (int64_t i = 0; i < k; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            ASSERT_EQ(
                dwt[size_t((j / width) * k * width + i * width + j % width)],
                dwt_ref[size_t(i * n + j)])
                << "dWᵀ(" << i << ", " << j << ")";
          }
        }
        // The padding of the last panel stays untouched (zero).
        for (int64_t i = 0; i < k; ++i) {
          for (int64_t j = n; j % width != 0; ++j) {
            ASSERT_EQ(
                dwt[size_t((j / width) * k * width + i * width + j % width)],
                0.0f);
          }
        }
      }
    }
  });
}

// One or two rows take the wide tile over several panels at once. It must
// give the bits of the one-panel tile: each panel computed alone (a call per
// panel-wide slice of B), for every epilogue but the statistics, with B
// packed and in place, and written in the panel layout too.
TEST(GemmTest, WideTilesOfOneAndTwoRowsMatchOnePanelAtATimeBitForBit) {
  ForEachTarget([](const char*) {
    const int64_t nr = GemmPanelWidth();
    const SgdArgs sgd{
        .lr = 0.05f, .weight_decay = 0.01f, .momentum = 0.9f, .has_buf = true};
    for (int threads : {1, 2}) {
      for (int64_t m : {1, 2}) {
        for (int64_t n : {4 * nr, 9 * nr + 5}) {
          for (int64_t k :
               {int64_t{1}, int64_t{37}, int64_t{300}, GemmKBlockMax() + 37}) {
            for (Epilogue e :
                 {Epilogue::kNone, Epilogue::kBias, Epilogue::kBiasRelu,
                  Epilogue::kBiasLeakyRelu, Epilogue::kScaleShift,
                  Epilogue::kScaleShiftRelu, Epilogue::kSgd}) {
              SCOPED_TRACE(::testing::Message()
                           << "M=" << m << " K=" << k << " N=" << n
                           << " epilogue=" << EpilogueName(e)
                           << " threads=" << threads);
              Generator g(uint64_t(m * 7 + k * 131 + n));
              const size_t mn = size_t(m * n), nn = size_t(n);
              Buffer x(size_t(m * k)), wt(size_t(k * n)), bias(nn), scale(nn),
                  shift(nn), w0(mn), buf0(mn);
              x.FillUniform(g), wt.FillUniform(g), bias.FillUniform(g);
              scale.FillUniform(g, 0.5, 2), shift.FillUniform(g);
              w0.FillUniform(g), buf0.FillUniform(g);
              // The updated weight and momentum of kSgd are [M, N] like Y.
              struct Out {
                std::vector<float> y, w, buf;
              };
              // One call over all of N; with panel_y, Y (and the weight and
              // momentum of kSgd) in the panel layout, read back row-major.
              const auto run = [&](const auto& b, bool panel_y) {
                const int64_t ldy = panel_y ? nr : n;
                const auto at = [&](int64_t i, int64_t j) {
                  return size_t(panel_y ? (j / nr) * m * nr + i * nr + j % nr
                                        : i * n + j);
                };
                const size_t size = size_t((n + nr - 1) / nr * nr * m);
                std::vector<float> y(size, NAN), w(size, 0.0f), buf(size, 0.0f);
                for (int64_t i = 0; i < m; ++i) {
                  for (int64_t j = 0; j < n; ++j) {
                    w[at(i, j)] = w0[size_t(i * n + j)];
                    buf[at(i, j)] = buf0[size_t(i * n + j)];
                  }
                }
                EpilogueArgs ep{bias.data(), scale.data(), shift.data(), 0.1f};
                ep.sgd = &sgd, ep.update_w = w.data(), ep.sgd_buf = buf.data();
                GemmArgs a{x.data(), k, 1, m, y.data(), ldy, threads};
                if (panel_y) a.y_panel_stride = m * nr;
                EXPECT_TRUE(Gemm(a, b, e, ep).ok());
                Out o;
                for (int64_t i = 0; i < m; ++i) {
                  for (int64_t j = 0; j < n; ++j) {
                    o.y.push_back(y[at(i, j)]);
                    o.w.push_back(w[at(i, j)]);
                    o.buf.push_back(buf[at(i, j)]);
                  }
                }
                return o;
              };
              // B = Wᵀ [K, N] in place (row stride n), from column j0 on.
              const auto in_place = [&](int64_t j0, int64_t cols) {
                return RowMajorB{wt.data() + j0, k, cols, n};
              };
              const PackedB packed = PackB(wt.data(), k, n, n, 1);
              // The oracle: one call per panel-wide slice.
              Out ref{std::vector<float>(size_t(m * n), NAN), w0.ToVector(),
                      buf0.ToVector()};
              for (int64_t j0 = 0; j0 < n; j0 += nr) {
                const int64_t cols = std::min(nr, n - j0);
                EpilogueArgs ep{bias.data() + j0, scale.data() + j0,
                                shift.data() + j0, 0.1f};
                ep.sgd = &sgd;
                ep.update_w = ref.w.data() + j0;
                ep.sgd_buf = ref.buf.data() + j0;
                GemmArgs a{x.data(), k, 1, m, ref.y.data() + j0, n, 1};
                ASSERT_TRUE(Gemm(a, in_place(j0, cols), e, ep).ok());
              }
              for (bool panel_y : {false, true}) {
                const Out a = run(in_place(0, n), panel_y);
                const Out b = run(packed, panel_y);
                EXPECT_EQ(a.y, ref.y) << "B in place, panel Y " << panel_y;
                EXPECT_EQ(b.y, ref.y) << "B packed, panel Y " << panel_y;
                if (e == Epilogue::kSgd) {
                  EXPECT_EQ(a.w, ref.w);
                  EXPECT_EQ(a.buf, ref.buf);
                  EXPECT_EQ(b.w, ref.w);
                  EXPECT_EQ(b.buf, ref.buf);
                }
              }
            }
          }
        }
      }
    }
  });
}

// A row's outputs do not depend on how many rows a call computes: a
// session's chunks and a server's batches give each row the bits it gets
// alone. Every row count from the wide tiles' one and two rows to whole and
// partial six-row tiles, K within one block and over several (each block's
// sums added to the earlier ones' in every tile), 1 and 2 threads.
TEST(GemmTest, EachRowGetsTheSameBitsWhateverTheRowsBesideIt) {
  ForEachTarget([](const char*) {
    const int64_t nr = GemmPanelWidth();
    const int64_t kMaxRows = 20;
    for (int64_t k : {int64_t{300}, 2 * GemmKBlockMax() + 37}) {
      for (int64_t n : {4 * nr, 3 * nr + 5}) {
        Generator g(uint64_t(k + n));
        Buffer x(size_t(kMaxRows * k)), w(size_t(n * k)),
            bias(static_cast<size_t>(n));
        x.FillUniform(g), w.FillUniform(g), bias.FillUniform(g);
        const PackedB packed = PackB(w.data(), k, n, 1, k);
        for (Epilogue e : {Epilogue::kNone, Epilogue::kBiasRelu}) {
          for (int threads : {1, 2}) {
            SCOPED_TRACE(::testing::Message() << "K=" << k << " N=" << n
                                              << " epilogue=" << EpilogueName(e)
                                              << " threads=" << threads);
            const auto run = [&](int64_t m) {
              Buffer y(size_t(m * n));
              EXPECT_TRUE(Gemm({x.data(), k, 1, m, y.data(), n, threads},
                               packed, e, {bias.data()})
                              .ok());
              return y.ToVector();
            };
            const std::vector<float> all = run(kMaxRows);
            for (int64_t m = 1; m < kMaxRows; ++m) {
              const std::vector<float> some = run(m);
              ASSERT_EQ(some,
                        std::vector<float>(all.begin(), all.begin() + m * n))
                  << "the first " << m << " rows";
            }
          }
        }
      }
    }
  });
}

// kSgd without storing the gradient: the same weight and momentum bits, and
// Y untouched where K fits one block; a longer K still works through Y.
TEST(GemmTest, SgdWithoutStoringTheGradientUpdatesTheSameBits) {
  ForEachTarget([](const char*) {
    const SgdArgs sgd{
        .lr = 0.05f, .weight_decay = 0.01f, .momentum = 0.9f, .has_buf = true};
    for (int threads : {1, 2}) {
      for (int64_t m : {1, 64, 129}) {
        for (int64_t k : {37, 3000}) {
          const int64_t n = 70;
          SCOPED_TRACE(::testing::Message()
                       << "M=" << m << " K=" << k << " threads=" << threads);
          Generator g(uint64_t(m + k));
          Buffer x(size_t(m * k)), wt(size_t(k * n));
          x.FillUniform(g), wt.FillUniform(g);
          const PackedB b = PackB(wt.data(), k, n, n, 1);
          std::vector<float> w0(size_t(m * n)), buf0(size_t(m * n));
          g.FillUniform(w0, -1, 1), g.FillUniform(buf0, -1, 1);
          std::vector<float> y[2], w[2], buf[2];
          for (int store = 0; store < 2; ++store) {
            y[store].assign(size_t(m * n), NAN);
            w[store] = w0, buf[store] = buf0;
            EpilogueArgs ep;
            ep.sgd = &sgd, ep.update_w = w[store].data();
            ep.sgd_buf = buf[store].data();
            ep.store_grad = store == 1;
            ASSERT_TRUE(Gemm({x.data(), k, 1, m, y[store].data(), n, threads},
                             b, Epilogue::kSgd, ep)
                            .ok());
          }
          EXPECT_EQ(w[0], w[1]);
          EXPECT_EQ(buf[0], buf[1]);
          EXPECT_NE(w[1], w0);
          if (k == 37) {
            for (float v : y[0]) ASSERT_TRUE(std::isnan(v)) << "Y was written";
          }
        }
      }
    }
  });
}

TEST(GemmTest, RejectsWeightsPackedForAnotherTargetAndBadArguments) {
  std::vector<float> w(64 * 8, 1.0f), x(8, 1.0f), y(64);
  PackedB packed = PackB(w.data(), 8, 64, 1, 8);
  bool saw_mismatch = false;
  // Targets of one panel width share a layout: a mismatch is seen exactly
  // when some target's width differs from the packing target's.
  std::set<int64_t> widths = {packed.nr()};
  ForEachTarget([&](const char*) {
    Status s =
        Gemm({x.data(), 8, 1, 1, y.data(), 64, 1}, packed, Epilogue::kNone, {});
    widths.insert(GemmPanelWidth());
    if (GemmPanelWidth() != packed.nr()) {
      EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
      EXPECT_NE(s.message().find("pack them again"), std::string::npos);
      saw_mismatch = true;
    } else {
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
  });
  EXPECT_EQ(saw_mismatch, widths.size() > 1);
  EXPECT_FALSE(
      Gemm({x.data(), 8, 1, 1, y.data(), 10, 1}, packed, Epilogue::kNone, {})
          .ok());
  EXPECT_FALSE(Gemm({x.data(), 8, 1, 1, y.data(), 64, 1}, packed,
                    Epilogue::kScaleShift, {})
                   .ok());
  // A row-major B whose row stride is below its width.
  const Status s = Gemm({x.data(), 8, 1, 1, y.data(), 64, 1},
                        RowMajorB{w.data(), 8, 64, 32}, Epilogue::kNone, {});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("row stride 32"), std::string::npos)
      << s.ToString();
  // A panel-layout output too small for its rows, and with statistics.
  std::vector<double> mean(64), var(64);
  GemmArgs panel_y{x.data(), 8, 1, 1, y.data(), GemmPanelWidth(), 1};
  panel_y.y_panel_stride = 1;
  EXPECT_EQ(Gemm(panel_y, packed, Epilogue::kNone, {}).code(),
            StatusCode::kInvalidArgument);
  panel_y.y_panel_stride = GemmPanelWidth();
  EpilogueArgs stats;
  stats.mean = mean.data(), stats.var = var.data();
  EXPECT_EQ(Gemm(panel_y, packed, Epilogue::kBiasStats, stats).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ballast::ops
