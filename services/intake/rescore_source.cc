#include "services/intake/rescore_source.h"

#include <google/protobuf/arena.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/status/status_macros.h"
#include "common/util/ids.h"
#include "common/util/names.h"
#include "services/intake/intake_core.h"
#include "services/scoring/digest.h"

namespace aqueduct::intake {
namespace {

absl::Status CheckRange(int64_t from_ms, int64_t to_ms) {
  if (from_ms < 0 || to_ms < from_ms) {
    return absl::InvalidArgumentError(
        "from_time_ms, to_time_ms: need 0 <= from_time_ms <= to_time_ms");
  }
  return absl::OkStatus();
}

// Each Redis step of a page (a read, a write) gets this long.
constexpr absl::Duration kStepTime = absl::Seconds(10);
// How far each stage may get ahead of the next.
constexpr size_t kPagesAhead = 4;
// Re-review cases per CreateReferrals call (~700 kB with both results).
constexpr int kCasesPerCall = 200;

// A page's arena: a page of 5000 takes a few MiB, in blocks up to 1 MiB.
google::protobuf::ArenaOptions PageArena() {
  google::protobuf::ArenaOptions o;
  o.start_block_size = 256 << 10;
  o.max_block_size = 1 << 20;
  return o;
}

// One page on its way from the reader through the storer to the sender.
struct Page {
  // kStreamEnded: scoring's stream failed (its Finish says why).
  enum class Kind { kPage, kEnd, kError, kStreamEnded } kind = Kind::kPage;
  absl::Status error;
  // What the page reads and scoring answers lives here, freed in one go
  // when the page is sent.
  std::unique_ptr<google::protobuf::Arena> arena;
  std::vector<std::string> ids;  // the page's screening ids, in order
  std::vector<SessionStore::ForRescore> stored;
  std::vector<size_t> sent;  // indexes into `ids` sent to scoring, in order
  std::string next_page_token;
  // Filled by the storer: the page's counts, and which screenings changed
  // (indexes into `ids`) with the lines describing each change.
  v1::RescoredPage out;
  std::vector<size_t> changed;
  std::vector<std::vector<std::string>> lines;
};

// A bounded hand-over from one stage to the next.
class PageQueue {
 public:
  explicit PageQueue(size_t capacity) : capacity_(capacity) {}
  // False when the sender has gone (nothing more is wanted).
  bool Push(Page page) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](PageQueue* q) {
          return q->closed_ || q->pages_.size() < q->capacity_;
        },
        this));
    if (closed_) return false;
    pages_.push_back(std::move(page));
    return true;
  }
  Page Pop() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](PageQueue* q) { return q->closed_ || !q->pages_.empty(); }, this));
    if (pages_.empty()) {
      return Page{.kind = Page::Kind::kError,
                  .error = absl::CancelledError("re-scoring stopped")};
    }
    Page page = std::move(pages_.front());
    pages_.pop_front();
    return page;
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<Page> pages_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

// A page token seals the index position after the page,
// "<time_ms>:<member>" (crypto::PageTokens).
std::string RescoreSource::PageToken(int64_t time_ms,
                                     const std::string& member) const {
  return page_tokens_.Make("RescoreScreenings", "",
                           absl::StrCat(time_ms, ":", member));
}

absl::Status RescoreSource::ParsePageToken(const std::string& token,
                                           int64_t* time_ms,
                                           std::string* member) const {
  if (token.empty()) {
    *time_ms = 0;
    member->clear();
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::string position,
                   page_tokens_.Read("RescoreScreenings", "", token));
  std::pair<std::string, std::string> parts =
      absl::StrSplit(position, absl::MaxSplits(':', 1));
  if (!absl::SimpleAtoi(parts.first, time_ms) || parts.second.empty()) {
    return absl::InvalidArgumentError(
        "page_token: not a next_page_token of RescoreScreenings");
  }
  *member = std::move(parts.second);
  return absl::OkStatus();
}

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

absl::StatusOr<int64_t> RescoreSource::OpenCases(
    referral::v1::CreateReferralsRequest cases) {
  // Calls of kCasesPerCall: each case carries two full results, so a call
  // stays well under referral's request limit. Creation is idempotent per
  // screening and ruleset version, so a page done again creates nothing
  // twice.
  int64_t opened = 0;
  for (int begin = 0; begin < cases.requests_size(); begin += kCasesPerCall) {
    referral::v1::CreateReferralsRequest chunk;
    chunk.set_view(cases.view());
    for (int k = begin;
         k < std::min(cases.requests_size(), begin + kCasesPerCall); ++k) {
      chunk.mutable_requests()->Add()->Swap(cases.mutable_requests(k));
    }
    ASSIGN_OR_RETURN(auto created, referral_->CreateReferrals(
                                       chunk, absl::Now() + kStepTime));
    opened += created.referrals_size();
  }
  return opened;
}

absl::Status RescoreSource::Validate(
    const v1::RescoreScreeningsRequest& request) const {
  if (request.ruleset_version().empty())
    return absl::InvalidArgumentError("ruleset_version: is required");
  RETURN_IF_ERROR(CheckRange(request.from_time_ms(), request.to_time_ms()));
  if (request.page_size() < 1 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be 1..", kMaxPageSize));
  }
  if (!(request.max_per_second() >= 0)) {
    return absl::InvalidArgumentError(
        "max_per_second: must be 0 (no limit) or more");
  }
  int64_t after_ms = 0;
  std::string after_member;
  return ParsePageToken(request.page_token(), &after_ms, &after_member);
}

absl::Status RescoreSource::Run(
    const v1::RescoreScreeningsRequest& request, const std::atomic<bool>& stop,
    const std::function<bool(v1::RescoredPage)>& send) {
  RETURN_IF_ERROR(Validate(request));
  ASSIGN_OR_RETURN(std::unique_ptr<RescoreStream> stream,
                   scoring_->OpenRescore());
  const std::string& version = request.ruleset_version();
  auto in_filter = [&request](const scoring::v1::ResultDigest& before) {
    return !request.has_route() || before.primary_route() == request.route();
  };
  const absl::Time started = absl::Now();
  PageQueue queue(kPagesAhead);

  // Reader: the index, then each page's stored answers, digests and earlier
  // outcomes in one round trip; what still needs scoring goes to scoring.
  std::thread reader([&] {
    int64_t after_ms = 0;
    std::string after_member;
    (void)ParsePageToken(request.page_token(), &after_ms,
                         &after_member);  // checked by Validate
    scoring::v1::RescoreRequest to_score;
    to_score.set_ruleset_version(version);
    int64_t read = 0;
    while (true) {
      if (request.max_per_second() > 0) {
        // In short naps, so a stop is seen at once.
        const absl::Time until =
            started + absl::Seconds(read / request.max_per_second());
        while (absl::Now() < until && !stop.load() && !queue.closed())
          absl::SleepFor(std::min(until - absl::Now(), absl::Milliseconds(50)));
      }
      if (stop.load()) {
        queue.Push(Page{.kind = Page::Kind::kError,
                        .error = absl::CancelledError("re-scoring stopped")});
        return;
      }
      Page page;
      page.arena = std::make_unique<google::protobuf::Arena>(PageArena());
      const absl::Time deadline = absl::Now() + kStepTime;
      auto entries = store_->ScanCompleted(
          request.from_time_ms(), request.to_time_ms(), after_ms, after_member,
          request.page_size(), deadline);
      if (!entries.ok()) {
        queue.Push(Page{.kind = Page::Kind::kError, .error = entries.status()});
        return;
      }
      if (entries->empty()) {
        queue.Push(Page{.kind = Page::Kind::kEnd});
        return;
      }
      std::vector<std::string> ids;
      ids.reserve(entries->size());
      for (const auto& e : *entries) ids.push_back(e.screening_id);
      auto stored =
          store_->ReadForRescore(ids, version, deadline, page.arena.get());
      if (!stored.ok()) {
        queue.Push(Page{.kind = Page::Kind::kError, .error = stored.status()});
        return;
      }
      page.stored = *std::move(stored);
      page.ids = std::move(ids);
      // Scoring gets what has no outcome under this version yet (a page
      // done before reuses what was stored then).
      to_score.clear_items();
      for (size_t i = 0; i < page.stored.size(); ++i) {
        SessionStore::ForRescore& fr = page.stored[i];
        if (!fr.completed || fr.outcome != nullptr || !in_filter(*fr.before))
          continue;  // not completed: indexed before a commit
        scoring::v1::RescoreItem* item = to_score.add_items();
        item->set_correlation_id(page.ids[i]);
        item->set_packed_request(std::move(fr.packed_request));
        *item->mutable_before() = *fr.before;
        page.sent.push_back(i);
      }
      // A short page is the last one.
      const bool last = static_cast<int>(entries->size()) < request.page_size();
      if (!last) {
        after_ms = entries->back().time_ms;
        after_member = entries->back().member;
        page.next_page_token = PageToken(after_ms, after_member);
      }
      read += static_cast<int64_t>(entries->size());
      if (!page.sent.empty() && !stream->Write(to_score)) {
        queue.Push(Page{.kind = Page::Kind::kStreamEnded});
        return;
      }
      if (!queue.Push(std::move(page))) return;
      if (last) {
        queue.Push(Page{.kind = Page::Kind::kEnd});
        return;
      }
    }
  });

  // Storer: scoring's answer to each page, the outcomes stored, the page
  // counted and what changed picked out.
  PageQueue stored(kPagesAhead);
  std::thread storer([&] {
    while (true) {
      Page page = queue.Pop();
      if (page.kind != Page::Kind::kPage) {
        stored.Push(std::move(page));
        return;
      }
      auto& response =
          *google::protobuf::Arena::CreateMessage<scoring::v1::RescoreResponse>(
              page.arena.get());
      if (!page.sent.empty()) {
        if (!stream->Read(&response)) {
          stored.Push(Page{.kind = Page::Kind::kStreamEnded});
          return;
        }
        if (response.items_size() != static_cast<int>(page.sent.size())) {
          stored.Push(Page{
              .kind = Page::Kind::kError,
              .error = absl::InternalError(
                  "scoring: re-scoring response does not match its request")});
          return;
        }
      }
      v1::RescoredPage& out = page.out;
      const int64_t now = absl::ToUnixMillis(absl::Now());
      std::vector<std::pair<std::string, const storage::v1::RescoreOutcome*>>
          to_store;
      to_store.reserve(page.sent.size());
      for (size_t k = 0; k < page.sent.size(); ++k) {
        scoring::v1::RescoredItem* item =
            response.mutable_items(static_cast<int>(k));
        if (item->has_error()) {
          out.set_failed(out.failed() + 1);
          continue;
        }
        const size_t i = page.sent[k];
        auto* o =
            google::protobuf::Arena::CreateMessage<storage::v1::RescoreOutcome>(
                page.arena.get());
        page.stored[i].outcome = o;
        o->set_time_ms(now);
        o->mutable_digest()->Swap(item->mutable_after());  // same arena
        o->set_changed(item->changed());
        if (item->changed())
          o->mutable_changed_result()->Swap(item->mutable_result());
        to_store.emplace_back(page.ids[i], o);
      }
      if (!request.dry_run() && !to_store.empty()) {
        absl::Status s =
            store_->PutOutcomes(to_store, version, absl::Now() + kStepTime);
        if (!s.ok()) {
          stored.Push(Page{.kind = Page::Kind::kError, .error = s});
          return;
        }
      }
      for (size_t i = 0; i < page.stored.size(); ++i) {
        const SessionStore::ForRescore& fr = page.stored[i];
        if (!fr.completed || fr.outcome == nullptr || !in_filter(*fr.before))
          continue;
        out.set_screened(out.screened() + 1);
        if (!fr.outcome->changed()) continue;
        scoring::DigestChanges changes =
            scoring::CompareDigests(*fr.before, fr.outcome->digest());
        if (!changes.any()) continue;
        out.set_changed_route(out.changed_route() + changes.route);
        out.set_changed_band(out.changed_band() + changes.band);
        out.set_changed_flags(out.changed_flags() + changes.flags);
        page.changed.push_back(i);
        page.lines.push_back(std::move(changes.lines));
      }
      if (!stored.Push(std::move(page))) return;
    }
  });

  // This thread: each stored page with what a re-review case needs of its
  // changed screenings, sent in order.
  absl::Status result;
  bool stream_ended = false;
  while (true) {
    Page page = stored.Pop();
    if (page.kind == Page::Kind::kEnd) break;
    if (page.kind == Page::Kind::kError) {
      result = page.error;
      break;
    }
    if (page.kind == Page::Kind::kStreamEnded) {
      stream_ended = true;
      break;
    }
    v1::RescoredPage& out = page.out;
    // A re-review case shows both results in full: the originals (and where
    // the person is) are read for the changed screenings only. A dry run
    // opens no cases and sends only the counts and the change lines.
    if (!page.changed.empty() && !request.dry_run()) {
      std::vector<std::string> ids;
      for (size_t i : page.changed) ids.push_back(page.ids[i]);
      // With the answers: where the person is may be an answer (ctx.state),
      // and a re-review case goes to clinicians licensed there.
      auto sessions = store_->GetMany(ids, absl::Now() + kStepTime);
      if (!sessions.ok()) {
        result = sessions.status();
        break;
      }
      referral::v1::CreateReferralsRequest cases;
      cases.set_view(referral::v1::REFERRAL_VIEW_BASIC);  // counted only
      for (size_t k = 0; k < page.changed.size(); ++k) {
        auto& session = (*sessions)[k];
        if (!session.has_value() || !session->result.has_value())
          continue;  // gone meanwhile
        referral::v1::CreateReferralRequest* c = cases.add_requests();
        c->set_request_id(absl::StrCat("rescore-", version, "-", ids[k]));
        c->set_screening(
            ScreeningName{session->record.user_id(), ids[k]}.ToString());
        c->mutable_previous_result()->Swap(session->result->mutable_scoring());
        c->mutable_result()->Swap(
            page.stored[page.changed[k]].outcome->mutable_changed_result());
        for (const auto& line : page.lines[k]) c->add_changes(line);
        c->set_location_state(LocationStateOf(session->record));
      }
      absl::StatusOr<int64_t> opened = OpenCases(std::move(cases));
      if (!opened.ok()) {
        result = opened.status();
        break;
      }
      out.set_cases_opened(*opened);
    }
    for (size_t k = 0; k < page.changed.size(); ++k) {
      v1::ChangedScreening* c = out.add_changed();
      c->set_screening_id(page.ids[page.changed[k]]);
      for (auto& line : page.lines[k]) c->add_changes(std::move(line));
    }
    out.set_next_page_token(std::move(page.next_page_token));
    if (!send(std::move(out))) {
      result = absl::CancelledError("the job went away");
      break;
    }
  }
  // Ends the reader and the storer: a full hand-over wakes, a Write or Read
  // in progress fails.
  queue.Close();
  stored.Close();
  if (!stream_ended && !result.ok()) stream->Cancel();
  reader.join();
  storer.join();
  absl::Status finished = stream->Finish();
  if (stream_ended) {
    return finished.ok() ? absl::UnavailableError(
                               "scoring: the re-scoring stream ended early")
                         : finished;
  }
  if (!result.ok()) return result;
  return finished;
}

}  // namespace aqueduct::intake
