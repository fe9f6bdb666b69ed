// Users' own ops through the public registration API: registering, running
// in a session (and how a session splits a batch between a kernel's calls),
// and the errors for incomplete registrations.
#include "ballast/registry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "ballast/model.h"
#include "ballast/session.h"
#include "tests/session_test_util.h"

namespace ballast {
namespace {

using test::RandomInput;
using test::RunSession;

// A user's op through the public registration API: y = factor·x.
class ScaleKernel : public OpKernel {
 public:
  ScaleKernel(double factor, int64_t width) : factor_(factor), width_(width) {}
  Status Run(const float* x, int64_t rows, float* y) const override {
    for (int64_t i = 0; i < rows * width_; ++i) y[i] = float(x[i] * factor_);
    return Status::Ok();
  }

 private:
  double factor_;
  int64_t width_;
};

// Linear(4 → 3), then a node of a user's op.
Graph LinearThen(const std::string& op, const std::string& name) {
  Sequential net(4, 1);
  net.Linear(3);
  Graph g = *net.Build();
  Node n;
  n.name = name;
  n.op = op;
  g.nodes.push_back(n);
  return g;
}

// Copies its input and records the rows of every call.
class RowsKernel : public OpKernel {
 public:
  RowsKernel(int64_t width, std::mutex* mu, std::multiset<int64_t>* calls)
      : width_(width), mu_(mu), calls_(calls) {}
  Status Run(const float* x, int64_t rows, float* y) const override {
    std::copy(x, x + rows * width_, y);
    std::lock_guard<std::mutex> lock(*mu_);
    calls_->insert(rows);
    return Status::Ok();
  }

 private:
  int64_t width_;
  std::mutex* mu_;
  std::multiset<int64_t>* calls_;
};

// How Run splits a batch, seen from a kernel: by rows into one task per
// thread from 4 rows a thread (13 rows on 3 threads: 4, 4 and 5), else
// whole (the layers split by columns), and whole with split_rows off or
// one thread; the outputs the same bits every way.
TEST(RegistryTest, AKernelGetsEachThreadsShareOfTheRows) {
  std::mutex mu;
  std::multiset<int64_t> calls;
  Registry reg = Registry::WithBuiltins();
  ASSERT_TRUE(reg.RegisterOp({"rows",
                              "y = x",
                              {},
                              {},
                              [](const Node&, int64_t in) -> Result<int64_t> {
                                return in;
                              },
                              nullptr})
                  .ok());
  ASSERT_TRUE(reg.RegisterKernel(
                     "rows", {"ref", nullptr,
                              [&](const Node&, const KernelContext& c)
                                  -> Result<std::unique_ptr<OpKernel>> {
                                return std::unique_ptr<OpKernel>(
                                    new RowsKernel(c.in_features, &mu, &calls));
                              }})
                  .ok());
  const Graph g = LinearThen("rows", "record");
  const auto x = RandomInput(13, 4, 21);
  std::vector<float> want;
  struct Case {
    int threads;
    bool split;
    int64_t rows;
    std::multiset<int64_t> calls;
  };
  for (const Case& c : {Case{1, true, 13, {13}}, Case{3, true, 13, {4, 4, 5}},
                        Case{3, true, 11, {11}}, Case{3, false, 13, {13}},
                        Case{2, true, 8, {4, 4}}, Case{2, true, 7, {7}}}) {
    SessionOptions opt;
    opt.registry = &reg;
    opt.threads = c.threads;
    opt.split_rows = c.split;
    calls.clear();
    const std::vector<float> y = RunSession(g, opt, x, c.rows);
    EXPECT_EQ(calls, c.calls) << c.threads << " threads, split " << c.split
                              << ", " << c.rows << " rows";
    if (c.rows != 13) continue;
    if (want.empty()) want = y;
    EXPECT_EQ(y, want) << c.threads << " threads";
  }
}

TEST(RegistryTest, UsersRegisterTheirOwnOpAndRunIt) {
  Registry reg = Registry::WithBuiltins();
  ASSERT_TRUE(reg.RegisterOp({"scale",
                              "y = factor·x",
                              {{"factor", AttrType::kFloat, 1.0, "multiplier"}},
                              {},
                              [](const Node&, int64_t in) -> Result<int64_t> {
                                return in;
                              },
                              nullptr})
                  .ok());
  ASSERT_TRUE(
      reg.RegisterKernel("scale", {"ref", nullptr,
                                   [](const Node& n, const KernelContext& c)
                                       -> Result<std::unique_ptr<OpKernel>> {
                                     return std::unique_ptr<OpKernel>(
                                         new ScaleKernel(n.GetFloat("factor"),
                                                         c.in_features));
                                   }})
          .ok());
  EXPECT_FALSE(reg.RegisterOp({"scale", "", {}, {}, nullptr, nullptr}).ok());
  EXPECT_FALSE(reg.RegisterKernel("nope", {"ref", nullptr, nullptr}).ok());

  Graph g = LinearThen("scale", "times3");
  g.nodes.back().attrs["factor"] = 3.0;
  EXPECT_FALSE(InferenceSession::Create(g).ok());  // builtin registry
  SessionOptions opt;
  opt.registry = &reg;
  auto s = InferenceSession::Create(g, opt);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> y(3), base(3);
  ASSERT_TRUE((*s)->Run(x.data(), 1, y.data()).ok());
  g.nodes.pop_back();
  auto plain = InferenceSession::Create(g);
  ASSERT_TRUE((*plain)->Run(x.data(), 1, base.data()).ok());
  for (int j = 0; j < 3; ++j)
    EXPECT_FLOAT_EQ(y[size_t(j)], 3 * base[size_t(j)]);
}

// A user's op that infers no width, or whose kernel comes out null, is an
// error at Create, not a crash at Run.
TEST(RegistryTest, AUsersOpWithoutWidthOrKernelIsRefused) {
  for (int mode : {0, 1}) {
    Registry reg = Registry::WithBuiltins();
    ASSERT_TRUE(
        reg.RegisterOp({"odd",
                        "a broken op",
                        {},
                        {},
                        [mode](const Node&, int64_t in) -> Result<int64_t> {
                          return mode == 0 ? int64_t{-3} : in;
                        },
                        nullptr})
            .ok());
    ASSERT_TRUE(
        reg.RegisterKernel("odd", {"ref", nullptr,
                                   [](const Node&, const KernelContext&)
                                       -> Result<std::unique_ptr<OpKernel>> {
                                     return std::unique_ptr<OpKernel>();
                                   }})
            .ok());
    const Graph g = LinearThen("odd", "odd");
    SessionOptions opt;
    opt.registry = &reg;
    auto s = InferenceSession::Create(g, opt);
    ASSERT_FALSE(s.ok()) << "mode " << mode;
    EXPECT_NE(s.status().message().find(mode == 0 ? "gives -3 output features"
                                                  : "null pointer"),
              std::string::npos)
        << s.status().ToString();
  }
}

}  // namespace
}  // namespace ballast
