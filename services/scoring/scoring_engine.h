#ifndef AQUEDUCT_SERVICES_SCORING_SCORING_ENGINE_H_
#define AQUEDUCT_SERVICES_SCORING_SCORING_ENGINE_H_

#include <memory>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "protos/scoring/v1/result.pb.h"
#include "protos/scoring/v1/scoring_service.pb.h"
#include "services/scoring/catalog.h"

namespace aqueduct::scoring {

// Pure, deterministic scoring: same answers + same ruleset version give a
// byte-identical result. Thread-safe (immutable after construction).
//
// The foundation ships one ruleset, "v0-skeleton", which routes on PHQ-9
// alone (reference sections 2, 3 and 7 restricted to PHQ-9 inputs). The
// data-driven ruleset v1 over the full catalog replaces it (issue 3).
class ScoringEngine {
 public:
  static constexpr absl::string_view kSkeletonRuleset = "v0-skeleton";

  explicit ScoringEngine(std::shared_ptr<const CatalogIndex> catalog);

  // Errors: INVALID_ARGUMENT naming the first bad answer (unknown item,
  // value outside the options, item answered twice) or unknown administered
  // instrument; NOT_FOUND for a ruleset version that is not loaded.
  absl::StatusOr<v1::ScoringResult> Score(
      const v1::ScoreAnswersRequest& request) const;

  v1::ListRulesetsResponse Rulesets() const;
  const CatalogIndex& catalog() const { return *catalog_; }

 private:
  std::shared_ptr<const CatalogIndex> catalog_;
};

// The crisis resources shown whenever a suicide-risk flag is set
// (reference section 3).
common::v1::CrisisResources CrisisResourcesForUs();

}  // namespace aqueduct::scoring

#endif  // AQUEDUCT_SERVICES_SCORING_SCORING_ENGINE_H_
