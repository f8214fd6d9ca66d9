#ifndef AQUEDUCT_SERVICES_INTAKE_RESCORE_SERVICE_H_
#define AQUEDUCT_SERVICES_INTAKE_RESCORE_SERVICE_H_

#include <memory>

#include "absl/time/time.h"
#include "common/auth/authorizer.h"
#include "common/server/callback.h"
#include "common/server/worker_pool.h"
#include "protos/intake/v1/rescore_service.grpc.pb.h"
#include "services/intake/rescore_source.h"

namespace aqueduct::intake {

// gRPC adapter over RescoreSource, on the callback API as every service:
// the caller (the batch role only) is checked inline, the store's work runs
// on `pool`.
class RescoreServiceImpl final : public v1::RescoreService::CallbackService {
 public:
  RescoreServiceImpl(RescoreSource* source,
                     std::shared_ptr<const auth::Authorizer> authorizer,
                     absl::Duration max_rpc_time, server::WorkerPool* pool)
      : source_(source),
        authorizer_(std::move(authorizer)),
        max_rpc_time_(max_rpc_time),
        pool_(pool) {
    // Pages and outcome batches are thousands of small messages each.
    SetMessageAllocatorFor_ListCompletedScreenings(&page_allocator_);
    SetMessageAllocatorFor_StoreRescoreOutcomes(&outcomes_allocator_);
  }

  grpc::ServerUnaryReactor* GetRescoreJob(
      grpc::CallbackServerContext* context,
      const v1::GetRescoreJobRequest* request,
      v1::RescoreJob* response) override;
  grpc::ServerUnaryReactor* SaveRescoreCheckpoint(
      grpc::CallbackServerContext* context,
      const v1::SaveRescoreCheckpointRequest* request,
      v1::RescoreJob* response) override;
  grpc::ServerUnaryReactor* ListCompletedScreenings(
      grpc::CallbackServerContext* context,
      const v1::ListCompletedScreeningsRequest* request,
      v1::ListCompletedScreeningsResponse* response) override;
  grpc::ServerUnaryReactor* StoreRescoreOutcomes(
      grpc::CallbackServerContext* context,
      const v1::StoreRescoreOutcomesRequest* request,
      v1::StoreRescoreOutcomesResponse* response) override;
  grpc::ServerUnaryReactor* GetReviewContexts(
      grpc::CallbackServerContext* context,
      const v1::GetReviewContextsRequest* request,
      v1::GetReviewContextsResponse* response) override;

 private:
  // The caller checked inline, then `call(request, deadline)` on the pool.
  template <typename Request, typename Response, typename Call>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context,
                                  const char* rpc, Call call,
                                  const Request* request, Response* response);

  RescoreSource* source_;
  std::shared_ptr<const auth::Authorizer> authorizer_;
  absl::Duration max_rpc_time_;
  server::WorkerPool* pool_;
  server::ArenaMessageAllocator<v1::ListCompletedScreeningsRequest,
                                v1::ListCompletedScreeningsResponse>
      page_allocator_;
  server::ArenaMessageAllocator<v1::StoreRescoreOutcomesRequest,
                                v1::StoreRescoreOutcomesResponse>
      outcomes_allocator_;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_RESCORE_SERVICE_H_
