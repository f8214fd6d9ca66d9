#ifndef AQUEDUCT_SERVICES_SCORING_SCORING_SERVICE_H_
#define AQUEDUCT_SERVICES_SCORING_SCORING_SERVICE_H_

#include <memory>

#include "common/auth/authorizer.h"
#include "common/server/worker_pool.h"
#include "protos/scoring/v1/scoring_service.grpc.pb.h"
#include "services/scoring/scoring_engine.h"

namespace aqueduct::scoring {

// gRPC adapter over ScoringEngine, on gRPC's callback API like every service
// here (README, "One serving style"). Scoring is pure CPU work with no I/O:
// a call that scores one screening (ScoreAnswers, a ScoreBatch message) or
// reads the catalog finishes inline in microseconds; a Rescore message, up
// to 5000 screenings, is scored on `batch_pool`, so a batch job never holds
// the threads that serve intake's calls. Every
// call is checked first against the caller's token (common/auth: intake
// scores, batch jobs re-score, the catalog and rulesets are for any service
// or staff role).
//
// The two streams read their messages as bytes and parse them here, so a
// message that does not parse (or holds a string that is not UTF-8) ends
// the stream with INVALID_ARGUMENT naming it; gRPC's own parsing would
// report it as the end of the stream and a batch job would lose what it sent
// after it without knowing.
using ScoringServiceBase = v1::ScoringService::WithCallbackMethod_ScoreAnswers<
    v1::ScoringService::WithRawCallbackMethod_ScoreBatch<
        v1::ScoringService::WithRawCallbackMethod_Rescore<
            v1::ScoringService::WithCallbackMethod_DescribeCatalog<
                v1::ScoringService::WithCallbackMethod_ListRulesets<
                    v1::ScoringService::Service>>>>>;

class ScoringServiceImpl final : public ScoringServiceBase {
 public:
  // Largest request accepted: a Rescore message of 5000 stored screenings
  // (~270 bytes each packed, 1.3 MB) with room to spare; anything larger
  // is RESOURCE_EXHAUSTED before it is parsed (gRPC still receives it
  // first). With --grpc_memory_mb it bounds what one request can make the
  // process hold; what a flood holds grows with the requests in flight
  // (bench/RESULTS.md, memory).
  static constexpr int kMaxRequestBytes = 4 << 20;

  ScoringServiceImpl(std::shared_ptr<const ScoringEngine> engine,
                     std::shared_ptr<const auth::Authorizer> authorizer,
                     server::WorkerPool* batch_pool)
      : engine_(std::move(engine)),
        authorizer_(std::move(authorizer)),
        batch_pool_(batch_pool) {}

  grpc::ServerUnaryReactor* ScoreAnswers(grpc::CallbackServerContext* context,
                                         const v1::ScoreAnswersRequest* request,
                                         v1::ScoringResult* response) override;
  grpc::ServerUnaryReactor* DescribeCatalog(
      grpc::CallbackServerContext* context,
      const v1::DescribeCatalogRequest* request,
      v1::Catalog* response) override;
  grpc::ServerUnaryReactor* ListRulesets(
      grpc::CallbackServerContext* context,
      const v1::ListRulesetsRequest* request,
      v1::ListRulesetsResponse* response) override;
  // ScoreBatchRequest in, ScoreBatchResponse out: one response per request,
  // in order; a bad item answers with its error and the stream goes on.
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* ScoreBatch(
      grpc::CallbackServerContext* context) override;
  // RescoreRequest in, RescoreResponse out: many stored screenings per
  // message, compared by digest; see the proto.
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Rescore(
      grpc::CallbackServerContext* context) override;

 private:
  std::shared_ptr<const ScoringEngine> engine_;
  std::shared_ptr<const auth::Authorizer> authorizer_;
  server::WorkerPool* batch_pool_;
};

}  // namespace aqueduct::scoring

#endif  // AQUEDUCT_SERVICES_SCORING_SCORING_SERVICE_H_
