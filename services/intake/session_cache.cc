#include "services/intake/session_cache.h"

#include <utility>

#include "absl/hash/hash.h"

namespace aqueduct::intake {

SessionCache::SessionCache(size_t max_entries)
    : per_shard_(max_entries == 0 ? 0 : (max_entries + kShards - 1) / kShards) {
}

SessionCache::Shard& SessionCache::ShardOf(const std::string& screening_id) {
  // The hash's top bits: a flat_hash_map takes its control bytes from the
  // low 7, which would otherwise be nearly the same for a whole shard.
  static_assert(kShards <= 16, "ShardOf uses the hash's top 4 bits");
  const uint64_t h = absl::Hash<std::string>{}(screening_id);
  return shards_[static_cast<size_t>(h >> 60) % kShards];
}

std::optional<StoredSession> SessionCache::Take(const std::string& screening_id,
                                                int64_t version) {
  if (per_shard_ == 0) return std::nullopt;
  Shard& shard = ShardOf(screening_id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.entries.find(screening_id);
  if (it == shard.entries.end()) return std::nullopt;
  std::optional<StoredSession> out;
  if (it->second.version == version) out = std::move(it->second);
  shard.entries.erase(it);
  return out;
}

void SessionCache::Put(const std::string& screening_id, StoredSession session) {
  if (per_shard_ == 0) return;
  Shard& shard = ShardOf(screening_id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.entries.find(screening_id);
  if (it != shard.entries.end()) {
    it->second = std::move(session);
    return;
  }
  if (shard.entries.size() >= per_shard_)
    shard.entries.erase(shard.entries.begin());
  shard.entries.emplace(screening_id, std::move(session));
}

void SessionCache::Erase(const std::string& screening_id) {
  if (per_shard_ == 0) return;
  Shard& shard = ShardOf(screening_id);
  absl::MutexLock lock(&shard.mu);
  shard.entries.erase(screening_id);
}

size_t SessionCache::size() const {
  size_t n = 0;
  for (const Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    n += shard.entries.size();
  }
  return n;
}

}  // namespace aqueduct::intake
