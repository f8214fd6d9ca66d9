#include "services/scoring/scoring_service.h"

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"

namespace aqueduct::scoring {

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
