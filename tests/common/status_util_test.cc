#include "common/status/status_util.h"

#include "common/status/status_macros.h"
#include "gtest/gtest.h"

namespace aqueduct {
namespace {

class StatusMappingTest : public ::testing::TestWithParam<absl::StatusCode> {};

TEST_P(StatusMappingTest, RoundTripsCodeAndMessage) {
  absl::Status in(GetParam(), "field x: bad");
  grpc::Status g = ToGrpcStatus(in);
  EXPECT_EQ(static_cast<int>(g.error_code()), static_cast<int>(GetParam()));
  EXPECT_EQ(g.error_message(), "field x: bad");
  absl::Status back = ToAbslStatus(g);
  EXPECT_EQ(back.code(), GetParam());
  EXPECT_EQ(back.message(), "field x: bad");
}

INSTANTIATE_TEST_SUITE_P(
    AllErrorCodes, StatusMappingTest,
    ::testing::Values(
        absl::StatusCode::kCancelled, absl::StatusCode::kUnknown,
        absl::StatusCode::kInvalidArgument, absl::StatusCode::kDeadlineExceeded,
        absl::StatusCode::kNotFound, absl::StatusCode::kAlreadyExists,
        absl::StatusCode::kPermissionDenied,
        absl::StatusCode::kResourceExhausted,
        absl::StatusCode::kFailedPrecondition, absl::StatusCode::kAborted,
        absl::StatusCode::kOutOfRange, absl::StatusCode::kUnimplemented,
        absl::StatusCode::kInternal, absl::StatusCode::kUnavailable,
        absl::StatusCode::kDataLoss, absl::StatusCode::kUnauthenticated),
    [](const auto& info) { return absl::StatusCodeToString(info.param); });

TEST(StatusMappingTest, OkMapsToOk) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(ToAbslStatus(grpc::Status::OK).ok());
}

TEST(StatusMappingTest, NamedGrpcCodesMatch) {
  EXPECT_EQ(ToGrpcStatus(absl::UnavailableError("x")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ToGrpcStatus(absl::InvalidArgumentError("x")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ToGrpcStatus(absl::AbortedError("x")).error_code(),
            grpc::StatusCode::ABORTED);
}

// A message quoting a huge input is cut, never inside a UTF-8 character;
// a short one is kept as it is.
TEST(StatusMappingTest, LongMessagesAreCut) {
  const std::string quoted(1 << 20, 'x');
  grpc::Status g = ToGrpcStatus(absl::InvalidArgumentError(
      "answers[0].item_id: no item \"" + quoted + "\""));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LE(g.error_message().size(), kMaxErrorMessageBytes);
  EXPECT_EQ(g.error_message().rfind("answers[0].item_id: no item", 0), 0u);
  EXPECT_EQ(g.error_message().substr(g.error_message().size() - 9),
            "... (cut)");
  // Two-byte characters ("é") all the way: the cut keeps whole ones.
  std::string accents;
  for (int i = 0; i < 1000; ++i) accents += "\xc3\xa9";
  g = ToGrpcStatus(absl::InvalidArgumentError("x" + accents));
  const std::string kept =
      g.error_message().substr(0, g.error_message().size() - 9);
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ((kept.size() - 1) % 2, 0u) << "whole characters after the x";
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError("short")).error_message(),
            "short");
}

TEST(AnnotateTest, KeepsCodeAndPrefixesMessage) {
  absl::Status s =
      Annotate(absl::UnavailableError("connection refused"), "scoring at h:1");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "scoring at h:1: connection refused");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "x").ok());
}

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("x: odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagateErrorsAndValues) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(3).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace aqueduct
