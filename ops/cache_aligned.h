// std::vector storage on 64-byte (cache-line) boundaries, for the buffers
// threads split by columns: a row of 256 floats then splits at a line
// boundary, and no line holds elements of two threads (malloc's 16-byte
// alignment leaves one shared line per row, which the two cores then pass
// back and forth).
#ifndef BALLAST_OPS_CACHE_ALIGNED_H_
#define BALLAST_OPS_CACHE_ALIGNED_H_

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace ballast::ops {

template <class T>
struct CacheAlignedAllocator {
  using value_type = T;
  static constexpr size_t kAlignment = 64;

  CacheAlignedAllocator() = default;
  template <class U>
  explicit CacheAlignedAllocator(const CacheAlignedAllocator<U>&) {}

  T* allocate(size_t n) {
    // aligned_alloc wants a multiple of the alignment, and never zero.
    const size_t bytes =
        (n * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, bytes ? bytes : kAlignment);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const CacheAlignedAllocator<U>&) const {
    return true;
  }
};

template <class T>
using AlignedVector = std::vector<T, CacheAlignedAllocator<T>>;

}  // namespace ballast::ops

#endif  // BALLAST_OPS_CACHE_ALIGNED_H_
