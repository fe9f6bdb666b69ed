// A program that uses ballast as a service would, linked against the shared
// library alone (no internal header, no internal symbol): building and
// training a model, saving and loading it, serving it. A link error here
// means libballast.so hides something the public headers declare
// (runtime/libballast.map).
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "ballast/format.h"
#include "ballast/model.h"
#include "ballast/session.h"
#include "ballast/trainer.h"
#include "gtest/gtest.h"

namespace {

TEST(PublicApi, TrainSaveLoadServe) {
  ballast::Sequential net(8, /*seed=*/3);
  net.StandardBlock(16, 0.0).Linear(3);
  ballast::Result<ballast::Graph> graph = net.Build();
  ASSERT_TRUE(graph.ok()) << graph.status().ToString();

  // Two well-separated classes of rows, and a third: a few steps must lower
  // the loss.
  constexpr int64_t kRows = 12;
  std::vector<float> x(kRows * 8);
  std::vector<int32_t> labels(kRows);
  for (int64_t r = 0; r < kRows; ++r) {
    labels[size_t(r)] = int32_t(r % 3);
    for (int64_t c = 0; c < 8; ++c) {
      x[size_t(r * 8 + c)] =
          float(labels[size_t(r)] == c % 3) + 0.01f * float(r);
    }
  }
  ballast::TrainerOptions options;
  options.max_batch = kRows;
  auto trainer = ballast::Trainer::Create(*graph, options);
  ASSERT_TRUE(trainer.ok()) << trainer.status().ToString();
  double first = 0, last = 0;
  for (int s = 0; s < 20; ++s) {
    auto step = (*trainer)->Step(x.data(), labels.data(), nullptr, kRows);
    ASSERT_TRUE(step.ok()) << step.status().ToString();
    (s == 0 ? first : last) = step->loss;
  }
  EXPECT_LT(last, first);

  const std::string path = ::testing::TempDir() + "public_api_test_" +
                           std::to_string(getpid()) + ".blst";
  ballast::Model model;
  model.graph = (*trainer)->CurrentGraph();
  ASSERT_TRUE(ballast::SaveModel(model, path).ok());
  ballast::Result<ballast::Model> loaded = ballast::LoadModel(path);
  std::remove(path.c_str());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();

  auto session = ballast::InferenceSession::Create(loaded->graph, {});
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  std::vector<float> out(kRows * 3);
  ASSERT_TRUE((*session)->Run(x.data(), kRows, out.data()).ok());
  // The served model agrees with the trainer's own evaluation.
  int64_t correct = 0;
  for (int64_t r = 0; r < kRows; ++r) {
    const float* o = out.data() + r * 3;
    int best = 0;
    for (int c = 1; c < 3; ++c) best = o[c] > o[best] ? c : best;
    correct += best == labels[size_t(r)];
    for (int c = 0; c < 3; ++c) EXPECT_TRUE(std::isfinite(o[c]));
  }
  auto eval = (*trainer)->Evaluate(x.data(), labels.data(), kRows);
  ASSERT_TRUE(eval.ok()) << eval.status().ToString();
  EXPECT_DOUBLE_EQ(eval->accuracy, double(correct) / double(kRows));
}

}  // namespace
