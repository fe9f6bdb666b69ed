#include "ballast/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

namespace ballast {

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
  }
  return "unknown";
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
  }
  return 0;
}

Shape::Shape(std::initializer_list<int64_t> dims) {
  // (Checking the values here would throw from the library's own literal
  // shapes of a file's attributes, which it compares with CheckShape.)
  if (dims.size() > size_t(kMaxRank)) {
    throw std::invalid_argument("Shape: " + std::to_string(dims.size()) +
                                " dimensions; tensors have at most " +
                                std::to_string(kMaxRank));
  }
  for (int64_t d : dims) dims_[size_t(rank_++)] = d;
}

Result<Shape> Shape::Make(std::span<const int64_t> dims) {
  if (dims.size() > size_t(kMaxRank)) {
    return InvalidArgument("shape has rank " + std::to_string(dims.size()) +
                           "; tensors have at most " +
                           std::to_string(kMaxRank) + " dimensions");
  }
  Shape s;
  int64_t numel = 1;
  for (int64_t d : dims) {
    if (d < 0) {
      return InvalidArgument("shape dimension " + std::to_string(s.rank_) +
                             " is " + std::to_string(d) +
                             "; dimensions must be >= 0");
    }
    // Refuse element counts whose byte size would overflow int64.
    if (d != 0 && numel > (int64_t{1} << 60) / d) {
      return InvalidArgument("shape dimension " + std::to_string(s.rank_) +
                             " = " + std::to_string(d) +
                             " makes the element count overflow");
    }
    numel *= d;
    s.dims_[size_t(s.rank_++)] = d;
  }
  return s;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[size_t(i)];
  return n;
}

std::string Shape::ToString() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims_[size_t(i)]);
  }
  return s + "]";
}

bool operator==(const Shape& a, const Shape& b) {
  if (a.rank_ != b.rank_) return false;
  for (int i = 0; i < a.rank_; ++i) {
    if (a.dims_[size_t(i)] != b.dims_[size_t(i)]) return false;
  }
  return true;
}

Tensor Tensor::Zeros(const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  size_t bytes = size_t(shape.numel()) * DTypeSize(dtype);
  // Round up so that the aligned allocation is valid and never zero-sized.
  size_t rounded =
      (bytes + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
  if (rounded == 0) rounded = kTensorAlignment;
  void* p = std::aligned_alloc(kTensorAlignment, rounded);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, rounded);
  t.storage_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  t.data_ = p;
  return t;
}

Tensor::Tensor(Tensor&& other) noexcept
    : storage_(std::move(other.storage_)),
      data_(std::exchange(other.data_, nullptr)),
      shape_(std::exchange(other.shape_, Shape())),
      dtype_(other.dtype_) {}

Tensor& Tensor::operator=(Tensor&& other) noexcept {
  if (this != &other) {
    storage_ = std::move(other.storage_);
    data_ = std::exchange(other.data_, nullptr);
    shape_ = std::exchange(other.shape_, Shape());
    dtype_ = other.dtype_;
  }
  return *this;
}

Tensor Tensor::Full(const Shape& shape, float value) {
  Tensor t = Zeros(shape);
  for (float& v : t.span()) v = value;
  return t;
}

Result<Tensor> Tensor::FromVector(const Shape& shape,
                                  std::span<const float> values) {
  if (int64_t(values.size()) != shape.numel()) {
    return InvalidArgument("tensor of shape " + shape.ToString() + " needs " +
                           std::to_string(shape.numel()) + " values, got " +
                           std::to_string(values.size()));
  }
  Tensor t = Zeros(shape);
  if (!values.empty()) {
    std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  }
  return t;
}

Tensor Tensor::Borrow(float* data, const Shape& shape) {
  Tensor t;
  t.data_ = data;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::View(float* data, const Shape& shape,
                    std::shared_ptr<void> owner) {
  Tensor t;
  t.data_ = data;
  t.shape_ = shape;
  t.storage_ = std::move(owner);
  return t;
}

Tensor Tensor::Clone() const {
  if (empty()) return Tensor();
  Tensor t = Zeros(shape_, dtype_);
  std::memcpy(t.data_, data_, nbytes());
  return t;
}

Result<Tensor> Tensor::Reshape(const Shape& shape) const {
  if (shape.numel() != shape_.numel()) {
    return InvalidArgument("cannot reshape " + shape_.ToString() + " (" +
                           std::to_string(shape_.numel()) + " elements) to " +
                           shape.ToString() + " (" +
                           std::to_string(shape.numel()) + " elements)");
  }
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Status Tensor::CheckShape(std::string_view what, const Shape& expected) const {
  if (shape_ == expected) return Status::Ok();
  return InvalidArgument(std::string(what) + ": shape " + shape_.ToString() +
                         " does not match expected " + expected.ToString());
}

Status Tensor::CheckRank(std::string_view what, int rank) const {
  if (shape_.rank() == rank) return Status::Ok();
  return InvalidArgument(std::string(what) + ": expected a " +
                         std::to_string(rank) + "-d tensor, got shape " +
                         shape_.ToString());
}

}  // namespace ballast
