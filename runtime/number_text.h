// Numbers in text cells (CSV), read as Python and NumPy write them.
#ifndef BALLAST_RUNTIME_NUMBER_TEXT_H_
#define BALLAST_RUNTIME_NUMBER_TEXT_H_

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace ballast::internal {

enum class CellNumber { kOk, kNotANumber, kOutOfFloatRange };

// Reads `cell` (already trimmed) as a double, a leading '+' allowed, and
// rounds it to float: a value below float's range becomes 0 (or a
// subnormal); one above it is kOutOfFloatRange. "nan" and "inf" read as
// themselves: the caller decides whether they are data.
inline CellNumber ParseFloatCell(std::string_view cell, float* out) {
  const bool plus = cell.size() > 1 && cell[0] == '+';
  const std::string_view text = cell.substr(plus ? 1 : 0);
  if (text.empty() || (plus && (text[0] == '+' || text[0] == '-'))) {
    return CellNumber::kNotANumber;
  }
  double v = 0;
  const auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), v);
  if (end != text.data() + text.size() ||
      (ec != std::errc() && ec != std::errc::result_out_of_range)) {
    return CellNumber::kNotANumber;
  }
  if (ec == std::errc::result_out_of_range) {
    // Beyond double's range: strtod tells overflow (±inf) from underflow.
    v = std::strtod(std::string(text).c_str(), nullptr);
    if (std::isinf(v)) return CellNumber::kOutOfFloatRange;
  }
  const float f = float(v);
  if (std::isinf(f) && !std::isinf(v)) return CellNumber::kOutOfFloatRange;
  *out = f;
  return CellNumber::kOk;
}

// Reads all of `text` as a number of type T (a double must be finite);
// false for anything else, a trailing character included.
template <typename T>
bool ParseWhole(std::string_view text, T* out) {
  T v{};
  const auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return false;
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(v)) return false;
  }
  *out = v;
  return true;
}

// Removes a UTF-8 byte order mark (Excel's "CSV UTF-8" writes one) from the
// start of a file's first line: it is no part of the first cell.
inline void StripUtf8Bom(std::string& first_line) {
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  if (first_line.starts_with(kBom)) first_line.erase(0, kBom.size());
}

// Whether `cell` is a name rather than a number with a typo: it does not
// start like a number ("label", not "3a" or "nan").
inline bool LooksLikeName(std::string_view cell) {
  double v = 0;
  const std::string_view text =
      !cell.empty() && cell[0] == '+' ? cell.substr(1) : cell;
  return !text.empty() &&
         std::from_chars(text.data(), text.data() + text.size(), v).ptr ==
             text.data();
}

}  // namespace ballast::internal

#endif  // BALLAST_RUNTIME_NUMBER_TEXT_H_
