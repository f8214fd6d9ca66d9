#include "services/referral/redis_referral_store.h"

#include <algorithm>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/compress/compress.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"

namespace aqueduct::referral {
namespace {

constexpr char kService[] = "referral";

std::string CaseKey(const std::string& id) {
  return redis::Key(kService, id, "case");
}
// What each audit event is sealed under (binding it to its case). No key of
// this name is written: the trail lives in the case's hash. Older builds
// kept it in a list under this key; MigrateOlderLayouts moves such lists.
std::string AuditKey(const std::string& id) {
  return redis::Key(kService, id, "audit");
}
std::string QueueKey() { return redis::GlobalKey(kService, "queue"); }
std::string TimerKey(ReferralStore::Timer t) {
  return redis::GlobalKey(
      kService, t == ReferralStore::Timer::kLease ? "leases" : "overdue");
}
std::string EventsKey() { return redis::GlobalKey(kService, "events"); }
// A case's id is its screening's id, '-', and the ruleset version it was
// scored under (ReferralCore::ReferralId), so the cases of a screening are
// found from the few versions any case was made under, kept in one small
// set: no key per screening. (Older builds kept a set of case ids per
// screening under "{<screening>}:cases"; MigrateOlderLayouts folds them in.)
std::string RulesetsKey() { return redis::GlobalKey(kService, "rulesets"); }
// The ruleset part of a case id made from `screening_id` ("" if it is not).
std::string RulesetSuffix(const std::string& id,
                          const std::string& screening_id) {
  if (id.size() <= screening_id.size() + 1 ||
      !absl::StartsWith(id, screening_id) || id[screening_id.size()] != '-') {
    return "";
  }
  return id.substr(screening_id.size() + 1);
}

// The audit trail lives in the case's own hash: n = the number of events,
// e<k> = event k (1-based): no key of its own.

// KEYS: case. ARGV: serialized referral, serialized audit event.
// Returns {1} when created, {0, version, data} when it already existed.
const redis::Script& CreateScript() {
  static const redis::Script* script = new redis::Script(R"lua(
local v = redis.call('HGET', KEYS[1], 'v')
if v then
  return {0, v, redis.call('HGET', KEYS[1], 'd')}
end
redis.call('HSET', KEYS[1], 'v', '1', 'd', ARGV[1], 'n', '1', 'e1', ARGV[2])
return {1}
)lua");
  return *script;
}

// Lua shared by the scripts that append to a trail (KEYS: case):
// append_events(first) appends ARGV[first..] to the case's hash.
constexpr char kAppendEventsLua[] = R"lua(
local function append_events(first)
  local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
  for i = first, #ARGV do
    n = n + 1
    redis.call('HSET', KEYS[1], 'e' .. n, ARGV[i])
  end
  redis.call('HSET', KEYS[1], 'n', tostring(n))
end
)lua";

// KEYS: case. ARGV: events. Appends them to the case's trail.
// Returns 0 when the case does not exist.
const redis::Script& AppendScript() {
  static const redis::Script* script =
      new redis::Script(absl::StrCat(kAppendEventsLua, R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
append_events(1)
return 1
)lua"));
  return *script;
}

std::string CaseData(const std::string& id) { return CaseKey(id) + "#d"; }

absl::StatusOr<v1::Referral> Parse(const crypto::DataKeys& keys,
                                   const std::string& version,
                                   const std::string& data,
                                   const std::string& id) {
  v1::Referral r;
  auto sealed = keys.Open(data, CaseData(id));
  if (!sealed.ok())
    return absl::DataLossError(
        absl::StrCat("referral ", id, ": ", sealed.status().message()));
  auto plain = compress::Unpack(*sealed);
  if (!plain.ok())
    return absl::DataLossError(
        absl::StrCat("referral ", id, ": ", plain.status().message()));
  if (!r.ParseFromString(*plain)) {
    return absl::DataLossError(
        absl::StrCat("referral ", id, ": stored record does not parse"));
  }
  r.set_etag(version);
  return r;
}

std::string FormatScore(double score) {
  return absl::StrFormat("%.17g", score);
}

}  // namespace

absl::StatusOr<std::vector<ReferralStore::CreateOutcome>>
RedisReferralStore::CreateMany(std::vector<CreateItem> items,
                               absl::Time deadline) {
  std::vector<CreateOutcome> out;
  if (items.empty()) return out;
  // Pass 1: the atomic create of each case with its audit record.
  absl::StatusOr<std::vector<redis::Reply>> replies;
  for (int attempt = 0; attempt < 2; ++attempt) {
    ASSIGN_OR_RETURN(auto sha, client_->LoadScript(CreateScript(), deadline));
    std::vector<std::vector<std::string>> evals;
    evals.reserve(items.size());
    for (const auto& item : items) {
      evals.push_back(
          {"EVALSHA", sha, "1", CaseKey(item.id),
           keys_->Seal(compress::Pack(item.referral.SerializeAsString()),
                       CaseData(item.id)),
           keys_->Seal(item.created_event.SerializeAsString(),
                       AuditKey(item.id))});
    }
    replies = client_->Pipeline(evals, deadline);
    if (!replies.ok()) return replies.status();
    const bool noscript = std::any_of(
        replies->begin(), replies->end(), [](const redis::Reply& r) {
          return r.is_error() && absl::StartsWith(r.str, "NOSCRIPT");
        });
    if (!noscript) break;
    client_->ForgetScript(
        CreateScript());  // Redis restarted: load again, retry (idempotent)
  }
  out.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const redis::Reply& r = (*replies)[i];
    if (r.is_error()) return client_->ErrorOf(r);
    if (r.type != redis::Reply::Type::kArray || r.elements.empty())
      return absl::InternalError("referral create: unexpected reply");
    CreateOutcome o;
    o.created = r.elements[0].integer == 1;
    if (o.created) {
      o.referral = std::move(
          items[i].referral);  // pass 2 reads only the item's other fields
      o.referral.set_etag("1");
    } else {
      if (r.elements.size() != 3)
        return absl::InternalError("referral create: unexpected script reply");
      ASSIGN_OR_RETURN(auto existing, Parse(*keys_, r.elements[1].str,
                                            r.elements[2].str, items[i].id));
      o.referral = std::move(existing);
    }
    out.push_back(std::move(o));
  }
  // Pass 2: indexes (idempotent, so a retried hand-off repairs them), and
  // for new cases their timer and event.
  std::vector<std::vector<std::string>> rest;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& item = items[i];
    const std::string ruleset = RulesetSuffix(item.id, item.screening_id);
    if (ruleset.empty())
      return absl::InternalError(absl::StrCat(
          "case id ", item.id, " is not made from its screening's"));
    rest.push_back({"SADD", RulesetsKey(), ruleset});
    // NX: a retry never moves a case that is already queued.
    rest.push_back(
        {"ZADD", QueueKey(), "NX", FormatScore(item.queue_score), item.id});
    if (!out[i].created) continue;
    if (item.overdue_due_ms > 0) {
      rest.push_back({"ZADD", TimerKey(Timer::kOverdue),
                      absl::StrCat(item.overdue_due_ms), item.id});
    }
    rest.push_back({"XADD", EventsKey(), "MAXLEN", "~", "100000", "*", "kind",
                    "created", "id", item.id});
  }
  ASSIGN_OR_RETURN(auto indexed, client_->Pipeline(rest, deadline));
  for (const auto& r : indexed) {
    if (r.is_error()) return client_->ErrorOf(r);
  }
  return out;
}

absl::StatusOr<std::optional<v1::Referral>> RedisReferralStore::Get(
    const std::string& id, absl::Time deadline) {
  ASSIGN_OR_RETURN(
      auto reply, client_->Command({"HMGET", CaseKey(id), "v", "d"}, deadline));
  if (reply.elements.size() != 2 || reply.elements[0].is_nil()) {
    return std::optional<v1::Referral>();
  }
  ASSIGN_OR_RETURN(
      auto r, Parse(*keys_, reply.elements[0].str, reply.elements[1].str, id));
  return std::optional<v1::Referral>(std::move(r));
}

absl::StatusOr<std::vector<QueueEntry>> RedisReferralStore::ScanQueue(
    const std::optional<QueueCursor>& after, int limit, absl::Time deadline) {
  std::vector<QueueEntry> out;
  std::string min = after.has_value() ? FormatScore(after->score) : "-inf";
  int offset = 0;
  // Entries with the cursor's own score are skipped up to the cursor's id;
  // keep reading until `limit` entries past the cursor are found.
  while (static_cast<int>(out.size()) < limit) {
    const int want = limit - static_cast<int>(out.size()) + 1;
    ASSIGN_OR_RETURN(
        auto reply, client_->Command(
                        {"ZRANGEBYSCORE", QueueKey(), min, "+inf", "WITHSCORES",
                         "LIMIT", absl::StrCat(offset), absl::StrCat(want)},
                        deadline));
    const auto& el = reply.elements;
    if (el.empty()) break;
    std::vector<QueueCursor> positions;
    for (size_t i = 0; i + 1 < el.size(); i += 2) {
      QueueCursor c;
      c.id = el[i].str;
      if (!absl::SimpleAtod(el[i + 1].str, &c.score)) {
        return absl::InternalError("referral queue: score does not parse");
      }
      if (after.has_value() && c.score == after->score && c.id <= after->id) {
        continue;
      }
      positions.push_back(std::move(c));
    }
    offset += static_cast<int>(el.size() / 2);
    if (!positions.empty()) {
      std::vector<std::vector<std::string>> gets;
      for (const auto& p : positions)
        gets.push_back({"HMGET", CaseKey(p.id), "v", "d"});
      ASSIGN_OR_RETURN(auto records, client_->Pipeline(gets, deadline));
      for (size_t i = 0;
           i < positions.size() && static_cast<int>(out.size()) < limit; ++i) {
        const auto& rec = records[i];
        if (rec.is_error() || rec.elements.size() != 2 ||
            rec.elements[0].is_nil()) {
          continue;  // index entry without a case: skip, never fail the page
        }
        ASSIGN_OR_RETURN(auto r, Parse(*keys_, rec.elements[0].str,
                                       rec.elements[1].str, positions[i].id));
        out.push_back(QueueEntry{positions[i], std::move(r)});
      }
    }
    if (static_cast<int>(el.size() / 2) < want) break;  // end of the queue
  }
  return out;
}

namespace {

// KEYS: case. ARGV: expected version, data, events...
// Returns {1, new version} or {0, current version} (0 when missing).
const redis::Script& UpdateScript() {
  static const redis::Script* script =
      new redis::Script(absl::StrCat(kAppendEventsLua, R"lua(
local v = redis.call('HGET', KEYS[1], 'v')
if not v or v ~= ARGV[1] then return {0, tonumber(v or '0')} end
local nv = tonumber(v) + 1
redis.call('HSET', KEYS[1], 'v', tostring(nv), 'd', ARGV[2])
append_events(3)
return {1, nv}
)lua"));
  return *script;
}

bool ValidStreamId(const std::string& c) {
  if (c == "$" || c == "0" || c == "0-0") return true;
  size_t dash = c.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == c.size())
    return false;
  for (size_t i = 0; i < c.size(); ++i) {
    if (i != dash && (c[i] < '0' || c[i] > '9')) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<int64_t> RedisReferralStore::Update(
    const std::string& id, int64_t expected_version,
    const v1::Referral& referral, const std::vector<v1::AuditEvent>& audit,
    absl::Time deadline) {
  v1::Referral stored = referral;
  stored.clear_etag();
  std::vector<std::string> args = {
      absl::StrCat(expected_version),
      keys_->Seal(compress::Pack(stored.SerializeAsString()), CaseData(id))};
  for (const auto& e : audit)
    args.push_back(keys_->Seal(e.SerializeAsString(), AuditKey(id)));
  ASSIGN_OR_RETURN(
      auto r, client_->Eval(UpdateScript(), {CaseKey(id)}, args, deadline));
  if (r.elements.size() != 2)
    return absl::InternalError("referral update: unexpected script reply");
  if (r.elements[0].integer != 1) {
    if (r.elements[1].integer == 0)
      return absl::NotFoundError("name: no such case");
    return WithErrorInfo(absl::AbortedError(absl::StrCat(
                             "the case changed meanwhile (current etag \"",
                             r.elements[1].integer, "\"); read it and retry")),
                         "ETAG_MISMATCH",
                         {{"etag", absl::StrCat(r.elements[1].integer)}});
  }
  return r.elements[1].integer;
}

absl::Status RedisReferralStore::AppendAudit(const std::string& id,
                                             const v1::AuditEvent& event,
                                             absl::Time deadline) {
  ASSIGN_OR_RETURN(
      auto r,
      client_->Eval(AppendScript(), {CaseKey(id)},
                    {keys_->Seal(event.SerializeAsString(), AuditKey(id))},
                    deadline));
  if (r.integer != 1) return absl::NotFoundError("name: no such case");
  return absl::OkStatus();
}

absl::StatusOr<std::pair<std::vector<v1::AuditEvent>, int64_t>>
RedisReferralStore::ListAudit(const std::string& id, int64_t offset, int limit,
                              absl::Time deadline) {
  if (offset < 0 || limit <= 0)
    return std::make_pair(std::vector<v1::AuditEvent>(), int64_t{0});
  std::vector<std::string> hmget = {"HMGET", CaseKey(id), "n"};
  for (int64_t k = offset + 1; k <= offset + limit; ++k)
    hmget.push_back(absl::StrCat("e", k));
  ASSIGN_OR_RETURN(auto reply, client_->Command(hmget, deadline));
  const auto& fields = reply.elements;
  int64_t total = 0;
  std::vector<const redis::Reply*> sealed;
  if (!fields.empty() && !fields[0].is_nil()) {
    if (!absl::SimpleAtoi(fields[0].str, &total))
      return absl::DataLossError("audit count does not parse");
    for (size_t i = 1; i < fields.size() && !fields[i].is_nil(); ++i)
      sealed.push_back(&fields[i]);
  }
  std::vector<v1::AuditEvent> events;
  for (const redis::Reply* e : sealed) {
    v1::AuditEvent ev;
    auto plain = keys_->Open(e->str, AuditKey(id));
    if (!plain.ok() || !ev.ParseFromString(*plain))
      return absl::DataLossError("audit event does not open");
    events.push_back(std::move(ev));
  }
  return std::make_pair(std::move(events), total);
}

absl::Status RedisReferralStore::Dequeue(const std::string& id,
                                         absl::Time deadline) {
  return client_->Command({"ZREM", QueueKey(), id}, deadline).status();
}

absl::StatusOr<std::vector<int64_t>> RedisReferralStore::CountQueued(
    const std::vector<std::pair<double, double>>& ranges, absl::Time deadline) {
  std::vector<std::vector<std::string>> commands;
  for (const auto& [min, max] : ranges) {
    commands.push_back(
        {"ZCOUNT", QueueKey(), FormatScore(min), "(" + FormatScore(max)});
  }
  ASSIGN_OR_RETURN(auto replies, client_->Pipeline(commands, deadline));
  std::vector<int64_t> counts;
  for (const auto& r : replies) {
    if (r.is_error())
      return absl::UnavailableError("queue counts: unexpected reply");
    counts.push_back(r.integer);
  }
  return counts;
}

absl::Status RedisReferralStore::Requeue(const std::string& id, double score,
                                         absl::Time deadline) {
  return client_
      ->Command({"ZADD", QueueKey(), FormatScore(score), id}, deadline)
      .status();
}

absl::Status RedisReferralStore::SetTimer(Timer timer, const std::string& id,
                                          int64_t due_ms, absl::Time deadline) {
  return client_
      ->Command({"ZADD", TimerKey(timer), absl::StrCat(due_ms), id}, deadline)
      .status();
}

absl::Status RedisReferralStore::ClearTimer(Timer timer, const std::string& id,
                                            absl::Time deadline) {
  return client_->Command({"ZREM", TimerKey(timer), id}, deadline).status();
}

absl::StatusOr<std::vector<std::string>> RedisReferralStore::DueTimers(
    Timer timer, int64_t now_ms, int limit, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto r, client_->Command({"ZRANGEBYSCORE", TimerKey(timer),
                                             "-inf", absl::StrCat(now_ms),
                                             "LIMIT", "0", absl::StrCat(limit)},
                                            deadline));
  std::vector<std::string> out;
  for (const auto& e : r.elements) out.push_back(e.str);
  return out;
}

absl::StatusOr<std::string> RedisReferralStore::Publish(const std::string& kind,
                                                        const std::string& id,
                                                        absl::Time deadline) {
  // Capped: portals that fall more than ~100k events behind re-list the queue.
  ASSIGN_OR_RETURN(
      auto r, client_->Command({"XADD", EventsKey(), "MAXLEN", "~", "100000",
                                "*", "kind", kind, "id", id},
                               deadline));
  return r.str;
}

absl::StatusOr<std::vector<ReferralStore::Event>>
RedisReferralStore::ReadEvents(const std::string& cursor, int limit,
                               absl::Duration block, absl::Time deadline) {
  if (!ValidStreamId(cursor))
    return absl::InvalidArgumentError("cursor: malformed");
  ASSIGN_OR_RETURN(
      auto r,
      blocking_->BlockingCommand(
          {"XREAD", "COUNT", absl::StrCat(limit), "BLOCK",
           absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(block))),
           "STREAMS", EventsKey(), cursor},
          block, deadline));
  std::vector<Event> out;
  if (r.is_nil() || r.elements.empty()) return out;  // nothing new
  // [[key, [[id, [f, v, f, v]], ...]]]
  for (const auto& entry : r.elements[0].elements[1].elements) {
    Event e;
    e.cursor = entry.elements[0].str;
    const auto& fields = entry.elements[1].elements;
    for (size_t i = 0; i + 1 < fields.size(); i += 2) {
      if (fields[i].str == "kind") e.kind = fields[i + 1].str;
      if (fields[i].str == "id") e.id = fields[i + 1].str;
    }
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<std::string> RedisReferralStore::LatestCursor(
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto r, client_->Command({"XREVRANGE", EventsKey(), "+", "-",
                                             "COUNT", "1"},
                                            deadline));
  if (r.elements.empty()) return std::string("0-0");
  return r.elements[0].elements[0].str;
}

absl::StatusOr<std::vector<std::string>> RedisReferralStore::CasesOfScreening(
    const std::string& screening_id, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto rulesets,
                   client_->Command({"SMEMBERS", RulesetsKey()}, deadline));
  // Which of the candidate ids exist (a handful: one per ruleset version).
  std::vector<std::string> candidates;
  std::vector<std::vector<std::string>> probes;
  for (const auto& e : rulesets.elements) {
    candidates.push_back(absl::StrCat(screening_id, "-", e.str));
    probes.push_back({"EXISTS", CaseKey(candidates.back())});
  }
  std::vector<std::string> out;
  if (!probes.empty()) {
    ASSIGN_OR_RETURN(auto exists, client_->Pipeline(probes, deadline));
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (exists[i].is_error()) return client_->ErrorOf(exists[i]);
      if (exists[i].integer == 1) out.push_back(std::move(candidates[i]));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// KEYS: case, older audit list. Moves the list's events into the case's
// hash (e1..en, n) and deletes the list; a case that already has n, or a
// list without its case, is left alone. Returns 1 when moved.
const redis::Script& MoveAuditListScript() {
  static const redis::Script* script = new redis::Script(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'n') == 1 then return 0 end
local events = redis.call('LRANGE', KEYS[2], 0, -1)
for i, e in ipairs(events) do redis.call('HSET', KEYS[1], 'e' .. i, e) end
redis.call('HSET', KEYS[1], 'n', tostring(#events))
redis.call('DEL', KEYS[2])
return 1
)lua");
  return *script;
}

// The part between the braces of a key "aq:referral:{<part>}:<suffix>".
std::string HashTagOf(const std::string& key) {
  const size_t open = key.find('{');
  const size_t close = key.find('}', open);
  if (open == std::string::npos || close == std::string::npos) return "";
  return key.substr(open + 1, close - open - 1);
}

}  // namespace

absl::StatusOr<RedisReferralStore::MigrationReport>
RedisReferralStore::MigrateOlderLayouts(absl::Time deadline) {
  MigrationReport report;
  // Every key of one older kind, a page at a time.
  auto each_key = [&](const std::string& pattern, const std::string& type,
                      const std::function<absl::Status(const std::string&)>& f)
      -> absl::Status {
    std::string cursor = "0";
    do {
      ASSIGN_OR_RETURN(auto page,
                       client_->Command({"SCAN", cursor, "MATCH", pattern,
                                         "COUNT", "1000", "TYPE", type},
                                        deadline));
      if (page.elements.size() != 2)
        return absl::InternalError("migration: unexpected SCAN reply");
      cursor = page.elements[0].str;
      for (const auto& key : page.elements[1].elements)
        RETURN_IF_ERROR(f(key.str));
    } while (cursor != "0");
    return absl::OkStatus();
  };
  // 1. Audit trails kept in a list of their own move into the case's hash
  // (the events keep their seal: it names the case, not the key).
  RETURN_IF_ERROR(each_key(
      AuditKey("*"), "list", [&](const std::string& key) -> absl::Status {
        const std::string id = HashTagOf(key);
        if (id.empty()) return absl::OkStatus();
        ASSIGN_OR_RETURN(
            auto moved, client_->Eval(MoveAuditListScript(), {CaseKey(id), key},
                                      {}, deadline));
        report.audit_trails += moved.integer;
        return absl::OkStatus();
      }));
  // 2. Per-screening sets of case ids: their ruleset parts join the one
  // set CasesOfScreening probes, then the set goes. A member that is not
  // "<screening>-<ruleset>" stops the migration with its key named (its
  // case could not be found without the set).
  RETURN_IF_ERROR(each_key(
      redis::Key(kService, "*", "cases"), "set",
      [&](const std::string& key) -> absl::Status {
        const std::string screening = HashTagOf(key);
        ASSIGN_OR_RETURN(auto members,
                         client_->Command({"SMEMBERS", key}, deadline));
        std::vector<std::string> add = {"SADD", RulesetsKey()};
        for (const auto& m : members.elements) {
          const std::string ruleset = RulesetSuffix(m.str, screening);
          if (ruleset.empty()) {
            return absl::FailedPreconditionError(
                absl::StrCat("migration: ", key,
                             " names a case not made from its screening; "
                             "left as it is"));
          }
          add.push_back(ruleset);
        }
        if (add.size() > 2)
          RETURN_IF_ERROR(client_->Command(add, deadline).status());
        RETURN_IF_ERROR(client_->Command({"DEL", key}, deadline).status());
        ++report.screening_sets;
        return absl::OkStatus();
      }));
  return report;
}

}  // namespace aqueduct::referral
