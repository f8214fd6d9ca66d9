#include "services/intake/peers.h"

#include "absl/strings/str_cat.h"
#include "common/server/deadlines.h"
#include "common/server/trace.h"
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
  server::PropagateTrace(ctx);
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
  server::PropagateTrace(ctx);
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
  server::PropagateTrace(ctx);
  if (absl::Status t = auth::Attach(ctx, *token_); !t.ok())
    return Annotate(t, Describe());
  ctx.set_wait_for_ready(true);
  scoring::v1::ListRulesetsResponse out;
  grpc::Status s =
      stub_->ListRulesets(&ctx, scoring::v1::ListRulesetsRequest(), &out);
  if (!s.ok()) return Annotate(ToAbslStatus(s), Describe());
  return out;
}

namespace {

class GrpcRescoreStream final : public RescoreStream {
 public:
  GrpcRescoreStream(std::unique_ptr<grpc::ClientContext> context,
                    scoring::v1::ScoringService::Stub* stub,
                    std::string describe)
      : context_(std::move(context)),
        stream_(stub->Rescore(context_.get())),
        describe_(std::move(describe)) {}
  bool Write(const scoring::v1::RescoreRequest& request) override {
    return stream_->Write(request);
  }
  bool Read(scoring::v1::RescoreResponse* response) override {
    return stream_->Read(response);
  }
  void Cancel() override { context_->TryCancel(); }
  absl::Status Finish() override {
    stream_->WritesDone();
    grpc::Status s = stream_->Finish();
    if (!s.ok()) return Annotate(ToAbslStatus(s), describe_);
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<scoring::v1::RescoreRequest,
                                           scoring::v1::RescoreResponse>>
      stream_;
  std::string describe_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RescoreStream>> GrpcScoringPeer::OpenRescore() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  server::PropagateTrace(*ctx);
  if (absl::Status t = auth::Attach(*ctx, *token_); !t.ok())
    return Annotate(t, Describe());
  return std::make_unique<GrpcRescoreStream>(std::move(ctx), stub_.get(),
                                             Describe());
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
  server::PropagateTrace(ctx);
  if (absl::Status t = auth::Attach(ctx, *token_); !t.ok())
    return Annotate(t, Describe());
  referral::v1::Referral out;
  grpc::Status s = stub_->CreateReferral(&ctx, request, &out);
  if (!s.ok()) return Annotate(ToAbslStatus(s), Describe());
  return out;
}

absl::StatusOr<referral::v1::CreateReferralsResponse>
GrpcReferralPeer::CreateReferrals(
    const referral::v1::CreateReferralsRequest& request, absl::Time deadline) {
  grpc::ClientContext ctx;
  server::SetOutgoingDeadline(ctx, deadline, per_call_);
  server::PropagateTrace(ctx);
  if (absl::Status t = auth::Attach(ctx, *token_); !t.ok())
    return Annotate(t, Describe());
  referral::v1::CreateReferralsResponse out;
  grpc::Status s = stub_->CreateReferrals(&ctx, request, &out);
  if (!s.ok()) return Annotate(ToAbslStatus(s), Describe());
  return out;
}

}  // namespace aqueduct::intake
