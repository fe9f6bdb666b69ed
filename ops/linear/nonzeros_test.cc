// Nonzeros (ops/linear/nonzeros.h) and the GEMM over A's nonzeros
// (GemmArgs::a_nonzeros): the same bits as the dense GEMM.
#include "ops/linear/nonzeros.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "ops/block/block_kernels.h"
#include "ops/linear/gemm.h"
#include "ops/linear/gemm_plan.h"
#include "tests/kernel_tester.h"

namespace ballast::ops {
namespace {

using test::Buffer;
using test::ForEachTarget;

// Keeps about a share (i mod 4) / 4 of row i of x [m, k]: row 0 (and every
// fourth) all zeros, negative zeros among them.
void Thin(Buffer& x, int64_t m, int64_t k) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      float& v = x.data()[i * k + j];
      if (std::fabs(v) * 4 >= float(i % 4)) v = j % 2 ? 0.0f : -0.0f;
    }
  }
}

// Index lists, by rows and by columns, every value that is not ±0 (NaN
// included), in index order: whole vectors and the rows' tails, the rows
// split over 1 to 3 threads (200 × 130 is large enough to split), empty
// shapes, one object reused across all.
TEST(NonzerosTest, ListEveryValueThatIsNotZeroInOrderOnEveryTarget) {
  ForEachTarget([](const char*) {
    Generator g(5);
    Nonzeros nz;  // reused, as the trainer does
    for (int64_t m : {0, 1, 3, 70, 200}) {
      for (int64_t k : {0, 1, 9, 130}) {
        Buffer x(size_t(m * k));
        x.FillUniform(g);
        for (size_t i = 0; i < x.size(); ++i) {
          float& v = x.data()[i];
          if (v < 0.2f) v = i % 3 ? 0.0f : -0.0f;
        }
        if (m * k > 5) x.data()[5] = NAN;
        for (int threads : {1, 2, 3}) {
          SCOPED_TRACE(::testing::Message()
                       << "M=" << m << " K=" << k << " threads=" << threads);
          const double density = nz.Index(x.data(), m, k, threads);
          const SparseRows rows = nz.rows(), cols = nz.cols();
          EXPECT_EQ(rows.rows, m);
          EXPECT_EQ(rows.cols, k);
          EXPECT_EQ(cols.rows, k);
          EXPECT_EQ(cols.cols, m);
          int64_t count = 0;
          for (int64_t i = 0; i < m; ++i) {
            int32_t t = rows.start[i];
            for (int64_t j = 0; j < k; ++j) {
              const float v = x.data()[i * k + j];
              if (v == 0.0f) continue;
              ++count;
              ASSERT_LT(t, rows.start[i + 1]);
              EXPECT_EQ(rows.index[t], j);
              EXPECT_EQ(std::memcmp(&rows.value[t], &v, 4), 0);
              ++t;
            }
            EXPECT_EQ(t, rows.start[i + 1]);
          }
          for (int64_t j = 0; j < k; ++j) {
            int32_t t = cols.start[j];
            for (int64_t i = 0; i < m; ++i) {
              const float v = x.data()[i * k + j];
              if (v == 0.0f) continue;
              ASSERT_LT(t, cols.start[j + 1]);
              EXPECT_EQ(cols.index[t], i);
              EXPECT_EQ(std::memcmp(&cols.value[t], &v, 4), 0);
              ++t;
            }
            EXPECT_EQ(t, cols.start[j + 1]);
          }
          EXPECT_EQ(density, m * k > 0 ? double(count) / double(m * k) : 0.0);
          EXPECT_EQ(Nonzeros::Density(x.data(), m, k), density);
        }
      }
    }
  });
}

// Two indexes of one shape, the same lists: starts, positions, and values bit
// for bit (a NaN among them).
void ExpectSameLists(const SparseRows& a, const SparseRows& b) {
  ASSERT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.cols, b.cols);
  const std::vector<int32_t> sa(a.start, a.start + a.rows + 1),
      sb(b.start, b.start + b.rows + 1);
  ASSERT_EQ(sa, sb);
  const int32_t n = sa.back();
  EXPECT_EQ(std::vector<int32_t>(a.index, a.index + n),
            std::vector<int32_t>(b.index, b.index + n));
  EXPECT_EQ(std::memcmp(a.value, b.value, size_t(n) * sizeof(float)), 0);
}

// IndexFromMask builds Index's lists from the bits of the nonzeros (as a
// fused block's pass mask holds them): shapes around the 64-bit words and
// 64-row blocks of the transpose, empty ones, 1 to 3 threads, one object
// reused; a NaN and an infinity among the values, negative zeros where the
// bits are clear, and stray bits past the last column, which it ignores.
TEST(NonzerosTest, IndexFromTheMaskOfTheNonzerosGivesTheSameLists) {
  // Index compresses rows per target: compare with each.
  ForEachTarget([](const char*) {
    Generator g(11);
    Nonzeros from_mask, from_floats;
    struct Shape {
      int64_t m, k;
    };
    for (const Shape sh :
         {Shape{0, 5}, Shape{5, 0}, Shape{1, 1}, Shape{3, 9}, Shape{65, 64},
          Shape{70, 130}, Shape{128, 256}, Shape{200, 130}}) {
      const int64_t m = sh.m, k = sh.k, words = MaskWordsPerRow(k);
      Buffer x(size_t(m * k));
      x.FillUniform(g);
      std::vector<uint64_t> mask(size_t(m * words), 0);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < k; ++j) {
          float& v = x.data()[i * k + j];
          if (std::fabs(v) < 0.75f) {
            v = (i + j) % 2 ? 0.0f : -0.0f;
          } else {
            mask[size_t(MaskWord(m, i, j))] |= uint64_t{1} << (j % 64);
          }
        }
        if (k % 64)
          mask[size_t(MaskWord(m, i, k - 1))] |= ~uint64_t{0} << (k % 64);
      }
      if (m * k > 20) {
        x.data()[7] = NAN;
        x.data()[19] = INFINITY;
        for (int64_t e : {7, 19}) {
          mask[size_t(MaskWord(m, e / k, e % k))] |= uint64_t{1}
                                                     << (e % k % 64);
        }
      }
      for (int threads : {1, 2, 3}) {
        SCOPED_TRACE(::testing::Message()
                     << "M=" << m << " K=" << k << " threads=" << threads);
        const double expected = from_floats.Index(x.data(), m, k, threads);
        EXPECT_EQ(from_mask.IndexFromMask(x.data(), mask.data(), m, k, threads),
                  expected);
        EXPECT_EQ(Nonzeros::MaskDensity(mask.data(), m, k), expected);
        ExpectSameLists(from_mask.rows(), from_floats.rows());
        ExpectSameLists(from_mask.cols(), from_floats.cols());
      }
    }
  });
}

// IndexFromMask compresses a row a vector at a time, its stores reaching
// past the row's count, except in each thread's last rows, which it walks
// by their bits: rows dense and empty around the threads' boundaries (all
// dense, alternating, dense only at the ends of each share, one dense row
// among empty ones) still give Index's lists on 1 to 3 threads.
TEST(NonzerosTest, IndexFromMaskAroundTheThreadsBoundaries) {
  ForEachTarget([](const char*) {
    const int64_t m = 96, k = 200, words = MaskWordsPerRow(k);
    const auto dense_row = [&](int pattern, int64_t i) {
      switch (pattern) {
        case 0:
          return true;
        case 1:
          return i % 2 == 1;
        case 2:
          return i % 32 >= 29 || i % 48 == 47;  // the last rows of shares
        default:
          return i == 47;
      }
    };
    Nonzeros from_mask, from_floats;
    for (int pattern = 0; pattern < 4; ++pattern) {
      Buffer x(size_t(m * k));
      std::vector<uint64_t> mask(size_t(m * words), 0);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < k; ++j) {
          const bool keep = dense_row(pattern, i);
          x.data()[i * k + j] = keep ? float(i * k + j + 1) : 0.0f;
          if (keep) mask[size_t(MaskWord(m, i, j))] |= uint64_t{1} << (j % 64);
        }
      }
      for (int threads : {1, 2, 3}) {
        SCOPED_TRACE(::testing::Message()
                     << "pattern " << pattern << " threads=" << threads);
        const double expected = from_floats.Index(x.data(), m, k, threads);
        EXPECT_EQ(from_mask.IndexFromMask(x.data(), mask.data(), m, k, threads),
                  expected);
        ExpectSameLists(from_mask.rows(), from_floats.rows());
        ExpectSameLists(from_mask.cols(), from_floats.cols());
      }
    }
  });
}

// The forward form: A row-major, every epilogue but the statistics, B
// packed, in place and in the panel layout, Y row-major and in the panel
// layout, one and two threads. K of 37 and 300 runs one to five of the
// sparse tile's K blocks (AVX2 128 rows, AVX-512 64), a last one partial
// (K stays within the dense GEMM's K block, past which the dense GEMM runs
// instead: 128 rows at SVE's 2048 bits); N of two whole groups of panels
// (a wide tile's 8 vectors) and a last panel of one vector, or of more
// than one vector and less than a whole panel. (Sizes
// kept few and in groups, not panels: the suite also runs under qemu at
// four SVE lengths, and at 2048 bits a panel is 256 columns.)
TEST(SparseGemmTest, SkippingTheZerosOfAMatchesTheDenseProductBitForBit) {
  ForEachTarget([](const char*) {
    const int64_t nr = GemmPanelWidth();
    const int64_t lanes = PanelLayoutWidth(1);
    const int64_t group = kGemmWideChains * lanes;
    const SgdArgs sgd{
        .lr = 0.05f, .weight_decay = 0.01f, .momentum = 0.9f, .has_buf = true};
    const AdamArgs adam{.weight_decay = 0.01f, .neg_step_size = -1e-3f};
    for (int threads : {1, 2}) {
      for (int64_t m : {1, 40}) {
        for (int64_t n : {2 * group + lanes, 2 * group + nr + lanes + 1}) {
          for (int64_t k :
               {int64_t{37}, std::min<int64_t>(300, GemmKBlockMax())}) {
            for (Epilogue e :
                 {Epilogue::kNone, Epilogue::kBias, Epilogue::kBiasRelu,
                  Epilogue::kBiasLeakyRelu, Epilogue::kScaleShift,
                  Epilogue::kScaleShiftRelu, Epilogue::kSgd, Epilogue::kAdam}) {
              SCOPED_TRACE(::testing::Message()
                           << "M=" << m << " K=" << k << " N=" << n
                           << " epilogue=" << EpilogueName(e)
                           << " threads=" << threads);
              Generator g(uint64_t(m * 7 + k * 131 + n));
              const size_t nn = size_t(n), mn = size_t(m * n);
              Buffer x(size_t(m * k)), wt(size_t(k * n)), bias(nn), scale(nn),
                  w0(mn), buf0(mn), v0(mn), panels(size_t(PackedFloats(k, n)));
              x.FillUniform(g), wt.FillUniform(g), bias.FillUniform(g);
              scale.FillUniform(g, 0.5, 2), w0.FillUniform(g);
              buf0.FillUniform(g), v0.FillUniform(g, 0, 0.01);
              Thin(x, m, k);
              PackBTo(panels.data(), wt.data(), k, n, n, 1);
              Nonzeros nz;
              nz.Index(x.data(), m, k);
              const SparseRows rows = nz.rows();
              // Y, then the weight and momentum of kSgd (Adam's m) and
              // Adam's v (laid out as Y).
              const auto run = [&](const auto& b, bool panel_y,
                                   const SparseRows* skip) {
                const int64_t ldy = panel_y ? nr : n;
                const size_t size = size_t((n + nr - 1) / nr * nr * m);
                std::vector<float> y(size, 12345.0f), w(size, 0.0f),
                    buf(size, 0.0f), v(size, 0.0f);
                std::copy(w0.data(), w0.data() + mn, w.begin());
                std::copy(buf0.data(), buf0.data() + mn, buf.begin());
                std::copy(v0.data(), v0.data() + mn, v.begin());
                EpilogueArgs ep{bias.data(), scale.data(), bias.data(), 0.1f};
                ep.update_w = w.data();
                ep.sgd = &sgd, ep.sgd_buf = buf.data();
                ep.adam = &adam, ep.adam_m = buf.data(), ep.adam_v = v.data();
                GemmArgs a{x.data(), k, 1, m, y.data(), ldy, threads};
                if (panel_y) a.y_panel_stride = m * nr;
                a.a_nonzeros = skip;
                EXPECT_TRUE(Gemm(a, b, e, ep).ok());
                y.insert(y.end(), w.begin(), w.end());
                y.insert(y.end(), buf.begin(), buf.end());
                y.insert(y.end(), v.begin(), v.end());
                return y;
              };
              const PackedB packed = PackB(wt.data(), k, n, n, 1);
              const RowMajorB in_place{wt.data(), k, n, n};
              const PanelB panel{panels.data(), k, n};
              for (bool panel_y : {false, true}) {
                const std::vector<float> dense = run(packed, panel_y, nullptr);
                EXPECT_EQ(run(packed, panel_y, &rows), dense) << "packed";
                EXPECT_EQ(run(in_place, panel_y, &rows), dense) << "in place";
                EXPECT_EQ(run(panel, panel_y, &rows), dense) << "panels";
              }
            }
          }
        }
      }
    }
  });
}

// The weight-gradient form of the trainer: dWᵀ = Xᵀ·dZ with A = Xᵀ read
// down its columns (its nonzeros by columns of X), dZ in place, dWᵀ in the
// panel layout, the SGD or Adam step in the epilogue without the gradient
// stored; a
// batch of 200 runs two of AVX2's K blocks (partial sums through Y).
TEST(SparseGemmTest, WeightGradientOverTheColumnsOfXMatchesTheDenseBits) {
  ForEachTarget([](const char*) {
    const int64_t nr = GemmPanelWidth();
    const SgdArgs sgd{.lr = 0.05f, .momentum = 0.9f, .has_buf = true};
    const AdamArgs adam{
        .decoupled = true, .decay = 0.999f, .neg_step_size = -1e-3f};
    for (Epilogue e : {Epilogue::kSgd, Epilogue::kAdam})
      for (int threads : {1, 2}) {
        for (int64_t batch : {13, 200}) {
          const int64_t in = 70, out = 8 * nr + 3;
          SCOPED_TRACE(::testing::Message()
                       << "batch=" << batch << " threads=" << threads
                       << " epilogue=" << EpilogueName(e));
          Generator g(uint64_t(batch + out));
          Buffer x(size_t(batch * in)), dz(size_t(batch * out));
          x.FillUniform(g), dz.FillUniform(g);
          Thin(x, batch, in);
          Nonzeros nz;
          nz.Index(x.data(), batch, in);
          const SparseRows cols = nz.cols();
          const size_t size = size_t(PackedFloats(in, out));
          Buffer w0(size), buf0(size), v0(size);
          w0.FillUniform(g), buf0.FillUniform(g), v0.FillUniform(g, 0, 0.01);
          // dZ packed (dense and sparse, as the trainer runs them) or read in
          // place (sparse).
          const auto run = [&](bool skip, bool in_place) {
            std::vector<float> dw(size, 0.0f),
                w = w0.ToVector(), buf = buf0.ToVector(), v = v0.ToVector();
            const int64_t ld = PanelLayoutWidth(out);
            GemmArgs a{x.data(), 1, in, in, dw.data(), ld, threads};
            a.y_panel_stride = in * ld;
            a.a_nonzeros = skip ? &cols : nullptr;
            EpilogueArgs ep;
            ep.update_w = w.data();
            ep.sgd = &sgd, ep.sgd_buf = buf.data();
            ep.adam = &adam, ep.adam_m = buf.data(), ep.adam_v = v.data();
            ep.store_grad = false;
            const Status s =
                in_place ? Gemm(a, RowMajorB{dz.data(), batch, out, out}, e, ep)
                         : Gemm(a, PackB(dz.data(), batch, out, out, 1), e, ep);
            EXPECT_TRUE(s.ok()) << s.ToString();
            w.insert(w.end(), buf.begin(), buf.end());
            w.insert(w.end(), v.begin(), v.end());
            return w;
          };
          const std::vector<float> dense = run(false, false);
          EXPECT_EQ(run(true, false), dense);
          EXPECT_EQ(run(true, true), dense);
        }
      }
  });
}

// Where the dense GEMM would split K into blocks (adding their sums) or N
// has no whole group of panels, it runs instead: still the dense bits. A
// mismatched index is refused.
TEST(SparseGemmTest, LongKAndNarrowOutputsRunTheDenseGemm) {
  ForEachTarget([](const char*) {
    const int64_t nr = GemmPanelWidth();
    for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{
                               7, GemmKBlockMax() + 37, 4 * nr},
                           {40, 50, 10},
                           {40, 50, nr + 3}}) {
      SCOPED_TRACE(::testing::Message()
                   << "M=" << m << " K=" << k << " N=" << n);
      Generator g{uint64_t(k)};
      Buffer x(size_t(m * k)), wt(size_t(k * n));
      x.FillUniform(g), wt.FillUniform(g);
      Thin(x, m, k);
      Nonzeros nz;
      nz.Index(x.data(), m, k);
      const SparseRows rows = nz.rows();
      std::vector<float> dense(size_t(m * n)), sparse(size_t(m * n));
      GemmArgs a{x.data(), k, 1, m, dense.data(), n, 1};
      ASSERT_TRUE(
          Gemm(a, RowMajorB{wt.data(), k, n, n}, Epilogue::kNone, {}).ok());
      a.y = sparse.data();
      a.a_nonzeros = &rows;
      ASSERT_TRUE(
          Gemm(a, RowMajorB{wt.data(), k, n, n}, Epilogue::kNone, {}).ok());
      EXPECT_EQ(sparse, dense);
    }
    Buffer x(4 * 8), wt(8 * 8);
    Generator g(1);
    x.FillUniform(g);
    std::vector<float> y(4 * 8);
    Nonzeros nz;
    nz.Index(x.data(), 4, 8);
    const SparseRows rows = nz.rows(), cols = nz.cols();
    GemmArgs a{x.data(), 8, 1, 4, y.data(), 8, 1};
    a.a_nonzeros = &cols;  // 8 × 4: not A's shape
    EXPECT_FALSE(
        Gemm(a, RowMajorB{wt.data(), 8, 8, 8}, Epilogue::kNone, {}).ok());
    a.a_nonzeros = &rows;
    EXPECT_TRUE(
        Gemm(a, RowMajorB{wt.data(), 8, 8, 8}, Epilogue::kNone, {}).ok());
  });
}

// kBiasStats over A's nonzeros (its statistics summed by a pass over Y):
// the bits of the dense GEMM's epilogue, on one and two threads, B in the
// panel layout.
TEST(SparseGemmTest, StatisticsAfterTheGemmMatchTheEpilogueBitForBit) {
  ForEachTarget([](const char*) {
    for (int threads : {1, 2}) {
      for (int64_t m : {1, 13, 128}) {
        for (int64_t n : {10, 256, 300}) {
          SCOPED_TRACE(::testing::Message()
                       << "M=" << m << " N=" << n << " threads=" << threads);
          const int64_t k = 64;
          Generator g(uint64_t(m + n));
          const size_t nn = size_t(n);
          Buffer x(size_t(m * k)), w(size_t(PackedFloats(k, n))), bias(nn);
          x.FillUniform(g), w.FillUniform(g), bias.FillUniform(g);
          for (size_t i = 0; i < x.size(); i += 2) x.data()[i] = 0.0f;
          Nonzeros nz;
          nz.Index(x.data(), m, k);
          const SparseRows rows = nz.rows();
          std::vector<float> y1(size_t(m * n)), y2(size_t(m * n));
          std::vector<double> mean1(nn), var1(nn), mean2(nn), var2(nn);
          EpilogueArgs ep{bias.data()};
          ep.mean = mean1.data(), ep.var = var1.data();
          const PanelB b{w.data(), k, n};
          ASSERT_TRUE(Gemm({x.data(), k, 1, m, y1.data(), n, threads}, b,
                           Epilogue::kBiasStats, ep)
                          .ok());
          GemmArgs a{x.data(), k, 1, m, y2.data(), n, threads};
          a.a_nonzeros = &rows;
          ep.mean = mean2.data(), ep.var = var2.data();
          ASSERT_TRUE(Gemm(a, b, Epilogue::kBiasStats, ep).ok());
          EXPECT_EQ(y1, y2);
          EXPECT_EQ(mean1, mean2);
          EXPECT_EQ(var1, var2);
        }
      }
    }
  });
}

}  // namespace
}  // namespace ballast::ops
