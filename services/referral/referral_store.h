#ifndef AQUEDUCT_SERVICES_REFERRAL_REFERRAL_STORE_H_
#define AQUEDUCT_SERVICES_REFERRAL_REFERRAL_STORE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/referral/v1/referral_service.pb.h"

namespace aqueduct::referral {

// A position in the clinician queue: cases are ordered by score (priority,
// then creation time) and, for equal scores, by id.
struct QueueCursor {
  double score = 0;
  std::string id;
};

struct QueueEntry {
  QueueCursor position;
  v1::Referral referral;  // etag filled from the stored version
};

// Storage of referrals, their audit trails and the queue index. Every call
// takes the deadline it must finish by.
class ReferralStore {
 public:
  virtual ~ReferralStore() = default;

  struct CreateOutcome {
    v1::Referral referral;  // the stored one (the existing one on a retry)
    bool created = false;
  };
  // Stores `referral` under `id` and appends `created_event` to its audit
  // trail in one atomic step, unless a referral with that id exists: then
  // returns the existing one untouched. Either way the case is in the queue
  // at `queue_score` afterwards.
  virtual absl::StatusOr<CreateOutcome> CreateIfAbsent(
      const std::string& id, const v1::Referral& referral,
      const v1::AuditEvent& created_event, double queue_score,
      absl::Time deadline) = 0;

  // The referral, or nullopt when there is none.
  virtual absl::StatusOr<std::optional<v1::Referral>> Get(
      const std::string& id, absl::Time deadline) = 0;

  // Up to `limit` queue entries strictly after `after` (from the start when
  // nullopt), in queue order.
  virtual absl::StatusOr<std::vector<QueueEntry>> ScanQueue(
      const std::optional<QueueCursor>& after, int limit,
      absl::Time deadline) = 0;
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_REFERRAL_STORE_H_
