#ifndef AQUEDUCT_SERVICES_INTAKE_PEERS_H_
#define AQUEDUCT_SERVICES_INTAKE_PEERS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/grpc_auth.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "protos/scoring/v1/scoring_service.grpc.pb.h"

namespace aqueduct::intake {

// One scoring Rescore stream, for a batch re-scoring job served by intake:
// requests written in order, each answered by one response in order. Write
// and Read block; Cancel (from any thread) makes both return false.
class RescoreStream {
 public:
  virtual ~RescoreStream() = default;
  virtual bool Write(const scoring::v1::RescoreRequest& request) = 0;
  virtual bool Read(scoring::v1::RescoreResponse* response) = 0;
  virtual void Cancel() = 0;
  // After the last Read (or a Cancel): why the stream ended.
  virtual absl::Status Finish() = 0;
};

// The services intake calls, behind interfaces so the core is testable
// without them. Every call takes the caller's remaining budget.
class ScoringPeer {
 public:
  virtual ~ScoringPeer() = default;
  virtual absl::StatusOr<scoring::v1::ScoringResult> Score(
      const scoring::v1::ScoreAnswersRequest& request, absl::Time deadline) = 0;
  virtual absl::StatusOr<scoring::v1::Catalog> DescribeCatalog(
      absl::Time deadline) = 0;
  virtual absl::StatusOr<scoring::v1::ListRulesetsResponse> ListRulesets(
      absl::Time deadline) = 0;
  // A stream with no deadline of its own (a job runs for minutes): a
  // scoring service that goes away fails it.
  virtual absl::StatusOr<std::unique_ptr<RescoreStream>> OpenRescore() = 0;
  virtual std::string Describe() const = 0;
};

class ReferralPeer {
 public:
  virtual ~ReferralPeer() = default;
  virtual absl::StatusOr<referral::v1::Referral> CreateReferral(
      const referral::v1::CreateReferralRequest& request,
      absl::Time deadline) = 0;
  // Many at once (re-review cases of a re-scoring page), each exactly as
  // CreateReferral would; at most 1000.
  virtual absl::StatusOr<referral::v1::CreateReferralsResponse> CreateReferrals(
      const referral::v1::CreateReferralsRequest& request,
      absl::Time deadline) {
    return absl::UnimplementedError("re-scoring: no referral batch call");
  }
  virtual std::string Describe() const = 0;
};

// gRPC implementations. Channels reconnect by themselves; a peer that is
// down answers UNAVAILABLE naming its address, within the deadline. Each
// call carries intake's own token (role service, subject "intake") from
// `token` (not owned).
class GrpcScoringPeer : public ScoringPeer {
 public:
  GrpcScoringPeer(std::shared_ptr<grpc::Channel> channel, std::string address,
                  absl::Duration per_call, auth::TokenSource* token);
  absl::StatusOr<scoring::v1::ScoringResult> Score(
      const scoring::v1::ScoreAnswersRequest& request,
      absl::Time deadline) override;
  absl::StatusOr<scoring::v1::Catalog> DescribeCatalog(
      absl::Time deadline) override;
  absl::StatusOr<scoring::v1::ListRulesetsResponse> ListRulesets(
      absl::Time deadline) override;
  absl::StatusOr<std::unique_ptr<RescoreStream>> OpenRescore() override;
  std::string Describe() const override;

 private:
  std::unique_ptr<scoring::v1::ScoringService::Stub> stub_;
  std::string address_;
  absl::Duration per_call_;
  auth::TokenSource* token_;
};

class GrpcReferralPeer : public ReferralPeer {
 public:
  GrpcReferralPeer(std::shared_ptr<grpc::Channel> channel, std::string address,
                   absl::Duration per_call, auth::TokenSource* token);
  absl::StatusOr<referral::v1::Referral> CreateReferral(
      const referral::v1::CreateReferralRequest& request,
      absl::Time deadline) override;
  absl::StatusOr<referral::v1::CreateReferralsResponse> CreateReferrals(
      const referral::v1::CreateReferralsRequest& request,
      absl::Time deadline) override;
  std::string Describe() const override;

 private:
  std::unique_ptr<referral::v1::ReferralService::Stub> stub_;
  std::string address_;
  absl::Duration per_call_;
  auth::TokenSource* token_;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_PEERS_H_
