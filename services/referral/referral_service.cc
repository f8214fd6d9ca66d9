#include "services/referral/referral_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/grpc_auth.h"
#include "common/server/deadlines.h"
#include "common/status/status_util.h"
#include "common/util/names.h"

namespace aqueduct::referral {
namespace {
constexpr char kService[] = "/aqueduct.referral.v1.ReferralService/";

// A streamed unary handler's request, read into a message it owns.
// INVALID_ARGUMENT for bytes that are not the message (a plain handler
// never runs then); a caller that went away gets nothing either way.
template <typename Request, typename Response>
absl::Status ReadRequest(grpc::ServerUnaryStreamer<Request, Response>* stream,
                         Request* request) {
  if (stream->Read(request)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "request: not a ", Request::descriptor()->name(), " message"));
}

// ReplyFrom for a streamed unary handler.
template <typename Result, typename Request, typename Response>
grpc::Status WriteReply(Result result,
                        grpc::ServerUnaryStreamer<Request, Response>* stream) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  if (!stream->Write(*result))
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the reply could not be sent");
  return grpc::Status::OK;
}
}  // namespace

absl::StatusOr<Actor> ReferralServiceImpl::Caller(
    const grpc::ServerContext& context, const char* rpc) const {
  auto id = auth::CheckCall(*authorizer_, context, absl::StrCat(kService, rpc));
  if (!id.ok()) return id.status();
  return Actor{id->subject, std::string(auth::RoleName(id->role)),
               id->licensed_states};
}

grpc::Status ReferralServiceImpl::StreamedCreateReferral(
    grpc::ServerContext* context,
    grpc::ServerUnaryStreamer<v1::CreateReferralRequest, v1::Referral>*
        stream) {
  auto actor =
      Caller(*context, "CreateReferral");  // before the request is read
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  v1::CreateReferralRequest request;
  if (absl::Status s = ReadRequest(stream, &request); !s.ok())
    return ToGrpcStatus(s);
  return WriteReply(
      core_->CreateReferral(std::move(request), *actor,
                            server::RpcDeadline(*context, max_rpc_time_)),
      stream);
}

grpc::Status ReferralServiceImpl::StreamedCreateReferrals(
    grpc::ServerContext* context,
    grpc::ServerUnaryStreamer<v1::CreateReferralsRequest,
                              v1::CreateReferralsResponse>* stream) {
  auto actor = Caller(*context, "CreateReferrals");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  v1::CreateReferralsRequest request;
  if (absl::Status s = ReadRequest(stream, &request); !s.ok())
    return ToGrpcStatus(s);
  return WriteReply(
      core_->CreateReferrals(std::move(request), *actor,
                             server::RpcDeadline(*context, max_rpc_time_)),
      stream);
}

grpc::Status ReferralServiceImpl::ListQueue(grpc::ServerContext* context,
                                            const v1::ListQueueRequest* request,
                                            v1::ListQueueResponse* response) {
  auto actor = Caller(*context, "ListQueue");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  return ReplyFrom(
      core_->ListQueue(*request, *actor,
                       server::RpcDeadline(*context, max_rpc_time_)),
      response);
}

grpc::Status ReferralServiceImpl::ClaimCase(grpc::ServerContext* context,
                                            const v1::ClaimCaseRequest* request,
                                            v1::Referral* response) {
  auto actor = Caller(*context, "ClaimCase");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  return ReplyFrom(
      core_->ClaimCase(*request, *actor,
                       server::RpcDeadline(*context, max_rpc_time_)),
      response);
}

grpc::Status ReferralServiceImpl::ReleaseCase(
    grpc::ServerContext* context, const v1::ReleaseCaseRequest* request,
    v1::Referral* response) {
  auto actor = Caller(*context, "ReleaseCase");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  return ReplyFrom(
      core_->ReleaseCase(*request, *actor,
                         server::RpcDeadline(*context, max_rpc_time_)),
      response);
}

grpc::Status ReferralServiceImpl::DecideCase(
    grpc::ServerContext* context, const v1::DecideCaseRequest* request,
    v1::Referral* response) {
  auto actor = Caller(*context, "DecideCase");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  return ReplyFrom(
      core_->DecideCase(*request, *actor,
                        server::RpcDeadline(*context, max_rpc_time_)),
      response);
}

grpc::Status ReferralServiceImpl::GetCase(grpc::ServerContext* context,
                                          const v1::GetCaseRequest* request,
                                          v1::Referral* response) {
  auto actor = Caller(*context, "GetCase");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  return ReplyFrom(core_->GetCase(*request, *actor,
                                  server::RpcDeadline(*context, max_rpc_time_)),
                   response);
}

grpc::Status ReferralServiceImpl::ListAuditEvents(
    grpc::ServerContext* context, const v1::ListAuditEventsRequest* request,
    v1::ListAuditEventsResponse* response) {
  auto actor = Caller(*context, "ListAuditEvents");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  return ReplyFrom(
      core_->ListAuditEvents(*request, *actor,
                             server::RpcDeadline(*context, max_rpc_time_)),
      response);
}

grpc::Status ReferralServiceImpl::GetMyReferral(
    grpc::ServerContext* context, const v1::GetMyReferralRequest* request,
    v1::MyReferral* response) {
  auto actor = Caller(*context, "GetMyReferral");
  if (!actor.ok()) return ToGrpcStatus(actor.status());
  // A person reads only their own: the screening is looked up in the
  // caller's namespace, so another person's answers like a missing one.
  v1::GetMyReferralRequest own = *request;
  own.set_screening(InUserNamespace(request->screening(), actor->id));
  return ReplyFrom(
      core_->GetMyReferral(own, server::RpcDeadline(*context, max_rpc_time_)),
      response);
}

grpc::Status ReferralServiceImpl::WatchQueue(
    grpc::ServerContext* context, const v1::WatchQueueRequest* request,
    grpc::ServerWriter<v1::QueueEvent>* writer) {
  auto caller = Caller(*context, "WatchQueue");
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const Actor actor = *std::move(caller);
  auto cursor = core_->StartWatch(*request, actor, absl::Now() + max_rpc_time_);
  if (!cursor.ok()) return ToGrpcStatus(cursor.status());
  // Send the starting cursor first so a portal can resume from it even if
  // nothing happens before it disconnects.
  v1::QueueEvent hello;
  hello.set_cursor(*cursor);
  hello.set_kind("watching");
  if (!writer->Write(hello)) return grpc::Status::CANCELLED;
  std::string position = *cursor;
  while (!context->IsCancelled()) {
    absl::Status s = core_->WatchStep(
        *request, actor, &position, absl::Milliseconds(500),
        [&](const v1::QueueEvent& e) { return writer->Write(e); },
        absl::Now() + absl::Seconds(5));
    if (s.code() == absl::StatusCode::kCancelled)
      return grpc::Status::CANCELLED;
    if (!s.ok())
      return ToGrpcStatus(s);  // e.g. Redis down: reconnect with the cursor
  }
  return grpc::Status::CANCELLED;
}

}  // namespace aqueduct::referral
