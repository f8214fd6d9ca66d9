#include "services/gateway/http_errors.h"

#include "common/status/status_util.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace aqueduct::gateway {

int HttpStatusFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 499;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::DATA_LOSS:
    default:
      return 500;
  }
}

namespace {

bool DetailsOf(const grpc::Status& status, google::rpc::Status* out) {
  return !status.error_details().empty() &&
         out->ParseFromString(status.error_details()) &&
         out->code() == static_cast<int>(status.error_code());
}

std::string Print(const google::rpc::Status& s) {
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(s, &json).ok()) {
    google::rpc::Status bare;
    bare.set_code(s.code());
    bare.set_message(s.message());
    json.clear();
    (void)google::protobuf::util::MessageToJsonString(bare, &json);
  }
  return json;
}

}  // namespace

std::string StatusJson(const grpc::Status& status) {
  google::rpc::Status s;
  if (!DetailsOf(status, &s)) {
    s.Clear();
    s.set_code(static_cast<int>(status.error_code()));
    s.set_message(status.error_message());
  }
  return Print(s);
}

std::string StatusJson(const absl::Status& status) {
  return StatusJson(ToGrpcStatus(status));
}

int RetryAfterSeconds(const grpc::Status& status) {
  google::rpc::Status s;
  if (!DetailsOf(status, &s)) return 0;
  for (const auto& any : s.details()) {
    google::rpc::RetryInfo retry;
    if (any.UnpackTo(&retry)) {
      const int64_t ms = retry.retry_delay().seconds() * 1000 +
                         retry.retry_delay().nanos() / 1000000;
      return static_cast<int>((ms + 999) / 1000);
    }
  }
  return 0;
}

}  // namespace aqueduct::gateway
