#include "services/referral/referral_service.h"

#include "absl/time/clock.h"
#include "common/server/deadlines.h"
#include "common/status/status_util.h"

namespace aqueduct::referral {
Actor ReferralServiceImpl::ActorOf(const grpc::ServerContext& context) {
  Actor actor;
  const auto& md = context.client_metadata();
  auto it = md.find("x-aqueduct-actor");
  if (it == md.end()) return actor;
  std::string value(it->second.data(), it->second.size());
  size_t colon = value.find(':');
  if (colon == std::string::npos) {
    actor.id = value;
  } else {
    actor.role = value.substr(0, colon);
    actor.id = value.substr(colon + 1);
  }
  return actor;
}

grpc::Status ReferralServiceImpl::CreateReferral(grpc::ServerContext* context,
                                                 const v1::CreateReferralRequest* request,
                                                 v1::Referral* response) {
  return ReplyFrom(core_->CreateReferral(*request, ActorOf(*context),
                                     server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status ReferralServiceImpl::CreateReferrals(grpc::ServerContext* context,
                                                  const v1::CreateReferralsRequest* request,
                                                  v1::CreateReferralsResponse* response) {
  return ReplyFrom(core_->CreateReferrals(*request, ActorOf(*context),
                                          server::RpcDeadline(*context, max_rpc_time_)),
                   response);
}

grpc::Status ReferralServiceImpl::ListQueue(grpc::ServerContext* context,
                                            const v1::ListQueueRequest* request,
                                            v1::ListQueueResponse* response) {
  return ReplyFrom(core_->ListQueue(*request, ActorOf(*context), server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status ReferralServiceImpl::ClaimCase(grpc::ServerContext* context,
                                            const v1::ClaimCaseRequest* request,
                                            v1::Referral* response) {
  return ReplyFrom(core_->ClaimCase(*request, ActorOf(*context), server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status ReferralServiceImpl::ReleaseCase(grpc::ServerContext* context,
                                              const v1::ReleaseCaseRequest* request,
                                              v1::Referral* response) {
  return ReplyFrom(core_->ReleaseCase(*request, ActorOf(*context), server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status ReferralServiceImpl::DecideCase(grpc::ServerContext* context,
                                             const v1::DecideCaseRequest* request,
                                             v1::Referral* response) {
  return ReplyFrom(core_->DecideCase(*request, ActorOf(*context), server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status ReferralServiceImpl::GetCase(grpc::ServerContext* context, const v1::GetCaseRequest* request,
                                          v1::Referral* response) {
  return ReplyFrom(core_->GetCase(*request, ActorOf(*context), server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status ReferralServiceImpl::ListAuditEvents(grpc::ServerContext* context,
                                                  const v1::ListAuditEventsRequest* request,
                                                  v1::ListAuditEventsResponse* response) {
  return ReplyFrom(core_->ListAuditEvents(*request, ActorOf(*context),
                                      server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status ReferralServiceImpl::GetMyReferral(grpc::ServerContext* context,
                                                const v1::GetMyReferralRequest* request,
                                                v1::MyReferral* response) {
  return ReplyFrom(core_->GetMyReferral(*request, server::RpcDeadline(*context, max_rpc_time_)), response);
}

grpc::Status ReferralServiceImpl::WatchQueue(grpc::ServerContext* context,
                                             const v1::WatchQueueRequest* request,
                                             grpc::ServerWriter<v1::QueueEvent>* writer) {
  const Actor actor = ActorOf(*context);
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
    if (s.code() == absl::StatusCode::kCancelled) return grpc::Status::CANCELLED;
    if (!s.ok()) return ToGrpcStatus(s);  // e.g. Redis down: reconnect with the cursor
  }
  return grpc::Status::CANCELLED;
}

}  // namespace aqueduct::referral
