#ifndef AQUEDUCT_TESTS_TESTING_STATUS_MATCHERS_H_
#define AQUEDUCT_TESTS_TESTING_STATUS_MATCHERS_H_

// Debian's Abseil has no status_matchers.h; these cover what the tests need.

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace aqueduct::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

MATCHER_P(StatusIs, code,
          absl::StrCat("has code ", absl::StatusCodeToString(code))) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           absl::StrCat("has code ", absl::StatusCodeToString(code))) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(
             message_matcher, std::string(s.message()), result_listener);
}

MATCHER_P(GrpcIs, code, "has gRPC code") {
  const grpc::Status& s = arg;
  *result_listener << "gRPC status is " << s.error_code() << " "
                   << s.error_message();
  return s.error_code() == code;
}

}  // namespace aqueduct::testing

#endif  // AQUEDUCT_TESTS_TESTING_STATUS_MATCHERS_H_
