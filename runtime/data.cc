#include "ballast/data.h"

#include <sys/mman.h>
#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string_view>

#include "ballast/rng.h"
#include "ops/tasks.h"
#include "runtime/number_text.h"

namespace ballast {
using internal::CellNumber;
using internal::LooksLikeName;
using internal::ParseFloatCell;
using internal::StripUtf8Bom;

namespace {

// Reserves n floats and asks the kernel to back them with transparent huge
// pages, where it allows them (THP in "madvise" mode, Debian's default).
// The batch gather reads rows at random from the whole data set (188 MB for
// Fashion-MNIST): on 4 KiB pages nearly every row costs a TLB miss and a page
// walk, two levels deep in a virtual machine. The advice is only a hint: a
// kernel without THP ignores it or refuses it, and the data are the same.
void ReserveHugePages(std::vector<float>& v, size_t n) {
  v.reserve(n);
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin =
      (reinterpret_cast<uintptr_t>(v.data()) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end =
      reinterpret_cast<uintptr_t>(v.data() + n) & ~(kHuge - 1);
  if (end > begin) {
    (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
#endif
}

// The bytes a file holds once gunzipped, as far as it tells: a gzip file's
// last four bytes (its length modulo 2^32), at most 32 times the file (a
// damaged or hostile trailer reserves no more), a plain file's size; 0 when
// unknown. Reserved up front, the bytes are written once into memory the
// process touches once: grown by doubling, Fashion-MNIST's 47 MB of images
// went through 128 MB of fresh pages, which a virtual machine's host backs
// page by page on first touch. (With the floats written once, the first load of
// the set took 0.29-0.45 s against 0.34-0.65, five runs each, alternated.)
size_t SizeHint(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return 0;
  const std::streamoff size = f.tellg();
  if (size < 18) return size > 0 ? size_t(size) : 0;
  unsigned char head[2] = {}, tail[4] = {};
  f.seekg(0);
  f.read(reinterpret_cast<char*>(head), 2);
  if (head[0] != 0x1f || head[1] != 0x8b) return size_t(size);
  f.seekg(size - 4);
  f.read(reinterpret_cast<char*>(tail), 4);
  if (!f) return 0;
  const size_t isize = size_t(tail[0]) | size_t(tail[1]) << 8 |
                       size_t(tail[2]) << 16 | size_t(tail[3]) << 24;
  return std::min(isize, 32 * size_t(size));
}

// Whole file, gunzipped when it is gzip (zlib reads plain files too).
Result<std::vector<uint8_t>> ReadMaybeGzip(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return NotFound("data file '" + path + "' does not exist");
  }
  if (!std::filesystem::is_regular_file(path, ec)) {
    return InvalidArgument("data file '" + path + "' is not a regular file");
  }
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return IoError("cannot open data file '" + path + "'");
  std::vector<uint8_t> out;
  out.reserve(SizeHint(path));
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0)
    out.insert(out.end(), buf, buf + n);
  int err = 0;
  const char* msg = gzerror(f, &err);
  // gzclose frees the message: copy it first. (gzread itself checks the
  // gzip trailer's CRC and length.)
  const std::string why = msg && *msg ? msg : "zlib error";
  gzclose(f);
  if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) {
    return DataLoss("data file '" + path + "' is damaged: " + why);
  }
  return out;
}

uint32_t BigEndian32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 |
         p[3];
}

// Parses an IDX header: u8 data, `rank` dimensions. Returns the dims.
Result<std::vector<int64_t>> IdxHeader(const std::vector<uint8_t>& b,
                                       const std::string& path) {
  if (b.size() < 4 || b[0] != 0 || b[1] != 0) {
    return DataLoss("'" + path + "' is not an IDX file (bad magic)");
  }
  if (b[2] != 0x08) {
    char type[8];
    std::snprintf(type, sizeof(type), "0x%02x", unsigned(b[2]));
    return DataLoss("'" + path + "': IDX element type " + type +
                    " is not unsigned byte (0x08)");
  }
  const int rank = b[3];
  if (rank < 1 || rank > 4 || b.size() < size_t(4 + 4 * rank)) {
    return DataLoss("'" + path + "': IDX header with " + std::to_string(rank) +
                    " dimensions is truncated or invalid");
  }
  std::vector<int64_t> dims;
  uint64_t total = 1;
  for (int i = 0; i < rank; ++i) {
    dims.push_back(BigEndian32(b.data() + 4 + 4 * i));
    // (A product past 2^64 would wrap and could match the file's size.)
    if (__builtin_mul_overflow(total, uint64_t(dims.back()), &total) ||
        total > b.size()) {
      return DataLoss("'" + path +
                      "': IDX header's dimensions promise more "
                      "data than the file holds (" +
                      std::to_string(b.size()) + " bytes)");
    }
  }
  if (b.size() != size_t(4 + 4 * rank) + total) {
    return DataLoss("'" + path + "': header promises " + std::to_string(total) +
                    " bytes of data, the file holds " +
                    std::to_string(b.size() - size_t(4 + 4 * rank)));
  }
  return dims;
}

// The most classes a CSV's labels may name (an output layer that wide is
// already past what this runtime is for).
constexpr int64_t kMaxClasses = 1000000;

}  // namespace

Result<Dataset> ReadIdx(const std::string& images_path,
                        const std::string& labels_path) {
  BALLAST_ASSIGN_OR_RETURN(const std::vector<uint8_t> img,
                           ReadMaybeGzip(images_path));
  BALLAST_ASSIGN_OR_RETURN(const std::vector<uint8_t> lab,
                           ReadMaybeGzip(labels_path));
  BALLAST_ASSIGN_OR_RETURN(const std::vector<int64_t> idims,
                           IdxHeader(img, images_path));
  BALLAST_ASSIGN_OR_RETURN(const std::vector<int64_t> ldims,
                           IdxHeader(lab, labels_path));
  if (ldims.size() != 1) {
    return DataLoss("'" + labels_path + "': labels must be 1-D, got " +
                    std::to_string(ldims.size()) + " dimensions");
  }
  if (idims[0] != ldims[0]) {
    return InvalidArgument("'" + images_path + "' holds " +
                           std::to_string(idims[0]) + " images but '" +
                           labels_path + "' holds " + std::to_string(ldims[0]) +
                           " labels");
  }
  Dataset d;
  d.rows = idims[0];
  d.features = 1;
  for (size_t i = 1; i < idims.size(); ++i) d.features *= idims[i];
  const size_t img_off = 4 + 4 * idims.size(), lab_off = 4 + 4 * ldims.size();
  ReserveHugePages(d.x, size_t(d.rows * d.features));
  // Converted a chunk at a time through L1 and appended: the floats are
  // written once, not zero-filled first.
  const size_t n = size_t(d.rows * d.features);
  float chunk[4096];
  for (size_t i = 0; i < n; i += std::size(chunk)) {
    const size_t c = std::min(std::size(chunk), n - i);
    for (size_t j = 0; j < c; ++j) {
      chunk[j] = float(img[img_off + i + j]) / 255.0f;
    }
    d.x.insert(d.x.end(), chunk, chunk + c);
  }
  d.labels.resize(size_t(d.rows));
  for (int64_t i = 0; i < d.rows; ++i) {
    d.labels[size_t(i)] = lab[lab_off + size_t(i)];
    d.classes = std::max(d.classes, d.labels[size_t(i)] + 1);
  }
  return d;
}

Result<Dataset> ReadCsv(const std::string& path, int label_column) {
  std::ifstream f(path);
  if (!f) return NotFound("data file '" + path + "' cannot be opened");
  Dataset d;
  std::string line;
  int64_t line_no = 0, cols = -1;
  while (std::getline(f, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1) StripUtf8Bom(line);
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<float> values;
    std::vector<std::string> cells;
    std::string bad_cell;
    int64_t numbers = 0, bad_column = -1;
    CellNumber bad = CellNumber::kOk;
    for (size_t pos = 0; pos <= line.size();) {
      size_t end = line.find(',', pos);
      if (end == std::string::npos) end = line.size();
      std::string cell = line.substr(pos, end - pos);
      pos = end + 1;
      const size_t b = cell.find_first_not_of(" \t"),
                   e = cell.find_last_not_of(" \t");
      cell = b == std::string::npos ? "" : cell.substr(b, e - b + 1);
      float v = 0;
      CellNumber r = ParseFloatCell(cell, &v);
      // "nan" and "inf" read as numbers but are no data to train on.
      if (r == CellNumber::kOk && !std::isfinite(v))
        r = CellNumber::kNotANumber;
      if (r != CellNumber::kOk) {
        if (bad_column < 0) {
          bad_column = int64_t(values.size()), bad_cell = cell, bad = r;
        }
      } else {
        ++numbers;
      }
      values.push_back(v);
      cells.push_back(std::move(cell));
    }
    if (bad_column >= 0) {
      // The first line is a header when no cell is a number or its label
      // cell is a name (a header may name the features 0, 1, ...); a label
      // cell like "3a" or "nan" makes it a data row with a typo.
      const int64_t n = int64_t(values.size());
      const int64_t at = label_column < 0 ? n + label_column : label_column;
      const bool label_is_name =
          at >= 0 && at < n && LooksLikeName(cells[size_t(at)]);
      if (d.rows == 0 && cols < 0 && (numbers == 0 || label_is_name)) {
        cols = int64_t(values.size());
        d.header = line;
        continue;
      }
      return InvalidArgument("'" + path + "' line " + std::to_string(line_no) +
                             ", column " + std::to_string(bad_column + 1) +
                             ": '" + bad_cell + "' " +
                             (bad == CellNumber::kOutOfFloatRange
                                  ? "is outside float's range (±3.4e38)"
                                  : "is not a finite number"));
    }
    if (cols < 0) cols = int64_t(values.size());
    if (int64_t(values.size()) != cols) {
      return InvalidArgument("'" + path + "' line " + std::to_string(line_no) +
                             ": " + std::to_string(values.size()) +
                             " columns, expected " + std::to_string(cols));
    }
    const int64_t lc = label_column < 0 ? cols + label_column : label_column;
    if (lc < 0 || lc >= cols) {
      return InvalidArgument("'" + path + "': label column " +
                             std::to_string(label_column) + " outside the " +
                             std::to_string(cols) + " columns");
    }
    const double label = values[size_t(lc)];  // exact: integers up to 2^24
    if (label < 0 || label != std::floor(label) || label >= kMaxClasses) {
      return InvalidArgument(
          "'" + path + "' line " + std::to_string(line_no) + ", column " +
          std::to_string(lc + 1) + ": label '" + cells[size_t(lc)] + "' " +
          (label < 0 ? "is negative; class labels count from 0"
           : label != std::floor(label)
               ? "is not a whole number (a class index)"
               : "is past the " + std::to_string(kMaxClasses) +
                     " classes a data set may have"));
    }
    for (int64_t c = 0; c < cols; ++c) {
      if (c != lc) d.x.push_back(values[size_t(c)]);
    }
    d.labels.push_back(int32_t(label));
    d.classes = std::max(d.classes, int32_t(label) + 1);
    ++d.rows;
  }
  if (d.rows == 0) return InvalidArgument("'" + path + "' holds no data rows");
  d.features = cols - 1;
  return d;
}

constexpr char kDebianFashionMnist[] = "/usr/share/datasets/fashion-mnist";

Result<TrainTest> LoadIdxDirectory(const std::string& dir_in) {
  const char* env = std::getenv("BALLAST_FASHION_MNIST_DIR");
  const std::string dir = dir_in != "fashion-mnist" ? dir_in
                          : env != nullptr && *env != '\0'
                              ? std::string(env)
                              : std::string(kDebianFashionMnist);
  auto find = [&](const std::string& stem) -> Result<std::string> {
    for (const char* ext : {".gz", ""}) {
      const std::string p = dir + "/" + stem + ext;
      if (std::filesystem::exists(p)) return p;
    }
    // For "fashion-mnist": where the files were looked for, and how to get
    // them there.
    std::string hint;
    if (dir_in == "fashion-mnist") {
      hint = env != nullptr && *env != '\0'
                 ? " (the directory BALLAST_FASHION_MNIST_DIR names; unset it "
                   "for Debian's package dataset-fashion-mnist)"
                 : " (install Debian's package dataset-fashion-mnist: "
                   "apt-get install dataset-fashion-mnist; or set "
                   "BALLAST_FASHION_MNIST_DIR to a copy's directory)";
    }
    return NotFound("data file '" + dir + "/" + stem + "[.gz]' does not exist" +
                    hint);
  };
  TrainTest tt;
  BALLAST_ASSIGN_OR_RETURN(const std::string tri,
                           find("train-images-idx3-ubyte"));
  BALLAST_ASSIGN_OR_RETURN(const std::string trl,
                           find("train-labels-idx1-ubyte"));
  BALLAST_ASSIGN_OR_RETURN(const std::string tei,
                           find("t10k-images-idx3-ubyte"));
  BALLAST_ASSIGN_OR_RETURN(const std::string tel,
                           find("t10k-labels-idx1-ubyte"));
  BALLAST_ASSIGN_OR_RETURN(tt.train, ReadIdx(tri, trl));
  BALLAST_ASSIGN_OR_RETURN(tt.test, ReadIdx(tei, tel));
  if (tt.train.features != tt.test.features) {
    return InvalidArgument(
        "'" + dir + "': train rows have " + std::to_string(tt.train.features) +
        " features, test rows " + std::to_string(tt.test.features));
  }
  tt.train.classes = tt.test.classes =
      std::max(tt.train.classes, tt.test.classes);
  return tt;
}

Normalization ComputeNormalization(const Dataset& d) {
  if (d.x.empty()) return {};
  double s = 0, ss = 0;
  for (float v : d.x) s += v;
  const double mean = s / double(d.x.size());
  for (float v : d.x) ss += (v - mean) * (v - mean);
  // torch.Tensor.std is the unbiased estimate.
  const double std =
      std::sqrt(ss / double(std::max<size_t>(d.x.size() - 1, 1)));
  return {mean, std > 0 ? std : 1.0};
}

Status ApplyNormalization(Dataset& d, const Normalization& n) {
  if (!std::isfinite(n.mean) || !std::isfinite(n.std) || !(n.std > 0)) {
    return InvalidArgument("normalization: mean " + std::to_string(n.mean) +
                           " and std " + std::to_string(n.std) +
                           " need a finite mean and a finite std > 0");
  }
  for (float& v : d.x) v = float((v - n.mean) / n.std);
  return Status::Ok();
}

// Rows ahead whose lines GatherBatch fetches (see there).
constexpr int64_t kGatherAhead = 2;

Status CheckBatchRows(const Dataset& d, std::span<const int64_t> rows) {
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= d.rows) {
      return OutOfRange("batch row " + std::to_string(i) + ": example " +
                        std::to_string(rows[i]) +
                        " is outside the data set's " + std::to_string(d.rows) +
                        " rows");
    }
  }
  return Status::Ok();
}

void GatherBatchRows(const Dataset& d, std::span<const int64_t> rows,
                     int64_t begin, int64_t end, float* x, int32_t* labels) {
  const int64_t n = int64_t(rows.size()), f = d.features;
  const int64_t line_floats = 64 / int64_t(sizeof(float));
  for (int64_t i = begin; i < end; ++i) {
    // The rows of a shuffled batch are scattered through the data set, so
    // each starts with a miss that the hardware does not see coming: fetch
    // the row kGatherAhead rows on while this one is copied.
    if (i + kGatherAhead < n) {
      const float* next = d.x.data() + rows[size_t(i + kGatherAhead)] * f;
      for (int64_t j = 0; j < f; j += line_floats) __builtin_prefetch(next + j);
    }
    const int64_t row = rows[size_t(i)];
    std::memcpy(x + i * f, d.x.data() + row * f, size_t(f) * sizeof(float));
    labels[i] = d.labels[size_t(row)];
  }
}

Status GatherBatch(const Dataset& d, std::span<const int64_t> rows, float* x,
                   int32_t* labels, int threads) {
  BALLAST_RETURN_IF_ERROR(CheckBatchRows(d, rows));
  const int64_t n = int64_t(rows.size());
  // A parallel region costs more than copying a few small rows.
  if (n * d.features < (int64_t{1} << 14)) threads = 1;
  ops::ParallelRun(threads, [&](int t, int T) {
    GatherBatchRows(d, rows, n * t / T, n * (t + 1) / T, x, labels);
  });
  return Status::Ok();
}

std::vector<int64_t> EpochOrder(int64_t n, uint64_t seed, int64_t epoch) {
  if (n <= 0) return {};
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  // Fisher-Yates with draws from the (seed, epoch) stream.
  Generator g(seed ^ (0x9E3779B97F4A7C15ull * uint64_t(epoch + 1)));
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = int64_t(g.NextDouble() * double(i + 1));
    std::swap(order[size_t(i)], order[size_t(std::min(j, i))]);
  }
  return order;
}

}  // namespace ballast
