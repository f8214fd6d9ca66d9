#include "services/intake/redis_session_store.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/compress/compress.h"
#include "common/crypto/sha256.h"
#include "common/status/status_macros.h"
#include "common/util/ids.h"
#include "protos/scoring/v1/scoring_service.pb.h"
#include "services/intake/redis_keys.h"
#include "services/scoring/digest.h"
#include "services/scoring/packed_answers.h"

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
namespace {

// A request id's tag: the first 8 bytes of its SHA-256 (fixed size, so the
// history of a screening's writes stays small; a collision between two
// request ids of one screening is a 1 in 2^64 chance per pair).
std::string RequestTag(const std::string& request_id) {
  return crypto::Sha256(request_id).substr(0, 8);
}

// Whether `tags` (8 bytes each) holds `tag`.
bool HasTag(absl::string_view tags, absl::string_view tag) {
  for (size_t i = 0; i + 8 <= tags.size(); i += 8) {
    if (tags.substr(i, 8) == tag) return true;
  }
  return false;
}

// Idempotency lives in the session's own hash, not in a key per request:
// `qi` is the tag of the latest write's request id, `h` the tags of the 32
// writes before it, 8 bytes each. No reply is stored: a retry of the latest
// write finds the session exactly as that write left it and gets the same
// reply rebuilt from it; a retry of one of the 32 before is known as applied
// and gets the screening as it is now. Older retries carry an etag long
// superseded and get ABORTED: the etag alone keeps any retry from being
// applied twice; the tags spare the app an error. No key per request: the
// tags cost a few bytes in the session, not a key per page.
//
// KEYS: session.
// ARGV: expected version (0 = create), record, ttl ms (0 = persist),
// request tag (8 bytes), result ('' = none), packed answers ('' = none),
// result digest ('' = none; stored with the result, once).
// Returns {'ok', v} | {'latest', v} | {'applied', v} | {'conflict', v} |
// {'exists', v} | {'missing'}.
const redis::Script& WriteScript() {
  static const redis::Script* script = new redis::Script(R"lua(
local f = redis.call('HMGET', KEYS[1], 'v', 'qi', 'h')
local cur, qi, h = f[1], f[2], f[3]
local tag = ARGV[4]
if cur then
  if qi == tag then return {'latest', cur} end
  if h then
    for i = 1, #h, 8 do
      if string.sub(h, i, i + 7) == tag then return {'applied', cur} end
    end
  end
end
if ARGV[1] == '0' then
  if cur then return {'exists', cur} end
else
  if not cur then return {'missing'} end
  if cur ~= ARGV[1] then return {'conflict', cur} end
end
local nv = tostring(tonumber(ARGV[1]) + 1)
redis.call('HSET', KEYS[1], 'v', nv, 'd', ARGV[2], 'qi', tag)
if ARGV[5] ~= '' then
  -- Completing: the pages' tags are not kept for good (a page's late retry
  -- then gets the completed screening's FAILED_PRECONDITION; it can change
  -- nothing either way); the completion's own tag is qi.
  redis.call('HDEL', KEYS[1], 'h')
elseif qi then
  h = (h or '') .. qi
  if #h > 256 then h = string.sub(h, -256) end
  redis.call('HSET', KEYS[1], 'h', h)
end
if ARGV[5] ~= '' and redis.call('HEXISTS', KEYS[1], 'r') == 0 then
  redis.call('HSET', KEYS[1], 'r', ARGV[5])
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 's', ARGV[7]) end
end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'a', ARGV[6]) end
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
return {'ok', nv}
)lua");
  return *script;
}

}  // namespace

absl::StatusOr<std::string> RedisSessionStore::ClaimStartRequest(
    const std::string& user_id, const std::string& request_id,
    const std::string& proposed_id, absl::Time deadline) {
  const std::string key = redis::Key(kService, OwnerOf(user_id),
                                     absl::StrCat("start:", request_id));
  // SET NX GET is Redis 7: one round trip tells us who owns the request id.
  ASSIGN_OR_RETURN(
      auto reply,
      client_->Command({"SET", key, proposed_id, "NX", "GET", "PX",
                        absl::StrCat(absl::ToInt64Milliseconds(reply_ttl_))},
                       deadline));
  if (reply.is_nil()) return proposed_id;  // we set it
  return reply.str;
}

namespace {

// Parses the reply to HMGET v d r [a]; nullopt when the session is missing.
// `open` unseals a field's value.
using Opener = std::function<absl::StatusOr<std::string>(
    absl::string_view field, absl::string_view sealed)>;
absl::StatusOr<std::optional<StoredSession>> ParseSession(
    const std::string& screening_id, const redis::Reply& reply,
    const Opener& open) {
  if (reply.is_error()) return redis::ErrorReplyStatus(reply);
  const auto& fields = reply.elements;
  if (fields.size() < 3 || fields[0].is_nil())
    return std::optional<StoredSession>();
  StoredSession s;
  // A completed session's record and answers are packed (common/compress);
  // an unpacked value (every in-progress record) reads as it is.
  auto sealed_record = open("d", fields[1].str);
  auto record =
      sealed_record.ok() ? compress::Unpack(*sealed_record) : sealed_record;
  if (!record.ok())
    return absl::DataLossError(absl::StrCat("screening ", screening_id, ": ",
                                            record.status().message()));
  if (!absl::SimpleAtoi(fields[0].str, &s.version) ||
      !s.record.ParseFromString(*record)) {
    return absl::DataLossError(absl::StrCat("screening ", screening_id,
                                            ": stored record does not parse"));
  }
  if (!fields[2].is_nil()) {
    storage::v1::ResultRecord result;
    auto sealed = open("r", fields[2].str);
    if (!sealed.ok())
      return absl::DataLossError(absl::StrCat("screening ", screening_id, ": ",
                                              sealed.status().message()));
    auto plain = compress::Unpack(*sealed);  // an unpacked value reads as is
    if (!plain.ok())
      return absl::DataLossError(absl::StrCat("screening ", screening_id, ": ",
                                              plain.status().message()));
    if (!result.ParseFromString(*plain)) {
      return absl::DataLossError(absl::StrCat(
          "screening ", screening_id, ": stored result does not parse"));
    }
    s.result = std::move(result);
  }
  if (fields.size() > 3 && !fields[3].is_nil() && s.record.answers().empty()) {
    // Completed: the answers live in field a only.
    scoring::v1::ScoreAnswersRequest packed;
    auto sealed_answers = open("a", fields[3].str);
    auto plain = sealed_answers.ok() ? compress::Unpack(*sealed_answers)
                                     : sealed_answers;
    if (!plain.ok())
      return absl::DataLossError(absl::StrCat("screening ", screening_id, ": ",
                                              plain.status().message()));
    if (!packed.ParseFromString(*plain)) {
      return absl::DataLossError(absl::StrCat("screening ", screening_id,
                                              ": stored answers do not parse"));
    }
    if (!packed.packed_answers().empty()) {
      // The packed form (what intake writes now); a plain answer list is the
      // earlier layout.
      std::vector<std::string> administered;
      if (absl::Status st = scoring::packed::Unpack(
              packed.packed_answers(), packed.mutable_answers(), &administered);
          !st.ok()) {
        return absl::DataLossError(absl::StrCat(
            "screening ", screening_id, ": stored answers: ", st.message()));
      }
    }
    auto* answers = s.record.mutable_answers();
    for (auto& a : *packed.mutable_answers()->mutable_answers()) {
      std::string id = a.item_id();
      (*answers)[id] = std::move(a);
    }
  }
  return std::optional<StoredSession>(std::move(s));
}

std::vector<std::string> SessionFields(const std::string& screening_id) {
  return {"HMGET", SessionKey(screening_id), "v", "d", "r", "a"};
}

}  // namespace

std::string RedisSessionStore::PackAnswers(
    const storage::v1::SessionRecord& record) {
  std::vector<const common::v1::Answer*> answers;
  answers.reserve(record.answers_size());
  for (const auto& [id, answer] : record.answers()) answers.push_back(&answer);
  std::vector<absl::string_view> administered(record.instruments().begin(),
                                              record.instruments().end());
  // Pack sorts, so the same answers always give the same bytes.
  auto packed_answers = scoring::packed::Pack(answers, administered);
  scoring::v1::ScoreAnswersRequest packed;
  if (packed_answers.ok()) {
    packed.set_packed_answers(*std::move(packed_answers));
    return packed.SerializeAsString();
  }
  // An item id without "<instrument>." cannot be packed (answers are checked
  // against the catalog, whose ids all have it): keep the plain list, which
  // scoring reads too and rejects with the item named.
  for (const auto* answer : answers)
    *packed.mutable_answers()->add_answers() = *answer;
  auto* list = packed.mutable_answers()->mutable_answers();
  std::sort(list->begin(), list->end(), [](const auto& a, const auto& b) {
    return a.item_id() < b.item_id();
  });
  for (const auto& id : record.instruments())
    packed.add_administered_instruments(id);
  return packed.SerializeAsString();
}

std::string RedisSessionStore::SealField(const std::string& screening_id,
                                         absl::string_view field,
                                         absl::string_view value) const {
  return keys_->Seal(value, absl::StrCat(SessionKey(screening_id), "#", field));
}

absl::StatusOr<std::string> RedisSessionStore::OpenField(
    const std::string& screening_id, absl::string_view field,
    absl::string_view sealed) const {
  return keys_->Open(sealed,
                     absl::StrCat(SessionKey(screening_id), "#", field));
}

std::vector<std::vector<std::string>> RedisSessionStore::CountCommands(
    const std::string& user_id, const std::string& what, int64_t window,
    absl::Duration ttl) const {
  // aq:intake:{user}:rate:<what>:<window>; NX keeps the first expiry.
  const std::string key = redis::Key(kService, OwnerOf(user_id),
                                     absl::StrCat("rate:", what, ":", window));
  return {{"INCR", key},
          {"PEXPIRE", key, absl::StrCat(absl::ToInt64Milliseconds(ttl)), "NX"}};
}

namespace {

absl::StatusOr<int64_t> CountFrom(
    absl::StatusOr<std::vector<redis::Reply>> replies) {
  if (!replies.ok()) return replies.status();
  if ((*replies)[0].is_error()) return redis::ErrorReplyStatus((*replies)[0]);
  return (*replies)[0].integer;
}

}  // namespace

absl::StatusOr<int64_t> RedisSessionStore::CountInWindow(
    const std::string& user_id, const std::string& what, int64_t window,
    absl::Duration ttl, absl::Time deadline) {
  return CountFrom(
      client_->Pipeline(CountCommands(user_id, what, window, ttl), deadline));
}

void RedisSessionStore::CountInWindowAsync(const std::string& user_id,
                                           const std::string& what,
                                           int64_t window, absl::Duration ttl,
                                           absl::Time deadline,
                                           CountDone done) {
  if (async_ == nullptr)
    return SessionStore::CountInWindowAsync(user_id, what, window, ttl,
                                            deadline, std::move(done));
  async_->Pipeline(
      CountCommands(user_id, what, window, ttl), deadline,
      [done = std::move(done)](
          absl::StatusOr<std::vector<redis::Reply>> replies) mutable {
        std::move(done)(CountFrom(std::move(replies)));
      });
}

absl::StatusOr<SessionStore::Read> RedisSessionStore::Get(
    const std::string& screening_id, const std::string& request_id,
    absl::Time deadline) {
  // v d r a, then (with a request id) qi h: one command.
  std::vector<std::string> command = SessionFields(screening_id);
  if (!request_id.empty()) {
    command.push_back("qi");
    command.push_back("h");
  }
  ASSIGN_OR_RETURN(auto reply, client_->Command(command, deadline));
  Read out;
  auto session = ParseSession(screening_id, reply,
                              [&](absl::string_view f, absl::string_view v) {
                                return OpenField(screening_id, f, v);
                              });
  if (!session.ok()) return session.status();
  out.session = std::move(*session);
  if (request_id.empty() || !out.session.has_value()) return out;
  const auto& fields = reply.elements;
  if (fields.size() != 6)
    return absl::InternalError("session read: unexpected reply");
  const std::string tag = RequestTag(request_id);
  if (!fields[4].is_nil() && fields[4].str == tag) {
    out.applied = SessionStore::Applied::kLatest;
  } else if (!fields[5].is_nil() && HasTag(fields[5].str, tag)) {
    out.applied = SessionStore::Applied::kEarlier;
  }
  return out;
}

absl::StatusOr<std::vector<std::optional<StoredSession>>>
RedisSessionStore::GetMany(const std::vector<std::string>& screening_ids,
                           absl::Time deadline) {
  std::vector<std::vector<std::string>> commands;
  commands.reserve(screening_ids.size());
  for (const auto& id : screening_ids) commands.push_back(SessionFields(id));
  ASSIGN_OR_RETURN(auto replies, client_->Pipeline(commands, deadline));
  std::vector<std::optional<StoredSession>> out;
  out.reserve(screening_ids.size());
  for (size_t i = 0; i < replies.size(); ++i) {
    auto session = ParseSession(screening_ids[i], replies[i],
                                [&](absl::string_view f, absl::string_view v) {
                                  return OpenField(screening_ids[i], f, v);
                                });
    if (!session.ok()) return session.status();
    out.push_back(std::move(*session));
  }
  return out;
}

RedisSessionStore::WriteBatch RedisSessionStore::WriteCommands(
    const std::string& screening_id, const WriteRequest& request) const {
  // A completed session keeps its answers in field a, in the form scoring
  // takes, so re-scoring forwards them without decoding the record. What a
  // completed session keeps for good (record, answers, result) is packed
  // (common/compress); an in-progress record,
  // rewritten on every page and gone after its TTL, is not.
  std::string record, packed, digest;
  if (request.record.state() == v1::COMPLETED) {
    packed = compress::Pack(PackAnswers(request.record));
    storage::v1::SessionRecord without_answers = request.record;
    without_answers.clear_answers();
    record = compress::Pack(without_answers.SerializeAsString());
  } else {
    record = request.record.SerializeAsString();
  }
  std::string result;
  if (request.result.has_value()) {
    // The digest is not packed: it is small and mostly hashes, so packing
    // would cost a compression per completion and an unpacking per
    // re-scoring read for almost nothing. Reads unpack anyway, so a packed
    // digest reads too.
    digest = SealField(
        screening_id, "s",
        scoring::DigestOf(request.result->scoring()).SerializeAsString());
    result = SealField(screening_id, "r",
                       compress::Pack(request.result->SerializeAsString()));
  }
  if (!packed.empty()) packed = SealField(screening_id, "a", packed);
  std::vector<std::string> eval = {
      "EVALSHA",
      "",
      "1",
      SessionKey(screening_id),
      absl::StrCat(request.expected_version),
      SealField(screening_id, "d", record),
      absl::StrCat(absl::ToInt64Milliseconds(request.ttl)),
      RequestTag(request.request_id),
      result,
      packed,
      digest};
  WriteBatch batch;
  const bool indexes = request.index_completion.has_value() ||
                       request.touch_open_slot_until_ms > 0 ||
                       request.remove_handoff || request.release_open_slot ||
                       request.queue_early_risk.has_value();
  const std::string owner =
      indexes ? OwnerOf(request.record.user_id()) : std::string();
  if (request.index_completion.has_value()) {
    // Ahead of the write (see WriteRequest::index_completion). The completed
    // index holds the screening id alone: re-scoring needs no more, and the
    // index is never trimmed.
    const std::string at =
        absl::StrCat(request.index_completion->complete_time_ms);
    batch.commands.push_back({"ZADD", ResultsKey(owner), at, screening_id});
    batch.commands.push_back({"ZADD", CompletedKey(), at, screening_id});
    batch.commands.push_back(
        {"ZADD", OutboxKey(),
         absl::StrCat(request.index_completion->handoff_due_ms),
         absl::StrCat(owner, "/", screening_id)});
    batch.commands.push_back({"ZADD", OutboxSinceKey(), "NX", at,
                              absl::StrCat(owner, "/", screening_id)});
  }
  if (request.queue_early_risk.has_value()) {
    // Due at once (score 0 sorts first): the worker delivers it on its next
    // tick. Ahead of the write, as the completion's indexes are.
    const std::string member =
        absl::StrCat(owner, "/", screening_id, "/",
                     static_cast<int>(*request.queue_early_risk));
    batch.commands.push_back({"ZADD", RiskOutboxKey(), "NX", "0", member});
    batch.commands.push_back({"ZADD", RiskOutboxSinceKey(), "NX",
                              absl::StrCat(absl::ToUnixMillis(absl::Now())),
                              member});
  }
  batch.script = batch.commands.size();
  batch.commands.push_back(std::move(eval));
  if (request.touch_open_slot_until_ms > 0) {
    // In the same round trip: idempotent (XX only moves an existing slot's
    // expiry), so harmless when the write itself is refused.
    batch.commands.push_back({"ZADD", OpenKey(owner), "XX",
                              absl::StrCat(request.touch_open_slot_until_ms),
                              screening_id});
  }
  if (request.remove_handoff) {
    batch.commands.push_back(
        {"ZREM", OutboxKey(), absl::StrCat(owner, "/", screening_id)});
    batch.commands.push_back(
        {"ZREM", OutboxSinceKey(), absl::StrCat(owner, "/", screening_id)});
  }
  if (request.release_open_slot) {
    batch.commands.push_back({"ZREM", OpenKey(owner), screening_id});
  }
  return batch;
}

absl::StatusOr<SessionStore::WriteOutcome> RedisSessionStore::ParseWriteReplies(
    std::vector<redis::Reply>& replies, size_t script) {
  if (script >= replies.size())
    return absl::InternalError("session write: unexpected replies");
  redis::Reply& reply = replies[script];
  if (reply.is_error() && absl::StartsWith(reply.str, "NOSCRIPT")) {
    return absl::NotFoundError(
        reply.str);  // Redis restarted: load again, retry
  }
  // An error in the index updates riding along fails the call rather than
  // passing unseen (in practice a Redis refusing writes, which refuses the
  // script as well).
  for (size_t i = 0; i < replies.size(); ++i) {
    if (i != script && replies[i].is_error())
      return redis::ErrorReplyStatus(replies[i]);
  }
  if (reply.is_error()) return redis::ErrorReplyStatus(reply);
  const auto& el = reply.elements;
  if (reply.type != redis::Reply::Type::kArray || el.empty()) {
    return absl::InternalError("session write: unexpected script reply");
  }
  WriteOutcome out;
  const std::string& kind = el[0].str;
  if (kind == "missing") {
    out.kind = WriteOutcome::Kind::kMissing;
    return out;
  }
  if (el.size() < 2 || !absl::SimpleAtoi(el[1].str, &out.version)) {
    return absl::InternalError("session write: unexpected script reply");
  }
  if (kind == "ok") {
    out.kind = WriteOutcome::Kind::kWritten;
  } else if (kind == "latest") {
    out.kind = WriteOutcome::Kind::kLatest;
  } else if (kind == "applied") {
    out.kind = WriteOutcome::Kind::kApplied;
  } else if (kind == "conflict") {
    out.kind = WriteOutcome::Kind::kConflict;
  } else if (kind == "exists") {
    out.kind = WriteOutcome::Kind::kExists;
  } else {
    return absl::InternalError("session write: unexpected script reply");
  }
  return out;
}

absl::StatusOr<SessionStore::WriteOutcome> RedisSessionStore::Write(
    const std::string& screening_id, const WriteRequest& request,
    absl::Time deadline) {
  if (request.request_id.empty()) {
    return absl::InternalError("session write without a request id");
  }
  WriteBatch batch = WriteCommands(screening_id, request);
  for (int attempt = 0; attempt < 2; ++attempt) {
    ASSIGN_OR_RETURN(auto sha, client_->LoadScript(WriteScript(), deadline));
    batch.commands[batch.script][1] = sha;
    ASSIGN_OR_RETURN(auto replies, client_->Pipeline(batch.commands, deadline));
    auto outcome = ParseWriteReplies(replies, batch.script);
    if (outcome.status().code() != absl::StatusCode::kNotFound) return outcome;
    client_->ForgetScript(WriteScript());  // NOSCRIPT: load again, retry once
  }
  return absl::UnavailableError("redis: the script cache keeps being flushed");
}

struct RedisSessionStore::AsyncWrite {
  WriteBatch batch;
  absl::Time deadline;
  WriteDone done;
  int attempt = 0;
};

void RedisSessionStore::WriteAsync(const std::string& screening_id,
                                   const WriteRequest& request,
                                   absl::Time deadline, WriteDone done) {
  if (async_ == nullptr)
    return SessionStore::WriteAsync(screening_id, request, deadline,
                                    std::move(done));
  if (request.request_id.empty()) {
    return std::move(done)(
        absl::InternalError("session write without a request id"));
  }
  auto write = std::make_shared<AsyncWrite>();
  write->batch = WriteCommands(screening_id, request);
  write->deadline = deadline;
  write->done = std::move(done);
  SendWrite(std::move(write));
}

// The blocking Write's steps, each continuing on the reply: the script's
// SHA (cached after the first), the pipeline, and once, after NOSCRIPT,
// the two again.
void RedisSessionStore::SendWrite(std::shared_ptr<AsyncWrite> write) {
  const absl::Time deadline = write->deadline;
  async_->LoadScript(
      WriteScript(), deadline,
      [this, write](absl::StatusOr<std::string> sha) mutable {
        if (!sha.ok()) return std::move(write->done)(sha.status());
        write->batch.commands[write->batch.script][1] = *sha;
        // The commands are kept for a retry after NOSCRIPT: sent as a copy.
        async_->Pipeline(
            write->batch.commands, write->deadline,
            [this,
             write](absl::StatusOr<std::vector<redis::Reply>> replies) mutable {
              if (!replies.ok())
                return std::move(write->done)(replies.status());
              auto outcome = ParseWriteReplies(*replies, write->batch.script);
              if (outcome.status().code() != absl::StatusCode::kNotFound) {
                return std::move(write->done)(std::move(outcome));
              }
              if (++write->attempt >= 2) {
                return std::move(write->done)(absl::UnavailableError(
                    "redis: the script cache keeps being flushed"));
              }
              redis::AsyncClient::ForgetScript(WriteScript());
              SendWrite(std::move(write));
            });
      });
}

namespace {

// KEYS: open zset. ARGV: now ms, expiry ms, screening id, limit.
const redis::Script& ReserveScript() {
  static const redis::Script* script = new redis::Script(R"lua(
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return 1
)lua");
  return *script;
}

}  // namespace

absl::StatusOr<bool> RedisSessionStore::ReserveOpenSlot(
    const std::string& user_id, const std::string& screening_id,
    int64_t expire_time_ms, int limit, int64_t now_ms, absl::Time deadline) {
  ASSIGN_OR_RETURN(
      auto r, client_->Eval(ReserveScript(), {OpenKey(OwnerOf(user_id))},
                            {absl::StrCat(now_ms), absl::StrCat(expire_time_ms),
                             screening_id, absl::StrCat(limit)},
                            deadline));
  return r.integer == 1;
}

absl::Status RedisSessionStore::ReleaseOpenSlot(const std::string& user_id,
                                                const std::string& screening_id,
                                                absl::Time deadline) {
  return client_
      ->Command({"ZREM", OpenKey(OwnerOf(user_id)), screening_id}, deadline)
      .status();
}

absl::StatusOr<std::vector<SessionStore::IndexEntry>>
RedisSessionStore::ListResults(const std::string& user_id, int64_t before_ms,
                               const std::string& before_id, int limit,
                               absl::Time deadline) {
  std::vector<IndexEntry> out;
  const std::string max = before_id.empty() ? "+inf" : absl::StrCat(before_ms);
  int offset = 0;
  while (static_cast<int>(out.size()) < limit) {
    const int want = limit - static_cast<int>(out.size()) + 1;
    ASSIGN_OR_RETURN(
        auto r,
        client_->Command(
            {"ZREVRANGEBYSCORE", ResultsKey(OwnerOf(user_id)), max, "-inf",
             "WITHSCORES", "LIMIT", absl::StrCat(offset), absl::StrCat(want)},
            deadline));
    const auto& el = r.elements;
    for (size_t i = 0;
         i + 1 < el.size() && static_cast<int>(out.size()) < limit; i += 2) {
      IndexEntry e;
      e.screening_id = el[i].str;
      if (!absl::SimpleAtoi(el[i + 1].str, &e.time_ms)) {
        return absl::InternalError("results index: score does not parse");
      }
      // Ties on time are ordered by id, descending (ZREVRANGEBYSCORE).
      if (!before_id.empty() && e.time_ms == before_ms &&
          e.screening_id >= before_id)
        continue;
      out.push_back(std::move(e));
    }
    offset += static_cast<int>(el.size() / 2);
    if (static_cast<int>(el.size() / 2) < want) break;
  }
  return out;
}

namespace {

// KEYS: session. ARGV: '1' = persist, else the expiry in ms. A completed
// session (field r) keeps no expiry; a missing one is not created.
const redis::Script& KeepScript() {
  static const redis::Script* script = new redis::Script(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then return redis.call('PERSIST', KEYS[1]) end
if redis.call('HEXISTS', KEYS[1], 'r') == 1 then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
)lua");
  return *script;
}

}  // namespace

absl::Status RedisSessionStore::KeepSession(const std::string& screening_id,
                                            bool keep, absl::Duration ttl,
                                            absl::Time deadline) {
  return client_
      ->Eval(KeepScript(), {SessionKey(screening_id)},
             {keep ? "1" : "0", absl::StrCat(absl::ToInt64Milliseconds(ttl))},
             deadline)
      .status();
}

}  // namespace aqueduct::intake
