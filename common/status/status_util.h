#ifndef AQUEDUCT_COMMON_STATUS_STATUS_UTIL_H_
#define AQUEDUCT_COMMON_STATUS_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace aqueduct {

// What an error message sent to a caller holds at most: a message may quote
// what the caller sent (an unknown id, a bad value's field), and a caller
// must not be able to make an error as large as its request.
inline constexpr size_t kMaxErrorMessageBytes = 512;

// The one mapping between absl::Status and grpc::Status. Both enums carry the
// google.rpc.Code numbering, so the mapping is code for code; the message is
// kept, cut to kMaxErrorMessageBytes (at a UTF-8 character boundary, ending
// in "... (cut)") when longer.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status ToAbslStatus(const grpc::Status& status);

// The handler's last line: maps a core result once, moving the value into
// the response on success.
template <typename Result, typename Response>
grpc::Status ReplyFrom(Result result, Response* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

// Prefixes a status message with context ("scoring at 127.0.0.1:7001: ...")
// while keeping its code.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace aqueduct

#endif  // AQUEDUCT_COMMON_STATUS_STATUS_UTIL_H_
