#include "tools/array_io.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <vector>

#include "ballast/format.h"
#include "runtime/number_text.h"

using ballast::internal::CellNumber;
using ballast::internal::ParseFloatCell;
using ballast::internal::StripUtf8Bom;

namespace ballast::cli {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Result<std::string> Slurp(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) &&
      !std::filesystem::is_regular_file(path, ec)) {
    return InvalidArgument("'" + path + "' is not a regular file");
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return NotFound("cannot open '" + path + "': " + std::strerror(errno));
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Result<Array2D> ParseNpy(const std::string& path, const std::string& data) {
  const std::string where = "'" + path + "'";
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) {
    return InvalidArgument(where + " is not a NumPy .npy file (bad magic)");
  }
  const uint8_t major = uint8_t(data[6]);
  size_t header_len = 0, header_at = 0;
  if (major == 1) {
    header_len = uint8_t(data[8]) | (size_t(uint8_t(data[9])) << 8);
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) return InvalidArgument(where + ": truncated header");
    uint32_t n;
    std::memcpy(&n, data.data() + 8, 4);
    header_len = n;
    header_at = 12;
  } else {
    return InvalidArgument(where + ": unsupported .npy version " +
                           std::to_string(major));
  }
  if (header_at + header_len > data.size()) {
    return InvalidArgument(where + ": truncated .npy header");
  }
  const std::string header = data.substr(header_at, header_len);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex(R"('descr'\s*:\s*'([^']*)')"))) {
    return InvalidArgument(where + ": .npy header has no descr");
  }
  const std::string descr = m[1];
  if (descr != "<f4" && descr != "=f4") {
    return InvalidArgument(where + ": dtype '" + descr +
                           "' is not little-endian float32 ('<f4'); convert "
                           "with x.astype(numpy.float32)");
  }
  if (std::regex_search(header, std::regex(R"('fortran_order'\s*:\s*True)"))) {
    return InvalidArgument(where +
                           ": Fortran-ordered array; save it in C "
                           "order (numpy.ascontiguousarray)");
  }
  if (!std::regex_search(header, m,
                         std::regex(R"('shape'\s*:\s*\(([^)]*)\))"))) {
    return InvalidArgument(where + ": .npy header has no shape");
  }
  std::vector<int64_t> dims;
  std::stringstream shape(m[1].str());
  std::string item;
  while (std::getline(shape, item, ',')) {
    item = std::regex_replace(item, std::regex(R"(\s|L)"), "");
    if (item.empty()) continue;
    int64_t v = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc() || v < 0) {
      return InvalidArgument(where + ": bad shape entry '" + item + "'");
    }
    dims.push_back(v);
  }
  Array2D a;
  if (dims.size() == 1) {
    a.rows = 1, a.cols = dims[0];
  } else if (dims.size() == 2) {
    a.rows = dims[0], a.cols = dims[1];
  } else {
    return InvalidArgument(
        where + ": array has " + std::to_string(dims.size()) +
        " dimensions; expected 1 (one row) or 2 [rows, features]");
  }
  const size_t body = header_at + header_len;
  if (a.cols != 0 &&
      a.rows > int64_t((data.size() - body) / 4 / size_t(a.cols))) {
    return InvalidArgument(where + ": shape [" + std::to_string(a.rows) + ", " +
                           std::to_string(a.cols) +
                           "] needs more data than the "
                           "file holds (truncated?)");
  }
  const size_t n = size_t(a.rows * a.cols);
  if (data.size() - body != n * 4) {
    return InvalidArgument(where + ": holds " +
                           std::to_string(data.size() - body) +
                           " data bytes; shape needs " + std::to_string(n * 4));
  }
  a.values.resize(n);
  if (n) std::memcpy(a.values.data(), data.data() + body, n * 4);
  return a;
}

Result<Array2D> ParseCsv(const std::string& path, const std::string& data) {
  Array2D a;
  std::stringstream lines(data);
  std::string line;
  int64_t line_no = 0;
  std::string header;  // a first line taken as a header
  while (std::getline(lines, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1) StripUtf8Bom(line);
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<std::string> cells;
    std::vector<float> values;
    std::vector<CellNumber> parsed;
    for (size_t pos = 0; pos <= line.size();) {
      size_t end = line.find(',', pos);
      if (end == std::string::npos) end = line.size();
      std::string cell = line.substr(pos, end - pos);
      const size_t b = cell.find_first_not_of(" \t"),
                   e = cell.find_last_not_of(" \t");
      cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
      values.push_back(0);
      parsed.push_back(ParseFloatCell(cells.back(), &values.back()));
      pos = end + 1;
    }
    // A first line without a single number is a header (column names), as
    // `ballast train` reads it.
    if (a.rows == 0 && a.cols == 0 &&
        std::ranges::none_of(
            parsed, [](CellNumber p) { return p == CellNumber::kOk; })) {
      a.cols = int64_t(cells.size());
      header = line;
      continue;
    }
    const int64_t cols = int64_t(cells.size());
    for (int64_t c = 0; c < cols; ++c) {
      const std::string at = "'" + path + "' line " + std::to_string(line_no) +
                             " column " + std::to_string(c + 1) + ": '" +
                             cells[size_t(c)] + "'";
      switch (parsed[size_t(c)]) {
        case CellNumber::kOk:
          break;
        case CellNumber::kNotANumber:
          return InvalidArgument(at + " is not a number");
        case CellNumber::kOutOfFloatRange:
          return InvalidArgument(at + " is outside float's range (±3.4e38)");
      }
    }
    a.values.insert(a.values.end(), values.begin(), values.end());
    if (a.rows == 0 && a.cols == 0) {
      a.cols = cols;
    } else if (cols != a.cols) {
      return InvalidArgument(
          "'" + path + "' line " + std::to_string(line_no) + ": " +
          std::to_string(cols) + " values, expected " + std::to_string(a.cols) +
          (a.rows == 0 ? " like the header" : " like the first row"));
    }
    ++a.rows;
  }
  if (a.rows == 0) {
    return InvalidArgument(
        "'" + path + "' holds no rows" +
        (header.empty()
             ? std::string()
             : " (its one line holds no number, so it was taken "
               "for a header: '" +
                   header.substr(0, 40) + (header.size() > 40 ? "...'" : "'") +
                   "; cells are numbers separated by ',')"));
  }
  return a;
}

}  // namespace

Result<Array2D> ReadArray(const std::string& path) {
  const bool npy = EndsWith(path, ".npy"), csv = EndsWith(path, ".csv");
  if (!npy && !csv) {
    return InvalidArgument("'" + path +
                           "': unknown input type; use .npy or .csv");
  }
  BALLAST_ASSIGN_OR_RETURN(const std::string data, Slurp(path));
  return npy ? ParseNpy(path, data) : ParseCsv(path, data);
}

std::string ToCsv(const Array2D& a) {
  std::string out;
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t c = 0; c < a.cols; ++c) {
      out += fmt::format("{}{:.9g}", c ? "," : "",
                         a.values[size_t(r * a.cols + c)]);
    }
    out += "\n";
  }
  return out;
}

Status WriteArray(const std::string& path, const Array2D& a) {
  std::string bytes;
  if (EndsWith(path, ".npy")) {
    std::string header = fmt::format(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        a.rows, a.cols);
    // Pad so that magic + version + length + header is a multiple of 64.
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    bytes = std::string("\x93NUMPY\x01\x00", 8);
    bytes += char(header.size() & 0xff);
    bytes += char(header.size() >> 8);
    bytes += header;
    bytes.append(reinterpret_cast<const char*>(a.values.data()),
                 a.values.size() * 4);
  } else if (EndsWith(path, ".csv")) {
    bytes = ToCsv(a);
  } else {
    return InvalidArgument("'" + path +
                           "': unknown output type; use .npy or .csv");
  }
  return WriteText(path, bytes);
}

Status WriteText(const std::string& path, const std::string& text) {
  return WriteFileAtomically(
      path, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

Status CheckWritable(const std::string& flag, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    return InvalidArgument(flag + " '" + path + "' is a directory");
  }
  const fs::path parent = fs::path(path).parent_path();
  const std::string dir = parent.empty() ? "." : parent.string();
  if (!fs::is_directory(dir, ec)) {
    return NotFound(flag + " '" + path + "': directory '" + dir +
                    "' does not exist");
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return IoError(flag + " '" + path + "': directory '" + dir +
                   "' is not writable");
  }
  // access() trusts the mode bits, which root bypasses; a file system may
  // still refuse (procfs, an NFS export that squashes root, an immutable
  // directory). So create a file there, as the atomic write will, and
  // remove it.
  // (Joined with fmt: GCC 12 misreads "." + string once inlined here,
  // -Wrestrict on aarch64.)
  const std::string probe =
      (parent.empty() ? fs::path(".") : parent) /
      fmt::format(".{}.probe-{}", fs::path(path).filename().string(),
                  ::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    return IoError(flag + " '" + path +
                   "': cannot create a file in directory '" + dir +
                   "': " + std::strerror(errno));
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return Status::Ok();
}

}  // namespace ballast::cli
