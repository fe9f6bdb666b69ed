// `ballast diagnose`: watch activations and gradients vanish or explode with
// depth, and BatchNorm restore them.
#include <fmt/core.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ballast/diagnose.h"
#include "ballast/format.h"
#include "ballast/session.h"
#include "tools/array_io.h"
#include "tools/commands.h"
#include "tools/svg_plot.h"

namespace ballast::cli {
namespace {

struct DiagnoseCli {
  DiagnoseOptions o;
  double gain = 0;  // 0: default gain
  int every = 0;    // 0: about 10 rows
  bool compare = false;
  std::string json, plot;
};

std::string ConfigName(const DiagnoseOptions& o) {
  return fmt::format("{}{} + {}{}", o.init,
                     o.gain ? fmt::format(" (gain {:.3g})", *o.gain) : "",
                     o.act, o.batchnorm ? " + bn" : "");
}

std::string Num(double v) {
  if (std::isnan(v)) return "n/a";
  return std::isfinite(v) ? fmt::format("{:.3e}", v) : "overflow";
}

nlohmann::json ToJson(const Diagnosis& d) {
  nlohmann::json j;
  j["config"] = {{"depth", d.options.depth}, {"width", d.options.width},
                 {"batch", d.options.batch}, {"init", d.options.init},
                 {"act", d.options.act},     {"bn", d.options.batchnorm},
                 {"seed", d.options.seed}};
  if (d.options.gain) j["config"]["gain"] = *d.options.gain;
  j["layers"] = nlohmann::json::array();
  for (const LayerStats& s : d.layers) {
    auto v = [](double x) {
      return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
    };
    j["layers"].push_back({{"layer", s.layer},
                           {"act_mean", v(s.act_mean)},
                           {"act_std", v(s.act_std)},
                           {"grad_std", v(s.grad_std)},
                           {"weight_grad_std", v(s.weight_grad_std)},
                           {"dead_frac", s.dead_frac}});
  }
  j["verdict"] = VerdictName(d.verdict);
  j["act_ratio"] = std::isfinite(d.act_ratio) ? nlohmann::json(d.act_ratio)
                                              : nlohmann::json(nullptr);
  if (d.first_nonfinite_layer)
    j["first_nonfinite_layer"] = d.first_nonfinite_layer;
  return j;
}

Status Write(const std::string& path, const std::string& text) {
  return WriteFileAtomically(
      path, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

Status RunSingle(const DiagnoseCli& c) {
  BALLAST_ASSIGN_OR_RETURN(const Diagnosis d, Diagnose(c.o));
  const int every = c.every > 0 ? c.every : std::max(1, c.o.depth / 10);
  fmt::print("{} layers of width {}, batch {}: {}\n\n", c.o.depth, c.o.width,
             c.o.batch, ConfigName(c.o));
  fmt::print("{:>5} {:>11} {:>11} {:>9} {:>11} {:>11}\n", "layer", "act mean",
             "act std", "dead", "grad std", "dW std");
  for (const LayerStats& s : d.layers) {
    if (s.layer != 1 && s.layer % every != 0 && s.layer != c.o.depth) continue;
    fmt::print("{:>5} {:>11} {:>11} {:>8.1f}% {:>11} {:>11}\n", s.layer,
               Num(s.act_mean), Num(s.act_std), 100 * s.dead_frac,
               Num(s.grad_std), Num(s.weight_grad_std));
  }
  fmt::print(
      "\nverdict: {} — {} (activation std last/first = {}; gradient std at the "
      "input of layer 1 / of layer {} = {})\n",
      VerdictName(d.verdict), d.explanation, Num(d.act_ratio), c.o.depth,
      Num(d.grad_ratio));
  if (!c.json.empty())
    BALLAST_RETURN_IF_ERROR(Write(c.json, ToJson(d).dump(2) + "\n"));
  if (!c.plot.empty()) {
    std::vector<double> std_by_layer;
    for (const LayerStats& s : d.layers) std_by_layer.push_back(s.act_std);
    BALLAST_RETURN_IF_ERROR(Write(
        c.plot, LinePlotSvg("activation std per layer (log scale)", "layer",
                            {{ConfigName(c.o), std_by_layer, false, true}})));
  }
  return Status::Ok();
}

Status RunCompare(const DiagnoseCli& c) {
  struct Config {
    std::string init, act;
    std::optional<double> gain;
  };
  const std::vector<Config> grid = {
      {"zeros", "relu", {}},         {"normal:0.01", "relu", {}},
      {"normal:1", "relu", {}},      {"default", "relu", {}},
      {"xavier", "relu", {}},        {"kaiming", "relu", {}},
      {"orthogonal", "relu", {}},    {"xavier", "tanh", {}},
      {"xavier", "tanh", 5.0 / 3.0}, {"kaiming", "tanh", {}},
      {"normal:1", "tanh", {}}};
  fmt::print(
      "{} layers of width {}, batch {}\n\n{:<32} {:<10} {:>12} {:<10} {:>12}\n",
      c.o.depth, c.o.width, c.o.batch, "init + activation", "no BN",
      "last/first", "with BN", "last/first");
  nlohmann::json all = nlohmann::json::array();
  std::vector<PlotSeries> series;
  for (const Config& g : grid) {
    std::string row;
    std::vector<std::string> cells;
    for (bool bn : {false, true}) {
      DiagnoseOptions o = c.o;
      o.init = g.init, o.act = g.act, o.gain = g.gain, o.batchnorm = bn;
      BALLAST_ASSIGN_OR_RETURN(const Diagnosis d, Diagnose(o));
      cells.push_back(fmt::format("{:<10} {:>12}", VerdictName(d.verdict),
                                  Num(d.act_ratio)));
      all.push_back(ToJson(d));
      std::vector<double> std_by_layer;
      for (const LayerStats& s : d.layers) std_by_layer.push_back(s.act_std);
      series.push_back({ConfigName(o), std_by_layer, false, true});
    }
    DiagnoseOptions name = c.o;
    name.init = g.init, name.act = g.act, name.gain = g.gain,
    name.batchnorm = false;
    fmt::print("{:<32} {} {}\n", ConfigName(name), cells[0], cells[1]);
    std::fflush(stdout);
  }
  if (!c.json.empty())
    BALLAST_RETURN_IF_ERROR(Write(c.json, all.dump(2) + "\n"));
  if (!c.plot.empty()) {
    BALLAST_RETURN_IF_ERROR(Write(
        c.plot,
        LinePlotSvg("activation std per layer (log scale)", "layer", series)));
  }
  return Status::Ok();
}

}  // namespace

void RegisterDiagnose(CLI::App& app, int& exit_code) {
  auto c = std::make_shared<DiagnoseCli>();
  CLI::App* cmd =
      app.add_subcommand("diagnose",
                         "Watch activations and gradients vanish or explode "
                         "with depth, and BatchNorm restore them");
  cmd->add_option("--depth", c->o.depth, "Layers")->capture_default_str();
  cmd->add_option("--width", c->o.width, "Units per layer")
      ->capture_default_str();
  cmd->add_option("--batch", c->o.batch, "Rows of standard-normal input")
      ->capture_default_str();
  cmd->add_option("--init", c->o.init,
                  "zeros | normal:STD | uniform:A | xavier (xavier_normal) | "
                  "kaiming (kaiming_normal, fan_in) | default (torch's Linear "
                  "init) | orthogonal")
      ->capture_default_str();
  cmd->add_option("--gain", c->gain, "Gain for xavier, kaiming and orthogonal");
  cmd->add_option("--act", c->o.act,
                  "relu | tanh | sigmoid | leaky_relu:A | identity")
      ->capture_default_str();
  cmd->add_flag("--bn", c->o.batchnorm,
                "BatchNorm1d (batch statistics) after every Linear");
  cmd->add_option("--seed", c->o.seed, "Seed")->capture_default_str();
  cmd->add_option("--threads", c->o.threads, "Threads")
      ->check(CLI::Range(1, kMaxThreads))
      ->capture_default_str();
  cmd->add_option("--every", c->every,
                  "Print every K-th layer (default: depth / 10, at least 1; "
                  "the first and last always)");
  cmd->add_option("--json", c->json, "Write the per-layer statistics as JSON");
  cmd->add_option("--plot", c->plot,
                  "SVG of the activation std per layer (log scale)");
  cmd->add_flag("--compare", c->compare,
                "Run the grid init × activation × BN, one table (its own "
                "inits, activations and BN: not with --init, --act, --bn or "
                "--gain)");
  cmd->callback([c, cmd, &exit_code] {
    if (cmd->count("--gain")) c->o.gain = c->gain;
    Status s = Status::Ok();
    if (c->compare) {
      for (const char* flag : {"--init", "--act", "--bn", "--gain"}) {
        if (cmd->count(flag) && s.ok()) {
          s = InvalidArgument(std::string(flag) +
                              " sets one configuration; --compare runs its "
                              "own grid of them");
        }
      }
    }
    if (s.ok() && !c->json.empty()) s = CheckWritable("--json", c->json);
    if (s.ok() && !c->plot.empty()) s = CheckWritable("--plot", c->plot);
    if (s.ok()) s = c->compare ? RunCompare(*c) : RunSingle(*c);
    if (!s.ok()) {
      std::fprintf(stderr, "ballast diagnose: %s\n", s.ToString().c_str());
      exit_code = kExitFailure;
    }
  });
}

}  // namespace ballast::cli
