// Helpers of the graph, session and registry tests: the book's MLP with
// trained-looking BatchNorms, seeded inputs, a session run in one call, the
// reference plan and its tolerance.
#ifndef BALLAST_TESTS_SESSION_TEST_UTIL_H_
#define BALLAST_TESTS_SESSION_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "ballast/model.h"
#include "ballast/rng.h"
#include "ballast/session.h"
#include "ops/onednn/onednn_block.h"

namespace ballast::test {

inline bool ops_onednn_available() { return ops::onednn::Available(); }

// Gives every BatchNorm non-trivial statistics and affine parameters, as a
// trained model would have.
inline void Randomize(Graph& g, uint64_t seed) {
  Generator gen(seed);
  for (Node& n : g.nodes) {
    if (n.op != "batchnorm1d") continue;
    for (auto& [name, t] : n.params) {
      Tensor fresh = t.Clone();
      if (name == "running_var") {
        gen.FillUniform(fresh.span(), 0.3, 3.0);
      } else {
        gen.FillUniform(fresh.span(), -0.8, 0.8);
      }
      t = fresh;
    }
  }
}

inline Graph BookMlp(uint64_t seed = 0) {
  Sequential net(784, seed);
  net.StandardBlock(256, 0.5).StandardBlock(256, 0.5).Linear(10);
  Result<Graph> g = net.Build();
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  Graph graph = *g;
  Randomize(graph, seed + 1);
  return graph;
}

inline std::vector<float> RandomInput(int64_t rows, int64_t cols,
                                      uint64_t seed) {
  std::vector<float> x(static_cast<size_t>(rows * cols));
  Generator(seed).FillNormal(x, 0.0, 1.0);
  return x;
}

inline std::vector<float> RunSession(const Graph& g, const SessionOptions& opt,
                                     const std::vector<float>& x,
                                     int64_t rows) {
  Result<std::unique_ptr<InferenceSession>> s =
      InferenceSession::Create(g, opt);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (!s.ok()) return {};
  std::vector<float> y(static_cast<size_t>(rows * (*s)->output_features()),
                       NAN);
  Status st = (*s)->Run(x.data(), rows, y.data());
  EXPECT_TRUE(st.ok()) << st.ToString();
  return y;
}

// The oracle: every node on the ref backend, no passes.
inline SessionOptions Reference() {
  SessionOptions o;
  o.backend = Backend::kRef;
  o.fold_batchnorm = o.fuse = o.drop_dropout = false;
  o.fold_input_normalization = false;
  return o;
}

// A double as text that reads back as the same value.
inline std::string Text(double v) {
  std::ostringstream out;
  out << std::setprecision(17) << v;
  return out.str();
}

// Evaluation outputs of O(1) logits through three layers: float rounding
// of dot products of length ≤ 784, amplified by BN scales ≤ ~1.5 per layer.
inline double Close(double expected) {
  return 2e-4 * std::max(1.0, std::fabs(expected));
}

}  // namespace ballast::test

#endif  // BALLAST_TESTS_SESSION_TEST_UTIL_H_
