#include "services/intake/peers.h"

#include "absl/strings/str_cat.h"
#include "common/server/deadlines.h"
#include "common/status/status_util.h"

namespace aqueduct::intake {

GrpcScoringPeer::GrpcScoringPeer(std::shared_ptr<grpc::Channel> channel,
                                 std::string address, absl::Duration per_call,
                                 auth::TokenSource* token)
    : stub_(scoring::v1::ScoringService::NewStub(channel)),
      address_(std::move(address)),
      per_call_(per_call),
      token_(token) {}

std::string GrpcScoringPeer::Describe() const {
  return absl::StrCat("scoring at ", address_);
}

absl::StatusOr<scoring::v1::ScoringResult> GrpcScoringPeer::Score(
    const scoring::v1::ScoreAnswersRequest& request, absl::Time deadline) {
  grpc::ClientContext ctx;
  server::SetOutgoingDeadline(ctx, deadline, per_call_);
  if (absl::Status t = auth::Attach(ctx, *token_); !t.ok())
    return Annotate(t, Describe());
  scoring::v1::ScoringResult result;
  grpc::Status s = stub_->ScoreAnswers(&ctx, request, &result);
  if (!s.ok()) return Annotate(ToAbslStatus(s), Describe());
  return result;
}

absl::StatusOr<scoring::v1::Catalog> GrpcScoringPeer::DescribeCatalog(
    absl::Time deadline) {
  grpc::ClientContext ctx;
  server::SetOutgoingDeadline(ctx, deadline, per_call_);
  if (absl::Status t = auth::Attach(ctx, *token_); !t.ok())
    return Annotate(t, Describe());
  ctx.set_wait_for_ready(true);  // start-up: wait for scoring to come up
  scoring::v1::Catalog catalog;
  grpc::Status s = stub_->DescribeCatalog(
      &ctx, scoring::v1::DescribeCatalogRequest(), &catalog);
  if (!s.ok()) return Annotate(ToAbslStatus(s), Describe());
  return catalog;
}

absl::StatusOr<scoring::v1::ListRulesetsResponse> GrpcScoringPeer::ListRulesets(
    absl::Time deadline) {
  grpc::ClientContext ctx;
  server::SetOutgoingDeadline(ctx, deadline, per_call_);
  if (absl::Status t = auth::Attach(ctx, *token_); !t.ok())
    return Annotate(t, Describe());
  ctx.set_wait_for_ready(true);
  scoring::v1::ListRulesetsResponse out;
  grpc::Status s =
      stub_->ListRulesets(&ctx, scoring::v1::ListRulesetsRequest(), &out);
  if (!s.ok()) return Annotate(ToAbslStatus(s), Describe());
  return out;
}

GrpcReferralPeer::GrpcReferralPeer(std::shared_ptr<grpc::Channel> channel,
                                   std::string address, absl::Duration per_call,
                                   auth::TokenSource* token)
    : stub_(referral::v1::ReferralService::NewStub(channel)),
      address_(std::move(address)),
      per_call_(per_call),
      token_(token) {}

std::string GrpcReferralPeer::Describe() const {
  return absl::StrCat("referral at ", address_);
}

absl::StatusOr<referral::v1::Referral> GrpcReferralPeer::CreateReferral(
    const referral::v1::CreateReferralRequest& request, absl::Time deadline) {
  grpc::ClientContext ctx;
  server::SetOutgoingDeadline(ctx, deadline, per_call_);
  if (absl::Status t = auth::Attach(ctx, *token_); !t.ok())
    return Annotate(t, Describe());
  referral::v1::Referral out;
  grpc::Status s = stub_->CreateReferral(&ctx, request, &out);
  if (!s.ok()) return Annotate(ToAbslStatus(s), Describe());
  return out;
}

}  // namespace aqueduct::intake
