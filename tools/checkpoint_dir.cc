#include "tools/checkpoint_dir.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "runtime/number_text.h"

namespace ballast::cli {
namespace fs = std::filesystem;

std::string CheckpointPath(const std::string& dir, int epoch) {
  return dir + "/epoch-" + std::to_string(epoch) + ".blst";
}

CheckpointDir::~CheckpointDir() {
  std::error_code ec;
  for (const std::string& d : made_) {
    if (!fs::remove(d, ec)) break;  // not empty (or gone): keep the rest
  }
}

Status CheckpointDir::Make(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> missing;
  for (fs::path p = fs::absolute(dir, ec).lexically_normal();
       !ec && !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
    if (p.has_filename()) missing.push_back(p.string());
    if (p == p.parent_path()) break;
  }
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    return IoError("--checkpoint-dir '" + dir + "' cannot be created: " +
                   (ec ? ec.message() : "a file of that name exists"));
  }
  made_ = std::move(missing);
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return IoError("--checkpoint-dir '" + dir + "' is not writable");
  }
  return Status::Ok();
}

Status CheckNoOtherRun(const std::string& dir, const std::string& resume,
                       int resumed_epoch, int epochs) {
  std::error_code ec;
  if (!resume.empty()) {
    const fs::path own = fs::path(resume).parent_path();
    if (fs::equivalent(own.empty() ? "." : own, dir, ec)) return Status::Ok();
  }
  std::vector<int> found;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    std::error_code type_ec;
    if (!e.is_regular_file(type_ec)) continue;
    int epoch = 0;
    if (!name.starts_with("epoch-") || !name.ends_with(".blst") ||
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
      "which this run would overwrite: give another directory{}",
      dir, which,
      resume.empty() ? fmt::format(", or continue that run with --resume {}",
                                   CheckpointPath(dir, found.back()))
                     : std::string()));
}

}  // namespace ballast::cli
