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
using redis_keys::OutboxSinceKey;
using redis_keys::ResultsKey;
using redis_keys::RiskOutboxKey;
using redis_keys::RiskOutboxSinceKey;
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

absl::Status RedisSessionStore::RemoveFromOutbox(const std::string& outbox,
                                                 const std::string& since,
                                                 const std::string& member,
                                                 absl::Time deadline) {
  ASSIGN_OR_RETURN(auto replies, client_->Pipeline({{"ZREM", outbox, member},
                                                    {"ZREM", since, member}},
                                                   deadline));
  for (const auto& r : replies) {
    if (r.is_error()) return client_->ErrorOf(r);
  }
  return absl::OkStatus();
}

absl::Status RedisSessionStore::RemoveRiskEntry(const std::string& member,
                                                absl::Time deadline) {
  return RemoveFromOutbox(RiskOutboxKey(), RiskOutboxSinceKey(), member,
                          deadline);
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

namespace {

// How many of the oldest "since" entries one reading checks against the
// outbox (and drops when the outbox no longer has them).
constexpr int kSinceProbe = 16;

}  // namespace

// The oldest entry's queue time: the first of the oldest since-entries that
// the outbox still holds. Since-entries whose outbox entry is gone (removed
// by a path that did not also remove them, or a crash between the two) are
// dropped here, so they never make an outbox look old. An entry queued
// without a since-entry (a crash between the two ZADDs) is not seen: the
// age errs young, never old.
absl::StatusOr<int64_t> RedisSessionStore::OldestQueuedMs(
    const std::string& outbox, const std::string& since,
    const redis::Reply& oldest, absl::Time deadline) {
  if (oldest.elements.empty()) return 0;
  std::vector<std::string> members;
  std::vector<int64_t> times;
  for (size_t i = 0; i + 1 < oldest.elements.size(); i += 2) {
    int64_t ms = 0;
    if (!absl::SimpleAtoi(oldest.elements[i + 1].str, &ms)) continue;
    members.push_back(oldest.elements[i].str);
    times.push_back(ms);
  }
  if (members.empty()) return 0;
  std::vector<std::string> zmscore = {"ZMSCORE", outbox};
  zmscore.insert(zmscore.end(), members.begin(), members.end());
  ASSIGN_OR_RETURN(auto present, client_->Command(zmscore, deadline));
  if (present.elements.size() != members.size())
    return absl::UnavailableError("outbox age: unexpected reply");
  std::vector<std::string> stale = {"ZREM", since};
  int64_t oldest_ms = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    if (present.elements[i].is_nil()) {
      stale.push_back(members[i]);
    } else if (oldest_ms == 0) {
      oldest_ms = times[i];
    }
  }
  if (stale.size() > 2) (void)client_->Command(stale, deadline);
  return oldest_ms;
}

absl::StatusOr<Outboxes::Sizes> RedisSessionStore::OutboxSizes(
    absl::Time deadline) {
  const std::string probe = absl::StrCat(kSinceProbe - 1);
  ASSIGN_OR_RETURN(
      auto replies,
      client_->Pipeline(
          {{"ZCARD", OutboxKey()},
           {"ZCARD", RiskOutboxKey()},
           {"ZRANGE", OutboxSinceKey(), "0", probe, "WITHSCORES"},
           {"ZRANGE", RiskOutboxSinceKey(), "0", probe, "WITHSCORES"}},
          deadline));
  if (replies.size() != 4) {
    return absl::UnavailableError("outbox sizes: unexpected reply");
  }
  for (const auto& r : replies) {
    if (r.is_error()) return client_->ErrorOf(r);
  }
  Sizes sizes{replies[0].integer, replies[1].integer};
  ASSIGN_OR_RETURN(
      sizes.oldest_handoff_ms,
      OldestQueuedMs(OutboxKey(), OutboxSinceKey(), replies[2], deadline));
  ASSIGN_OR_RETURN(sizes.oldest_risk_ms,
                   OldestQueuedMs(RiskOutboxKey(), RiskOutboxSinceKey(),
                                  replies[3], deadline));
  return sizes;
}

absl::Status RedisSessionStore::RemoveHandoff(const std::string& owner,
                                              const std::string& screening_id,
                                              absl::Time deadline) {
  return RemoveFromOutbox(OutboxKey(), OutboxSinceKey(),
                          absl::StrCat(owner, "/", screening_id), deadline);
}

}  // namespace aqueduct::intake
