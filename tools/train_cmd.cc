// `ballast train`: train an MLP of StandardBlocks on Fashion-MNIST, an IDX
// directory or a CSV file; save the model, checkpoints, a log, a plot.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ballast/data.h"
#include "ballast/format.h"
#include "ballast/init.h"
#include "ballast/model.h"
#include "ballast/schedule.h"
#include "ballast/session.h"
#include "ballast/trainer.h"
#include "ballast/version.h"
#include "ops/tasks.h"
#include "runtime/number_text.h"
#include "tools/array_io.h"
#include "tools/batch_feeder.h"
#include "tools/checkpoint_dir.h"
#include "tools/commands.h"
#include "tools/stop_signals.h"
#include "tools/svg_plot.h"
#include "tools/train_cli.h"
#include "tools/train_data.h"
#include "tools/train_resume.h"

using ballast::internal::ParseWhole;

namespace ballast::cli {
namespace {

struct EpochLog {
  int epoch = 0;
  double seconds = 0, train_loss = 0, train_acc = 0, test_loss = 0,
         test_acc = 0, lr = 0;
};

// --init, parsed before anything is read or created.
struct InitScheme {
  enum Kind { kDefault, kKaiming, kXavier, kOrthogonal, kZeros, kNormal };
  Kind kind = kDefault;
  double stddev = 0;  // kNormal
};

Result<InitScheme> ParseInit(const std::string& scheme) {
  static const std::pair<const char*, InitScheme::Kind> kNames[] = {
      {"default", InitScheme::kDefault},
      {"kaiming", InitScheme::kKaiming},
      {"xavier", InitScheme::kXavier},
      {"orthogonal", InitScheme::kOrthogonal},
      {"zeros", InitScheme::kZeros}};
  for (const auto& [name, kind] : kNames) {
    if (scheme == name) return InitScheme{kind};
  }
  if (scheme.starts_with("normal:")) {
    const std::string text = scheme.substr(7);
    InitScheme s{InitScheme::kNormal, -1};
    if (!ParseWhole(text, &s.stddev) || s.stddev < 0) {
      return InvalidArgument("--init '" + scheme + "': '" + text +
                             "' is not a standard deviation (a number >= 0)");
    }
    return s;
  }
  return InvalidArgument("--init '" + scheme +
                         "' is not one of default, kaiming, xavier, "
                         "orthogonal, zeros, normal:STD");
}

// Re-initializes every Linear weight with `scheme` (bias zero), except
// kDefault, which keeps PyTorch's Linear init.
Status ApplyInit(Graph& g, const InitScheme& scheme, uint64_t seed) {
  if (scheme.kind == InitScheme::kDefault) return Status::Ok();
  Generator gen(seed + 1);
  for (Node& n : g.nodes) {
    if (n.op != "linear") continue;
    Tensor& w = n.params["weight"];
    switch (scheme.kind) {
      case InitScheme::kDefault:
        break;
      case InitScheme::kKaiming:
        BALLAST_RETURN_IF_ERROR(init::kaiming_normal(
            w, gen, 0.0, init::FanMode::kFanIn, init::Nonlinearity::kRelu));
        break;
      case InitScheme::kXavier:
        BALLAST_RETURN_IF_ERROR(init::xavier_uniform(w, gen));
        break;
      case InitScheme::kOrthogonal:
        BALLAST_RETURN_IF_ERROR(init::orthogonal(w, gen));
        break;
      case InitScheme::kZeros:
        BALLAST_RETURN_IF_ERROR(init::zeros(w));
        break;
      case InitScheme::kNormal:
        BALLAST_RETURN_IF_ERROR(init::normal(w, gen, 0.0, scheme.stddev));
        break;
    }
    if (n.params.count("bias"))
      BALLAST_RETURN_IF_ERROR(init::zeros(n.params["bias"]));
  }
  return Status::Ok();
}

// The --schedule, --step-size, --gamma and --warmup flags as a schedule
// (their ranges checked by CheckRanges).
Result<LrSchedule> Schedule(const TrainCli& o) {
  LrSchedule s;
  if (!ParseScheduleKind(o.schedule.c_str(), &s.kind)) {
    return InvalidArgument("--schedule '" + o.schedule +
                           "' is not one of constant, step, cosine");
  }
  for (const char* flag : {"--step-size", "--gamma"}) {
    if (o.given.count(flag) && s.kind != ScheduleKind::kStep) {
      return InvalidArgument(std::string(flag) +
                             " is for --schedule step, not " + o.schedule);
    }
  }
  s.step_size = o.step_size > 0 ? o.step_size : std::max(1, o.epochs / 3);
  s.gamma = o.gamma;
  s.total_epochs = o.epochs;
  s.warmup_epochs = o.warmup;
  // (CheckRanges has named any flag out of range.)
  BALLAST_RETURN_IF_ERROR(ValidateSchedule(s));
  return s;
}

// The numeric flags out of range, named (before the Trainer's own check,
// which knows no flags).
Status CheckRanges(const TrainCli& o) {
  struct Range {
    const char* flag;
    double value, lo, hi;
    bool whole;  // an integer flag
    const char* note;
  };
  const double inf = std::numeric_limits<double>::infinity();
  const Range ranges[] = {
      {"--epochs", double(o.epochs), 1, kMaxEpochs, true, ""},
      {"--batch", double(o.batch), kMinBatch, kMaxBatch, true, ""},
      {"--lr", o.lr, 0, inf, false, ""},
      {"--momentum", o.momentum, 0, inf, false, ""},
      {"--weight-decay", o.weight_decay, 0, inf, false, ""},
      {"--dropout", o.dropout, 0, 1, false, ""},
      {"--label-smoothing", o.label_smoothing, 0, 1, false, ""},
      {"--clip-grad-norm", o.clip, 0, inf, false, " (0: no clipping)"},
      {"--gamma", o.gamma, 0, inf, false, ""},
      {"--step-size", double(o.step_size), 0, inf, true, " (0: --epochs / 3)"},
      {"--warmup", double(o.warmup), 0, inf, true, " (epochs)"},
  };
  for (const Range& r : ranges) {
    if (r.value >= r.lo && r.value <= r.hi && std::isfinite(r.value)) continue;
    return InvalidArgument(
        r.hi == inf ? fmt::format("{} {} must be a {} >= {}{}", r.flag, r.value,
                                  r.whole ? "whole number" : "finite number",
                                  r.lo, r.note)
                    : fmt::format("{} {} must be in [{}, {}]{}", r.flag,
                                  r.value, r.lo, r.hi, r.note));
  }
  return Status::Ok();
}

// The optimizer's other settings as the first line printed names them
// after its rate: SGD's momentum, and weight decay, where not zero.
std::string OptimizerText(const TrainCli& o) {
  std::string text;
  if (o.optimizer == "sgd" && o.momentum > 0) {
    text += fmt::format(" momentum {}", o.momentum);
  }
  if (o.weight_decay > 0) {
    text += fmt::format(" weight decay {}", o.weight_decay);
  }
  return text;
}

// The schedule as the first line printed names it: "" when constant.
std::string ScheduleText(const LrSchedule& s) {
  std::string text;
  if (s.kind == ScheduleKind::kStep) {
    text = fmt::format(" x {} every {} epoch(s)", s.gamma, s.step_size);
  } else if (s.kind == ScheduleKind::kCosine) {
    text = fmt::format(" cosine to 0 over {} epochs", s.total_epochs);
  }
  if (s.warmup_epochs > 0) {
    text += fmt::format(" with {} epoch(s) of linear warmup", s.warmup_epochs);
  }
  return text;
}

void Progress(bool tty, int epoch, int epochs, int64_t done, int64_t total,
              double loss) {
  if (!tty) return;
  const int width = 30;
  const int filled = int(double(done) / double(total) * width);
  std::fprintf(stdout, "\repoch %d/%d [%s%s] %3d%% loss %.4f", epoch, epochs,
               std::string(size_t(filled), '#').c_str(),
               std::string(size_t(width - filled), '.').c_str(),
               int(100.0 * double(done) / double(total)), loss);
  std::fflush(stdout);
}

// The --profile table: mean wall time per step of each phase.
void PrintProfile(const std::vector<PhaseTime>& profile) {
  double total = 0;
  for (const PhaseTime& p : profile) total += p.seconds;
  fmt::print("profile (mean wall time per training step, {:.0f} us):\n",
             profile.empty() || profile[0].steps == 0
                 ? 0.0
                 : 1e6 * total / double(profile[0].steps));
  fmt::print("  {:<40} {:>9} {:>11} {:>7}\n", "layer", "phase", "us/step",
             "share");
  for (const PhaseTime& p : profile) {
    if (p.steps == 0) continue;
    fmt::print("  {:<40} {:>9} {:>11.1f} {:>6.1f}%\n", p.layer, p.phase,
               1e6 * p.seconds / double(p.steps),
               total > 0 ? 100 * p.seconds / total : 0.0);
  }
}

// The first parameter of `g` holding a NaN or an infinity, or "".
std::string FirstNonFinite(const Graph& g) {
  for (const Node& n : g.nodes) {
    for (const auto& [name, t] : n.params) {
      const float* v = t.data();
      for (int64_t i = 0; i < t.numel(); ++i) {
        if (!std::isfinite(v[i])) return n.name + "." + name;
      }
    }
  }
  return "";
}

// --log, --json and --plot from the epochs that completed. Returns the first
// failure; later ones are printed, as every report is attempted.
Status WriteReports(const TrainCli& o, const std::vector<EpochLog>& logs,
                    double total_seconds) {
  Status first = Status::Ok();
  const auto write = [&](const std::string& path, const std::string& text) {
    if (path.empty()) return;
    Status s = WriteText(path, text);
    if (s.ok()) return;
    if (first.ok()) {
      first = s;
    } else {
      std::fprintf(stderr, "ballast train: %s\n", s.ToString().c_str());
    }
  };
  std::string csv =
      "epoch,seconds,train_loss,train_accuracy,test_loss,test_accuracy,lr\n";
  for (const EpochLog& l : logs) {
    csv += fmt::format("{},{:.4f},{:.6f},{:.6f},{:.6f},{:.6f},{:.9g}\n",
                       l.epoch, l.seconds, l.train_loss, l.train_acc,
                       l.test_loss, l.test_acc, l.lr);
  }
  if (!o.log.empty()) write(o.log, csv);
  if (!o.json.empty()) {
    nlohmann::json j;
    j["epochs"] = nlohmann::json::array();
    for (const EpochLog& l : logs) {
      j["epochs"].push_back({{"epoch", l.epoch},
                             {"seconds", l.seconds},
                             {"train_loss", l.train_loss},
                             {"train_accuracy", l.train_acc},
                             {"test_loss", l.test_loss},
                             {"test_accuracy", l.test_acc},
                             {"lr", l.lr}});
    }
    j["total_seconds"] = total_seconds;
    write(o.json, j.dump(2) + "\n");
  }
  if (!o.plot.empty()) {
    std::vector<double> loss, acc;
    for (const EpochLog& l : logs)
      loss.push_back(l.train_loss), acc.push_back(l.test_acc);
    // A resumed run's reports start at the epoch after its checkpoint's.
    write(o.plot, LinePlotSvg("training: " + o.arch, "epoch",
                              {{"train loss", loss, false},
                               {"test accuracy", acc, true}},
                              logs.empty() ? 1 : logs.front().epoch));
  }
  return first;
}

Status RunTrain(TrainCli o) {
  // The flags as given, then a checkpoint to resume from: it fixes most.
  BALLAST_RETURN_IF_ERROR(CheckRanges(o));
  Model ck;
  int first_epoch = 0;  // the epochs a --resume checkpoint has trained
  if (!o.resume.empty()) {
    BALLAST_ASSIGN_OR_RETURN(ck, LoadModel(o.resume));
    BALLAST_RETURN_IF_ERROR(TakeCheckpointFlags(ck, o));
    BALLAST_RETURN_IF_ERROR(CheckRanges(o).WithContext(
        "--resume '" + o.resume + "' records a value out of range: "));
    auto it = ck.graph.metadata.find("train.epoch");
    if (it != ck.graph.metadata.end()) {
      if (!ParseWhole(it->second, &first_epoch) || first_epoch < 0) {
        return DataLoss("--resume '" + o.resume +
                        "': metadata train.epoch = '" + it->second +
                        "' is not an epoch count");
      }
    }
  }
  if (!o.given.count("--lr") && !o.recorded.count("--lr") &&
      o.optimizer != "sgd") {
    o.lr = kAdamLr;
  }
  if (!o.given.count("--weight-decay") && !o.recorded.count("--weight-decay") &&
      o.optimizer == "adamw") {
    o.weight_decay = kAdamWDecay;
  }
  if (o.given.count("--momentum") && o.optimizer != "sgd") {
    return InvalidArgument("--momentum is for --optimizer sgd; " + o.optimizer +
                           " keeps torch's moments (betas 0.9, 0.999)");
  }
  BALLAST_ASSIGN_OR_RETURN(const std::vector<int64_t> widths,
                           ParseArch(o.arch));
  BALLAST_ASSIGN_OR_RETURN(const InitScheme init, ParseInit(o.init));
  BALLAST_ASSIGN_OR_RETURN(const LrSchedule schedule, Schedule(o));
  const std::pair<const char*, const std::string*> outputs[] = {
      {"--out", &o.out},
      {"--log", &o.log},
      {"--json", &o.json},
      {"--plot", &o.plot}};
  // The checkpoint directory first: the other outputs may go into it.
  CheckpointDir checkpoint_dir;
  if (!o.checkpoint_dir.empty()) {
    BALLAST_RETURN_IF_ERROR(checkpoint_dir.Make(o.checkpoint_dir));
    BALLAST_RETURN_IF_ERROR(CheckWritable(
        "--checkpoint-dir", CheckpointPath(o.checkpoint_dir, first_epoch + 1)));
    const auto run_dir = ck.graph.metadata.find("train.checkpoint_dir");
    BALLAST_RETURN_IF_ERROR(CheckNoOtherRun(
        o.checkpoint_dir, o.resume,
        run_dir != ck.graph.metadata.end() ? run_dir->second : "", first_epoch,
        o.epochs));
  }
  for (const auto& [flag, path] : outputs) {
    if (!path->empty()) BALLAST_RETURN_IF_ERROR(CheckWritable(flag, *path));
  }
  Result<TrainTest> loaded = LoadData(o);
  if (loaded.status().code() == StatusCode::kNotFound &&
      o.recorded.count("--data")) {
    return loaded.status().WithContext("the data --resume '" + o.resume +
                                       "' records (give --data if it moved): ");
  }
  BALLAST_ASSIGN_OR_RETURN(TrainTest data, std::move(loaded));
  if (data.train.features != widths.front()) {
    return InvalidArgument("--arch starts with " +
                           std::to_string(widths.front()) +
                           " inputs but the data rows have " +
                           std::to_string(data.train.features) + " features");
  }
  if (data.train.classes > widths.back()) {
    return InvalidArgument("--arch ends with " + std::to_string(widths.back()) +
                           " outputs but the data has " +
                           std::to_string(data.train.classes) + " classes");
  }
  if (data.train.rows < o.batch) {
    return InvalidArgument(
        "'" + o.data + "' has " + std::to_string(data.train.rows) +
        " training rows, fewer than one batch of " + std::to_string(o.batch) +
        " (--batch): nothing would be trained");
  }
  if (data.test.rows == 0) {
    return InvalidArgument("'" + o.data + "' has no test rows to evaluate on");
  }
  const Normalization norm = ComputeNormalization(data.train);
  // As the metadata holds them (and `ballast run` reads them).
  const std::string norm_mean = fmt::format("{:.9g}", norm.mean),
                    norm_std = fmt::format("{:.9g}", norm.std);
  const std::string digest = DataDigest(data);
  if (!o.resume.empty()) {
    BALLAST_RETURN_IF_ERROR(
        CheckResumedRows(ck, o, digest, norm_mean, norm_std));
  }
  BALLAST_RETURN_IF_ERROR(ApplyNormalization(data.train, norm));
  BALLAST_RETURN_IF_ERROR(ApplyNormalization(data.test, norm));

  TrainerOptions to;
  to.threads = o.threads;
  to.seed = o.seed;
  to.max_batch = o.batch;
  to.fuse = !o.no_fuse;
  to.keep_gradients = false;  // nothing here reads them
  to.skip_zeros = !o.no_skip_zeros;
  to.masked_input_grad = !o.dense_dx;
  to.profile = o.profile;
  to.label_smoothing = o.label_smoothing;
  to.clip_grad_norm = o.clip;
  to.optimizer.lr = o.lr;
  to.optimizer.weight_decay = o.weight_decay;
  if (o.optimizer == "sgd") {
    to.optimizer.kind = OptimizerKind::kSgd;
    to.optimizer.momentum = o.momentum;
  } else if (o.optimizer == "adam" || o.optimizer == "adamw") {
    to.optimizer.kind =
        o.optimizer == "adam" ? OptimizerKind::kAdam : OptimizerKind::kAdamW;
  }

  std::unique_ptr<Trainer> trainer;
  std::string last_checkpoint;  // the newest checkpoint on disk, if any
  if (!o.resume.empty()) {
    BALLAST_ASSIGN_OR_RETURN(trainer, Trainer::Resume(ck, to));
    last_checkpoint = o.resume;
    fmt::print("resumed from {} after epoch {}\n", o.resume, first_epoch);
    if (first_epoch >= o.epochs) {
      fmt::print(
          "the checkpoint is at epoch {}, --epochs is {}: no epoch left "
          "to train\n",
          first_epoch, o.epochs);
      // (The run's --out already holds what it trained.)
      if (o.recorded.count("--out")) o.out.clear();
    }
  } else {
    Sequential net(widths.front(), o.seed);
    for (size_t i = 1; i + 1 < widths.size(); ++i) {
      if (o.no_bn) {
        net.Linear(widths[i]).ReLU().Dropout(o.dropout);
      } else {
        net.StandardBlock(widths[i], o.dropout);
      }
    }
    net.Linear(widths.back());
    BALLAST_ASSIGN_OR_RETURN(Graph g, net.Build());
    BALLAST_RETURN_IF_ERROR(ApplyInit(g, init, o.seed));
    BALLAST_ASSIGN_OR_RETURN(trainer, Trainer::Create(g, to));
  }
  if (first_epoch < o.epochs) checkpoint_dir.Keep();  // the run starts
  if (o.out.empty() && o.checkpoint_dir.empty()) {
    std::fprintf(stderr,
                 "ballast train: note: without --out or --checkpoint-dir this "
                 "run saves no model\n");
  }
  const bool tty = ::isatty(STDOUT_FILENO);
  fmt::print(
      "training {} on {} ({} train / {} test rows), batch {}, {} lr {}{}{}, {} "
      "thread(s), {}\n",
      o.arch, o.data, data.train.rows, data.test.rows, o.batch, o.optimizer,
      o.lr, OptimizerText(o), ScheduleText(schedule), o.threads,
      o.no_fuse ? "unfused" : "fused");
  std::vector<EpochLog> logs;
  // Whether the rate changes from epoch to epoch (then each epoch's line
  // names it).
  const bool scheduled =
      schedule.kind != ScheduleKind::kConstant || schedule.warmup_epochs > 0;
  // The step reads one batch while its idle threads gather the next.
  BatchFeeder feeder(data.train, o.batch, o.threads);
  double total_seconds = 0;
  // What a checkpoint records besides the trainer's state: the run's flags,
  // and the input normalization, so that `ballast run` on a checkpoint
  // computes what it does on the final model.
  std::map<std::string, std::string> recorded_metadata =
      RecordedMetadata(o, schedule);
  recorded_metadata["train.arch"] = o.arch;
  recorded_metadata["train.data_digest"] = digest;
  recorded_metadata["input_mean"] = norm_mean;
  recorded_metadata["input_std"] = norm_std;
  // What is kept when a step fails: named in the error.
  const auto kept = [&] {
    if (o.checkpoint_dir.empty()) return std::string();
    return last_checkpoint.empty()
               ? std::string("no checkpoint was written yet; ")
               : "the last good checkpoint, '" + last_checkpoint +
                     "', is kept; ";
  };
  const auto train_epoch = [&](int epoch) -> Status {
    BALLAST_RETURN_IF_ERROR(
        trainer->set_lr(ScheduledLr(o.lr, schedule, epoch)));
    BALLAST_RETURN_IF_ERROR(
        feeder.SetOrder(EpochOrder(data.train.rows, o.seed, epoch)));
    const int64_t batches = feeder.batches();
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0;
    int64_t correct = 0;
    if (batches > 0) BALLAST_RETURN_IF_ERROR(feeder.Load(0));
    for (int64_t b = 0; b < batches; ++b) {
      if (const int sig = StopSignalReceived(); sig != 0) {
        if (tty) std::fputs("\n", stdout);
        return Cancelled(fmt::format(
            "interrupted by {} in epoch {} after {} of {} batches; {}{}",
            StopSignalName(sig), epoch + 1, b, batches, kept(),
            last_checkpoint.empty()
                ? "nothing was saved"
                : "continue with: " + ContinueCommand(o, last_checkpoint)));
      }
      // The next batch, a few rows at a time, in the step's idle moments.
      // (With --profile the batch is copied between the steps instead: the
      // calling thread's chunks would count in the time of the pass it
      // waited in.)
      const bool more = b + 1 < batches;
      const StepSideWork side =
          more && !o.profile ? feeder.Next(b + 1) : StepSideWork{};
      Result<StepResult> r =
          trainer->Step(feeder.x(), feeder.labels(), nullptr, o.batch, side);
      if (r.ok() && more) {
        if (side.chunks > 0) {
          feeder.Swap();
        } else {
          BALLAST_RETURN_IF_ERROR(feeder.Load(b + 1));
        }
      }
      if (!r.ok()) {
        if (tty) std::fputs("\n", stdout);
        return r.status().WithContext("epoch " + std::to_string(epoch + 1) +
                                      ", batch " + std::to_string(b + 1) +
                                      ": " + kept());
      }
      loss_sum += r->loss;
      correct += r->correct;
      if (b % 20 == 0 || b + 1 == batches) {
        Progress(tty, epoch + 1, o.epochs, b + 1, batches,
                 loss_sum / double(b + 1));
      }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    BALLAST_ASSIGN_OR_RETURN(
        const EvalResult ev,
        trainer->Evaluate(data.test.x.data(), data.test.labels.data(),
                          data.test.rows));
    const EpochLog l{epoch + 1,
                     seconds,
                     loss_sum / double(batches),
                     double(correct) / double(batches * o.batch),
                     ev.loss,
                     ev.accuracy,
                     trainer->lr()};
    if (tty) std::fputs("\r\033[K", stdout);
    fmt::print(
        "epoch {}/{}: {}loss {:.4f}, train acc {:.2f}%, test acc {:.2f}%, "
        "{:.3f} s, {:.0f} samples/s\n",
        l.epoch, o.epochs, scheduled ? fmt::format("lr {:.6g}, ", l.lr) : "",
        l.train_loss, 100 * l.train_acc, 100 * l.test_acc, seconds,
        double(batches * o.batch) / seconds);
    std::fflush(stdout);
    // The loss is checked before each update: the epoch's last updates can
    // still leave weights or running statistics non-finite.
    const std::string bad = FirstNonFinite(trainer->CurrentGraph());
    if (!bad.empty()) {
      return FailedPrecondition("epoch " + std::to_string(epoch + 1) + ": " +
                                kept() + "train: '" + bad +
                                "' holds a NaN or an infinity after epoch " +
                                std::to_string(epoch + 1));
    }
    logs.push_back(l);
    total_seconds += seconds;  // the reports' epochs only
    if (!o.checkpoint_dir.empty()) {
      std::map<std::string, std::string> meta = recorded_metadata;
      meta["train.epoch"] = std::to_string(epoch + 1);
      Model ck = trainer->Checkpoint(meta);
      const std::string path = CheckpointPath(o.checkpoint_dir, epoch + 1);
      const Status saved = SaveModel(ck, path);
      if (!saved.ok()) {
        return saved.WithContext(
            "epoch " + std::to_string(epoch + 1) + ": " + kept() +
            (epoch + 1 < o.epochs && !last_checkpoint.empty()
                 ? "continue with: " + ContinueCommand(o, last_checkpoint) +
                       "; "
                 : ""));
      }
      last_checkpoint = path;
    }
    return Status::Ok();
  };
  Status status = Status::Ok();
  const StopSignals stop_signals;
  for (int epoch = first_epoch; epoch < o.epochs && status.ok(); ++epoch) {
    status = train_epoch(epoch);
  }
  // Every epoch trained, its weights finite: the model is saved even when
  // the last checkpoint could not be.
  const bool trained = int(logs.size()) == std::max(0, o.epochs - first_epoch);
  if (trained && !o.out.empty()) {
    Model m;
    m.graph = trainer->CurrentGraph();
    char created[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ",
                  std::gmtime(&now));
    m.graph.metadata = {
        {"producer", "ballast train " BALLAST_VERSION_STRING},
        {"created", created},
        {"description", "MLP " + o.arch + " trained on " + o.data},
        {"input_names", "input"},
        {"output_names", "logits"},
        {"input_mean", norm_mean},
        {"input_std", norm_std}};
    Status saved = SaveModel(m, o.out);
    if (saved.ok()) fmt::print("saved {}\n", o.out);
    if (status.ok()) {
      status = saved;
    } else if (!saved.ok()) {
      std::fprintf(stderr, "ballast train: %s\n", saved.ToString().c_str());
    }
  }
  fmt::print("total train time {:.2f} s\n", total_seconds);
  if (o.profile) PrintProfile(trainer->Profile());
  // The reports cover the epochs that completed, also when a later one
  // failed; with none completed, earlier reports at those paths stay.
  const Status reports = status.ok() || !logs.empty()
                             ? WriteReports(o, logs, total_seconds)
                             : Status::Ok();
  if (status.ok()) return reports;
  if (!reports.ok()) {
    std::fprintf(stderr, "ballast train: %s\n", reports.ToString().c_str());
  }
  return status;
}

}  // namespace

void RegisterTrain(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<TrainCli>();
  CLI::App* c = app.add_subcommand("train",
                                   "Train an MLP of StandardBlocks (Linear -> "
                                   "BatchNorm1d -> ReLU -> Dropout)");
  c->add_option("--data", o->data,
                "fashion-mnist (Debian's dataset-fashion-mnist, or the "
                "directory $BALLAST_FASHION_MNIST_DIR names), an IDX "
                "directory (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each plain "
                "or .gz), or a CSV file (any regular file; last 10% of rows "
                "held out for test)")
      ->capture_default_str();
  c->add_option("--label-column", o->label_column,
                "CSV: column holding the class label, from 0 (negative: from "
                "the end, -1 the last)")
      ->capture_default_str();
  c->add_option("--arch", o->arch, "Widths, input to output")
      ->capture_default_str();
  c->add_option("--dropout", o->dropout, "Dropout probability, in [0, 1]")
      ->capture_default_str();
  c->add_flag("--no-bn", o->no_bn,
              "Blocks without BatchNorm (Linear -> ReLU -> Dropout)");
  c->add_option("--init", o->init,
                "default (torch's Linear init) | kaiming (kaiming_normal, "
                "fan_in, relu) | xavier (xavier_uniform) | orthogonal | zeros "
                "| normal:STD; all but default zero the Linear biases")
      ->capture_default_str();
  c->add_option("--epochs", o->epochs,
                fmt::format("Epochs, 1 to {}", kMaxEpochs))
      ->capture_default_str();
  c->add_option("--batch", o->batch,
                fmt::format("Batch size, {} to {}", kMinBatch, kMaxBatch))
      ->capture_default_str();
  c->add_option("--optimizer", o->optimizer, "sgd | adam | adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  c->add_option("--lr", o->lr,
                fmt::format("Learning rate (default: {} with sgd; {} with adam "
                            "and adamw, torch.optim.Adam's default)",
                            kSgdLr, kAdamLr));
  c->add_option("--momentum", o->momentum,
                "SGD's momentum (an error with adam and adamw)")
      ->capture_default_str();
  c->add_option("--weight-decay", o->weight_decay,
                fmt::format("Weight decay (default: 0 with sgd and adam; {} "
                            "with adamw, torch.optim.AdamW's default)",
                            kAdamWDecay));
  c->add_option("--schedule", o->schedule,
                "Learning rate per epoch: constant | step (x GAMMA every "
                "STEP-SIZE epochs, StepLR) | cosine (to 0 after --epochs, "
                "CosineAnnealingLR)")
      ->check(CLI::IsMember({"constant", "step", "cosine"}))
      ->capture_default_str();
  c->add_option("--step-size", o->step_size,
                "step: epochs between decays (0: --epochs / 3 rounded down, at "
                "least 1)")
      ->capture_default_str();
  c->add_option("--gamma", o->gamma, "step: the decay")->capture_default_str();
  c->add_option("--warmup", o->warmup,
                "Epochs of linear warmup: epoch e < N runs at (e+1)/(N+1) of "
                "the rate (LinearLR), times the schedule's")
      ->capture_default_str();
  c->add_option("--clip-grad-norm", o->clip,
                "Clip the global gradient norm to this (0: off)")
      ->capture_default_str();
  c->add_option("--label-smoothing", o->label_smoothing,
                "Cross-entropy label smoothing, in [0, 1]")
      ->capture_default_str();
  c->add_option("--seed", o->seed, "Seed (weights, shuffling, dropout)")
      ->capture_default_str();
  c->add_option("--threads", o->threads,
                "Threads (default: OpenMP's, OMP_NUM_THREADS or one per CPU "
                "this process may run on; the results are the same bits on "
                "any count)")
      ->check(CLI::Range(1, kMaxThreads));
  c->add_flag("--profile", o->profile,
              "Time each layer's forward, backward and update; print the "
              "mean per step at the end (the next batch is then copied "
              "between the steps, not during them)");
  c->add_flag("--no-fuse", o->no_fuse,
              "Train with separate Linear/BN/ReLU/Dropout kernels");
  c->add_flag("--no-skip-zeros", o->no_skip_zeros,
              "Read every input value in the GEMMs after a ReLU (skipping "
              "its zeros gives the same bits; this times the dense GEMMs)");
  c->add_flag("--dense-dx", o->dense_dx,
              "Compute the whole input gradient of a layer after a fused "
              "block (by default only where that block's ReLU and dropout "
              "pass it, in steps where under 30% passes; the other "
              "summation order changes the last bits)");
  c->add_option("--out", o->out, "Save the trained model (.blst)");
  c->add_option("--checkpoint-dir", o->checkpoint_dir,
                "Write DIR/epoch-E.blst after every epoch (made if missing; a "
                "new run refuses a DIR that already holds checkpoints)");
  c->add_option(
      "--resume", o->resume,
      "Continue the run of a checkpoint (as --checkpoint-dir saves) "
      "with the flags it records: the network, data, batch, seed, "
      "optimizer, rates, schedule, epochs, loss, clipping, --no-fuse, "
      "--dense-dx, --out and --checkpoint-dir (not --log, --plot or "
      "--json). Given with another value they are an error, except "
      "--data (if its rows are the run's), --out, --checkpoint-dir, and "
      "--epochs (not under cosine); --init is always an error");
  c->add_option("--log", o->log, "Per-epoch CSV log");
  c->add_option("--plot", o->plot, "SVG plot of loss and accuracy per epoch");
  c->add_option("--json", o->json, "Per-epoch JSON summary");
  c->callback([o, c, &exit_code] {
    if (o->threads == 0) o->threads = ops::DefaultThreads();
    for (const CLI::Option* opt : c->get_options()) {
      if (opt->count() > 0) o->given.insert(opt->get_name());
    }
    Status s = RunTrain(*o);
    if (s.code() == StatusCode::kCancelled) {
      // Stopped by a signal: end as that signal would have (a calling
      // script's shell then stops too), once all is written.
      std::fprintf(stderr, "ballast train: %s\n", s.message().c_str());
      exit_code = EndBySignal(StopSignalReceived());
    } else if (!s.ok()) {
      std::fprintf(stderr, "ballast train: %s\n", s.ToString().c_str());
      exit_code = kExitFailure;
    }
  });
}

}  // namespace ballast::cli
