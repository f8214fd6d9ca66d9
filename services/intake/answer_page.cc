// Answering a page: what to ask next (GetNextItems) and SubmitAnswers, on
// the callback path when the session is cached and on the pool otherwise.

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
#include "common/status/status_util.h"
#include "common/util/names.h"
#include "services/intake/intake_core.h"

namespace aqueduct::intake {
namespace {

using Kind = SessionStore::WriteOutcome::Kind;

}  // namespace

absl::StatusOr<v1::NextItems> IntakeCore::NextItemsOf(
    const StoredSession& s, const Clinical& clinical) const {
  ASSIGN_OR_RETURN(auto flow, ComputeFlow(*clinical.catalog, clinical.sets,
                                          s.record.answers()));
  return NextItemsFrom(s, clinical, flow);
}

v1::NextItems IntakeCore::NextItemsFrom(const StoredSession& s,
                                        const Clinical& clinical,
                                        const Flow& flow, RiskNow* risk) const {
  v1::NextItems next;
  next.set_name(
      ScreeningName{s.record.user_id(), s.record.screening_id()}.ToString());
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
  const bool risk_raised =
      s.record.early_risk_route() != common::v1::ROUTE_UNSPECIFIED;
  if (s.record.state() == v1::IN_PROGRESS && !s.record.answers().empty()) {
    const scoring::v1::ScoreAnswersRequest partial =
        AnswersSoFar(s.record, *clinical.catalog);
    // The digest says whether any flag is raised without building
    // explanations; only then is the full result (with the resources) made.
    scoring::v1::ResultDigest digest;
    bool crisis = false;
    if (clinical.engine->DigestInto(partial, &digest, &crisis).ok() &&
        (crisis || digest.safety_flags_size() > 0 || risk_raised)) {
      if (risk != nullptr) {
        risk->crisis_resources = crisis || digest.safety_flags_size() > 0;
        for (int kind : digest.safety_flags()) {
          const auto route = kind == scoring::v1::ASQ_ACUTE_POSITIVE
                                 ? common::v1::CRISIS_ACUTE
                                 : common::v1::CRISIS_URGENT;
          if (route > risk->route) risk->route = route;
        }
      }
      auto scored = clinical.engine->Score(partial);
      if (scored.ok() && scored->has_crisis_resources()) {
        *next.mutable_crisis_resources() = scored->crisis_resources();
      } else if (risk_raised) {
        *next.mutable_crisis_resources() =
            clinical.engine->newest().ruleset().crisis_resources();
      }
    }
  }
  next.set_ready_to_complete(s.record.state() == v1::IN_PROGRESS &&
                             flow.missing_required.empty());
  return next;
}

absl::StatusOr<v1::NextItems> IntakeCore::GetNextItems(
    const v1::GetNextItemsRequest& request, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto catalog, Catalog());
  ASSIGN_OR_RETURN(auto session, Load(request.name(), "name", deadline));
  if (session.record.state() != v1::IN_PROGRESS) {
    return absl::FailedPreconditionError(absl::StrCat(
        "name: screening is ", v1::ScreeningState_Name(session.record.state()),
        "; there are no items to ask"));
  }
  return NextItemsOf(session, *catalog);
}

// The reply to a retry of a page applied already: the screening as it is
// now and what to ask next, built exactly as the first reply was (for a
// retry of the latest write, the same bytes).
absl::StatusOr<v1::SubmitAnswersResponse> IntakeCore::AppliedReply(
    const StoredSession& session, const Clinical& catalog) const {
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

absl::StatusOr<v1::SubmitAnswersResponse> IntakeCore::SubmitChecked(
    const v1::SubmitAnswersRequest& request, const ScreeningName& name,
    int64_t expected, const Clinical& clinical, absl::Time deadline) {
  // The session this replica wrote last, when the etag names it: no read
  // from Redis (TakeCached's rule). (One difference from a read: a page with
  // a bad answer is refused against the version its etag names even if
  // Redis has moved on, INVALID_ARGUMENT where a read would have said
  // ABORTED; nothing is stored either way.)
  if (std::optional<StoredSession> cached = TakeCached(name, expected);
      cached.has_value()) {
    ASSIGN_OR_RETURN(auto applied, ApplyAnswers(request, name, expected,
                                                clinical, std::move(*cached),
                                                /*from_cache=*/true, deadline));
    if (applied.has_value()) return std::move(*applied);
  }

  ASSIGN_OR_RETURN(auto read, store_->Get(name.screening_id,
                                          request.request_id(), deadline));
  if (!read.session.has_value() ||
      read.session->record.user_id() != name.user_id) {
    return absl::NotFoundError("name: no such screening");
  }
  // A retry of a page already applied changes nothing. Of the latest write
  // the session is exactly as it left it, so the rebuilt reply is the one
  // sent the first time, byte for byte; of an earlier one, it is the
  // screening as it is now.
  if (read.applied != SessionStore::Applied::kNo)
    return AppliedReply(*read.session, clinical);
  StoredSession session = std::move(*read.session);
  if (session.record.state() != v1::IN_PROGRESS) {
    return absl::FailedPreconditionError(absl::StrCat(
        "name: screening is ", v1::ScreeningState_Name(session.record.state()),
        "; answers can no longer change"));
  }
  if (session.version != expected) {
    return StaleEtag(request.etag(), session.version);
  }
  ASSIGN_OR_RETURN(auto applied, ApplyAnswers(request, name, expected, clinical,
                                              std::move(session),
                                              /*from_cache=*/false, deadline));
  return std::move(*applied);  // set whenever the session was read
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

void IntakeCore::SubmitAnswersAsync(
    std::shared_ptr<const v1::SubmitAnswersRequest> request,
    absl::Time deadline, server::WorkerPool* pool, SubmitDone done) {
  auto target =
      ParseWrite(request->name(), request->request_id(), request->etag());
  if (!target.ok()) return std::move(done)(target.status());
  if (request->answers().empty()) {
    return std::move(done)(
        absl::InvalidArgumentError("answers: at least one answer is required"));
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
  store_->CountInWindowAsync(
      user, "submit", w.index, w.ttl, deadline,
      [this, call = std::move(call), limit, window,
       now_ms](absl::StatusOr<int64_t> count) mutable {
        absl::Status verdict =
            RateVerdict(std::move(count), "submit", limit, window, now_ms);
        if (!verdict.ok()) return std::move(call->done)(std::move(verdict));
        SubmitFromCacheAsync(std::move(call));
      });
}

// SubmitChecked's cached branch, its write not blocking. Anything else
// goes to the pool.
void IntakeCore::SubmitFromCacheAsync(std::shared_ptr<AsyncSubmit> call) {
  const ScreeningName& name = call->name;
  std::optional<StoredSession> cached = TakeCached(name, call->expected);
  if (!cached.has_value()) {
    return SubmitOnPool(std::move(call));  // read from Redis: blocking
  }
  auto prepared = PreparePage(*call->request, call->expected, *call->clinical,
                              std::move(*cached));
  if (!prepared.ok()) return std::move(call->done)(prepared.status());
  auto page = std::make_shared<PreparedPage>(std::move(*prepared));
  const std::string id = name.screening_id;
  const absl::Time deadline =
      call->deadline;  // read before `call` moves into the callback
  store_->WriteAsync(
      id, page->write, deadline,
      [this, call = std::move(call),
       page](absl::StatusOr<SessionStore::WriteOutcome> outcome) mutable {
        if (!outcome.ok()) return std::move(call->done)(outcome.status());
        if (outcome->kind == Kind::kWritten) {
          PageStored(*page);
          // The next page of this session, on this replica, need not read it.
          cache_->Put(call->name.screening_id,
                      StoredSession{std::move(page->write.record),
                                    call->expected + 1, std::nullopt});
          return std::move(call->done)(std::move(page->response));
        }
        if (outcome->kind == Kind::kExists) {
          return std::move(call->done)(
              absl::InternalError("unexpected outcome storing answers"));
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
    std::move(call->done)(SubmitChecked(*call->request, call->name,
                                        call->expected, *call->clinical,
                                        call->deadline));
  };
  if (!pool->Schedule(std::move(work))) {
    std::move(call->done)(WithRetryDelay(
        absl::UnavailableError(
            "intake is overloaded: too many answers waiting; retry shortly"),
        absl::Seconds(1)));
  }
}

absl::StatusOr<IntakeCore::PreparedPage> IntakeCore::PreparePage(
    const v1::SubmitAnswersRequest& request, int64_t expected,
    const Clinical& clinical, StoredSession session) const {
  PreparedPage page;
  v1::SubmitAnswersResponse& response = page.response;
  // Validate the whole page before changing anything: a bad answer stores
  // nothing of the page.
  const scoring::CatalogIndex& catalog = *clinical.catalog;
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < request.answers_size(); ++i) {
    const auto& a = request.answers(i);
    const std::string field = absl::StrCat("answers[", i, "]");
    RETURN_IF_ERROR(catalog.ValidateAnswer(a, field));
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
        return absl::InvalidArgumentError(
            absl::StrCat("answers[", i, "].item_id: \"", id,
                         "\" does not apply to this screening",
                         note.empty() ? "" : absl::StrCat(" (", note, ")")));
      }
    }
    erased_moot =
        session.record.mutable_answers()->erase(id) > 0 || erased_moot;
  }
  // Only items this screening's flow offers may be answered (e.g. no ASQ
  // while item 9 is 0, no ketamine module for a PHQ-9 below 10).
  const absl::flat_hash_set<std::string> offered(flow->instruments.begin(),
                                                 flow->instruments.end());
  for (int i = 0; i < request.answers_size(); ++i) {
    const std::string& id = request.answers(i).item_id();
    if (!offered.contains(catalog.InstrumentOfItem(id)->id())) {
      return absl::InvalidArgumentError(
          absl::StrCat("answers[", i, "].item_id: \"", id,
                       "\" is not offered in this screening"));
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
      *next.mutable_crisis_resources() =
          clinical.engine->newest().ruleset().crisis_resources();
    }
  }
  *response.mutable_screening() = ToScreening(session, &next.progress());
  *response.mutable_next() = std::move(next);

  write.expected_version = expected;
  write.request_id = request.request_id();
  // Until the early risk case is delivered the session does not expire:
  // idle expiry must not take the answers the case is made from. The worker
  // sets the expiry once referral has the case (SessionStore::KeepSession).
  write.ttl = write.queue_early_risk.has_value() ? absl::ZeroDuration()
                                                 : config_.session_ttl;
  // Activity keeps the open-session slot alive as long as the session.
  write.touch_open_slot_until_ms =
      session.record.update_time_ms() +
      absl::ToInt64Milliseconds(config_.session_ttl);
  write.record = std::move(session.record);  // the session is not used below
  return page;
}

absl::StatusOr<std::optional<v1::SubmitAnswersResponse>>
IntakeCore::ApplyAnswers(const v1::SubmitAnswersRequest& request,
                         const ScreeningName& name, int64_t expected,
                         const Clinical& clinical, StoredSession session,
                         bool from_cache, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto prepared, PreparePage(request, expected, clinical,
                                              std::move(session)));
  v1::SubmitAnswersResponse& response = prepared.response;
  SessionStore::WriteRequest& write = prepared.write;
  ASSIGN_OR_RETURN(auto outcome,
                   store_->Write(name.screening_id, write, deadline));
  if (from_cache &&
      (outcome.kind == Kind::kConflict || outcome.kind == Kind::kMissing)) {
    return std::optional<v1::SubmitAnswersResponse>();  // changed elsewhere:
                                                        // start over from Redis
  }
  switch (outcome.kind) {
    case Kind::kWritten:
      PageStored(prepared);
      // The next page of this session, on this replica, need not read it.
      cache_->Put(name.screening_id, StoredSession{std::move(write.record),
                                                   expected + 1, std::nullopt});
      return std::move(response);
    case Kind::kLatest:
    case Kind::kApplied: {  // a concurrent retry got there first
      ASSIGN_OR_RETURN(auto now, store_->Get(name.screening_id, "", deadline));
      if (!now.session.has_value())
        return absl::NotFoundError("name: no such screening (expired?)");
      return AppliedReply(*now.session, clinical);
    }
    case Kind::kConflict:
      return StaleEtag(request.etag(), outcome.version);
    case Kind::kMissing:
      return absl::NotFoundError("name: no such screening (expired?)");
    default:
      return absl::InternalError("unexpected outcome storing answers");
  }
}

}  // namespace aqueduct::intake
