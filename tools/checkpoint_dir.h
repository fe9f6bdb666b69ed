// `ballast train --checkpoint-dir`: the directory, made for the run and
// removed again if the run fails before it trains, and the checkpoints of an
// earlier run in it, which a run must not overwrite.
#ifndef BALLAST_TOOLS_CHECKPOINT_DIR_H_
#define BALLAST_TOOLS_CHECKPOINT_DIR_H_

#include <filesystem>
#include <string>
#include <vector>

#include "ballast/status.h"

namespace ballast::cli {

// DIR/epoch-E.blst: the checkpoint after epoch E (from 1).
std::string CheckpointPath(const std::string& dir, int epoch);

// Makes --checkpoint-dir (and its missing parents) and checks it is
// writable. Until Keep(), the destructor removes the directories it made if
// they are still empty: a run refused before training leaves nothing behind.
class CheckpointDir {
 public:
  CheckpointDir() = default;
  CheckpointDir(const CheckpointDir&) = delete;
  CheckpointDir& operator=(const CheckpointDir&) = delete;
  ~CheckpointDir();

  Status Make(const std::string& dir);
  void Keep() { made_.clear(); }

 private:
  std::vector<std::filesystem::path> made_;  // innermost first
};

// Refuses a checkpoint directory that holds a checkpoint this run would
// overwrite: for a new run (`resume` empty) any epoch-E.blst; for a resumed
// run, those past its checkpoint's `resumed_epoch` up to `epochs`, unless
// the directory is the resumed checkpoint's own or `run_dir`, the one its
// run wrote checkpoints to (the same run's later checkpoints, which
// continuing it writes again).
Status CheckNoOtherRun(const std::string& dir, const std::string& resume,
                       const std::string& run_dir, int resumed_epoch,
                       int epochs);

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_CHECKPOINT_DIR_H_
