#ifndef AQUEDUCT_SERVICES_REFERRAL_REDIS_REFERRAL_STORE_H_
#define AQUEDUCT_SERVICES_REFERRAL_REDIS_REFERRAL_STORE_H_

#include "common/redis/redis_client.h"
#include "services/referral/referral_store.h"

namespace aqueduct::referral {

// Keys:
//   aq:referral:{<id>}:case    hash  v = version, d = serialized Referral
//   aq:referral:{<id>}:audit   list  serialized AuditEvent, append-only
//   aq:referral:queue          zset  id scored by priority * 1e13 + created ms
// The case and its audit trail share a hash tag, so they are written
// atomically; the queue is a global index, written after and idempotently,
// so a crash between the two is repaired by the caller's retry.
class RedisReferralStore : public ReferralStore {
 public:
  explicit RedisReferralStore(redis::Client* client) : client_(client) {}

  absl::StatusOr<CreateOutcome> CreateIfAbsent(
      const std::string& id, const v1::Referral& referral,
      const v1::AuditEvent& created_event, double queue_score,
      absl::Time deadline) override;
  absl::StatusOr<std::optional<v1::Referral>> Get(const std::string& id,
                                                  absl::Time deadline) override;
  absl::StatusOr<std::vector<QueueEntry>> ScanQueue(
      const std::optional<QueueCursor>& after, int limit,
      absl::Time deadline) override;

 private:
  redis::Client* client_;
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_REDIS_REFERRAL_STORE_H_
