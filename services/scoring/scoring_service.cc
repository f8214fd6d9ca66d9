#include "services/scoring/scoring_service.h"

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"

namespace aqueduct::scoring {
namespace {

// Reads one request, scores it, writes one response, and repeats: at most
// one read or write is outstanding, so a slow reader applies back-pressure.
// Scoring is pure CPU work and finishes in microseconds, so it runs inline
// on the reactor thread.
class BatchReactor final
    : public grpc::ServerBidiReactor<v1::ScoreBatchRequest, v1::ScoreBatchResponse> {
 public:
  explicit BatchReactor(const ScoringEngine* engine) : engine_(engine) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // client finished writing (or the call is cancelled)
      Finish(grpc::Status::OK);
      return;
    }
    response_.Clear();
    response_.set_correlation_id(request_.correlation_id());
    absl::Status s;
    if (request_.correlation_id().empty()) {
      s = absl::InvalidArgumentError("correlation_id: is required");
    } else {
      s = engine_->ScoreInto(request_.request(), response_.mutable_result());
    }
    if (!s.ok()) {
      response_.clear_result();
      response_.mutable_error()->set_code(static_cast<int>(s.code()));
      response_.mutable_error()->set_message(std::string(s.message()));
    }
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed while writing"));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  const ScoringEngine* engine_;
  v1::ScoreBatchRequest request_;
  v1::ScoreBatchResponse response_;
};

}  // namespace

grpc::ServerBidiReactor<v1::ScoreBatchRequest, v1::ScoreBatchResponse>*
ScoringServiceImpl::ScoreBatch(grpc::CallbackServerContext* context) {
  return new BatchReactor(engine_.get());
}

grpc::ServerUnaryReactor* ScoringServiceImpl::ScoreAnswers(
    grpc::CallbackServerContext* context,
    const v1::ScoreAnswersRequest* request, v1::ScoringResult* response) {
  auto* reactor = context->DefaultReactor();
  absl::StatusOr<v1::ScoringResult> result = engine_->Score(*request);
  if (result.ok()) *response = std::move(*result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

grpc::ServerUnaryReactor* ScoringServiceImpl::DescribeCatalog(
    grpc::CallbackServerContext* context,
    const v1::DescribeCatalogRequest* request, v1::Catalog* response) {
  auto* reactor = context->DefaultReactor();
  const v1::Catalog& catalog = engine_->catalog().catalog();
  if (!request->version().empty() && request->version() != catalog.version()) {
    reactor->Finish(ToGrpcStatus(absl::NotFoundError(
        absl::StrCat("version: catalog \"", request->version(),
                     "\" is not loaded (loaded: ", catalog.version(), ")"))));
    return reactor;
  }
  *response = catalog;
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ScoringServiceImpl::ListRulesets(
    grpc::CallbackServerContext* context, const v1::ListRulesetsRequest*,
    v1::ListRulesetsResponse* response) {
  auto* reactor = context->DefaultReactor();
  *response = engine_->Rulesets();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace aqueduct::scoring
