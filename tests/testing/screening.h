#ifndef AQUEDUCT_TESTS_TESTING_SCREENING_H_
#define AQUEDUCT_TESTS_TESTING_SCREENING_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/server/worker_pool.h"
#include "protos/scoring/v1/scoring_service.pb.h"
#include "services/intake/intake_core.h"
#include "services/scoring/scoring_engine.h"
#include "tools/aqueductctl/scripted_answers.h"

namespace aqueduct::testing {

// The repository's clinical data (data/catalog, data/rulesets).
absl::StatusOr<std::unique_ptr<scoring::ScoringEngine>> LoadRepositoryEngine();

// Walks the screening flow page by page as intake does, answering each item
// from `overrides` or with the lowest-burden answer, and returns the scoring
// request a completed screening would send (answers plus the instruments
// asked).
absl::StatusOr<scoring::v1::ScoreAnswersRequest> ScriptedScreening(
    const scoring::ScoringEngine& engine, const tools::Overrides& overrides);

// Context answers for an adult who works without clients, in `state`.
tools::Overrides AdultContext(const std::string& state = "NY");

// IntakeCore::SubmitAnswersAsync as the gRPC handler calls it (its blocking
// steps on `pool`), waited for: INTERNAL "no reply" if it never answers.
absl::StatusOr<intake::v1::SubmitAnswersResponse> SubmitAndWait(
    intake::IntakeCore& core, const intake::v1::SubmitAnswersRequest& request,
    absl::Time deadline, server::WorkerPool* pool);

}  // namespace aqueduct::testing

#endif  // AQUEDUCT_TESTS_TESTING_SCREENING_H_
