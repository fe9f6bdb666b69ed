#include "tools/checkpoint_dir.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <vector>

#include "runtime/number_text.h"

using ballast::internal::ParseWhole;

namespace ballast::cli {
namespace fs = std::filesystem;

std::string CheckpointPath(const std::string& dir, int epoch) {
  return dir + "/epoch-" + std::to_string(epoch) + ".blst";
}

CheckpointDir::~CheckpointDir() {
  // Innermost first; a directory that is not empty (or gone) stays.
  std::error_code ec;
  for (const fs::path& d : made_) fs::remove(d, ec);
}

Status CheckpointDir::Make(const std::string& dir) {
  // One level at a time, as given (".." and symlinks resolve as the system
  // resolves them), noting each directory this call made.
  std::error_code ec;
  fs::path prefix;
  for (const fs::path& part : fs::path(dir)) {
    prefix /= part;
    if (part.empty() || part == "." || part == ".." || prefix == "/") continue;
    if (fs::create_directory(prefix, ec)) {
      made_.insert(made_.begin(), prefix);
    } else if (ec) {
      break;
    }
  }
  if (ec || !fs::is_directory(dir)) {
    return IoError("--checkpoint-dir '" + dir + "' cannot be created: " +
                   (ec ? ec.message() : "a file of that name exists"));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return IoError("--checkpoint-dir '" + dir + "' is not writable");
  }
  return Status::Ok();
}

Status CheckNoOtherRun(const std::string& dir, const std::string& resume,
                       const std::string& run_dir, int resumed_epoch,
                       int epochs) {
  std::error_code ec;
  if (!resume.empty()) {
    // The resumed checkpoint's directory (a symlink's target's), or the one
    // its run wrote checkpoints to: the same run's.
    const fs::path own = fs::canonical(resume, ec).parent_path();
    for (const fs::path& d : {own, fs::path(run_dir)}) {
      std::error_code eq_ec;
      if (!d.empty() && fs::equivalent(d, dir, eq_ec)) return Status::Ok();
    }
  }
  std::vector<int> found;
  fs::directory_iterator it(dir, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    int epoch = 0;
    if (!it->is_regular_file(type_ec) || !name.starts_with("epoch-") ||
        !name.ends_with(".blst") ||
        !ParseWhole(std::string_view(name).substr(6, name.size() - 11),
                    &epoch) ||
        epoch < 1) {
      continue;
    }
    if (resume.empty() || (epoch > resumed_epoch && epoch <= epochs)) {
      found.push_back(epoch);
    }
  }
  if (ec) {
    return IoError("--checkpoint-dir '" + dir +
                   "' cannot be listed: " + ec.message());
  }
  if (found.empty()) return Status::Ok();
  std::sort(found.begin(), found.end());
  const std::string which = found.size() == 1
                                ? fmt::format("epoch-{}.blst", found.front())
                                : fmt::format("epoch-{}.blst to epoch-{}.blst",
                                              found.front(), found.back());
  return FailedPrecondition(fmt::format(
      "--checkpoint-dir '{}' already holds checkpoints of another run ({}), "
      "which this run would overwrite: {}",
      dir, which,
      resume.empty()
          ? fmt::format("give another directory, remove them, or continue "
                        "that run with --resume {}",
                        CheckpointPath(dir, found.back()))
          : fmt::format("give another directory{}",
                        run_dir.empty() ? std::string()
                                        : " or the run's own, " + run_dir)));
}

}  // namespace ballast::cli
