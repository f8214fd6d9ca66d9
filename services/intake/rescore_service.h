#ifndef AQUEDUCT_SERVICES_INTAKE_RESCORE_SERVICE_H_
#define AQUEDUCT_SERVICES_INTAKE_RESCORE_SERVICE_H_

#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth/authorizer.h"
#include "common/server/callback.h"
#include "common/server/worker_pool.h"
#include "protos/intake/v1/rescore_service.grpc.pb.h"
#include "services/intake/rescore_source.h"

namespace aqueduct::intake {

// gRPC adapter over RescoreSource, on the callback API as every service:
// the caller (the batch role only) is checked inline; the checkpoint calls
// run on `pool`, and each RescoreScreenings stream on a thread of its own
// (at most kMaxStreams at once: a job's stream runs for minutes, and would
// hold a pool thread as long).
class RescoreServiceImpl final : public v1::RescoreService::CallbackService {
 public:
  static constexpr int kMaxStreams = 2;

  RescoreServiceImpl(RescoreSource* source,
                     std::shared_ptr<const auth::Authorizer> authorizer,
                     absl::Duration max_rpc_time, server::WorkerPool* pool)
      : source_(source),
        authorizer_(std::move(authorizer)),
        max_rpc_time_(max_rpc_time),
        pool_(pool) {}
  // Waits for the streams' threads (the server's shutdown cancels them).
  ~RescoreServiceImpl() override;

  grpc::ServerUnaryReactor* GetRescoreJob(
      grpc::CallbackServerContext* context,
      const v1::GetRescoreJobRequest* request,
      v1::RescoreJob* response) override;
  grpc::ServerUnaryReactor* SaveRescoreCheckpoint(
      grpc::CallbackServerContext* context,
      const v1::SaveRescoreCheckpointRequest* request,
      v1::RescoreJob* response) override;
  grpc::ServerWriteReactor<v1::RescoredPage>* RescoreScreenings(
      grpc::CallbackServerContext* context,
      const v1::RescoreScreeningsRequest* request) override;

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
  absl::Mutex mu_;
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_RESCORE_SERVICE_H_
