// Tensor: a dense, row-major array of up to 4 dimensions.
//
// Owning tensors allocate 64-byte aligned storage (zero-filled) that copies
// share, as torch.Tensor does; Clone() makes a deep copy. Borrowing tensors
// wrap memory the caller owns and must keep alive. Only float32 exists today;
// DType grows at the end.
#ifndef BALLAST_TENSOR_H_
#define BALLAST_TENSOR_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "ballast/status.h"

namespace ballast {

enum class DType : uint8_t { kF32 = 0 };

std::string_view DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

inline constexpr int kMaxRank = 4;
inline constexpr size_t kTensorAlignment = 64;

// Dimensions of a tensor: rank 0..4, each dimension >= 0.
class Shape {
 public:
  Shape() = default;  // rank 0: a scalar with one element
  // For shapes written in code: throws std::invalid_argument for more than
  // 4 dimensions (a literal's length, never data). The values are kept as
  // given, to be compared (CheckShape) or checked: Make() returns an error
  // for a negative dimension or an element count past 2^60.
  Shape(std::initializer_list<int64_t> dims);

  static Result<Shape> Make(std::span<const int64_t> dims);

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  int64_t numel() const;
  std::span<const int64_t> dims() const {
    return {dims_.data(), size_t(rank_)};
  }
  std::string ToString() const;  // "[64, 784]"

  friend bool operator==(const Shape& a, const Shape& b);

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

class Tensor {
 public:
  Tensor() = default;  // empty: no storage, rank 0, numel() == 0
  // Copies share the storage; a moved-from tensor is empty.
  Tensor(const Tensor&) = default;
  Tensor& operator=(const Tensor&) = default;
  Tensor(Tensor&& other) noexcept;
  Tensor& operator=(Tensor&& other) noexcept;

  // Owning, zero-filled, 64-byte aligned; throws std::bad_alloc when the
  // memory cannot be had.
  static Tensor Zeros(const Shape& shape, DType dtype = DType::kF32);
  // Owning, every element `value`.
  static Tensor Full(const Shape& shape, float value);
  // Owning copy of `values`; fails when the counts differ.
  static Result<Tensor> FromVector(const Shape& shape,
                                   std::span<const float> values);
  // Borrows `data` (not owned, must outlive every copy of the tensor).
  static Tensor Borrow(float* data, const Shape& shape);
  // Borrows `data` and keeps `owner` (e.g. a file mapping) alive for as
  // long as any copy of the tensor exists.
  static Tensor View(float* data, const Shape& shape,
                     std::shared_ptr<void> owner);

  bool empty() const { return data_ == nullptr; }
  // True when the tensor keeps its storage alive: owning tensors and Views
  // (whose owner is, e.g., a file mapping); false for Borrow.
  bool is_owning() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return empty() ? 0 : shape_.numel(); }
  size_t nbytes() const { return size_t(numel()) * DTypeSize(dtype_); }

  float* data() { return static_cast<float*>(data_); }
  const float* data() const { return static_cast<const float*>(data_); }
  std::span<float> span() { return {data(), size_t(numel())}; }
  std::span<const float> span() const { return {data(), size_t(numel())}; }

  // Deep copy into new owning storage.
  Tensor Clone() const;
  // Same storage, new shape with the same element count.
  Result<Tensor> Reshape(const Shape& shape) const;

  // OK when the shape is `expected`; otherwise an error such as
  // "linear 'fc1' weight: shape [256, 700] does not match expected [256, 784]".
  Status CheckShape(std::string_view what, const Shape& expected) const;
  // OK when rank() == rank; otherwise an error naming `what`.
  Status CheckRank(std::string_view what, int rank) const;

 private:
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::kF32;
};

}  // namespace ballast

#endif  // BALLAST_TENSOR_H_
