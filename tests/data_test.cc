// The data readers (IDX gzip or plain, CSV), their errors, the epoch order
// and the batch gather (ballast/data.h).
#include "ballast/data.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace ballast {
namespace {

TEST(DataTest, CsvReaderSkipsAHeaderAndNamesBadCells) {
  const auto path =
      std::filesystem::temp_directory_path() / "ballast_data_test.csv";
  {
    std::ofstream f(path);
    f << "label,a,b\n1,0.5,2\n0,1.5,-1\n";
  }
  Result<Dataset> d = ReadCsv(path.string(), 0);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->rows, 2);
  EXPECT_EQ(d->features, 2);
  EXPECT_EQ(d->classes, 2);
  EXPECT_EQ(d->x[2], 1.5f);
  {
    std::ofstream f(path);
    f << "1,0.5,2\n0,abc,-1\n";
  }
  d = ReadCsv(path.string(), 0);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("line 2"), std::string::npos);
  // NaN and infinities parse as numbers but are no data to train on; the
  // error names the line, the column and the cell.
  for (const char* cell : {"nan", "inf", "-inf"}) {
    {
      std::ofstream f(path);
      f << "1,0.5,2\n0,1," << cell << "\n";
    }
    d = ReadCsv(path.string(), 0);
    ASSERT_FALSE(d.ok()) << cell;
    EXPECT_NE(d.status().message().find("line 2, column 3: '" +
                                        std::string(cell) + "'"),
              std::string::npos)
        << d.status().ToString();
  }
  // A first line with a number in its label column is data with a typo, not
  // a header to drop.
  {
    std::ofstream f(path);
    f << "1,abc,2\n0,1,-1\n";
  }
  d = ReadCsv(path.string(), 0);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("line 1, column 2"), std::string::npos)
      << d.status().ToString();
  // A first row whose label cell only looks wrong ("nan", "3a") is data with
  // a typo too; a value past float's range is named as such; numbers as
  // Python writes them ("+1", "1e-400") are read.
  for (const char* first : {"1,2,nan\n", "1,2,3a\n", "1e39,2,1\n"}) {
    {
      std::ofstream f(path);
      f << first << "0.5,2,1\n";
    }
    d = ReadCsv(path.string(), -1);
    ASSERT_FALSE(d.ok()) << first;
    EXPECT_NE(d.status().message().find("line 1, column"), std::string::npos)
        << d.status().ToString();
  }
  EXPECT_NE(d.status().message().find("outside float's range"),
            std::string::npos);
  {
    std::ofstream f(path);
    f << "+1,1e-400,1\n0.5,2,0\n";
  }
  d = ReadCsv(path.string(), -1);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->x[0], 1.0f);
  EXPECT_EQ(d->x[1], 0.0f);
  // A header may name the features with numbers; its label cell is a name.
  {
    std::ofstream f(path);
    f << "0,1,label\n0.5,2,1\n1.5,-1,0\n";
  }
  d = ReadCsv(path.string(), -1);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->rows, 2);
  EXPECT_EQ(d->x[2], 1.5f);
  EXPECT_EQ(d->header, "0,1,label");  // so that the caller can say so
  std::filesystem::remove(path);
}

TEST(DataTest, CsvReaderSkipsAByteOrderMarkAndNamesBadLabels) {
  const auto path =
      std::filesystem::temp_directory_path() / "ballast_data_label_test.csv";
  // Excel's "CSV UTF-8" starts with a byte order mark: the first row is
  // data all the same, not a header.
  {
    std::ofstream f(path);
    f << "\xEF\xBB\xBF"
         "2,0.5\r\n0,1.5\r\n";
  }
  Result<Dataset> d = ReadCsv(path.string(), 0);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->rows, 2);
  EXPECT_EQ(d->labels[0], 2);
  EXPECT_EQ(d->header, "");
  // A label that is no class index is named as written, with what is wrong.
  const std::pair<const char*, const char*> bad[] = {
      {"-1", "label '-1' is negative"},
      {"1.5", "label '1.5' is not a whole number"},
      {"2000000", "label '2000000' is past the 1000000 classes"}};
  for (const auto& [label, message] : bad) {
    {
      std::ofstream f(path);
      f << "1,0.5\n" << label << ",2\n";
    }
    d = ReadCsv(path.string(), 0);
    ASSERT_FALSE(d.ok()) << label;
    EXPECT_NE(
        d.status().message().find(std::string("line 2, column 1: ") + message),
        std::string::npos)
        << d.status().ToString();
  }
  std::filesystem::remove(path);
}

TEST(DataTest, DamagedGzipAndDirectoriesNameTheFile) {
  const auto dir =
      std::filesystem::temp_directory_path() / "ballast_damaged_idx";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  // A gzip stream cut short: the header of a member and a few bytes.
  const std::string images = (dir / "images.gz").string();
  {
    std::ofstream f(images, std::ios::binary);
    const unsigned char cut[] = {0x1f, 0x8b, 8, 0, 0,    0,
                                 0,    0,    0, 3, 0x63, 0x60};
    f.write(reinterpret_cast<const char*>(cut), sizeof(cut));
  }
  Result<Dataset> d = ReadIdx(images, images);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(d.status().message().find("images.gz' is damaged"),
            std::string::npos)
      << d.status().ToString();
  d = ReadIdx(dir.string(), dir.string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("is not a regular file"),
            std::string::npos)
      << d.status().ToString();
  std::filesystem::remove_all(dir);
}

// A gzip file's trailer tells its length, which the reader reserves up
// front: a trailer that lies (4 GiB, or one byte) reserves no more than 32
// times the file, and gzip's own length check names the file damaged.
TEST(DataTest, AGzipTrailerThatLiesIsDamage) {
  const auto dir = std::filesystem::temp_directory_path() / "ballast_trailer";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string images = (dir / "images.gz").string(),
                    labels = (dir / "labels.gz").string();
  const auto write_gz = [](const std::string& path,
                           const std::vector<unsigned char>& bytes) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())),
              int(bytes.size()));
    ASSERT_EQ(gzclose(f), Z_OK);
  };
  // Two 2 × 2 images and their labels.
  write_gz(images, {0, 0, 8, 3, 0, 0,  0,   2,   0,   0,   0, 2,
                    0, 0, 0, 2, 0, 51, 102, 153, 204, 255, 1, 2});
  write_gz(labels, {0, 0, 8, 1, 0, 0, 0, 2, 3, 1});
  Result<Dataset> d = ReadIdx(images, labels);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->rows, 2);
  EXPECT_EQ(d->features, 4);
  EXPECT_EQ(d->x[1], 0.2f);
  EXPECT_EQ(d->labels[0], 3);
  const auto size = std::filesystem::file_size(images);
  for (const uint32_t lie : {0xFFFFFFFFu, 1u}) {
    {
      std::fstream f(images, std::ios::binary | std::ios::in | std::ios::out);
      f.seekp(std::streamoff(size - 4));
      const unsigned char le[4] = {static_cast<unsigned char>(lie),
                                   static_cast<unsigned char>(lie >> 8),
                                   static_cast<unsigned char>(lie >> 16),
                                   static_cast<unsigned char>(lie >> 24)};
      f.write(reinterpret_cast<const char*>(le), 4);
    }
    d = ReadIdx(images, labels);
    ASSERT_FALSE(d.ok()) << lie;
    EXPECT_EQ(d.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(d.status().message().find("images.gz' is damaged"),
              std::string::npos)
        << d.status().ToString();
  }
  std::filesystem::remove_all(dir);
}

TEST(DataTest, MissingDataNamesThePathAndThePackage) {
  Result<TrainTest> d = LoadIdxDirectory("/nonexistent/fashion");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  EXPECT_NE(
      d.status().message().find("/nonexistent/fashion/train-images-idx3-ubyte"),
      std::string::npos);
  // "fashion-mnist" where its files are missing names the directory, the
  // variable that chose it and Debian's package.
  ASSERT_EQ(setenv("BALLAST_FASHION_MNIST_DIR", "/nonexistent/fmnist", 1), 0);
  d = LoadIdxDirectory("fashion-mnist");
  unsetenv("BALLAST_FASHION_MNIST_DIR");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  const std::string m = d.status().message();
  EXPECT_NE(m.find("'/nonexistent/fmnist/train-images-idx3-ubyte[.gz]'"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("BALLAST_FASHION_MNIST_DIR names"), std::string::npos) << m;
  EXPECT_NE(m.find("package dataset-fashion-mnist"), std::string::npos) << m;
}

// Plain (not gzipped) IDX files, big-endian headers, as MNIST's.
TEST(DataTest, ReadsAPlainIdxDirectory) {
  const auto dir = std::filesystem::temp_directory_path() / "ballast_plain_idx";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  // An IDX file: the magic (unsigned bytes, the number of dimensions), the
  // dimensions as big-endian 32-bit words, the bytes.
  const auto write = [&](const char* name, std::vector<uint32_t> dims,
                         std::vector<unsigned char> data) {
    std::vector<unsigned char> bytes = {0, 0, 8, uint8_t(dims.size())};
    for (uint32_t d : dims) {
      for (int shift = 24; shift >= 0; shift -= 8) {
        bytes.push_back(uint8_t(d >> shift));
      }
    }
    bytes.insert(bytes.end(), data.begin(), data.end());
    std::ofstream f(dir / name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            std::streamsize(bytes.size()));
  };
  // Three 2×2 images and their labels to train on, two to test.
  write("train-images-idx3-ubyte", {3, 2, 2},
        {0, 51, 102, 255, 255, 0, 0, 0, 1, 2, 3, 4});
  write("train-labels-idx1-ubyte", {3}, {2, 0, 1});
  write("t10k-images-idx3-ubyte", {2, 2, 2}, {5, 5, 5, 5, 255, 255, 255, 255});
  write("t10k-labels-idx1-ubyte", {2}, {1, 2});
  Result<TrainTest> d = LoadIdxDirectory(dir.string());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->train.rows, 3);
  EXPECT_EQ(d->test.rows, 2);
  EXPECT_EQ(d->train.features, 4);
  EXPECT_EQ(d->train.classes, 3);
  EXPECT_EQ(d->train.x[1], 51.0f / 255.0f);
  EXPECT_EQ(d->train.x[3], 1.0f);
  EXPECT_EQ(d->train.x[11], 4.0f / 255.0f);
  EXPECT_EQ(d->train.labels, (std::vector<int32_t>{2, 0, 1}));
  EXPECT_EQ(d->test.labels, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(d->test.x[7], 1.0f);
  // Dimensions whose product wraps past 2^64 to the file's 0 data bytes
  // (65536^4) are damage, not an empty data set of 2^48 features per row.
  write("train-images-idx3-ubyte", {65536, 65536, 65536, 65536}, {});
  write("train-labels-idx1-ubyte", {65536}, std::vector<unsigned char>(65536));
  d = LoadIdxDirectory(dir.string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("promise more data than the file holds"),
            std::string::npos)
      << d.status().ToString();
  std::filesystem::remove_all(dir);
}

TEST(DataTest, ReadsDebiansFashionMnist) {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist")) {
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  }
  unsetenv("BALLAST_FASHION_MNIST_DIR");  // "fashion-mnist": Debian's
  Result<TrainTest> d = LoadIdxDirectory("fashion-mnist");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->train.rows, 60000);
  EXPECT_EQ(d->test.rows, 10000);
  EXPECT_EQ(d->train.features, 784);
  EXPECT_EQ(d->train.classes, 10);
  const Normalization n = ComputeNormalization(d->train);
  EXPECT_NEAR(n.mean, 0.2860, 1e-3);  // Fashion-MNIST's well-known statistics
  EXPECT_NEAR(n.std, 0.3530, 1e-3);
}

TEST(DataTest, NormalizationRefusesWhatWouldPoisonTheData) {
  Dataset d;
  EXPECT_EQ(ComputeNormalization(d).mean, 0.0);  // no values: no NaN
  EXPECT_EQ(ComputeNormalization(d).std, 1.0);
  d.x = {2.0f, 2.0f, 2.0f};
  d.rows = 3, d.features = 1;
  EXPECT_EQ(ComputeNormalization(d).std, 1.0);  // all alike
  for (const Normalization bad :
       {Normalization{0.0, 0.0}, Normalization{0.0, -1.0},
        Normalization{0.0, std::nan("")}, Normalization{INFINITY, 1.0}}) {
    const Status s = ApplyNormalization(d, bad);
    EXPECT_FALSE(s.ok()) << bad.mean << " " << bad.std;
    EXPECT_EQ(d.x, (std::vector<float>{2.0f, 2.0f, 2.0f}));
  }
  ASSERT_TRUE(ApplyNormalization(d, {1.0, 2.0}).ok());
  EXPECT_EQ(d.x, (std::vector<float>{0.5f, 0.5f, 0.5f}));
}

TEST(DataTest, EpochOrderIsASeededPermutation) {
  const auto a = EpochOrder(1000, 3, 0), b = EpochOrder(1000, 3, 0),
             c = EpochOrder(1000, 3, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[size_t(i)], i);
  EXPECT_TRUE(EpochOrder(0, 3, 0).empty());
  EXPECT_TRUE(EpochOrder(-1, 3, 0).empty());
}

TEST(DataTest, GatherBatchCopiesTheChosenRowsOnAnyThreadCount) {
  Dataset d;
  d.rows = 300, d.features = 100, d.classes = 7;
  for (int64_t i = 0; i < d.rows * d.features; ++i) d.x.push_back(float(i));
  for (int64_t r = 0; r < d.rows; ++r) d.labels.push_back(int32_t(r % 7));
  const std::vector<int64_t> order = EpochOrder(d.rows, 1, 0);
  const std::span<const int64_t> rows(order.data(), 200);
  for (int threads : {1, 2}) {
    std::vector<float> x(200 * 100, -1.0f);
    std::vector<int32_t> y(200, -1);
    ASSERT_TRUE(GatherBatch(d, rows, x.data(), y.data(), threads).ok());
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(y[i], int32_t(rows[i] % 7));
      for (size_t f = 0; f < 100; ++f) {
        ASSERT_EQ(x[i * 100 + f], float(rows[i] * 100 + int64_t(f)))
            << "row " << i << ", threads " << threads;
      }
    }
  }
  // In pieces, in any order: the same copy.
  std::vector<float> whole(200 * 100), pieces(200 * 100, -1.0f);
  std::vector<int32_t> whole_y(200), pieces_y(200, -1);
  ASSERT_TRUE(GatherBatch(d, rows, whole.data(), whole_y.data()).ok());
  ASSERT_TRUE(CheckBatchRows(d, rows).ok());
  const std::pair<int64_t, int64_t> ranges[] = {
      {150, 200}, {0, 7}, {50, 150}, {7, 50}};
  for (const auto& [begin, end] : ranges) {
    GatherBatchRows(d, rows, begin, end, pieces.data(), pieces_y.data());
  }
  EXPECT_EQ(pieces, whole);
  EXPECT_EQ(pieces_y, whole_y);
  const std::vector<int64_t> bad = {0, 300};
  std::vector<float> x(200);
  std::vector<int32_t> y(2);
  for (const Status& s :
       {GatherBatch(d, bad, x.data(), y.data()), CheckBatchRows(d, bad)}) {
    EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
    EXPECT_NE(s.message().find("batch row 1: example 300"), std::string::npos)
        << s.ToString();
  }
}

}  // namespace
}  // namespace ballast
