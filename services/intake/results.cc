// The person's results: history newest first with trends, one result.

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
#include "services/intake/person_view.h"

namespace aqueduct::intake {

v1::Trend TrendBetween(const storage::v1::ResultRecord& now,
                       const storage::v1::ResultRecord& before,
                       const std::string& before_name) {
  v1::Trend trend;
  trend.set_previous(before_name);
  auto phq9 = [](const storage::v1::ResultRecord& r) -> std::optional<int> {
    for (const auto& s : r.scoring().scores()) {
      if (s.instrument_id() == "phq9" &&
          s.completeness() == scoring::v1::COMPLETE)
        return s.total();
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

absl::StatusOr<std::optional<StoredSession>> IntakeCore::PreviousResult(
    const StoredSession& session, absl::Time deadline) {
  std::string before_id = session.record.screening_id();
  int64_t before_ms = session.record.complete_time_ms();
  for (int round = 0; round < 10; ++round) {
    ASSIGN_OR_RETURN(auto entries,
                     store_->ListResults(session.record.user_id(), before_ms,
                                         before_id, 5, deadline));
    if (entries.empty()) return std::optional<StoredSession>();
    for (const auto& e : entries) {
      before_id = e.screening_id;
      before_ms = e.time_ms;
      // Its own entry can sort before it: a completion that lost a race
      // re-indexes the screening at its own time, a few ms off.
      if (e.screening_id == session.record.screening_id()) continue;
      ASSIGN_OR_RETURN(auto read, store_->Get(e.screening_id, "", deadline));
      if (read.session.has_value() &&
          read.session->record.state() == v1::COMPLETED &&
          read.session->result.has_value()) {
        return std::optional<StoredSession>(std::move(*read.session));
      }
    }
  }
  return std::optional<StoredSession>();
}

namespace {

v1::ScreeningResult ResultOf(const StoredSession& s,
                             const scoring::CatalogIndex* catalog) {
  v1::ScreeningResult out;
  out.set_name(
      ScreeningName{s.record.user_id(), s.record.screening_id()}.ToString());
  out.set_complete_time_ms(s.result->complete_time_ms());
  *out.mutable_scoring() = ForThePerson(s.result->scoring(), catalog);
  return out;
}

}  // namespace

absl::StatusOr<v1::ListMyResultsResponse> IntakeCore::ListMyResults(
    const v1::ListMyResultsRequest& request, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto user, ParseUserName(request.parent(), "parent"));
  if (request.page_size() < 0)
    return absl::InvalidArgumentError("page_size: must not be negative");
  const int page_size =
      request.page_size() == 0
          ? kDefaultResultsPageSize
          : std::min(request.page_size(), kMaxResultsPageSize);
  int64_t before_ms = 0;
  std::string before_id;
  if (!request.page_token().empty()) {
    // Bound to the person: another's token does not open here.
    ASSIGN_OR_RETURN(std::string raw, page_tokens_.Read("ListMyResults", user,
                                                        request.page_token()));
    std::vector<std::string> parts =
        absl::StrSplit(raw, absl::MaxSplits('/', 1));
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &before_ms) ||
        parts[1].empty()) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    before_id = parts[1];
  }
  // Completed results in order, one more than the page so the last one on
  // the page gets its trend too.
  std::vector<StoredSession> found;
  std::vector<int64_t>
      found_at;  // each one's time in the index, which orders the pages
  bool exhausted = false;
  while (static_cast<int>(found.size()) <= page_size && !exhausted) {
    ASSIGN_OR_RETURN(auto entries,
                     store_->ListResults(user, before_ms, before_id,
                                         page_size + 1, deadline));
    exhausted = static_cast<int>(entries.size()) < page_size + 1;
    for (const auto& e : entries) {
      before_ms = e.time_ms;
      before_id = e.screening_id;
      ASSIGN_OR_RETURN(auto read, store_->Get(e.screening_id, "", deadline));
      if (!read.session.has_value() || read.session->record.user_id() != user ||
          read.session->record.state() != v1::COMPLETED ||
          !read.session->result.has_value()) {
        continue;  // indexed before a completion that did not commit
      }
      found.push_back(std::move(*read.session));
      found_at.push_back(e.time_ms);
      if (static_cast<int>(found.size()) > page_size) break;
    }
  }
  v1::ListMyResultsResponse response;
  const auto clinical = catalog_->Get();  // held for the whole reply
  for (size_t i = 0; i < found.size() && static_cast<int>(i) < page_size; ++i) {
    v1::ScreeningResult* r = response.add_results();
    *r = ResultOf(found[i],
                  clinical != nullptr ? clinical->catalog.get() : nullptr);
    if (i + 1 < found.size()) {
      const auto& prev = found[i + 1];
      *r->mutable_trend() = TrendBetween(
          *found[i].result, *prev.result,
          ScreeningName{prev.record.user_id(), prev.record.screening_id()}
              .ToString());
    }
  }
  if (static_cast<int>(found.size()) > page_size) {
    const auto& last = found[page_size - 1];
    // The index's time, not the record's: the two can differ by a few ms
    // after a completion race (SessionStore::WriteRequest::index_completion),
    // and the next page must start where this one ended in the index.
    response.set_next_page_token(
        page_tokens_.Make("ListMyResults", user,
                          absl::StrCat(found_at[page_size - 1], "/",
                                       last.record.screening_id())));
  }
  return response;
}

absl::StatusOr<v1::ScreeningResult> IntakeCore::GetMyResult(
    const v1::GetMyResultRequest& request, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto loaded, Load(request.name(), "name", deadline));
  if (loaded.record.state() != v1::COMPLETED || !loaded.result.has_value()) {
    return absl::NotFoundError("name: no completed result for this screening");
  }
  const auto clinical = catalog_->Get();
  v1::ScreeningResult out =
      ResultOf(loaded, clinical != nullptr ? clinical->catalog.get() : nullptr);
  ASSIGN_OR_RETURN(auto prev, PreviousResult(loaded, deadline));
  if (prev.has_value()) {
    *out.mutable_trend() = TrendBetween(
        *loaded.result, *prev->result,
        ScreeningName{prev->record.user_id(), prev->record.screening_id()}
            .ToString());
  }
  return out;
}

}  // namespace aqueduct::intake
