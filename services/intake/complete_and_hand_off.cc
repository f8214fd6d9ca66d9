// Completing a screening and handing its result to referral, and the
// outbox worker that delivers what referral did not take at once: hand-offs
// of completed results and early risk cases.

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging/logging.h"
#include "common/status/status_macros.h"
#include "common/util/names.h"
#include "services/intake/intake_core.h"
#include "services/intake/intake_metrics.h"
#include "services/intake/person_view.h"

namespace aqueduct::intake {
namespace {

using Kind = SessionStore::WriteOutcome::Kind;

}  // namespace

v1::CompleteScreeningResponse IntakeCore::CompletionResponse(
    const StoredSession& s, const v1::Progress* progress) const {
  v1::CompleteScreeningResponse response;
  *response.mutable_screening() = ToScreening(s, progress);
  v1::ScreeningResult* result = response.mutable_result();
  result->set_name(response.screening().name());
  if (s.result.has_value()) {
    result->set_complete_time_ms(s.result->complete_time_ms());
    auto clinical = catalog_->Get();
    *result->mutable_scoring() =
        ForThePerson(s.result->scoring(),
                     clinical != nullptr ? clinical->catalog.get() : nullptr);
    *response.mutable_route() =
        PersonRouteOf(s.result->scoring(), *config_.person_texts);
    if (s.result->scoring().has_crisis_resources()) {
      *response.mutable_crisis_resources() =
          s.result->scoring().crisis_resources();
    }
  }
  response.set_handoff(s.record.handoff());
  if (s.record.handoff() == v1::DELIVERED)
    response.set_case_name(s.record.case_name());
  return response;
}

v1::HandoffState IntakeCore::HandOff(StoredSession& session,
                                     absl::Time deadline) {
  referral::v1::CreateReferralRequest req;
  req.set_request_id(absl::StrCat("handoff-", session.record.screening_id()));
  req.set_screening(
      ScreeningName{session.record.user_id(), session.record.screening_id()}
          .ToString());
  *req.mutable_result() = session.result->scoring();
  req.set_location_state(LocationStateOf(session.record));
  if (session.record.early_risk_route() != common::v1::ROUTE_UNSPECIFIED) {
    // One case per screening: the result goes to the early risk case.
    req.set_early_risk_raised(true);
    if (auto clinical = catalog_->Get(); clinical != nullptr) {
      AddRiskAnswers(session.result->scoring(), session.record,
                     *clinical->catalog, req.mutable_risk_answers());
    }
  }
  auto created = referral_->CreateReferral(req, deadline);
  if (!created.ok()) {
    log::Warn("referral hand-off pending",
              {{"code", absl::StatusCodeToString(created.status().code())},
               {"peer", referral_->Describe()}});
    return v1::PENDING;
  }
  // Record the delivery and take the screening out of the outbox (one round
  // trip); a lost race here only means a later retry calls referral again,
  // which is idempotent per screening and ruleset.
  SessionStore::WriteRequest write;
  write.expected_version = session.version;
  write.record = session.record;
  write.record.set_handoff(v1::DELIVERED);
  write.record.set_case_name(created->name());
  write.request_id = absl::StrCat("handoff-", session.version);
  write.remove_handoff = true;
  write.release_open_slot = true;  // a completed screening holds none
  auto outcome = store_->Write(session.record.screening_id(), write, deadline);
  if (outcome.ok() && outcome->kind == Kind::kWritten) {
    session.record = std::move(write.record);
    session.version = outcome->version;
  } else {
    session.record.set_case_name(created->name());
  }
  return v1::DELIVERED;
}

absl::StatusOr<v1::CompleteScreeningResponse> IntakeCore::CompleteScreening(
    const v1::CompleteScreeningRequest& request, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto target, ParseWrite(request.name(), request.request_id(),
                                           request.etag()));
  ASSIGN_OR_RETURN(auto catalog, Catalog());
  // The session this replica wrote last, when the etag names it (the usual
  // case: it wrote the last page): TakeCached's rule. Either way the entry
  // goes: a completed session is not cached.
  if (std::optional<StoredSession> cached =
          TakeCached(target.name, target.expected_version);
      cached.has_value()) {
    ASSIGN_OR_RETURN(auto completed,
                     Complete(request, target, *catalog, std::move(*cached),
                              /*from_cache=*/true, deadline));
    if (completed.has_value()) return std::move(*completed);
  }
  ASSIGN_OR_RETURN(auto loaded, Load(request.name(), "name", deadline));
  StoredSession session = std::move(loaded);
  const auto& r = session.record;

  if (r.state() == v1::COMPLETED) {
    if (r.complete_request_id() != request.request_id()) {
      return absl::FailedPreconditionError(
          "name: screening is already completed");
    }
    // Same request again: the same result, and another try at a pending
    // hand-off.
    if (r.handoff() != v1::DELIVERED && session.result.has_value()) {
      session.record.set_handoff(HandOff(
          session,
          std::min(deadline, absl::Now() + config_.handoff_inline_budget)));
    }
    return CompletionResponse(session);
  }
  if (r.state() != v1::IN_PROGRESS) {
    return absl::FailedPreconditionError(
        absl::StrCat("name: screening is ", v1::ScreeningState_Name(r.state()),
                     "; it cannot be completed"));
  }
  if (session.version != target.expected_version) {
    return StaleEtag(request.etag(), session.version);
  }
  ASSIGN_OR_RETURN(auto completed,
                   Complete(request, target, *catalog, std::move(session),
                            /*from_cache=*/false, deadline));
  if (!completed.has_value())
    return absl::InternalError("completion: nothing to start over from");
  return std::move(*completed);
}

absl::StatusOr<std::optional<v1::CompleteScreeningResponse>>
IntakeCore::Complete(const v1::CompleteScreeningRequest& request,
                     const WriteTarget& target, const Clinical& clinical,
                     StoredSession session, bool from_cache,
                     absl::Time deadline) {
  const ScreeningName& name = target.name;
  const auto& r = session.record;
  ASSIGN_OR_RETURN(auto flow,
                   ComputeFlow(*clinical.catalog, clinical.sets, r.answers()));
  if (!flow.missing_required.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("required items not answered: ",
                     absl::StrJoin(flow.missing_required, ", ")));
  }

  scoring::v1::ScoreAnswersRequest score_req;
  const absl::flat_hash_set<std::string> dropped(flow.inapplicable.begin(),
                                                 flow.inapplicable.end());
  for (const auto& info : clinical.catalog->instruments()) {
    for (const auto& item : info.items) {
      auto it = r.answers().find(item.def->id());
      if (it != r.answers().end() && !dropped.contains(it->first)) {
        *score_req.mutable_answers()->add_answers() = it->second;
      }
    }
  }
  for (const auto& id : flow.instruments)
    score_req.add_administered_instruments(id);
  auto scored = scoring_->Score(score_req, deadline);
  if (!scored.ok()) {
    // Nothing is committed: the answers stay, the person can retry.
    if (scored.status().code() == absl::StatusCode::kInvalidArgument) {
      return absl::InternalError(
          absl::StrCat("stored answers rejected by ", scoring_->Describe()));
    }
    return scored.status();
  }

  const int64_t now = clock_->NowMillis();
  storage::v1::ResultRecord result;
  result.set_complete_time_ms(now);
  *result.mutable_scoring() = std::move(*scored);
  storage::v1::SessionRecord record = r;
  record.set_state(v1::COMPLETED);
  record.set_update_time_ms(now);
  record.set_complete_time_ms(now);
  record.set_complete_request_id(request.request_id());
  record.set_handoff(v1::PENDING);
  record.clear_instruments();
  for (const auto& id : flow.instruments) record.add_instruments(id);

  // The result is indexed and its hand-off queued ahead of the commit, in
  // the same round trip (WriteRequest::index_completion).
  SessionStore::WriteRequest write;
  write.expected_version = target.expected_version;
  write.record = std::move(record);
  write.result = std::move(result);
  write.request_id = request.request_id();
  write.ttl = absl::ZeroDuration();  // completed results do not expire
  write.index_completion = SessionStore::WriteRequest::CompletionIndex{
      now, now + absl::ToInt64Milliseconds(config_.handoff_retry)};
  ASSIGN_OR_RETURN(auto outcome,
                   store_->Write(name.screening_id, write, deadline));
  if (from_cache &&
      (outcome.kind == Kind::kConflict || outcome.kind == Kind::kMissing)) {
    return std::optional<v1::CompleteScreeningResponse>();  // changed
                                                            // elsewhere: start
                                                            // over from Redis
  }
  if (outcome.kind == Kind::kConflict) {
    return StaleEtag(request.etag(), outcome.version);
  }
  if (outcome.kind == Kind::kMissing) {
    return absl::NotFoundError("name: no such screening (expired?)");
  }
  if (outcome.kind == Kind::kLatest || outcome.kind == Kind::kApplied) {
    // The same completion racing its own retry (which won), or a request id
    // already used for a page.
    ASSIGN_OR_RETURN(auto now, store_->Get(name.screening_id, "", deadline));
    if (now.session.has_value() &&
        now.session->record.state() == v1::COMPLETED &&
        now.session->record.complete_request_id() == request.request_id()) {
      return CompletionResponse(*now.session);
    }
    return absl::InvalidArgumentError(
        "request_id: already used by another request to this screening");
  }
  if (outcome.kind != Kind::kWritten) {
    return absl::InternalError("unexpected outcome completing a screening");
  }
  session.record = std::move(write.record);
  session.result = std::move(write.result);
  session.version = outcome.version;
  log::Info(
      "screening completed",
      {{"route", common::v1::Route_Name(
                     session.result->scoring().routing().primary_route())},
       {"ruleset", session.result->scoring().ruleset_version()}});
  // The hand-off's write also frees the open-session slot; without it, the
  // slot is freed on its own.
  const v1::HandoffState handoff = HandOff(
      session, std::min(deadline, absl::Now() + config_.handoff_inline_budget));
  if (handoff != v1::DELIVERED)
    (void)store_->ReleaseOpenSlot(name.user_id, name.screening_id, deadline);
  session.record.set_handoff(handoff);
  metrics::ScreeningCompleted(
      session.result->scoring().routing().primary_route(), handoff);
  // The answers did not change at completion: the flow checked above gives
  // the progress.
  v1::Progress progress;
  progress.set_answered(flow.answered);
  progress.set_remaining(flow.remaining);
  return CompletionResponse(session, &progress);
}

void IntakeCore::AddRiskAnswers(
    const scoring::v1::ScoringResult& result,
    const storage::v1::SessionRecord& record,
    const scoring::CatalogIndex& catalog,
    google::protobuf::RepeatedPtrField<referral::v1::RiskAnswer>* out) {
  // The inputs of the safety-flag rules that fired: an item ("phq9.9") is
  // that answer; an instrument's derived name ("asq.positive") is every
  // answer given to that instrument.
  absl::flat_hash_set<std::string> ids;
  std::vector<std::string> order;
  auto add = [&](const std::string& id) {
    if (record.answers().contains(id) && ids.insert(id).second)
      order.push_back(id);
  };
  for (const auto& rule : result.rules()) {
    if (!rule.fired() || !absl::StartsWith(rule.rule_id(), "flag.")) continue;
    for (const auto& in : rule.inputs()) {
      if (catalog.FindItem(in.name()) != nullptr) {
        add(in.name());
      } else if (const auto* ins = catalog.FindInstrument(
                     in.name().substr(0, in.name().find('.')));
                 ins != nullptr) {
        for (const auto& item : ins->items()) add(item.id());
      }
    }
  }
  // In catalog order, as the person met them.
  for (const auto& info : catalog.instruments()) {
    for (const auto& item : info.items) {
      if (!ids.contains(item.def->id())) continue;
      const common::v1::Answer& a = record.answers().at(item.def->id());
      referral::v1::RiskAnswer* r = out->Add();
      r->set_item_id(item.def->id());
      r->set_question(item.def->text());
      switch (a.value_case()) {
        case common::v1::Answer::kDeclined:
          r->set_answer("declined to answer");
          break;
        case common::v1::Answer::kOptionValue:
          r->set_answer(absl::StrCat(a.option_value()));
          for (const auto& o : item.def->options()) {
            if (o.value() == a.option_value()) r->set_answer(o.text());
          }
          break;
        case common::v1::Answer::kIntegerValue:
          r->set_answer(absl::StrCat(a.integer_value()));
          break;
        case common::v1::Answer::kCodeValue:
          r->set_answer(a.code_value());
          break;
        default:
          break;
      }
    }
  }
}

IntakeCore::RiskDelivery IntakeCore::DeliverEarlyRisk(
    const SessionStore::RiskEntry& entry, absl::Time deadline) {
  auto read = store_->Get(entry.screening_id, "", deadline);
  if (!read.ok()) return RiskDelivery::kRetry;
  if (!read->session.has_value() ||
      store_->OwnerOf(read->session->record.user_id()) != entry.owner) {
    log::Error("early risk case not delivered: its screening is gone", {});
    return RiskDelivery::kNothingOwed;
  }
  const StoredSession& s = *read->session;
  const storage::v1::SessionRecord& r = s.record;
  // Nothing owed: the write that queued it did not commit, or the
  // completion's hand-off carries it (early_risk_raised).
  if (r.early_risk_route() < entry.route || r.state() == v1::COMPLETED)
    return RiskDelivery::kNothingOwed;
  auto clinical = catalog_->Get();
  if (clinical == nullptr) return RiskDelivery::kRetry;
  auto scored = clinical->engine->Score(AnswersSoFar(r, *clinical->catalog));
  if (!scored.ok()) {
    log::Error("early risk case: stored answers do not score",
               {{"code", absl::StatusCodeToString(scored.status().code())}});
    return RiskDelivery::kRetry;
  }
  referral::v1::CreateReferralRequest req;
  req.set_request_id(absl::StrCat("risk-", r.screening_id(), "-",
                                  static_cast<int>(entry.route)));
  req.set_screening(ScreeningName{r.user_id(), r.screening_id()}.ToString());
  req.set_location_state(LocationStateOf(r));
  req.set_unfinished(true);
  AddRiskAnswers(*scored, r, *clinical->catalog, req.mutable_risk_answers());
  *req.mutable_result() = std::move(*scored);
  // The case's route is the most severe raised so far, even if an answer
  // was changed since: an early risk case is never lowered.
  scoring::v1::RoutingDecision* routing =
      req.mutable_result()->mutable_routing();
  if (routing->primary_route() < r.early_risk_route()) {
    routing->set_primary_route(r.early_risk_route());
    routing->set_required_reviewer(common::v1::CLINICIAN);
  }
  auto created = referral_->CreateReferral(req, deadline);
  if (!created.ok()) {
    log::Warn("early risk case pending",
              {{"code", absl::StatusCodeToString(created.status().code())},
               {"peer", referral_->Describe()}});
    // Owed still: the session must outlive the wait.
    (void)store_->KeepSession(r.screening_id(), true, config_.session_ttl,
                              deadline);
    return RiskDelivery::kRetry;
  }
  log::Info("early risk case delivered",
            {{"route", common::v1::Route_Name(entry.route)}});
  metrics::EarlyRiskCaseDelivered();
  (void)store_->KeepSession(r.screening_id(), false, config_.session_ttl,
                            deadline);
  return RiskDelivery::kDelivered;
}

absl::StatusOr<int> IntakeCore::DeliverPendingHandoffs(int limit,
                                                       absl::Time deadline) {
  const int64_t now = clock_->NowMillis();
  // Early risk cases first: they are what a clinician must see soonest.
  ASSIGN_OR_RETURN(
      auto risks,
      store_->ClaimDueRiskEntries(
          now, now + absl::ToInt64Milliseconds(config_.handoff_retry), limit,
          deadline));
  int delivered = 0;
  for (const auto& entry : risks) {
    const RiskDelivery outcome = DeliverEarlyRisk(entry, deadline);
    if (outcome == RiskDelivery::kRetry)
      continue;  // claimed until its retry time
    (void)store_->RemoveRiskEntry(entry.member, deadline);
    if (outcome == RiskDelivery::kDelivered) ++delivered;
  }
  ASSIGN_OR_RETURN(
      auto due, store_->ClaimDueHandoffs(
                    now, now + absl::ToInt64Milliseconds(config_.handoff_retry),
                    limit, deadline));
  for (const auto& entry : due) {
    ASSIGN_OR_RETURN(auto read, store_->Get(entry.screening_id, "", deadline));
    if (!read.session.has_value() ||
        store_->OwnerOf(read.session->record.user_id()) != entry.owner ||
        read.session->record.state() == v1::ABANDONED) {
      (void)store_->RemoveHandoff(entry.owner, entry.screening_id, deadline);
      continue;
    }
    StoredSession& session = *read.session;
    if (session.record.state() != v1::COMPLETED)
      continue;  // completion may still commit
    if (session.record.handoff() == v1::DELIVERED ||
        !session.result.has_value()) {
      (void)store_->RemoveHandoff(entry.owner, entry.screening_id, deadline);
      continue;
    }
    if (HandOff(session, deadline) == v1::DELIVERED) ++delivered;
  }
  if (delivered > 0)
    log::Info("outbox: hand-offs delivered", {{"count", delivered}});
  // What is still owed, for the outbox gauges (a failed read keeps the last
  // values; the Redis failure metrics say why).
  if (auto sizes = store_->OutboxSizes(deadline); sizes.ok()) {
    metrics::OutboxEntries(sizes->handoffs, sizes->risk_cases,
                           sizes->oldest_handoff_ms, sizes->oldest_risk_ms,
                           absl::ToUnixMillis(absl::Now()));
  }
  return delivered;
}

}  // namespace aqueduct::intake
