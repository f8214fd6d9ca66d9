#ifndef AQUEDUCT_SERVICES_INTAKE_REDIS_SESSION_STORE_H_
#define AQUEDUCT_SERVICES_INTAKE_REDIS_SESSION_STORE_H_

#include "common/crypto/data_keys.h"
#include "common/redis/async_client.h"
#include "common/redis/redis_client.h"
#include "services/intake/session_store.h"

namespace aqueduct::intake {

// Keys (all of one session under one hash tag, so one Lua script updates
// them atomically and they sit in one Redis Cluster slot):
//   aq:intake:{<screening>}:session     hash v = version, d = SessionRecord,
//                                        r = ResultRecord (once completed),
//                                        a = the answers once completed (a
//                                        serialized ScoreAnswersRequest; d
//                                        then holds no answers), s = the
//                                        result's ResultDigest, qi = the
//                                        latest write's request tag, h =
//                                        tags of the 32 writes before it (8
//                                        bytes each; the completing write
//                                        drops them)
//   aq:intake:{<owner>}:start:<id>       screening id bound to a start request
//   aq:intake:{<owner>}:open            zset of open screenings by expiry
//   aq:intake:{<owner>}:results         zset of completed screenings by time
//   aq:intake:outbox                    zset "<owner>/<screening>" by next
//                                       hand-off attempt (global index)
//   aq:intake:risk-outbox               zset "<owner>/<screening>/<route
//                                       number>" by next attempt: early risk
//                                       cases owed to referral (global)
//   aq:intake:outbox-since, aq:intake:risk-outbox-since
//                                       zsets of the same members by when
//                                       each was first queued (the oldest
//                                       entry's age, a metric)
//   aq:intake:export-audit              stream of sealed ExportAuditEvents
//                                       (field e), capped at ~1M entries
//   aq:intake:completed                 zset "<screening>" by completion
//                                       (an "<owner>/<screening>" member
//                                       reads the same)
// <owner> is the user id's keyed pseudonym (OwnerOf), never the id itself;
// every value is sealed (crypto::DataKeys).
//   aq:intake:{<screening>}:session     field o:<ruleset> = re-scoring outcome
//   aq:intake:{<job>}:rescore-checkpoint  a batch job's RescoreCheckpoint
class RedisSessionStore : public SessionStore {
 public:
  // Every stored record, result, answer set, digest, outcome and reply is
  // sealed with `keys` (AES-256-GCM, bound to its key and field); `keys`
  // must outlive the store.
  // `reply_ttl`: how long a start request id stays bound to its screening.
  // `async`, if given, carries WriteAsync and CountInWindowAsync (without
  // it they block, on the caller's thread); it must outlive the store.
  RedisSessionStore(redis::Client* client, const crypto::DataKeys* keys,
                    absl::Duration reply_ttl = absl::Hours(24),
                    redis::AsyncClient* async = nullptr)
      : client_(client), async_(async), keys_(keys), reply_ttl_(reply_ttl) {}

  // A value sealed as this store seals field `field` of a session (seeding
  // tools write exactly what intake writes).
  std::string SealField(const std::string& screening_id,
                        absl::string_view field, absl::string_view value) const;
  // The reverse: a stored value opened (tests check what is stored).
  absl::StatusOr<std::string> OpenField(const std::string& screening_id,
                                        absl::string_view field,
                                        absl::string_view sealed) const;

  absl::StatusOr<std::string> ClaimStartRequest(const std::string& user_id,
                                                const std::string& request_id,
                                                const std::string& proposed_id,
                                                absl::Time deadline) override;
  absl::StatusOr<Read> Get(const std::string& screening_id,
                           const std::string& request_id,
                           absl::Time deadline) override;
  std::string OwnerOf(const std::string& user_id) const override {
    return keys_->Pseudonym(user_id);
  }
  absl::StatusOr<int64_t> CountInWindow(const std::string& user_id,
                                        const std::string& what, int64_t window,
                                        absl::Duration ttl,
                                        absl::Time deadline) override;
  absl::StatusOr<WriteOutcome> Write(const std::string& screening_id,
                                     const WriteRequest& request,
                                     absl::Time deadline) override;
  void WriteAsync(const std::string& screening_id, const WriteRequest& request,
                  absl::Time deadline, WriteDone done) override;
  void CountInWindowAsync(const std::string& user_id, const std::string& what,
                          int64_t window, absl::Duration ttl,
                          absl::Time deadline, CountDone done) override;
  absl::StatusOr<bool> ReserveOpenSlot(const std::string& user_id,
                                       const std::string& screening_id,
                                       int64_t expire_time_ms, int limit,
                                       int64_t now_ms,
                                       absl::Time deadline) override;
  absl::Status ReleaseOpenSlot(const std::string& user_id,
                               const std::string& screening_id,
                               absl::Time deadline) override;
  absl::StatusOr<std::vector<IndexEntry>> ListResults(
      const std::string& user_id, int64_t before_ms,
      const std::string& before_id, int limit, absl::Time deadline) override;
  absl::StatusOr<std::vector<HandoffEntry>> ClaimDueHandoffs(
      int64_t now_ms, int64_t retry_ms, int limit,
      absl::Time deadline) override;
  absl::Status RemoveHandoff(const std::string& owner,
                             const std::string& screening_id,
                             absl::Time deadline) override;
  absl::StatusOr<std::vector<RiskEntry>> ClaimDueRiskEntries(
      int64_t now_ms, int64_t retry_ms, int limit,
      absl::Time deadline) override;
  absl::Status RemoveRiskEntry(const std::string& member,
                               absl::Time deadline) override;
  absl::StatusOr<Sizes> OutboxSizes(absl::Time deadline) override;
  absl::StatusOr<
      std::vector<std::map<std::string, storage::v1::RescoreOutcome>>>
  ReadOutcomes(const std::vector<std::string>& screening_ids,
               absl::Time deadline) override;
  absl::Status RecordExport(const storage::v1::ExportAuditEvent& event,
                            absl::Time deadline) override;
  absl::StatusOr<std::vector<storage::v1::ExportAuditEvent>> RecentExports(
      int limit, absl::Time deadline) override;
  absl::Status KeepSession(const std::string& screening_id, bool keep,
                           absl::Duration ttl, absl::Time deadline) override;
  absl::StatusOr<int64_t> CountCompleted(int64_t from_ms, int64_t to_ms,
                                         absl::Time deadline) override;
  absl::StatusOr<std::vector<CompletedEntry>> ScanCompleted(
      int64_t from_ms, int64_t to_ms, int64_t after_ms,
      const std::string& after_member, int limit, absl::Time deadline) override;
  absl::StatusOr<std::vector<ForRescore>> ReadForRescore(
      const std::vector<std::string>& screening_ids,
      const std::string& ruleset_version, absl::Time deadline,
      google::protobuf::Arena* arena) override;
  absl::StatusOr<std::vector<std::optional<StoredSession>>> GetMany(
      const std::vector<std::string>& screening_ids,
      absl::Time deadline) override;
  absl::Status PutOutcomes(
      const std::vector<
          std::pair<std::string, const storage::v1::RescoreOutcome*>>& outcomes,
      const std::string& ruleset_version, absl::Time deadline) override;

  // A completed screening's answers as stored in field a: a serialized
  // ScoreAnswersRequest whose packed_answers hold the answers and the
  // administered instruments (services/scoring/packed_answers.h; no ruleset
  // version). Public so seeding tools write exactly what intake writes.
  // Reads also accept the earlier layout (a plain answer list).
  static std::string PackAnswers(const storage::v1::SessionRecord& record);
  // The one migration step for data written by older builds of intake
  // (README, "Upgrading stored data"): every completed-index member
  // "<owner>/<screening>" becomes "<screening>" at the same time, and every
  // completed session without its re-scoring fields (a, s) gets them, its
  // record stored without answers and packed, as a completion stores it
  // now. Readers know only the current layout. Idempotent: a second run
  // changes nothing.
  struct MigrationReport {
    int64_t index_members = 0;  // index entries rewritten
    int64_t sessions = 0;       // sessions given fields a and s
  };
  absl::StatusOr<MigrationReport> MigrateOlderLayouts(absl::Time deadline);

  // Bulk import of completed screenings, stored as a completion stores them
  // (the record without its answers, the packed answers, the result and its
  // digest, each sealed; the completed index at the result's
  // complete_time_ms), in pipelines of 1000: for seeding a store in
  // benchmarks and data migrations. Not for serving: no version check,
  // hand-off or per-person index; `record` carries its answers.
  struct Imported {
    storage::v1::SessionRecord record;
    storage::v1::ResultRecord result;
  };
  absl::Status ImportCompleted(const std::vector<Imported>& screenings,
                               absl::Time deadline);

  absl::StatusOr<std::optional<storage::v1::RescoreCheckpoint>> GetCheckpoint(
      const std::string& job, absl::Time deadline) override;
  absl::Status PutCheckpoint(const std::string& job,
                             const storage::v1::RescoreCheckpoint& checkpoint,
                             absl::Time deadline) override;

 private:
  // Removes `member` from an outbox and its since-set.
  absl::Status RemoveFromOutbox(const std::string& outbox,
                                const std::string& since,
                                const std::string& member, absl::Time deadline);
  // OutboxSizes' oldest queue time of one outbox, from the ZRANGE WITHSCORES
  // reply `oldest` of its since-set (redis_outboxes.cc).
  absl::StatusOr<int64_t> OldestQueuedMs(const std::string& outbox,
                                         const std::string& since,
                                         const redis::Reply& oldest,
                                         absl::Time deadline);

  // The write's commands: the completion's indexes (if any), the write
  // script (EVALSHA, its sha left empty: filled in per attempt), then the
  // index updates riding after it.
  struct WriteBatch {
    std::vector<std::vector<std::string>> commands;
    size_t script = 0;  // which command is the write script
  };
  WriteBatch WriteCommands(const std::string& screening_id,
                           const WriteRequest& request) const;
  // A shared state of one asynchronous write (redis_session_store.cc).
  struct AsyncWrite;
  void SendWrite(std::shared_ptr<AsyncWrite> write);
  // The outcome the write script's replies give; NOT_FOUND: NOSCRIPT (load
  // the script again and retry).
  static absl::StatusOr<WriteOutcome> ParseWriteReplies(
      std::vector<redis::Reply>& replies, size_t script);
  // The rate-limit counter's key and its commands.
  std::vector<std::vector<std::string>> CountCommands(
      const std::string& user_id, const std::string& what, int64_t window,
      absl::Duration ttl) const;
  redis::Client* client_;
  redis::AsyncClient* async_;
  const crypto::DataKeys* keys_;
  absl::Duration reply_ttl_;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_REDIS_SESSION_STORE_H_
