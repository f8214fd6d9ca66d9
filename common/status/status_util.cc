#include "common/status/status_util.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace aqueduct {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  absl::string_view message = status.message();
  if (message.size() <= kMaxErrorMessageBytes) {
    return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                        std::string(message));
  }
  constexpr absl::string_view kCut = "... (cut)";
  size_t keep = kMaxErrorMessageBytes - kCut.size();
  // Back to the start of a UTF-8 character (never inside one).
  while (keep > 0 && (static_cast<unsigned char>(message[keep]) & 0xC0) == 0x80)
    --keep;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      absl::StrCat(message.substr(0, keep), kCut));
}

absl::Status ToAbslStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(context, ": ", status.message()));
}

}  // namespace aqueduct
