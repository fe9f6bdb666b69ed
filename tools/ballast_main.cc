// ballast: train, serve, inspect and benchmark dense networks on the CPU.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "ballast/version.h"
#include "ops/onednn/onednn_block.h"
#include "ops/roof/fma_roof.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"ballast " BALLAST_VERSION_STRING
               " - a CPU runtime for Linear -> BatchNorm1d -> ReLU -> Dropout "
               "networks"};
  app.set_version_flag("--version", [] {
    return fmt::format(
        "ballast {}\nSIMD target: {} (supported here: {})\noneDNN backend: "
        "{}",
        BALLAST_VERSION_STRING, ballast::ops::CurrentSimdTarget(),
        ballast::ops::SupportedSimdTargets(),
        ballast::ops::onednn::Available() ? "available" : "not built");
  });
  app.require_subcommand(1);
  int exit_code = 0;
  ballast::cli::RegisterDemo(app, exit_code);
  ballast::cli::RegisterBench(app, exit_code);
  ballast::cli::RegisterOps(app, exit_code);
  ballast::cli::RegisterModelCommands(app, exit_code);
  ballast::cli::RegisterTrain(app, exit_code);
  ballast::cli::RegisterDiagnose(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}
