#include "services/referral/redis_referral_store.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace aqueduct::referral {
namespace {

constexpr char kService[] = "referral";

std::string CaseKey(const std::string& id) { return redis::Key(kService, id, "case"); }
std::string AuditKey(const std::string& id) { return redis::Key(kService, id, "audit"); }
std::string QueueKey() { return redis::GlobalKey(kService, "queue"); }

// KEYS: case, audit. ARGV: serialized referral, serialized audit event.
// Returns {1} when created, {0, version, data} when it already existed.
const redis::Script& CreateScript() {
  static const redis::Script* script = new redis::Script(R"lua(
local v = redis.call('HGET', KEYS[1], 'v')
if v then
  return {0, v, redis.call('HGET', KEYS[1], 'd')}
end
redis.call('HSET', KEYS[1], 'v', '1', 'd', ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
return {1}
)lua");
  return *script;
}

absl::StatusOr<v1::Referral> Parse(const std::string& version,
                                   const std::string& data,
                                   const std::string& id) {
  v1::Referral r;
  if (!r.ParseFromString(data)) {
    return absl::DataLossError(absl::StrCat("referral ", id, ": stored record does not parse"));
  }
  r.set_etag(version);
  return r;
}

std::string FormatScore(double score) { return absl::StrFormat("%.17g", score); }

}  // namespace

absl::StatusOr<ReferralStore::CreateOutcome> RedisReferralStore::CreateIfAbsent(
    const std::string& id, const v1::Referral& referral,
    const v1::AuditEvent& created_event, double queue_score,
    absl::Time deadline) {
  auto reply = client_->Eval(CreateScript(), {CaseKey(id), AuditKey(id)},
                             {referral.SerializeAsString(),
                              created_event.SerializeAsString()},
                             deadline);
  if (!reply.ok()) return reply.status();
  if (reply->type != redis::Reply::Type::kArray || reply->elements.empty()) {
    return absl::InternalError("referral create: unexpected script reply");
  }
  CreateOutcome out;
  out.created = reply->elements[0].integer == 1;
  if (out.created) {
    out.referral = referral;
    out.referral.set_etag("1");
  } else {
    if (reply->elements.size() != 3) {
      return absl::InternalError("referral create: unexpected script reply");
    }
    auto existing = Parse(reply->elements[1].str, reply->elements[2].str, id);
    if (!existing.ok()) return existing.status();
    out.referral = std::move(*existing);
  }
  // NX: a retry never moves a case that is already queued.
  auto queued = client_->Command(
      {"ZADD", QueueKey(), "NX", FormatScore(queue_score), id}, deadline);
  if (!queued.ok()) return queued.status();
  return out;
}

absl::StatusOr<std::optional<v1::Referral>> RedisReferralStore::Get(
    const std::string& id, absl::Time deadline) {
  auto reply = client_->Command({"HMGET", CaseKey(id), "v", "d"}, deadline);
  if (!reply.ok()) return reply.status();
  if (reply->elements.size() != 2 || reply->elements[0].is_nil()) {
    return std::optional<v1::Referral>();
  }
  auto r = Parse(reply->elements[0].str, reply->elements[1].str, id);
  if (!r.ok()) return r.status();
  return std::optional<v1::Referral>(std::move(*r));
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
    auto reply = client_->Command({"ZRANGEBYSCORE", QueueKey(), min, "+inf",
                                   "WITHSCORES", "LIMIT", absl::StrCat(offset),
                                   absl::StrCat(want)},
                                  deadline);
    if (!reply.ok()) return reply.status();
    const auto& el = reply->elements;
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
      for (const auto& p : positions) gets.push_back({"HMGET", CaseKey(p.id), "v", "d"});
      auto records = client_->Pipeline(gets, deadline);
      if (!records.ok()) return records.status();
      for (size_t i = 0; i < positions.size() &&
                         static_cast<int>(out.size()) < limit;
           ++i) {
        const auto& rec = (*records)[i];
        if (rec.is_error() || rec.elements.size() != 2 || rec.elements[0].is_nil()) {
          continue;  // index entry without a case: skip, never fail the page
        }
        auto r = Parse(rec.elements[0].str, rec.elements[1].str, positions[i].id);
        if (!r.ok()) return r.status();
        out.push_back(QueueEntry{positions[i], std::move(*r)});
      }
    }
    if (static_cast<int>(el.size() / 2) < want) break;  // end of the queue
  }
  return out;
}

}  // namespace aqueduct::referral
