#ifndef AQUEDUCT_COMMON_STATUS_STATUS_UTIL_H_
#define AQUEDUCT_COMMON_STATUS_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace aqueduct {

// What an error message sent to a caller holds at most: a message may quote
// what the caller sent (an unknown id, a bad value's field), and a caller
// must not be able to make an error as large as its request.
inline constexpr size_t kMaxErrorMessageBytes = 512;

// The one mapping between absl::Status and grpc::Status. Both enums carry the
// google.rpc.Code numbering, so the mapping is code for code; the message is
// kept, cut to kMaxErrorMessageBytes (at a UTF-8 character boundary, ending
// in "... (cut)") when longer.
//
// A failed call also carries machine-readable details (AIP-193): a
// google.rpc.Status in gRPC's error details (the grpc-status-details-bin
// trailer) with the same code and message and:
//   - for INVALID_ARGUMENT, a google.rpc.BadRequest naming the field, from
//     the message's "field: description" form every Aqueduct message
//     follows (absent when a message names no field);
//   - the details set with WithRetryDelay and WithErrorInfo below.
grpc::Status ToGrpcStatus(const absl::Status& status);
// Keeps the code, the message and a RetryInfo (as a payload, so a peer's
// "when to retry" survives being passed on; its other details describe
// its own request and are dropped).
absl::Status ToAbslStatus(const grpc::Status& status);

// google.rpc.RetryInfo: when to try again (a rate limit's window, an
// overloaded service). Returns `status` with the detail attached.
absl::Status WithRetryDelay(absl::Status status, absl::Duration delay);
// google.rpc.ErrorInfo: `reason` (UPPER_SNAKE_CASE, stable: clients switch
// on it) in domain "aqueduct", with facts a client acts on, e.g. the
// current etag for ETAG_MISMATCH. Never an answer, a name or a token.
absl::Status WithErrorInfo(
    absl::Status status, absl::string_view reason,
    std::initializer_list<std::pair<absl::string_view, std::string>> metadata);

// The field a message names ("answers[2].item_id: ..." ->
// "answers[2].item_id"), or "" when it does not start with one.
absl::string_view FieldOf(absl::string_view message);

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
// Details stay attached.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace aqueduct

#endif  // AQUEDUCT_COMMON_STATUS_STATUS_UTIL_H_
