// The machine's memory, for refusing sizes before asking for them: an
// allocation past it would not fail cleanly (the kernel overcommits, a
// sanitizer's allocator aborts).
#ifndef BALLAST_RUNTIME_MEMORY_H_
#define BALLAST_RUNTIME_MEMORY_H_

#include <unistd.h>

#include <initializer_list>
#include <new>
#include <span>
#include <string>

#include "ballast/status.h"
#include "ballast/tensor.h"

namespace ballast::internal {

// Physical memory in bytes; 0 when unknown.
inline double MachineMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? double(pages) * double(page) : 0.0;
}

// A zero-filled float tensor of `dims`, or an error naming `what` when the
// shape is invalid, its bytes pass the machine's memory or the allocation
// fails.
inline Result<Tensor> ZerosWithinMemory(std::initializer_list<int64_t> dims,
                                        const std::string& what) {
  Result<Shape> shape =
      Shape::Make(std::span<const int64_t>(dims.begin(), dims.size()));
  if (!shape.ok()) return shape.status().WithContext(what + ": ");
  const double bytes = double(shape->numel()) * sizeof(float);
  const double memory = MachineMemoryBytes();
  const auto too_large = [&](const std::string& why) {
    return OutOfRange(what + ": shape " + shape->ToString() + " (" +
                      std::to_string(int64_t(bytes / (1 << 20))) + " MiB) " +
                      why);
  };
  if (memory > 0 && bytes > memory) {
    return too_large("is more than the machine's memory");
  }
  try {
    return Tensor::Zeros(*shape);
  } catch (const std::bad_alloc&) {
    return too_large("cannot be allocated");
  }
}

}  // namespace ballast::internal

#endif  // BALLAST_RUNTIME_MEMORY_H_
