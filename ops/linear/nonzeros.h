// The nonzeros of an activation matrix, by rows and by columns, for GEMMs
// that skip A's zero terms (GemmArgs::a_nonzeros). After ReLU and dropout a
// hidden layer's output is mostly zeros (three quarters of it in the
// trainer's Fashion-MNIST recipe); the next Linear's forward GEMM reads it
// by rows and its weight gradient by columns.
#ifndef BALLAST_OPS_LINEAR_NONZEROS_H_
#define BALLAST_OPS_LINEAR_NONZEROS_H_

#include <cstdint>
#include <vector>

namespace ballast::ops {

// Compressed sparse rows of a matrix A: row m holds A(m, index[t]) =
// value[t] for t in [start[m], start[m + 1]), index increasing. A NaN is a
// nonzero.
struct SparseRows {
  const int32_t* start = nullptr;  // rows + 1 entries
  const int32_t* index = nullptr;
  const float* value = nullptr;
  int64_t rows = 0, cols = 0;  // A's shape
};

class Nonzeros {
 public:
  // Indexes x [M, K] (row stride K): by rows (A = x) and by columns
  // (A = xᵀ), on `threads` (rows, then columns, split among them; the same
  // result on any number). Returns the fraction of nonzeros, or 1 for a matrix
  // of 2^31 elements or more, which it leaves unindexed (an empty 0 × 0 index,
  // which a GEMM refuses).
  double Index(const float* x, int64_t M, int64_t K, int threads = 1);
  // The same index from a bit mask of x's nonzeros (word-major, as the fused
  // block's pass mask: MaskWord in ops/block/block_kernels.h). The caller
  // vouches that x(m, k) is not ±0 exactly where bit (m, k) is set (a NaN
  // counts as not zero: it must be set), so that the result is Index's. The
  // rows are compressed a vector at a time (a thread's last few rows walked
  // by their set bits, so that no whole-vector store crosses into the next
  // thread's lists), and the columns' lists come from the mask transposed
  // 64 × 64 bits at a time, walked by their set bits: no scatter.
  double IndexFromMask(const float* x, const uint64_t* mask, int64_t M,
                       int64_t K, int threads = 1);
  // The fraction of nonzeros of x [M, K] alone: a vector pass, a fraction
  // of the cost of Index, to decide whether indexing pays.
  static double Density(const float* x, int64_t M, int64_t K);
  // The fraction of bits set in a word-major mask of M × K bits.
  static double MaskDensity(const uint64_t* mask, int64_t M, int64_t K);
  SparseRows rows() const {
    return {row_start_.data(), row_index_.data(), row_value_.data(), m_, k_};
  }
  SparseRows cols() const {
    return {col_start_.data(), col_index_.data(), col_value_.data(), k_, m_};
  }

 private:
  int64_t m_ = 0, k_ = 0;  // the indexed matrix's shape (0 × 0: none)
  std::vector<int32_t> row_start_, row_index_, col_start_, col_index_;
  std::vector<float> row_value_, col_value_;
  // Rows compressed in place (row m from m·K); per-thread column counts,
  // then (thread 0's) each column's next free slot.
  std::vector<int32_t> tmp_index_, scratch_;
  std::vector<float> tmp_value_;
  // IndexFromMask: the mask transposed, column k's rows in words
  // [k·row_words, (k + 1)·row_words) (64 rows a word).
  std::vector<uint64_t> col_bits_;

  // Sizes the index for M × K (false, and empty, when too large for 32-bit
  // positions).
  bool Reset(int64_t M, int64_t K);
};

}  // namespace ballast::ops

#endif  // BALLAST_OPS_LINEAR_NONZEROS_H_
