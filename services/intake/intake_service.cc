#include "services/intake/intake_service.h"

#include "common/server/deadlines.h"
#include "common/status/status_util.h"

namespace aqueduct::intake {
grpc::Status IntakeServiceImpl::StartScreening(
    grpc::ServerContext* context, const v1::StartScreeningRequest* request,
    v1::Screening* response) {
  return ReplyFrom(core_->StartScreening(
                   *request, server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status IntakeServiceImpl::GetScreening(
    grpc::ServerContext* context, const v1::GetScreeningRequest* request,
    v1::Screening* response) {
  return ReplyFrom(core_->GetScreening(
                   *request, server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status IntakeServiceImpl::GetNextItems(
    grpc::ServerContext* context, const v1::GetNextItemsRequest* request,
    v1::NextItems* response) {
  return ReplyFrom(core_->GetNextItems(
                   *request, server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status IntakeServiceImpl::SubmitAnswers(
    grpc::ServerContext* context, const v1::SubmitAnswersRequest* request,
    v1::SubmitAnswersResponse* response) {
  return ReplyFrom(core_->SubmitAnswers(
                   *request, server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status IntakeServiceImpl::CompleteScreening(
    grpc::ServerContext* context, const v1::CompleteScreeningRequest* request,
    v1::CompleteScreeningResponse* response) {
  return ReplyFrom(core_->CompleteScreening(
                   *request, server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status IntakeServiceImpl::AbandonScreening(grpc::ServerContext* context,
                                                 const v1::AbandonScreeningRequest* request,
                                                 v1::Screening* response) {
  return ReplyFrom(core_->AbandonScreening(*request, server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status IntakeServiceImpl::ListMyResults(grpc::ServerContext* context,
                                              const v1::ListMyResultsRequest* request,
                                              v1::ListMyResultsResponse* response) {
  return ReplyFrom(core_->ListMyResults(*request, server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

grpc::Status IntakeServiceImpl::GetMyResult(grpc::ServerContext* context,
                                            const v1::GetMyResultRequest* request,
                                            v1::ScreeningResult* response) {
  return ReplyFrom(core_->GetMyResult(*request, server::RpcDeadline(*context, max_rpc_time_)),
               response);
}

}  // namespace aqueduct::intake
