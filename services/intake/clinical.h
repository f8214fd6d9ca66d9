#ifndef AQUEDUCT_SERVICES_INTAKE_CLINICAL_H_
#define AQUEDUCT_SERVICES_INTAKE_CLINICAL_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/scoring/v1/scoring_service.pb.h"
#include "protos/storage/v1/records.pb.h"
#include "services/intake/peers.h"
#include "services/scoring/catalog.h"
#include "services/scoring/scoring_engine.h"

namespace aqueduct::intake {

// The clinical data intake asks from, fetched from scoring (which owns it):
// the catalog, and the default ruleset's named sets that the catalog's
// ask_if expressions use.
struct Clinical {
  std::shared_ptr<const scoring::CatalogIndex> catalog;
  scoring::expr::SetTable sets;
  std::string default_ruleset;
  // The same scoring library over the same data, for checks intake must
  // make without a network call (crisis flags while answering).
  std::shared_ptr<const scoring::ScoringEngine> engine;
};

// Empty until the first successful fetch; intake is not ready until then.
class CatalogHolder {
 public:
  std::shared_ptr<const Clinical> Get() const;
  void Set(std::shared_ptr<const Clinical> clinical);

  // Fetches and validates the catalog and the ruleset list from scoring.
  absl::Status LoadFrom(ScoringPeer& scoring, absl::Time deadline);

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const Clinical> clinical_ ABSL_GUARDED_BY(mu_);
};

// The answers given so far, in catalog order (results do not depend on the
// map's order), as scoring takes them.
scoring::v1::ScoreAnswersRequest AnswersSoFar(
    const storage::v1::SessionRecord& record,
    const scoring::CatalogIndex& catalog);

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_CLINICAL_H_
