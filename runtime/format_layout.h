// Constants of the .blst layout shared by the reader and the writer (see
// include/ballast/format.h for the byte layout).
#ifndef BALLAST_RUNTIME_FORMAT_LAYOUT_H_
#define BALLAST_RUNTIME_FORMAT_LAYOUT_H_

#include <cstddef>
#include <cstdint>

namespace ballast::format {

inline constexpr uint8_t kMagic[8] = {'B',  'L',  'S',  'T',
                                      '\r', '\n', 0x1a, '\n'};
inline constexpr size_t kHeaderSize = 128;
inline constexpr size_t kChecksummedHeaderBytes = 80;
inline constexpr size_t kDataAlignment = 64;
inline constexpr uint32_t kKnownFlags = 1u;  // kFlagCheckpoint

enum AttrTag : uint8_t {
  kAttrInt = 0,
  kAttrFloat = 1,
  kAttrBool = 2,
  kAttrString = 3
};

inline uint64_t AlignUp(uint64_t v) {
  return (v + kDataAlignment - 1) / kDataAlignment * kDataAlignment;
}

}  // namespace ballast::format

#endif  // BALLAST_RUNTIME_FORMAT_LAYOUT_H_
