#include "runtime/train_layers.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include "ops/block/block_kernels.h"
#include "ops/cache_aligned.h"
#include "ops/linear/gemm.h"
#include "ops/linear/masked_input_grad.h"
#include "ops/linear/narrow_linear.h"
#include "ops/linear/nonzeros.h"
#include "ops/optim/adam.h"
#include "ops/optim/sgd.h"
#include "ops/ref/activation.h"
#include "ops/tasks.h"

namespace ballast::internal {
namespace {

Param MakeParam(const Node& n, const std::string& name) {
  Param p;
  p.key = n.name + "." + name;
  p.value = n.Param(name);
  p.grad = Tensor::Zeros(p.value.shape());
  return p;
}

// A Linear weight W [out, in] kept as Wᵀ in the GEMM's panel layout: the
// forward GEMM reads it in place as B and the weight gradient dWᵀ = Xᵀ·dZ
// is written in place in the same layout, so the trainer never packs Wᵀ,
// and with two threads each one reads, writes and updates its own
// contiguous half (its column panels).
Param MakePanelWeight(const Node& n) {
  Param p;
  p.key = n.name + ".weight";
  p.graph_value = n.Param("weight");
  p.panels = true;
  p.value = FromGraphLayout(p, p.graph_value);
  p.grad = Tensor::Zeros(p.value.shape());
  return p;
}

// The Linear GEMMs on Wᵀ in the panel layout (see MakePanelWeight).
struct LinearGemms {
  int64_t in = 0, out = 0;
  int threads = 1;
  ops::PackedB packed_w;  // B = W for the dense dX = dZ·W (see Grads)
  ops::PackedB packed_dz;
  std::vector<float> dw_;              // NarrowWeightGrad's dW [out, in]
  ops::AlignedVector<float> wt_rows_;  // Wᵀ [in, out] row-major (masked dX)
  ops::AlignedVector<float> w_rows_;   // W [out, in] row-major (DotForward)
  // The weight Wᵀ in the panel layout, and whether packed_w, wt_rows_ and
  // w_rows_ hold it since its last update (see WeightsChanged).
  const float* wt_ = nullptr;
  bool packed_fresh_ = false, rows_fresh_ = false, w_rows_fresh_ = false;

  // Threads for a GEMM of M·in·out multiply-adds: one below `min_macs`.
  // The output layer's (128·256·10 = 330 K per batch) forward gains from a
  // second thread (17 against 10 µs per step, median of 8 interleaved runs).
  // Its dX = dZ·W, with K = 10, splits into few panels where its outputs fit
  // one vector (Narrow: 4 of 64 columns on AVX-512), leaving a thread too
  // little work; there it stays on one below half a million and runs beside
  // the weight gradient (see Grads). On AVX2 (16 panels of 16) it splits
  // like the rest: the two-thread training step took 0.99 of the time
  // (medians of 400 steps alternated with the one-thread dX, two runs).
  static constexpr int64_t kSplitMacs = int64_t{1} << 18;
  static constexpr int64_t kSplitMacsNarrowInputGrad = int64_t{1} << 19;
  int ThreadsFor(int64_t M, int64_t min_macs) const {
    return M * in * out < min_macs ? 1 : threads;
  }
  int InputGradThreads(int64_t M) const {
    return ThreadsFor(M, Narrow() ? kSplitMacsNarrowInputGrad : kSplitMacs);
  }
  // y [M, out] = x·W + epilogue.
  // `nz`: x's nonzeros by rows, or nullptr (see GemmArgs::a_nonzeros).
  Status Forward(const float* wt, const float* x, int64_t M, float* y,
                 ops::Epilogue e, const ops::EpilogueArgs& ep,
                 const ops::SparseRows* nz = nullptr) const {
    ops::GemmArgs args{x, in, 1, M, y, out, ThreadsFor(M, kSplitMacs)};
    args.a_nonzeros = nz;
    return ops::Gemm(args, ops::PanelB{wt, in, out}, e, ep);
  }
  // Whether the forward runs as dot products (ops::NarrowLinear) rather than
  // the GEMM: a layer of few outputs, as the output layer's 256 → 10. Each
  // output is then a row of x times a row of W, and the GEMM's ten of
  // sixteen lanes and its broadcast per multiply-add are gone.
  bool DotForward() const { return ops::NarrowLinearPays(out, in); }
  // y [M, out] = x·W + bias as dot products, from W [out, in] row-major.
  Status DotForward(const float* x, int64_t M, float* y, const float* bias) {
    return ops::NarrowLinear({x, in, M, WRows(), out, in, bias, y, out, 0.0f,
                              ThreadsFor(M, kSplitMacs)},
                             ops::Epilogue::kBias);
  }
  // dWᵀ = Xᵀ·dZ in the panel layout: A(i, m) = x[m·in + i], B = dZ [M, out].
  // dZ is packed (M·out floats, a fraction of X): every row tile of the
  // GEMM rereads a panel of it, which must stay in L1, and read in place
  // with a row stride of 1 KiB (out = 256) its rows fall into a few cache
  // sets.
  // With `update`, the weight (and the optimizer's state) is updated inside
  // the GEMM, from each gradient tile while it is in registers.
  // `nz`: x's nonzeros by columns (the rows of A = Xᵀ), or nullptr. The
  // sparse GEMM reads dZ packed too: each nonzero reads one row of a group
  // of its panels, rows that in place fell into a quarter of L1's sets
  // (packing included, 0.81 of the time of dZ in place on one thread and
  // 0.88 on two; 128 × 256 × 256 at a quarter nonzero, AVX2, medians of
  // 3000 calls alternated).
  // `dz_packed`: dZ is in packed_dz already (see DzPanels); `dz` may then
  // be nullptr.
  Status WeightGrad(const float* x, const float* dz, int64_t M, Param& weight,
                    const FusedUpdate& update, bool store_grad,
                    const ops::SparseRows* nz = nullptr,
                    bool dz_packed = false) {
    weight.grad_stored = true;
    if (Narrow()) return NarrowWeightGrad(x, dz, M, weight, update);
    const int64_t w = ops::PanelLayoutWidth(out);
    ops::GemmArgs args{
        x, 1, in, in, weight.grad.data(), w, ThreadsFor(M, kSplitMacs)};
    args.y_panel_stride = in * w;
    args.a_nonzeros = nz;
    ops::EpilogueArgs ep;
    ops::Epilogue e = ops::Epilogue::kNone;
    if (update.any()) {
      e = update.sgd ? ops::Epilogue::kSgd : ops::Epilogue::kAdam;
      ep.update_w = weight.value.data();
      ep.sgd = update.sgd;
      ep.sgd_buf =
          update.sgd && update.sgd->has_buf ? weight.buf1.data() : nullptr;
      ep.adam = update.adam;
      if (update.adam)
        ep.adam_m = weight.buf1.data(), ep.adam_v = weight.buf2.data();
      ep.store_grad = store_grad;
      weight.grad_stored = store_grad;
    }
    if (!dz_packed) ops::PackBInto(packed_dz, dz, M, out, out, 1, threads);
    return ops::Gemm(args, packed_dz, e, ep);
  }
  // Where the block's backward pass writes dZ in the layout WeightGrad
  // reads (packed_dz), or nullptr where WeightGrad reads dZ row-major
  // (Narrow). Written by the pass, dZ needs no packing: a parallel pass over
  // it less per layer. Against packing it, the book's training step took
  // 0.980-0.989 of the time on two threads and 0.986-0.992 on one (AVX3,
  // 1500 and 1000 steps alternated, three runs each; two identical trainers
  // measure 1.004-1.008 apart).
  float* DzPanels(int64_t M) {
    return Narrow() ? nullptr : packed_dz.Layout(M, out);
  }
  // Whether the layer's outputs fit one vector (see NarrowWeightGrad).
  bool Narrow() const {
    return ops::PanelLayoutWidth(out) < ops::GemmPanelWidth();
  }
  // A layer whose outputs fit one vector (the output layer's 10): dWᵀ would
  // be a GEMM of one-vector tiles, each multiply-add waiting on a broadcast
  // from a row of X 1 KiB from the last. dW = dZᵀ·X [out, in] runs full
  // panels over X in place instead (three times the speed in gemm_bench,
  // dw_256x10 against dwt_256x10); it is moved into the panel layout and
  // the SGD step applied after. The sums are the same, in the same order.
  // One thread: the move and the step run on the calling thread, which would
  // otherwise fetch the other core's half of dW (19.4 against 13.1 µs per
  // step for the two-thread trainer's phase, median of 8 paired rounds).
  Status NarrowWeightGrad(const float* x, const float* dz, int64_t M,
                          Param& weight, const FusedUpdate& update) {
    dw_.resize(size_t(out * in));
    BALLAST_RETURN_IF_ERROR(ops::Gemm({dz, 1, out, out, dw_.data(), in, 1},
                                      ops::RowMajorB{x, M, in, in},
                                      ops::Epilogue::kNone, {}));
    const int64_t w = ops::PanelLayoutWidth(out);
    float* g = weight.grad.data();
    for (int64_t i = 0; i < in; ++i) {
      for (int64_t o = 0; o < out; ++o) g[i * w + o] = dw_[size_t(o * in + i)];
    }
    // The padding columns stay zero: zero gradient, weight and state.
    const int64_t n = ops::PackedFloats(in, out);
    if (update.sgd) {
      ops::SgdUpdate(*update.sgd, g, weight.value.data(),
                     update.sgd->has_buf ? weight.buf1.data() : nullptr, n);
    } else if (update.adam) {
      ops::AdamUpdate(*update.adam, g, weight.value.data(), weight.buf1.data(),
                      weight.buf2.data(), n);
    }
    return Status::Ok();
  }
  // dX [M, in] = dZ·W.
  Status InputGrad(const float* dz, int64_t M, float* dx) const {
    return ops::Gemm({dz, out, 1, M, dx, in, InputGradThreads(M)}, packed_w,
                     ops::Epilogue::kNone, {});
  }
  // Both gradients of a layer whose GEMMs each run on one thread (the
  // output layer's: its weight gradient is narrow and its dX too small to
  // split): with two or more threads they run side by side, the weight
  // gradient (`weight_side`, which may add more, e.g. the bias gradient) on
  // one and dX on another, instead of one after the other while the other
  // threads wait. They share no output: dX reads W as packed before the
  // update.
  // With `dx_mask` (the pass mask of the fused block before, see
  // TrainLayer::dx_mask), dX is computed only where the mask passes
  // (ops::MaskedInputGrad), when under kMaskedMaxDensity of it does.
  // dX reads W before the weight side's update (a fused optimizer step).
  template <typename WeightSide>
  Status Grads(const float* dz, int64_t M, float* dx, const uint64_t* dx_mask,
               WeightSide weight_side) {
    if (dx != nullptr && dx_mask != nullptr &&
        ops::Nonzeros::MaskDensity(dx_mask, M, in) < kMaskedMaxDensity) {
      ops::MaskedInputGradArgs args{dz, M, out, in, nullptr, dx_mask, dx};
      if (ops::MaskedPanelsReadable(ops::PanelLayoutWidth(out))) {
        args.wt = wt_;
        args.wt_panel_width = ops::PanelLayoutWidth(out);
      } else {
        args.wt = WtRows();
      }
      ops::MaskedInputGrad(args, ThreadsFor(M, kSplitMacs));
      return weight_side();
    }
    if (dx != nullptr && !packed_fresh_) {
      ops::PackBFromPanels(packed_w, wt_, in, out, threads);
      packed_fresh_ = true;
    }
    const bool side_by_side =
        threads > 1 && dx != nullptr && Narrow() && InputGradThreads(M) == 1;
    if (!side_by_side) {
      BALLAST_RETURN_IF_ERROR(weight_side());
      return dx ? InputGrad(dz, M, dx) : Status::Ok();
    }
    Status w_status, x_status;
    ops::ParallelRun(2, [&](int t, int) {
      if (t == 0) {
        w_status = weight_side();
      } else {
        x_status = InputGrad(dz, M, dx);
      }
    });
    BALLAST_RETURN_IF_ERROR(w_status);
    return x_status;
  }
  // After an update of Wᵀ (its panels at `wt`): the forms dX reads are
  // made from it when a step's dX first needs them, before that step's
  // update. The dense dX reads B(o, i) = W[o][i] = Wᵀ(i, o) packed; the
  // masked one Wᵀ's panels in place where they are wide (see
  // ops::MaskedPanelsReadable), else a row-major copy. On AVX3, against the
  // copy, the book's training step took 0.980-0.984 of the time on one
  // thread and 0.990-0.998 on two (1000-1500 steps alternated, five runs;
  // two identical trainers measure 0.998-1.006 apart). Two threads gain
  // less: the other core's reads of the panels move from the copy to the
  // weights, which the fused SGD update then writes.
  void WeightsChanged(const float* wt) {
    wt_ = wt;
    packed_fresh_ = rows_fresh_ = w_rows_fresh_ = false;
  }
  // W [out, in] row-major, transposed from Wᵀ's panels once per update (a
  // few thousand floats for a layer DotForward takes).
  const float* WRows() {
    if (!w_rows_fresh_) {
      const int64_t w = ops::PanelLayoutWidth(out);
      w_rows_.resize(size_t(out * in));
      for (int64_t o = 0; o < out; ++o) {
        const float* panel = wt_ + (o / w) * in * w + o % w;
        float* row = w_rows_.data() + o * in;
        for (int64_t k = 0; k < in; ++k) row[k] = panel[k * w];
      }
      w_rows_fresh_ = true;
    }
    return w_rows_.data();
  }
  const float* WtRows() {
    if (!rows_fresh_) {
      wt_rows_.resize(size_t(in * out));
      ops::PanelsToRows(wt_, in, out, wt_rows_.data(), threads);
      rows_fresh_ = true;
    }
    return wt_rows_.data();
  }
  // The densest pass mask whose masked dX runs: above it the dense GEMM
  // (and packing W for it) takes less time. The masks of the book's recipe
  // (dropout 0.3, 0.2, 0, ...) pass 33.5%, 39% and 50% (22.5% at 0.5);
  // against the dense dX the one-thread training step took 0.98 of the
  // time at 22.5%, 1.00 at 33.5%, 1.03 at 39% and 1.04-1.05 at 50% (AVX3,
  // 1800 steps alternated). `gemm_bench --benchmark_filter=MaskedInputGrad`
  // (random masks): 0.82-0.83 of the dense GEMM's time at 25%, 1.00-1.17
  // at 30%.
  static constexpr double kMaskedMaxDensity = 0.3;
};

// BatchNorm's running-statistics state, updated with PyTorch's rule. The
// values before the last batch's update are kept for Undo (each column's
// copied by the thread that updates it, as it updates it).
struct RunningStats {
  Tensor mean, var;       // empty when track_running_stats = false
  double momentum = 0.1;  // < 0: None (cumulative average)
  double eps = 1e-5;
  int64_t num_batches = 0;
  std::vector<float> prev_mean, prev_var;
  int64_t prev_num_batches = 0;

  void Init(const Node& bn) {
    if (bn.GetBool("track_running_stats", true)) {
      mean = bn.Param("running_mean");
      var = bn.Param("running_var");
      prev_mean.resize(size_t(mean.numel()));
      prev_var.resize(size_t(var.numel()));
    }
    momentum = bn.GetFloat("momentum", 0.1);
    eps = bn.GetFloat("eps", 1e-5);
  }
  // mean/var: batch mean and biased variance; fills float mean and rstd.
  void Update(const double* bmean, const double* bvar, int64_t M, int64_t N,
              float* mean_f, float* rstd_f) {
    UpdateColumns(bmean, bvar, M, 0, N, mean_f, rstd_f);
    CountBatch();
  }
  // Update's work for columns [c0, c1) of a batch not yet counted (a
  // cumulative average weighs it as the next one); CountBatch after all.
  void UpdateColumns(const double* bmean, const double* bvar, int64_t M,
                     int64_t c0, int64_t c1, float* mean_f, float* rstd_f) {
    if (!mean.empty()) {
      const double m = momentum < 0 ? 1.0 / double(num_batches + 1) : momentum;
      const double unbias = double(M) / double(M - 1);
      float* rm = mean.data();
      float* rv = var.data();
      for (int64_t c = c0; c < c1; ++c) {
        prev_mean[size_t(c)] = rm[c], prev_var[size_t(c)] = rv[c];
        rm[c] = float((1 - m) * rm[c] + m * bmean[c]);
        rv[c] = float((1 - m) * rv[c] + m * bvar[c] * unbias);
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      mean_f[c] = float(bmean[c]);
      rstd_f[c] = float(1.0 / std::sqrt(bvar[c] + eps));
    }
  }
  void CountBatch() {
    prev_num_batches = num_batches;
    if (!mean.empty()) ++num_batches;
  }
  // Back to before the last batch (once: a second call changes nothing).
  void Undo() {
    if (!mean.empty()) {
      std::memcpy(mean.data(), prev_mean.data(),
                  prev_mean.size() * sizeof(float));
      std::memcpy(var.data(), prev_var.data(), prev_var.size() * sizeof(float));
    }
    num_batches = prev_num_batches;
  }
};

class LinearLayer : public TrainLayer {
 public:
  LinearLayer(const Node& n, const TrainContext& ctx) {
    const Tensor& w = n.Param("weight");
    out = w.dim(0), in = w.dim(1);
    gemms_.in = in, gemms_.out = out, gemms_.threads = ctx.threads;
    params_.push_back(MakePanelWeight(n));
    has_bias_ = !n.Param("bias").empty();
    if (has_bias_) params_.push_back(MakeParam(n, "bias"));
    zero_bias_.assign(size_t(out), 0.0f);
    ParamsUpdated();
  }
  Status Forward(const float* x, int64_t M, float* y, Generator&) override {
    x_ = x;
    ops::EpilogueArgs ep;
    ep.bias = has_bias_ ? params_[1].value.data() : zero_bias_.data();
    if (gemms_.DotForward()) return gemms_.DotForward(x, M, y, ep.bias);
    return gemms_.Forward(params_[0].value.data(), x, M, y,
                          ops::Epilogue::kBias, ep);
  }
  Status Backward(const float* dy, float* dx, int64_t M) override {
    // dWᵀ = Xᵀ·dY; db = Σ_m dY; dX = dY·W.
    return gemms_.Grads(dy, M, needs_dx ? dx : nullptr, dx_mask, [&] {
      BALLAST_RETURN_IF_ERROR(gemms_.WeightGrad(
          x_, dy, M, params_[0], fused_update, fused_store_grad));
      if (has_bias_) {
        float* db = params_[1].grad.data();
        for (int64_t j = 0; j < out; ++j) db[j] = 0;
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t j = 0; j < out; ++j) db[j] += dy[m * out + j];
        }
      }
      return Status::Ok();
    });
  }
  void ParamsUpdated() override {
    gemms_.WeightsChanged(params_[0].value.data());
  }
  Param* FusableWeight() override { return &params_[0]; }

 private:
  LinearGemms gemms_;
  bool has_bias_ = false;
  std::vector<float> zero_bias_;
  const float* x_ = nullptr;
};

// Linear → BatchNorm1d (batch statistics) → ReLU → Dropout in one GEMM with
// a statistics epilogue and one pass forward; one pass and two GEMMs back.
class FusedBlockLayer : public TrainLayer {
 public:
  FusedBlockLayer(const Node& lin, const Node& bn, double p,
                  const TrainContext& ctx)
      : ctx_(ctx), p_(p) {
    const Tensor& w = lin.Param("weight");
    out = w.dim(0), in = w.dim(1);
    gemms_.in = in, gemms_.out = out, gemms_.threads = ctx.threads;
    params_.push_back(MakePanelWeight(lin));
    has_bias_ = !lin.Param("bias").empty();
    if (has_bias_) params_.push_back(MakeParam(lin, "bias"));
    affine_ = bn.GetBool("affine", true);
    if (affine_) {
      params_.push_back(MakeParam(bn, "weight"));
      params_.push_back(MakeParam(bn, "bias"));
    }
    stats_.Init(bn);
    const size_t N = size_t(out);
    zero_bias_.assign(N, 0.0f);
    ones_.assign(N, 1.0f);
    mean_d_.resize(N), var_d_.resize(N), mean_.resize(N), rstd_.resize(N);
    scratch_dg_.resize(N), scratch_db_.resize(N), scratch_dbias_.resize(N);
    z_.resize(size_t(ctx.max_batch) * N);
    dz_.resize(size_t(ctx.max_batch) * N);
    mask_.resize(size_t(ctx.max_batch * ops::MaskWordsPerRow(out)));
    ParamsUpdated();
  }
  Status Forward(const float* x, int64_t M, float* y, Generator& rng) override {
    x_ = x;
    ops::EpilogueArgs ep;
    ep.bias = has_bias_ ? params_[1].value.data() : zero_bias_.data();
    ep.mean = mean_d_.data();
    ep.var = var_d_.data();
    // A mostly-zero input (after an earlier block's ReLU and dropout): the
    // GEMMs skip its zeros, and the forward's statistics are summed by a pass
    // over each panel's columns once computed, with the epilogue's sums: the
    // same bits as the dense path. (Index returns the same density, or 1 for
    // a matrix too large to index.) The index comes from the block before's
    // mask of its nonzeros when it has one.
    const uint64_t* bits =
        skip_input_zeros && input_layer ? input_layer->NonzeroMask() : nullptr;
    if (bits != nullptr) {
      sparse_ = ops::Nonzeros::MaskDensity(bits, M, in) < kMaxDensity &&
                nz_.IndexFromMask(x, bits, M, in, ctx_.threads) < kMaxDensity;
    } else {
      sparse_ = skip_input_zeros &&
                ops::Nonzeros::Density(x, M, in) < kMaxDensity &&
                nz_.Index(x, M, in, ctx_.threads) < kMaxDensity;
    }
    // The running statistics and the float mean and rstd, column ranges at
    // a time on the threads that merged their statistics (StatsReady): on
    // one thread after the GEMM, the other waited (the two-thread step took
    // 1.006-1.008 of the time, against 1.003 for two identical trainers;
    // 1500 steps alternated, AVX3).
    stats_m_ = M;
    ep.stats_ready = {&FusedBlockLayer::OnStatsReady, this};
    // The BN pass runs in the statistics' ready calls, each over the
    // columns whose mean and variance it hands over, on the thread that
    // merged them: no parallel run of its own (the two-thread step took
    // 0.991-0.997 of the time, one thread 1.001-1.002; 1200 steps
    // alternated in chunks, four and two runs). Columns handed over out of
    // whole 64-column mask words (more threads than the GEMM has panels
    // for) are left, and then the whole pass runs after.
    const RngSlice slice = p_ > 0 ? rng.Take(M * out) : RngSlice{};
    bn_args_ = {z_.data(),   mean_.data(), rstd_.data(), gamma(),
                beta(),      p_,           slice,        y,
                mask_.data()};
    bn_columns_done_.store(0, std::memory_order_relaxed);
    const ops::SparseRows rows = sparse_ ? nz_.rows() : ops::SparseRows{};
    BALLAST_RETURN_IF_ERROR(gemms_.Forward(params_[0].value.data(), x, M,
                                           z_.data(), ops::Epilogue::kBiasStats,
                                           ep, sparse_ ? &rows : nullptr));
    stats_.CountBatch();
    if (bn_columns_done_.load(std::memory_order_relaxed) != out) {
      ops::BnReluDropoutForward(bn_args_, M, out, ctx_.threads);
    }
    last_m_ = M;
    return Status::Ok();
  }
  Status Backward(const float* dy, float* dx, int64_t M) override {
    const size_t g = has_bias_ ? 2 : 1;
    // dZ for the weight gradient in its packed layout, and row-major only
    // for dX (or a narrow weight gradient).
    float* dz_panels = gemms_.DzPanels(M);
    float* dz_rows = needs_dx || dz_panels == nullptr ? dz_.data() : nullptr;
    ops::BnBackwardArgs a{
        z_.data(),
        mean_.data(),
        rstd_.data(),
        gamma(),
        dy,
        mask_.data(),
        p_,
        dz_rows,
        affine_ ? params_[g].grad.data() : scratch_dg_.data(),
        affine_ ? params_[g + 1].grad.data() : scratch_db_.data(),
        has_bias_ ? params_[1].grad.data() : scratch_dbias_.data(),
        dz_panels,
        ops::GemmPanelWidth()};
    ops::BnReluDropoutBackward(a, M, out, ctx_.threads);
    return gemms_.Grads(dz_rows, M, needs_dx ? dx : nullptr, dx_mask, [&] {
      const ops::SparseRows cols = nz_.cols();
      return gemms_.WeightGrad(x_, dz_rows, M, params_[0], fused_update,
                               fused_store_grad, sparse_ ? &cols : nullptr,
                               dz_panels != nullptr);
    });
  }
  static void OnStatsReady(void* self, int64_t n0, int64_t n1) {
    auto* l = static_cast<FusedBlockLayer*>(self);
    l->stats_.UpdateColumns(l->mean_d_.data(), l->var_d_.data(), l->stats_m_,
                            n0, n1, l->mean_.data(), l->rstd_.data());
    if (n0 < n1 && ops::ForwardColumnsAligned(l->out, n0, n1)) {
      ops::BnReluDropoutForwardColumns(l->bn_args_, l->stats_m_, l->out, n0,
                                       n1);
      l->bn_columns_done_.fetch_add(n1 - n0, std::memory_order_relaxed);
    }
  }
  bool OutputHasZeros() const override { return true; }
  const uint64_t* PassMask() const override { return mask_.data(); }
  // The pass mask sets exactly the output's nonzeros (kept, and
  // bn = (z − μ)·(γ·rstd) + β > 0, times 1/(1 − p) ≥ 1) unless bn is a NaN
  // (see NoNaNPossible). Asked once per step, by the next block's forward.
  const uint64_t* NonzeroMask() const override {
    return NoNaNPossible(last_m_) ? mask_.data() : nullptr;
  }
  void ParamsUpdated() override {
    gemms_.WeightsChanged(params_[0].value.data());
  }
  Param* FusableWeight() override { return &params_[0]; }
  int64_t* num_batches() override { return &stats_.num_batches; }
  void UndoForward() override { stats_.Undo(); }

 private:
  const float* gamma() const {
    return affine_ ? params_[has_bias_ ? 2 : 1].value.data() : ones_.data();
  }
  const float* beta() const {
    return affine_ ? params_[has_bias_ ? 3 : 2].value.data()
                   : zero_bias_.data();
  }
  // Whether no bn of the last forward can be a NaN. bn = fma(z − μ, γ·rstd,
  // β) in float is one only from a NaN or infinite operand, or from 0·∞. So
  // ask: μ finite (a non-finite z makes its column's μ so), M·var below
  // 2^240 (|z − μ| ≤ √(M·var) < 2^120 cannot overflow), γ·rstd as the pass
  // rounds it finite, β finite. Then a product that overflows is ±∞, and so
  // is its sum with β: +∞ passes, −∞ gives 0. Otherwise the next block
  // indexes the floats.
  bool NoNaNPossible(int64_t M) const {
    constexpr double kMaxSpread = 0x1p240;
    const float* g = gamma();
    const float* b = beta();
    for (int64_t n = 0; n < out; ++n) {
      const size_t i = size_t(n);
      if (!std::isfinite(mean_[i]) || !std::isfinite(g[n] * rstd_[i]) ||
          !std::isfinite(b[n]) || !(double(M) * var_d_[i] < kMaxSpread)) {
        return false;
      }
    }
    return true;
  }

  TrainContext ctx_;
  double p_;
  bool has_bias_ = false, affine_ = true;
  RunningStats stats_;
  // Read a vector at a time by every row of the block passes: aligned, so
  // that no load straddles two cache lines.
  ops::AlignedVector<float> zero_bias_, ones_, mean_, rstd_, scratch_dg_,
      scratch_db_, scratch_dbias_;
  ops::AlignedVector<float> z_, dz_;  // split by columns over the threads
  std::vector<double> mean_d_, var_d_;
  ops::AlignedVector<uint64_t> mask_;
  LinearGemms gemms_;
  const float* x_ = nullptr;
  // The input's nonzeros, and whether this step's GEMMs skip its zeros:
  // with the indexing, the forward and weight-gradient GEMMs (128 × 256 ×
  // 256, AVX2, gemm_bench) took 0.92 of the dense GEMMs' time at 25%
  // nonzero on two threads, 1.03 at 30% and 1.34 at 40% (one thread: 0.60,
  // 0.73, 0.97).
  static constexpr double kMaxDensity = 0.3;
  ops::Nonzeros nz_;
  bool sparse_ = false;
  int64_t last_m_ = 0;   // the last forward's batch (see NonzeroMask)
  int64_t stats_m_ = 0;  // the batch whose statistics StatsReady takes
  // The BN pass that StatsReady runs on the columns it takes, and how many
  // columns it has run it on this forward.
  ops::BnForwardArgs bn_args_{};
  std::atomic<int64_t> bn_columns_done_{0};
};

class BatchNormLayer : public TrainLayer {
 public:
  BatchNormLayer(const Node& bn, int64_t width, const TrainContext& ctx)
      : ctx_(ctx) {
    in = out = width;
    affine_ = bn.GetBool("affine", true);
    if (affine_) {
      params_.push_back(MakeParam(bn, "weight"));
      params_.push_back(MakeParam(bn, "bias"));
    }
    stats_.Init(bn);
    const size_t N = size_t(width);
    ones_.assign(N, 1.0f), zeros_.assign(N, 0.0f);
    mean_d_.resize(N), var_d_.resize(N), mean_.resize(N), rstd_.resize(N);
    scale_.resize(N), shift_.resize(N), sdg_.resize(N), sdb_.resize(N);
    scratch_dx_.resize(size_t(ctx.max_batch) * N);
  }
  Status Forward(const float* x, int64_t M, float* y, Generator&) override {
    x_ = x;
    ops::ColumnMoments(x, M, out, mean_d_.data(), var_d_.data(), ctx_.threads);
    stats_.Update(mean_d_.data(), var_d_.data(), M, out, mean_.data(),
                  rstd_.data());
    const float* g = affine_ ? params_[0].value.data() : ones_.data();
    const float* b = affine_ ? params_[1].value.data() : zeros_.data();
    for (int64_t c = 0; c < out; ++c) {
      scale_[size_t(c)] = g[c] * rstd_[size_t(c)];
      shift_[size_t(c)] = b[c] - mean_[size_t(c)] * scale_[size_t(c)];
    }
    std::memcpy(y, x, size_t(M * out) * sizeof(float));
    ops::ScaleShift(y, M, out, scale_.data(), shift_.data(), ctx_.threads);
    return Status::Ok();
  }
  Status Backward(const float* dy, float* dx, int64_t M) override {
    ops::BnBackwardArgs a{x_,
                          mean_.data(),
                          rstd_.data(),
                          affine_ ? params_[0].value.data() : nullptr,
                          dy,
                          nullptr,
                          0.0,
                          dx ? dx : scratch_dx_.data(),
                          affine_ ? params_[0].grad.data() : sdg_.data(),
                          affine_ ? params_[1].grad.data() : sdb_.data(),
                          nullptr};
    ops::BnReluDropoutBackward(a, M, out, ctx_.threads);
    return Status::Ok();
  }
  int64_t* num_batches() override { return &stats_.num_batches; }
  void UndoForward() override { stats_.Undo(); }

 private:
  TrainContext ctx_;
  bool affine_ = true;
  RunningStats stats_;
  ops::AlignedVector<float> ones_, zeros_, mean_, rstd_, scale_, shift_, sdg_,
      sdb_, scratch_dx_;
  std::vector<double> mean_d_, var_d_;
  const float* x_ = nullptr;
};

class ActivationLayer : public TrainLayer {
 public:
  ActivationLayer(const Node& n, int64_t width, const TrainContext& ctx)
      : ctx_(ctx), op_(n.op), slope_(n.GetFloat("negative_slope", 0.01)) {
    in = out = width;
  }
  Status Forward(const float* x, int64_t M, float* y, Generator&) override {
    x_ = x, y_ = y;
    const int64_t n = M * out;
    if (op_ == "relu")
      ops::Relu(x, y, n, ctx_.threads);
    else if (op_ == "leaky_relu")
      ref::leaky_relu_forward(x, y, n, slope_);
    else if (op_ == "tanh")
      ref::tanh_forward(x, y, n);
    else if (op_ == "sigmoid")
      ref::sigmoid_forward(x, y, n);
    else
      std::memcpy(y, x, size_t(n) * sizeof(float));
    return Status::Ok();
  }
  Status Backward(const float* dy, float* dx, int64_t M) override {
    if (!dx) return Status::Ok();
    const int64_t n = M * out;
    if (op_ == "relu")
      ops::ReluBackward(x_, dy, dx, n, ctx_.threads);
    else if (op_ == "leaky_relu")
      ref::leaky_relu_backward(x_, dy, dx, n, slope_);
    else if (op_ == "tanh")
      ref::tanh_backward(y_, dy, dx, n);
    else if (op_ == "sigmoid")
      ref::sigmoid_backward(y_, dy, dx, n);
    else
      std::memcpy(dx, dy, size_t(n) * sizeof(float));
    return Status::Ok();
  }

 private:
  TrainContext ctx_;
  std::string op_;
  double slope_;
  const float* x_ = nullptr;
  const float* y_ = nullptr;
};

class DropoutLayer : public TrainLayer {
 public:
  DropoutLayer(const Node& n, int64_t width, const TrainContext& ctx)
      : ctx_(ctx), p_(n.GetFloat("p", 0.5)) {
    in = out = width;
    mask_.resize(size_t(ctx.max_batch * ops::MaskWordsPerRow(width)));
  }
  Status Forward(const float* x, int64_t M, float* y, Generator& rng) override {
    std::memcpy(y, x, size_t(M * out) * sizeof(float));
    if (p_ > 0)
      ops::Dropout(y, M, out, p_, rng.Take(M * out), mask_.data(),
                   ctx_.threads);
    return Status::Ok();
  }
  Status Backward(const float* dy, float* dx, int64_t M) override {
    if (!dx) return Status::Ok();
    if (p_ > 0) {
      ops::DropoutBackward(mask_.data(), dy, dx, M, out, p_, ctx_.threads);
    } else {
      std::memcpy(dx, dy, size_t(M * out) * sizeof(float));
    }
    return Status::Ok();
  }

 private:
  TrainContext ctx_;
  double p_;
  ops::AlignedVector<uint64_t> mask_;
};

// "block1: linear+batchnorm1d+relu" when the nodes share the prefix before
// a '.', else their names joined by '+'.
std::string LayerName(const std::vector<Node>& nodes, size_t first,
                      size_t last) {
  const std::string& n0 = nodes[first].name;
  const size_t dot = n0.find('.');
  bool shared = dot != std::string::npos && last > first;
  for (size_t k = first; shared && k <= last; ++k) {
    shared = nodes[k].name.compare(0, dot + 1, n0, 0, dot + 1) == 0;
  }
  std::string name = shared ? n0.substr(0, dot) + ": " : "";
  for (size_t k = first; k <= last; ++k) {
    if (k > first) name += "+";
    name += shared ? nodes[k].name.substr(dot + 1) : nodes[k].name;
  }
  return name;
}

}  // namespace

Result<std::vector<std::unique_ptr<TrainLayer>>> BuildTrainLayers(
    Graph& graph, bool fuse, const TrainContext& ctx) {
  std::vector<std::unique_ptr<TrainLayer>> layers;
  int64_t width = graph.input_features;
  auto& nodes = graph.nodes;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    const size_t first = i;
    auto at = [&](size_t k, const char* op) {
      return k < nodes.size() && nodes[k].op == op;
    };
    if (n.op == "linear") {
      if (n.GetString("activation", "none") != "none") {
        return Unimplemented(
            "train: node '" + n.name +
            "' is a fused inference node; train the unfused graph");
      }
      if (fuse && at(i + 1, "batchnorm1d") && at(i + 2, "relu")) {
        const double p =
            at(i + 3, "dropout") ? nodes[i + 3].GetFloat("p", 0.5) : 0.0;
        layers.push_back(
            std::make_unique<FusedBlockLayer>(n, nodes[i + 1], p, ctx));
        i += at(i + 3, "dropout") ? 3 : 2;
      } else {
        layers.push_back(std::make_unique<LinearLayer>(n, ctx));
      }
    } else if (n.op == "batchnorm1d") {
      layers.push_back(std::make_unique<BatchNormLayer>(n, width, ctx));
    } else if (n.op == "dropout") {
      layers.push_back(std::make_unique<DropoutLayer>(n, width, ctx));
    } else if (n.op == "relu" || n.op == "leaky_relu" || n.op == "tanh" ||
               n.op == "sigmoid" || n.op == "identity") {
      layers.push_back(std::make_unique<ActivationLayer>(n, width, ctx));
    } else {
      return Unimplemented("train: node '" + n.name + "' has op '" + n.op +
                           "', which the trainer cannot train");
    }
    layers.back()->name = LayerName(nodes, first, i);
    width = layers.back()->out;
  }
  return layers;
}

}  // namespace ballast::internal
