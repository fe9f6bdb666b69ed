// `ballast bench kernels`: a representative set of block benchmarks, printed
// as a table (median per call, GFLOP/s, % of the FMA roof measured in the
// same run) and optionally written as JSON.
#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ballast/format.h"
#include "ballast/model.h"
#include "ballast/session.h"
#include "benchmarks/lbr_cases.h"
#include "ops/onednn/onednn_block.h"
#include "ops/roof/fma_roof.h"
#include "ops/roof/round_trip.h"
#include "tools/array_io.h"
#include "tools/bench_report.h"
#include "tools/commands.h"

namespace ballast::cli {

Status WriteJsonIfAsked(const std::string& path, const nlohmann::json& out) {
  if (path.empty()) return Status::Ok();
  BALLAST_RETURN_IF_ERROR(WriteText(path, out.dump(2) + "\n"));
  fmt::print("\nwrote {}\n", path);
  return Status::Ok();
}

namespace {

using bench::Backend;
using bench::CaseSpec;
using bench::Mode;

struct BenchOptions {
  bool quick = false;
  int threads = 0;  // 0: 1 and 2
  std::string json;
  std::string model;  // bench mlp: a .blst file instead of the built-in MLP
  std::vector<int64_t> batches = {1, 64, 256};  // bench mlp
};

std::vector<CaseSpec> Cases(const BenchOptions& o) {
  std::vector<int> thread_counts =
      o.threads > 0 ? std::vector<int>{o.threads} : std::vector<int>{1, 2};
  std::vector<CaseSpec> cases;
  const auto add = [&](Mode mode, int64_t m, int64_t k, int64_t n, int t,
                       std::vector<std::pair<Backend, bool>> variants) {
    for (auto [backend, fused] : variants) {
      if (backend == Backend::kRef && t > 1) continue;  // single-threaded
      cases.push_back({mode, backend, fused, m, k, n, t});
    }
  };
  const std::pair<Backend, bool> hwy{Backend::kHwy, true},
      hwy_unfused{Backend::kHwy, false}, onednn{Backend::kOnednn, true},
      onednn_unfused{Backend::kOnednn, false}, ref{Backend::kRef, true};
  for (int t : thread_counts) {
    // The headline GEMM-bound case.
    add(Mode::kEval, 512, 1024, 1024, t, {hwy, onednn});
    // The book's first layer at serving batch sizes.
    for (int64_t m : {1, 16, 64}) {
      add(Mode::kEval, m, 784, 256, t,
          o.quick ? std::vector{hwy, hwy_unfused, onednn}
                  : std::vector{hwy, hwy_unfused, onednn, onednn_unfused});
    }
    // Training.
    add(Mode::kTrainFwd, 256, 784, 256, t,
        o.quick ? std::vector{hwy, hwy_unfused}
                : std::vector{hwy, hwy_unfused, onednn});
    if (!o.quick) {
      add(Mode::kEval, 16, 784, 256, t, {ref});
      add(Mode::kTrainFwdBwd, 256, 1024, 1024, t, {hwy, hwy_unfused, onednn});
      add(Mode::kEval, 256, 4096, 4096, t, {hwy, onednn});
    }
  }
  return cases;
}

// The FMA roof on each thread count, printed and kept in
// out["peak_gflops"]: what the benchmarks' roof% divide by.
std::map<int, double> MeasureRoofs(const std::vector<int>& thread_counts,
                                   double seconds, nlohmann::json& out) {
  std::map<int, double> roof;
  for (int t : thread_counts) {
    roof[t] = ops::MeasureFmaRoofGflops(t, seconds);
    out["peak_gflops"][std::to_string(t)] = roof[t];
  }
  fmt::print("SIMD target {}; FMA roof:", ops::CurrentSimdTarget());
  for (auto [t, g] : roof) fmt::print(" {:.1f} GFLOP/s on {} thread(s);", g, t);
  fmt::print("\n");
  return roof;
}

// A roof is a peak: measures it again at the end and keeps the better one,
// so a busy moment at start-up does not inflate every percentage; sets each
// of out["results"]' roof_pct from its gflops.
void RemeasureRoofs(std::map<int, double>& roof, double seconds,
                    nlohmann::json& out) {
  fmt::print("\nFMA roof re-measured at the end:");
  for (auto& [t, g] : roof) {
    g = std::max(g, ops::MeasureFmaRoofGflops(t, seconds));
    out["peak_gflops"][std::to_string(t)] = g;
    fmt::print(" {:.1f} GFLOP/s on {} thread(s);", g, t);
  }
  fmt::print("\n");
  for (auto& r : out["results"]) {
    r["roof_pct"] =
        100.0 * r["gflops"].get<double>() / roof[r["threads"].get<int>()];
  }
}

std::vector<int> ThreadCounts(const BenchOptions& o) {
  return o.threads > 0 ? std::vector<int>{o.threads} : std::vector<int>{1, 2};
}

// Seconds per measurement of the FMA roof.
double RoofSeconds(const BenchOptions& o) { return o.quick ? 0.25 : 0.6; }

Status RunBench(const BenchOptions& o) {
  if (!o.json.empty()) BALLAST_RETURN_IF_ERROR(CheckWritable("--json", o.json));
  const double seconds = o.quick ? 0.25 : 1.0;
  nlohmann::json out;
  std::map<int, double> roof =
      MeasureRoofs(ThreadCounts(o), RoofSeconds(o), out);
  fmt::print(
      "\n{:<14} {:<7} {:<8} {:>5} {:>5} {:>5} {:>3} {:>11} {:>9} {:>6}\n",
      "mode", "backend", "variant", "M", "K", "N", "t", "median us", "GFLOP/s",
      "roof%");
  out["results"] = nlohmann::json::array();
  // Cases that compare with one another (same mode, shape and threads) are
  // timed in interleaved rounds, so machine drift hits them alike.
  std::vector<CaseSpec> specs = Cases(o);
  for (size_t g0 = 0; g0 < specs.size();) {
    size_t g1 = g0 + 1;
    const auto same_group = [&](const CaseSpec& a, const CaseSpec& b) {
      return a.mode == b.mode && a.M == b.M && a.K == b.K && a.N == b.N &&
             a.threads == b.threads;
    };
    while (g1 < specs.size() && same_group(specs[g0], specs[g1])) ++g1;
    std::vector<CaseSpec> group;
    std::vector<std::unique_ptr<bench::Case>> cases;
    for (size_t i = g0; i < g1; ++i) {
      Result<std::unique_ptr<bench::Case>> made = bench::MakeCase(specs[i]);
      if (!made.ok()) {
        fmt::print("{:<60} skipped: {}\n", specs[i].Label(),
                   made.status().message());
        continue;
      }
      group.push_back(specs[i]);
      cases.push_back(std::move(*made));
    }
    g0 = g1;
    std::vector<bench::Case*> raw;
    for (auto& c : cases) raw.push_back(c.get());
    Result<std::vector<double>> timed = bench::InterleavedMedians(raw, seconds);
    if (!timed.ok()) return timed.status();
    for (size_t i = 0; i < group.size(); ++i) {
      const CaseSpec& c = group[i];
      const double s = (*timed)[i];
      const double gflops = c.Flops() / s / 1e9;
      fmt::print(
          "{:<14} {:<7} {:<8} {:>5} {:>5} {:>5} {:>3} {:>11.2f} {:>9.1f} "
          "{:>5.1f}%\n",
          bench::ModeName(c.mode), bench::BackendName(c.backend),
          c.fused ? "fused" : "unfused", c.M, c.K, c.N, c.threads, s * 1e6,
          gflops, 100 * gflops / roof[c.threads]);
      out["results"].push_back({{"op", "linear_bn_relu"},
                                {"mode", bench::ModeName(c.mode)},
                                {"backend", bench::BackendName(c.backend)},
                                {"fused", c.fused},
                                {"M", c.M},
                                {"K", c.K},
                                {"N", c.N},
                                {"threads", c.threads},
                                {"seconds", s},
                                {"gflops", gflops}});
    }
    std::fflush(stdout);
  }
  RemeasureRoofs(roof, RoofSeconds(o), out);
  return WriteJsonIfAsked(o.json, out);
}

// One InferenceSession run on a fixed random batch.
class SessionCase : public bench::Case {
 public:
  SessionCase(std::unique_ptr<InferenceSession> s, int64_t batch)
      : session_(std::move(s)),
        batch_(batch),
        x_(size_t(batch * session_->input_features())),
        y_(size_t(batch * session_->output_features())) {
    Generator(1).FillNormal(x_, 0.0, 1.0);
  }
  Status Run() override { return session_->Run(x_.data(), batch_, y_.data()); }

 private:
  std::unique_ptr<InferenceSession> session_;
  int64_t batch_;
  std::vector<float> x_, y_;
};

Status RunBenchMlp(const BenchOptions& o) {
  if (!o.json.empty()) BALLAST_RETURN_IF_ERROR(CheckWritable("--json", o.json));
  Graph graph;
  std::string model = "mlp-784-256-256-10";
  if (o.model.empty()) {
    Sequential net(784, /*seed=*/0);
    net.StandardBlock(256, 0.5).StandardBlock(256, 0.5).Linear(10);
    BALLAST_ASSIGN_OR_RETURN(graph, net.Build());
  } else {
    BALLAST_ASSIGN_OR_RETURN(Model m, LoadModel(o.model));
    graph = std::move(m.graph);
    model = o.model;
  }
  // The GEMMs' flops per row (BatchNorm folds into them, ReLU is free).
  double flops_per_row = 0;
  for (const Node& n : graph.nodes) {
    if (n.op != "linear") continue;
    const Shape& w = n.Param("weight").shape();
    flops_per_row += 2.0 * double(w[0]) * double(w[1]);
  }
  nlohmann::json out;
  std::map<int, double> roof =
      MeasureRoofs(ThreadCounts(o), RoofSeconds(o), out);
  out["results"] = nlohmann::json::array();
  fmt::print(
      "\n{} in evaluation; median latency per batch (interleaved rounds); "
      "GFLOP/s of its Linear layers\n\n{:<10} {:>6} {:>3} {:>12} {:>9} "
      "{:>6}\n",
      model, "variant", "batch", "t", "us", "GFLOP/s", "roof%");
  for (int t : ThreadCounts(o)) {
    for (int64_t batch : o.batches) {
      // On several threads also "fused-cols": each layer split by columns
      // over the threads, as a batch too small to split by rows runs
      // (SessionOptions::split_rows).
      std::vector<std::string> variants = {"fused", "unfused", "onednn"};
      if (t > 1) variants.insert(variants.begin() + 1, "fused-cols");
      std::vector<std::unique_ptr<bench::Case>> cases;
      std::vector<std::string> names;
      for (const std::string& v : variants) {
        SessionOptions opt;
        opt.threads = t;
        opt.max_batch = std::max<int64_t>(256, batch);
        opt.split_rows = v != "fused-cols";
        opt.backend =
            v == "onednn" ? ballast::Backend::kOnednn : ballast::Backend::kHwy;
        opt.fold_batchnorm = opt.fuse = opt.drop_dropout = v != "unfused";
        Result<std::unique_ptr<InferenceSession>> s =
            InferenceSession::Create(graph, opt);
        if (!s.ok()) return s.status();
        if (v == "onednn" && (*s)->plan()[0].backend != "onednn") {
          fmt::print("{:<10} skipped: {}\n", v,
                     ops::onednn::Available()
                         ? "oneDNN has no kernel for the model's first node (" +
                               (*s)->plan()[0].op + ")"
                         : std::string("oneDNN is not built in"));
          continue;
        }
        cases.push_back(std::make_unique<SessionCase>(std::move(*s), batch));
        names.push_back(v);
      }
      std::vector<bench::Case*> raw;
      for (auto& c : cases) raw.push_back(c.get());
      BALLAST_ASSIGN_OR_RETURN(
          std::vector<double> med,
          bench::InterleavedMedians(raw, o.quick ? 0.2 : 0.6));
      for (size_t i = 0; i < raw.size(); ++i) {
        const double gflops = flops_per_row * double(batch) / med[i] / 1e9;
        fmt::print("{:<10} {:>6} {:>3} {:>12.2f} {:>9.1f} {:>5.1f}%\n",
                   names[i], batch, t, med[i] * 1e6, gflops,
                   100 * gflops / roof[t]);
        out["results"].push_back({{"model", model},
                                  {"variant", names[i]},
                                  {"batch", batch},
                                  {"threads", t},
                                  {"us", med[i] * 1e6},
                                  {"gflops", gflops}});
      }
      std::fflush(stdout);
    }
  }
  RemeasureRoofs(roof, RoofSeconds(o), out);
  return WriteJsonIfAsked(o.json, out);
}

// The FMA roof on 1 thread and on `threads` (default 2) at once, and their
// ratio: how much a second thread can add on this machine right now; and the
// round trip of a cache line between two threads' cores. On a shared VM two
// vCPUs are not always two cores' worth of compute, nor two cores close by.
Status RunBenchRoof(const BenchOptions& o, double seconds) {
  if (!o.json.empty()) BALLAST_RETURN_IF_ERROR(CheckWritable("--json", o.json));
  const int many = o.threads > 0 ? o.threads : 2;
  const double one = ops::MeasureFmaRoofGflops(1, seconds);
  const double all = ops::MeasureFmaRoofGflops(many, seconds);
  const double trip = ops::MeasureRoundTripNs();
  fmt::print(
      "FMA roof ({}): {:.1f} GFLOP/s on 1 thread, {:.1f} on {} at once "
      "({:.2f}x)\n",
      ops::CurrentSimdTarget(), one, all, many, all / one);
  if (trip > 0) {
    fmt::print(
        "a cache line from one thread's core to another's and back: "
        "{:.0f} ns\n",
        trip);
  } else {
    fmt::print(
        "a cache line from one thread's core to another's and back: "
        "not measured (two threads could not run at once)\n");
  }
  nlohmann::json out{{"simd_target", ops::CurrentSimdTarget()},
                     {"peak_gflops", {{"1", one}, {std::to_string(many), all}}},
                     {"scaling", all / one},
                     {"round_trip_ns", trip > 0 ? nlohmann::json(trip)
                                                : nlohmann::json(nullptr)}};
  return WriteJsonIfAsked(o.json, out);
}

}  // namespace

void RegisterBench(CLI::App& app, int& exit_code) {
  CLI::App* bench = app.add_subcommand(
      "bench",
      "Measure ballast: the block kernels and the book's MLP against oneDNN "
      "and fused against unfused, the FMA roof, and the training step on 1 "
      "thread against N");
  bench->require_subcommand(1);
  auto opt = std::make_shared<BenchOptions>();
  CLI::App* kernels = bench->add_subcommand(
      "kernels",
      "Time the Linear+BatchNorm+ReLU block kernels (median per call, "
      "GFLOP/s, % of the FMA roof measured in the same run)");
  kernels->add_flag("--quick", opt->quick,
                    "A short representative set (under a minute)");
  kernels
      ->add_option("--threads", opt->threads,
                   "Only this thread count (default: 1 and 2)")
      ->check(CLI::Range(1, kMaxThreads));
  kernels->add_option("--json", opt->json, "Also write the results as JSON");
  auto mlp_opt = std::make_shared<BenchOptions>();
  CLI::App* mlp = bench->add_subcommand(
      "mlp",
      "Latency of the book's MLP 784-256-256-10 in evaluation, batch 1, 64 "
      "and 256: fused, unfused and on the oneDNN backend (and on several "
      "threads, fused with each layer split by columns rather than the "
      "batch by rows)");
  mlp->add_flag("--quick", mlp_opt->quick, "Shorter timing");
  mlp->add_option("--threads", mlp_opt->threads,
                  "Only this thread count (default: 1 and 2)")
      ->check(CLI::Range(1, kMaxThreads));
  mlp->add_option("--json", mlp_opt->json, "Also write the results as JSON");
  mlp->add_option(
      "--model", mlp_opt->model,
      "Time this .blst model instead of a freshly built 784-256-256-10");
  mlp->add_option("--batches", mlp_opt->batches,
                  "Batch sizes, comma-separated (default: 1,64,256)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  auto roof_opt = std::make_shared<BenchOptions>();
  auto roof_seconds = std::make_shared<double>(0.25);
  CLI::App* roof = bench->add_subcommand(
      "roof",
      "The FMA roof (peak GFLOP/s) on 1 thread and on several at once, how "
      "much the extra threads add on this machine right now, and how long a "
      "cache line takes between two threads' cores and back");
  roof->add_option("--threads", roof_opt->threads,
                   "Threads of the second measurement (default: 2)")
      ->check(CLI::Range(1, kMaxThreads));
  roof->add_option("--seconds", *roof_seconds,
                   "Seconds per measurement (default: 0.25)")
      ->check(CLI::Range(0.01, 60.0));
  roof->add_option("--json", roof_opt->json, "Also write the results as JSON");
  roof->callback([roof_opt, roof_seconds, &exit_code] {
    Status s = RunBenchRoof(*roof_opt, *roof_seconds);
    if (!s.ok()) {
      std::fprintf(stderr, "ballast bench roof: %s\n", s.ToString().c_str());
      exit_code = kExitFailure;
    }
  });
  mlp->callback([mlp_opt, &exit_code] {
    Status s = RunBenchMlp(*mlp_opt);
    if (!s.ok()) {
      std::fprintf(stderr, "ballast bench mlp: %s\n", s.ToString().c_str());
      exit_code = kExitFailure;
    }
  });
  RegisterBenchStep(*bench, exit_code);
  kernels->callback([opt, &exit_code] {
    Status s = RunBench(*opt);
    if (!s.ok()) {
      std::fprintf(stderr, "ballast bench kernels: %s\n", s.ToString().c_str());
      exit_code = kExitFailure;
    }
  });
}

}  // namespace ballast::cli
