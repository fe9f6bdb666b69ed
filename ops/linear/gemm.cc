// Dispatch and target-independent parts of the GEMM (see gemm.h).
#include "ops/linear/gemm.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ops/cache_aligned.h"
#include "ops/tasks.h"
#include "ops/work_ranges.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/linear/gemm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/linear/gemm-inl.h"

#if HWY_ONCE
namespace ballast::ops {

HWY_EXPORT(PackBImpl);
HWY_EXPORT(PackBFromPanelsImpl);
HWY_EXPORT(PanelWidth);
HWY_EXPORT(VectorLanes);
HWY_EXPORT(GemmImpl);

const char* EpilogueName(Epilogue e) {
  switch (e) {
    case Epilogue::kNone:
      return "none";
    case Epilogue::kBias:
      return "bias";
    case Epilogue::kBiasRelu:
      return "bias_relu";
    case Epilogue::kBiasLeakyRelu:
      return "bias_leaky_relu";
    case Epilogue::kScaleShift:
      return "scale_shift";
    case Epilogue::kScaleShiftRelu:
      return "scale_shift_relu";
    case Epilogue::kBiasStats:
      return "bias_stats";
    case Epilogue::kSgd:
      return "sgd";
    case Epilogue::kAdam:
      return "adam";
  }
  return "unknown";
}

void PackedB::Free::operator()(float* p) const { std::free(p); }

int64_t GemmPanelWidth() { return HWY_DYNAMIC_DISPATCH(PanelWidth)(); }

void PackedB::Reserve(int64_t K, int64_t N) {
  k_ = K;
  n_ = N;
  nr_ = GemmPanelWidth();
  const size_t floats = size_t(panels() * nr_ * std::max<int64_t>(K, 1));
  if (floats > capacity_ || !data_) {
    const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    if (!data_) throw std::bad_alloc();
    capacity_ = floats;
  }
}

float* PackedB::Layout(int64_t K, int64_t N) {
  Reserve(K, N);
  const int64_t used = N - (panels() - 1) * nr_;
  if (N > 0 && used < nr_) {
    float* last = data_.get() + (panels() - 1) * nr_ * K;
    for (int64_t k = 0; k < K; ++k) {
      std::fill(last + k * nr_ + used, last + (k + 1) * nr_, 0.0f);
    }
  }
  return data_.get();
}

void PackBInto(PackedB& b, const float* src, int64_t K, int64_t N,
               int64_t stride_k, int64_t stride_n, int threads) {
  b.Reserve(K, N);
  const int t = InParallel() ? 1 : std::max(1, threads);
  HWY_DYNAMIC_DISPATCH(PackBImpl)
  (src, K, N, stride_k, stride_n, b.data_.get(), t);
}

int64_t PanelLayoutWidth(int64_t N) {
  const int64_t lanes = HWY_DYNAMIC_DISPATCH(VectorLanes)();
  return N <= lanes ? lanes : GemmPanelWidth();
}

int64_t PackedFloats(int64_t K, int64_t N) {
  const int64_t w = PanelLayoutWidth(N);
  return (N + w - 1) / w * w * std::max<int64_t>(K, 1);
}

void PackBTo(float* dst, const float* src, int64_t K, int64_t N,
             int64_t stride_k, int64_t stride_n, int threads) {
  const int64_t w = PanelLayoutWidth(N);
  if (w != GemmPanelWidth()) {  // one narrow panel
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t j = 0; j < w; ++j) {
        dst[k * w + j] = j < N ? src[k * stride_k + j * stride_n] : 0.0f;
      }
    }
    return;
  }
  const int t = InParallel() ? 1 : std::max(1, threads);
  HWY_DYNAMIC_DISPATCH(PackBImpl)(src, K, N, stride_k, stride_n, dst, t);
}

void PackBFromPanels(PackedB& b, const float* panels, int64_t K, int64_t N,
                     int threads) {
  // The result is [N, K]: rows n of the source, columns k.
  b.Reserve(N, K);
  const int t =
      InParallel() || K * N < (int64_t{1} << 14) ? 1 : std::max(1, threads);
  HWY_DYNAMIC_DISPATCH(PackBFromPanelsImpl)
  (panels, K, N, PanelLayoutWidth(N), b.data_.get(), t);
}

namespace {

// K pieces of C floats, from src (stride ls) to dst (stride ld).
template <int64_t C>
void CopyPieces(const float* src, int64_t ls, float* dst, int64_t ld,
                int64_t K) {
  for (int64_t k = 0; k < K; ++k) {
    std::memcpy(dst + k * ld, src + k * ls, C * sizeof(float));
  }
}

}  // namespace

void PanelsToRows(const float* panels, int64_t K, int64_t N, float* rows,
                  int threads) {
  const int64_t w = PanelLayoutWidth(N);
  const int64_t count = (N + w - 1) / w;
  // Thread t copies panels [count·t/T, count·(t + 1)/T): its GEMMs' home
  // range (ops/work_ranges.h), which its core just updated.
  const int T =
      InParallel()
          ? 1
          : int(std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, count)));
  const auto copy_panel = [&](int64_t p) {
    const int64_t cols = std::min(w, N - p * w);
    const float* src = panels + p * K * w;
    float* dst = rows + p * w;
    // The usual panel widths as fixed-size copies, which the compiler
    // inlines: a call of memcpy per 64-byte piece took most of the time.
    if (cols == 16) {
      CopyPieces<16>(src, w, dst, N, K);
    } else if (cols == 64) {
      CopyPieces<64>(src, w, dst, N, K);
    } else {
      for (int64_t k = 0; k < K; ++k) {
        std::memcpy(dst + k * N, src + k * w, size_t(cols) * sizeof(float));
      }
    }
  };
  ParallelFor(count, T, copy_panel);
}

PackedB PackB(const float* src, int64_t K, int64_t N, int64_t stride_k,
              int64_t stride_n, int threads) {
  PackedB b;
  PackBInto(b, src, K, N, stride_k, stride_n, threads);
  return b;
}

namespace {

// K block length. Measured here (Zen 5, AVX3, NR = 64): long blocks win;
// reloading the C tile every short block costs more than streaming the
// panel from L2. So a panel block (kc × NR floats) takes up to a quarter of
// L2. BALLAST_GEMM_KC overrides it for tuning.
int64_t KcMax(int64_t nr) {
  static const long l2 = [] {
    long v = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return v > 0 ? v : 512L * 1024;
  }();
  static const long env = [] {
    const char* s = std::getenv("BALLAST_GEMM_KC");
    return s ? std::atol(s) : 0L;
  }();
  if (env > 0) return env;
  return std::max<int64_t>(
      128, int64_t(l2 / 4) / (nr * int64_t(sizeof(float))) / 8 * 8);
}

// The statistics chunks of a plan: one per unit, in whole cache lines of
// its own (the thread that runs the unit is the only one that writes them).
// Per thread, grown once and then reused.
GemmStatsChunk* StatsChunks(const GemmPlan& plan, int64_t nr) {
  thread_local std::vector<GemmStatsChunk> chunks;
  thread_local AlignedVector<double> scratch;
  thread_local AlignedVector<float> scratch_f;
  const int64_t stride = (3 * nr + 7) / 8 * 8;  // doubles
  const int64_t stride_f = (nr + 15) / 16 * 16;
  const size_t count = size_t(plan.units());
  scratch.resize(size_t(stride) * count);
  scratch_f.resize(size_t(stride_f) * count);
  chunks.resize(count);
  for (size_t u = 0; u < count; ++u) {
    double* base = scratch.data() + size_t(stride) * u;
    chunks[u] = {base, base + nr, base + 2 * nr,
                 scratch_f.data() + size_t(stride_f) * u,
                 plan.ChunkRows(int(int64_t(u) % plan.row_blocks))};
  }
  return chunks.data();
}

// Checks the arguments and runs the kernel over B's panels.
Status GemmPanels(const GemmArgs& args, const BPanels& b, Epilogue epilogue,
                  const EpilogueArgs& ep) {
  if (args.m < 0) {
    return InvalidArgument("gemm: M = " + std::to_string(args.m) +
                           " must be >= 0");
  }
  if (args.y_panel_stride > 0) {
    if (args.ldy < std::min(b.nr, b.n) ||
        args.y_panel_stride < args.m * args.ldy) {
      return InvalidArgument("gemm: panel-layout output with row stride " +
                             std::to_string(args.ldy) + " and panel stride " +
                             std::to_string(args.y_panel_stride) +
                             " cannot hold " + std::to_string(args.m) +
                             " rows of " + std::to_string(b.nr) +
                             " columns per panel");
    }
    if (epilogue == Epilogue::kBiasStats) {
      return InvalidArgument(
          "gemm: epilogue bias_stats needs a row-major output");
    }
  } else if (args.ldy < b.n) {
    return InvalidArgument("gemm: output row stride " +
                           std::to_string(args.ldy) +
                           " is below N = " + std::to_string(b.n));
  }
  const bool scale_shift = epilogue == Epilogue::kScaleShift ||
                           epilogue == Epilogue::kScaleShiftRelu;
  if (scale_shift && ep.scale == nullptr) {
    return InvalidArgument(std::string("gemm: epilogue ") +
                           EpilogueName(epilogue) + " needs a scale vector");
  }
  if (epilogue == Epilogue::kSgd &&
      (ep.sgd == nullptr || ep.update_w == nullptr ||
       (ep.sgd->has_buf && ep.sgd_buf == nullptr))) {
    return InvalidArgument(
        "gemm: epilogue sgd needs its arguments, the weight and, with "
        "momentum, the buffer");
  }
  if (epilogue == Epilogue::kAdam &&
      (ep.adam == nullptr || ep.update_w == nullptr || ep.adam_m == nullptr ||
       ep.adam_v == nullptr)) {
    return InvalidArgument(
        "gemm: epilogue adam needs its arguments, the weight and both "
        "moments");
  }
  const bool stats = epilogue == Epilogue::kBiasStats;
  if (stats && (ep.mean == nullptr || ep.var == nullptr)) {
    return InvalidArgument(
        "gemm: epilogue bias_stats needs mean and var outputs");
  }
  if (args.m == 0 || b.n == 0) {
    if (stats) {
      for (int64_t j = 0; j < b.n; ++j) ep.mean[j] = ep.var[j] = 0.0;
      ep.stats_ready(0, b.n);
    }
    return Status::Ok();
  }
  // Inside a task (or a region of the caller's) the call keeps to its
  // thread: no nesting.
  const int threads = InParallel() ? 1 : std::max(1, args.threads);
  // One or two rows: a unit spans the panels one wide tile computes, enough
  // vectors for kGemmWideChains accumulators (see WideTile in gemm-inl.h).
  int64_t group = 1;
  const int64_t vectors = b.nr / HWY_DYNAMIC_DISPATCH(VectorLanes)();
  int64_t kc_max = KcMax(b.nr);
  GemmArgs a = args;
  if (a.a_nonzeros != nullptr) {
    if (a.a_nonzeros->rows != a.m || a.a_nonzeros->cols != b.k) {
      return InvalidArgument(
          "gemm: A's nonzeros index a " + std::to_string(a.a_nonzeros->rows) +
          " x " + std::to_string(a.a_nonzeros->cols) + " matrix, not " +
          std::to_string(a.m) + " x " + std::to_string(b.k));
    }
    // Rows one at a time, wide tiles of one row over whole groups of
    // panels; GemmUnit blocks K itself, each row's sums going on through
    // the blocks. The dense GEMM instead where that would not give its bits
    // (it splits a long K into blocks whose sums it adds) or would not pay
    // (no whole group: one-row tiles of one panel over all of A).
    group = std::max<int64_t>(1, kGemmWideChains / vectors);
    if (b.k > kc_max || b.n / b.nr < group) {
      a.a_nonzeros = nullptr;
      group = 1;
    } else {
      kc_max = std::max<int64_t>(1, b.k);
    }
  }
  if (a.a_nonzeros == nullptr && a.m <= kGemmWideM && !stats) {
    group = std::max<int64_t>(1, kGemmWideChains / (a.m * vectors));
  }
  GemmPlan plan = GemmPlan::Make(threads, a.m, b.k, b.panels(), kc_max, group);
  if (a.a_nonzeros != nullptr) {
    // Long row blocks, so that each K block of B, loaded into L1 once per
    // row block, serves many rows' nonzeros. All rows in one block on one
    // thread (the forward above: 0.94 of the time of 11 row blocks), and on
    // more where the groups of panels split evenly over them: each thread
    // then sums every row over its own columns, the same work as the
    // others. (On AVX3, 128 × 256 × 256 at a quarter, two groups: the
    // forward took 21.5-22.0 µs against 23.3-26.3 with two blocks per
    // thread, in one-thread against two-thread trainers alternated, three
    // runs; the two-thread step 0.985-1.010 of the time, four runs.)
    // Otherwise two blocks per thread, which keep them evenly loaded (one
    // each: 1.04-1.10 of the time of 11 on AVX2). Against blocks of two
    // tiles (11 of 12 rows in the forward, 15 of 18 in the weight
    // gradient), the two-thread training step took 0.987-0.995 of the time
    // (AVX3, 1500 steps alternated, 5 runs; 0.96-0.98 in the host's slower
    // spells).
    const bool whole_groups = plan.groups() % plan.threads == 0;
    plan.SetRowBlocks(plan.threads == 1 || whole_groups ? 1 : 2 * plan.threads);
  }

  thread_local WorkRanges work;
  if (!stats) {
    HWY_DYNAMIC_DISPATCH(GemmImpl)(a, b, epilogue, ep, plan, nullptr, &work);
    return Status::Ok();
  }
  // The statistics: summed in the epilogue, or, over A's nonzeros (whose
  // kernel has none), by a pass over each panel's stored columns after the
  // GEMM, with the row blocks the epilogue would have had (those of a dense
  // plan: they depend on M alone).
  GemmStats s;
  GemmPlan pass;
  Epilogue kernel_epilogue = epilogue;
  if (a.a_nonzeros != nullptr) {
    pass = GemmPlan::Make(plan.threads, a.m, 1, b.panels(), 1);
    s.pass = &pass;
    kernel_epilogue = Epilogue::kBias;
  }
  s.chunks = StatsChunks(s.pass ? pass : plan, b.nr);
  HWY_DYNAMIC_DISPATCH(GemmImpl)(a, b, kernel_epilogue, ep, plan, &s, &work);
  return Status::Ok();
}

}  // namespace

int64_t GemmKBlockMax() { return KcMax(GemmPanelWidth()); }

Status Gemm(const GemmArgs& args, const PackedB& b, Epilogue epilogue,
            const EpilogueArgs& ep) {
  if (b.empty()) return InvalidArgument("gemm: weights are not packed");
  if (b.nr() != GemmPanelWidth()) {
    return FailedPrecondition(
        "gemm: weights were packed for panels of " + std::to_string(b.nr()) +
        " columns but the current SIMD target uses " +
        std::to_string(GemmPanelWidth()) + "; pack them again");
  }
  const BPanels panels{b.panel(0), b.k(),  b.n(),
                       b.nr(),     b.nr(), b.nr() * b.k()};
  return GemmPanels(args, panels, epilogue, ep);
}

Status Gemm(const GemmArgs& args, const PanelB& b, Epilogue epilogue,
            const EpilogueArgs& ep) {
  if (b.k < 0 || b.n < 0 || (b.data == nullptr && b.k * b.n != 0)) {
    return InvalidArgument("gemm: panel-layout B of " + std::to_string(b.k) +
                           " x " + std::to_string(b.n) + " without data");
  }
  // A narrow layout (one vector) is one panel the kernel reads one vector of.
  const int64_t nr = GemmPanelWidth(), w = PanelLayoutWidth(b.n);
  return GemmPanels(args, BPanels{b.data, b.k, b.n, nr, w, w * b.k}, epilogue,
                    ep);
}

Status Gemm(const GemmArgs& args, const RowMajorB& b, Epilogue epilogue,
            const EpilogueArgs& ep) {
  if (b.k < 0 || b.n < 0 || b.ld < b.n ||
      (b.data == nullptr && b.k * b.n != 0)) {
    return InvalidArgument("gemm: row-major B of " + std::to_string(b.k) +
                           " x " + std::to_string(b.n) + " with row stride " +
                           std::to_string(b.ld) +
                           " (needs a stride >= columns and data)");
  }
  BPanels panels{b.data, b.k, b.n, GemmPanelWidth(), b.ld, GemmPanelWidth()};
  // The kernel reads a panel as whole vectors: NR columns, or one vector for
  // a last panel of at most one. A last panel of any other width would read
  // past the row, so it is packed (zero-padded) first.
  const int64_t last = panels.panels() - 1;
  const int64_t cols = b.n - last * panels.nr;
  thread_local std::vector<float> edge;  // grows once, then reused
  if (b.n > 0 && cols != panels.nr &&
      cols != HWY_DYNAMIC_DISPATCH(VectorLanes)()) {
    edge.resize(size_t(panels.nr * std::max<int64_t>(b.k, 1)));
    HWY_DYNAMIC_DISPATCH(PackBImpl)
    (b.data + last * panels.nr, b.k, cols, b.ld, 1, edge.data(), 1);
    panels.edge = edge.data();
  }
  return GemmPanels(args, panels, epilogue, ep);
}

}  // namespace ballast::ops
#endif  // HWY_ONCE
