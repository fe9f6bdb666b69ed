// `ballast info`, `ballast run` and `ballast fold`: the model-file commands.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <variant>

#include "ballast/format.h"
#include "ballast/rng.h"
#include "ballast/session.h"
#include "runtime/number_text.h"
#include "tools/array_io.h"
#include "tools/commands.h"

namespace ballast::cli {
namespace {

void Fail(const char* cmd, const Status& s, int& exit_code) {
  std::fprintf(stderr, "ballast %s: %s\n", cmd, s.ToString().c_str());
  exit_code = kExitFailure;
}

// --- info ------------------------------------------------------------------

struct InfoOptions {
  std::string path;
  bool verify = false;
};

Status RunInfo(const InfoOptions& o) {
  LoadOptions lo;
  lo.verify_tensor_checksums = o.verify;
  BALLAST_ASSIGN_OR_RETURN(const Model m, LoadModel(o.path, lo));
  const Registry& reg = Registry::Builtin();
  BALLAST_ASSIGN_OR_RETURN(const std::vector<int64_t> widths,
                           m.graph.Validate(reg));
  fmt::print("{}: ballast model file, format {}.{}, {}\n", o.path,
             m.version_major, m.version_minor,
             m.checkpoint ? "training checkpoint" : "inference model");
  fmt::print("input features {}, output features {}, {} parameters\n",
             m.graph.input_features, widths.back(), m.graph.ParameterCount());
  if (!m.graph.metadata.empty()) fmt::print("metadata:\n");
  for (const auto& [k, v] : m.graph.metadata) fmt::print("  {} = {}\n", k, v);
  fmt::print("nodes:\n");
  for (size_t i = 0; i < m.graph.nodes.size(); ++i) {
    const Node& n = m.graph.nodes[i];
    std::string attrs, params;
    for (const auto& [k, v] : n.attrs) {
      attrs +=
          fmt::format("{}{}={}", attrs.empty() ? "" : ", ", k, AttrText(v));
    }
    for (const auto& [k, t] : n.params) {
      params += fmt::format("{}{} {}", params.empty() ? "" : ", ", k,
                            t.shape().ToString());
    }
    fmt::print("  {:<22} {:<12} -> {:>6}  ({}){}\n", n.name, n.op, widths[i],
               attrs, params.empty() ? "" : "  [" + params + "]");
  }
  for (const auto& [k, t] : m.extra) {
    fmt::print("  extra tensor {} {}\n", k, t.shape().ToString());
  }
  for (const std::string& w : m.warnings) fmt::print("warning: {}\n", w);
  fmt::print("checksums: header and sections OK; tensors {}\n",
             o.verify ? "OK (all verified)" : "not verified (use --verify)");
  return Status::Ok();
}

// --- run -------------------------------------------------------------------

struct RunOptions {
  std::string model, input, output, backend = "auto";
  int threads = 1;
  bool no_fuse = false, strict = false;
};

Status RunRun(const RunOptions& o) {
  LoadOptions lo;
  lo.strict = o.strict;
  // The output's type and place first: a long run then fails on nothing.
  if (!o.output.empty()) {
    if (!o.output.ends_with(".npy") && !o.output.ends_with(".csv")) {
      return InvalidArgument("--output '" + o.output +
                             "': unknown output type; use .npy or .csv");
    }
    BALLAST_RETURN_IF_ERROR(CheckWritable("--output", o.output));
  }
  BALLAST_ASSIGN_OR_RETURN(const Model m, LoadModel(o.model, lo));
  for (const std::string& w : m.warnings) {
    std::fprintf(stderr, "warning: %s\n", w.c_str());
  }
  BALLAST_ASSIGN_OR_RETURN(Array2D x, ReadArray(o.input));
  if (x.cols != m.graph.input_features) {
    return InvalidArgument("input '" + o.input + "' has " +
                           std::to_string(x.cols) +
                           " features per row; the "
                           "model expects " +
                           std::to_string(m.graph.input_features));
  }
  // (The session applies the input normalization the metadata holds.)
  SessionOptions so;
  so.threads = o.threads;
  BALLAST_ASSIGN_OR_RETURN(so.backend, ParseBackend(o.backend));
  so.fold_batchnorm = so.fuse = !o.no_fuse;
  // Rows are run in chunks of up to 1024, except through BatchNorm with
  // batch statistics, whose result depends on the whole batch.
  so.max_batch = std::clamp<int64_t>(x.rows, 1, 1024);
  for (const Node& n : m.graph.nodes) {
    if (n.op == "batchnorm1d" && !n.GetBool("track_running_stats", true)) {
      so.max_batch = std::max<int64_t>(x.rows, 1);
    }
  }
  BALLAST_ASSIGN_OR_RETURN(auto session, InferenceSession::Create(m.graph, so));
  Array2D y;
  y.rows = x.rows;
  y.cols = session->output_features();
  y.values.resize(size_t(y.rows * y.cols));
  BALLAST_RETURN_IF_ERROR(
      session->Run(x.values.data(), x.rows, y.values.data()));
  if (o.output.empty()) {
    std::fputs(ToCsv(y).c_str(), stdout);
    return Status::Ok();
  }
  return WriteArray(o.output, y);
}

// --- fold ------------------------------------------------------------------

struct FoldOptions {
  std::string in, out;
  int64_t rows = 64;
  uint64_t seed = 0;
};

Status RunFold(const FoldOptions& o) {
  BALLAST_ASSIGN_OR_RETURN(const Model m, LoadModel(o.in));
  BALLAST_ASSIGN_OR_RETURN(Graph folded, FoldBatchNorm(m.graph));
  // Compare on random input, both on the reference kernels without passes.
  SessionOptions so;
  so.backend = Backend::kRef;
  so.fold_batchnorm = so.fuse = so.drop_dropout = false;
  so.normalize_input = false;  // the same on both sides; kept in the output
  so.max_batch = o.rows;
  BALLAST_ASSIGN_OR_RETURN(auto before, InferenceSession::Create(m.graph, so));
  BALLAST_ASSIGN_OR_RETURN(auto after, InferenceSession::Create(folded, so));
  std::vector<float> x(size_t(o.rows * m.graph.input_features));
  Generator(o.seed).FillNormal(x, 0.0, 1.0);
  std::vector<float> y0(size_t(o.rows * before->output_features())),
      y1(y0.size());
  Status s0 = before->Run(x.data(), o.rows, y0.data());
  if (!s0.ok()) return s0;
  BALLAST_RETURN_IF_ERROR(after->Run(x.data(), o.rows, y1.data()));
  double max_abs = 0, max_rel = 0;
  for (size_t i = 0; i < y0.size(); ++i) {
    const double d = std::fabs(double(y0[i]) - y1[i]);
    max_abs = std::max(max_abs, d);
    max_rel = std::max(max_rel, d / std::max(1e-6, std::fabs(double(y0[i]))));
  }
  Model out = m;
  out.graph = folded;
  out.graph.metadata["folded_from"] = o.in;
  if (out.checkpoint) {
    // A folded network has no BatchNorm to train: the result is an
    // inference model, without the checkpoint's optimizer state.
    out.checkpoint = false;
    out.extra.clear();
    fmt::print("{} is a training checkpoint: its optimizer state is dropped\n",
               o.in);
  }
  BALLAST_RETURN_IF_ERROR(SaveModel(out, o.out));
  fmt::print("folded {} BatchNorm node(s): {} -> {} nodes; wrote {}\n",
             m.graph.nodes.size() - folded.nodes.size(), m.graph.nodes.size(),
             folded.nodes.size(), o.out);
  fmt::print(
      "largest deviation folded vs unfolded on {} random rows: "
      "{:.3g} absolute, {:.3g} relative\n",
      o.rows, max_abs, max_rel);
  return Status::Ok();
}

}  // namespace

void RegisterModelCommands(CLI::App& app, int& exit_code) {
  auto info = std::make_shared<InfoOptions>();
  CLI::App* ci = app.add_subcommand(
      "info", "Show a .blst file: version, metadata, nodes, shapes, checksums");
  ci->add_option("FILE", info->path, "Model file")->required();
  ci->add_flag("--verify", info->verify, "Verify every tensor's checksum");
  ci->callback([info, &exit_code] {
    Status s = RunInfo(*info);
    if (!s.ok()) Fail("info", s, exit_code);
  });

  auto run = std::make_shared<RunOptions>();
  CLI::App* cr =
      app.add_subcommand("run", "Run a model on rows from a .npy or .csv file");
  cr->add_option("MODEL", run->model, "Model file (.blst)")->required();
  cr->add_option("--input", run->input,
                 "Input rows: .npy (float32) or .csv (a first line without a "
                 "number is a header)")
      ->required();
  cr->add_option("--output", run->output,
                 "Output file (.npy or .csv); stdout as CSV when absent");
  cr->add_option("--threads", run->threads, "Threads")
      ->check(CLI::Range(1, kMaxThreads))
      ->capture_default_str();
  cr->add_option("--backend", run->backend, "auto | hwy | onednn | ref")
      ->check(CLI::IsMember({"auto", "hwy", "onednn", "ref"}))
      ->capture_default_str();
  cr->add_flag("--no-fuse", run->no_fuse,
               "Run Linear, BatchNorm and activations as separate kernels");
  cr->add_flag("--strict", run->strict, "Refuse weights holding NaN or Inf");
  cr->callback([run, &exit_code] {
    Status s = RunRun(*run);
    if (!s.ok()) Fail("run", s, exit_code);
  });

  auto fold = std::make_shared<FoldOptions>();
  CLI::App* cf = app.add_subcommand(
      "fold", "Fold BatchNorm into the preceding Linear layers and save");
  cf->add_option("IN", fold->in, "Input model")->required();
  cf->add_option("OUT", fold->out, "Output model")->required();
  cf->add_option("--rows", fold->rows, "Random rows for the deviation check")
      ->check(CLI::Range(2, 100000))
      ->capture_default_str();
  cf->add_option("--seed", fold->seed, "Seed of the random rows")
      ->capture_default_str();
  cf->callback([fold, &exit_code] {
    Status s = RunFold(*fold);
    if (!s.ok()) Fail("fold", s, exit_code);
  });
}

}  // namespace ballast::cli
