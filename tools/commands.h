// Subcommands of the `ballast` CLI. Each Register* adds one subcommand to the
// app; its callback runs the command and sets the process exit code.
#ifndef BALLAST_TOOLS_COMMANDS_H_
#define BALLAST_TOOLS_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <string>

#include "ballast/graph.h"

namespace ballast::cli {

// Exit codes: 0 success, 1 a command failed (bad input, I/O, out of memory);
// a usage error exits with CLI11's code for it (above 100, see CLI::ExitCodes).
inline constexpr int kExitFailure = 1;

// An attribute value as text: true/false, %g for floats, strings as they
// are (quoted when `quote_strings`).
std::string AttrText(const AttrValue& v, bool quote_strings = false);

void RegisterDemo(CLI::App& app, int& exit_code);
void RegisterBench(CLI::App& app, int& exit_code);
// `bench step`, added to the `bench` subcommand by RegisterBench.
void RegisterBenchStep(CLI::App& bench, int& exit_code);
void RegisterOps(CLI::App& app, int& exit_code);
void RegisterModelCommands(CLI::App& app, int& exit_code);
void RegisterTrain(CLI::App& app, int& exit_code);
void RegisterDiagnose(CLI::App& app, int& exit_code);

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_COMMANDS_H_
