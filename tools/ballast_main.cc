// ballast: train, serve, inspect and benchmark dense networks on the CPU.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>

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
  } catch (const std::bad_alloc&) {
    // The commands check sizes they can know in advance; this is the net
    // under the rest (a model or flag asking for more memory than there is).
    std::fprintf(stderr,
                 "ballast: out of memory: the command needs more memory than "
                 "the machine can give (check the model's widths and the "
                 "batch)\n");
    return ballast::cli::kExitFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ballast: internal error: %s\n", e.what());
    return ballast::cli::kExitFailure;
  }
  // Output that did not reach stdout (a full disk, a closed pipe) is a
  // failure, not a success.
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "ballast: cannot write to standard output: %s\n",
                 std::strerror(errno));
    return ballast::cli::kExitFailure;
  }
  return exit_code;
}
