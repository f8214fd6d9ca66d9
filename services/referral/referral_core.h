#ifndef AQUEDUCT_SERVICES_REFERRAL_REFERRAL_CORE_H_
#define AQUEDUCT_SERVICES_REFERRAL_REFERRAL_CORE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/util/ids.h"
#include "protos/referral/v1/referral_service.pb.h"
#include "services/referral/referral_store.h"

namespace aqueduct::referral {

// Who is calling (the intake service, a clinician, ...). Taken from the
// call, never from the request body.
struct Actor {
  std::string id = "unknown";
  std::string role = "unknown";
};

// Referral logic above the store; no gRPC types, so tests build it with a
// fake store.
class ReferralCore {
 public:
  ReferralCore(ReferralStore* store, const Clock* clock)
      : store_(store), clock_(clock) {}

  // Idempotent per screening and ruleset version.
  absl::StatusOr<v1::Referral> CreateReferral(
      const v1::CreateReferralRequest& request, const Actor& actor,
      absl::Time deadline);

  absl::StatusOr<v1::ListQueueResponse> ListQueue(
      const v1::ListQueueRequest& request, absl::Time deadline);

  // The referral id for a screening and ruleset version (deterministic, so
  // a retried hand-off finds the same case).
  static std::string ReferralId(const std::string& screening_id,
                                const std::string& ruleset_version);

  static constexpr int kDefaultPageSize = 50;
  static constexpr int kMaxPageSize = 200;

 private:
  ReferralStore* store_;
  const Clock* clock_;
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_REFERRAL_CORE_H_
