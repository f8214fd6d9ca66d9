#include "services/referral/referral_service.h"

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

grpc::Status ReferralServiceImpl::CreateReferral(
    grpc::ServerContext* context, const v1::CreateReferralRequest* request,
    v1::Referral* response) {
  auto result = core_->CreateReferral(
      *request, ActorOf(*context),
      server::RpcDeadline(*context, max_rpc_time_));
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status ReferralServiceImpl::ListQueue(grpc::ServerContext* context,
                                            const v1::ListQueueRequest* request,
                                            v1::ListQueueResponse* response) {
  auto result =
      core_->ListQueue(*request, server::RpcDeadline(*context, max_rpc_time_));
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace aqueduct::referral
