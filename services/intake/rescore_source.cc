#include "services/intake/rescore_source.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status/status_macros.h"
#include "common/util/ids.h"
#include "common/util/names.h"
#include "services/intake/intake_core.h"

namespace aqueduct::intake {
namespace {

// A page token is the index position after the page: "<time_ms>:<member>".
// Callers treat it as opaque.
std::string PageToken(int64_t time_ms, const std::string& member) {
  return absl::StrCat(time_ms, ":", member);
}

absl::Status ParsePageToken(const std::string& token, int64_t* time_ms,
                            std::string* member) {
  if (token.empty()) {
    *time_ms = 0;
    member->clear();
    return absl::OkStatus();
  }
  std::pair<std::string, std::string> parts =
      absl::StrSplit(token, absl::MaxSplits(':', 1));
  if (!absl::SimpleAtoi(parts.first, time_ms) || parts.second.empty()) {
    return absl::InvalidArgumentError(
        "page_token: not a next_page_token of ListCompletedScreenings");
  }
  *member = std::move(parts.second);
  return absl::OkStatus();
}

absl::Status CheckRange(int64_t from_ms, int64_t to_ms) {
  if (from_ms < 0 || to_ms < from_ms) {
    return absl::InvalidArgumentError(
        "from_time_ms, to_time_ms: need 0 <= from_time_ms <= to_time_ms");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::RescoreJob> RescoreSource::GetJob(
    const v1::GetRescoreJobRequest& request, absl::Time deadline) {
  RETURN_IF_ERROR(ValidateIdSegment(request.job(), "job"));
  RETURN_IF_ERROR(CheckRange(request.from_time_ms(), request.to_time_ms()));
  v1::RescoreJob job;
  ASSIGN_OR_RETURN(auto checkpoint,
                   store_->GetCheckpoint(request.job(), deadline));
  if (checkpoint.has_value())
    *job.mutable_checkpoint() = *std::move(checkpoint);
  ASSIGN_OR_RETURN(const int64_t completed,
                   store_->CountCompleted(request.from_time_ms(),
                                          request.to_time_ms(), deadline));
  job.set_completed_in_range(completed);
  return job;
}

absl::StatusOr<v1::RescoreJob> RescoreSource::SaveCheckpoint(
    const v1::SaveRescoreCheckpointRequest& request, absl::Time deadline) {
  RETURN_IF_ERROR(ValidateIdSegment(request.job(), "job"));
  if (request.checkpoint().ruleset_version().empty()) {
    return absl::InvalidArgumentError(
        "checkpoint.ruleset_version: is required");
  }
  RETURN_IF_ERROR(
      store_->PutCheckpoint(request.job(), request.checkpoint(), deadline));
  v1::RescoreJob job;
  *job.mutable_checkpoint() = request.checkpoint();
  return job;
}

absl::Status RescoreSource::ListCompleted(
    const v1::ListCompletedScreeningsRequest& request, absl::Time deadline,
    v1::ListCompletedScreeningsResponse* response) {
  RETURN_IF_ERROR(CheckRange(request.from_time_ms(), request.to_time_ms()));
  if (request.page_size() < 1 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be 1..", kMaxPageSize));
  }
  if (request.ruleset_version().empty())
    return absl::InvalidArgumentError("ruleset_version: is required");
  int64_t after_ms = 0;
  std::string after_member;
  RETURN_IF_ERROR(
      ParsePageToken(request.page_token(), &after_ms, &after_member));
  ASSIGN_OR_RETURN(std::vector<SessionStore::CompletedEntry> entries,
                   store_->ScanCompleted(
                       request.from_time_ms(), request.to_time_ms(), after_ms,
                       after_member, request.page_size(), deadline));
  response->Clear();
  if (entries.empty()) return absl::OkStatus();
  std::vector<std::string> ids;
  ids.reserve(entries.size());
  for (const auto& e : entries) ids.push_back(e.screening_id);
  ASSIGN_OR_RETURN(
      std::vector<SessionStore::ForRescore> stored,
      store_->ReadForRescore(ids, request.ruleset_version(), deadline));
  response->mutable_screenings()->Reserve(static_cast<int>(entries.size()));
  for (size_t i = 0; i < entries.size(); ++i) {
    v1::CompletedScreening* out = response->add_screenings();
    out->set_screening_id(std::move(ids[i]));
    SessionStore::ForRescore& fr = stored[i];
    if (!fr.completed) continue;
    out->set_completed(true);
    out->set_packed_request(std::move(fr.packed_request));
    *out->mutable_before() = std::move(fr.before);
    if (fr.outcome.has_value())
      *out->mutable_outcome() = *std::move(fr.outcome);
  }
  // A short page is the last one.
  if (static_cast<int>(entries.size()) == request.page_size()) {
    response->set_next_page_token(
        PageToken(entries.back().time_ms, entries.back().member));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::StoreRescoreOutcomesResponse> RescoreSource::StoreOutcomes(
    const v1::StoreRescoreOutcomesRequest& request, absl::Time deadline) {
  if (request.ruleset_version().empty())
    return absl::InvalidArgumentError("ruleset_version: is required");
  if (request.outcomes_size() > kMaxPerCall) {
    return absl::InvalidArgumentError(
        absl::StrCat("outcomes: at most ", kMaxPerCall, " a call"));
  }
  std::vector<std::pair<std::string, const storage::v1::RescoreOutcome*>>
      outcomes;
  outcomes.reserve(request.outcomes_size());
  for (int i = 0; i < request.outcomes_size(); ++i) {
    const v1::ScreeningOutcome& o = request.outcomes(i);
    RETURN_IF_ERROR(ValidateIdSegment(
        o.screening_id(), absl::StrCat("outcomes[", i, "].screening_id")));
    outcomes.emplace_back(o.screening_id(), &o.outcome());
  }
  if (!outcomes.empty()) {
    RETURN_IF_ERROR(
        store_->PutOutcomes(outcomes, request.ruleset_version(), deadline));
  }
  return v1::StoreRescoreOutcomesResponse();
}

absl::StatusOr<v1::GetReviewContextsResponse> RescoreSource::GetReviewContexts(
    const v1::GetReviewContextsRequest& request, absl::Time deadline) {
  if (request.screening_ids_size() > kMaxPerCall) {
    return absl::InvalidArgumentError(
        absl::StrCat("screening_ids: at most ", kMaxPerCall, " a call"));
  }
  std::vector<std::string> ids;
  for (int i = 0; i < request.screening_ids_size(); ++i) {
    RETURN_IF_ERROR(ValidateIdSegment(request.screening_ids(i),
                                      absl::StrCat("screening_ids[", i, "]")));
    ids.push_back(request.screening_ids(i));
  }
  v1::GetReviewContextsResponse response;
  if (ids.empty()) return response;
  ASSIGN_OR_RETURN(auto sessions, store_->GetManyWithoutAnswers(ids, deadline));
  for (size_t i = 0; i < ids.size(); ++i) {
    v1::ReviewContext* out = response.add_contexts();
    out->set_screening_id(ids[i]);
    auto& session = sessions[i];
    if (!session.has_value() || !session->result.has_value()) continue;
    out->set_found(true);
    out->set_screening(
        ScreeningName{session->record.user_id(), ids[i]}.ToString());
    out->mutable_result()->Swap(session->result->mutable_scoring());
    out->set_location_state(LocationStateOf(session->record));
  }
  return response;
}

}  // namespace aqueduct::intake
