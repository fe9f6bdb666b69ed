// `ballast train --resume`: the run's flags that its checkpoints record, and
// their taking back from a checkpoint.
#ifndef BALLAST_TOOLS_TRAIN_RESUME_H_
#define BALLAST_TOOLS_TRAIN_RESUME_H_

#include <map>
#include <string>

#include "ballast/data.h"
#include "ballast/format.h"
#include "ballast/schedule.h"
#include "ballast/status.h"
#include "tools/train_cli.h"

namespace ballast::cli {

// The training flags a checkpoint fixes, from its graph and metadata: its
// network (--arch, BatchNorm, dropout) and the recorded flags: the row order
// of each epoch (--batch, --seed), the optimizer, the rates, the loss, the
// outputs. A flag given with another value is an error, as the run would not
// continue the checkpoint's (except those that may change: --data, --out,
// --checkpoint-dir, --epochs); not given, it takes the checkpoint's value
// and joins o.recorded.
Status TakeCheckpointFlags(const Model& ck, TrainCli& o);

// The metadata of the run's recorded flags (--step-size resolved, paths
// absolute), for its checkpoints. (The seed and the optimizer the Trainer
// records itself.)
std::map<std::string, std::string> RecordedMetadata(TrainCli o,
                                                    const LrSchedule& s);

// Whether the rows read for a resumed run (their DataDigest, and the
// normalization's mean and standard deviation as the metadata writes them)
// are those of the checkpoint's run: the same digest, or in a checkpoint
// that predates train.data_digest the same statistics.
Status CheckResumedRows(const Model& ck, const TrainCli& o,
                        const std::string& digest, const std::string& mean,
                        const std::string& std);

// The XXH3-64 digest of the rows as read (features, then labels, of the
// training and then the test rows), in hex: a resumed run must see the rows
// its checkpoint's run saw.
std::string DataDigest(const TrainTest& d);

// The command that continues an interrupted run from `checkpoint`. The run's
// own checkpoints record its flags; the one it resumed from lacks those this
// run changed, which the command then gives.
std::string ContinueCommand(const TrainCli& o, const std::string& checkpoint);

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_TRAIN_RESUME_H_
