#include "services/intake/intake_core.h"

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
#include "services/intake/intake_metrics.h"

namespace aqueduct::intake {
namespace {

using Kind = SessionStore::WriteOutcome::Kind;

}  // namespace

absl::Status StaleEtag(const std::string& given, int64_t current) {
  return WithErrorInfo(
      absl::AbortedError(absl::StrCat(
          "etag: the screening changed since etag \"", given,
          "\" (current etag \"", current, "\"); fetch it and resubmit")),
      "ETAG_MISMATCH", {{"etag", absl::StrCat(current)}});
}
absl::Status PrefillContext(const v1::ScreeningContext& context,
                            const scoring::CatalogIndex& catalog,
                            storage::v1::SessionRecord& record) {
  auto choose = [&](const std::string& item_id, const std::string& code,
                    const std::string& field) -> absl::Status {
    const scoring::v1::Item* item = catalog.FindItem(item_id);
    if (item == nullptr)
      return absl::OkStatus();  // the catalog does not ask it
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
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", code, "\" is not one of the allowed values"));
    }
    (*record.mutable_answers())[item_id] = a;
    return absl::OkStatus();
  };
  if (!context.role().empty()) {
    if (auto s = choose("ctx.role", context.role(), "context.role"); !s.ok())
      return s;
  }
  if (context.has_works()) {
    if (auto s = choose("ctx.works", context.works() ? "yes" : "no",
                        "context.works");
        !s.ok())
      return s;
  }
  if (context.has_works_with_clients()) {
    if (context.has_works() && !context.works()) {
      return absl::InvalidArgumentError(
          "context.works_with_clients: given, but context.works says the "
          "person does not work");
    }
    if (auto s = choose("ctx.works_with_clients",
                        context.works_with_clients() ? "yes" : "no",
                        "context.works_with_clients");
        !s.ok()) {
      return s;
    }
  }
  if (!context.location_state().empty()) {
    if (auto s = choose("ctx.state", context.location_state(),
                        "context.location_state");
        !s.ok()) {
      return s;
    }
  }
  if (context.has_age()) {
    if (const scoring::v1::Item* item = catalog.FindItem("ctx.age");
        item != nullptr) {
      common::v1::Answer a;
      a.set_item_id("ctx.age");
      a.set_integer_value(context.age());
      if (!scoring::CatalogIndex::ValueFits(*item, a)) {
        return absl::InvalidArgumentError(
            absl::StrCat("context.age: ", context.age(), " is outside ",
                         item->min_value(), "..", item->max_value()));
      }
      (*record.mutable_answers())["ctx.age"] = a;
    }
  }
  if (!context.sex().empty()) {
    if (auto s = choose("ctx.sex", context.sex(), "context.sex"); !s.ok())
      return s;
  }
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

absl::StatusOr<WriteTarget> ParseWrite(const std::string& name,
                                       const std::string& request_id,
                                       const std::string& etag) {
  ASSIGN_OR_RETURN(auto parsed, ParseScreeningName(name, "name"));
  RETURN_IF_ERROR(ValidateRequestId(request_id, "request_id"));
  ASSIGN_OR_RETURN(auto version, ParseEtag(etag));
  return WriteTarget{std::move(parsed), version};
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
  ASSIGN_OR_RETURN(auto parsed, ParseScreeningName(name, field));
  ASSIGN_OR_RETURN(auto read, store_->Get(parsed.screening_id, "", deadline));
  if (!read.session.has_value() ||
      read.session->record.user_id() != parsed.user_id) {
    return absl::NotFoundError(absl::StrCat(field, ": no such screening"));
  }
  return std::move(*read.session);
}

v1::Screening IntakeCore::ToScreening(const StoredSession& s,
                                      const v1::Progress* progress) const {
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
    if (auto flow =
            ComputeFlow(*clinical->catalog, clinical->sets, s.record.answers());
        flow.ok()) {
      out.mutable_progress()->set_answered(flow->answered);
      out.mutable_progress()->set_remaining(flow->remaining);
    }
  }
  return out;
}
absl::Status IntakeCore::RateLimit(const std::string& user, const char* what,
                                   int limit, absl::Duration window,
                                   absl::Time deadline) {
  if (limit <= 0) return absl::OkStatus();
  const int64_t now_ms = clock_->NowMillis();
  const RateWindow w = RateWindowAt(window, now_ms);
  return RateVerdict(
      store_->CountInWindow(user, what, w.index, w.ttl, deadline), what, limit,
      window, now_ms);
}

absl::Status IntakeCore::RateVerdict(absl::StatusOr<int64_t> count,
                                     const char* what, int limit,
                                     absl::Duration window,
                                     int64_t now_ms) const {
  if (!count.ok()) return count.status();
  if (*count <= limit) return absl::OkStatus();
  const int64_t window_ms = absl::ToInt64Milliseconds(window);
  const int64_t wait_s = (window_ms - now_ms % window_ms + 999) / 1000;
  return WithRetryDelay(
      absl::ResourceExhaustedError(absl::StrCat(
          "too many ", what, " requests (at most ", limit, " per ",
          absl::FormatDuration(window), "); try again in ", wait_s, " s")),
      absl::Seconds(wait_s));
}

absl::StatusOr<v1::Screening> IntakeCore::StartScreening(
    const v1::StartScreeningRequest& request, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto user, ParseUserName(request.parent(), "parent"));
  if (request.consent_version().empty()) {
    return absl::InvalidArgumentError("consent_version: is required");
  }
  if (request.consent_version().size() > 64) {
    return absl::InvalidArgumentError(
        "consent_version: longer than 64 characters");
  }
  if (request.locale().size() > 35) {
    return absl::InvalidArgumentError("locale: longer than 35 characters");
  }
  const auto& state = request.context().location_state();
  if (!state.empty()) {
    RETURN_IF_ERROR(ValidateStateCode(state, "context.location_state"));
  }
  std::string request_id = request.request_id();
  if (!request_id.empty()) {
    RETURN_IF_ERROR(ValidateRequestId(request_id, "request_id"));
  }
  ASSIGN_OR_RETURN(auto catalog, Catalog());
  RETURN_IF_ERROR(RateLimit(user, "start", config_.start_limit_per_hour,
                            absl::Hours(1), deadline));

  std::string screening_id = NewId();
  if (!request_id.empty()) {
    ASSIGN_OR_RETURN(auto bound, store_->ClaimStartRequest(
                                     user, request_id, screening_id, deadline));
    screening_id = bound;
    // A retried start finds the session made by the first attempt.
    ASSIGN_OR_RETURN(auto existing, store_->Get(screening_id, "", deadline));
    if (existing.session.has_value()) {
      if (existing.session->record.user_id() != user) {
        return absl::InternalError(
            "start request bound to another user's screening");
      }
      return StartedReply(*existing.session, *catalog);
    }
  } else {
    request_id =
        absl::StrCat("start-", screening_id);  // a fresh id: nothing to find
  }

  const int64_t now = clock_->NowMillis();
  StoredSession session;
  auto& r = session.record;
  r.set_screening_id(screening_id);
  r.set_user_id(user);
  r.set_state(v1::IN_PROGRESS);
  r.set_consent_version(request.consent_version());
  r.set_locale(request.locale().empty() ? "en-US" : request.locale());
  r.set_catalog_version(catalog->catalog->catalog().version());
  *r.mutable_context() = request.context();
  r.set_create_time_ms(now);
  r.set_update_time_ms(now);
  RETURN_IF_ERROR(PrefillContext(request.context(), *catalog->catalog, r));

  ASSIGN_OR_RETURN(auto reserved,
                   store_->ReserveOpenSlot(
                       user, screening_id,
                       now + absl::ToInt64Milliseconds(config_.session_ttl),
                       config_.max_open_sessions, now, deadline));
  if (!reserved) {
    // Waiting does not help: no RetryInfo; the reason says what does.
    return WithErrorInfo(
        absl::ResourceExhaustedError(absl::StrCat(
            "parent: already ", config_.max_open_sessions,
            " open screenings; complete or abandon one before starting "
            "another")),
        "TOO_MANY_OPEN_SCREENINGS",
        {{"max_open_screenings", absl::StrCat(config_.max_open_sessions)}});
  }
  SessionStore::WriteRequest write;
  write.expected_version = 0;
  write.record = r;
  write.request_id = request_id;
  write.ttl = config_.session_ttl;
  ASSIGN_OR_RETURN(auto outcome, store_->Write(screening_id, write, deadline));
  if (outcome.kind == Kind::kExists ||
      outcome.kind == Kind::kLatest) {  // a concurrent retry won the race
    ASSIGN_OR_RETURN(auto again, store_->Get(screening_id, "", deadline));
    if (!again.session.has_value())
      return absl::AbortedError("start raced; retry");
    return StartedReply(*again.session, *catalog);
  }
  if (outcome.kind != Kind::kWritten) {
    return absl::InternalError("unexpected outcome creating a screening");
  }
  session.version = outcome.version;
  log::Info("screening started", {{"catalog_version", r.catalog_version()}});
  metrics::ScreeningStarted();
  ASSIGN_OR_RETURN(v1::Screening started, StartedReply(session, *catalog));
  cache_->Put(screening_id,
              std::move(session));  // the first page need not read it back
  return started;
}

absl::StatusOr<v1::Screening> IntakeCore::StartedReply(
    const StoredSession& session, const Clinical& clinical) const {
  if (session.record.state() != v1::IN_PROGRESS) return ToScreening(session);
  ASSIGN_OR_RETURN(v1::NextItems next, NextItemsOf(session, clinical));
  v1::Screening started = ToScreening(session, &next.progress());
  *started.mutable_next() = std::move(next);
  return started;
}

absl::StatusOr<v1::Screening> IntakeCore::GetScreening(
    const v1::GetScreeningRequest& request, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto session, Load(request.name(), "name", deadline));
  return ToScreening(session);
}
absl::StatusOr<v1::Screening> IntakeCore::AbandonScreening(
    const v1::AbandonScreeningRequest& request, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto name, ParseScreeningName(request.name(), "name"));
  std::string request_id = request.request_id();
  if (!request_id.empty()) {
    RETURN_IF_ERROR(ValidateRequestId(request_id, "request_id"));
  }
  cache_->Erase(name.screening_id);
  ASSIGN_OR_RETURN(auto loaded, Load(request.name(), "name", deadline));
  StoredSession session = std::move(loaded);
  if (session.record.state() == v1::COMPLETED) {
    return absl::FailedPreconditionError(
        "name: screening is completed; a completed result cannot be abandoned");
  }
  if (session.record.state() == v1::ABANDONED && !request.delete_answers()) {
    return ToScreening(session);  // already done: same answer again
  }
  const bool newly_abandoned = session.record.state() != v1::ABANDONED;
  session.record.set_state(v1::ABANDONED);
  session.record.set_update_time_ms(clock_->NowMillis());
  if (request.delete_answers()) {
    // The answers behind an early risk case stay: the clinician on the case
    // must see them (reference section 10); the rest go.
    google::protobuf::RepeatedPtrField<referral::v1::RiskAnswer> keep;
    if (session.record.early_risk_route() != common::v1::ROUTE_UNSPECIFIED) {
      if (auto clinical = catalog_->Get(); clinical != nullptr) {
        if (auto scored = clinical->engine->Score(
                AnswersSoFar(session.record, *clinical->catalog));
            scored.ok()) {
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
  write.request_id = request_id.empty()
                         ? absl::StrCat("abandon-", session.version)
                         : request_id;
  write.ttl = config_.session_ttl;  // an abandoned screening expires too
  ASSIGN_OR_RETURN(auto outcome,
                   store_->Write(name.screening_id, write, deadline));
  if (outcome.kind == Kind::kConflict) {
    return absl::AbortedError("name: the screening changed meanwhile; retry");
  }
  if (outcome.kind == Kind::kMissing)
    return absl::NotFoundError("name: no such screening");
  if (outcome.kind == Kind::kWritten) session.version = outcome.version;
  (void)store_->ReleaseOpenSlot(name.user_id, name.screening_id, deadline);
  log::Info("screening abandoned",
            {{"answers_deleted", request.delete_answers()}});
  if (newly_abandoned && outcome.kind == Kind::kWritten)
    metrics::ScreeningAbandoned(session.record.early_risk_route());
  return ToScreening(session);
}

std::optional<StoredSession> IntakeCore::TakeCached(const ScreeningName& name,
                                                    int64_t expected) {
  std::optional<StoredSession> cached =
      cache_->Take(name.screening_id, expected);
  if (!cached.has_value() || cached->record.user_id() != name.user_id ||
      cached->record.state() != v1::IN_PROGRESS) {
    return std::nullopt;
  }
  return cached;
}

}  // namespace aqueduct::intake
