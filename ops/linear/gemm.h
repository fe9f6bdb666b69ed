// fp32 GEMM core for the Linear op: Y = A·B with an epilogue applied to each
// register tile before it is stored.
//
// B (the weights) is packed once into column panels of NR = NV·lanes columns
// (NR depends on the Highway target chosen at run time); a panel stores its
// K rows of NR floats contiguously, zero-padded past N. A and Y are plain
// strided row-major-ish arrays. For the Linear op y = x·Wᵀ with W [N, K],
// pack B from W with PackB(w, K, N, /*stride_k=*/1, /*stride_n=*/K).
//
// The micro-kernel keeps MR rows × NR columns of accumulators in registers,
// walks K in blocks of KC (a panel block takes at most a quarter of L2;
// measured faster here than L1-sized blocks, whose C-tile reloads cost more),
// and applies the epilogue on the last block. Every M walks the same
// blocks, so a row's outputs do not depend on the rows beside it; M <= 2
// computes several panels per tile (the wide tile: enough accumulators to
// hide the FMA latency), with the same bits.
//
// Threads: the caller's count. The work is cut into units of one column
// panel (or the panels of one wide tile) × one block of rows; each thread
// starts on its own contiguous share of them (its own panels: it streams only
// its share of the weights), and a thread that runs out takes units from
// another, so threads on cores of unequal speed finish together (see
// ops/work_ranges.h), as the tasks of ops/tasks.h. Inside a task, or an
// active OpenMP region of the caller's, the call runs on the calling thread.
// The result is deterministic and the same on any thread count.
#ifndef BALLAST_OPS_LINEAR_GEMM_H_
#define BALLAST_OPS_LINEAR_GEMM_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "ballast/status.h"
#include "ops/linear/nonzeros.h"
#include "ops/optim/adam.h"
#include "ops/optim/sgd.h"

namespace ballast::ops {

enum class Epilogue : int {
  kNone,            // y = acc
  kBias,            // y = acc + bias
  kBiasRelu,        // y = max(acc + bias, 0)
  kBiasLeakyRelu,   // y = acc + bias, times slope where negative
  kScaleShift,      // y = acc·scale + shift (per output column)
  kScaleShiftRelu,  // y = max(acc·scale + shift, 0)
  kBiasStats,       // y = acc + bias, and per-column mean / biased variance
  kSgd,             // y = acc (a weight's gradient), then an SGD update of
                    // the weight at the same offsets (ops/optim/sgd.h)
  kAdam,            // the same with an Adam or AdamW update (ops/optim/adam.h)
};

const char* EpilogueName(Epilogue e);

// Called as the statistics of output columns [n0, n1) become final, on the
// thread that merged them: inside the GEMM's tasks, once per task, over
// disjoint ranges that together cover [0, N). What the caller
// does per column with mean and var (BatchNorm's normalization factors and
// running statistics) then runs on every thread, not after the call on one.
struct StatsReady {
  void (*fn)(void* ctx, int64_t n0, int64_t n1) = nullptr;
  void* ctx = nullptr;
  void operator()(int64_t n0, int64_t n1) const {
    if (fn != nullptr && n0 < n1) fn(ctx, n0, n1);
  }
};

struct EpilogueArgs {
  const float* bias = nullptr;   // [N]; nullptr means zero
  const float* scale = nullptr;  // [N] for kScaleShift*
  const float* shift = nullptr;  // [N] for kScaleShift*; nullptr means zero
  float slope = 0.01f;           // kBiasLeakyRelu
  // kBiasStats outputs, [N] each: mean and biased variance of each output
  // column over the M rows. Accumulated per block of rows (fixed by M, not
  // by the thread count) as sums of (y − the block's first row) in double,
  // and the blocks merged in order with Chan's formula: a large mean does
  // not swamp a small variance, and every thread count gives the same bits.
  double* mean = nullptr;
  double* var = nullptr;
  StatsReady stats_ready = {};  // kBiasStats: see StatsReady
  // kSgd, kAdam: the weight, and the optimizer's state (the momentum
  // buffer, nullptr when sgd->has_buf is false; Adam's m and v), laid out
  // as Y, updated where Y is stored, on Y's last K block.
  float* update_w = nullptr;
  const SgdArgs* sgd = nullptr;
  float* sgd_buf = nullptr;
  const AdamArgs* adam = nullptr;
  float* adam_m = nullptr;
  float* adam_v = nullptr;
  // kSgd, kAdam: false leaves Y (the gradient) unwritten when K fits one K
  // block (a panel slice of up to a quarter of L2; over A's nonzeros,
  // kSparseBlockBytes of B's rows), so a gradient that only
  // feeds the update costs no store: the first layer's weight-gradient
  // GEMM took 5-8% less time on one thread, 7-14% on two (AVX2). A longer
  // K still keeps its partial sums in Y.
  bool store_grad = true;
};

// B packed into panels for the Highway target current at packing time.
class PackedB {
 public:
  PackedB() = default;
  int64_t k() const { return k_; }
  int64_t n() const { return n_; }
  int64_t nr() const { return nr_; }
  int64_t panels() const { return nr_ ? (n_ + nr_ - 1) / nr_ : 0; }
  const float* panel(int64_t p) const { return data_.get() + p * nr_ * k_; }
  bool empty() const { return data_ == nullptr; }
  // Lays out a K × N B in panels of GemmPanelWidth() columns, reusing the
  // storage when it is large enough, for the caller to fill: B(k, n) at
  // [(n / nr)·K·nr + k·nr + n % nr]. The padding columns of a last partial
  // panel are zeroed; the rest is left as it was.
  float* Layout(int64_t K, int64_t N);

 private:
  friend void PackBInto(PackedB&, const float*, int64_t, int64_t, int64_t,
                        int64_t, int);
  friend void PackBFromPanels(PackedB&, const float*, int64_t, int64_t, int);
  // Sizes the storage for a K × N B (grown, never shrunk).
  void Reserve(int64_t K, int64_t N);
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float[], Free> data_;
  int64_t k_ = 0, n_ = 0, nr_ = 0;
  size_t capacity_ = 0;  // floats allocated
};

// Packs B(k, n) = src[k·stride_k + n·stride_n] for k < K, n < N.
// Panels are packed in parallel on `threads` threads.
PackedB PackB(const float* src, int64_t K, int64_t N, int64_t stride_k,
              int64_t stride_n, int threads = 1);
// The same into `b`, reusing its storage when it is large enough, so that
// repacking every training step does not allocate.
void PackBInto(PackedB& b, const float* src, int64_t K, int64_t N,
               int64_t stride_k, int64_t stride_n, int threads = 1);

// The panel width the current Highway target uses (PackB packs with it).
int64_t GemmPanelWidth();
// The longest K block of a GEMM on the current target (a panel's block
// takes at most a quarter of L2): a longer K is summed in blocks.
int64_t GemmKBlockMax();

// The panel layout in the caller's storage: PackedFloats(K, N) floats hold
// B(k, n) at [(n / W)·K·W + k·W + n % W], zero past N, where W =
// PanelLayoutWidth(N): the panel width NR, or one vector's lanes when N fits
// in one vector (the kernel then reads one vector per row, and a 10-wide
// output layer does not carry 54 columns of padding). The trainer keeps its
// weights this way, so that its GEMMs read and write them in place.
int64_t PanelLayoutWidth(int64_t N);
int64_t PackedFloats(int64_t K, int64_t N);
void PackBTo(float* dst, const float* src, int64_t K, int64_t N,
             int64_t stride_k, int64_t stride_n, int threads = 1);
// Packs B'(k', n') = B(n', k'), the transpose ([N, K]) of a panel-layout
// matrix B [K, N], into ordinary panels.
void PackBFromPanels(PackedB& b, const float* panels, int64_t K, int64_t N,
                     int threads = 1);
// The panel-layout matrix B [K, N] copied out row-major: rows[k·N + n]. On
// `threads`, each copying a contiguous share of the panels (the share its
// GEMMs' units start on).
void PanelsToRows(const float* panels, int64_t K, int64_t N, float* rows,
                  int threads = 1);

struct GemmArgs {
  const float* a = nullptr;  // A(m, k) = a[m·a_row_stride + k·a_col_stride]
  int64_t a_row_stride = 0;
  int64_t a_col_stride = 1;
  int64_t m = 0;
  float* y = nullptr;  // Y(m, n) = y[m·ldy + n]
  int64_t ldy = 0;
  int threads = 1;
  // > 0: Y is in a panel layout, Y(m, n) = y[(n / NR)·y_panel_stride +
  // m·ldy + n % NR], where ldy is the panel width (PanelLayoutWidth(N) for
  // PackedFloats storage; it may be one vector only when N fits in one). Not
  // with kBiasStats.
  int64_t y_panel_stride = 0;
  // When set, A's nonzeros by rows (see ops/linear/nonzeros.h; its shape
  // must be M × K): each row sums its nonzero terms only, in the same
  // order, so Y has the bits of the dense product wherever B is finite (a
  // skipped 0·inf would be NaN), up to the sign of a sum that underflowed
  // to -0. `a` must still hold A: a panel past the last whole group of a
  // wide tile reads it, and so does the dense GEMM, which runs instead
  // where it would split K into blocks or N has no whole group. With
  // kBiasStats the statistics are summed by a pass over each panel's stored
  // columns, with the epilogue's row blocks: the same bits again.
  const SparseRows* a_nonzeros = nullptr;
};

// B read in place from row-major storage: B(k, n) = data[k·ld + n], ld >= n.
// The kernel reads full panels where they lie, so nothing is packed: the
// choice for a B that changes every call (the trainer's weights after each
// update, a batch of activations). A last panel narrower than the kernel
// reads is copied into a small per-thread buffer per call.
struct RowMajorB {
  const float* data = nullptr;
  int64_t k = 0, n = 0, ld = 0;
};

// B in the panel layout (PackedFloats(k, n) floats of the caller's, packed
// for the current target's panel width).
struct PanelB {
  const float* data = nullptr;
  int64_t k = 0, n = 0;
};

// Y = epilogue(A·B). Fails when B was packed for another target's panel
// width, or on inconsistent sizes.
Status Gemm(const GemmArgs& args, const PackedB& b, Epilogue epilogue,
            const EpilogueArgs& ep);
Status Gemm(const GemmArgs& args, const RowMajorB& b, Epilogue epilogue,
            const EpilogueArgs& ep);
Status Gemm(const GemmArgs& args, const PanelB& b, Epilogue epilogue,
            const EpilogueArgs& ep);

}  // namespace ballast::ops

#endif  // BALLAST_OPS_LINEAR_GEMM_H_
