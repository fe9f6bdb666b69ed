// Little-endian byte writing and bounds-checked reading for the .blst
// format. Every Reader call checks the bytes left first; a failure carries
// the section and field being read.
#ifndef BALLAST_RUNTIME_BYTE_IO_H_
#define BALLAST_RUNTIME_BYTE_IO_H_

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "ballast/status.h"

namespace ballast::io {

class Writer {
 public:
  void U8(uint8_t v) { bytes_.push_back(v); }
  void U16(uint16_t v) { Raw(&v, 2); }
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void I64(int64_t v) { Raw(&v, 8); }
  void F64(double v) { Raw(&v, 8); }
  void Str(const std::string& s) {
    U32(uint32_t(s.size()));
    Raw(s.data(), s.size());
  }
  void Raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;  // little-endian hosts only (x86, AArch64)
};

class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, std::string section)
      : bytes_(bytes), section_(std::move(section)) {}

  size_t remaining() const { return bytes_.size() - pos_; }
  size_t position() const { return pos_; }

  Status U8(uint8_t& v, const char* what) { return Raw(&v, 1, what); }
  Status U16(uint16_t& v, const char* what) { return Raw(&v, 2, what); }
  Status U32(uint32_t& v, const char* what) { return Raw(&v, 4, what); }
  Status U64(uint64_t& v, const char* what) { return Raw(&v, 8, what); }
  Status I64(int64_t& v, const char* what) { return Raw(&v, 8, what); }
  Status F64(double& v, const char* what) { return Raw(&v, 8, what); }
  Status Str(std::string& s, const char* what) {
    uint32_t n = 0;
    BALLAST_RETURN_IF_ERROR(U32(n, what));
    if (n > remaining()) return Short(what, n);
    s.assign(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return Status::Ok();
  }
  // A count of records each at least `min_record` bytes long: refuses
  // counts the remaining bytes cannot hold (no giant allocations).
  Status Count(uint32_t& n, size_t min_record, const char* what) {
    BALLAST_RETURN_IF_ERROR(U32(n, what));
    if (uint64_t(n) * min_record > remaining()) {
      return DataLoss(section_ + ": " + what + " = " + std::to_string(n) +
                      " needs at least " +
                      std::to_string(uint64_t(n) * min_record) +
                      " bytes, only " + std::to_string(remaining()) + " left");
    }
    return Status::Ok();
  }
  Status Raw(void* out, size_t n, const char* what) {
    if (n > remaining()) return Short(what, n);
    std::memcpy(out, bytes_.data() + pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  Status ExpectEnd() const {
    if (remaining() == 0) return Status::Ok();
    return DataLoss(section_ + ": " + std::to_string(remaining()) +
                    " unexpected bytes after the last record");
  }

 private:
  Status Short(const char* what, size_t need) const {
    return DataLoss(section_ + ": truncated while reading " + what +
                    " at byte " + std::to_string(pos_) + " (needs " +
                    std::to_string(need) + ", " + std::to_string(remaining()) +
                    " left)");
  }
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
  std::string section_;
};

}  // namespace ballast::io

#endif  // BALLAST_RUNTIME_BYTE_IO_H_
