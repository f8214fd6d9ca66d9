#ifndef AQUEDUCT_SERVICES_INTAKE_OUTBOXES_H_
#define AQUEDUCT_SERVICES_INTAKE_OUTBOXES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/scoring/v1/result.pb.h"
#include "protos/storage/v1/records.pb.h"

namespace aqueduct::intake {

// What intake owes referral: the hand-off outbox (completed results) and
// the risk outbox (early risk cases), claimed by every replica's worker
// (part of SessionStore).
class Outboxes {
 public:
  virtual ~Outboxes() = default;

  // The hand-off outbox: screenings whose result must reach referral.
  // Enqueued with the completion's write, ahead of it
  // (SessionStore::WriteRequest::index_completion: a crash between the two
  // loses nothing), removed once referral has the result.
  struct HandoffEntry {
    std::string owner;  // OwnerOf(user id)
    std::string screening_id;
  };
  // Claims up to `limit` entries due by `now_ms`, pushing each one's next
  // attempt to `retry_ms` so other replicas skip it meanwhile.
  virtual absl::StatusOr<std::vector<HandoffEntry>> ClaimDueHandoffs(
      int64_t now_ms, int64_t retry_ms, int limit, absl::Time deadline) = 0;
  // `owner` is OwnerOf(the user id), as HandoffEntry carries it.
  virtual absl::Status RemoveHandoff(const std::string& owner,
                                     const std::string& screening_id,
                                     absl::Time deadline) = 0;

  // The risk outbox: early risk cases owed to referral
  // (SessionStore::WriteRequest::queue_early_risk). One entry per screening and
  // crisis route, so a raise to CRISIS_ACUTE is its own entry and a worker that
  // removes the entry it delivered never removes a newer one.
  struct RiskEntry {
    std::string owner;  // OwnerOf(user id)
    std::string screening_id;
    common::v1::Route route = common::v1::ROUTE_UNSPECIFIED;
    std::string member;  // the entry as stored, for RemoveRiskEntry
  };
  // As ClaimDueHandoffs, for the risk outbox.
  virtual absl::StatusOr<std::vector<RiskEntry>> ClaimDueRiskEntries(
      int64_t now_ms, int64_t retry_ms, int limit, absl::Time deadline) = 0;
  virtual absl::Status RemoveRiskEntry(const std::string& member,
                                       absl::Time deadline) = 0;

  // How many entries each outbox holds, and when its oldest entry was
  // first queued (Unix ms; 0 when empty or not known), for metrics.
  struct Sizes {
    int64_t handoffs = 0;
    int64_t risk_cases = 0;
    int64_t oldest_handoff_ms = 0;
    int64_t oldest_risk_ms = 0;
  };
  virtual absl::StatusOr<Sizes> OutboxSizes(absl::Time deadline) = 0;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_OUTBOXES_H_
