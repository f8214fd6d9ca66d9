#ifndef AQUEDUCT_SERVICES_INTAKE_INTAKE_SERVICE_H_
#define AQUEDUCT_SERVICES_INTAKE_INTAKE_SERVICE_H_

#include <memory>

#include "absl/time/time.h"
#include "common/auth/authorizer.h"
#include "protos/intake/v1/intake_service.grpc.pb.h"
#include "services/intake/intake_core.h"

namespace aqueduct::intake {

// gRPC adapter over IntakeCore, on gRPC's callback API like every service
// here (README, "One serving style"). No handler blocks a gRPC thread: the
// caller's token is checked inline, then the work, which blocks on Redis and
// on scoring and referral, runs on `pool` (common/server/callback.h). The
// usual SubmitAnswers page blocks nowhere (IntakeCore::SubmitAnswersAsync)
// and takes a pool thread only for what must block. A full pool answers
// UNAVAILABLE at once.
class IntakeServiceImpl final : public v1::IntakeService::CallbackService {
 public:
  // Largest request accepted by the intake process (its RescoreService
  // too): a page of answers is a few kB, the largest request any caller
  // needs; anything larger is RESOURCE_EXHAUSTED before it is parsed (gRPC
  // still receives it first). With --grpc_memory_mb it bounds what one
  // request can make the process hold; what a flood holds grows with the
  // requests in flight (bench/RESULTS.md, memory).
  static constexpr int kMaxRequestBytes = 256 << 10;

  // Every call is checked against the caller's token first (common/auth):
  // only the person screened calls intake, and only in their own namespace
  // (users/{their id}/...), so another person's screening answers exactly
  // like a missing one.
  IntakeServiceImpl(IntakeCore* core,
                    std::shared_ptr<const auth::Authorizer> authorizer,
                    absl::Duration max_rpc_time, server::WorkerPool* pool)
      : core_(core),
        authorizer_(std::move(authorizer)),
        max_rpc_time_(max_rpc_time),
        pool_(pool) {}

  grpc::ServerUnaryReactor* StartScreening(
      grpc::CallbackServerContext* context,
      const v1::StartScreeningRequest* request,
      v1::Screening* response) override;
  grpc::ServerUnaryReactor* GetScreening(grpc::CallbackServerContext* context,
                                         const v1::GetScreeningRequest* request,
                                         v1::Screening* response) override;
  grpc::ServerUnaryReactor* GetNextItems(grpc::CallbackServerContext* context,
                                         const v1::GetNextItemsRequest* request,
                                         v1::NextItems* response) override;
  grpc::ServerUnaryReactor* SubmitAnswers(
      grpc::CallbackServerContext* context,
      const v1::SubmitAnswersRequest* request,
      v1::SubmitAnswersResponse* response) override;
  grpc::ServerUnaryReactor* CompleteScreening(
      grpc::CallbackServerContext* context,
      const v1::CompleteScreeningRequest* request,
      v1::CompleteScreeningResponse* response) override;
  grpc::ServerUnaryReactor* AbandonScreening(
      grpc::CallbackServerContext* context,
      const v1::AbandonScreeningRequest* request,
      v1::Screening* response) override;
  grpc::ServerUnaryReactor* ListMyResults(
      grpc::CallbackServerContext* context,
      const v1::ListMyResultsRequest* request,
      v1::ListMyResultsResponse* response) override;
  grpc::ServerUnaryReactor* GetMyResult(grpc::CallbackServerContext* context,
                                        const v1::GetMyResultRequest* request,
                                        v1::ScreeningResult* response) override;

 private:
  // The request with its screening name moved into the caller's namespace
  // (NOT_FOUND like a missing one follows), or the status to answer with:
  // UNAUTHENTICATED, PERMISSION_DENIED (not a patient, or a parent
  // "users/{id}" that is not the caller's own).
  template <class Request>
  absl::StatusOr<Request> Own(const grpc::ServerContextBase& context,
                              const char* rpc, const Request& request,
                              std::string* (Request::*mutable_name)()) const;

  IntakeCore* core_;
  std::shared_ptr<const auth::Authorizer> authorizer_;
  absl::Duration max_rpc_time_;
  server::WorkerPool* pool_;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_INTAKE_SERVICE_H_
