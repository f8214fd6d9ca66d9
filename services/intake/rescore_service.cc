#include "services/intake/rescore_service.h"

#include "absl/strings/str_cat.h"
#include "common/auth/grpc_auth.h"
#include "common/server/callback.h"
#include "common/server/deadlines.h"
#include "common/status/status_util.h"

namespace aqueduct::intake {

template <typename Request, typename Response, typename Call>
grpc::ServerUnaryReactor* RescoreServiceImpl::Serve(
    grpc::CallbackServerContext* context, const char* rpc, Call call,
    const Request* request, Response* response) {
  auto who =
      auth::CheckCall(*authorizer_, *context,
                      absl::StrCat("/aqueduct.intake.v1.RescoreService/", rpc));
  if (!who.ok()) return server::FinishNow(context, ToGrpcStatus(who.status()));
  return server::FinishOnPool(
      context, pool_,
      [call, request, response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(call(*request, deadline), response);
      });
}

grpc::ServerUnaryReactor* RescoreServiceImpl::GetRescoreJob(
    grpc::CallbackServerContext* context,
    const v1::GetRescoreJobRequest* request, v1::RescoreJob* response) {
  return Serve(
      context, "GetRescoreJob",
      [this](const auto& r, absl::Time d) { return source_->GetJob(r, d); },
      request, response);
}

grpc::ServerUnaryReactor* RescoreServiceImpl::SaveRescoreCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::SaveRescoreCheckpointRequest* request, v1::RescoreJob* response) {
  return Serve(
      context, "SaveRescoreCheckpoint",
      [this](const auto& r, absl::Time d) {
        return source_->SaveCheckpoint(r, d);
      },
      request, response);
}

grpc::ServerUnaryReactor* RescoreServiceImpl::ListCompletedScreenings(
    grpc::CallbackServerContext* context,
    const v1::ListCompletedScreeningsRequest* request,
    v1::ListCompletedScreeningsResponse* response) {
  auto who = auth::CheckCall(
      *authorizer_, *context,
      "/aqueduct.intake.v1.RescoreService/ListCompletedScreenings");
  if (!who.ok()) return server::FinishNow(context, ToGrpcStatus(who.status()));
  // Filled in place: the response is on the call's arena.
  return server::FinishOnPool(
      context, pool_,
      [this, request, response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ToGrpcStatus(
            source_->ListCompleted(*request, deadline, response));
      });
}

grpc::ServerUnaryReactor* RescoreServiceImpl::StoreRescoreOutcomes(
    grpc::CallbackServerContext* context,
    const v1::StoreRescoreOutcomesRequest* request,
    v1::StoreRescoreOutcomesResponse* response) {
  return Serve(
      context, "StoreRescoreOutcomes",
      [this](const auto& r, absl::Time d) {
        return source_->StoreOutcomes(r, d);
      },
      request, response);
}

grpc::ServerUnaryReactor* RescoreServiceImpl::GetReviewContexts(
    grpc::CallbackServerContext* context,
    const v1::GetReviewContextsRequest* request,
    v1::GetReviewContextsResponse* response) {
  return Serve(
      context, "GetReviewContexts",
      [this](const auto& r, absl::Time d) {
        return source_->GetReviewContexts(r, d);
      },
      request, response);
}

}  // namespace aqueduct::intake
