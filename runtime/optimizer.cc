#include "runtime/optimizer.h"

#include <algorithm>
#include <cmath>

#include "ops/linear/gemm.h"
#include "ops/optim/adam.h"
#include "ops/tasks.h"

namespace ballast::internal {
namespace {

// Runs body(begin, end) over equal contiguous ranges of the param on
// `threads` threads; a small param (a bias, a BatchNorm vector) runs on the
// calling thread, since a parallel region costs more than its update. The
// updates are elementwise, so any split gives the same bits. (Splitting a
// weight by column panels, as the forward GEMM does, was 5x slower on two
// cores: the threads then write interleaved 512-byte pieces of every row,
// and the prefetchers drag each other's lines back and forth.)
template <class Body>
void ForEachRange(const Param& p, int threads, Body body) {
  const int64_t n = p.value.numel();
  if (n < (int64_t{1} << 15) || threads <= 1) return body(int64_t{0}, n);
  ops::ParallelRun(threads,
                   [&](int t, int nt) { body(n * t / nt, n * (t + 1) / nt); });
}

// The update itself is ops::SgdUpdate, the same vector step as the GEMM's
// kSgd epilogue, so a weight updated inside its gradient GEMM gets the same
// bits as one updated here.
void Sgd(const OptimizerOptions& o, Param& p, int threads) {
  const ops::SgdArgs a = PrepareSgd(o, p);
  float* w = p.value.data();
  const float* g = p.grad.data();
  float* buf = a.has_buf ? p.buf1.data() : nullptr;
  ForEachRange(p, threads, [&](int64_t i0, int64_t i1) {
    ops::SgdUpdate(a, g + i0, w + i0, buf ? buf + i0 : nullptr, i1 - i0);
  });
  p.has_state = a.has_buf || p.has_state;
}

void Adam(const OptimizerOptions& o, int64_t step, Param& p, bool decoupled,
          int threads) {
  const ops::AdamArgs a = PrepareAdam(o, step, p, decoupled);
  float* w = p.value.data();
  const float* g = p.grad.data();
  float* m = p.buf1.data();
  float* v = p.buf2.data();
  ForEachRange(p, threads, [&](int64_t i0, int64_t i1) {
    ops::AdamUpdate(a, g + i0, w + i0, m + i0, v + i0, i1 - i0);
  });
}

}  // namespace

ops::SgdArgs PrepareSgd(const OptimizerOptions& o, Param& p) {
  ops::SgdArgs a;
  a.lr = float(o.lr);
  a.weight_decay = float(o.weight_decay);
  a.momentum = float(o.momentum);
  a.nesterov = o.nesterov;
  a.has_buf = o.momentum != 0.0;
  if (a.has_buf && !p.has_state) p.buf1 = Tensor::Zeros(p.value.shape());
  a.first = !p.has_state;  // torch.clone(d_p) into the buffer
  a.add = float(1.0 - o.dampening);
  return a;
}

// torch.optim.Adam / AdamW (_single_tensor_adam[w], amsgrad and maximize
// off): the scalars are computed in double and rounded to float once, as
// torch's kernels take a Python float.
ops::AdamArgs PrepareAdam(const OptimizerOptions& o, int64_t step, Param& p,
                          bool decoupled) {
  if (!p.has_state) {
    p.buf1 = Tensor::Zeros(p.value.shape());
    p.buf2 = Tensor::Zeros(p.value.shape());
    p.has_state = true;
  }
  ops::AdamArgs a;
  a.beta1 = float(o.beta1), a.one_minus_beta1 = float(1.0 - o.beta1);
  a.beta2 = float(o.beta2), a.one_minus_beta2 = float(1.0 - o.beta2);
  a.decoupled = decoupled;
  if (decoupled) {
    a.decay = float(1.0 - o.lr * o.weight_decay);
  } else {
    a.weight_decay = float(o.weight_decay);
  }
  const double bias_correction1 = 1.0 - std::pow(o.beta1, double(step));
  const double bias_correction2 = 1.0 - std::pow(o.beta2, double(step));
  a.neg_step_size = float(-(o.lr / bias_correction1));
  a.bias_correction2_sqrt = float(std::sqrt(bias_correction2));
  a.eps = float(o.eps);
  return a;
}

void OptimizerStep(const OptimizerOptions& o, int64_t step,
                   std::vector<Param*>& params, int threads,
                   const Param* skip) {
  for (Param* p : params) {
    if (p == skip) continue;
    switch (o.kind) {
      case OptimizerKind::kSgd:
        Sgd(o, *p, threads);
        break;
      case OptimizerKind::kAdam:
        Adam(o, step, *p, /*decoupled=*/false, threads);
        break;
      case OptimizerKind::kAdamW:
        Adam(o, step, *p, /*decoupled=*/true, threads);
        break;
    }
  }
}

namespace {

// W [out, in] from Wᵀ in the panel layout: W[o][i] = v[(o / nr)·in·nr +
// i·nr + o % nr] with nr = ops::PanelLayoutWidth(out).
void Unpack(const float* v, int64_t out, int64_t in, float* w) {
  const int64_t nr = ops::PanelLayoutWidth(out);
  for (int64_t o = 0; o < out; ++o) {
    const float* panel = v + (o / nr) * in * nr + o % nr;
    for (int64_t i = 0; i < in; ++i) w[o * in + i] = panel[i * nr];
  }
}

}  // namespace

Tensor ToGraphLayout(const Param& p, const Tensor& t) {
  if (!p.panels) return t.Clone();
  Tensor w = Tensor::Zeros(p.graph_value.shape());
  Unpack(t.data(), w.dim(0), w.dim(1), w.data());
  return w;
}

Tensor FromGraphLayout(const Param& p, const Tensor& t) {
  if (!p.panels) return t.Clone();
  const int64_t out = t.dim(0), in = t.dim(1);
  Tensor v = Tensor::Zeros({ops::PackedFloats(in, out)});
  // B(k = i, n = o) = W[o][i]: the forward GEMM's packing of Wᵀ.
  ops::PackBTo(v.data(), t.data(), in, out, 1, in);
  return v;
}

void SyncToGraph(Param& p) {
  if (!p.panels) return;
  Unpack(p.value.data(), p.graph_value.dim(0), p.graph_value.dim(1),
         p.graph_value.data());
}

double ClipGradNorm(std::vector<Param*>& params, double max_norm) {
  double ss = 0;
  for (Param* p : params) {
    for (float g : p->grad.span()) ss += double(g) * g;
  }
  const double total = std::sqrt(ss);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    for (Param* p : params) {
      for (float& g : p->grad.span()) g = float(g * coef);
    }
  }
  return total;
}

}  // namespace ballast::internal
