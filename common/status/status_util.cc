#include "common/status/status_util.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/any.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace aqueduct {
namespace {

constexpr char kTypePrefix[] = "type.googleapis.com/";

std::string TypeUrl(const google::protobuf::Message& m) {
  return absl::StrCat(kTypePrefix, m.GetDescriptor()->full_name());
}

std::string CutMessage(absl::string_view message) {
  if (message.size() <= kMaxErrorMessageBytes) return std::string(message);
  constexpr absl::string_view kCut = "... (cut)";
  size_t keep = kMaxErrorMessageBytes - kCut.size();
  // Back to the start of a UTF-8 character (never inside one).
  while (keep > 0 && (static_cast<unsigned char>(message[keep]) & 0xC0) == 0x80)
    --keep;
  return absl::StrCat(message.substr(0, keep), kCut);
}

}  // namespace

absl::string_view FieldOf(absl::string_view message) {
  const size_t colon = message.find(": ");
  if (colon == 0 || colon == absl::string_view::npos || colon > 128) return {};
  const absl::string_view field = message.substr(0, colon);
  for (char c : field) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '.' && c != '[' && c != ']')
      return {};
  }
  return field;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message = CutMessage(status.message());
  google::rpc::Status details;
  if (status.code() == absl::StatusCode::kInvalidArgument) {
    if (const absl::string_view field = FieldOf(message); !field.empty()) {
      google::rpc::BadRequest bad;
      auto* v = bad.add_field_violations();
      v->set_field(std::string(field));
      v->set_description(message.substr(field.size() + 2));
      auto* any = details.add_details();
      any->set_type_url(TypeUrl(bad));
      any->set_value(bad.SerializeAsString());
    }
  }
  status.ForEachPayload(
      [&details](absl::string_view type_url, const absl::Cord& value) {
        if (!absl::StartsWith(type_url, kTypePrefix)) return;
        auto* any = details.add_details();
        any->set_type_url(std::string(type_url));
        any->set_value(std::string(value));
      });
  if (details.details().empty()) return grpc::Status(code, std::move(message));
  details.set_code(static_cast<int32_t>(code));
  details.set_message(message);
  return grpc::Status(code, std::move(message), details.SerializeAsString());
}

absl::Status ToAbslStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()),
                   status.error_message());
  google::rpc::Status details;
  if (!status.error_details().empty() &&
      details.ParseFromString(status.error_details())) {
    for (const auto& any : details.details()) {
      // Only when to retry passes on: a peer's other details (its etags,
      // its fields) describe the peer's request, not this service's.
      if (any.type_url() != TypeUrl(google::rpc::RetryInfo())) continue;
      out.SetPayload(any.type_url(), absl::Cord(any.value()));
    }
  }
  return out;
}

absl::Status WithRetryDelay(absl::Status status, absl::Duration delay) {
  google::rpc::RetryInfo retry;
  const int64_t ms = absl::ToInt64Milliseconds(delay);
  retry.mutable_retry_delay()->set_seconds(ms / 1000);
  retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>(ms % 1000) *
                                         1000000);
  status.SetPayload(TypeUrl(retry), absl::Cord(retry.SerializeAsString()));
  return status;
}

absl::Status WithErrorInfo(
    absl::Status status, absl::string_view reason,
    std::initializer_list<std::pair<absl::string_view, std::string>> metadata) {
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain("aqueduct");
  for (const auto& [key, value] : metadata)
    (*info.mutable_metadata())[std::string(key)] = value;
  status.SetPayload(TypeUrl(info), absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  absl::Status out(status.code(),
                   absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& v) {
    out.SetPayload(url, v);
  });
  return out;
}

}  // namespace aqueduct
