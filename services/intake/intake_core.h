#ifndef AQUEDUCT_SERVICES_INTAKE_INTAKE_CORE_H_
#define AQUEDUCT_SERVICES_INTAKE_INTAKE_CORE_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/crypto/page_tokens.h"
#include "common/server/worker_pool.h"
#include "common/util/ids.h"
#include "common/util/names.h"
#include "protos/intake/v1/intake_service.pb.h"
#include "protos/storage/v1/records.pb.h"
#include "services/intake/clinical.h"
#include "services/intake/flow.h"
#include "services/intake/peers.h"
#include "services/intake/person_view.h"
#include "services/intake/session_cache.h"
#include "services/intake/session_store.h"
#include "services/scoring/catalog.h"
#include "services/scoring/scoring_engine.h"

namespace aqueduct::intake {

struct WriteTarget;  // below

struct IntakeConfig {
  // Idle time after which an in-progress screening expires (refreshed on
  // every write).
  absl::Duration session_ttl = absl::Hours(72);
  // Open (in-progress) screenings a user may have at once.
  int max_open_sessions = 3;
  // How long the outbox waits before retrying a hand-off to referral.
  absl::Duration handoff_retry = absl::Seconds(5);
  // Longest the completion reply waits for referral before leaving the
  // hand-off to the outbox: the person's result and crisis resources must
  // not wait on a slow peer.
  absl::Duration handoff_inline_budget = absl::Milliseconds(500);
  // Per-user rate limits (OWASP API4), 0 = none: screenings started per
  // hour, and answer submissions per minute (a person answers a page every
  // few seconds at most; a script hammering the API does not).
  int start_limit_per_hour = 20;
  int submit_limit_per_minute = 60;
  // In-progress sessions this replica remembers as it wrote them, so the
  // next page skips reading the session back (SessionCache); 0 = none.
  size_t session_cache_entries = 4096;
  // What the person reads (data/texts/); null: the repository's texts.
  std::shared_ptr<const texts::PersonTexts> person_texts;
  // What page tokens are sealed with (crypto::PageTokens): the data keys,
  // so a token works on every replica. Null: a random key of this process
  // (tests).
  const crypto::DataKeys* page_token_keys = nullptr;
};

// Screening-session logic above the store and the peers; no gRPC types.
class IntakeCore {
 public:
  IntakeCore(SessionStore* store, ScoringPeer* scoring, ReferralPeer* referral,
             const CatalogHolder* catalog, const Clock* clock,
             IntakeConfig config)
      : store_(store),
        scoring_(scoring),
        referral_(referral),
        catalog_(catalog),
        clock_(clock),
        config_(config),
        cache_(std::make_unique<SessionCache>(config.session_cache_entries)),
        page_tokens_(config.page_token_keys != nullptr
                         ? crypto::PageTokens(config.page_token_keys)
                         : crypto::PageTokens()) {
    if (config_.person_texts == nullptr)
      config_.person_texts = DefaultIntakeTexts();
  }

  absl::StatusOr<v1::Screening> StartScreening(
      const v1::StartScreeningRequest& request, absl::Time deadline);
  absl::StatusOr<v1::Screening> GetScreening(
      const v1::GetScreeningRequest& request, absl::Time deadline);
  absl::StatusOr<v1::NextItems> GetNextItems(
      const v1::GetNextItemsRequest& request, absl::Time deadline);
  // Stores a page of answers, for gRPC's callback API: it never blocks the
  // calling thread. The request is checked first (name, etag, request id,
  // answers present; the per-person rate limit). When this replica has the
  // session cached at the etag's version (it wrote the page before: the
  // usual case), the page is checked and applied here and its write goes
  // out on the store's non-blocking path; `done` then runs on the store's
  // I/O thread. Whatever would block (reading the session on a cache miss,
  // starting over after a write that lost a race or a retry that raced
  // its original) runs on `pool`; a full pool answers UNAVAILABLE. `done`
  // runs exactly once.
  using SubmitDone =
      absl::AnyInvocable<void(absl::StatusOr<v1::SubmitAnswersResponse>) &&>;
  void SubmitAnswersAsync(
      std::shared_ptr<const v1::SubmitAnswersRequest> request,
      absl::Time deadline, server::WorkerPool* pool, SubmitDone done);
  absl::StatusOr<v1::CompleteScreeningResponse> CompleteScreening(
      const v1::CompleteScreeningRequest& request, absl::Time deadline);
  absl::StatusOr<v1::Screening> AbandonScreening(
      const v1::AbandonScreeningRequest& request, absl::Time deadline);
  absl::StatusOr<v1::ListMyResultsResponse> ListMyResults(
      const v1::ListMyResultsRequest& request, absl::Time deadline);
  absl::StatusOr<v1::ScreeningResult> GetMyResult(
      const v1::GetMyResultRequest& request, absl::Time deadline);

  // The outbox worker's step: delivers due early risk cases, then retries
  // due hand-offs to referral. Returns how many were delivered. Safe to run
  // on every replica at once.
  absl::StatusOr<int> DeliverPendingHandoffs(int limit, absl::Time deadline);

  // Called (on whatever thread acknowledged the page) after a page that
  // raised an early risk case is stored, so the worker delivers it now
  // rather than on its next tick. Must not block. Set before serving.
  void set_on_early_risk(absl::AnyInvocable<void()> wake) {
    on_early_risk_ = std::move(wake);
  }

  static constexpr int kDefaultResultsPageSize = 20;
  static constexpr int kMaxResultsPageSize = 100;

 private:
  // RESOURCE_EXHAUSTED, saying when to try again, once `user` has done
  // `what` more than `limit` times in the current `window`.
  absl::Status RateLimit(const std::string& user, const char* what, int limit,
                         absl::Duration window, absl::Time deadline);
  // The same verdict from the count so far in the window.
  absl::Status RateVerdict(absl::StatusOr<int64_t> count, const char* what,
                           int limit, absl::Duration window,
                           int64_t now_ms) const;
  // The fixed window `now_ms` falls in (its number since the epoch), and
  // how long its counter is kept: two windows, so it outlives its own.
  struct RateWindow {
    int64_t index;
    absl::Duration ttl;
  };
  static RateWindow RateWindowAt(absl::Duration window, int64_t now_ms) {
    return {now_ms / absl::ToInt64Milliseconds(window), window * 2};
  }
  absl::StatusOr<std::shared_ptr<const Clinical>> Catalog() const;
  // Loads a session by name; NOT_FOUND for unknown ones and for another
  // user's (the same answer, so ids cannot be probed).
  absl::StatusOr<StoredSession> Load(const std::string& name,
                                     const std::string& field,
                                     absl::Time deadline);
  // `progress`, when given, is the session's (saves computing it again).
  v1::Screening ToScreening(const StoredSession& s,
                            const v1::Progress* progress = nullptr) const;
  absl::StatusOr<v1::NextItems> NextItemsOf(const StoredSession& s,
                                            const Clinical& clinical) const;
  // The same from the flow of `s`'s answers, already computed.
  // What the answers so far say about risk, from the local engine.
  struct RiskNow {
    bool crisis_resources = false;  // the ruleset's crisis_when holds
    // CRISIS_ACUTE or CRISIS_URGENT once a safety flag is raised.
    common::v1::Route route = common::v1::ROUTE_UNSPECIFIED;
  };
  v1::NextItems NextItemsFrom(const StoredSession& s, const Clinical& clinical,
                              const Flow& flow, RiskNow* risk = nullptr) const;
  // Delivers the early risk case owed for `entry`'s screening, when one is.
  enum class RiskDelivery { kDelivered, kNothingOwed, kRetry };
  RiskDelivery DeliverEarlyRisk(const SessionStore::RiskEntry& entry,
                                absl::Time deadline);
  // The answers that raised `result`'s safety flags, in the person's words.
  static void AddRiskAnswers(
      const scoring::v1::ScoringResult& result,
      const storage::v1::SessionRecord& record,
      const scoring::CatalogIndex& catalog,
      google::protobuf::RepeatedPtrField<referral::v1::RiskAnswer>* out);
  // The one rule for using a cached session: the session as this replica
  // wrote it last, when `expected` (the etag's version) names that version
  // and it is `name`'s person's screening still in progress; nullopt
  // otherwise, and the caller reads Redis. The entry is taken out. A write
  // based on it is checked against Redis's version all the same: when the
  // session changed elsewhere meanwhile (or expired) that write stores
  // nothing and the caller starts over from what Redis holds, so the reply
  // is the one a read would have given.
  std::optional<StoredSession> TakeCached(const ScreeningName& name,
                                          int64_t expected);
  // SubmitAnswers past its checks of the request: validates the page
  // against `session` (at version `expected`), writes, and builds the reply.
  // With `from_cache`, nullopt when the write found the session changed or
  // gone in Redis (nothing was written: the caller reads it and starts over).
  absl::StatusOr<std::optional<v1::SubmitAnswersResponse>> ApplyAnswers(
      const v1::SubmitAnswersRequest& request, const ScreeningName& name,
      int64_t expected, const Clinical& clinical, StoredSession session,
      bool from_cache, absl::Time deadline);
  // ApplyAnswers' part before the write: the page checked against
  // `session` and applied, the reply built, the write to make.
  struct PreparedPage {
    v1::SubmitAnswersResponse response;
    SessionStore::WriteRequest write;
    bool raised_early_risk = false;  // the write queues an early risk case
  };
  // After a page's write is acknowledged.
  void PageStored(const PreparedPage& page) {
    if (page.raised_early_risk && on_early_risk_) on_early_risk_();
  }
  absl::StatusOr<PreparedPage> PreparePage(
      const v1::SubmitAnswersRequest& request, int64_t expected,
      const Clinical& clinical, StoredSession session) const;
  // SubmitAnswers past its checks and the rate limit: from the cached
  // session when it is the etag's version, else from Redis.
  absl::StatusOr<v1::SubmitAnswersResponse> SubmitChecked(
      const v1::SubmitAnswersRequest& request, const ScreeningName& name,
      int64_t expected, const Clinical& clinical, absl::Time deadline);
  // SubmitAnswersAsync's steps (intake_core.cc).
  struct AsyncSubmit;
  void SubmitFromCacheAsync(std::shared_ptr<AsyncSubmit> call);
  void SubmitOnPool(std::shared_ptr<AsyncSubmit> call);
  absl::StatusOr<v1::SubmitAnswersResponse> AppliedReply(
      const StoredSession& session, const Clinical& clinical) const;
  // StartScreening's reply: the screening and, while it is in progress, its
  // first page.
  absl::StatusOr<v1::Screening> StartedReply(const StoredSession& session,
                                             const Clinical& clinical) const;
  // CompleteScreening past its checks: scores `session` (at the etag's
  // version), commits the result and hands it off. With `from_cache`,
  // nullopt when the write found the session changed or gone in Redis
  // (nothing was written: the caller reads it and starts over).
  absl::StatusOr<std::optional<v1::CompleteScreeningResponse>> Complete(
      const v1::CompleteScreeningRequest& request, const WriteTarget& target,
      const Clinical& clinical, StoredSession session, bool from_cache,
      absl::Time deadline);
  // Hands the result to referral; returns the hand-off state reached. On
  // success the outbox entry and the open-session slot go, with the write
  // that records the delivery.
  v1::HandoffState HandOff(StoredSession& session, absl::Time deadline);
  // The completed screening before `session` (by completion time), if any.
  absl::StatusOr<std::optional<StoredSession>> PreviousResult(
      const StoredSession& session, absl::Time deadline);
  // `progress`, when given, is the session's (see ToScreening).
  v1::CompleteScreeningResponse CompletionResponse(
      const StoredSession& s, const v1::Progress* progress = nullptr) const;

  SessionStore* store_;
  ScoringPeer* scoring_;
  ReferralPeer* referral_;
  const CatalogHolder* catalog_;
  const Clock* clock_;
  IntakeConfig config_;
  std::unique_ptr<SessionCache> cache_;
  crypto::PageTokens page_tokens_;
  absl::AnyInvocable<void()> on_early_risk_;
};

// Records the start context (role, works, works with clients, state) as
// answers to the catalog's context items, so the flow does not ask them
// again. INVALID_ARGUMENT names the context field that does not fit.
absl::Status PrefillContext(const v1::ScreeningContext& context,
                            const scoring::CatalogIndex& catalog,
                            storage::v1::SessionRecord& record);

// Change between two completed screenings (reference: a PHQ-9 change of 5
// or more is meaningful; response = a drop of 50% or more; remission =
// PHQ-9 below 5). Fields stay unset when either PHQ-9 is incomplete.
v1::Trend TrendBetween(const storage::v1::ResultRecord& now,
                       const storage::v1::ResultRecord& before,
                       const std::string& before_name);

// The US state a screening's person is in: the answered ctx.state, else the
// state the app gave at start (licensing and coverage use it).
std::string LocationStateOf(const storage::v1::SessionRecord& record);

// The screening a write names, and the version it is based on.
struct WriteTarget {
  ScreeningName name;
  int64_t expected_version = 0;
};
// Checks the name, request id and etag every write carries; INVALID_ARGUMENT
// names the field.
absl::StatusOr<WriteTarget> ParseWrite(const std::string& name,
                                       const std::string& request_id,
                                       const std::string& etag);

// A write based on a stale etag: ABORTED with the current one, so the app
// can fetch the screening and resubmit instead of overwriting another
// device's answers.
absl::Status StaleEtag(const std::string& given, int64_t current);

// Parses an etag given by a client; INVALID_ARGUMENT names "etag".
absl::StatusOr<int64_t> ParseEtag(const std::string& etag);

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_INTAKE_CORE_H_
