#ifndef AQUEDUCT_SERVICES_SCORING_SCORING_ENGINE_H_
#define AQUEDUCT_SERVICES_SCORING_SCORING_ENGINE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protos/scoring/v1/result.pb.h"
#include "protos/scoring/v1/scoring_service.pb.h"
#include "services/scoring/catalog.h"
#include "services/scoring/digest.h"
#include "services/scoring/ruleset.h"

namespace aqueduct::scoring {

// Pure, deterministic scoring: same answers + same ruleset version give a
// byte-identical result. Thread-safe (immutable after construction).
class ScoringEngine {
 public:
  // Needs at least one ruleset; all must be written for `catalog`.
  static absl::StatusOr<std::unique_ptr<ScoringEngine>> Create(
      std::shared_ptr<const CatalogIndex> catalog,
      std::vector<std::shared_ptr<const RulesetIndex>> rulesets);

  // Loads the catalog file and every ruleset in `rulesets_dir`; any file that
  // does not validate fails the whole load, naming the file.
  static absl::StatusOr<std::unique_ptr<ScoringEngine>> Load(
      const std::string& catalog_path, const std::string& rulesets_dir);

  // Errors: INVALID_ARGUMENT naming the first bad answer (unknown item, a
  // value outside the options, an item answered twice, an item that does not
  // apply) or an unknown administered instrument; NOT_FOUND for a ruleset
  // version that is not loaded.
  absl::StatusOr<v1::ScoringResult> Score(
      const v1::ScoreAnswersRequest& request) const;
  // The same into a caller's message (cleared first), for batch loops that
  // reuse one message.
  absl::Status ScoreInto(const v1::ScoreAnswersRequest& request,
                         v1::ScoringResult* result) const;

  // Only the digest of the result (route, route rule, bands, safety flags),
  // skipping explanations, plan and resources: what bulk re-scoring
  // compares. Always equal to DigestOf(*Score(request)); same errors.
  // With `crisis_certain`, also whether the ruleset's crisis_when definitely
  // holds (not merely cannot be ruled out): on a screening still being
  // answered, whether what was answered so far calls for crisis resources
  // (a risk flag raised, or PHQ-9 item 9 declined from ruleset v2 on).
  absl::Status DigestInto(const v1::ScoreAnswersRequest& request,
                          v1::ResultDigest* digest,
                          bool* crisis_certain = nullptr) const;

  // The engine's own behaviour version, recorded on every result
  // (ScoringResult.engine_version). Raised whenever the same answers under
  // the same ruleset would score differently.
  static constexpr char kEngineVersion[] = "2";

  // Newest first (by publication date, then version).
  v1::ListRulesetsResponse Rulesets() const;
  const CatalogIndex& catalog() const { return *catalog_; }
  const RulesetIndex& newest() const { return *rulesets_.front(); }
  // nullptr when not loaded.
  const RulesetIndex* Find(const std::string& version) const;

 private:
  ScoringEngine() = default;
  // Scores into `out`; without `full` only what a digest needs, and the id of
  // the route rule that fired into `route_rule` (when not null).
  absl::Status Evaluate(const v1::ScoreAnswersRequest& request, bool full,
                        v1::ScoringResult* out, std::string* route_rule,
                        expr::Truth* crisis) const;
  std::shared_ptr<const CatalogIndex> catalog_;
  std::vector<std::shared_ptr<const RulesetIndex>> rulesets_;
};

}  // namespace aqueduct::scoring

#endif  // AQUEDUCT_SERVICES_SCORING_SCORING_ENGINE_H_
