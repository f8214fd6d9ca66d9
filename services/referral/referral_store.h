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
  struct CreateItem {
    std::string id;
    v1::Referral referral;
    v1::AuditEvent created_event;
    double queue_score = 0;
    std::string screening_id;
    int64_t overdue_due_ms = 0;  // 0 = no overdue timer
  };
  // For each item: stores the referral and appends its audit event in one
  // atomic step unless a referral with that id exists (then returns the
  // existing one untouched). Afterwards every case is queued and indexed by
  // screening; new ones get their overdue timer and a "created" event. The
  // Redis work of all items is pipelined. Takes the items: a new case's
  // referral moves into its outcome (no copy of its results).
  virtual absl::StatusOr<std::vector<CreateOutcome>> CreateMany(
      std::vector<CreateItem> items, absl::Time deadline) = 0;

  // The referral, or nullopt when there is none.
  virtual absl::StatusOr<std::optional<v1::Referral>> Get(
      const std::string& id, absl::Time deadline) = 0;

  // Up to `limit` queue entries strictly after `after` (from the start when
  // nullopt), in queue order.
  virtual absl::StatusOr<std::vector<QueueEntry>> ScanQueue(
      const std::optional<QueueCursor>& after, int limit,
      absl::Time deadline) = 0;

  // Writes `referral` if its stored version is still `expected_version`,
  // appending `audit` in the same atomic step (no decision without its
  // record). Returns the new version, or ABORTED with the current one.
  virtual absl::StatusOr<int64_t> Update(
      const std::string& id, int64_t expected_version,
      const v1::Referral& referral, const std::vector<v1::AuditEvent>& audit,
      absl::Time deadline) = 0;
  // Appends to the audit trail alone (a read of the case).
  virtual absl::Status AppendAudit(const std::string& id,
                                   const v1::AuditEvent& event,
                                   absl::Time deadline) = 0;
  // Audit events [offset, offset + limit) in order, and the total count.
  virtual absl::StatusOr<std::pair<std::vector<v1::AuditEvent>, int64_t>>
  ListAudit(const std::string& id, int64_t offset, int limit,
            absl::Time deadline) = 0;
  // Drops a decided case from the queue index.
  virtual absl::Status Dequeue(const std::string& id, absl::Time deadline) = 0;
  // How many cases the queue index holds with a score in each [min, max)
  // range, in order (for metrics).
  virtual absl::StatusOr<std::vector<int64_t>> CountQueued(
      const std::vector<std::pair<double, double>>& ranges,
      absl::Time deadline) = 0;
  // Puts a case in the queue at `score` (moving it when it is there: an
  // early risk case raised to CRISIS_ACUTE moves up).
  virtual absl::Status Requeue(const std::string& id, double score,
                               absl::Time deadline) = 0;

  // Timers: lease expiries and overdue checks, each a (case id, due time)
  // index the sweeper reads.
  enum class Timer { kLease, kOverdue };
  virtual absl::Status SetTimer(Timer timer, const std::string& id,
                                int64_t due_ms, absl::Time deadline) = 0;
  virtual absl::Status ClearTimer(Timer timer, const std::string& id,
                                  absl::Time deadline) = 0;
  virtual absl::StatusOr<std::vector<std::string>> DueTimers(
      Timer timer, int64_t now_ms, int limit, absl::Time deadline) = 0;

  // The event stream portals watch: returns the new event's cursor.
  virtual absl::StatusOr<std::string> Publish(const std::string& kind,
                                              const std::string& id,
                                              absl::Time deadline) = 0;
  struct Event {
    std::string cursor;
    std::string kind;
    std::string id;
  };
  // Events after `cursor` ("$" = only new ones), waiting up to `block` for
  // the first. INVALID_ARGUMENT for a malformed cursor.
  virtual absl::StatusOr<std::vector<Event>> ReadEvents(
      const std::string& cursor, int limit, absl::Duration block,
      absl::Time deadline) = 0;
  // The newest cursor ("0-0" when there is none): a new watcher starts here.
  virtual absl::StatusOr<std::string> LatestCursor(absl::Time deadline) = 0;

  // Cases made from one screening (one per ruleset version scored).
  virtual absl::StatusOr<std::vector<std::string>> CasesOfScreening(
      const std::string& screening_id, absl::Time deadline) = 0;
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_REFERRAL_STORE_H_
