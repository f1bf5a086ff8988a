#include "gangway/common/status.h"

#include <cerrno>

#include <gtest/gtest.h>

namespace gangway {
namespace {

absl::Status failsWithErrno(int e) {
  errno = e;
  return GW_ERRNO("open /nonexistent");
}

absl::StatusOr<int> half(int v) {
  if (v % 2 != 0) return absl::InvalidArgumentError("odd");
  return v / 2;
}

absl::StatusOr<int> quarter(int v) {
  GW_ASSIGN_OR_RETURN(const int h, half(v));
  GW_ASSIGN_OR_RETURN(const int q, half(h));
  return q;
}

absl::Status checkEven(int v) {
  GW_RETURN_IF_ERROR(half(v).status());
  return absl::OkStatus();
}

TEST(StatusTest, ErrnoStatusNamesOperationReasonAndPlace) {
  const absl::Status s = failsWithErrno(ENOENT);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("open /nonexistent: No such file or directory"),
            absl::string_view::npos);
  EXPECT_NE(s.message().find("status_test.cc:"), absl::string_view::npos);
  EXPECT_EQ(failsWithErrno(EACCES).code(), absl::StatusCode::kPermissionDenied);
}

TEST(StatusTest, AssignOrReturnPropagates) {
  EXPECT_EQ(*quarter(8), 2);
  EXPECT_EQ(quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(quarter(3).status().message(), "odd");
}

TEST(StatusTest, ReturnIfErrorPropagates) {
  EXPECT_TRUE(checkEven(4).ok());
  EXPECT_EQ(checkEven(5).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gangway
