#ifndef AQUEDUCT_SERVICES_REFERRAL_REFERRAL_SERVICE_H_
#define AQUEDUCT_SERVICES_REFERRAL_REFERRAL_SERVICE_H_

#include <memory>

#include "absl/time/time.h"
#include "common/auth/authorizer.h"
#include "common/server/worker_pool.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "services/referral/queue_feed.h"
#include "services/referral/referral_core.h"

namespace aqueduct::referral {

// gRPC adapter over ReferralCore, on gRPC's callback API like every service
// here (README, "One serving style"). No handler blocks a gRPC thread: the
// caller's token is checked inline, then the work, which makes blocking
// Redis round trips, runs on `pool` (common/server/callback.h); a full pool
// answers UNAVAILABLE at once.
//
// WatchQueue streams on a reactor (QueueWatcher in the .cc), fed by the
// process's one QueueFeed: a watching portal holds no thread and no Redis
// connection while it waits; its steps (filtering what the feed read and
// writing it) run on `fanout_pool`, and a portal's catch-up reads from
// Redis, when it resumes from an old cursor, on `catchup_pool`.
//
// The two creates are raw callback methods: the handler parses the body
// into a message of its own (after checking the caller; bytes that are not
// the message get INVALID_ARGUMENT naming it), so the core moves the
// results (each ~1.8 kB in ~100 allocations) into the case instead of
// copying them out of a const request. A re-scoring batch sends two full
// results per case.
//
// WatchQueue is raw too: each event goes out as the bytes the feed
// serialized once for every stream (the request is parsed here, INVALID_
// ARGUMENT when it is not one).
using ReferralServiceBase =
    v1::ReferralService::WithRawCallbackMethod_CreateReferral<
        v1::ReferralService::WithRawCallbackMethod_CreateReferrals<
            v1::ReferralService::WithRawCallbackMethod_WatchQueue<
                v1::ReferralService::CallbackService>>>;

class ReferralServiceImpl final : public ReferralServiceBase {
 public:
  // Largest request accepted: CreateReferrals carries up to 1000 cases,
  // each with two full results (~3.5 kB, 3.5 MB in all) with room to spare;
  // batch jobs send 200 at a time. Anything larger is RESOURCE_EXHAUSTED
  // before it is parsed (gRPC still receives it first). With
  // --grpc_memory_mb it bounds what one request can make the process hold;
  // what a flood holds grows with the requests in flight (bench/RESULTS.md,
  // memory).
  static constexpr int kMaxRequestBytes = 6 << 20;

  ReferralServiceImpl(ReferralCore* core,
                      std::shared_ptr<const auth::Authorizer> authorizer,
                      absl::Duration max_rpc_time, server::WorkerPool* pool,
                      server::WorkerPool* fanout_pool,
                      server::WorkerPool* catchup_pool, QueueFeed* feed)
      : core_(core),
        authorizer_(std::move(authorizer)),
        max_rpc_time_(max_rpc_time),
        pool_(pool),
        fanout_pool_(fanout_pool),
        catchup_pool_(catchup_pool),
        feed_(feed) {}

  grpc::ServerUnaryReactor* CreateReferral(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* CreateReferrals(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListQueue(grpc::CallbackServerContext* context,
                                      const v1::ListQueueRequest* request,
                                      v1::ListQueueResponse* response) override;
  grpc::ServerUnaryReactor* ClaimCase(grpc::CallbackServerContext* context,
                                      const v1::ClaimCaseRequest* request,
                                      v1::Referral* response) override;
  grpc::ServerUnaryReactor* ReleaseCase(grpc::CallbackServerContext* context,
                                        const v1::ReleaseCaseRequest* request,
                                        v1::Referral* response) override;
  grpc::ServerUnaryReactor* DecideCase(grpc::CallbackServerContext* context,
                                       const v1::DecideCaseRequest* request,
                                       v1::Referral* response) override;
  grpc::ServerUnaryReactor* GetCase(grpc::CallbackServerContext* context,
                                    const v1::GetCaseRequest* request,
                                    v1::Referral* response) override;
  grpc::ServerUnaryReactor* ListAuditEvents(
      grpc::CallbackServerContext* context,
      const v1::ListAuditEventsRequest* request,
      v1::ListAuditEventsResponse* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchQueue(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GetMyReferral(
      grpc::CallbackServerContext* context,
      const v1::GetMyReferralRequest* request,
      v1::MyReferral* response) override;

 private:
  // The verified caller of `rpc` (common/auth: token, then the RPC x role
  // policy), or the status to answer with.
  absl::StatusOr<Actor> Caller(const grpc::ServerContextBase& context,
                               const char* rpc) const;

  // A create: the caller checked inline; on the pool, the body parsed into
  // a Request that `create(request, actor, deadline)` may move from, and its
  // reply serialized.
  template <typename Request, typename Response, typename Create>
  grpc::ServerUnaryReactor* ServeCreate(grpc::CallbackServerContext* context,
                                        const char* rpc, Create create,
                                        const grpc::ByteBuffer* body,
                                        grpc::ByteBuffer* reply);
  // A staff call: the caller checked inline, then `call(request, actor,
  // deadline)` on the pool with the request as gRPC holds it (alive until
  // the call finishes).
  template <typename Request, typename Response, typename Call>
  grpc::ServerUnaryReactor* ServeStaff(grpc::CallbackServerContext* context,
                                       const char* rpc, Call call,
                                       const Request* request,
                                       Response* response);

  ReferralCore* core_;
  std::shared_ptr<const auth::Authorizer> authorizer_;
  absl::Duration max_rpc_time_;
  server::WorkerPool* pool_;
  server::WorkerPool* fanout_pool_;
  server::WorkerPool* catchup_pool_;
  QueueFeed* feed_;
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_REFERRAL_SERVICE_H_
