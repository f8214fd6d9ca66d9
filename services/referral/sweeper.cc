#include "services/referral/sweeper.h"

#include "absl/time/clock.h"

namespace aqueduct::referral {

Sweeper::Sweeper(ReferralCore* core, absl::Duration tick)
    : core_(core), loop_(tick, [this] {
        (void)core_->Sweep(absl::Now() + absl::Seconds(5));
        return true;
      }) {}

}  // namespace aqueduct::referral
