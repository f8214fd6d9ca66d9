#ifndef AQUEDUCT_SERVICES_REFERRAL_SWEEPER_H_
#define AQUEDUCT_SERVICES_REFERRAL_SWEEPER_H_

#include "absl/time/time.h"
#include "common/server/background_loop.h"
#include "services/referral/referral_core.h"

namespace aqueduct::referral {

// Referral's background loop: every `tick`, claims whose lease ran out go
// back to the queue and urgent cases not claimed in time are marked overdue
// (ReferralCore::Sweep). Every replica runs one; a sweep is idempotent, and
// one that fails (Redis down) is retried at the next tick. `core` must
// outlive it.
class Sweeper {
 public:
  Sweeper(ReferralCore* core, absl::Duration tick);
  // Sweeps run so far.
  int64_t sweeps() const { return loop_.steps(); }

 private:
  ReferralCore* const core_;
  server::BackgroundLoop loop_;  // last: starts once core_ is set
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_SWEEPER_H_
