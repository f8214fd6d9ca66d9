#include "services/intake/intake_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/auth/grpc_auth.h"
#include "common/logging/logging.h"
#include "common/server/callback.h"
#include "common/server/deadlines.h"
#include "common/server/trace.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "common/util/names.h"

namespace aqueduct::intake {

template <class Request>
absl::StatusOr<Request> IntakeServiceImpl::Own(
    const grpc::ServerContextBase& context, const char* rpc,
    const Request& request, std::string* (Request::*mutable_name)()) const {
  ASSIGN_OR_RETURN(
      auto who,
      auth::CheckCall(*authorizer_, context,
                      absl::StrCat("/aqueduct.intake.v1.IntakeService/", rpc)));
  Request own = request;
  std::string* name = (own.*mutable_name)();
  const std::string moved = InUserNamespace(*name, who.subject);
  if (absl::StartsWith(*name, "users/") &&
      name->find('/', 6) == std::string::npos && moved != *name) {
    // A parent ("users/{user}") names whose screenings to start or list: only
    // one's own, whoever the other id is (so nothing is learnt about it).
    return absl::PermissionDeniedError(
        "parent: only your own users/{id} (the subject of your token)");
  }
  *name = moved;  // a screening elsewhere answers like a missing one
  return own;
}

grpc::ServerUnaryReactor* IntakeServiceImpl::StartScreening(
    grpc::CallbackServerContext* context,
    const v1::StartScreeningRequest* request, v1::Screening* response) {
  auto own = Own(*context, "StartScreening", *request,
                 &v1::StartScreeningRequest::mutable_parent);
  if (!own.ok()) return server::FinishNow(context, ToGrpcStatus(own.status()));
  return server::FinishOnPool(
      context, pool_,
      [this, own = *std::move(own), response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(core_->StartScreening(own, deadline), response);
      });
}

grpc::ServerUnaryReactor* IntakeServiceImpl::GetScreening(
    grpc::CallbackServerContext* context,
    const v1::GetScreeningRequest* request, v1::Screening* response) {
  auto own = Own(*context, "GetScreening", *request,
                 &v1::GetScreeningRequest::mutable_name);
  if (!own.ok()) return server::FinishNow(context, ToGrpcStatus(own.status()));
  return server::FinishOnPool(
      context, pool_,
      [this, own = *std::move(own), response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(core_->GetScreening(own, deadline), response);
      });
}

grpc::ServerUnaryReactor* IntakeServiceImpl::GetNextItems(
    grpc::CallbackServerContext* context,
    const v1::GetNextItemsRequest* request, v1::NextItems* response) {
  auto own = Own(*context, "GetNextItems", *request,
                 &v1::GetNextItemsRequest::mutable_name);
  if (!own.ok()) return server::FinishNow(context, ToGrpcStatus(own.status()));
  return server::FinishOnPool(
      context, pool_,
      [this, own = *std::move(own), response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(core_->GetNextItems(own, deadline), response);
      });
}

grpc::ServerUnaryReactor* IntakeServiceImpl::SubmitAnswers(
    grpc::CallbackServerContext* context,
    const v1::SubmitAnswersRequest* request,
    v1::SubmitAnswersResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  log::TraceScope trace(server::TraceIdOf(*context));
  auto own = Own(*context, "SubmitAnswers", *request,
                 &v1::SubmitAnswersRequest::mutable_name);
  if (!own.ok()) {
    reactor->Finish(ToGrpcStatus(own.status()));
    return reactor;
  }
  // `response` lives until Finish; the owned request until `done` has run.
  core_->SubmitAnswersAsync(
      std::make_shared<const v1::SubmitAnswersRequest>(std::move(*own)),
      server::RpcDeadline(*context, max_rpc_time_), pool_,
      [reactor, response](absl::StatusOr<v1::SubmitAnswersResponse> reply) {
        reactor->Finish(ReplyFrom(std::move(reply), response));
      });
  return reactor;
}

grpc::ServerUnaryReactor* IntakeServiceImpl::CompleteScreening(
    grpc::CallbackServerContext* context,
    const v1::CompleteScreeningRequest* request,
    v1::CompleteScreeningResponse* response) {
  auto own = Own(*context, "CompleteScreening", *request,
                 &v1::CompleteScreeningRequest::mutable_name);
  if (!own.ok()) return server::FinishNow(context, ToGrpcStatus(own.status()));
  return server::FinishOnPool(
      context, pool_,
      [this, own = *std::move(own), response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(core_->CompleteScreening(own, deadline), response);
      });
}

grpc::ServerUnaryReactor* IntakeServiceImpl::AbandonScreening(
    grpc::CallbackServerContext* context,
    const v1::AbandonScreeningRequest* request, v1::Screening* response) {
  auto own = Own(*context, "AbandonScreening", *request,
                 &v1::AbandonScreeningRequest::mutable_name);
  if (!own.ok()) return server::FinishNow(context, ToGrpcStatus(own.status()));
  return server::FinishOnPool(
      context, pool_,
      [this, own = *std::move(own), response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(core_->AbandonScreening(own, deadline), response);
      });
}

grpc::ServerUnaryReactor* IntakeServiceImpl::ListMyResults(
    grpc::CallbackServerContext* context,
    const v1::ListMyResultsRequest* request,
    v1::ListMyResultsResponse* response) {
  auto own = Own(*context, "ListMyResults", *request,
                 &v1::ListMyResultsRequest::mutable_parent);
  if (!own.ok()) return server::FinishNow(context, ToGrpcStatus(own.status()));
  return server::FinishOnPool(
      context, pool_,
      [this, own = *std::move(own), response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(core_->ListMyResults(own, deadline), response);
      });
}

grpc::ServerUnaryReactor* IntakeServiceImpl::GetMyResult(
    grpc::CallbackServerContext* context, const v1::GetMyResultRequest* request,
    v1::ScreeningResult* response) {
  auto own = Own(*context, "GetMyResult", *request,
                 &v1::GetMyResultRequest::mutable_name);
  if (!own.ok()) return server::FinishNow(context, ToGrpcStatus(own.status()));
  return server::FinishOnPool(
      context, pool_,
      [this, own = *std::move(own), response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(core_->GetMyResult(own, deadline), response);
      });
}

}  // namespace aqueduct::intake
