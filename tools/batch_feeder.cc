#include "tools/batch_feeder.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace ballast::cli {
namespace {

// Bytes of the next batch gathered at a time in a step's idle moments (see
// StepSideWork): four rows of Fashion-MNIST, a microsecond or two. On two
// threads the step and the gather took 0.97 of the time of a step and then
// a two-thread gather (chunks of 50 steps alternated, medians; chunks of 1,
// 2, 8 and 16 rows 0.97-0.99).
constexpr int64_t kGatherChunkBytes = 4 * 784 * sizeof(float);
// Narrow rows: at most this many a chunk (each row of a shuffled batch is a
// miss of its own). A chunk is one row however wide the row is.
constexpr int64_t kGatherChunkMaxRows = 16;

}  // namespace

BatchFeeder::BatchFeeder(const Dataset& data, int64_t batch, int threads)
    : data_(data),
      batch_(batch),
      chunk_rows_(std::clamp<int64_t>(
          kGatherChunkBytes /
              std::max<int64_t>(1, data.features * int64_t(sizeof(float))),
          1, kGatherChunkMaxRows)),
      threads_(threads) {
  for (int i = 0; i < 2; ++i) {
    x_[i].resize(size_t(batch * data.features));
    labels_[i].resize(size_t(batch));
  }
}

Status BatchFeeder::SetOrder(std::vector<int64_t> order) {
  BALLAST_RETURN_IF_ERROR(CheckBatchRows(data_, order));
  order_ = std::move(order);
  return Status::Ok();
}

int64_t BatchFeeder::batches() const { return int64_t(order_.size()) / batch_; }

std::span<const int64_t> BatchFeeder::Rows(int64_t b) const {
  assert(b >= 0 && b < batches());
  return std::span<const int64_t>(order_).subspan(size_t(b * batch_),
                                                  size_t(batch_));
}

Status BatchFeeder::Load(int64_t b) {
  return GatherBatch(data_, Rows(b), x_[cur_].data(), labels_[cur_].data(),
                     threads_);
}

StepSideWork BatchFeeder::Next(int64_t b) {
  StepSideWork side;
  side.chunks = (batch_ + chunk_rows_ - 1) / chunk_rows_;
  side.run = [this, rows = Rows(b), next = 1 - cur_](int64_t c) {
    GatherBatchRows(data_, rows, c * chunk_rows_,
                    std::min(batch_, (c + 1) * chunk_rows_), x_[next].data(),
                    labels_[next].data());
  };
  return side;
}

}  // namespace ballast::cli
