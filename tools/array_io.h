// Reading and writing 2-D float32 arrays as NumPy .npy (float32, C order)
// or CSV, chosen by the file extension, for `ballast run`; and the text
// files the other commands write.
#ifndef BALLAST_TOOLS_ARRAY_IO_H_
#define BALLAST_TOOLS_ARRAY_IO_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ballast/status.h"

namespace ballast::cli {

struct Array2D {
  int64_t rows = 0, cols = 0;
  std::vector<float> values;  // row-major
};

// .npy: float32 ('<f4'), C order, 1-D (one row) or 2-D. .csv: one row per
// line, comma-separated numbers. Errors name the file, line and column.
Result<Array2D> ReadArray(const std::string& path);
Status WriteArray(const std::string& path, const Array2D& a);
// CSV text of the array (for stdout).
std::string ToCsv(const Array2D& a);
// Writes text (JSON, CSV, SVG) atomically: temporary file, fsync, rename.
Status WriteText(const std::string& path, const std::string& text);
// Checks, before long work, that `path` (the value of option `flag`) can be
// written: its directory exists and takes a new file (one is created and
// removed), and it is not a directory.
// A run must not spend an hour and then fail to save.
Status CheckWritable(const std::string& flag, const std::string& path);

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_ARRAY_IO_H_
