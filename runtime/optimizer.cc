#include "runtime/optimizer.h"

#include <algorithm>
#include <cmath>

namespace ballast {
namespace {

// Branch-free loops per case so that the compiler vectorizes them
// (`omp simd`); elementwise, so any split gives the same bits.
void Sgd(const OptimizerOptions& o, Param& p, int threads) {
  float* w = p.value.data();
  const float* g = p.grad.data();
  const int64_t n = p.value.numel();
  // A parallel region costs more than updating a bias or BN vector.
  if (n < (int64_t{1} << 15)) threads = 1;
  const float lr = float(o.lr), wd = float(o.weight_decay);
  const float mom = float(o.momentum), damp = float(o.dampening);
  if (o.momentum == 0.0) {
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) w[i] -= lr * (g[i] + wd * w[i]);
    return;
  }
  if (!p.has_state) p.buf1 = Tensor::Zeros(p.value.shape());
  float* buf = p.buf1.data();
  // The first step copies d_p into the buffer (torch.clone): buf = 0·buf + d.
  const float keep = p.has_state ? mom : 0.0f;
  const float add = p.has_state ? 1.0f - damp : 1.0f;
  if (o.nesterov) {
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float d = g[i] + wd * w[i];
      buf[i] = keep * buf[i] + add * d;
      w[i] -= lr * (d + mom * buf[i]);
    }
  } else {
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      buf[i] = keep * buf[i] + add * (g[i] + wd * w[i]);
      w[i] -= lr * buf[i];
    }
  }
  p.has_state = true;
}

// torch.optim._functional._single_tensor_adam (amsgrad off, maximize off).
void Adam(const OptimizerOptions& o, int64_t step, Param& p, bool decoupled) {
  if (!p.has_state) {
    p.buf1 = Tensor::Zeros(p.value.shape());
    p.buf2 = Tensor::Zeros(p.value.shape());
    p.has_state = true;
  }
  float* w = p.value.data();
  const float* g = p.grad.data();
  float* m = p.buf1.data();
  float* v = p.buf2.data();
  const int64_t n = p.value.numel();
  const float lr = float(o.lr), wd = float(o.weight_decay);
  const float b1 = float(o.beta1), b2 = float(o.beta2), eps = float(o.eps);
  const double bc1 = 1.0 - std::pow(o.beta1, double(step));
  const double bc2 = 1.0 - std::pow(o.beta2, double(step));
  const float step_size = float(o.lr / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  for (int64_t i = 0; i < n; ++i) {
    float grad = g[i];
    if (wd != 0.0f) {
      if (decoupled) {
        w[i] *= 1.0f - lr * wd;
      } else {
        grad += wd * w[i];
      }
    }
    m[i] += (1.0f - b1) * (grad - m[i]);  // lerp
    v[i] = v[i] * b2 + (1.0f - b2) * grad * grad;
    const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    w[i] += -step_size * (m[i] / denom);
  }
}

}  // namespace

void OptimizerStep(const OptimizerOptions& o, int64_t step,
                   std::vector<Param*>& params, int threads) {
  for (Param* p : params) {
    switch (o.kind) {
      case OptimizerKind::kSgd:
        Sgd(o, *p, threads);
        break;
      case OptimizerKind::kAdam:
        Adam(o, step, *p, /*decoupled=*/false);
        break;
      case OptimizerKind::kAdamW:
        Adam(o, step, *p, /*decoupled=*/true);
        break;
    }
  }
}

Tensor Transposed(const Tensor& t) {
  const int64_t rows = t.dim(0), cols = t.dim(1);
  Tensor out = Tensor::Zeros({cols, rows});
  const float* src = t.data();
  float* dst = out.data();
  // 16 × 16 blocks: both sides touch whole cache lines.
  constexpr int64_t kB = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kB) {
    for (int64_t c0 = 0; c0 < cols; c0 += kB) {
      for (int64_t r = r0; r < std::min(rows, r0 + kB); ++r) {
        for (int64_t c = c0; c < std::min(cols, c0 + kB); ++c) {
          dst[c * rows + r] = src[r * cols + c];
        }
      }
    }
  }
  return out;
}

Tensor ToGraphLayout(const Param& p, const Tensor& t) {
  return p.transposed ? Transposed(t) : t.Clone();
}

Tensor FromGraphLayout(const Param& p, const Tensor& t) {
  return p.transposed ? Transposed(t) : t.Clone();
}

void SyncToGraph(Param& p) {
  if (!p.transposed) return;
  const Tensor t = Transposed(p.value);
  std::copy(t.data(), t.data() + t.numel(), p.graph_value.data());
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

}  // namespace ballast
