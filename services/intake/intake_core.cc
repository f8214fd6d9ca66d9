#include "services/intake/intake_core.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging/logging.h"
#include "common/util/names.h"

namespace aqueduct::intake {
namespace {

using Kind = SessionStore::WriteOutcome::Kind;

constexpr char kDisclaimer[] = "This is a screening, not a diagnosis.";

// A write based on a stale etag: ABORTED with the current one, so the app
// can fetch the screening and resubmit instead of overwriting another
// device's answers.
absl::Status StaleEtag(const std::string& given, int64_t current) {
  return absl::AbortedError(absl::StrCat(
      "etag: the screening changed since etag \"", given, "\" (current etag \"",
      current, "\"); fetch it and resubmit"));
}

// What a person may see of their own scoring result: their instrument
// scores, the crisis resources, and the self-help plan when that is their
// route. Not the route under review, the rules that fired, secondary flags
// (e.g. a ketamine exclusion), modality suggestions or the profile label:
// nothing reaches a person before a clinician has looked, and a ketamine
// review is never shown as eligibility.
scoring::v1::ScoringResult ForThePerson(const scoring::v1::ScoringResult& full,
                                        const scoring::CatalogIndex* catalog) {
  scoring::v1::ScoringResult out;
  out.set_ruleset_version(full.ruleset_version());
  out.set_catalog_version(full.catalog_version());
  for (const auto& score : full.scores()) {
    const auto* ins = catalog != nullptr ? catalog->FindInstrument(score.instrument_id()) : nullptr;
    // Only scored instruments (not the context or the ketamine pre-screen).
    if (ins == nullptr || ins->scoring() == scoring::v1::SCORING_METHOD_UNSPECIFIED) continue;
    if (score.completeness() == scoring::v1::NOT_ADMINISTERED) continue;
    *out.add_scores() = score;
  }
  if (full.has_crisis_resources()) *out.mutable_crisis_resources() = full.crisis_resources();
  if (full.routing().primary_route() == common::v1::SELF_HELP) {
    *out.mutable_routing()->mutable_self_help_plan() = full.routing().self_help_plan();
    out.mutable_routing()->set_primary_route(common::v1::SELF_HELP);
    out.mutable_routing()->set_rescreen_after_days(full.routing().rescreen_after_days());
  }
  return out;
}

// The answers given so far, in catalog order (results do not depend on
// the map's order), as scoring takes them.
scoring::v1::ScoreAnswersRequest AnswersSoFar(const storage::v1::SessionRecord& record,
                                              const scoring::CatalogIndex& catalog) {
  scoring::v1::ScoreAnswersRequest partial;
  for (const auto& info : catalog.instruments()) {
    for (const auto& item : info.items) {
      auto it = record.answers().find(item.def->id());
      if (it != record.answers().end()) *partial.mutable_answers()->add_answers() = it->second;
    }
  }
  return partial;
}

v1::PersonRoute PersonRouteOf(const scoring::v1::ScoringResult& result) {
  v1::PersonRoute route;
  const auto primary = result.routing().primary_route();
  switch (primary) {
    case common::v1::SELF_HELP:
      route.set_route(primary);
      route.set_message(absl::StrCat(
          kDisclaimer,
          " Here is a self-help plan you can start today. We will remind you "
          "to check in again in two weeks."));
      *route.mutable_self_help_plan() = result.routing().self_help_plan();
      break;
    case common::v1::THERAPY:
      route.set_route(primary);
      route.set_pending_review(true);
      route.set_message(absl::StrCat(
          kDisclaimer,
          " A licensed clinician will review your answers and follow up about "
          "next steps."));
      break;
    case common::v1::KETAMINE_REVIEW:
      // Nothing about eligibility reaches the person before a physician
      // confirms it: only that a physician is reviewing.
      route.set_route(common::v1::UNDER_PHYSICIAN_REVIEW);
      route.set_pending_review(true);
      route.set_message(absl::StrCat(
          kDisclaimer, " Your answers are under review by a physician."));
      break;
    case common::v1::CRISIS_URGENT:
    case common::v1::CRISIS_ACUTE:
      route.set_route(primary);
      route.set_pending_review(true);
      route.set_message(absl::StrCat(
          kDisclaimer,
          " Please reach out to the crisis resources below now; you do not "
          "have to wait. A clinician will review your answers urgently."));
      break;
    default:
      route.set_pending_review(true);
      route.set_message(absl::StrCat(kDisclaimer,
                                     " A clinician will review your answers."));
  }
  return route;
}

}  // namespace

absl::Status PrefillContext(const v1::ScreeningContext& context,
                            const scoring::CatalogIndex& catalog,
                            storage::v1::SessionRecord& record) {
  auto choose = [&](const std::string& item_id, const std::string& code,
                    const std::string& field) -> absl::Status {
    const scoring::v1::Item* item = catalog.FindItem(item_id);
    if (item == nullptr) return absl::OkStatus();  // the catalog does not ask it
    common::v1::Answer a;
    a.set_item_id(item_id);
    if (item->kind() == scoring::v1::CODE) {
      a.set_code_value(code);
    } else {
      for (const auto& o : item->options()) {
        if (o.code() == code) a.set_option_value(o.value());
      }
    }
    if (!scoring::CatalogIndex::ValueFits(*item, a)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": \"", code, "\" is not one of the allowed values"));
    }
    (*record.mutable_answers())[item_id] = a;
    return absl::OkStatus();
  };
  if (!context.role().empty()) {
    if (auto s = choose("ctx.role", context.role(), "context.role"); !s.ok()) return s;
  }
  if (context.has_works()) {
    if (auto s = choose("ctx.works", context.works() ? "yes" : "no", "context.works"); !s.ok()) return s;
  }
  if (context.has_works_with_clients()) {
    if (context.has_works() && !context.works()) {
      return absl::InvalidArgumentError(
          "context.works_with_clients: given, but context.works says the person does not work");
    }
    if (auto s = choose("ctx.works_with_clients", context.works_with_clients() ? "yes" : "no",
                        "context.works_with_clients");
        !s.ok()) {
      return s;
    }
  }
  if (!context.location_state().empty()) {
    if (auto s = choose("ctx.state", context.location_state(), "context.location_state"); !s.ok()) {
      return s;
    }
  }
  if (context.has_age()) {
    if (const scoring::v1::Item* item = catalog.FindItem("ctx.age"); item != nullptr) {
      common::v1::Answer a;
      a.set_item_id("ctx.age");
      a.set_integer_value(context.age());
      if (!scoring::CatalogIndex::ValueFits(*item, a)) {
        return absl::InvalidArgumentError(absl::StrCat("context.age: ", context.age(), " is outside ",
                                                       item->min_value(), "..", item->max_value()));
      }
      (*record.mutable_answers())["ctx.age"] = a;
    }
  }
  if (!context.sex().empty()) {
    if (auto s = choose("ctx.sex", context.sex(), "context.sex"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::shared_ptr<const Clinical> CatalogHolder::Get() const {
  absl::MutexLock lock(&mu_);
  return clinical_;
}

void CatalogHolder::Set(std::shared_ptr<const Clinical> clinical) {
  absl::MutexLock lock(&mu_);
  clinical_ = std::move(clinical);
}

absl::Status CatalogHolder::LoadFrom(ScoringPeer& scoring, absl::Time deadline) {
  auto catalog = scoring.DescribeCatalog(deadline);
  if (!catalog.ok()) return catalog.status();
  auto rulesets = scoring.ListRulesets(deadline);
  if (!rulesets.ok()) return rulesets.status();
  if (rulesets->rulesets().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(scoring.Describe(), " has no ruleset loaded"));
  }
  auto index = scoring::CatalogIndex::Build(std::move(*catalog));
  if (!index.ok()) return index.status();
  auto clinical = std::make_shared<Clinical>();
  clinical->catalog = std::move(*index);
  const auto& newest = rulesets->rulesets(0);
  clinical->default_ruleset = newest.version();
  for (const auto& set : newest.sets()) {
    clinical->sets.emplace_back(set.name(),
                                std::vector<std::string>(set.values().begin(), set.values().end()));
  }
  auto ruleset = scoring::RulesetIndex::Build(newest.definition(), clinical->catalog);
  if (!ruleset.ok()) return ruleset.status();
  auto engine = scoring::ScoringEngine::Create(clinical->catalog, {*ruleset});
  if (!engine.ok()) return engine.status();
  clinical->engine = std::move(*engine);
  Set(std::move(clinical));
  return absl::OkStatus();
}

std::string LocationStateOf(const storage::v1::SessionRecord& record) {
  auto state = record.answers().find("ctx.state");
  if (state != record.answers().end() &&
      state->second.value_case() == common::v1::Answer::kCodeValue) {
    return state->second.code_value();
  }
  return record.context().location_state();
}

absl::StatusOr<WriteTarget> ParseWrite(const std::string& name, const std::string& request_id,
                                       const std::string& etag) {
  auto parsed = ParseScreeningName(name, "name");
  if (!parsed.ok()) return parsed.status();
  if (absl::Status s = ValidateRequestId(request_id, "request_id"); !s.ok()) return s;
  auto version = ParseEtag(etag);
  if (!version.ok()) return version.status();
  return WriteTarget{std::move(*parsed), *version};
}

absl::StatusOr<int64_t> ParseEtag(const std::string& etag) {
  int64_t v = 0;
  if (etag.empty()) return absl::InvalidArgumentError("etag: is required");
  if (!absl::SimpleAtoi(etag, &v) || v < 1) {
    return absl::InvalidArgumentError(
        "etag: not an etag returned by this service");
  }
  return v;
}

absl::StatusOr<std::shared_ptr<const Clinical>> IntakeCore::Catalog() const {
  auto c = catalog_->Get();
  if (c == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("instrument catalog not loaded yet from ",
                     scoring_->Describe(), "; retry shortly"));
  }
  return c;
}

absl::StatusOr<StoredSession> IntakeCore::Load(const std::string& name,
                                               const std::string& field,
                                               absl::Time deadline) {
  auto parsed = ParseScreeningName(name, field);
  if (!parsed.ok()) return parsed.status();
  auto read = store_->Get(parsed->screening_id, "", deadline);
  if (!read.ok()) return read.status();
  if (!read->session.has_value() ||
      read->session->record.user_id() != parsed->user_id) {
    return absl::NotFoundError(absl::StrCat(field, ": no such screening"));
  }
  return std::move(*read->session);
}

v1::Screening IntakeCore::ToScreening(const StoredSession& s, const v1::Progress* progress) const {
  v1::Screening out;
  const auto& r = s.record;
  out.set_name(ScreeningName{r.user_id(), r.screening_id()}.ToString());
  out.set_state(r.state());
  out.set_etag(absl::StrCat(s.version));
  out.set_consent_version(r.consent_version());
  out.set_locale(r.locale());
  out.set_catalog_version(r.catalog_version());
  out.set_create_time_ms(r.create_time_ms());
  out.set_update_time_ms(r.update_time_ms());
  if (r.state() == v1::IN_PROGRESS) {
    out.set_expire_time_ms(r.update_time_ms() +
                           absl::ToInt64Milliseconds(config_.session_ttl));
  }
  if (progress != nullptr) {
    *out.mutable_progress() = *progress;
  } else if (auto clinical = catalog_->Get(); clinical != nullptr) {
    // Progress alone needs the flow, not the items or the crisis check.
    if (auto flow = ComputeFlow(*clinical->catalog, clinical->sets, s.record.answers()); flow.ok()) {
      out.mutable_progress()->set_answered(flow->answered);
      out.mutable_progress()->set_remaining(flow->remaining);
    }
  }
  return out;
}

absl::StatusOr<v1::NextItems> IntakeCore::NextItemsOf(const StoredSession& s,
                                                      const Clinical& clinical) const {
  auto flow = ComputeFlow(*clinical.catalog, clinical.sets, s.record.answers());
  if (!flow.ok()) return flow.status();
  return NextItemsFrom(s, clinical, *flow);
}

v1::NextItems IntakeCore::NextItemsFrom(const StoredSession& s, const Clinical& clinical, const Flow& flow,
                                        RiskNow* risk) const {
  v1::NextItems next;
  next.set_name(ScreeningName{s.record.user_id(), s.record.screening_id()}.ToString());
  next.set_etag(absl::StrCat(s.version));
  if (s.record.state() == v1::IN_PROGRESS) {
    for (const Flow::Ask& ask : flow.page) {
      v1::ItemToAsk* item = next.add_items();
      *item->mutable_item() = *ask.item;
      item->set_instrument_id(ask.instrument->def->id());
      item->set_stem(ask.instrument->def->stem());
      item->set_copyright(ask.instrument->def->copyright());
    }
  }
  next.mutable_progress()->set_answered(flow.answered);
  next.mutable_progress()->set_remaining(flow.remaining);
  // Crisis resources the moment an answer indicates risk (e.g. PHQ-9 item 9
  // above 0, or declined from ruleset v2 on), scored locally so they never
  // wait for another service. Only what the answers given make certain
  // counts here: a question not yet reached is not a risk. Once a page has
  // raised an early risk case they stay on every reply.
  const bool risk_raised = s.record.early_risk_route() != common::v1::ROUTE_UNSPECIFIED;
  if (s.record.state() == v1::IN_PROGRESS && !s.record.answers().empty()) {
    const scoring::v1::ScoreAnswersRequest partial = AnswersSoFar(s.record, *clinical.catalog);
    // The digest says whether any flag is raised without building
    // explanations; only then is the full result (with the resources) made.
    scoring::v1::ResultDigest digest;
    bool crisis = false;
    if (clinical.engine->DigestInto(partial, &digest, &crisis).ok() &&
        (crisis || digest.safety_flags_size() > 0 || risk_raised)) {
      if (risk != nullptr) {
        risk->crisis_resources = crisis || digest.safety_flags_size() > 0;
        for (int kind : digest.safety_flags()) {
          const auto route = kind == scoring::v1::ASQ_ACUTE_POSITIVE ? common::v1::CRISIS_ACUTE
                                                                    : common::v1::CRISIS_URGENT;
          if (route > risk->route) risk->route = route;
        }
      }
      auto scored = clinical.engine->Score(partial);
      if (scored.ok() && scored->has_crisis_resources()) {
        *next.mutable_crisis_resources() = scored->crisis_resources();
      } else if (risk_raised) {
        *next.mutable_crisis_resources() = clinical.engine->newest().ruleset().crisis_resources();
      }
    }
  }
  next.set_ready_to_complete(s.record.state() == v1::IN_PROGRESS &&
                             flow.missing_required.empty());
  return next;
}

absl::Status IntakeCore::RateLimit(const std::string& user, const char* what, int limit, absl::Duration window,
                                     absl::Time deadline) {
  if (limit <= 0) return absl::OkStatus();
  const int64_t now_ms = clock_->NowMillis();
  const RateWindow w = RateWindowAt(window, now_ms);
  return RateVerdict(store_->CountInWindow(user, what, w.index, w.ttl, deadline), what, limit, window, now_ms);
}

absl::Status IntakeCore::RateVerdict(absl::StatusOr<int64_t> count, const char* what, int limit,
                                     absl::Duration window, int64_t now_ms) const {
  if (!count.ok()) return count.status();
  if (*count <= limit) return absl::OkStatus();
  const int64_t window_ms = absl::ToInt64Milliseconds(window);
  const int64_t wait_s = (window_ms - now_ms % window_ms + 999) / 1000;
  return absl::ResourceExhaustedError(absl::StrCat("too many ", what, " requests (at most ", limit, " per ",
                                                   absl::FormatDuration(window), "); try again in ", wait_s, " s"));
}

absl::StatusOr<v1::Screening> IntakeCore::StartScreening(
    const v1::StartScreeningRequest& request, absl::Time deadline) {
  auto user = ParseUserName(request.parent(), "parent");
  if (!user.ok()) return user.status();
  if (request.consent_version().empty()) {
    return absl::InvalidArgumentError("consent_version: is required");
  }
  if (request.consent_version().size() > 64) {
    return absl::InvalidArgumentError("consent_version: longer than 64 characters");
  }
  if (request.locale().size() > 35) {
    return absl::InvalidArgumentError("locale: longer than 35 characters");
  }
  const auto& state = request.context().location_state();
  if (!state.empty()) {
    if (absl::Status s = ValidateStateCode(state, "context.location_state"); !s.ok()) {
      return s;
    }
  }
  std::string request_id = request.request_id();
  if (!request_id.empty()) {
    if (absl::Status s = ValidateRequestId(request_id, "request_id"); !s.ok()) return s;
  }
  auto catalog = Catalog();
  if (!catalog.ok()) return catalog.status();
  if (absl::Status s = RateLimit(*user, "start", config_.start_limit_per_hour, absl::Hours(1), deadline); !s.ok()) {
    return s;
  }

  std::string screening_id = NewId();
  if (!request_id.empty()) {
    auto bound = store_->ClaimStartRequest(*user, request_id, screening_id, deadline);
    if (!bound.ok()) return bound.status();
    screening_id = *bound;
    // A retried start finds the session made by the first attempt.
    auto existing = store_->Get(screening_id, "", deadline);
    if (!existing.ok()) return existing.status();
    if (existing->session.has_value()) {
      if (existing->session->record.user_id() != *user) {
        return absl::InternalError("start request bound to another user's screening");
      }
      return ToScreening(*existing->session);
    }
  } else {
    request_id = absl::StrCat("start-", screening_id);  // a fresh id: nothing to find
  }

  const int64_t now = clock_->NowMillis();
  StoredSession session;
  auto& r = session.record;
  r.set_screening_id(screening_id);
  r.set_user_id(*user);
  r.set_state(v1::IN_PROGRESS);
  r.set_consent_version(request.consent_version());
  r.set_locale(request.locale().empty() ? "en-US" : request.locale());
  r.set_catalog_version((*catalog)->catalog->catalog().version());
  *r.mutable_context() = request.context();
  r.set_create_time_ms(now);
  r.set_update_time_ms(now);
  if (absl::Status s = PrefillContext(request.context(), *(*catalog)->catalog, r); !s.ok()) {
    return s;
  }

  auto reserved = store_->ReserveOpenSlot(*user, screening_id,
                                          now + absl::ToInt64Milliseconds(config_.session_ttl),
                                          config_.max_open_sessions, now, deadline);
  if (!reserved.ok()) return reserved.status();
  if (!*reserved) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "parent: already ", config_.max_open_sessions,
        " open screenings; complete or abandon one before starting another"));
  }
  SessionStore::WriteRequest write;
  write.expected_version = 0;
  write.record = r;
  write.request_id = request_id;
  write.ttl = config_.session_ttl;
  auto outcome = store_->Write(screening_id, write, deadline);
  if (!outcome.ok()) return outcome.status();
  if (outcome->kind == Kind::kExists || outcome->kind == Kind::kLatest) {  // a concurrent retry won the race
    auto again = store_->Get(screening_id, "", deadline);
    if (!again.ok()) return again.status();
    if (!again->session.has_value()) return absl::AbortedError("start raced; retry");
    return ToScreening(*again->session);
  }
  if (outcome->kind != Kind::kWritten) {
    return absl::InternalError("unexpected outcome creating a screening");
  }
  session.version = outcome->version;
  log::Info("screening started", {{"catalog_version", r.catalog_version()}});
  v1::Screening started = ToScreening(session);
  cache_->Put(screening_id, std::move(session));  // the first page need not read it back
  return started;
}

absl::StatusOr<v1::Screening> IntakeCore::GetScreening(
    const v1::GetScreeningRequest& request, absl::Time deadline) {
  auto session = Load(request.name(), "name", deadline);
  if (!session.ok()) return session.status();
  return ToScreening(*session);
}

absl::StatusOr<v1::NextItems> IntakeCore::GetNextItems(
    const v1::GetNextItemsRequest& request, absl::Time deadline) {
  auto catalog = Catalog();
  if (!catalog.ok()) return catalog.status();
  auto session = Load(request.name(), "name", deadline);
  if (!session.ok()) return session.status();
  if (session->record.state() != v1::IN_PROGRESS) {
    return absl::FailedPreconditionError(absl::StrCat(
        "name: screening is ", v1::ScreeningState_Name(session->record.state()),
        "; there are no items to ask"));
  }
  return NextItemsOf(*session, **catalog);
}

// The reply to a retry of a page applied already: the screening as it is
// now and what to ask next, built exactly as the first reply was (for a
// retry of the latest write, the same bytes).
absl::StatusOr<v1::SubmitAnswersResponse> IntakeCore::AppliedReply(const StoredSession& session,
                                                                  const Clinical& catalog) const {
  v1::SubmitAnswersResponse response;
  if (session.record.state() == v1::IN_PROGRESS) {
    auto next = NextItemsOf(session, catalog);
    if (!next.ok()) return next.status();
    *response.mutable_screening() = ToScreening(session, &next->progress());
    *response.mutable_next() = std::move(*next);
  } else {
    *response.mutable_screening() = ToScreening(session);
  }
  return response;
}

absl::StatusOr<v1::SubmitAnswersResponse> IntakeCore::SubmitChecked(const v1::SubmitAnswersRequest& request,
                                                                    const ScreeningName& name, int64_t expected,
                                                                    const Clinical& clinical, absl::Time deadline) {
  // The session as this replica wrote it last, when the etag names that
  // version: no read from Redis. The write below is checked against Redis's
  // version all the same; if the session changed elsewhere meanwhile (or
  // expired), that write stores nothing and the page starts over from what
  // Redis holds, so the reply is the one a read would have given. (One
  // difference: a page with a bad answer is refused against the version its
  // etag names even if Redis has moved on, INVALID_ARGUMENT where a read
  // would have said ABORTED; nothing is stored either way.)
  if (std::optional<StoredSession> cached = cache_->Take(name.screening_id, expected);
      cached.has_value() && cached->record.user_id() == name.user_id &&
      cached->record.state() == v1::IN_PROGRESS) {
    auto applied = ApplyAnswers(request, name, expected, clinical, std::move(*cached),
                                /*from_cache=*/true, deadline);
    if (!applied.ok()) return applied.status();
    if (applied->has_value()) return std::move(**applied);
  }

  auto read = store_->Get(name.screening_id, request.request_id(), deadline);
  if (!read.ok()) return read.status();
  if (!read->session.has_value() || read->session->record.user_id() != name.user_id) {
    return absl::NotFoundError("name: no such screening");
  }
  // A retry of a page already applied changes nothing. Of the latest write
  // the session is exactly as it left it, so the rebuilt reply is the one
  // sent the first time, byte for byte; of an earlier one, it is the
  // screening as it is now.
  if (read->applied != SessionStore::Applied::kNo) return AppliedReply(*read->session, clinical);
  StoredSession session = std::move(*read->session);
  if (session.record.state() != v1::IN_PROGRESS) {
    return absl::FailedPreconditionError(absl::StrCat(
        "name: screening is ", v1::ScreeningState_Name(session.record.state()),
        "; answers can no longer change"));
  }
  if (session.version != expected) {
    return StaleEtag(request.etag(), session.version);
  }
  auto applied = ApplyAnswers(request, name, expected, clinical, std::move(session),
                              /*from_cache=*/false, deadline);
  if (!applied.ok()) return applied.status();
  return std::move(**applied);  // set whenever the session was read
}

struct IntakeCore::AsyncSubmit {
  std::shared_ptr<const v1::SubmitAnswersRequest> request;
  absl::Time deadline;
  server::WorkerPool* pool = nullptr;
  SubmitDone done;
  ScreeningName name;
  int64_t expected = 0;
  std::shared_ptr<const Clinical> clinical;
};

void IntakeCore::SubmitAnswersAsync(std::shared_ptr<const v1::SubmitAnswersRequest> request,
                                    absl::Time deadline, server::WorkerPool* pool, SubmitDone done) {
  auto target = ParseWrite(request->name(), request->request_id(), request->etag());
  if (!target.ok()) return std::move(done)(target.status());
  if (request->answers().empty()) {
    return std::move(done)(absl::InvalidArgumentError("answers: at least one answer is required"));
  }
  auto catalog_or = Catalog();
  if (!catalog_or.ok()) return std::move(done)(catalog_or.status());
  auto call = std::make_shared<AsyncSubmit>();
  call->request = std::move(request);
  call->deadline = deadline;
  call->pool = pool;
  call->done = std::move(done);
  call->name = std::move(target->name);
  call->expected = target->expected_version;
  call->clinical = std::move(*catalog_or);
  const int limit = config_.submit_limit_per_minute;
  if (limit <= 0) return SubmitFromCacheAsync(std::move(call));
  const absl::Duration window = absl::Minutes(1);
  const int64_t now_ms = clock_->NowMillis();
  const std::string user = call->name.user_id;
  const RateWindow w = RateWindowAt(window, now_ms);
  store_->CountInWindowAsync(user, "submit", w.index, w.ttl, deadline,
                             [this, call = std::move(call), limit, window, now_ms](absl::StatusOr<int64_t> count) mutable {
                               absl::Status verdict = RateVerdict(std::move(count), "submit", limit, window, now_ms);
                               if (!verdict.ok()) return std::move(call->done)(std::move(verdict));
                               SubmitFromCacheAsync(std::move(call));
                             });
}

// SubmitChecked's cached branch, its write not blocking. Anything else
// goes to the pool.
void IntakeCore::SubmitFromCacheAsync(std::shared_ptr<AsyncSubmit> call) {
  const ScreeningName& name = call->name;
  std::optional<StoredSession> cached = cache_->Take(name.screening_id, call->expected);
  if (!cached.has_value() || cached->record.user_id() != name.user_id ||
      cached->record.state() != v1::IN_PROGRESS) {
    return SubmitOnPool(std::move(call));  // read from Redis: blocking
  }
  auto prepared = PreparePage(*call->request, call->expected, *call->clinical, std::move(*cached));
  if (!prepared.ok()) return std::move(call->done)(prepared.status());
  auto page = std::make_shared<PreparedPage>(std::move(*prepared));
  const std::string id = name.screening_id;
  const absl::Time deadline = call->deadline;  // read before `call` moves into the callback
  store_->WriteAsync(id, page->write, deadline,
                     [this, call = std::move(call), page](absl::StatusOr<SessionStore::WriteOutcome> outcome) mutable {
                       if (!outcome.ok()) return std::move(call->done)(outcome.status());
                       if (outcome->kind == Kind::kWritten) {
                         PageStored(*page);
                         // The next page of this session, on this replica, need not read it.
                         cache_->Put(call->name.screening_id, StoredSession{std::move(page->write.record),
                                                                            call->expected + 1, std::nullopt});
                         return std::move(call->done)(std::move(page->response));
                       }
                       if (outcome->kind == Kind::kExists) {
                         return std::move(call->done)(absl::InternalError("unexpected outcome storing answers"));
                       }
                       // Changed elsewhere, gone, or this request applied
                       // already by a concurrent retry: nothing was written;
                       // start over from what Redis holds, as a read would.
                       SubmitOnPool(std::move(call));
                     });
}

void IntakeCore::SubmitOnPool(std::shared_ptr<AsyncSubmit> call) {
  server::WorkerPool* pool = call->pool;
  auto work = [this, call]() mutable {
    std::move(call->done)(SubmitChecked(*call->request, call->name, call->expected, *call->clinical, call->deadline));
  };
  if (!pool->Schedule(std::move(work))) {
    std::move(call->done)(absl::UnavailableError("intake is overloaded: too many answers waiting; retry shortly"));
  }
}

absl::StatusOr<IntakeCore::PreparedPage> IntakeCore::PreparePage(const v1::SubmitAnswersRequest& request,
                                                                  int64_t expected, const Clinical& clinical,
                                                                  StoredSession session) const {
  PreparedPage page;
  v1::SubmitAnswersResponse& response = page.response;
  // Validate the whole page before changing anything: a bad answer stores
  // nothing of the page.
  const scoring::CatalogIndex& catalog = *clinical.catalog;
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < request.answers_size(); ++i) {
    const auto& a = request.answers(i);
    const std::string field = absl::StrCat("answers[", i, "]");
    if (absl::Status s = catalog.ValidateAnswer(a, field); !s.ok()) return s;
    if (!seen.insert(a.item_id()).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".item_id: \"", a.item_id(), "\" appears twice in this page"));
    }
  }
  for (const auto& a : request.answers()) {
    (*session.record.mutable_answers())[a.item_id()] = a;
  }
  // An answer to an item that does not apply is an error; a stored answer
  // that an earlier change made moot (e.g. work questions after "I do not
  // work") is dropped.
  auto flow = ComputeFlow(catalog, clinical.sets, session.record.answers());
  if (!flow.ok()) return flow.status();
  bool erased_moot = false;
  for (const std::string& id : flow->inapplicable) {
    if (seen.contains(id)) {
      for (int i = 0; i < request.answers_size(); ++i) {
        if (request.answers(i).item_id() != id) continue;
        const auto* item = catalog.FindItem(id);
        const auto* ins = catalog.InstrumentOfItem(id);
        std::string note = !item->applies_note().empty() ? item->applies_note()
                                                          : ins->applies_note();
        return absl::InvalidArgumentError(absl::StrCat(
            "answers[", i, "].item_id: \"", id, "\" does not apply to this screening",
            note.empty() ? "" : absl::StrCat(" (", note, ")")));
      }
    }
    erased_moot = session.record.mutable_answers()->erase(id) > 0 || erased_moot;
  }
  // Only items this screening's flow offers may be answered (e.g. no ASQ
  // while item 9 is 0, no ketamine module for a PHQ-9 below 10).
  const absl::flat_hash_set<std::string> offered(flow->instruments.begin(), flow->instruments.end());
  for (int i = 0; i < request.answers_size(); ++i) {
    const std::string& id = request.answers(i).item_id();
    if (!offered.contains(catalog.InstrumentOfItem(id)->id())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "answers[", i, "].item_id: \"", id, "\" is not offered in this screening"));
    }
  }
  session.record.set_update_time_ms(clock_->NowMillis());

  // The reply carries the version this write will create (expected + 1).
  session.version = expected + 1;
  // The flow of the stored answers: the one computed above unless moot
  // answers were dropped since.
  if (erased_moot) {
    flow = ComputeFlow(catalog, clinical.sets, session.record.answers());
    if (!flow.ok()) return flow.status();
  }
  RiskNow risk;
  v1::NextItems next = NextItemsFrom(session, clinical, *flow, &risk);
  SessionStore::WriteRequest& write = page.write;
  // A page that raises a safety flag (or raises it from urgent to acute)
  // owes referral an early risk case, whether or not the person ever
  // finishes: queued with this write, delivered by the outbox worker.
  if (risk.route > session.record.early_risk_route()) {
    session.record.set_early_risk_route(risk.route);
    write.queue_early_risk = risk.route;
    page.raised_early_risk = true;
    if (!next.has_crisis_resources()) {
      *next.mutable_crisis_resources() = clinical.engine->newest().ruleset().crisis_resources();
    }
  }
  *response.mutable_screening() = ToScreening(session, &next.progress());
  *response.mutable_next() = std::move(next);

  write.expected_version = expected;
  write.request_id = request.request_id();
  // Until the early risk case is delivered the session does not expire:
  // idle expiry must not take the answers the case is made from. The worker
  // sets the expiry once referral has the case (SessionStore::KeepSession).
  write.ttl = write.queue_early_risk.has_value() ? absl::ZeroDuration() : config_.session_ttl;
  // Activity keeps the open-session slot alive as long as the session.
  write.touch_open_slot_until_ms =
      session.record.update_time_ms() + absl::ToInt64Milliseconds(config_.session_ttl);
  write.record = std::move(session.record);  // the session is not used below
  return page;
}

absl::StatusOr<std::optional<v1::SubmitAnswersResponse>> IntakeCore::ApplyAnswers(
    const v1::SubmitAnswersRequest& request, const ScreeningName& name, int64_t expected,
    const Clinical& clinical, StoredSession session, bool from_cache, absl::Time deadline) {
  auto prepared = PreparePage(request, expected, clinical, std::move(session));
  if (!prepared.ok()) return prepared.status();
  v1::SubmitAnswersResponse& response = prepared->response;
  SessionStore::WriteRequest& write = prepared->write;
  auto outcome = store_->Write(name.screening_id, write, deadline);
  if (!outcome.ok()) return outcome.status();
  if (from_cache && (outcome->kind == Kind::kConflict || outcome->kind == Kind::kMissing)) {
    return std::optional<v1::SubmitAnswersResponse>();  // changed elsewhere: start over from Redis
  }
  switch (outcome->kind) {
    case Kind::kWritten:
      PageStored(*prepared);
      // The next page of this session, on this replica, need not read it.
      cache_->Put(name.screening_id, StoredSession{std::move(write.record), expected + 1, std::nullopt});
      return std::move(response);
    case Kind::kLatest:
    case Kind::kApplied: {  // a concurrent retry got there first
      auto now = store_->Get(name.screening_id, "", deadline);
      if (!now.ok()) return now.status();
      if (!now->session.has_value()) return absl::NotFoundError("name: no such screening (expired?)");
      return AppliedReply(*now->session, clinical);
    }
    case Kind::kConflict:
      return StaleEtag(request.etag(), outcome->version);
    case Kind::kMissing:
      return absl::NotFoundError("name: no such screening (expired?)");
    default:
      return absl::InternalError("unexpected outcome storing answers");
  }
}

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
        ForThePerson(s.result->scoring(), clinical != nullptr ? clinical->catalog.get() : nullptr);
    *response.mutable_route() = PersonRouteOf(s.result->scoring());
    if (s.result->scoring().has_crisis_resources()) {
      *response.mutable_crisis_resources() = s.result->scoring().crisis_resources();
    }
  }
  response.set_handoff(s.record.handoff());
  if (s.record.handoff() == v1::DELIVERED) response.set_case_name(s.record.case_name());
  return response;
}

v1::HandoffState IntakeCore::HandOff(StoredSession& session, absl::Time deadline) {
  referral::v1::CreateReferralRequest req;
  req.set_request_id(absl::StrCat("handoff-", session.record.screening_id()));
  req.set_screening(
      ScreeningName{session.record.user_id(), session.record.screening_id()}.ToString());
  *req.mutable_result() = session.result->scoring();
  req.set_location_state(LocationStateOf(session.record));
  if (session.record.early_risk_route() != common::v1::ROUTE_UNSPECIFIED) {
    // One case per screening: the result goes to the early risk case.
    req.set_early_risk_raised(true);
    if (auto clinical = catalog_->Get(); clinical != nullptr) {
      AddRiskAnswers(session.result->scoring(), session.record, *clinical->catalog, req.mutable_risk_answers());
    }
  }
  auto created = referral_->CreateReferral(req, deadline);
  if (!created.ok()) {
    log::Warn("referral hand-off pending",
              {{"code", static_cast<int>(created.status().code())},
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
  auto target = ParseWrite(request.name(), request.request_id(), request.etag());
  if (!target.ok()) return target.status();
  auto catalog = Catalog();
  if (!catalog.ok()) return catalog.status();
  // The session as this replica wrote it last, when the etag names that
  // version (the usual case: it wrote the last page), as in SubmitChecked:
  // the completion's write is checked against Redis's version all the same,
  // and when the session changed or went elsewhere meanwhile nothing is
  // written and the completion starts over from what Redis holds. Either
  // way the entry goes: a completed session is not cached.
  if (std::optional<StoredSession> cached = cache_->Take(target->name.screening_id, target->expected_version);
      cached.has_value() && cached->record.user_id() == target->name.user_id &&
      cached->record.state() == v1::IN_PROGRESS) {
    auto completed = Complete(request, *target, **catalog, std::move(*cached), /*from_cache=*/true, deadline);
    if (!completed.ok()) return completed.status();
    if (completed->has_value()) return std::move(**completed);
  }
  auto loaded = Load(request.name(), "name", deadline);
  if (!loaded.ok()) return loaded.status();
  StoredSession session = std::move(*loaded);
  const auto& r = session.record;

  if (r.state() == v1::COMPLETED) {
    if (r.complete_request_id() != request.request_id()) {
      return absl::FailedPreconditionError("name: screening is already completed");
    }
    // Same request again: the same result, and another try at a pending
    // hand-off.
    if (r.handoff() != v1::DELIVERED && session.result.has_value()) {
      session.record.set_handoff(
          HandOff(session, std::min(deadline, absl::Now() + config_.handoff_inline_budget)));
    }
    return CompletionResponse(session);
  }
  if (r.state() != v1::IN_PROGRESS) {
    return absl::FailedPreconditionError(absl::StrCat(
        "name: screening is ", v1::ScreeningState_Name(r.state()),
        "; it cannot be completed"));
  }
  if (session.version != target->expected_version) {
    return StaleEtag(request.etag(), session.version);
  }
  auto completed = Complete(request, *target, **catalog, std::move(session), /*from_cache=*/false, deadline);
  if (!completed.ok()) return completed.status();
  if (!completed->has_value()) return absl::InternalError("completion: nothing to start over from");
  return std::move(**completed);
}

absl::StatusOr<std::optional<v1::CompleteScreeningResponse>> IntakeCore::Complete(
    const v1::CompleteScreeningRequest& request, const WriteTarget& target, const Clinical& clinical,
    StoredSession session, bool from_cache, absl::Time deadline) {
  const ScreeningName& name = target.name;
  const auto& r = session.record;
  auto flow = ComputeFlow(*clinical.catalog, clinical.sets, r.answers());
  if (!flow.ok()) return flow.status();
  if (!flow->missing_required.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "required items not answered: ", absl::StrJoin(flow->missing_required, ", ")));
  }

  scoring::v1::ScoreAnswersRequest score_req;
  const absl::flat_hash_set<std::string> dropped(flow->inapplicable.begin(),
                                                 flow->inapplicable.end());
  for (const auto& info : clinical.catalog->instruments()) {
    for (const auto& item : info.items) {
      auto it = r.answers().find(item.def->id());
      if (it != r.answers().end() && !dropped.contains(it->first)) {
        *score_req.mutable_answers()->add_answers() = it->second;
      }
    }
  }
  for (const auto& id : flow->instruments) score_req.add_administered_instruments(id);
  auto scored = scoring_->Score(score_req, deadline);
  if (!scored.ok()) {
    // Nothing is committed: the answers stay, the person can retry.
    if (scored.status().code() == absl::StatusCode::kInvalidArgument) {
      return absl::InternalError(absl::StrCat("stored answers rejected by ",
                                              scoring_->Describe()));
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
  for (const auto& id : flow->instruments) record.add_instruments(id);

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
  auto outcome = store_->Write(name.screening_id, write, deadline);
  if (!outcome.ok()) return outcome.status();
  if (from_cache && (outcome->kind == Kind::kConflict || outcome->kind == Kind::kMissing)) {
    return std::optional<v1::CompleteScreeningResponse>();  // changed elsewhere: start over from Redis
  }
  if (outcome->kind == Kind::kConflict) {
    return StaleEtag(request.etag(), outcome->version);
  }
  if (outcome->kind == Kind::kMissing) {
    return absl::NotFoundError("name: no such screening (expired?)");
  }
  if (outcome->kind == Kind::kLatest || outcome->kind == Kind::kApplied) {
    // The same completion racing its own retry (which won), or a request id
    // already used for a page.
    auto now = store_->Get(name.screening_id, "", deadline);
    if (!now.ok()) return now.status();
    if (now->session.has_value() && now->session->record.state() == v1::COMPLETED &&
        now->session->record.complete_request_id() == request.request_id()) {
      return CompletionResponse(*now->session);
    }
    return absl::InvalidArgumentError("request_id: already used by another request to this screening");
  }
  if (outcome->kind != Kind::kWritten) {
    return absl::InternalError("unexpected outcome completing a screening");
  }
  session.record = std::move(write.record);
  session.result = std::move(write.result);
  session.version = outcome->version;
  log::Info("screening completed",
            {{"route", common::v1::Route_Name(
                           session.result->scoring().routing().primary_route())},
             {"ruleset", session.result->scoring().ruleset_version()}});
  // The hand-off's write also frees the open-session slot; without it, the
  // slot is freed on its own.
  const v1::HandoffState handoff =
      HandOff(session, std::min(deadline, absl::Now() + config_.handoff_inline_budget));
  if (handoff != v1::DELIVERED) (void)store_->ReleaseOpenSlot(name.user_id, name.screening_id, deadline);
  session.record.set_handoff(handoff);
  // The answers did not change at completion: the flow checked above gives
  // the progress.
  v1::Progress progress;
  progress.set_answered(flow->answered);
  progress.set_remaining(flow->remaining);
  return CompletionResponse(session, &progress);
}

v1::Trend TrendBetween(const storage::v1::ResultRecord& now,
                       const storage::v1::ResultRecord& before, const std::string& before_name) {
  v1::Trend trend;
  trend.set_previous(before_name);
  auto phq9 = [](const storage::v1::ResultRecord& r) -> std::optional<int> {
    for (const auto& s : r.scoring().scores()) {
      if (s.instrument_id() == "phq9" && s.completeness() == scoring::v1::COMPLETE) return s.total();
    }
    return std::nullopt;
  };
  const auto a = phq9(now), b = phq9(before);
  if (!a.has_value() || !b.has_value()) return trend;
  trend.set_phq9_change(*a - *b);
  trend.set_phq9_meaningful_change(std::abs(*a - *b) >= 5);
  trend.set_phq9_response(*b > 0 && *a * 2 <= *b);
  trend.set_phq9_remission(*a < 5);
  return trend;
}

absl::StatusOr<v1::Screening> IntakeCore::AbandonScreening(
    const v1::AbandonScreeningRequest& request, absl::Time deadline) {
  auto name = ParseScreeningName(request.name(), "name");
  if (!name.ok()) return name.status();
  std::string request_id = request.request_id();
  if (!request_id.empty()) {
    if (absl::Status s = ValidateRequestId(request_id, "request_id"); !s.ok()) return s;
  }
  cache_->Erase(name->screening_id);
  auto loaded = Load(request.name(), "name", deadline);
  if (!loaded.ok()) return loaded.status();
  StoredSession session = std::move(*loaded);
  if (session.record.state() == v1::COMPLETED) {
    return absl::FailedPreconditionError(
        "name: screening is completed; a completed result cannot be abandoned");
  }
  if (session.record.state() == v1::ABANDONED && !request.delete_answers()) {
    return ToScreening(session);  // already done: same answer again
  }
  session.record.set_state(v1::ABANDONED);
  session.record.set_update_time_ms(clock_->NowMillis());
  if (request.delete_answers()) {
    // The answers behind an early risk case stay: the clinician on the case
    // must see them (reference section 10); the rest go.
    google::protobuf::RepeatedPtrField<referral::v1::RiskAnswer> keep;
    if (session.record.early_risk_route() != common::v1::ROUTE_UNSPECIFIED) {
      if (auto clinical = catalog_->Get(); clinical != nullptr) {
        if (auto scored = clinical->engine->Score(AnswersSoFar(session.record, *clinical->catalog)); scored.ok()) {
          AddRiskAnswers(*scored, session.record, *clinical->catalog, &keep);
        }
      }
    }
    google::protobuf::Map<std::string, common::v1::Answer> kept;
    for (const auto& k : keep) {
      auto it = session.record.answers().find(k.item_id());
      if (it != session.record.answers().end()) kept[k.item_id()] = it->second;
    }
    *session.record.mutable_answers() = std::move(kept);
  }
  SessionStore::WriteRequest write;
  write.expected_version = session.version;
  write.record = session.record;
  write.request_id = request_id.empty() ? absl::StrCat("abandon-", session.version) : request_id;
  write.ttl = config_.session_ttl;  // an abandoned screening expires too
  auto outcome = store_->Write(name->screening_id, write, deadline);
  if (!outcome.ok()) return outcome.status();
  if (outcome->kind == Kind::kConflict) {
    return absl::AbortedError("name: the screening changed meanwhile; retry");
  }
  if (outcome->kind == Kind::kMissing) return absl::NotFoundError("name: no such screening");
  if (outcome->kind == Kind::kWritten) session.version = outcome->version;
  (void)store_->ReleaseOpenSlot(name->user_id, name->screening_id, deadline);
  log::Info("screening abandoned", {{"answers_deleted", request.delete_answers()}});
  return ToScreening(session);
}

absl::StatusOr<std::optional<StoredSession>> IntakeCore::PreviousResult(
    const StoredSession& session, absl::Time deadline) {
  std::string before_id = session.record.screening_id();
  int64_t before_ms = session.record.complete_time_ms();
  for (int round = 0; round < 10; ++round) {
    auto entries = store_->ListResults(session.record.user_id(), before_ms, before_id, 5, deadline);
    if (!entries.ok()) return entries.status();
    if (entries->empty()) return std::optional<StoredSession>();
    for (const auto& e : *entries) {
      before_id = e.screening_id;
      before_ms = e.time_ms;
      // Its own entry can sort before it: a completion that lost a race
      // re-indexes the screening at its own time, a few ms off.
      if (e.screening_id == session.record.screening_id()) continue;
      auto read = store_->Get(e.screening_id, "", deadline);
      if (!read.ok()) return read.status();
      if (read->session.has_value() && read->session->record.state() == v1::COMPLETED &&
          read->session->result.has_value()) {
        return std::optional<StoredSession>(std::move(*read->session));
      }
    }
  }
  return std::optional<StoredSession>();
}

namespace {

v1::ScreeningResult ResultOf(const StoredSession& s, const scoring::CatalogIndex* catalog) {
  v1::ScreeningResult out;
  out.set_name(ScreeningName{s.record.user_id(), s.record.screening_id()}.ToString());
  out.set_complete_time_ms(s.result->complete_time_ms());
  *out.mutable_scoring() = ForThePerson(s.result->scoring(), catalog);
  return out;
}

std::string EncodeResultsToken(int64_t ms, const std::string& id) {
  return absl::WebSafeBase64Escape(absl::StrCat(ms, "/", id));
}

}  // namespace

absl::StatusOr<v1::ListMyResultsResponse> IntakeCore::ListMyResults(
    const v1::ListMyResultsRequest& request, absl::Time deadline) {
  auto user = ParseUserName(request.parent(), "parent");
  if (!user.ok()) return user.status();
  if (request.page_size() < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  const int page_size = request.page_size() == 0
                            ? kDefaultResultsPageSize
                            : std::min(request.page_size(), kMaxResultsPageSize);
  int64_t before_ms = 0;
  std::string before_id;
  if (!request.page_token().empty()) {
    std::string raw;
    std::vector<std::string> parts;
    if (absl::WebSafeBase64Unescape(request.page_token(), &raw)) {
      parts = absl::StrSplit(raw, absl::MaxSplits('/', 1));
    }
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &before_ms) || parts[1].empty()) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    before_id = parts[1];
  }
  // Completed results in order, one more than the page so the last one on
  // the page gets its trend too.
  std::vector<StoredSession> found;
  std::vector<int64_t> found_at;  // each one's time in the index, which orders the pages
  bool exhausted = false;
  while (static_cast<int>(found.size()) <= page_size && !exhausted) {
    auto entries = store_->ListResults(*user, before_ms, before_id, page_size + 1, deadline);
    if (!entries.ok()) return entries.status();
    exhausted = static_cast<int>(entries->size()) < page_size + 1;
    for (const auto& e : *entries) {
      before_ms = e.time_ms;
      before_id = e.screening_id;
      auto read = store_->Get(e.screening_id, "", deadline);
      if (!read.ok()) return read.status();
      if (!read->session.has_value() || read->session->record.user_id() != *user ||
          read->session->record.state() != v1::COMPLETED || !read->session->result.has_value()) {
        continue;  // indexed before a completion that did not commit
      }
      found.push_back(std::move(*read->session));
      found_at.push_back(e.time_ms);
      if (static_cast<int>(found.size()) > page_size) break;
    }
  }
  v1::ListMyResultsResponse response;
  const auto clinical = catalog_->Get();  // held for the whole reply
  for (size_t i = 0; i < found.size() && static_cast<int>(i) < page_size; ++i) {
    v1::ScreeningResult* r = response.add_results();
    *r = ResultOf(found[i], clinical != nullptr ? clinical->catalog.get() : nullptr);
    if (i + 1 < found.size()) {
      const auto& prev = found[i + 1];
      *r->mutable_trend() = TrendBetween(*found[i].result, *prev.result,
                                         ScreeningName{prev.record.user_id(), prev.record.screening_id()}.ToString());
    }
  }
  if (static_cast<int>(found.size()) > page_size) {
    const auto& last = found[page_size - 1];
    // The index's time, not the record's: the two can differ by a few ms
    // after a completion race (SessionStore::WriteRequest::index_completion),
    // and the next page must start where this one ended in the index.
    response.set_next_page_token(EncodeResultsToken(found_at[page_size - 1], last.record.screening_id()));
  }
  return response;
}

absl::StatusOr<v1::ScreeningResult> IntakeCore::GetMyResult(const v1::GetMyResultRequest& request,
                                                            absl::Time deadline) {
  auto loaded = Load(request.name(), "name", deadline);
  if (!loaded.ok()) return loaded.status();
  if (loaded->record.state() != v1::COMPLETED || !loaded->result.has_value()) {
    return absl::NotFoundError("name: no completed result for this screening");
  }
  const auto clinical = catalog_->Get();
  v1::ScreeningResult out = ResultOf(*loaded, clinical != nullptr ? clinical->catalog.get() : nullptr);
  auto prev = PreviousResult(*loaded, deadline);
  if (!prev.ok()) return prev.status();
  if (prev->has_value()) {
    *out.mutable_trend() = TrendBetween(*loaded->result, *(*prev)->result,
                                        ScreeningName{(*prev)->record.user_id(), (*prev)->record.screening_id()}.ToString());
  }
  return out;
}

void IntakeCore::AddRiskAnswers(const scoring::v1::ScoringResult& result, const storage::v1::SessionRecord& record,
                                const scoring::CatalogIndex& catalog,
                                google::protobuf::RepeatedPtrField<referral::v1::RiskAnswer>* out) {
  // The inputs of the safety-flag rules that fired: an item ("phq9.9") is
  // that answer; an instrument's derived name ("asq.positive") is every
  // answer given to that instrument.
  absl::flat_hash_set<std::string> ids;
  std::vector<std::string> order;
  auto add = [&](const std::string& id) {
    if (record.answers().contains(id) && ids.insert(id).second) order.push_back(id);
  };
  for (const auto& rule : result.rules()) {
    if (!rule.fired() || !absl::StartsWith(rule.rule_id(), "flag.")) continue;
    for (const auto& in : rule.inputs()) {
      if (catalog.FindItem(in.name()) != nullptr) {
        add(in.name());
      } else if (const auto* ins = catalog.FindInstrument(in.name().substr(0, in.name().find('.')));
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

IntakeCore::RiskDelivery IntakeCore::DeliverEarlyRisk(const SessionStore::RiskEntry& entry, absl::Time deadline) {
  auto read = store_->Get(entry.screening_id, "", deadline);
  if (!read.ok()) return RiskDelivery::kRetry;
  if (!read->session.has_value() || store_->OwnerOf(read->session->record.user_id()) != entry.owner) {
    log::Error("early risk case not delivered: its screening is gone", {});
    return RiskDelivery::kNothingOwed;
  }
  const StoredSession& s = *read->session;
  const storage::v1::SessionRecord& r = s.record;
  // Nothing owed: the write that queued it did not commit, or the
  // completion's hand-off carries it (early_risk_raised).
  if (r.early_risk_route() < entry.route || r.state() == v1::COMPLETED) return RiskDelivery::kNothingOwed;
  auto clinical = catalog_->Get();
  if (clinical == nullptr) return RiskDelivery::kRetry;
  auto scored = clinical->engine->Score(AnswersSoFar(r, *clinical->catalog));
  if (!scored.ok()) {
    log::Error("early risk case: stored answers do not score", {{"code", static_cast<int>(scored.status().code())}});
    return RiskDelivery::kRetry;
  }
  referral::v1::CreateReferralRequest req;
  req.set_request_id(absl::StrCat("risk-", r.screening_id(), "-", static_cast<int>(entry.route)));
  req.set_screening(ScreeningName{r.user_id(), r.screening_id()}.ToString());
  req.set_location_state(LocationStateOf(r));
  req.set_unfinished(true);
  AddRiskAnswers(*scored, r, *clinical->catalog, req.mutable_risk_answers());
  *req.mutable_result() = std::move(*scored);
  // The case's route is the most severe raised so far, even if an answer
  // was changed since: an early risk case is never lowered.
  scoring::v1::RoutingDecision* routing = req.mutable_result()->mutable_routing();
  if (routing->primary_route() < r.early_risk_route()) {
    routing->set_primary_route(r.early_risk_route());
    routing->set_required_reviewer(common::v1::CLINICIAN);
  }
  auto created = referral_->CreateReferral(req, deadline);
  if (!created.ok()) {
    log::Warn("early risk case pending",
              {{"code", static_cast<int>(created.status().code())}, {"peer", referral_->Describe()}});
    // Owed still: the session must outlive the wait.
    (void)store_->KeepSession(r.screening_id(), true, config_.session_ttl, deadline);
    return RiskDelivery::kRetry;
  }
  log::Info("early risk case delivered", {{"route", common::v1::Route_Name(entry.route)}});
  (void)store_->KeepSession(r.screening_id(), false, config_.session_ttl, deadline);
  return RiskDelivery::kDelivered;
}

absl::StatusOr<int> IntakeCore::DeliverPendingHandoffs(int limit, absl::Time deadline) {
  const int64_t now = clock_->NowMillis();
  // Early risk cases first: they are what a clinician must see soonest.
  auto risks = store_->ClaimDueRiskEntries(now, now + absl::ToInt64Milliseconds(config_.handoff_retry), limit,
                                           deadline);
  if (!risks.ok()) return risks.status();
  int delivered = 0;
  for (const auto& entry : *risks) {
    const RiskDelivery outcome = DeliverEarlyRisk(entry, deadline);
    if (outcome == RiskDelivery::kRetry) continue;  // claimed until its retry time
    (void)store_->RemoveRiskEntry(entry.member, deadline);
    if (outcome == RiskDelivery::kDelivered) ++delivered;
  }
  auto due = store_->ClaimDueHandoffs(now, now + absl::ToInt64Milliseconds(config_.handoff_retry),
                                      limit, deadline);
  if (!due.ok()) return due.status();
  for (const auto& entry : *due) {
    auto read = store_->Get(entry.screening_id, "", deadline);
    if (!read.ok()) return read.status();
    if (!read->session.has_value() || store_->OwnerOf(read->session->record.user_id()) != entry.owner ||
        read->session->record.state() == v1::ABANDONED) {
      (void)store_->RemoveHandoff(entry.owner, entry.screening_id, deadline);
      continue;
    }
    StoredSession& session = *read->session;
    if (session.record.state() != v1::COMPLETED) continue;  // completion may still commit
    if (session.record.handoff() == v1::DELIVERED || !session.result.has_value()) {
      (void)store_->RemoveHandoff(entry.owner, entry.screening_id, deadline);
      continue;
    }
    if (HandOff(session, deadline) == v1::DELIVERED) ++delivered;
  }
  if (delivered > 0) log::Info("outbox: hand-offs delivered", {{"count", delivered}});
  return delivered;
}

}  // namespace aqueduct::intake
