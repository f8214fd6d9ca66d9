#ifndef AQUEDUCT_SERVICES_REFERRAL_REFERRAL_SERVICE_H_
#define AQUEDUCT_SERVICES_REFERRAL_REFERRAL_SERVICE_H_

#include <memory>

#include "absl/time/time.h"
#include "common/auth/authorizer.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "services/referral/referral_core.h"

namespace aqueduct::referral {

// gRPC adapter over ReferralCore. Uses the synchronous API: every handler
// makes blocking Redis round trips, and on gRPC 1.51 blocking inside a
// callback reactor starves the server (grpc/grpc#36609); the sync API gives
// each call its own thread from a pool sized by ServerOptions::max_threads.
// WatchQueue holds its thread for the life of the stream (blocking reads of
// the Redis stream, 500 ms at a time, so it notices cancellation and
// shutdown quickly): size --threads for the expected number of portals.
//
// The two creates are sync "streamed unary" handlers: the same unary RPC on
// the wire, but the handler reads the request into a message of its own,
// so the core moves the results (each ~1.8 kB in ~100 allocations) into the
// case instead of copying them out of the const request a plain handler
// gets. A re-scoring batch sends two full results per case.
class ReferralServiceImpl final
    : public v1::ReferralService::WithStreamedUnaryMethod_CreateReferral<
          v1::ReferralService::WithStreamedUnaryMethod_CreateReferrals<
              v1::ReferralService::Service>> {
 public:
  // Largest request accepted: CreateReferrals carries up to 1000 cases,
  // each with two full results (~3.5 kB); batch jobs send 200 at a time.
  static constexpr int kMaxRequestBytes = 8 << 20;

  ReferralServiceImpl(ReferralCore* core,
                      std::shared_ptr<const auth::Authorizer> authorizer,
                      absl::Duration max_rpc_time)
      : core_(core),
        authorizer_(std::move(authorizer)),
        max_rpc_time_(max_rpc_time) {}

  grpc::Status StreamedCreateReferral(
      grpc::ServerContext* context,
      grpc::ServerUnaryStreamer<v1::CreateReferralRequest, v1::Referral>*
          stream) override;
  grpc::Status StreamedCreateReferrals(
      grpc::ServerContext* context,
      grpc::ServerUnaryStreamer<v1::CreateReferralsRequest,
                                v1::CreateReferralsResponse>* stream) override;
  grpc::Status ListQueue(grpc::ServerContext* context,
                         const v1::ListQueueRequest* request,
                         v1::ListQueueResponse* response) override;
  grpc::Status ClaimCase(grpc::ServerContext* context,
                         const v1::ClaimCaseRequest* request,
                         v1::Referral* response) override;
  grpc::Status ReleaseCase(grpc::ServerContext* context,
                           const v1::ReleaseCaseRequest* request,
                           v1::Referral* response) override;
  grpc::Status DecideCase(grpc::ServerContext* context,
                          const v1::DecideCaseRequest* request,
                          v1::Referral* response) override;
  grpc::Status GetCase(grpc::ServerContext* context,
                       const v1::GetCaseRequest* request,
                       v1::Referral* response) override;
  grpc::Status ListAuditEvents(grpc::ServerContext* context,
                               const v1::ListAuditEventsRequest* request,
                               v1::ListAuditEventsResponse* response) override;
  grpc::Status WatchQueue(grpc::ServerContext* context,
                          const v1::WatchQueueRequest* request,
                          grpc::ServerWriter<v1::QueueEvent>* writer) override;
  grpc::Status GetMyReferral(grpc::ServerContext* context,
                             const v1::GetMyReferralRequest* request,
                             v1::MyReferral* response) override;

 private:
  // The verified caller of `rpc` (common/auth: token, then the RPC x role
  // policy), or the status to answer with.
  absl::StatusOr<Actor> Caller(const grpc::ServerContext& context,
                               const char* rpc) const;

  ReferralCore* core_;
  std::shared_ptr<const auth::Authorizer> authorizer_;
  absl::Duration max_rpc_time_;
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_REFERRAL_SERVICE_H_
