#ifndef AQUEDUCT_SERVICES_REFERRAL_REDIS_REFERRAL_STORE_H_
#define AQUEDUCT_SERVICES_REFERRAL_REDIS_REFERRAL_STORE_H_

#include "common/crypto/data_keys.h"
#include "common/redis/redis_client.h"
#include "services/referral/referral_store.h"

namespace aqueduct::referral {

// Keys:
//   aq:referral:{<id>}:case  hash: v = version, d = serialized Referral,
//       n = audit events, e<k> = event k (serialized AuditEvent,
//       append-only)
//   aq:referral:queue        zset: id scored by priority * 1e13 + created ms
//   aq:referral:leases       zset: claimed case ids by lease expiry
//   aq:referral:overdue      zset: urgent case ids by when they become
//       overdue
//   aq:referral:events       stream of queue changes (kind, id), capped
//   aq:referral:rulesets     set: the ruleset parts of every case id
//       (<screening>-<ruleset>): a screening's cases are found by probing
//       each
// The case and its audit trail share a hash tag, so they are written
// atomically; the queue is a global index, written after and idempotently,
// so a crash between the two is repaired by the caller's retry.
class RedisReferralStore : public ReferralStore {
 public:
  // `blocking` (optional) serves the watch's blocking stream reads, so
  // watching portals never hold the connections other calls need.
  // Case records and audit events are sealed with `keys` (AES-256-GCM,
  // bound to their key); `keys` must outlive the store.
  RedisReferralStore(redis::Client* client, const crypto::DataKeys* keys,
                     redis::Client* blocking = nullptr)
      : client_(client),
        keys_(keys),
        blocking_(blocking != nullptr ? blocking : client) {}

  absl::StatusOr<std::vector<CreateOutcome>> CreateMany(
      std::vector<CreateItem> items, absl::Time deadline) override;
  absl::StatusOr<std::optional<v1::Referral>> Get(const std::string& id,
                                                  absl::Time deadline) override;
  absl::StatusOr<std::vector<QueueEntry>> ScanQueue(
      const std::optional<QueueCursor>& after, int limit,
      absl::Time deadline) override;
  absl::StatusOr<int64_t> Update(const std::string& id,
                                 int64_t expected_version,
                                 const v1::Referral& referral,
                                 const std::vector<v1::AuditEvent>& audit,
                                 absl::Time deadline) override;
  absl::Status AppendAudit(const std::string& id, const v1::AuditEvent& event,
                           absl::Time deadline) override;
  absl::StatusOr<std::pair<std::vector<v1::AuditEvent>, int64_t>> ListAudit(
      const std::string& id, int64_t offset, int limit,
      absl::Time deadline) override;
  absl::Status Dequeue(const std::string& id, absl::Time deadline) override;
  absl::StatusOr<std::vector<int64_t>> CountQueued(
      const std::vector<std::pair<double, double>>& ranges,
      absl::Time deadline) override;
  absl::Status Requeue(const std::string& id, double score,
                       absl::Time deadline) override;
  absl::Status SetTimer(Timer timer, const std::string& id, int64_t due_ms,
                        absl::Time deadline) override;
  absl::Status ClearTimer(Timer timer, const std::string& id,
                          absl::Time deadline) override;
  absl::StatusOr<std::vector<std::string>> DueTimers(
      Timer timer, int64_t now_ms, int limit, absl::Time deadline) override;
  absl::StatusOr<std::string> Publish(const std::string& kind,
                                      const std::string& id,
                                      absl::Time deadline) override;
  absl::StatusOr<std::vector<Event>> ReadEvents(const std::string& cursor,
                                                int limit, absl::Duration block,
                                                absl::Time deadline) override;
  absl::StatusOr<std::string> LatestCursor(absl::Time deadline) override;
  absl::StatusOr<std::vector<std::string>> CasesOfScreening(
      const std::string& screening_id, absl::Time deadline) override;

  // The one-shot upgrade of data older builds wrote (aqueduct-referral
  // --migrate): audit trails kept in a list of their own (a case without
  // n) move into the case's hash, and per-screening sets of case ids fold
  // into the rulesets set. Idempotent: a second run changes nothing, and a
  // run stopped part-way is finished by the next.
  struct MigrationReport {
    int64_t audit_trails = 0;
    int64_t screening_sets = 0;
  };
  absl::StatusOr<MigrationReport> MigrateOlderLayouts(absl::Time deadline);

 private:
  redis::Client* client_;
  const crypto::DataKeys* keys_;
  redis::Client* blocking_;
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_REDIS_REFERRAL_STORE_H_
