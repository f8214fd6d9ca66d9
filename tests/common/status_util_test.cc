#include "common/status/status_util.h"

#include <optional>

#include "common/status/status_macros.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
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

// The google.rpc.Status a failed call carries, or nullopt when none.
std::optional<google::rpc::Status> DetailsOf(const grpc::Status& s) {
  if (s.error_details().empty()) return std::nullopt;
  google::rpc::Status out;
  if (!out.ParseFromString(s.error_details())) return std::nullopt;
  return out;
}

TEST(ErrorDetailsTest, InvalidArgumentNamesItsFieldInABadRequest) {
  const grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError(
      "answers[2].item_id: \"phq9.99\" is not in the catalog"));
  auto details = DetailsOf(s);
  ASSERT_TRUE(details.has_value());
  EXPECT_EQ(details->code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(details->message(), s.error_message());
  ASSERT_EQ(details->details_size(), 1);
  google::rpc::BadRequest bad;
  ASSERT_TRUE(details->details(0).UnpackTo(&bad));
  ASSERT_EQ(bad.field_violations_size(), 1);
  EXPECT_EQ(bad.field_violations(0).field(), "answers[2].item_id");
  EXPECT_EQ(bad.field_violations(0).description(),
            "\"phq9.99\" is not in the catalog");
  // A message that names no field gets no BadRequest (and no details).
  EXPECT_TRUE(ToGrpcStatus(absl::InvalidArgumentError("body is not a request"))
                  .error_details()
                  .empty());
  EXPECT_TRUE(ToGrpcStatus(absl::NotFoundError("name: no such screening"))
                  .error_details()
                  .empty())
      << "a field is a BadRequest only for INVALID_ARGUMENT";
}

TEST(ErrorDetailsTest, RetryInfoAndErrorInfoTravelToTheCaller) {
  const grpc::Status limited = ToGrpcStatus(WithRetryDelay(
      absl::ResourceExhaustedError("too many requests; try again in 42 s"),
      absl::Seconds(42)));
  auto details = DetailsOf(limited);
  ASSERT_TRUE(details.has_value());
  ASSERT_EQ(details->details_size(), 1);
  google::rpc::RetryInfo retry;
  ASSERT_TRUE(details->details(0).UnpackTo(&retry));
  EXPECT_EQ(retry.retry_delay().seconds(), 42);

  const grpc::Status stale = ToGrpcStatus(
      WithErrorInfo(absl::AbortedError("etag: changed (current etag \"7\")"),
                    "ETAG_MISMATCH", {{"etag", "7"}}));
  details = DetailsOf(stale);
  ASSERT_TRUE(details.has_value());
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(details->details(0).UnpackTo(&info));
  EXPECT_EQ(info.reason(), "ETAG_MISMATCH");
  EXPECT_EQ(info.domain(), "aqueduct");
  EXPECT_EQ(info.metadata().at("etag"), "7");

  // Annotating keeps them; passing a peer's failure on keeps only when to
  // retry (the rest describes the peer's own request).
  EXPECT_FALSE(
      ToGrpcStatus(Annotate(WithRetryDelay(absl::UnavailableError("busy"),
                                           absl::Seconds(1)),
                            "scoring at h:1"))
          .error_details()
          .empty());
  const absl::Status passed_on = ToAbslStatus(stale);
  EXPECT_EQ(passed_on.code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(ToGrpcStatus(passed_on).error_details().empty());
  EXPECT_FALSE(ToGrpcStatus(ToAbslStatus(limited)).error_details().empty());
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
