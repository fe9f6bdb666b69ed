#include "tools/train_data.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/number_text.h"

namespace ballast::cli {
namespace {

// `text` cut to at most `max_bytes` bytes with "..." (not inside a UTF-8
// character).
std::string Abbreviated(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t n = max_bytes - 3;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return text.substr(0, n) + "...";
}

// A CSV header's cells, without the spaces and quotes around them.
std::vector<std::string> HeaderCells(const std::string& header) {
  std::vector<std::string> cells;
  for (size_t pos = 0; pos <= header.size();) {
    size_t end = header.find(',', pos);
    if (end == std::string::npos) end = header.size();
    const std::string cell = header.substr(pos, end - pos);
    const size_t b = cell.find_first_not_of(" \t\"'"),
                 e = cell.find_last_not_of(" \t\"'");
    cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
    pos = end + 1;
  }
  return cells;
}

// How surely a header cell names the labels: 0 for "label", "labels",
// "class" and "target", 1 for "category", 2 for "y" (also a coordinate
// beside "x"), in any case; -1 for any other name.
int LabelNameRank(const std::string& cell) {
  static constexpr std::pair<std::string_view, int> kNames[] = {
      {"label", 0},  {"labels", 0},   {"class", 0},
      {"target", 0}, {"category", 1}, {"y", 2}};
  std::string lower = cell;
  for (char& ch : lower)
    ch = char(std::tolower(static_cast<unsigned char>(ch)));
  for (const auto& [name, rank] : kNames) {
    if (lower == name) return rank;
  }
  return -1;
}

// A CSV whose header names another column as the labels than the one
// --label-column reads: most likely the flag was left at its default (the
// first column) by mistake. Said before the rows are read, so that it also
// precedes the error a column of features read as labels then gives. No
// warning where the column read has a label's name itself.
void WarnOfLabelColumnHeader(const std::string& path, int label_column) {
  std::ifstream f(path);
  std::string line;
  // The first line that is not blank, as ReadCsv finds it.
  for (int64_t line_no = 1; std::getline(f, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1) internal::StripUtf8Bom(line);
    if (line.find_first_not_of(" \t") != std::string::npos) break;
    line.clear();
  }
  const std::vector<std::string> cells = HeaderCells(line);
  const int64_t columns = int64_t(cells.size());
  const int64_t read =
      label_column < 0 ? columns + label_column : int64_t(label_column);
  if (read < 0 || read >= columns || LabelNameRank(cells[size_t(read)]) >= 0)
    return;
  // The surest name, the leftmost of equally sure ones.
  int64_t named = -1;
  int best = 3;
  for (int64_t c = 0; c < columns; ++c) {
    const int rank = LabelNameRank(cells[size_t(c)]);
    if (rank >= 0 && rank < best) named = c, best = rank;
  }
  if (named < 0) return;
  std::fputs(fmt::format("ballast train: warning: the header of '{}' names "
                         "'{}' as the labels (--label-column {}{}), but "
                         "--label-column {} reads '{}'; pass --label-column "
                         "{} if the header is right\n",
                         path, Abbreviated(cells[size_t(named)], 30), named,
                         named == columns - 1 ? " or -1" : "", label_column,
                         Abbreviated(cells[size_t(read)], 30), named)
                 .c_str(),
             stderr);
}

// A CSV sorted by label leaves its test rows (the last 10%) one or two
// classes, and a test accuracy that means nothing: warns when a class that
// the training rows' shares would put at least 5 times among the test rows
// has none there.
void WarnOfMissingTestClasses(const TrainTest& tt, const std::string& path) {
  std::vector<int64_t> in_train(size_t(tt.train.classes)),
      in_test(size_t(tt.train.classes));
  for (int32_t l : tt.train.labels) ++in_train[size_t(l)];
  for (int32_t l : tt.test.labels) ++in_test[size_t(l)];
  std::string missing;
  int64_t n = 0;
  for (size_t c = 0; c < in_train.size(); ++c) {
    const double expected =
        double(in_train[c]) * double(tt.test.rows) / double(tt.train.rows);
    if (in_test[c] == 0 && expected >= 5) {
      if (++n <= 5) missing += fmt::format("{}{}", n > 1 ? ", " : "", c);
    }
  }
  if (n == 0) return;
  std::fprintf(stderr,
               "ballast train: warning: the test rows (the last %lld of '%s') "
               "hold no row of class%s %s%s, which the training rows' shares "
               "would put there; is the file sorted by label? Shuffle its "
               "lines for a test accuracy that means something\n",
               static_cast<long long>(tt.test.rows), path.c_str(),
               n > 1 ? "es" : "", missing.c_str(),
               n > 5 ? fmt::format(" and {} more", n - 5).c_str() : "");
}

}  // namespace

Result<TrainTest> LoadData(const TrainCli& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (o.data == "fashion-mnist" || fs::is_directory(o.data, ec)) {
    return LoadIdxDirectory(o.data);
  }
  if (!fs::exists(o.data, ec)) {
    return NotFound("--data '" + o.data +
                    "' does not exist (expected fashion-mnist, a directory of "
                    "IDX files or a CSV file)");
  }
  if (!fs::is_regular_file(o.data, ec)) {
    // A pipe could be read once, but not again to resume the run.
    return InvalidArgument("--data '" + o.data +
                           "' is neither a regular file (CSV) nor a "
                           "directory (IDX files)");
  }
  WarnOfLabelColumnHeader(o.data, o.label_column);
  BALLAST_ASSIGN_OR_RETURN(Dataset all, ReadCsv(o.data, o.label_column));
  if (!all.header.empty()) {
    std::fprintf(stderr,
                 "ballast train: note: '%s' starts with a header line, "
                 "skipped: '%s'\n",
                 o.data.c_str(), Abbreviated(all.header, 60).c_str());
  }
  // The last 10% of the rows (at least one) are the test set.
  const int64_t test_rows = std::max<int64_t>(1, all.rows / 10);
  if (all.rows - test_rows < 2) {
    return InvalidArgument("'" + o.data + "' has too few rows to train on");
  }
  TrainTest tt;
  tt.train.rows = all.rows - test_rows, tt.test.rows = test_rows;
  tt.train.features = tt.test.features = all.features;
  tt.train.classes = tt.test.classes = all.classes;
  const auto cut = all.x.begin() + tt.train.rows * all.features;
  tt.train.x.assign(all.x.begin(), cut);
  tt.test.x.assign(cut, all.x.end());
  tt.train.labels.assign(all.labels.begin(),
                         all.labels.begin() + tt.train.rows);
  tt.test.labels.assign(all.labels.begin() + tt.train.rows, all.labels.end());
  WarnOfMissingTestClasses(tt, o.data);
  return tt;
}

}  // namespace ballast::cli
