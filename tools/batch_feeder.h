// The batches of an epoch as `ballast train` feeds them to Trainer::Step:
// rows in a shuffled order, each batch gathered into one of two buffers
// while the step before it reads the other, a few rows at a time in that
// step's idle moments (StepSideWork). `ballast bench step --gather` steps
// on batches fed the same way.
#ifndef BALLAST_TOOLS_BATCH_FEEDER_H_
#define BALLAST_TOOLS_BATCH_FEEDER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "ballast/data.h"
#include "ballast/status.h"
#include "ballast/trainer.h"
#include "ops/cache_aligned.h"

namespace ballast::cli {

class BatchFeeder {
 public:
  // Batches of `batch` rows of `data` (which must outlive the feeder),
  // gathered on `threads` when gathered outside a step.
  BatchFeeder(const Dataset& data, int64_t batch, int threads);
  // Not copied: the side work Next returns points into this feeder.
  BatchFeeder(const BatchFeeder&) = delete;
  BatchFeeder& operator=(const BatchFeeder&) = delete;

  // The epoch's order of rows (checked: an index outside the data is an
  // error naming it). Batch b is rows [b·batch, (b + 1)·batch) of it; the
  // last partial batch is dropped.
  Status SetOrder(std::vector<int64_t> order);
  int64_t batches() const;

  // Gathers batch b (in [0, batches())) now and makes it the current batch.
  Status Load(int64_t b);
  // Work that gathers batch b (in [0, batches())) into the other buffer,
  // for the step on the current batch to run in its idle moments; Swap()
  // after that step makes batch b the current one. (A step that leaves side
  // work undone runs it before it returns.) Valid until the next SetOrder.
  StepSideWork Next(int64_t b);
  void Swap() { cur_ = 1 - cur_; }

  // The current batch.
  const float* x() const { return x_[cur_].data(); }
  const int32_t* labels() const { return labels_[cur_].data(); }

 private:
  std::span<const int64_t> Rows(int64_t b) const;

  const Dataset& data_;
  int64_t batch_, chunk_rows_;
  int threads_;
  std::vector<int64_t> order_;
  ops::AlignedVector<float> x_[2];
  std::vector<int32_t> labels_[2];
  int cur_ = 0;
};

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_BATCH_FEEDER_H_
