#include "ballast/tensor.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

namespace ballast {
namespace {

TEST(TensorTest, ZerosIsAlignedZeroFilledAndRowMajor) {
  for (int64_t n : {1, 3, 17, 1000}) {
    Tensor t = Tensor::Zeros({n, 3});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % kTensorAlignment, 0u);
    EXPECT_EQ(t.numel(), n * 3);
    for (float v : t.span()) EXPECT_EQ(v, 0.0f);
  }
  Result<Tensor> t =
      Tensor::FromVector({2, 3}, std::vector<float>{0, 1, 2, 3, 4, 5});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->data()[1 * 3 + 2], 5.0f);  // row 1, column 2
}

TEST(TensorTest, CopiesShareStorageAndCloneDoesNot) {
  Tensor a = Tensor::Full({4}, 1.0f);
  Tensor b = a;
  Tensor c = a.Clone();
  a.data()[0] = 7.0f;
  EXPECT_EQ(b.data()[0], 7.0f);
  EXPECT_EQ(c.data()[0], 1.0f);
  EXPECT_TRUE(c.is_owning());
}

TEST(TensorTest, BorrowWrapsCallerMemoryWithoutOwningIt) {
  std::vector<float> buf(6, 2.0f);
  Tensor t = Tensor::Borrow(buf.data(), {2, 3});
  EXPECT_FALSE(t.is_owning());
  EXPECT_EQ(t.data(), buf.data());
  t.data()[5] = 9.0f;
  EXPECT_EQ(buf[5], 9.0f);
}

TEST(TensorTest, ShapeMakeRejectsBadRanksAndDims) {
  std::vector<int64_t> five(5, 2);
  Result<Shape> r = Shape::Make(five);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("rank 5"), std::string::npos);
  std::vector<int64_t> neg{3, -1};
  r = Shape::Make(neg);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("-1"), std::string::npos);
  std::vector<int64_t> huge{int64_t{1} << 40, int64_t{1} << 40};
  EXPECT_FALSE(Shape::Make(huge).ok());
  std::vector<int64_t> ok{2, 3, 4, 5};
  r = Shape::Make(ok);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->numel(), 120);
  EXPECT_EQ(r->ToString(), "[2, 3, 4, 5]");
}

// A literal shape of more than four dimensions throws in every build (it
// once wrote past them when asserts were compiled out). Its values are
// kept as given, to be compared: a file's attributes come in this way.
TEST(TensorTest, LiteralShapesOfRankFiveThrowAndOthersKeepTheirValues) {
  EXPECT_THROW(Shape({2, 3, 4, 5, 6}), std::invalid_argument);
  EXPECT_EQ(Shape({2, 3, 4, 5}).numel(), 120);
  const Shape odd{int64_t{1} << 40, -7};
  EXPECT_EQ(odd.rank(), 2);
  EXPECT_EQ(odd[1], -7);
  EXPECT_FALSE(Tensor::Zeros({3, 5}).CheckShape("w", odd).ok());
}

TEST(TensorTest, AMovedFromTensorIsEmpty) {
  Tensor a = Tensor::Full({4}, 1.0f);
  const float* data = a.data();
  Tensor b = std::move(a);
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(b.numel(), 4);
  // NOLINTBEGIN(bugprone-use-after-move): what a moved-from tensor reports
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.numel(), 0);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.rank(), 0);
  Tensor c = Tensor::Full({2}, 3.0f);
  c = std::move(b);
  EXPECT_EQ(c.data(), data);
  EXPECT_TRUE(b.empty());
  // NOLINTEND(bugprone-use-after-move)
}

TEST(TensorTest, ShapeChecksNameTheTensorAndBothShapes) {
  Tensor w = Tensor::Zeros({256, 700});
  Status s = w.CheckShape("linear 'fc1' weight", Shape{256, 784});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "linear 'fc1' weight: shape [256, 700] does not match expected "
            "[256, 784]");
  EXPECT_TRUE(w.CheckShape("w", Shape{256, 700}).ok());
  EXPECT_FALSE(w.CheckRank("w", 3).ok());
}

TEST(TensorTest, ReshapeKeepsStorageAndChecksElementCount) {
  Tensor t = Tensor::Full({2, 6}, 3.0f);
  Result<Tensor> r = t.Reshape({3, 4});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data(), t.data());
  EXPECT_FALSE(t.Reshape({5}).ok());
  EXPECT_FALSE(Tensor::FromVector({2, 2}, std::vector<float>{1, 2, 3}).ok());
}

}  // namespace
}  // namespace ballast
