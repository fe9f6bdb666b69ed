#include "tools/train_cli.h"

#include <sstream>

#include "runtime/number_text.h"

using ballast::internal::ParseWhole;

namespace ballast::cli {

Result<std::vector<int64_t>> ParseArch(const std::string& arch) {
  std::vector<int64_t> w;
  // Widths between dashes; a dash at either end or two in a row leave an
  // empty one (getline alone would drop a trailing one).
  std::stringstream ss(arch + "-");
  std::string item;
  while (std::getline(ss, item, '-')) {
    if (item.empty()) {
      return InvalidArgument("--arch '" + arch +
                             "': a width is missing (a dash at the start, at "
                             "the end or after another; expected e.g. "
                             "784-256-256-10)");
    }
    int64_t v = 0;
    if (!ParseWhole(item, &v) || v < 1) {
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

}  // namespace ballast::cli
