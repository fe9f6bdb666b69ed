// What the `bench` subcommands share for their reports.
#ifndef BALLAST_TOOLS_BENCH_REPORT_H_
#define BALLAST_TOOLS_BENCH_REPORT_H_

#include <nlohmann/json.hpp>
#include <string>

#include "ballast/status.h"

namespace ballast::cli {

// Writes `out` to `path` when a path was given (--json), and says so.
Status WriteJsonIfAsked(const std::string& path, const nlohmann::json& out);

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_BENCH_REPORT_H_
