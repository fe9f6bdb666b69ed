#include "ballast/status.h"

#include <gtest/gtest.h>

namespace ballast {
namespace {

Result<int> Half(int v) {
  if (v % 2) return InvalidArgument("half: " + std::to_string(v) + " is odd");
  return v / 2;
}

Result<int> Quarter(int v) {
  BALLAST_ASSIGN_OR_RETURN(int h, Half(v));
  BALLAST_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, OkAndErrorCarryCodeAndMessage) {
  EXPECT_TRUE(Status().ok());
  Status s = OutOfRange("index 7 beyond 3");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.ToString(), "out of range: index 7 beyond 3");
  EXPECT_EQ(s.WithContext("node 'fc1': ").message(),
            "node 'fc1': index 7 beyond 3");
  EXPECT_EQ(Cancelled("stopped by SIGINT").ToString(),
            "cancelled: stopped by SIGINT");
}

TEST(StatusTest, AssignOrReturnPropagatesTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);  // 6 → 3, then 3 is odd
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "half: 3 is odd");
}

// An OK status holds no value: a Result made from one is an error, so that
// ok() and status() agree and BALLAST_ASSIGN_OR_RETURN does not return
// success from the middle of a function.
Result<int> FromOkStatus() { return Status(); }
Status UsesIt(bool* reached_the_end) {
  BALLAST_ASSIGN_OR_RETURN(int v, FromOkStatus());
  *reached_the_end = v >= 0;
  return Status::Ok();
}

TEST(StatusTest, AResultFromAnOkStatusIsAnInternalError) {
  const Result<int> r = FromOkStatus();
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.status().ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
  bool reached = false;
  const Status s = UsesIt(&reached);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(reached);
}

}  // namespace
}  // namespace ballast
