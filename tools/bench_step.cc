// `ballast bench step`: the book's training step (784-256-256-10, dropout
// 0.5, SGD 0.05 with momentum 0.9, batch 128, Fashion-MNIST) on 1 thread and
// on N, alternated in short chunks in one process, each chunk after a
// measurement of what a second core gives: the FMA roof's scaling from 1
// thread to N, and the round trip of a cache line between two threads'
// cores. On a shared VM the two vCPUs are at times on close cores (a round
// trip of about 100 ns), at times far apart (about 450 ns), at times on one
// core's two hyperthreads (the FMA roof no faster on two threads than on
// one), and the spells change every few seconds: runs minutes apart compare
// different machines. Here both trainers see the same spells, and the
// speed-up is given per spell.
// With --gather each step reads a batch of shuffled rows gathered as
// `ballast train` gathers them (tools/batch_feeder.h: the next batch in the
// step's idle moments), and the time of a step includes that work; without,
// the steps read consecutive rows in place.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ballast/data.h"
#include "ballast/model.h"
#include "ballast/session.h"
#include "ballast/trainer.h"
#include "ops/roof/fma_roof.h"
#include "ops/roof/round_trip.h"
#include "tools/array_io.h"
#include "tools/batch_feeder.h"
#include "tools/bench_report.h"
#include "tools/commands.h"

namespace ballast::cli {
namespace {

struct StepBenchOptions {
  int threads = 2;
  int chunks = 30;
  int steps = 50;
  std::string data = "fashion-mnist";
  std::string json;
  bool gather = false;
};

// Round trips below this are close cores (measured here: 75-110 ns close,
// 420-510 ns distant).
constexpr double kCloseNs = 250;
// An FMA roof scaling below this: the threads share one core's FMA units.
constexpr double kOwnCoresScaling = 1.5;
// Seconds of each FMA roof measurement.
constexpr double kRoofSeconds = 0.01;
constexpr int64_t kBatch = 128;

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The spells a chunk can fall in.
enum class Spell { kClose, kDistant, kSharedCore };
constexpr Spell kSpells[] = {Spell::kClose, Spell::kDistant,
                             Spell::kSharedCore};
const char* SpellKey(Spell s) {
  switch (s) {
    case Spell::kClose:
      return "close";
    case Spell::kDistant:
      return "distant";
    case Spell::kSharedCore:
      return "shared_core";
  }
  return "";
}

struct Chunk {
  double round_trip_ns = 0;
  double fma_scaling = 0;   // the FMA roof on N threads over 1
  double us[2] = {0, 0};    // median step, 1 thread and N
  double mean[2] = {0, 0};  // mean step
  Spell spell() const {
    if (fma_scaling < kOwnCoresScaling) return Spell::kSharedCore;
    return round_trip_ns < kCloseNs ? Spell::kClose : Spell::kDistant;
  }
};

Result<std::unique_ptr<Trainer>> BookTrainer(int threads) {
  Sequential net(784, /*seed=*/0);
  net.StandardBlock(256, 0.5).StandardBlock(256, 0.5).Linear(10);
  BALLAST_ASSIGN_OR_RETURN(Graph g, net.Build());
  TrainerOptions o;
  o.optimizer.lr = 0.05;
  o.optimizer.momentum = 0.9;
  o.threads = threads;
  o.max_batch = kBatch;
  o.keep_gradients = false;
  return Trainer::Create(g, o);
}

nlohmann::json Summary(const std::vector<Chunk>& chunks, Spell spell) {
  std::vector<double> ratio;
  double total[2] = {0, 0};
  for (const Chunk& c : chunks) {
    if (c.spell() != spell) continue;
    ratio.push_back(c.us[0] / c.us[1]);
    total[0] += c.mean[0], total[1] += c.mean[1];
  }
  if (ratio.empty()) return {{"chunks", 0}};
  return {{"chunks", ratio.size()},
          {"median_speedup", Median(ratio)},
          {"min_speedup", *std::min_element(ratio.begin(), ratio.end())},
          {"max_speedup", *std::max_element(ratio.begin(), ratio.end())},
          {"mean_time_speedup", total[0] / total[1]}};
}

void PrintSummary(const char* name, const nlohmann::json& s) {
  if (s["chunks"].get<size_t>() == 0) {
    fmt::print("{}: no chunk\n", name);
    return;
  }
  fmt::print(
      "{}: {} chunks, speed-up median {:.2f}x (chunks {:.2f}-{:.2f}x); from "
      "mean step times {:.2f}x\n",
      name, s["chunks"].get<size_t>(), s["median_speedup"].get<double>(),
      s["min_speedup"].get<double>(), s["max_speedup"].get<double>(),
      s["mean_time_speedup"].get<double>());
}

Status RunBenchStep(const StepBenchOptions& o) {
  if (!o.json.empty()) BALLAST_RETURN_IF_ERROR(CheckWritable("--json", o.json));
  BALLAST_ASSIGN_OR_RETURN(TrainTest data, LoadIdxDirectory(o.data));
  Dataset& d = data.train;
  if (d.features != 784 || d.rows < kBatch) {
    return InvalidArgument("bench step: " + o.data + " holds " +
                           std::to_string(d.rows) + " rows of " +
                           std::to_string(d.features) +
                           " features; the book's MLP needs at least " +
                           std::to_string(kBatch) + " rows of 784");
  }
  BALLAST_RETURN_IF_ERROR(ApplyNormalization(d, ComputeNormalization(d)));
  std::unique_ptr<Trainer> trainers[2];
  BALLAST_ASSIGN_OR_RETURN(trainers[0], BookTrainer(1));
  BALLAST_ASSIGN_OR_RETURN(trainers[1], BookTrainer(o.threads));
  const int64_t batches = d.rows / kBatch;
  int64_t next = 0;
  // With --gather, each trainer's batches: the rows in one shuffled order.
  std::unique_ptr<BatchFeeder> feeders[2];
  if (o.gather) {
    for (int i = 0; i < 2; ++i) {
      feeders[i] =
          std::make_unique<BatchFeeder>(d, kBatch, i == 0 ? 1 : o.threads);
      BALLAST_RETURN_IF_ERROR(feeders[i]->SetOrder(EpochOrder(d.rows, 0, 0)));
    }
  }
  // Runs `steps` steps of trainer i from batch `first`; returns their times.
  const auto run = [&](int i, int64_t first,
                       int steps) -> Result<std::vector<double>> {
    std::vector<double> t;
    BatchFeeder* feeder = feeders[i].get();
    if (feeder) BALLAST_RETURN_IF_ERROR(feeder->Load(first % batches));
    for (int s = 0; s < steps; ++s) {
      const int64_t b = (first + s) % batches;
      const auto t0 = std::chrono::steady_clock::now();
      if (feeder) {
        BALLAST_RETURN_IF_ERROR(trainers[i]
                                    ->Step(feeder->x(), feeder->labels(),
                                           nullptr, kBatch,
                                           feeder->Next((b + 1) % batches))
                                    .status());
        feeder->Swap();
      } else {
        BALLAST_RETURN_IF_ERROR(trainers[i]
                                    ->Step(d.x.data() + b * kBatch * 784,
                                           d.labels.data() + b * kBatch,
                                           nullptr, kBatch)
                                    .status());
      }
      t.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count());
    }
    return t;
  };
  for (int i = 0; i < 2; ++i) BALLAST_RETURN_IF_ERROR(run(i, 0, 5).status());
  fmt::print(
      "the book's training step (784-256-256-10, batch {}{}) on 1 thread and "
      "on {}, alternated: {} chunks of {} steps each\n",
      kBatch,
      o.gather ? ", shuffled rows gathered in the step as `ballast train` does"
               : "",
      o.threads, o.chunks, o.steps);
  fmt::print("{:>5} {:>13} {:>11} {:>12} {:>12} {:>9}\n", "chunk", "round trip",
             "FMA roof", "1 thread", fmt::format("{} threads", o.threads),
             "speed-up");
  std::vector<Chunk> chunks;
  nlohmann::json out{{"threads", o.threads},
                     {"gather", o.gather},
                     {"steps_per_chunk", o.steps},
                     {"close_below_ns", kCloseNs},
                     {"shared_core_below_scaling", kOwnCoresScaling},
                     {"chunks", nlohmann::json::array()}};
  for (int c = 0; c < o.chunks; ++c) {
    Chunk k;
    k.round_trip_ns = ops::MeasureRoundTripNs();
    k.fma_scaling = ops::MeasureFmaRoofGflops(o.threads, kRoofSeconds) /
                    ops::MeasureFmaRoofGflops(1, kRoofSeconds);
    // Both on the same batches; the first alternates, so that neither
    // always follows the other.
    for (int j = 0; j < 2; ++j) {
      const int i = (c + j) % 2;
      BALLAST_ASSIGN_OR_RETURN(std::vector<double> t, run(i, next, o.steps));
      k.us[i] = 1e6 * Median(t);
      double sum = 0;
      for (double x : t) sum += x;
      k.mean[i] = 1e6 * sum / double(t.size());
    }
    next += o.steps;
    chunks.push_back(k);
    fmt::print(
        "{:>5} {:>10.0f} ns {:>10.2f}x {:>9.1f} us {:>9.1f} us {:>8.2f}x\n",
        c + 1, k.round_trip_ns, k.fma_scaling, k.us[0], k.us[1],
        k.us[0] / k.us[1]);
    std::fflush(stdout);
    out["chunks"].push_back({{"round_trip_ns", k.round_trip_ns},
                             {"fma_scaling", k.fma_scaling},
                             {"spell", SpellKey(k.spell())},
                             {"median_us_1", k.us[0]},
                             {"median_us_n", k.us[1]},
                             {"mean_us_1", k.mean[0]},
                             {"mean_us_n", k.mean[1]}});
  }
  for (Spell s : kSpells) out[SpellKey(s)] = Summary(chunks, s);
  fmt::print(
      "\nper chunk, the median step on 1 thread over the median on {}:\n",
      o.threads);
  PrintSummary(
      fmt::format("close cores (round trip < {:.0f} ns)", kCloseNs).c_str(),
      out["close"]);
  PrintSummary("distant cores", out["distant"]);
  PrintSummary(
      fmt::format("one core's FMA units (FMA roof < {:.1f}x)", kOwnCoresScaling)
          .c_str(),
      out["shared_core"]);
  return WriteJsonIfAsked(o.json, out);
}

}  // namespace

void RegisterBenchStep(CLI::App& bench, int& exit_code) {
  auto o = std::make_shared<StepBenchOptions>();
  CLI::App* step = bench.add_subcommand(
      "step",
      "The book's training step on 1 thread and on N, alternated in chunks in "
      "one process, each chunk after a measurement of what a second core "
      "gives (core-to-core round trip, FMA roof scaling): the speed-up on "
      "close cores, distant cores and one shared core");
  step->add_option("--threads", o->threads,
                   "Threads of the second trainer (default: 2)")
      ->check(CLI::Range(1, kMaxThreads));
  step->add_option("--chunks", o->chunks, "Chunks (default: 30)")
      ->check(CLI::Range(1, 100000));
  step->add_option("--steps", o->steps,
                   "Steps per trainer and chunk (default: 50)")
      ->check(CLI::Range(1, 100000));
  step->add_option("--data", o->data,
                   "Fashion-MNIST directory, or \"fashion-mnist\" for "
                   "Debian's (default)");
  step->add_option("--json", o->json, "Also write the results as JSON");
  step->add_flag("--gather", o->gather,
                 "Step on batches of shuffled rows gathered during the steps, "
                 "as `ballast train` does (default: consecutive rows read in "
                 "place)");
  step->callback([o, &exit_code] {
    Status s = RunBenchStep(*o);
    if (!s.ok()) {
      std::fprintf(stderr, "ballast bench step: %s\n", s.ToString().c_str());
      exit_code = kExitFailure;
    }
  });
}

}  // namespace ballast::cli
