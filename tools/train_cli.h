// The flags of `ballast train`, shared by the command (train_cmd.cc) and the
// resumption of a checkpoint (train_resume.cc).
#ifndef BALLAST_TOOLS_TRAIN_CLI_H_
#define BALLAST_TOOLS_TRAIN_CLI_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "ballast/status.h"

namespace ballast::cli {

// --lr when it is not given: SGD's is the book's recipe's, Adam's (and
// AdamW's) torch.optim.Adam's default.
inline constexpr double kSgdLr = 0.05, kAdamLr = 1e-3;
// --weight-decay when it is not given: torch.optim.AdamW's default with
// adamw (without it AdamW is Adam), none with sgd and adam (torch's too).
inline constexpr double kAdamWDecay = 0.01;
// --batch's range.
inline constexpr int64_t kMinBatch = 2, kMaxBatch = 65536;
// --epochs' range.
inline constexpr int kMaxEpochs = 100000;
struct TrainCli {
  std::string data = "fashion-mnist", arch = "784-256-256-10", init = "default";
  std::string optimizer = "sgd", schedule = "constant", out, checkpoint_dir,
              resume, log, plot, json;
  double dropout = 0.5, lr = kSgdLr, momentum = 0.9, weight_decay = 0.0,
         label_smoothing = 0.0, clip = 0.0;
  bool no_bn = false, no_fuse = false, no_skip_zeros = false, profile = false;
  bool dense_dx = false;
  int epochs = 5, threads = 0, label_column = 0, warmup = 0;  // 0: default
  int step_size = 0;  // 0: a third of the epochs
  double gamma = 0.1;
  int64_t batch = 128;
  uint64_t seed = 0;
  // The flags given on the command line, and those taken from the --resume
  // checkpoint (TakeCheckpointFlags).
  std::set<std::string> given, recorded;
};

// --arch's widths, input to output ("784-256-256-10": 784, 256, 256, 10).
Result<std::vector<int64_t>> ParseArch(const std::string& arch);

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_TRAIN_CLI_H_
