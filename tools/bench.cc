// `ballast bench kernels`: a representative set of block benchmarks, printed
// as a table (median per call, GFLOP/s, % of the FMA roof measured in the
// same run) and optionally written as JSON.
#include <fmt/core.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "benchmarks/lbr_cases.h"
#include "ops/roof/fma_roof.h"
#include "tools/commands.h"

namespace ballast::cli {
namespace {

using bench::Backend;
using bench::CaseSpec;
using bench::Mode;

struct BenchOptions {
  bool quick = false;
  int threads = 0;  // 0: 1 and 2
  std::string json;
};

std::vector<CaseSpec> Cases(const BenchOptions& o) {
  std::vector<int> thread_counts =
      o.threads > 0 ? std::vector<int>{o.threads} : std::vector<int>{1, 2};
  std::vector<CaseSpec> cases;
  for (int t : thread_counts) {
    // The headline GEMM-bound case.
    for (Backend b : {Backend::kHwy, Backend::kOnednn}) {
      cases.push_back({Mode::kEval, b, true, 512, 1024, 1024, t});
    }
    // The book's first layer at serving batch sizes.
    for (int64_t m : {1, 16, 64}) {
      cases.push_back({Mode::kEval, Backend::kHwy, true, m, 784, 256, t});
      cases.push_back({Mode::kEval, Backend::kHwy, false, m, 784, 256, t});
      cases.push_back({Mode::kEval, Backend::kOnednn, true, m, 784, 256, t});
    }
    // Training.
    cases.push_back({Mode::kTrainFwd, Backend::kHwy, true, 256, 784, 256, t});
    cases.push_back({Mode::kTrainFwd, Backend::kHwy, false, 256, 784, 256, t});
    if (!o.quick) {
      cases.push_back({Mode::kEval, Backend::kRef, true, 16, 784, 256, t});
      cases.push_back(
          {Mode::kTrainFwd, Backend::kOnednn, true, 256, 784, 256, t});
      for (Backend b : {Backend::kHwy, Backend::kOnednn}) {
        cases.push_back({Mode::kTrainFwdBwd, b, true, 256, 1024, 1024, t});
      }
      cases.push_back({Mode::kEval, Backend::kHwy, true, 256, 4096, 4096, t});
      cases.push_back(
          {Mode::kEval, Backend::kOnednn, true, 256, 4096, 4096, t});
    }
  }
  if (o.threads == 0) {
    // Drop the reference on 2 threads: it is single-threaded.
    std::erase_if(cases, [](const CaseSpec& c) {
      return c.backend == Backend::kRef && c.threads > 1;
    });
  }
  return cases;
}

Status RunBench(const BenchOptions& o) {
  const double seconds = o.quick ? 0.25 : 1.0;
  nlohmann::json out;
  std::vector<int> roof_threads =
      o.threads > 0 ? std::vector<int>{o.threads} : std::vector<int>{1, 2};
  std::map<int, double> roof;
  for (int t : roof_threads) {
    roof[t] = ops::MeasureFmaRoofGflops(t, 0.6);
    out["peak_gflops"][std::to_string(t)] = roof[t];
  }
  fmt::print("SIMD target {}; FMA roof:", ops::CurrentSimdTarget());
  for (auto [t, g] : roof) fmt::print(" {:.1f} GFLOP/s on {} thread(s);", g, t);
  fmt::print(
      "\n\n{:<14} {:<7} {:<8} {:>5} {:>5} {:>5} {:>3} {:>11} {:>9} {:>6}\n",
      "mode", "backend", "variant", "M", "K", "N", "t", "median us", "GFLOP/s",
      "roof%");
  out["results"] = nlohmann::json::array();
  for (const CaseSpec& c : Cases(o)) {
    Result<std::unique_ptr<bench::Case>> made = bench::MakeCase(c);
    if (!made.ok()) {
      fmt::print("{:<60} skipped: {}\n", c.Label(), made.status().message());
      continue;
    }
    const Result<double> timed = bench::MedianSecondsPerCall(**made, seconds);
    if (!timed.ok()) {
      return timed.status().WithContext(c.Label() + ": ");
    }
    const double s = *timed;
    const double gflops = c.Flops() / s / 1e9;
    fmt::print(
        "{:<14} {:<7} {:<8} {:>5} {:>5} {:>5} {:>3} {:>11.2f} {:>9.1f} "
        "{:>5.1f}%\n",
        bench::ModeName(c.mode), bench::BackendName(c.backend),
        c.fused ? "fused" : "unfused", c.M, c.K, c.N, c.threads, s * 1e6,
        gflops, 100 * gflops / roof[c.threads]);
    std::fflush(stdout);
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
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    if (!f) return IoError("bench: cannot write '" + o.json + "'");
    f << out.dump(2) << "\n";
    if (!f) return IoError("bench: failed writing '" + o.json + "'");
    fmt::print("\nwrote {}\n", o.json);
  }
  return Status::Ok();
}

}  // namespace

void RegisterBench(CLI::App& app, int& exit_code) {
  CLI::App* bench = app.add_subcommand(
      "bench", "Measure ballast against oneDNN, fused against unfused");
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
      ->check(CLI::Range(1, 1024));
  kernels->add_option("--json", opt->json, "Also write the results as JSON");
  kernels->callback([opt, &exit_code] {
    Status s = RunBench(*opt);
    if (!s.ok()) {
      std::fprintf(stderr, "ballast bench kernels: %s\n", s.ToString().c_str());
      exit_code = kExitFailure;
    }
  });
}

}  // namespace ballast::cli
