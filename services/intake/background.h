#ifndef AQUEDUCT_SERVICES_INTAKE_BACKGROUND_H_
#define AQUEDUCT_SERVICES_INTAKE_BACKGROUND_H_

#include "absl/time/time.h"
#include "common/server/background_loop.h"
#include "services/intake/clinical.h"
#include "services/intake/intake_core.h"
#include "services/intake/peers.h"

namespace aqueduct::intake {

// Loads the clinical catalog from scoring in the background, retrying every
// `retry` until scoring answers (intake reports NOT_SERVING until then),
// then ends. `catalog` and `scoring` must outlive it.
class CatalogLoader {
 public:
  CatalogLoader(CatalogHolder* catalog, ScoringPeer* scoring,
                absl::Duration retry);
  // Whether the catalog is loaded (the loop has ended).
  bool loaded() const { return loop_.done(); }

 private:
  bool Step();

  CatalogHolder* const catalog_;
  ScoringPeer* const scoring_;
  int attempts_ = 0;
  server::BackgroundLoop loop_;  // last: starts once the fields above exist
};

// The outbox worker: hands referral what completions and early risk pages
// left in the outboxes (IntakeCore::DeliverPendingHandoffs), every `tick`
// and at once when woken. Every replica runs one: claims do not collide,
// and referral de-duplicates per screening and ruleset. Nothing is handed
// off before the catalog is loaded. `core` and `catalog` must outlive it.
class HandoffWorker {
 public:
  HandoffWorker(IntakeCore* core, const CatalogHolder* catalog,
                absl::Duration tick);
  // Runs a round now: a page that raised an early risk case calls this (the
  // case must be in the clinician queue within seconds, not a tick later).
  void Wake() { loop_.Wake(); }
  // Rounds run so far.
  int64_t rounds() const { return loop_.steps(); }

 private:
  bool Step();

  IntakeCore* const core_;
  const CatalogHolder* const catalog_;
  server::BackgroundLoop loop_;  // last: starts once the fields above exist
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_BACKGROUND_H_
