// `ballast train`: train an MLP of StandardBlocks on Fashion-MNIST, an IDX
// directory or a CSV file; save the model, checkpoints, a log, a plot.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ballast/data.h"
#include "ballast/format.h"
#include "ballast/init.h"
#include "ballast/model.h"
#include "ballast/trainer.h"
#include "ballast/version.h"
#include "ops/cache_aligned.h"
#include "tools/array_io.h"
#include "tools/commands.h"
#include "tools/svg_plot.h"

namespace ballast::cli {
namespace {

struct TrainCli {
  std::string data = "fashion-mnist", arch = "784-256-256-10", init = "default";
  std::string optimizer = "sgd", schedule = "constant", out, checkpoint_dir,
              resume, log, plot, json;
  double dropout = 0.5, lr = 0.05, momentum = 0.9, weight_decay = 0.0,
         label_smoothing = 0.0, clip = 0.0;
  bool no_bn = false, no_fuse = false, profile = false;
  int epochs = 5, threads = 1, label_column = 0, warmup = 0;
  int64_t batch = 128;
  uint64_t seed = 0;
};

struct EpochLog {
  int epoch = 0;
  double seconds = 0, train_loss = 0, train_acc = 0, test_loss = 0,
         test_acc = 0;
};

Result<std::vector<int64_t>> ParseArch(const std::string& arch) {
  std::vector<int64_t> w;
  std::stringstream ss(arch);
  std::string item;
  while (std::getline(ss, item, '-')) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1) {
      return InvalidArgument(
          "--arch '" + arch + "': '" + item +
          "' is not a positive width (expected e.g. 784-256-256-10)");
    }
    w.push_back(v);
  }
  if (w.size() < 2) {
    return InvalidArgument("--arch '" + arch +
                           "' needs at least an input and an output width");
  }
  return w;
}

// Re-initializes every Linear weight with `scheme` (bias zero), except
// "default", which keeps PyTorch's Linear init.
Status ApplyInit(Graph& g, const std::string& scheme, uint64_t seed) {
  if (scheme == "default") return Status::Ok();
  Generator gen(seed + 1);
  for (Node& n : g.nodes) {
    if (n.op != "linear") continue;
    Tensor& w = n.params["weight"];
    Status s;
    if (scheme == "kaiming") {
      s = init::kaiming_normal(w, gen, 0.0, init::FanMode::kFanIn,
                               init::Nonlinearity::kRelu);
    } else if (scheme == "xavier") {
      s = init::xavier_uniform(w, gen);
    } else if (scheme == "orthogonal") {
      s = init::orthogonal(w, gen);
    } else if (scheme == "zeros") {
      s = init::zeros(w);
    } else if (scheme.rfind("normal:", 0) == 0) {
      s = init::normal(w, gen, 0.0, std::atof(scheme.c_str() + 7));
    } else {
      return InvalidArgument(
          "--init '" + scheme +
          "' is not one of default, kaiming, xavier, orthogonal, "
          "zeros, normal:STD");
    }
    BALLAST_RETURN_IF_ERROR(s);
    if (n.params.count("bias"))
      BALLAST_RETURN_IF_ERROR(init::zeros(n.params["bias"]));
  }
  return Status::Ok();
}

double ScheduledLr(const TrainCli& o, int epoch) {  // epoch from 0
  double lr = o.lr;
  if (o.schedule == "step")
    lr *= std::pow(0.1, epoch / std::max(1, o.epochs / 3));
  if (o.schedule == "cosine") {
    lr *= 0.5 * (1 + std::cos(M_PI * epoch / std::max(1, o.epochs)));
  }
  if (o.warmup > 0 && epoch < o.warmup)
    lr *= double(epoch + 1) / (o.warmup + 1);
  return lr;
}

Result<TrainTest> LoadData(const TrainCli& o) {
  const bool csv =
      o.data.size() > 4 && o.data.substr(o.data.size() - 4) == ".csv";
  if (!csv) return LoadIdxDirectory(o.data);
  BALLAST_ASSIGN_OR_RETURN(Dataset all, ReadCsv(o.data, o.label_column));
  // The last 10% of the rows (at least one) are the test set.
  const int64_t test_rows = std::max<int64_t>(1, all.rows / 10);
  if (all.rows - test_rows < 2) {
    return InvalidArgument("'" + o.data + "' has too few rows to train on");
  }
  TrainTest tt;
  tt.train.rows = all.rows - test_rows, tt.test.rows = test_rows;
  tt.train.features = tt.test.features = all.features;
  tt.train.classes = tt.test.classes = all.classes;
  const auto cut = all.x.begin() + tt.train.rows * all.features;
  tt.train.x.assign(all.x.begin(), cut);
  tt.test.x.assign(cut, all.x.end());
  tt.train.labels.assign(all.labels.begin(),
                         all.labels.begin() + tt.train.rows);
  tt.test.labels.assign(all.labels.begin() + tt.train.rows, all.labels.end());
  return tt;
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

Status RunTrain(const TrainCli& o) {
  BALLAST_ASSIGN_OR_RETURN(const std::vector<int64_t> widths,
                           ParseArch(o.arch));
  if (!(o.dropout >= 0 && o.dropout <= 1)) {
    return InvalidArgument("--dropout " + std::to_string(o.dropout) +
                           " must be in [0, 1]");
  }
  BALLAST_ASSIGN_OR_RETURN(TrainTest data, LoadData(o));
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
  const Normalization norm = ComputeNormalization(data.train);
  ApplyNormalization(data.train, norm);
  ApplyNormalization(data.test, norm);

  TrainerOptions to;
  to.threads = o.threads;
  to.seed = o.seed;
  to.max_batch = o.batch;
  to.fuse = !o.no_fuse;
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
  int first_epoch = 0;
  if (!o.resume.empty()) {
    BALLAST_ASSIGN_OR_RETURN(const Model ck, LoadModel(o.resume));
    BALLAST_ASSIGN_OR_RETURN(trainer, Trainer::Resume(ck, to));
    auto it = ck.graph.metadata.find("train.epoch");
    first_epoch = it == ck.graph.metadata.end() ? 0 : std::stoi(it->second);
    fmt::print("resumed from {} after epoch {}\n", o.resume, first_epoch);
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
    BALLAST_RETURN_IF_ERROR(ApplyInit(g, o.init, o.seed));
    BALLAST_ASSIGN_OR_RETURN(trainer, Trainer::Create(g, to));
  }
  if (!o.checkpoint_dir.empty())
    std::filesystem::create_directories(o.checkpoint_dir);

  const bool tty = ::isatty(STDOUT_FILENO);
  fmt::print(
      "training {} on {} ({} train / {} test rows), batch {}, {} thread(s), "
      "{}\n",
      o.arch, o.data, data.train.rows, data.test.rows, o.batch, o.threads,
      o.no_fuse ? "unfused" : "fused");
  std::vector<EpochLog> logs;
  AlignedVector<float> xb(size_t(o.batch * data.train.features));
  std::vector<int32_t> yb(size_t(o.batch));
  double total_seconds = 0;
  for (int epoch = first_epoch; epoch < o.epochs; ++epoch) {
    trainer->set_lr(ScheduledLr(o, epoch));
    const std::vector<int64_t> order =
        EpochOrder(data.train.rows, o.seed, epoch);
    const int64_t batches =
        data.train.rows / o.batch;  // the last partial batch is dropped
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0;
    int64_t correct = 0;
    for (int64_t b = 0; b < batches; ++b) {
      BALLAST_RETURN_IF_ERROR(
          GatherBatch(data.train,
                      std::span<const int64_t>(order).subspan(
                          size_t(b * o.batch), size_t(o.batch)),
                      xb.data(), yb.data(), o.threads));
      Result<StepResult> r =
          trainer->Step(xb.data(), yb.data(), nullptr, o.batch);
      if (!r.ok()) {
        if (tty) std::fputs("\n", stdout);
        return r.status().WithContext(
            "epoch " + std::to_string(epoch + 1) + ", batch " +
            std::to_string(b + 1) + ": " +
            (o.checkpoint_dir.empty() ? ""
                                      : "the last good checkpoint is kept; "));
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
    total_seconds += seconds;
    BALLAST_ASSIGN_OR_RETURN(
        const EvalResult ev,
        trainer->Evaluate(data.test.x.data(), data.test.labels.data(),
                          data.test.rows));
    EpochLog l{
        epoch + 1,
        seconds,
        loss_sum / double(std::max<int64_t>(batches, 1)),
        double(correct) / double(std::max<int64_t>(batches * o.batch, 1)),
        ev.loss,
        ev.accuracy};
    logs.push_back(l);
    if (tty) std::fputs("\r\033[K", stdout);
    fmt::print(
        "epoch {}/{}: loss {:.4f}, train acc {:.2f}%, test acc {:.2f}%, {:.2f} "
        "s, "
        "{:.0f} samples/s\n",
        l.epoch, o.epochs, l.train_loss, 100 * l.train_acc, 100 * l.test_acc,
        seconds, double(batches * o.batch) / seconds);
    std::fflush(stdout);
    if (!o.checkpoint_dir.empty()) {
      Model ck = trainer->Checkpoint(
          {{"train.epoch", std::to_string(epoch + 1)}, {"train.arch", o.arch}});
      const std::string path =
          o.checkpoint_dir + "/epoch-" + std::to_string(epoch + 1) + ".blst";
      BALLAST_RETURN_IF_ERROR(SaveModel(ck, path));
    }
  }
  if (!o.out.empty()) {
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
        {"input_mean", fmt::format("{:.9g}", norm.mean)},
        {"input_std", fmt::format("{:.9g}", norm.std)}};
    BALLAST_RETURN_IF_ERROR(SaveModel(m, o.out));
    fmt::print("saved {}\n", o.out);
  }
  fmt::print("total train time {:.2f} s\n", total_seconds);
  if (o.profile) PrintProfile(trainer->Profile());
  if (!o.log.empty()) {
    std::string csv =
        "epoch,seconds,train_loss,train_accuracy,test_loss,test_accuracy\n";
    for (const EpochLog& l : logs) {
      csv += fmt::format("{},{:.4f},{:.6f},{:.6f},{:.6f},{:.6f}\n", l.epoch,
                         l.seconds, l.train_loss, l.train_acc, l.test_loss,
                         l.test_acc);
    }
    BALLAST_RETURN_IF_ERROR(WriteText(o.log, csv));
  }
  if (!o.json.empty()) {
    nlohmann::json j;
    j["epochs"] = nlohmann::json::array();
    for (const EpochLog& l : logs) {
      j["epochs"].push_back({{"epoch", l.epoch},
                             {"seconds", l.seconds},
                             {"train_loss", l.train_loss},
                             {"test_accuracy", l.test_acc}});
    }
    j["total_seconds"] = total_seconds;
    const std::string s = j.dump(2) + "\n";
    BALLAST_RETURN_IF_ERROR(WriteText(o.json, s));
  }
  if (!o.plot.empty()) {
    std::vector<double> loss, acc;
    for (const EpochLog& l : logs)
      loss.push_back(l.train_loss), acc.push_back(l.test_acc);
    const std::string svg = LinePlotSvg(
        "training: " + o.arch, "epoch",
        {{"train loss", loss, false}, {"test accuracy", acc, true}});
    BALLAST_RETURN_IF_ERROR(WriteText(o.plot, svg));
  }
  return Status::Ok();
}

}  // namespace

void RegisterTrain(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<TrainCli>();
  CLI::App* c = app.add_subcommand("train",
                                   "Train an MLP of StandardBlocks (Linear -> "
                                   "BatchNorm1d -> ReLU -> Dropout)");
  c->add_option("--data", o->data,
                "fashion-mnist (Debian's dataset-fashion-mnist), an IDX "
                "directory, or a CSV "
                "file (last 10% of rows held out for test)")
      ->capture_default_str();
  c->add_option("--label-column", o->label_column,
                "CSV: column holding the class label")
      ->capture_default_str();
  c->add_option("--arch", o->arch, "Widths, input to output")
      ->capture_default_str();
  c->add_option("--dropout", o->dropout, "Dropout probability")
      ->capture_default_str();
  c->add_flag("--no-bn", o->no_bn,
              "Blocks without BatchNorm (Linear -> ReLU -> Dropout)");
  c->add_option("--init", o->init,
                "default | kaiming | xavier | orthogonal | zeros | normal:STD")
      ->capture_default_str();
  c->add_option("--epochs", o->epochs, "Epochs")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  c->add_option("--batch", o->batch, "Batch size")
      ->check(CLI::Range(2, 65536))
      ->capture_default_str();
  c->add_option("--optimizer", o->optimizer, "sgd | adam | adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  c->add_option("--lr", o->lr, "Learning rate")->capture_default_str();
  c->add_option("--momentum", o->momentum, "SGD momentum")
      ->capture_default_str();
  c->add_option("--weight-decay", o->weight_decay, "Weight decay")
      ->capture_default_str();
  c->add_option("--schedule", o->schedule,
                "constant | step | cosine (per epoch)")
      ->check(CLI::IsMember({"constant", "step", "cosine"}))
      ->capture_default_str();
  c->add_option("--warmup", o->warmup, "Epochs of linear warmup")
      ->capture_default_str();
  c->add_option("--clip-grad-norm", o->clip,
                "Clip the global gradient norm (0: off)")
      ->capture_default_str();
  c->add_option("--label-smoothing", o->label_smoothing,
                "Cross-entropy label smoothing")
      ->capture_default_str();
  c->add_option("--seed", o->seed, "Seed (weights, shuffling, dropout)")
      ->capture_default_str();
  c->add_option("--threads", o->threads, "Threads")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  c->add_flag("--profile", o->profile,
              "Time each layer's forward, backward and update; print the "
              "mean per step at the end");
  c->add_flag("--no-fuse", o->no_fuse,
              "Train with separate Linear/BN/ReLU/Dropout kernels");
  c->add_option("--out", o->out, "Save the trained model (.blst)");
  c->add_option("--checkpoint-dir", o->checkpoint_dir,
                "Write a checkpoint every epoch");
  c->add_option("--resume", o->resume, "Resume from a checkpoint");
  c->add_option("--log", o->log, "Per-epoch CSV log");
  c->add_option("--plot", o->plot, "SVG plot of loss and accuracy per epoch");
  c->add_option("--json", o->json, "Per-epoch JSON summary");
  c->callback([o, &exit_code] {
    Status s = RunTrain(*o);
    if (!s.ok()) {
      std::fprintf(stderr, "ballast train: %s\n", s.ToString().c_str());
      exit_code = kExitFailure;
    }
  });
}

}  // namespace ballast::cli
