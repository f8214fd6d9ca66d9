#ifndef AQUEDUCT_SERVICES_REFERRAL_REFERRAL_CORE_H_
#define AQUEDUCT_SERVICES_REFERRAL_REFERRAL_CORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/crypto/page_tokens.h"
#include "common/texts/person_texts.h"
#include "common/util/ids.h"
#include "protos/referral/v1/referral_service.pb.h"
#include "services/referral/clinicians.h"
#include "services/referral/referral_store.h"

namespace aqueduct::referral {

// Who is calling, from the caller's verified token (common/auth), never
// from the request body.
struct Actor {
  std::string id;    // the token's subject
  std::string role;  // "clinician", "physician", "batch", "service", ...
  std::vector<std::string> licensed_states;  // clinicians and physicians
};

struct ReferralConfig {
  absl::Duration default_lease = absl::Minutes(10);
  absl::Duration max_lease = absl::Hours(1);
  // An urgent case not claimed within this time is marked overdue.
  absl::Duration overdue_after = absl::Minutes(15);
  // A case with no location state (the person did not say where they are)
  // is seen only by clinicians licensed in one of these states (a triage
  // team's); empty: only by clinicians licensed in every state
  // (UsStateCodes()). Never by every clinician.
  std::vector<std::string> unlocated_case_states;
  // What page tokens are sealed with (crypto::PageTokens): the data keys,
  // so a token works on every replica. Null: a random key of this process
  // (tests).
  const crypto::DataKeys* page_token_keys = nullptr;
  // What a person reads of their referral (data/texts/); null: the
  // repository's texts.
  std::shared_ptr<const texts::PersonTexts> person_texts;
  // How often the sweeper counts the queue by route for the metrics (it
  // reads every queued case), and the most cases one count reads.
  absl::Duration route_count_interval = absl::Seconds(30);
  int route_count_max = 20000;
};

// The person-facing texts referral shows (GetMyReferral); referral loads
// them at start and refuses to start without any of them.
const std::vector<std::string>& ReferralTextKeys();

// Referral logic above the store; no gRPC types, so tests build it directly.
class ReferralCore {
 public:
  ReferralCore(ReferralStore* store, const Clock* clock,
               ReferralConfig config = {});

  // Idempotent per screening and ruleset version. Takes the request by
  // value: its results move into the case. An early risk case (`unfinished`)
  // and a completed screening's result with `early_risk_raised` go to the
  // screening's one risk case (RiskCaseId), created by whichever comes
  // first: a more severe route raises it (never lowers), completion
  // attaches the full result once; each change is audited and published.
  absl::StatusOr<v1::Referral> CreateReferral(v1::CreateReferralRequest request,
                                              const Actor& actor,
                                              absl::Time deadline);
  // Many at once (batch re-scoring); all are checked before any is written.
  absl::StatusOr<v1::CreateReferralsResponse> CreateReferrals(
      v1::CreateReferralsRequest request, const Actor& actor,
      absl::Time deadline);
  static constexpr int kMaxBatch = 1000;

  // The clinician's queue: open cases the caller may act on (licensed state;
  // ketamine reviews for physicians only), urgent first, then oldest.
  absl::StatusOr<v1::ListQueueResponse> ListQueue(
      const v1::ListQueueRequest& request, const Actor& actor,
      absl::Time deadline);
  absl::StatusOr<v1::Referral> ClaimCase(const v1::ClaimCaseRequest& request,
                                         const Actor& actor,
                                         absl::Time deadline);
  absl::StatusOr<v1::Referral> ReleaseCase(
      const v1::ReleaseCaseRequest& request, const Actor& actor,
      absl::Time deadline);
  absl::StatusOr<v1::Referral> DecideCase(const v1::DecideCaseRequest& request,
                                          const Actor& actor,
                                          absl::Time deadline);
  // Reads a case; the read is recorded in the audit trail.
  absl::StatusOr<v1::Referral> GetCase(const v1::GetCaseRequest& request,
                                       const Actor& actor, absl::Time deadline);
  absl::StatusOr<v1::ListAuditEventsResponse> ListAuditEvents(
      const v1::ListAuditEventsRequest& request, const Actor& actor,
      absl::Time deadline);
  // The person's own referral in plain language; NOT_FOUND for an unknown
  // screening or one of another person.
  absl::StatusOr<v1::MyReferral> GetMyReferral(
      const v1::GetMyReferralRequest& request, absl::Time deadline);

  // The sweeper's step: returns expired leases to the queue and marks urgent
  // cases not claimed in time as overdue. Returns the number of changes.
  absl::StatusOr<int> Sweep(absl::Time deadline);

  // Watch support: checks the caller and resolves the starting cursor.
  absl::StatusOr<std::string> StartWatch(const v1::WatchQueueRequest& request,
                                         const Actor& actor,
                                         absl::Time deadline);
  // Waits up to `block` for events after `*cursor`, sends those the caller
  // may see through `send` (false stops), and advances `*cursor` past every
  // event read.
  absl::Status WatchStep(const v1::WatchQueueRequest& request,
                         const Actor& actor, std::string* cursor,
                         absl::Duration block,
                         const std::function<bool(const v1::QueueEvent&)>& send,
                         absl::Time deadline);
  // What a watcher sees of one event (a `kind` change at `cursor` that left
  // the case as `referral`): the event, or nullopt when the caller may not
  // act on the case or the request's filters leave it out.
  std::optional<v1::QueueEvent> WatchEvent(const v1::WatchQueueRequest& request,
                                           const Actor& actor,
                                           const std::string& cursor,
                                           const std::string& kind,
                                           const v1::Referral& referral) const;
  // The same in two halves, for the process's one queue reader
  // (QueueFeed): the event as every watcher is sent it, made once when it
  // is read (the case as it reads then: a lapsed claim reads unclaimed);
  // and whether one watcher, `clinician` (ClinicianOf, once per stream),
  // with `request`'s filters, sees it.
  v1::QueueEvent FeedEvent(std::string cursor, std::string kind,
                           v1::Referral referral) const;
  static bool Watches(const v1::WatchQueueRequest& request,
                      const Clinician& clinician, const v1::Referral& seen);
  // The clinician an actor is; PERMISSION_DENIED for any other role.
  absl::StatusOr<Clinician> ClinicianOf(const Actor& actor) const;
  // Who watches the queue: a clinician (ClinicianOf), or the HTTP gateway's
  // relay stream (Clinician::relay).
  absl::StatusOr<Clinician> WatcherOf(const Actor& actor) const;
  // Who may see a case (QueueEvent.audience): the rule CanAct applies.
  v1::Audience AudienceOf(const v1::Referral& referral) const;

  // The referral id for a screening and ruleset version (deterministic, so
  // a retried hand-off finds the same case).
  static std::string ReferralId(const std::string& screening_id,
                                const std::string& ruleset_version);
  // The id of a screening's early risk case.
  static std::string RiskCaseId(const std::string& screening_id);

  static constexpr int kDefaultPageSize = 50;
  static constexpr int kMaxPageSize = 200;
  static constexpr int kDefaultAuditPageSize = 100;
  static constexpr int kMaxAuditPageSize = 500;

 private:
  // Checks a create request (`field` prefixes error names) and builds what
  // the store writes, moving the request's results into it (the request is
  // left without them only when it passes).
  absl::StatusOr<ReferralStore::CreateItem> Prepare(
      v1::CreateReferralRequest& request, const Actor& actor,
      const std::string& field) const;
  absl::StatusOr<v1::Referral> Load(const std::string& name,
                                    absl::Time deadline);
  // A claim whose lease ran out reads as unclaimed.
  void Normalize(v1::Referral& r) const;
  v1::AuditEvent Audit(absl::string_view kind, const Actor& actor,
                       const std::string& role, const v1::Referral& before,
                       const v1::Referral& after) const;
  absl::StatusOr<v1::Referral> Write(const std::string& id,
                                     const v1::Referral& before,
                                     v1::Referral after,
                                     const std::vector<v1::AuditEvent>& audit,
                                     absl::Time deadline);

  // What a risk delivery changes on the existing case: nothing (nullopt:
  // a retry, or not more severe), or the case after it, its audit events,
  // the queue event, and a new queue position when the route was raised.
  struct RiskMerge {
    v1::Referral after;
    std::vector<v1::AuditEvent> audit;
    std::string event;
    std::optional<double> requeue_score;
  };
  std::optional<RiskMerge> MergeRisk(const v1::Referral& before,
                                     v1::Referral incoming, bool unfinished,
                                     const Actor& actor) const;
  absl::StatusOr<v1::Referral> CreateOrAttachRisk(
      v1::CreateReferralRequest request, const Actor& actor,
      absl::Time deadline);
  // ListQueue for one screening (request.screening), from its case index.
  absl::StatusOr<v1::ListQueueResponse> ListScreeningCases(
      const v1::ListQueueRequest& request, const Clinician& clinician,
      absl::Time deadline);

  // The queue's cases waiting for a decision, by route and priority, for
  // the metrics (part of Sweep, every config_.route_count_interval).
  void CountQueueByRoute(absl::Time deadline);

  ReferralStore* store_;
  const Clock* clock_;
  ReferralConfig config_;
  crypto::PageTokens page_tokens_;
  std::atomic<int64_t> next_route_count_ms_{0};
};

// May the clinician see the case (licensed in its state), and act on it
// (also: only physicians act on ketamine reviews)?
bool CanSee(const Clinician& c, const v1::Referral& r);
bool CanAct(const Clinician& c, const v1::Referral& r);

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_REFERRAL_CORE_H_
