#ifndef AQUEDUCT_SERVICES_INTAKE_SESSION_CACHE_H_
#define AQUEDUCT_SERVICES_INTAKE_SESSION_CACHE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "services/intake/session_store.h"

namespace aqueduct::intake {

// The in-progress sessions this replica wrote last, so that the next page's
// write need not read the session back from Redis first (one round trip
// per page instead of two).
//
// Never a source of truth. An entry is used only when its version is the
// one the caller's etag names, and the write that follows is checked
// against Redis's version as every write is (a session changed by another
// replica meanwhile makes that write a conflict, and the caller then reads
// Redis and starts over: see IntakeCore::SubmitChecked). So a stale or
// evicted entry costs a round trip, never a wrong answer, and any replica
// still continues any session.
//
// Bounded by entry count; when full, an arbitrary entry of the shard goes.
// Thread-safe (16 shards, a mutex each).
class SessionCache {
 public:
  // max_entries 0: nothing is ever kept.
  explicit SessionCache(size_t max_entries);

  // Removes the entry for `screening_id` and returns it when it is at
  // `version`; nullopt otherwise (an entry at another version is dropped).
  std::optional<StoredSession> Take(const std::string& screening_id,
                                    int64_t version);
  // Keeps `session` (at session.version) for `screening_id`, replacing any
  // entry it has.
  void Put(const std::string& screening_id, StoredSession session);
  void Erase(const std::string& screening_id);

  size_t size() const;
  size_t max_entries() const { return per_shard_ * kShards; }

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, StoredSession> entries ABSL_GUARDED_BY(mu);
  };
  Shard& ShardOf(const std::string& screening_id);

  const size_t per_shard_;
  std::array<Shard, kShards> shards_;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_SESSION_CACHE_H_
