#include "tools/train_resume.h"

#include <fmt/core.h>
#include <xxhash.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "runtime/number_text.h"

using ballast::internal::ParseWhole;

namespace ballast::cli {
namespace {

// The widths of the graph's Linear layers, input to output ("784-256-10").
std::string GraphArch(const Graph& g) {
  std::string arch;
  for (const Node& n : g.nodes) {
    if (n.op != "linear") continue;
    const Shape& w = n.Param("weight").shape();  // [out, in]
    if (w.rank() != 2) continue;
    if (arch.empty()) arch = std::to_string(w[1]);
    arch += '-';
    arch += std::to_string(w[0]);
  }
  return arch;
}

// A flag of the run that its checkpoints record (metadata `key`), so that
// --resume continues the run without it given again.
struct RecordedFlag {
  const char* key;
  const char* flag;
  std::variant<std::string*, int*, int64_t*, uint64_t*, double*, bool*> value;
  // A checkpoint without the key (written before the key was) then needs
  // the flag given; otherwise the flag's value, given or default, stands.
  bool required = false;
  // Given with another value, the flag's wins: the data may have moved (its
  // rows' digest is checked), outputs may go elsewhere, and a run may stop
  // sooner or go on longer (not under cosine, whose T_max its epochs are).
  bool may_change = false;
  // A path: recorded absolute, and compared so.
  bool path = false;
  // Recorded only when the run has it (an --out); a checkpoint without it
  // is unremarkable.
  bool optional = false;
  // Recorded only under --schedule step, where it applies.
  bool step_only = false;
  // A string's values (any when empty).
  std::vector<std::string> allowed = {};
};

// The flags a checkpoint records, in the order they are taken (--schedule
// before the flags whose meaning it decides).
std::vector<RecordedFlag> RecordedFlags(TrainCli& o) {
  return {
      {.key = "train.data",
       .flag = "--data",
       .value = &o.data,
       .may_change = true,
       .path = true},
      {.key = "train.label_column",
       .flag = "--label-column",
       .value = &o.label_column},
      {.key = "train.batch",
       .flag = "--batch",
       .value = &o.batch,
       .required = true},
      {.key = "trainer.rng_seed",
       .flag = "--seed",
       .value = &o.seed,
       .required = true},
      {.key = "trainer.optimizer",
       .flag = "--optimizer",
       .value = &o.optimizer,
       .allowed = {"sgd", "adam", "adamw"}},
      {.key = "train.lr", .flag = "--lr", .value = &o.lr},
      {.key = "train.momentum", .flag = "--momentum", .value = &o.momentum},
      {.key = "train.weight_decay",
       .flag = "--weight-decay",
       .value = &o.weight_decay},
      {.key = "train.schedule",
       .flag = "--schedule",
       .value = &o.schedule,
       .allowed = {"constant", "step", "cosine"}},
      {.key = "train.step_size",
       .flag = "--step-size",
       .value = &o.step_size,
       .step_only = true},
      {.key = "train.gamma",
       .flag = "--gamma",
       .value = &o.gamma,
       .step_only = true},
      {.key = "train.warmup", .flag = "--warmup", .value = &o.warmup},
      {.key = "train.epochs",
       .flag = "--epochs",
       .value = &o.epochs,
       .may_change = true},
      {.key = "train.clip_grad_norm",
       .flag = "--clip-grad-norm",
       .value = &o.clip},
      {.key = "train.label_smoothing",
       .flag = "--label-smoothing",
       .value = &o.label_smoothing},
      {.key = "train.no_fuse", .flag = "--no-fuse", .value = &o.no_fuse},
      {.key = "train.dense_dx", .flag = "--dense-dx", .value = &o.dense_dx},
      {.key = "train.out",
       .flag = "--out",
       .value = &o.out,
       .may_change = true,
       .path = true,
       .optional = true},
      {.key = "train.checkpoint_dir",
       .flag = "--checkpoint-dir",
       .value = &o.checkpoint_dir,
       .may_change = true,
       .path = true},
  };
}

// Whether `r` has no place in the checkpoints of a run under `o` (so that
// one without it is unremarkable).
bool NotRecorded(const RecordedFlag& r, const TrainCli& o) {
  return r.step_only && o.schedule != "step";
}

// A recorded value as metadata text: numbers as the shortest text that
// reads back as the same value, switches as 0 or 1.
template <typename T>
std::string RecordedText(const T& v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? "1" : "0";
  } else {
    return fmt::format("{}", v);
  }
}

template <typename T>
bool ParseRecorded(const std::string& text, T* out) {
  if constexpr (std::is_same_v<T, std::string>) {
    *out = text;
    return !text.empty();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (text != "0" && text != "1") return false;
    *out = text == "1";
    return true;
  } else {
    return ParseWhole(text, out);
  }
}

// `path` made absolute (as it stands), so that a resume from another
// directory finds it; "" and fashion-mnist stay.
std::string AbsolutePath(const std::string& path) {
  if (path.empty() || path == "fashion-mnist") return path;
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

// Whether a flag's given value is the recorded one (a path as recorded:
// absolute).
template <typename T>
bool SameValue(const RecordedFlag& r, const T& recorded, const T& given) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (r.path) return AbsolutePath(given) == recorded;
  }
  return given == recorded;
}

// `s` single-quoted for a POSIX shell.
std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

std::map<std::string, std::string> RecordedMetadata(TrainCli o,
                                                    const LrSchedule& s) {
  o.step_size = s.step_size;
  std::map<std::string, std::string> m;
  for (const RecordedFlag& r : RecordedFlags(o)) {
    // (The Trainer writes its own keys.)
    if (std::string_view(r.key).starts_with("trainer.") || NotRecorded(r, o))
      continue;
    std::string text =
        std::visit([](auto* v) { return RecordedText(*v); }, r.value);
    if (r.path) text = AbsolutePath(text);
    if (!text.empty()) m[r.key] = text;  // (no such output)
  }
  return m;
}

Status TakeCheckpointFlags(const Model& ck, TrainCli& o) {
  const std::string where = "--resume '" + o.resume + "'";
  if (!ck.checkpoint) {
    return InvalidArgument(where +
                           " is an inference model, not a training checkpoint "
                           "(resume from one --checkpoint-dir saved)");
  }
  if (o.given.count("--init")) {
    return InvalidArgument(
        "--init has no effect with --resume (the weights "
        "come from '" +
        o.resume + "')");
  }
  const std::string arch = GraphArch(ck.graph);
  if (o.given.count("--arch")) {
    BALLAST_ASSIGN_OR_RETURN(const std::vector<int64_t> widths,
                             ParseArch(o.arch));
    std::string want;
    for (int64_t w : widths) {
      if (!want.empty()) want += '-';
      want += std::to_string(w);
    }
    if (arch != want) {
      return InvalidArgument(where + " holds a " + arch +
                             " network but --arch is " + o.arch +
                             " (leave --arch out to continue it)");
    }
  }
  o.arch = arch;
  bool bn = false;
  double dropout = 0;
  for (const Node& n : ck.graph.nodes) {
    bn = bn || n.op == "batchnorm1d";
    if (n.op == "dropout") dropout = n.GetFloat("p", 0.5);
  }
  // (--no-bn is the only flag of the two: it mismatches a network with BN.)
  if (o.given.count("--no-bn") && bn) {
    return InvalidArgument(where +
                           " holds a network with BatchNorm: drop --no-bn to "
                           "continue it");
  }
  o.no_bn = !bn;
  if (o.given.count("--dropout") && dropout != o.dropout) {
    return InvalidArgument(where + fmt::format(" was trained with --dropout {}"
                                               ", not {}",
                                               dropout, o.dropout));
  }
  o.dropout = dropout;
  // (--step-size 0 asks for the default, which the checkpoint resolved.)
  if (o.step_size == 0) o.given.erase("--step-size");
  std::vector<std::string> unrecorded;  // as given or default
  for (const RecordedFlag& r : RecordedFlags(o)) {
    const auto it = ck.graph.metadata.find(r.key);
    const bool given = o.given.count(r.flag) > 0;
    if (it == ck.graph.metadata.end()) {
      if (given || r.optional || NotRecorded(r, o)) continue;
      if (!r.required) {
        unrecorded.push_back(r.flag);
        continue;
      }
      return InvalidArgument(where + " does not record its " + r.flag +
                             " (metadata " + r.key + "): pass the " + r.flag +
                             " it was trained with");
    }
    Status s = std::visit(
        [&](auto* value) -> Status {
          std::remove_pointer_t<decltype(value)> v{};
          if (!ParseRecorded(it->second, &v) ||
              (!r.allowed.empty() &&
               std::find(r.allowed.begin(), r.allowed.end(), it->second) ==
                   r.allowed.end())) {
            return DataLoss(where + ": metadata " + r.key + " = '" +
                            it->second + "' is not a " + r.flag + " value");
          }
          if (!given || SameValue(r, v, *value)) {
            *value = v;
            o.recorded.insert(r.flag);
            return Status::Ok();
          }
          const bool cosine_epochs =
              std::string_view(r.flag) == "--epochs" && o.schedule == "cosine";
          if (r.may_change && !cosine_epochs) {
            fmt::print("{} {} (the checkpoint's run had {})\n", r.flag,
                       RecordedText(*value), it->second);
            return Status::Ok();
          }
          std::string trained;
          if constexpr (std::is_same_v<decltype(v), bool>) {
            // (A switch given "=false" differs from a recorded true.)
            trained = (v ? "with " : "without ") + std::string(r.flag) +
                      (v ? " (give it, or leave it out, to continue the run)"
                         : " (leave it out to continue the run)");
          } else {
            trained = "with " + std::string(r.flag) + " " + it->second +
                      ", not " + RecordedText(*value) +
                      (cosine_epochs ? " (the cosine schedule anneals over "
                                       "the run's epochs)"
                                     : " (pass the same value, or leave the "
                                       "flag out, to continue the run)");
          }
          return InvalidArgument(where + " was trained " + trained);
        },
        r.value);
    BALLAST_RETURN_IF_ERROR(s);
  }
  // A run cut shorter than the checkpoint's does not replace the model the
  // run's --out holds (or will).
  const auto epochs_key = ck.graph.metadata.find("train.epochs");
  int run_epochs = 0;
  if (o.recorded.count("--out") && epochs_key != ck.graph.metadata.end() &&
      ParseWhole(epochs_key->second, &run_epochs) && o.epochs < run_epochs) {
    fmt::print(
        "--out {} is left alone: it is for the run's {} epochs (give --out "
        "to save this shorter one)\n",
        o.out, run_epochs);
    o.out.clear();
    o.recorded.erase("--out");
  }
  std::string outputs;
  const std::pair<const char*, const std::string*> taken_outputs[] = {
      {"--out", &o.out}, {"--checkpoint-dir", &o.checkpoint_dir}};
  for (const auto& [flag, path] : taken_outputs) {
    if (!o.recorded.count(flag) || o.given.count(flag)) continue;
    outputs += fmt::format("{}{} {}", outputs.empty() ? "" : ", ", flag, *path);
  }
  if (!outputs.empty()) fmt::print("the run's outputs: {}\n", outputs);
  if (!unrecorded.empty()) {
    std::string names;
    for (const std::string& f : unrecorded)
      names += (names.empty() ? "" : ", ") + f;
    std::fprintf(stderr,
                 "ballast train: note: %s predates the recording of %s: "
                 "they are as given or their defaults; give the run's values "
                 "to continue it\n",
                 where.c_str(), names.c_str());
  }
  return Status::Ok();
}

Status CheckResumedRows(const Model& ck, const TrainCli& o,
                        const std::string& digest, const std::string& mean,
                        const std::string& std) {
  const std::string other = "--data '" + o.data +
                            "' is not the data of the run --resume '" +
                            o.resume + "' continues: ";
  const auto& meta = ck.graph.metadata;
  const auto run_digest = meta.find("train.data_digest");
  if (run_digest != meta.end()) {
    if (run_digest->second == digest) return Status::Ok();
    return InvalidArgument(other +
                           "its rows (features and labels, train and test) "
                           "have the XXH3 digest " +
                           digest + ", the run's had " + run_digest->second);
  }
  const auto run_mean = meta.find("input_mean"),
             run_std = meta.find("input_std");
  if (run_mean == meta.end() || run_std == meta.end() ||
      (run_mean->second == mean && run_std->second == std)) {
    return Status::Ok();
  }
  return InvalidArgument(other + "its training rows have mean " + mean +
                         " and standard deviation " + std + ", the run's had " +
                         run_mean->second + " and " + run_std->second);
}

std::string DataDigest(const TrainTest& d) {
  const std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(
      XXH3_createState(), XXH3_freeState);
  XXH3_64bits_reset(state.get());
  for (const Dataset* set : {&d.train, &d.test}) {
    XXH3_64bits_update(state.get(), set->x.data(),
                       set->x.size() * sizeof(float));
    XXH3_64bits_update(state.get(), set->labels.data(),
                       set->labels.size() * sizeof(int32_t));
  }
  return fmt::format("{:016x}", XXH3_64bits_digest(state.get()));
}

std::string ContinueCommand(const TrainCli& o, const std::string& checkpoint) {
  std::string cmd = "ballast train --resume " + ShellQuote(checkpoint);
  if (checkpoint != o.resume) return cmd;
  const std::pair<const char*, std::string> changed[] = {
      {"--data", o.data},
      {"--epochs", std::to_string(o.epochs)},
      {"--out", o.out},
      {"--checkpoint-dir", o.checkpoint_dir}};
  for (const auto& [flag, value] : changed) {
    if (o.given.count(flag))
      cmd += fmt::format(" {} {}", flag, ShellQuote(value));
  }
  return cmd;
}

}  // namespace ballast::cli
