#include "services/referral/referral_core.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/auth/authorizer.h"
#include "common/logging/logging.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "common/util/names.h"
#include "services/referral/referral_metrics.h"

namespace aqueduct::referral {

const std::vector<std::string>& ReferralTextKeys() {
  static const auto* keys = new std::vector<std::string>{
      "referral.withdrawn",        "referral.delivered_self_help",
      "referral.physician_review", "referral.ketamine_decided",
      "referral.therapy_decided",  "referral.therapy_pending",
      "referral.crisis_decided",   "referral.crisis_pending",
      "referral.self_help",        "referral.other"};
  return *keys;
}

ReferralCore::ReferralCore(ReferralStore* store, const Clock* clock,
                           ReferralConfig config)
    : store_(store),
      clock_(clock),
      config_(std::move(config)),
      page_tokens_(config_.page_token_keys != nullptr
                       ? crypto::PageTokens(config_.page_token_keys)
                       : crypto::PageTokens()) {
  // The repository's texts when none are given; a missing data directory
  // is an installation that cannot serve.
  if (config_.person_texts == nullptr) {
    config_.person_texts =
        texts::PersonTexts::Load(texts::PersonTexts::DefaultPath(),
                                 ReferralTextKeys())
            .value();
  }
}
namespace {

using common::v1::Route;

v1::Priority PriorityOf(Route route) {
  switch (route) {
    case common::v1::CRISIS_ACUTE:
    case common::v1::CRISIS_URGENT:
      return v1::URGENT;
    case common::v1::SELF_HELP:
      return v1::LOW;
    default:
      return v1::ROUTINE;
  }
}

// Queue order: priority first, then age (oldest first). Within URGENT,
// crisis-acute (imminent risk) always sorts above crisis-urgent, however old.
// rank * 1e13 stays above any millisecond timestamp and every score is an
// integer below 2^53, so doubles hold it exactly.
double QueueScore(v1::Priority priority, Route route, int64_t created_ms) {
  const int rank = 2 * static_cast<int>(priority) +
                   (route == common::v1::CRISIS_ACUTE ? 0 : 1);
  return static_cast<double>(rank) * 1e13 + static_cast<double>(created_ms);
}

// A queue position as a page token seals it (crypto::PageTokens).
std::string QueuePosition(const QueueCursor& c) {
  return absl::StrCat(absl::StrFormat("%.17g", c.score), "/", c.id);
}

absl::StatusOr<QueueCursor> ParseQueuePosition(const std::string& raw) {
  QueueCursor c;
  std::vector<std::string> parts = absl::StrSplit(raw, absl::MaxSplits('/', 1));
  // A queue score is a whole number in [0, 1e15) (QueueScore); anything
  // else (NaN, infinities, negatives) was not made here and never reaches
  // Redis (the seal already keeps out what this service did not make).
  if (parts.size() != 2 || !absl::SimpleAtod(parts[0], &c.score) ||
      !std::isfinite(c.score) || c.score < 0 || c.score >= 1e15 ||
      c.score != std::floor(c.score) ||
      !ValidateIdSegment(parts[1], "page_token").ok()) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  c.id = parts[1];
  return c;
}

bool Matches(const v1::Referral& r, const v1::ListQueueRequest& req,
             const Clinician& c) {
  if (r.state() == v1::DECIDED || r.state() == v1::WITHDRAWN) return false;
  if (!CanAct(c, r)) return false;
  if (r.state() == v1::CLAIMED && !req.include_claimed() &&
      r.claimed_by() != c.id)
    return false;
  if (req.priority() != v1::PRIORITY_UNSPECIFIED &&
      r.priority() != req.priority()) {
    return false;
  }
  if (!req.routes().empty() &&
      std::find(req.routes().begin(), req.routes().end(), r.current_route()) ==
          req.routes().end()) {
    return false;
  }
  if (!req.location_states().empty() &&
      std::find(req.location_states().begin(), req.location_states().end(),
                r.location_state()) == req.location_states().end()) {
    return false;
  }
  return true;
}

}  // namespace

std::string ReferralCore::ReferralId(const std::string& screening_id,
                                     const std::string& ruleset_version) {
  std::string version = absl::AsciiStrToLower(ruleset_version);
  for (char& c : version) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) c = '-';
  }
  return absl::StrCat(screening_id, "-", version);
}

absl::StatusOr<ReferralStore::CreateItem> ReferralCore::Prepare(
    v1::CreateReferralRequest& request, const Actor& actor,
    const std::string& field) const {
  ASSIGN_OR_RETURN(auto screening, ParseScreeningName(request.screening(),
                                                      field + "screening"));
  if (!request.has_result()) {
    return absl::InvalidArgumentError(field + "result: is required");
  }
  const auto& result = request.result();
  if (result.ruleset_version().empty()) {
    return absl::InvalidArgumentError(field +
                                      "result.ruleset_version: is required");
  }
  const Route route = result.routing().primary_route();
  if (route == common::v1::ROUTE_UNSPECIFIED ||
      !common::v1::Route_IsValid(route)) {
    return absl::InvalidArgumentError(
        field + "result.routing.primary_route: is required");
  }
  if (route == common::v1::UNDER_PHYSICIAN_REVIEW) {
    return absl::InvalidArgumentError(
        field +
        "result.routing.primary_route: UNDER_PHYSICIAN_REVIEW is what a person "
        "sees, not a route");
  }
  if (request.unfinished()) {
    if (route != common::v1::CRISIS_URGENT &&
        route != common::v1::CRISIS_ACUTE) {
      return absl::InvalidArgumentError(field +
                                        "result.routing.primary_route: an "
                                        "unfinished screening's case must be "
                                        "CRISIS_URGENT or CRISIS_ACUTE");
    }
    if (request.has_previous_result() || request.early_risk_raised()) {
      return absl::InvalidArgumentError(
          field + "unfinished: not with previous_result or early_risk_raised");
    }
  }
  if (request.early_risk_raised() && request.has_previous_result()) {
    return absl::InvalidArgumentError(
        field + "early_risk_raised: not with previous_result");
  }
  if (!request.location_state().empty()) {
    RETURN_IF_ERROR(
        ValidateStateCode(request.location_state(), field + "location_state"));
  }
  const bool risk_case = request.unfinished() || request.early_risk_raised();
  ReferralStore::CreateItem item;
  item.id = risk_case
                ? RiskCaseId(screening.screening_id)
                : ReferralId(screening.screening_id, result.ruleset_version());
  item.screening_id = screening.screening_id;
  const int64_t now_ms = clock_->NowMillis();
  v1::Referral& referral = item.referral;
  referral.set_name(absl::StrCat("referrals/", item.id));
  referral.set_screening(screening.ToString());
  referral.set_proposed_route(route);
  referral.set_current_route(route);
  referral.set_required_reviewer(result.routing().required_reviewer());
  referral.set_priority(PriorityOf(route));
  referral.set_state(route == common::v1::SELF_HELP ? v1::DELIVERED_SELF_HELP
                                                    : v1::OPEN);
  referral.set_location_state(request.location_state());
  referral.set_ruleset_version(result.ruleset_version());
  referral.set_create_time_ms(now_ms);
  referral.set_opened_early(request.unfinished());
  referral.set_screening_finished(!request.unfinished());
  referral.mutable_risk_answers()->Swap(request.mutable_risk_answers());

  v1::AuditEvent& created = item.created_event;
  created.set_kind(request.unfinished()            ? "opened_early_risk"
                   : request.has_previous_result() ? "created_rereview"
                                                   : "created");
  created.set_actor(actor.id);
  created.set_actor_role(actor.role);
  created.set_time_ms(now_ms);
  created.set_ruleset_version(result.ruleset_version());
  created.set_route_after(route);
  item.queue_score = QueueScore(referral.priority(), route, now_ms);
  if (referral.priority() == v1::URGENT) {
    item.overdue_due_ms =
        now_ms + absl::ToInt64Milliseconds(config_.overdue_after);
  }
  // Last, once nothing reads them from the request (`result` refers to it).
  referral.mutable_result()->Swap(request.mutable_result());
  if (request.has_previous_result())
    referral.mutable_previous_result()->Swap(request.mutable_previous_result());
  referral.mutable_changes()->Swap(request.mutable_changes());
  return item;
}

std::string ReferralCore::RiskCaseId(const std::string& screening_id) {
  // Not a ruleset version: one case per screening, whatever ruleset scored
  // the answers so far and the completed result.
  return absl::StrCat(screening_id, "-risk");
}

std::optional<ReferralCore::RiskMerge> ReferralCore::MergeRisk(
    const v1::Referral& before, v1::Referral incoming, bool unfinished,
    const Actor& actor) const {
  using common::v1::Route;
  if (before.screening_finished())
    return std::nullopt;  // completed already: nothing later changes it
  const Route raised = incoming.proposed_route();
  const bool escalate =
      raised > before.proposed_route();  // Route's values rise with severity
  if (unfinished && !escalate)
    return std::nullopt;  // a retry, or no more severe than before
  RiskMerge merge;
  v1::Referral& after = merge.after;
  after = before;
  after.mutable_result()->Swap(incoming.mutable_result());
  after.set_ruleset_version(incoming.ruleset_version());
  if (incoming.risk_answers_size() > 0)
    after.mutable_risk_answers()->Swap(incoming.mutable_risk_answers());
  if (!unfinished) {
    after.set_screening_finished(true);
    merge.audit.push_back(
        Audit("result_attached", actor, actor.role, before, after));
    merge.event = "updated";
  }
  if (escalate) {
    // Never lowered, and raised on the case itself: a decided case whose
    // person then answers at imminent risk goes back to the queue.
    after.set_proposed_route(raised);
    after.set_current_route(raised);
    after.set_required_reviewer(incoming.required_reviewer());
    after.set_priority(PriorityOf(raised));
    if (after.state() == v1::DECIDED || after.state() == v1::WITHDRAWN) {
      after.set_state(v1::OPEN);
      after.clear_claimed_by();
      after.clear_lease_expire_time_ms();
    }
    merge.audit.push_back(Audit("escalated", actor, actor.role, before, after));
    merge.event = "escalated";
    merge.requeue_score =
        QueueScore(after.priority(), raised, after.create_time_ms());
  }
  return merge;
}

absl::StatusOr<v1::Referral> ReferralCore::CreateOrAttachRisk(
    v1::CreateReferralRequest request, const Actor& actor,
    absl::Time deadline) {
  const bool unfinished = request.unfinished();
  ASSIGN_OR_RETURN(auto item, Prepare(request, actor, ""));
  const std::string id = item.id;
  // A lost race (another delivery of the same screening created the case, or
  // changed it) starts over from the stored case.
  for (int attempt = 0; attempt < 5; ++attempt) {
    ASSIGN_OR_RETURN(auto existing, store_->Get(id, deadline));
    if (!existing.has_value()) {
      ReferralStore::CreateItem fresh =
          item;  // kept for a retry after a lost race
      std::vector<ReferralStore::CreateItem> one;
      one.push_back(std::move(fresh));
      ASSIGN_OR_RETURN(auto outcomes,
                       store_->CreateMany(std::move(one), deadline));
      metrics::CasesOpened(outcomes);
      if (outcomes[0].created) return std::move(outcomes[0].referral);
      continue;
    }
    std::optional<RiskMerge> merge =
        MergeRisk(*existing, item.referral, unfinished, actor);
    if (!merge.has_value()) return std::move(*existing);
    auto written = Write(id, *existing, merge->after, merge->audit, deadline);
    if (!written.ok()) {
      if (written.status().code() == absl::StatusCode::kAborted) continue;
      return written.status();
    }
    if (merge->requeue_score.has_value()) {
      (void)store_->Requeue(id, *merge->requeue_score, deadline);
      if (written->state() == v1::OPEN && !written->overdue()) {
        (void)store_->SetTimer(ReferralStore::Timer::kOverdue, id,
                               clock_->NowMillis() + absl::ToInt64Milliseconds(
                                                         config_.overdue_after),
                               deadline);
      }
    }
    (void)store_->Publish(merge->event, id, deadline);
    return written;
  }
  return absl::AbortedError("screening: its case kept changing; retry");
}

absl::StatusOr<v1::Referral> ReferralCore::CreateReferral(
    v1::CreateReferralRequest request, const Actor& actor,
    absl::Time deadline) {
  if (request.unfinished() || request.early_risk_raised()) {
    return CreateOrAttachRisk(std::move(request), actor, deadline);
  }
  ASSIGN_OR_RETURN(auto item, Prepare(request, actor, ""));
  std::vector<ReferralStore::CreateItem>
      one;  // (a braced list would copy the item)
  one.push_back(std::move(item));
  ASSIGN_OR_RETURN(auto outcomes, store_->CreateMany(std::move(one), deadline));
  metrics::CasesOpened(outcomes);
  return std::move(outcomes[0].referral);
}

absl::StatusOr<v1::CreateReferralsResponse> ReferralCore::CreateReferrals(
    v1::CreateReferralsRequest request, const Actor& actor,
    absl::Time deadline) {
  if (request.requests_size() > kMaxBatch) {
    return absl::InvalidArgumentError(
        absl::StrCat("requests: at most ", kMaxBatch, " per call"));
  }
  std::vector<ReferralStore::CreateItem> items;
  items.reserve(request.requests_size());
  for (int i = 0; i < request.requests_size(); ++i) {
    const auto& r = request.requests(i);
    if (r.unfinished() || r.early_risk_raised()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "requests[", i, "].",
          r.unfinished() ? "unfinished" : "early_risk_raised",
          ": early risk cases are created one at a time (CreateReferral)"));
    }
    auto item = Prepare(*request.mutable_requests(i), actor,
                        absl::StrCat("requests[", i, "]."));
    if (!item.ok()) return item.status();  // checked before anything is written
    items.push_back(std::move(*item));
  }
  ASSIGN_OR_RETURN(auto outcomes,
                   store_->CreateMany(std::move(items), deadline));
  metrics::CasesOpened(outcomes);
  v1::CreateReferralsResponse response;
  for (auto& o : outcomes) {
    v1::Referral* r = response.add_referrals();
    *r = std::move(o.referral);
    if (request.view() == v1::REFERRAL_VIEW_BASIC) {
      r->clear_result();
      r->clear_previous_result();
      r->clear_changes();
      r->clear_decision();
    }
  }
  return response;
}

absl::StatusOr<v1::ListQueueResponse> ReferralCore::ListQueue(
    const v1::ListQueueRequest& request, const Actor& actor,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto clinician, ClinicianOf(actor));
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError("page_size: must not be negative");
  }
  for (int i = 0; i < request.location_states_size(); ++i) {
    RETURN_IF_ERROR(ValidateStateCode(
        request.location_states(i), absl::StrCat("location_states[", i, "]")));
  }
  const int page_size = request.page_size() == 0
                            ? kDefaultPageSize
                            : std::min(request.page_size(), kMaxPageSize);
  std::optional<QueueCursor> cursor;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(std::string position,
                     page_tokens_.Read("ListQueue", "", request.page_token()));
    ASSIGN_OR_RETURN(auto decoded, ParseQueuePosition(position));
    cursor = decoded;
  }

  v1::ListQueueResponse response;
  if (!request.screening().empty())
    return ListScreeningCases(request, clinician, deadline);
  // Read in batches until the page is full or the queue ends; filtered-out
  // cases only advance the cursor.
  bool more = true;
  while (response.cases_size() < page_size && more) {
    const int batch = std::max(page_size, 50);
    ASSIGN_OR_RETURN(auto entries, store_->ScanQueue(cursor, batch, deadline));
    more = static_cast<int>(entries.size()) == batch;
    for (size_t i = 0; i < entries.size(); ++i) {
      QueueEntry& e = entries[i];
      cursor = e.position;
      Normalize(e.referral);
      if (Matches(e.referral, request, clinician)) {
        *response.add_cases() = e.referral;
        if (response.cases_size() == page_size) {
          more = more || i + 1 < entries.size();
          break;
        }
      }
    }
  }
  if (more && cursor.has_value()) {
    response.set_next_page_token(
        page_tokens_.Make("ListQueue", "", QueuePosition(*cursor)));
  }
  return response;
}

absl::StatusOr<v1::ListQueueResponse> ReferralCore::ListScreeningCases(
    const v1::ListQueueRequest& request, const Clinician& clinician,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto screening,
                   ParseScreeningName(request.screening(), "screening"));
  if (!request.page_token().empty()) {
    return absl::InvalidArgumentError(
        "page_token: a screening's cases come in one page");
  }
  ASSIGN_OR_RETURN(auto ids,
                   store_->CasesOfScreening(screening.screening_id, deadline));
  std::vector<v1::Referral> found;
  for (const auto& id : ids) {
    ASSIGN_OR_RETURN(auto r, store_->Get(id, deadline));
    if (!r.has_value() || r->screening() != request.screening()) continue;
    Normalize(*r);
    if (Matches(*r, request, clinician)) found.push_back(std::move(*r));
  }
  // Queue order: priority, then age.
  std::sort(
      found.begin(), found.end(),
      [](const v1::Referral& a, const v1::Referral& b) {
        return QueueScore(a.priority(), a.current_route(), a.create_time_ms()) <
               QueueScore(b.priority(), b.current_route(), b.create_time_ms());
      });
  v1::ListQueueResponse response;
  for (auto& r : found) *response.add_cases() = std::move(r);
  return response;
}

namespace {

// Why a clinician may not see or act on a case of a state they are not
// licensed in (or one with no state: ReferralConfig::unlocated_case_states).
std::string NotLicensedMessage(const v1::Referral& r) {
  return r.location_state().empty()
             ? "the case has no location state: it is for the clinicians "
               "the service names for such cases"
             : "not licensed in the case's state";
}

}  // namespace

bool CanSee(const Clinician& c, const v1::Referral& r) {
  return r.location_state().empty() ? c.sees_unlocated
                                    : c.LicensedIn(r.location_state());
}

bool CanAct(const Clinician& c, const v1::Referral& r) {
  return CanSee(c, r) &&
         (r.current_route() != common::v1::KETAMINE_REVIEW || c.physician());
}

absl::StatusOr<Clinician> ReferralCore::WatcherOf(const Actor& actor) const {
  if (actor.role == "service" && actor.id == auth::kGatewayService) {
    Clinician relay{actor.id, actor.role, {}};
    relay.relay = true;
    return relay;
  }
  return ClinicianOf(actor);
}

v1::Audience ReferralCore::AudienceOf(const v1::Referral& r) const {
  v1::Audience audience;
  if (!r.location_state().empty()) {
    audience.add_states(r.location_state());
  } else if (!config_.unlocated_case_states.empty()) {
    for (const auto& s : config_.unlocated_case_states) audience.add_states(s);
  } else {
    for (const auto& s : UsStateCodes()) audience.add_states(std::string(s));
    audience.set_every_state(true);
  }
  audience.set_physicians_only(r.current_route() ==
                               common::v1::KETAMINE_REVIEW);
  return audience;
}

absl::StatusOr<Clinician> ReferralCore::ClinicianOf(const Actor& actor) const {
  if (actor.id.empty()) return absl::UnauthenticatedError("no caller identity");
  if (actor.role != "clinician" && actor.role != "physician") {
    return absl::PermissionDeniedError("the caller is not a clinician");
  }
  Clinician c{actor.id, actor.role, actor.licensed_states};
  auto licensed = [&c](const std::string& state) {
    return c.LicensedIn(state);
  };
  const std::vector<std::string>& triage = config_.unlocated_case_states;
  c.sees_unlocated =
      triage.empty()
          ? std::all_of(UsStateCodes().begin(), UsStateCodes().end(), licensed)
          : std::any_of(triage.begin(), triage.end(), licensed);
  return c;
}

void ReferralCore::Normalize(v1::Referral& r) const {
  if (r.state() == v1::CLAIMED &&
      r.lease_expire_time_ms() <= clock_->NowMillis()) {
    r.set_state(r.proposed_route() == common::v1::SELF_HELP && !r.has_decision()
                    ? v1::DELIVERED_SELF_HELP
                    : v1::OPEN);
    r.clear_claimed_by();
    r.clear_lease_expire_time_ms();
  }
}

absl::StatusOr<v1::Referral> ReferralCore::Load(const std::string& name,
                                                absl::Time deadline) {
  ASSIGN_OR_RETURN(auto id, ParseSimpleName(name, "referrals", "name"));
  ASSIGN_OR_RETURN(auto r, store_->Get(id, deadline));
  if (!r.has_value()) return absl::NotFoundError("name: no such case");
  return std::move(*r);
}

v1::AuditEvent ReferralCore::Audit(absl::string_view kind, const Actor& actor,
                                   const std::string& role,
                                   const v1::Referral& before,
                                   const v1::Referral& after) const {
  v1::AuditEvent e;
  e.set_kind(std::string(kind));
  e.set_actor(actor.id);
  e.set_actor_role(role);
  e.set_time_ms(clock_->NowMillis());
  e.set_ruleset_version(after.ruleset_version());
  e.set_route_before(before.current_route());
  e.set_route_after(after.current_route());
  return e;
}

absl::StatusOr<v1::Referral> ReferralCore::Write(
    const std::string& id, const v1::Referral& before, v1::Referral after,
    const std::vector<v1::AuditEvent>& audit, absl::Time deadline) {
  int64_t version = 0;
  if (!absl::SimpleAtoi(before.etag(), &version))
    return absl::InternalError("case without a version");
  ASSIGN_OR_RETURN(auto written,
                   store_->Update(id, version, after, audit, deadline));
  after.set_etag(absl::StrCat(written));
  return after;
}

namespace {

std::string IdOf(const v1::Referral& r) {
  return r.name().substr(r.name().find('/') + 1);
}

}  // namespace

absl::StatusOr<v1::Referral> ReferralCore::ClaimCase(
    const v1::ClaimCaseRequest& request, const Actor& actor,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto clinician, ClinicianOf(actor));
  if (request.lease_seconds() < 0) {
    return absl::InvalidArgumentError("lease_seconds: must not be negative");
  }
  ASSIGN_OR_RETURN(auto loaded, Load(request.name(), deadline));
  v1::Referral before = loaded;
  Normalize(before);
  if (!CanAct(clinician, before)) {
    return absl::PermissionDeniedError(
        before.current_route() == common::v1::KETAMINE_REVIEW &&
                CanSee(clinician, before)
            ? "only a physician may act on a ketamine-eligibility review"
            : NotLicensedMessage(before));
  }
  if (before.state() == v1::DECIDED || before.state() == v1::WITHDRAWN) {
    return absl::FailedPreconditionError("name: the case is already decided");
  }
  const int64_t now = clock_->NowMillis();
  const bool renew =
      before.state() == v1::CLAIMED && before.claimed_by() == actor.id;
  if (before.state() == v1::CLAIMED && !renew) {
    return WithErrorInfo(
        absl::AbortedError(absl::StrCat(
            "name: the case is held by another clinician until ",
            absl::FormatTime(
                absl::FromUnixMillis(before.lease_expire_time_ms())))),
        "CASE_HELD",
        {{"lease_expire_time_ms",
          absl::StrCat(before.lease_expire_time_ms())}});
  }
  absl::Duration lease = request.lease_seconds() == 0
                             ? config_.default_lease
                             : absl::Seconds(request.lease_seconds());
  lease = std::min(lease, config_.max_lease);
  v1::Referral after = before;
  after.set_state(v1::CLAIMED);
  after.set_claimed_by(actor.id);
  after.set_lease_expire_time_ms(now + absl::ToInt64Milliseconds(lease));
  // Two claims racing on the same version: the store lets exactly one write.
  auto written = Write(IdOf(before), loaded, after,
                       {Audit(renew ? "renewed" : "claimed", actor,
                              clinician.role, before, after)},
                       deadline);
  if (!written.ok()) {
    if (written.status().code() == absl::StatusCode::kAborted) {
      return absl::AbortedError(
          "name: another clinician claimed the case first");
    }
    return written.status();
  }
  const std::string id = IdOf(before);
  (void)store_->SetTimer(ReferralStore::Timer::kLease, id,
                         after.lease_expire_time_ms(), deadline);
  (void)store_->ClearTimer(ReferralStore::Timer::kOverdue, id, deadline);
  if (!renew) (void)store_->Publish("claimed", id, deadline);
  return written;
}

absl::StatusOr<v1::Referral> ReferralCore::ReleaseCase(
    const v1::ReleaseCaseRequest& request, const Actor& actor,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto clinician, ClinicianOf(actor));
  ASSIGN_OR_RETURN(auto loaded, Load(request.name(), deadline));
  v1::Referral before = loaded;
  Normalize(before);
  if (before.state() != v1::CLAIMED || before.claimed_by() != actor.id) {
    return absl::FailedPreconditionError("name: you do not hold this case");
  }
  v1::Referral after = before;
  after.set_state(before.proposed_route() == common::v1::SELF_HELP &&
                          !before.has_decision()
                      ? v1::DELIVERED_SELF_HELP
                      : v1::OPEN);
  after.clear_claimed_by();
  after.clear_lease_expire_time_ms();
  ASSIGN_OR_RETURN(
      auto written,
      Write(IdOf(before), loaded, after,
            {Audit("released", actor, clinician.role, before, after)},
            deadline));
  (void)store_->ClearTimer(ReferralStore::Timer::kLease, IdOf(before),
                           deadline);
  (void)store_->Publish("released", IdOf(before), deadline);
  return written;
}

absl::StatusOr<v1::Referral> ReferralCore::DecideCase(
    const v1::DecideCaseRequest& request, const Actor& actor,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto clinician, ClinicianOf(actor));
  RETURN_IF_ERROR(ValidateRequestId(request.request_id(), "request_id"));
  const v1::Decision& d = request.decision();
  if (d.action() == v1::Decision::ACTION_UNSPECIFIED ||
      !v1::Decision::Action_IsValid(d.action())) {
    return absl::InvalidArgumentError(
        "decision.action: is required (CONFIRM, CHANGE_ROUTE or WITHDRAW)");
  }
  if (absl::StripAsciiWhitespace(d.reason()).empty()) {
    return absl::InvalidArgumentError(
        "decision.reason: a written reason is required");
  }
  if (d.reason().size() > 4000) {
    return absl::InvalidArgumentError(
        "decision.reason: longer than 4000 characters");
  }
  if (request.etag().empty())
    return absl::InvalidArgumentError("etag: is required");
  ASSIGN_OR_RETURN(auto loaded, Load(request.name(), deadline));
  v1::Referral before = loaded;
  Normalize(before);
  if (before.has_decision() &&
      before.decision().request_id() == request.request_id() &&
      before.decision().decided_by() == actor.id) {
    return before;  // the same decision again: one effect
  }
  if (!CanAct(clinician, before)) {
    return absl::PermissionDeniedError(
        before.current_route() == common::v1::KETAMINE_REVIEW &&
                CanSee(clinician, before)
            ? "only a physician may decide a ketamine-eligibility review"
            : NotLicensedMessage(before));
  }
  if (d.action() == v1::Decision::CHANGE_ROUTE) {
    if (d.new_route() == common::v1::ROUTE_UNSPECIFIED ||
        !common::v1::Route_IsValid(d.new_route())) {
      return absl::InvalidArgumentError(
          "decision.new_route: is required to change the route");
    }
    if (d.new_route() == common::v1::UNDER_PHYSICIAN_REVIEW) {
      return absl::InvalidArgumentError(
          "decision.new_route: UNDER_PHYSICIAN_REVIEW is what a person sees; "
          "route to KETAMINE_REVIEW");
    }
    if (d.new_route() == before.current_route()) {
      return absl::InvalidArgumentError(
          "decision.new_route: is the current route; use CONFIRM");
    }
    if (d.new_route() == common::v1::KETAMINE_REVIEW &&
        !clinician.physician()) {
      return absl::PermissionDeniedError(
          "only a physician may route to a ketamine-eligibility review");
    }
  }
  if (before.state() != v1::CLAIMED || before.claimed_by() != actor.id) {
    return absl::FailedPreconditionError(
        "name: you do not hold this case; claim it first");
  }
  if (request.etag() != loaded.etag()) {
    return WithErrorInfo(absl::AbortedError(absl::StrCat(
                             "etag: the case changed (current etag \"",
                             loaded.etag(), "\"); read it and decide again")),
                         "ETAG_MISMATCH", {{"etag", loaded.etag()}});
  }
  v1::Referral after = before;
  v1::Decision* decision = after.mutable_decision();
  *decision = d;
  decision->set_decided_by(actor.id);
  decision->set_decide_time_ms(clock_->NowMillis());
  decision->set_request_id(request.request_id());
  after.clear_claimed_by();
  after.clear_lease_expire_time_ms();
  std::string kind = "decided";
  switch (d.action()) {
    case v1::Decision::CONFIRM:
      after.set_state(v1::DECIDED);
      break;
    case v1::Decision::CHANGE_ROUTE:
      after.set_state(v1::DECIDED);
      after.set_current_route(d.new_route());
      kind = "overridden";
      break;
    default:
      after.set_state(v1::WITHDRAWN);
      kind = "withdrawn";
  }
  ASSIGN_OR_RETURN(
      auto written,
      Write(IdOf(before), loaded, after,
            {Audit(kind, actor, clinician.role, before, after)}, deadline));
  metrics::CaseDecided(d.action());
  const std::string id = IdOf(before);
  (void)store_->Dequeue(id, deadline);
  (void)store_->ClearTimer(ReferralStore::Timer::kLease, id, deadline);
  (void)store_->ClearTimer(ReferralStore::Timer::kOverdue, id, deadline);
  (void)store_->Publish("decided", id, deadline);
  return written;
}

absl::StatusOr<v1::Referral> ReferralCore::GetCase(
    const v1::GetCaseRequest& request, const Actor& actor,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto clinician, ClinicianOf(actor));
  ASSIGN_OR_RETURN(auto loaded, Load(request.name(), deadline));
  Normalize(loaded);
  if (!CanSee(clinician, loaded))
    return absl::PermissionDeniedError(NotLicensedMessage(loaded));
  if (absl::Status s = store_->AppendAudit(
          IdOf(loaded), Audit("read", actor, clinician.role, loaded, loaded),
          deadline);
      !s.ok()) {
    return s;  // no unrecorded reads
  }
  return loaded;
}

absl::StatusOr<v1::ListAuditEventsResponse> ReferralCore::ListAuditEvents(
    const v1::ListAuditEventsRequest& request, const Actor& actor,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto clinician, ClinicianOf(actor));
  if (request.page_size() < 0)
    return absl::InvalidArgumentError("page_size: must not be negative");
  const int page_size = request.page_size() == 0
                            ? kDefaultAuditPageSize
                            : std::min(request.page_size(), kMaxAuditPageSize);
  int64_t offset = 0;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(std::string raw,
                     page_tokens_.Read("ListAuditEvents", request.parent(),
                                       request.page_token()));
    if (!absl::SimpleAtoi(raw, &offset) || offset < 0)
      return absl::InvalidArgumentError("page_token: malformed");
  }
  ASSIGN_OR_RETURN(auto loaded, Load(request.parent(), deadline));
  if (!CanSee(clinician, loaded))
    return absl::PermissionDeniedError(NotLicensedMessage(loaded));
  ASSIGN_OR_RETURN(
      auto page, store_->ListAudit(IdOf(loaded), offset, page_size, deadline));
  v1::ListAuditEventsResponse response;
  int64_t n = offset;
  for (auto& e : page.first) {
    e.set_name(absl::StrCat(loaded.name(), "/auditEvents/", ++n));
    *response.add_events() = std::move(e);
  }
  if (n < page.second) {
    response.set_next_page_token(page_tokens_.Make(
        "ListAuditEvents", request.parent(), absl::StrCat(n)));
  }
  return response;
}

absl::StatusOr<v1::MyReferral> ReferralCore::GetMyReferral(
    const v1::GetMyReferralRequest& request, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto screening,
                   ParseScreeningName(request.screening(), "screening"));
  ASSIGN_OR_RETURN(auto ids,
                   store_->CasesOfScreening(screening.screening_id, deadline));
  std::optional<v1::Referral> latest;
  for (const auto& id : ids) {
    ASSIGN_OR_RETURN(auto r, store_->Get(id, deadline));
    // Another person's screening id answers exactly like a missing one.
    if (!r.has_value() || r->screening() != request.screening()) continue;
    if (!latest.has_value() || r->create_time_ms() > latest->create_time_ms())
      latest = *r;
  }
  if (!latest.has_value())
    return absl::NotFoundError("screening: no referral for this screening");
  Normalize(*latest);
  const v1::Referral& r = *latest;
  const texts::PersonTexts& texts = *config_.person_texts;
  v1::MyReferral view;
  view.set_screening(r.screening());
  view.set_case_name(r.name());
  const bool decided = r.state() == v1::DECIDED;
  view.set_pending_review(r.state() == v1::OPEN || r.state() == v1::CLAIMED);
  switch (r.state()) {
    case v1::WITHDRAWN:
      view.set_message(texts.Message("referral.withdrawn"));
      return view;
    case v1::DELIVERED_SELF_HELP:
      view.set_route(common::v1::SELF_HELP);
      view.set_message(texts.Message("referral.delivered_self_help"));
      *view.mutable_self_help_plan() = r.result().routing().self_help_plan();
      return view;
    default:
      break;
  }
  const common::v1::Route route = r.current_route();
  switch (route) {
    case common::v1::KETAMINE_REVIEW:
      if (!decided) {
        // Nothing about eligibility before a physician has confirmed it.
        view.set_route(common::v1::UNDER_PHYSICIAN_REVIEW);
        view.set_message(texts.Message("referral.physician_review"));
        return view;
      }
      view.set_route(route);
      view.set_message(texts.Message("referral.ketamine_decided"));
      return view;
    case common::v1::THERAPY:
      view.set_route(route);
      view.set_message(texts.Message(decided ? "referral.therapy_decided"
                                             : "referral.therapy_pending"));
      return view;
    case common::v1::CRISIS_ACUTE:
    case common::v1::CRISIS_URGENT:
      view.set_route(route);
      view.set_message(texts.Message(decided ? "referral.crisis_decided"
                                             : "referral.crisis_pending"));
      return view;
    case common::v1::SELF_HELP:
      view.set_route(route);
      view.set_message(texts.Message("referral.self_help"));
      *view.mutable_self_help_plan() = r.result().routing().self_help_plan();
      return view;
    default:
      view.set_message(texts.Message("referral.other"));
      return view;
  }
}

absl::StatusOr<int> ReferralCore::Sweep(absl::Time deadline) {
  const int64_t now = clock_->NowMillis();
  const Actor system{"system", "system"};
  int changes = 0;
  ASSIGN_OR_RETURN(auto leases, store_->DueTimers(ReferralStore::Timer::kLease,
                                                  now, 100, deadline));
  for (const std::string& id : leases) {
    ASSIGN_OR_RETURN(auto r, store_->Get(id, deadline));
    if (!r.has_value() || r->state() != v1::CLAIMED) {
      (void)store_->ClearTimer(ReferralStore::Timer::kLease, id, deadline);
      continue;
    }
    if (r->lease_expire_time_ms() > now) {  // renewed meanwhile
      (void)store_->SetTimer(ReferralStore::Timer::kLease, id,
                             r->lease_expire_time_ms(), deadline);
      continue;
    }
    v1::Referral after = *r;
    Normalize(after);
    auto written =
        Write(id, *r, after,
              {Audit("lease_expired", system, "system", *r, after)}, deadline);
    if (!written.ok() && written.status().code() != absl::StatusCode::kAborted)
      return written.status();
    if (written.ok()) {
      (void)store_->ClearTimer(ReferralStore::Timer::kLease, id, deadline);
      (void)store_->Publish("released", id, deadline);
      ++changes;
    }
  }
  ASSIGN_OR_RETURN(
      auto overdue,
      store_->DueTimers(ReferralStore::Timer::kOverdue, now, 100, deadline));
  for (const std::string& id : overdue) {
    ASSIGN_OR_RETURN(auto r, store_->Get(id, deadline));
    v1::Referral current = r.has_value() ? *r : v1::Referral();
    if (r.has_value()) Normalize(current);
    if (!r.has_value() || current.state() != v1::OPEN || current.overdue()) {
      (void)store_->ClearTimer(ReferralStore::Timer::kOverdue, id, deadline);
      continue;
    }
    v1::Referral after = current;
    after.set_overdue(true);
    auto written =
        Write(id, *r, after,
              {Audit("overdue", system, "system", current, after)}, deadline);
    if (!written.ok() && written.status().code() != absl::StatusCode::kAborted)
      return written.status();
    if (written.ok()) {
      (void)store_->ClearTimer(ReferralStore::Timer::kOverdue, id, deadline);
      (void)store_->Publish("overdue", id, deadline);
      metrics::CaseOverdue(after.priority());
      ++changes;
    }
  }
  // The queue's depth by priority, for the metrics (a failed read keeps the
  // last values).
  static constexpr v1::Priority kPriorities[] = {v1::URGENT, v1::ROUTINE,
                                                 v1::LOW};
  std::vector<std::pair<double, double>> ranges;
  for (v1::Priority p : kPriorities) {
    // Both ranks of the priority (QueueScore): crisis-acute and the rest.
    ranges.push_back(
        {QueueScore(p, common::v1::CRISIS_ACUTE, 0),
         QueueScore(v1::Priority(p + 1), common::v1::CRISIS_ACUTE, 0)});
  }
  if (auto counts = store_->CountQueued(ranges, deadline);
      counts.ok() && counts->size() == ranges.size()) {
    for (size_t i = 0; i < ranges.size(); ++i)
      metrics::QueueDepth(kPriorities[i], (*counts)[i]);
  }
  int64_t due = next_route_count_ms_.load();
  if (now >= due &&
      next_route_count_ms_.compare_exchange_strong(
          due, now + absl::ToInt64Milliseconds(config_.route_count_interval))) {
    CountQueueByRoute(deadline);
  }
  return changes;
}

void ReferralCore::CountQueueByRoute(absl::Time deadline) {
  // The queue index orders by priority and time, not route (THERAPY and
  // KETAMINE_REVIEW share ROUTINE), so the count reads the queued cases
  // themselves, a page at a time. An incomplete read keeps the last values.
  constexpr int kPage = 500;
  std::map<std::pair<common::v1::Route, v1::Priority>, int64_t> counts;
  std::optional<QueueCursor> after;
  int read = 0;
  while (read < config_.route_count_max) {
    auto page = store_->ScanQueue(
        after, std::min(kPage, config_.route_count_max - read), deadline);
    if (!page.ok()) {
      log::Warn("queue count by route: incomplete, kept the last values",
                {{"code", absl::StatusCodeToString(page.status().code())}});
      return;
    }
    for (const QueueEntry& e : *page) {
      const v1::Referral& r = e.referral;
      if (r.state() == v1::OPEN || r.state() == v1::CLAIMED)
        ++counts[{r.current_route(), r.priority()}];
    }
    read += static_cast<int>(page->size());
    if (static_cast<int>(page->size()) < kPage) break;
    after = page->back().position;
  }
  metrics::QueueDepthByRoute(counts);
}

absl::StatusOr<std::string> ReferralCore::StartWatch(
    const v1::WatchQueueRequest& request, const Actor& actor,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto clinician, WatcherOf(actor));
  for (int i = 0; i < request.location_states_size(); ++i) {
    RETURN_IF_ERROR(ValidateStateCode(
        request.location_states(i), absl::StrCat("location_states[", i, "]")));
  }
  if (!request.cursor().empty()) {
    // Validate by reading nothing from it.
    ASSIGN_OR_RETURN(auto probe,
                     store_->ReadEvents(request.cursor(), 1,
                                        absl::Milliseconds(1), deadline));
    return request.cursor();
  }
  return store_->LatestCursor(deadline);
}

std::optional<v1::QueueEvent> ReferralCore::WatchEvent(
    const v1::WatchQueueRequest& request, const Actor& actor,
    const std::string& cursor, const std::string& kind,
    const v1::Referral& referral) const {
  auto clinician = WatcherOf(actor);
  if (!clinician.ok()) return std::nullopt;
  v1::QueueEvent event = FeedEvent(cursor, kind, referral);
  if (!Watches(request, *clinician, event.referral())) return std::nullopt;
  return event;
}

v1::QueueEvent ReferralCore::FeedEvent(std::string cursor, std::string kind,
                                       v1::Referral referral) const {
  Normalize(referral);
  v1::QueueEvent event;
  event.set_cursor(std::move(cursor));
  event.set_kind(std::move(kind));
  *event.mutable_audience() = AudienceOf(referral);
  *event.mutable_referral() = std::move(referral);
  return event;
}

bool ReferralCore::Watches(const v1::WatchQueueRequest& request,
                           const Clinician& clinician,
                           const v1::Referral& seen) {
  if (!clinician.relay && !CanAct(clinician, seen)) return false;
  if (!request.routes().empty() &&
      std::find(request.routes().begin(), request.routes().end(),
                seen.current_route()) == request.routes().end()) {
    return false;
  }
  return request.location_states().empty() ||
         std::find(request.location_states().begin(),
                   request.location_states().end(),
                   seen.location_state()) != request.location_states().end();
}

absl::Status ReferralCore::WatchStep(
    const v1::WatchQueueRequest& request, const Actor& actor,
    std::string* cursor, absl::Duration block,
    const std::function<bool(const v1::QueueEvent&)>& send,
    absl::Time deadline) {
  RETURN_IF_ERROR(WatcherOf(actor).status());
  ASSIGN_OR_RETURN(auto events,
                   store_->ReadEvents(*cursor, 100, block, deadline));
  for (const auto& e : events) {
    ASSIGN_OR_RETURN(auto r, store_->Get(e.id, deadline));
    *cursor = e.cursor;
    if (!r.has_value()) continue;
    std::optional<v1::QueueEvent> event =
        WatchEvent(request, actor, e.cursor, e.kind, *r);
    if (event.has_value() && !send(*event))
      return absl::CancelledError("watcher went away");
  }
  return absl::OkStatus();
}

}  // namespace aqueduct::referral
