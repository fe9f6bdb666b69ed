// `ballast train --data`: Fashion-MNIST, a directory of IDX files or a CSV
// file (its last 10% of rows held out for test), with the notes and warnings
// a CSV's layout calls for (a header skipped, a header naming another label
// column, test rows missing classes).
#ifndef BALLAST_TOOLS_TRAIN_DATA_H_
#define BALLAST_TOOLS_TRAIN_DATA_H_

#include "ballast/data.h"
#include "ballast/status.h"
#include "tools/train_cli.h"

namespace ballast::cli {

// --data: "fashion-mnist", a directory of IDX files, or any regular file,
// read as CSV with --label-column.
Result<TrainTest> LoadData(const TrainCli& o);

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_TRAIN_DATA_H_
