#include "services/intake/background.h"

#include <string>

#include "absl/time/clock.h"
#include "common/logging/logging.h"

namespace aqueduct::intake {

CatalogLoader::CatalogLoader(CatalogHolder* catalog, ScoringPeer* scoring,
                             absl::Duration retry)
    : catalog_(catalog),
      scoring_(scoring),
      loop_(retry, [this] { return Step(); }) {}

bool CatalogLoader::Step() {
  absl::Status s =
      catalog_->LoadFrom(*scoring_, absl::Now() + absl::Seconds(2));
  if (s.ok()) {
    log::Info(
        "catalog loaded",
        {{"from", scoring_->Describe()},
         {"catalog_version", catalog_->Get()->catalog->catalog().version()},
         {"default_ruleset", catalog_->Get()->default_ruleset}});
    return false;
  }
  if (attempts_++ % 10 == 0) {
    log::Warn(
        "catalog not loaded yet; retrying",
        {{"from", scoring_->Describe()}, {"error", std::string(s.message())}});
  }
  return true;
}

HandoffWorker::HandoffWorker(IntakeCore* core, const CatalogHolder* catalog,
                             absl::Duration tick)
    : core_(core), catalog_(catalog), loop_(tick, [this] { return Step(); }) {}

bool HandoffWorker::Step() {
  if (catalog_->Get() == nullptr) return true;
  // Failures are retried next round; HandOff logs them.
  (void)core_->DeliverPendingHandoffs(50, absl::Now() + absl::Seconds(5));
  return true;
}

}  // namespace aqueduct::intake
