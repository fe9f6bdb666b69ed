// `ballast ops`: the registered ops, their attributes and the backends that
// can run them on this CPU.
#include <fmt/core.h>

#include <cstdio>
#include <set>
#include <string>
#include <variant>

#include "ballast/registry.h"
#include "ops/onednn/onednn_block.h"
#include "ops/roof/fma_roof.h"
#include "tools/commands.h"

namespace ballast::cli {
namespace {

bool BackendUsable(const std::string& backend) {
  return backend != "onednn" || ops::onednn::Available();
}

void PrintOps() {
  const Registry& reg = Registry::Builtin();
  fmt::print("SIMD target (hwy backend): {} (supported here: {})\n",
             ops::CurrentSimdTarget(), ops::SupportedSimdTargets());
  fmt::print("oneDNN backend: {}\n\n",
             ops::onednn::Available() ? "available" : "not built");
  for (const std::string& name : reg.OpNames()) {
    const OpSchema* op = reg.FindOp(name);
    std::string backends;
    for (const KernelSpec& k : reg.Kernels(name)) {
      backends += (backends.empty() ? "" : ", ") + k.backend +
                  (BackendUsable(k.backend) ? "" : " (not built)");
    }
    fmt::print("{}: {}\n  backends (priority order): {}\n", name, op->doc,
               backends);
    for (const ParamSpec& p : op->params) {
      fmt::print("  param {}{}\n", p.name, p.optional ? " (optional)" : "");
    }
    for (const AttrSpec& a : op->attrs) {
      fmt::print("  attr  {} : {} = {}  {}\n", a.name, AttrTypeName(a.type),
                 AttrText(a.default_value, /*quote_strings=*/true), a.doc);
    }
    fmt::print("\n");
  }
}

}  // namespace

std::string AttrText(const AttrValue& v, bool quote_strings) {
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) return x ? "true" : "false";
        if constexpr (std::is_same_v<T, std::string>) {
          return quote_strings ? "\"" + x + "\"" : x;
        }
        if constexpr (std::is_same_v<T, double>) return fmt::format("{:g}", x);
        if constexpr (std::is_same_v<T, int64_t>) return std::to_string(x);
      },
      v);
}

void RegisterOps(CLI::App& app, int& exit_code) {
  CLI::App* cmd = app.add_subcommand(
      "ops", "List the registered ops, their attributes and backends");
  cmd->callback([&exit_code] {
    PrintOps();
    exit_code = 0;
  });
}

}  // namespace ballast::cli
