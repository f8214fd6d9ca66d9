#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/compress/compress.h"
#include "common/status/status_macros.h"
#include "common/util/ids.h"
#include "services/intake/redis_keys.h"
#include "services/intake/redis_session_store.h"
#include "services/scoring/digest.h"

namespace aqueduct::intake {

using redis_keys::CheckpointKey;
using redis_keys::CompletedKey;
using redis_keys::kService;
using redis_keys::OpenKey;
using redis_keys::OutboxKey;
using redis_keys::ResultsKey;
using redis_keys::RiskOutboxKey;
using redis_keys::SessionKey;

// RedisSessionStore's outboxes (Outboxes): what intake owes referral.

namespace {

// KEYS: outbox. ARGV: now ms, retry ms, limit. Claims due entries by moving
// their score to the retry time, atomically, so replicas do not collide.
const redis::Script& ClaimScript() {
  static const redis::Script* script = new redis::Script(R"lua(
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
end
return due
)lua");
  return *script;
}

}  // namespace

absl::StatusOr<std::vector<SessionStore::RiskEntry>>
RedisSessionStore::ClaimDueRiskEntries(int64_t now_ms, int64_t retry_ms,
                                       int limit, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto r,
                   client_->Eval(ClaimScript(), {RiskOutboxKey()},
                                 {absl::StrCat(now_ms), absl::StrCat(retry_ms),
                                  absl::StrCat(limit)},
                                 deadline));
  std::vector<RiskEntry> out;
  for (const auto& e : r.elements) {
    std::vector<std::string> parts = absl::StrSplit(e.str, '/');
    int route = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[2], &route) ||
        !common::v1::Route_IsValid(route)) {
      // Not an entry this code writes: drop it rather than claim it forever.
      (void)client_->Command({"ZREM", RiskOutboxKey(), e.str}, deadline);
      continue;
    }
    out.push_back(RiskEntry{parts[0], parts[1],
                            static_cast<common::v1::Route>(route), e.str});
  }
  return out;
}

absl::Status RedisSessionStore::RemoveRiskEntry(const std::string& member,
                                                absl::Time deadline) {
  return client_->Command({"ZREM", RiskOutboxKey(), member}, deadline).status();
}

absl::StatusOr<std::vector<SessionStore::HandoffEntry>>
RedisSessionStore::ClaimDueHandoffs(int64_t now_ms, int64_t retry_ms, int limit,
                                    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto r,
                   client_->Eval(ClaimScript(), {OutboxKey()},
                                 {absl::StrCat(now_ms), absl::StrCat(retry_ms),
                                  absl::StrCat(limit)},
                                 deadline));
  std::vector<HandoffEntry> out;
  for (const auto& e : r.elements) {
    size_t slash = e.str.find('/');
    if (slash == std::string::npos) continue;
    out.push_back(
        HandoffEntry{e.str.substr(0, slash), e.str.substr(slash + 1)});
  }
  return out;
}

absl::StatusOr<Outboxes::Sizes> RedisSessionStore::OutboxSizes(
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto replies, client_->Pipeline({{"ZCARD", OutboxKey()},
                                                    {"ZCARD", RiskOutboxKey()}},
                                                   deadline));
  if (replies.size() != 2 || replies[0].is_error() || replies[1].is_error())
    return absl::UnavailableError("outbox sizes: unexpected reply");
  return Sizes{replies[0].integer, replies[1].integer};
}

absl::Status RedisSessionStore::RemoveHandoff(const std::string& owner,
                                              const std::string& screening_id,
                                              absl::Time deadline) {
  return client_
      ->Command({"ZREM", OutboxKey(), absl::StrCat(owner, "/", screening_id)},
                deadline)
      .status();
}

}  // namespace aqueduct::intake
