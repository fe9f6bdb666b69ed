// Training data: IDX files (the MNIST format, gzip or plain) and CSV, held
// as float rows and int labels, with seeded shuffling and normalization.
#ifndef BALLAST_DATA_H_
#define BALLAST_DATA_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ballast/status.h"

namespace ballast {

struct Dataset {
  int64_t rows = 0, features = 0;
  std::vector<float> x;         // [rows, features]
  std::vector<int32_t> labels;  // [rows]
  int32_t classes = 0;          // 1 + the largest label
  std::string header;           // CSV: the first line, if taken as a header
};

// IDX images (u8, [n, h, w] or [n, d]) and labels (u8, [n]); ".gz" files are
// decompressed. Pixel values are scaled to [0, 1]. Errors name the file.
Result<Dataset> ReadIdx(const std::string& images_path,
                        const std::string& labels_path);

// CSV with one row per line; `label_column` (0-based; negative counts from
// the end) holds integer class labels. Every other cell must be a finite
// number (an error names the line and column). A first line whose label cell
// is not a number, or that holds no number at all, is a header and skipped
// (kept in `header`, so that a caller can say so). A UTF-8 byte order mark
// before the first line is skipped.
Result<Dataset> ReadCsv(const std::string& path, int label_column = 0);

// Fashion-MNIST (or MNIST) from a directory holding
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. "fashion-mnist" means
// Debian's /usr/share/datasets/fashion-mnist (package dataset-fashion-mnist),
// or instead the directory the environment variable BALLAST_FASHION_MNIST_DIR
// names when it is set.
// A missing file is an error naming its path (and for "fashion-mnist" the
// package).
struct TrainTest {
  Dataset train, test;
};
Result<TrainTest> LoadIdxDirectory(const std::string& dir);

// Mean and standard deviation over every value of the training rows (one
// scalar each, as the book's recipe does; 0 and 1 for no values, std 1 for
// values all alike), and x ← (x − mean)/std: an error, changing nothing,
// for a mean that is not finite or a std that is not finite and positive.
struct Normalization {
  double mean = 0.0, std = 1.0;
};
Normalization ComputeNormalization(const Dataset& d);
Status ApplyNormalization(Dataset& d, const Normalization& n);

// Copies the examples `rows` (indices into d) into x [rows.size(), features]
// and labels [rows.size()], on `threads` threads: the batch a training step
// reads. An index outside [0, d.rows) is an error naming it.
Status GatherBatch(const Dataset& d, std::span<const int64_t> rows, float* x,
                   int32_t* labels, int threads = 1);
// GatherBatch in pieces: CheckBatchRows once, then GatherBatchRows for
// [begin, end) ranges of the batch in any order (on any thread), for a copy
// spread over a training step's idle moments (StepSideWork).
Status CheckBatchRows(const Dataset& d, std::span<const int64_t> rows);
void GatherBatchRows(const Dataset& d, std::span<const int64_t> rows,
                     int64_t begin, int64_t end, float* x, int32_t* labels);

// A permutation of [0, n) fixed by (seed, epoch): the same on every run and
// thread count, so a run resumed at an epoch boundary sees the same order.
std::vector<int64_t> EpochOrder(int64_t n, uint64_t seed,
                                int64_t epoch);  // n <= 0: empty

}  // namespace ballast

#endif  // BALLAST_DATA_H_
