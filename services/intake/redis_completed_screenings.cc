#include <algorithm>
#include <limits>

#include "absl/strings/match.h"
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

// RedisSessionStore's completed screenings (CompletedScreenings): the index
// batch re-scoring walks, what it reads, the outcomes, the checkpoints, and
// the migration and import of completed screenings.

absl::StatusOr<int64_t> RedisSessionStore::CountCompleted(int64_t from_ms,
                                                          int64_t to_ms,
                                                          absl::Time deadline) {
  ASSIGN_OR_RETURN(
      auto r, client_->Command({"ZCOUNT", CompletedKey(), absl::StrCat(from_ms),
                                absl::StrCat(to_ms)},
                               deadline));
  return r.integer;
}

absl::StatusOr<std::vector<SessionStore::CompletedEntry>>
RedisSessionStore::ScanCompleted(int64_t from_ms, int64_t to_ms,
                                 int64_t after_ms,
                                 const std::string& after_member, int limit,
                                 absl::Time deadline) {
  std::vector<CompletedEntry> out;
  const int64_t start =
      after_member.empty() ? from_ms : std::max(from_ms, after_ms);
  int offset = 0;
  while (static_cast<int>(out.size()) < limit) {
    const int want = limit - static_cast<int>(out.size()) + 1;
    ASSIGN_OR_RETURN(
        auto r,
        client_->Command({"ZRANGEBYSCORE", CompletedKey(), absl::StrCat(start),
                          absl::StrCat(to_ms), "WITHSCORES", "LIMIT",
                          absl::StrCat(offset), absl::StrCat(want)},
                         deadline));
    const auto& el = r.elements;
    for (size_t i = 0;
         i + 1 < el.size() && static_cast<int>(out.size()) < limit; i += 2) {
      CompletedEntry e;
      e.member = el[i].str;
      if (!absl::SimpleAtoi(el[i + 1].str, &e.time_ms))
        return absl::InternalError("completed index: bad score");
      if (!after_member.empty() && e.time_ms == after_ms &&
          e.member <= after_member)
        continue;
      e.screening_id = e.member;
      if (e.screening_id.empty()) continue;
      out.push_back(std::move(e));
    }
    offset += static_cast<int>(el.size() / 2);
    if (static_cast<int>(el.size() / 2) < want) break;
  }
  return out;
}

namespace {

// An unchanged outcome is stored without its digest (PutOutcomes): it is the
// original's, field s. Puts it back so readers always see a whole outcome.
void FillUnchangedDigests(std::vector<SessionStore::ForRescore>& read) {
  for (auto& r : read) {
    if (r.completed && r.outcome != nullptr && !r.outcome->changed() &&
        !r.outcome->has_digest()) {
      *r.outcome->mutable_digest() = *r.before;
    }
  }
}

}  // namespace

absl::StatusOr<std::vector<SessionStore::ForRescore>>
RedisSessionStore::ReadForRescore(const std::vector<std::string>& screening_ids,
                                  const std::string& ruleset_version,
                                  absl::Time deadline,
                                  google::protobuf::Arena* arena) {
  std::vector<std::vector<std::string>> commands;
  commands.reserve(screening_ids.size());
  const std::string outcome_field = absl::StrCat("o:", ruleset_version);
  for (const auto& id : screening_ids) {
    commands.push_back({"HMGET", SessionKey(id), "a", "s", outcome_field});
  }
  ASSIGN_OR_RETURN(auto replies, client_->Pipeline(commands, deadline));
  std::vector<ForRescore> out(screening_ids.size());
  for (size_t i = 0; i < replies.size(); ++i) {
    auto& f = replies[i].elements;
    if (replies[i].is_error()) return client_->ErrorOf(replies[i]);
    if (f.size() != 3)
      return absl::InternalError("re-scoring read: unexpected reply");
    if (!f[2].is_nil()) {
      auto* o =
          google::protobuf::Arena::CreateMessage<storage::v1::RescoreOutcome>(
              arena);
      auto sealed = OpenField(screening_ids[i], outcome_field, f[2].str);
      auto plain = sealed.ok() ? compress::Unpack(*sealed)
                               : sealed;  // one stored unpacked reads as it is
      if (!plain.ok() || !o->ParseFromString(*plain)) {
        return absl::DataLossError(absl::StrCat(
            "screening ", screening_ids[i], ": stored outcome does not parse"));
      }
      out[i].outcome = o;
    }
    // Without fields a and s a session is not completed (every completion
    // writes both; MigrateOlderLayouts adds them to older data).
    if (f[0].is_nil() || f[1].is_nil()) continue;
    auto sealed_digest = OpenField(screening_ids[i], "s", f[1].str);
    auto before =
        sealed_digest.ok() ? compress::Unpack(*sealed_digest) : sealed_digest;
    auto sealed_answers = OpenField(screening_ids[i], "a", f[0].str);
    auto packed = sealed_answers.ok() ? compress::Unpack(*sealed_answers)
                                      : sealed_answers;
    out[i].before =
        google::protobuf::Arena::CreateMessage<scoring::v1::ResultDigest>(
            arena);
    if (!before.ok() || !packed.ok() ||
        !out[i].before->ParseFromString(*before)) {
      return absl::DataLossError(
          absl::StrCat("screening ", screening_ids[i],
                       ": stored digest or answers do not open"));
    }
    out[i].packed_request = *std::move(packed);
    out[i].completed = true;
  }
  FillUnchangedDigests(out);
  return out;
}

absl::StatusOr<std::vector<std::map<std::string, storage::v1::RescoreOutcome>>>
RedisSessionStore::ReadOutcomes(const std::vector<std::string>& screening_ids,
                                absl::Time deadline) {
  std::vector<std::map<std::string, storage::v1::RescoreOutcome>> out(
      screening_ids.size());
  std::vector<std::vector<std::string>> keys;
  for (const auto& id : screening_ids)
    keys.push_back({"HKEYS", SessionKey(id)});
  ASSIGN_OR_RETURN(auto names, client_->Pipeline(keys, deadline));
  std::vector<std::vector<std::string>> gets;
  std::vector<size_t> which;  // screening index of each HMGET
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i].is_error()) return client_->ErrorOf(names[i]);
    std::vector<std::string> get = {"HMGET", SessionKey(screening_ids[i])};
    for (const auto& f : names[i].elements) {
      if (absl::StartsWith(f.str, "o:")) get.push_back(f.str);
    }
    if (get.size() == 2) continue;
    gets.push_back(std::move(get));
    which.push_back(i);
  }
  if (gets.empty()) return out;
  ASSIGN_OR_RETURN(auto values, client_->Pipeline(gets, deadline));
  for (size_t g = 0; g < values.size(); ++g) {
    if (values[g].is_error()) return client_->ErrorOf(values[g]);
    const size_t i = which[g];
    const auto& fields = gets[g];
    for (size_t k = 0; k < values[g].elements.size() && k + 2 < fields.size();
         ++k) {
      const auto& v = values[g].elements[k];
      if (v.is_nil()) continue;  // removed between the two reads
      const std::string& field = fields[k + 2];
      auto sealed = OpenField(screening_ids[i], field, v.str);
      auto plain = sealed.ok() ? compress::Unpack(*sealed) : sealed;
      storage::v1::RescoreOutcome outcome;
      if (!plain.ok() || !outcome.ParseFromString(*plain)) {
        return absl::DataLossError(absl::StrCat(
            "screening ", screening_ids[i], ": stored outcome does not parse"));
      }
      out[i][field.substr(2)] = std::move(outcome);
    }
  }
  return out;
}

absl::Status RedisSessionStore::PutOutcomes(
    const std::vector<
        std::pair<std::string, const storage::v1::RescoreOutcome*>>& outcomes,
    const std::string& ruleset_version, absl::Time deadline) {
  if (outcomes.empty()) return absl::OkStatus();
  std::vector<std::vector<std::string>> commands;
  commands.reserve(outcomes.size());
  const std::string field = absl::StrCat("o:", ruleset_version);
  storage::v1::RescoreOutcome slim;
  for (const auto& [id, record] : outcomes) {
    // Most outcomes are unchanged, and an unchanged outcome's digest is the
    // original's (field s): it is stored without it (ReadForRescore puts the
    // digest back), so a re-scoring grows Redis by a time stamp per
    // unchanged screening. A changed outcome carries the full new result,
    // packed like field r (an unpacked one reads too).
    std::string plain;
    if (record->changed()) {
      plain = compress::Pack(record->SerializeAsString());
    } else {
      slim.Clear();
      slim.set_time_ms(record->time_ms());
      plain = slim.SerializeAsString();
    }
    commands.push_back(
        {"HSETNX", SessionKey(id), field, SealField(id, field, plain)});
  }
  ASSIGN_OR_RETURN(auto replies, client_->Pipeline(commands, deadline));
  for (const auto& r : replies) {
    if (r.is_error()) return client_->ErrorOf(r);
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisSessionStore::MigrationReport>
RedisSessionStore::MigrateOlderLayouts(absl::Time deadline) {
  MigrationReport report;
  const std::string index = CompletedKey();
  // 1. Index members "<owner>/<screening>" become "<screening>", same time.
  std::string cursor = "0";
  do {
    ASSIGN_OR_RETURN(
        auto page,
        client_->Command({"ZSCAN", index, cursor, "COUNT", "1000"}, deadline));
    if (page.elements.size() != 2)
      return absl::InternalError("migration: unexpected ZSCAN reply");
    cursor = page.elements[0].str;
    std::vector<std::vector<std::string>> commands;
    const auto& el = page.elements[1].elements;
    for (size_t i = 0; i + 1 < el.size(); i += 2) {
      const std::string& member = el[i].str;
      const size_t slash = member.find('/');
      if (slash == std::string::npos) continue;
      commands.push_back(
          {"ZADD", index, el[i + 1].str, member.substr(slash + 1)});
      commands.push_back({"ZREM", index, member});
      ++report.index_members;
    }
    if (!commands.empty()) {
      ASSIGN_OR_RETURN(auto replies, client_->Pipeline(commands, deadline));
      for (const auto& r : replies) {
        if (r.is_error()) return client_->ErrorOf(r);
      }
    }
  } while (cursor != "0");
  // 2. Completed sessions without the re-scoring fields (a, s): stored as a
  // completion stores them now. A completed session is never written again
  // by serving code, so rewriting it needs no version check.
  int64_t after_ms = 0;
  std::string after_member;
  while (true) {
    ASSIGN_OR_RETURN(auto entries,
                     ScanCompleted(0, std::numeric_limits<int64_t>::max() / 2,
                                   after_ms, after_member, 1000, deadline));
    if (entries.empty()) break;
    after_ms = entries.back().time_ms;
    after_member = entries.back().member;
    std::vector<std::vector<std::string>> probes;
    for (const auto& e : entries)
      probes.push_back({"HMGET", SessionKey(e.screening_id), "a", "s"});
    ASSIGN_OR_RETURN(auto fields, client_->Pipeline(probes, deadline));
    std::vector<std::string> older;
    for (size_t i = 0; i < entries.size(); ++i) {
      const auto& f = fields[i].elements;
      if (f.size() == 2 && (f[0].is_nil() || f[1].is_nil()))
        older.push_back(entries[i].screening_id);
    }
    if (older.empty()) continue;
    ASSIGN_OR_RETURN(auto sessions, GetMany(older, deadline));
    std::vector<std::vector<std::string>> writes;
    for (size_t k = 0; k < older.size(); ++k) {
      const auto& s = sessions[k];
      if (!s.has_value() || s->record.state() != v1::COMPLETED ||
          !s->result.has_value())
        continue;  // not completed: a completion that did not commit
      const std::string& id = older[k];
      storage::v1::SessionRecord without_answers = s->record;
      without_answers.clear_answers();
      writes.push_back(
          {"HSET", SessionKey(id), "a",
           SealField(id, "a", compress::Pack(PackAnswers(s->record))), "s",
           SealField(
               id, "s",
               scoring::DigestOf(s->result->scoring()).SerializeAsString()),
           "d",
           SealField(id, "d",
                     compress::Pack(without_answers.SerializeAsString()))});
      ++report.sessions;
    }
    if (!writes.empty()) {
      ASSIGN_OR_RETURN(auto replies, client_->Pipeline(writes, deadline));
      for (const auto& r : replies) {
        if (r.is_error()) return client_->ErrorOf(r);
      }
    }
  }
  return report;
}

absl::Status RedisSessionStore::ImportCompleted(
    const std::vector<Imported>& screenings, absl::Time deadline) {
  for (size_t base = 0; base < screenings.size(); base += 1000) {
    std::vector<std::vector<std::string>> commands;
    for (size_t i = base; i < std::min(screenings.size(), base + 1000); ++i) {
      const Imported& in = screenings[i];
      const std::string& id = in.record.screening_id();
      RETURN_IF_ERROR(ValidateIdSegment(id, "record.screening_id"));
      storage::v1::SessionRecord record = in.record;
      const std::string packed = PackAnswers(record);
      record.clear_answers();
      commands.push_back(
          {"HSET", SessionKey(id), "v", "2", "d",
           SealField(id, "d", compress::Pack(record.SerializeAsString())), "r",
           SealField(id, "r", compress::Pack(in.result.SerializeAsString())),
           "a", SealField(id, "a", compress::Pack(packed)), "s",
           SealField(
               id, "s",
               scoring::DigestOf(in.result.scoring()).SerializeAsString())});
      commands.push_back({"ZADD", CompletedKey(),
                          absl::StrCat(in.result.complete_time_ms()), id});
    }
    ASSIGN_OR_RETURN(auto replies, client_->Pipeline(commands, deadline));
    for (const auto& r : replies) {
      if (r.is_error()) return client_->ErrorOf(r);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<storage::v1::RescoreCheckpoint>>
RedisSessionStore::GetCheckpoint(const std::string& job, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto r,
                   client_->Command({"GET", CheckpointKey(job)}, deadline));
  if (r.is_nil()) return std::optional<storage::v1::RescoreCheckpoint>();
  storage::v1::RescoreCheckpoint c;
  if (!c.ParseFromString(r.str))
    return absl::DataLossError("checkpoint does not parse");
  return std::optional<storage::v1::RescoreCheckpoint>(std::move(c));
}

absl::Status RedisSessionStore::PutCheckpoint(
    const std::string& job, const storage::v1::RescoreCheckpoint& checkpoint,
    absl::Time deadline) {
  return client_
      ->Command({"SET", CheckpointKey(job), checkpoint.SerializeAsString()},
                deadline)
      .status();
}

}  // namespace aqueduct::intake
