#include "tools/rescore/rescore.h"

#include <google/protobuf/arena.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "common/util/ids.h"
#include "common/util/names.h"

namespace aqueduct::tools {
namespace {

constexpr int kMaxBatch = 5000;  // scoring's limit per Rescore message
// Outcomes per StoreRescoreOutcomes call: intake's limit, and bytes well
// under its 1 MiB request limit (a changed outcome carries a full result).
constexpr int kOutcomesPerCall = 1000;
// Ids per GetReviewContexts call (intake's limit).
constexpr size_t kContextsPerCall = 1000;
constexpr size_t kBytesPerCall = 512 << 10;

// One batch on its way through the job: what the reader found, and which
// screenings went to scoring (in request order).
struct Batch {
  // Filled by the reader: intake's page (each screening's outcome is filled
  // in by the scorer), the token after it, and which screenings went to
  // scoring. The page lives on the batch's own arena, freed in one go with
  // the batch (a page is thousands of small messages).
  std::unique_ptr<google::protobuf::Arena> arena;
  intake::v1::ListCompletedScreeningsResponse* page = nullptr;
  std::vector<size_t> sent;
  // kStreamEnded: scoring ended the stream (its status says why).
  enum class Kind {
    kBatch,
    kEnd,
    kStopped,
    kError,
    kStreamEnded
  } kind = Kind::kBatch;
  absl::Status error;
  // Filled by the scorer once the outcomes are stored: the counts and what
  // changed (indexes into the page, with the lines describing each change).
  int64_t screened = 0, failed = 0, changed_route = 0, changed_band = 0,
          changed_flags = 0;
  std::vector<size_t> changed;
  std::vector<std::vector<std::string>> change_lines;
};

// A bounded hand-over from one stage of the job to the next.
class BatchQueue {
 public:
  explicit BatchQueue(size_t capacity) : capacity_(capacity) {}
  // False when the consumer has gone (then nothing more is wanted).
  bool Push(Batch b) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](BatchQueue* q) {
          return q->closed_ || q->queue_.size() < q->capacity_;
        },
        this));
    if (closed_) return false;
    queue_.push_back(std::move(b));
    return true;
  }
  // kStopped once closed and empty.
  Batch Pop() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](BatchQueue* q) { return q->closed_ || !q->queue_.empty(); }, this));
    if (queue_.empty()) return Batch{.kind = Batch::Kind::kStopped};
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    return b;
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
  std::deque<Batch> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// Runs tasks on threads kept for the whole job, so no batch pays a thread's
// start and exit (the exit's allocator cleanup, madvise and TLB shootdowns).
// The destructor runs what is queued, then joins.
class Workers {
 public:
  explicit Workers(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~Workers() {
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
    }
    for (auto& t : threads_) t.join();
  }
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  template <typename F>
  auto Run(F f) -> std::future<decltype(f())> {
    auto task =
        std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
    auto result = task->get_future();
    absl::MutexLock lock(&mu_);
    tasks_.push_back([task] { (*task)(); });
    return result;
  }

 private:
  void Loop() {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](Workers* w) { return w->closed_ || !w->tasks_.empty(); },
            this));
        if (tasks_.empty()) return;  // closed, nothing left
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// An arena whose first block is `block`: Reset() keeps it, so a batch that
// fits allocates nothing from the heap.
google::protobuf::ArenaOptions ArenaOn(std::vector<char>& block) {
  google::protobuf::ArenaOptions o;
  o.initial_block = block.data();
  o.initial_block_size = block.size();
  o.max_block_size = 1 << 20;
  return o;
}

}  // namespace

absl::StatusOr<RescoreSummary> Rescorer::Run(
    const std::atomic<bool>& stop,
    const std::function<void(const RescoreProgress&)>& progress) {
  if (options_.ruleset_version.empty())
    return absl::InvalidArgumentError("--ruleset: is required");
  if (options_.batch < 1 || options_.batch > kMaxBatch) {
    return absl::InvalidArgumentError(
        absl::StrCat("--batch: must be 1..", kMaxBatch));
  }
  const std::string job =
      options_.job.empty() ? absl::StrCat("rescore-", options_.ruleset_version)
                           : options_.job;
  RETURN_IF_ERROR(ValidateIdSegment(job, "--job"));
  const absl::Time started = absl::Now();

  storage::v1::RescoreCheckpoint cp;
  cp.set_ruleset_version(options_.ruleset_version);
  intake::v1::GetRescoreJobRequest job_request;
  job_request.set_job(job);
  job_request.set_from_time_ms(options_.from_ms);
  job_request.set_to_time_ms(options_.to_ms);
  intake::v1::RescoreJob saved;
  if (absl::Status s = CallIntake("reading the job's checkpoint",
                                  [&](grpc::ClientContext* ctx) {
                                    return intake_->GetRescoreJob(
                                        ctx, job_request, &saved);
                                  });
      !s.ok()) {
    return s;
  }
  if (!options_.dry_run && saved.has_checkpoint()) {
    if (saved.checkpoint().ruleset_version() != options_.ruleset_version) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", job, " was for ruleset ",
          saved.checkpoint().ruleset_version(), "; use another --job"));
    }
    cp = saved.checkpoint();
  }
  RescoreSummary summary;
  const int64_t total = saved.completed_in_range();
  if (cp.done()) {
    summary.counts = cp;
    return summary;
  }

  // One stream for the whole job. It has no deadline of its own: a job over
  // millions of screenings runs for minutes; a scoring service that goes
  // away fails the stream, and the job stops with the error (and resumes
  // from its checkpoint when run again).
  grpc::ClientContext stream_ctx;
  if (absl::Status t = auth::Attach(stream_ctx, *token_); !t.ok())
    return Annotate(t, "scoring (re-scoring stream)");
  auto stream = scoring_->Rescore(&stream_ctx);
  BatchQueue queue(/*capacity=*/4);

  // Reader: scans the index, reads the stored answers and digests, and sends
  // what still needs scoring, staying up to four batches ahead.
  std::thread reader([&, after_token = cp.after_page_token()]() mutable {
    // Each batch's request is built on an arena that is reset, not freed.
    std::vector<char> block(4 << 20);
    google::protobuf::Arena arena(ArenaOn(block));
    int64_t read_this_run = 0;
    bool last_page = false;
    while (true) {
      // Rate limit (protects a production Redis behind intake): the reader,
      // which every other stage follows, stays under max_per_second.
      if (options_.max_per_second > 0) {
        // In short naps, so a stop or a failure elsewhere is seen at once.
        const absl::Time until =
            started + absl::Seconds(read_this_run / options_.max_per_second);
        while (absl::Now() < until && !stop.load() && !queue.closed()) {
          absl::SleepFor(std::min(until - absl::Now(), absl::Milliseconds(50)));
        }
      }
      if (stop.load() || queue.closed()) {
        stream->WritesDone();
        queue.Push(Batch{.kind = Batch::Kind::kStopped});
        return;
      }
      if (last_page) {
        stream->WritesDone();
        queue.Push(Batch{.kind = Batch::Kind::kEnd});
        return;
      }
      Batch b;
      google::protobuf::ArenaOptions page_arena;
      page_arena.start_block_size = 256 << 10;
      page_arena.max_block_size = 1 << 20;
      b.arena = std::make_unique<google::protobuf::Arena>(page_arena);
      b.page = google::protobuf::Arena::CreateMessage<
          intake::v1::ListCompletedScreeningsResponse>(b.arena.get());
      intake::v1::ListCompletedScreeningsRequest list;
      list.set_from_time_ms(options_.from_ms);
      list.set_to_time_ms(options_.to_ms);
      list.set_page_size(options_.batch);
      list.set_page_token(after_token);
      list.set_ruleset_version(options_.ruleset_version);
      if (absl::Status s = CallIntake("reading completed screenings",
                                      [&](grpc::ClientContext* ctx) {
                                        return intake_->ListCompletedScreenings(
                                            ctx, list, b.page);
                                      });
          !s.ok()) {
        stream->WritesDone();
        queue.Push(Batch{.kind = Batch::Kind::kError, .error = s});
        return;
      }
      if (b.page->screenings().empty()) {
        stream->WritesDone();
        queue.Push(Batch{.kind = Batch::Kind::kEnd});
        return;
      }
      read_this_run += b.page->screenings_size();
      last_page = b.page->next_page_token().empty();
      after_token = b.page->next_page_token();
      // Score what has no outcome under this version yet (a resumed batch
      // reuses the outcomes stored before the interruption).
      arena.Reset();
      auto& request =
          *google::protobuf::Arena::CreateMessage<scoring::v1::RescoreRequest>(
              &arena);
      request.set_ruleset_version(options_.ruleset_version);
      request.mutable_items()->Reserve(b.page->screenings_size());
      for (int i = 0; i < b.page->screenings_size(); ++i) {
        intake::v1::CompletedScreening& sc = *b.page->mutable_screenings(i);
        if (!sc.completed() || sc.has_outcome())
          continue;  // not completed: indexed before a commit
        if (options_.route.has_value() &&
            sc.before().primary_route() != *options_.route)
          continue;
        scoring::v1::RescoreItem* item = request.add_items();
        item->set_correlation_id(sc.screening_id());
        item->set_packed_request(std::move(*sc.mutable_packed_request()));
        *item->mutable_before() = sc.before();
        b.sent.push_back(static_cast<size_t>(i));
      }
      if (!b.sent.empty() && !stream->Write(request)) {
        queue.Push(Batch{.kind = Batch::Kind::kError,
                         .error = absl::UnavailableError(
                             "scoring: the re-scoring stream closed")});
        return;
      }
      if (!queue.Push(std::move(b))) {
        stream->WritesDone();
        return;
      }
    }
  });
  // Scorer: reads each batch's response, stores the new outcomes and works
  // out what changed, while this thread opens the cases and checkpoints the
  // batch before it.
  BatchQueue scored(/*capacity=*/4);
  std::thread scorer([&] {
    std::vector<char> response_block(2 << 20);
    google::protobuf::Arena response_arena(ArenaOn(response_block));
    while (true) {
      Batch b = queue.Pop();
      if (b.kind != Batch::Kind::kBatch) {
        scored.Push(std::move(b));
        return;
      }
      response_arena.Reset();
      auto& response =
          *google::protobuf::Arena::CreateMessage<scoring::v1::RescoreResponse>(
              &response_arena);
      if (!b.sent.empty()) {
        if (!stream->Read(&response)) {
          scored.Push(Batch{.kind = Batch::Kind::kStreamEnded});
          return;
        }
        if (response.items_size() != static_cast<int>(b.sent.size())) {
          scored.Push(Batch{
              .kind = Batch::Kind::kError,
              .error = absl::InternalError(
                  "scoring: re-scoring response does not match its request")});
          return;
        }
      }
      // New outcomes, stored write-once next to the original (through
      // intake, in calls under its request size limit).
      const int64_t now = absl::ToUnixMillis(absl::Now());
      auto new_store = [&b] {
        return google::protobuf::Arena::CreateMessage<
            intake::v1::StoreRescoreOutcomesRequest>(b.arena.get());
      };
      std::vector<intake::v1::StoreRescoreOutcomesRequest*> stores = {
          new_store()};
      size_t store_bytes = 0;
      for (size_t k = 0; k < b.sent.size(); ++k) {
        scoring::v1::RescoredItem* item =
            response.mutable_items(static_cast<int>(k));
        intake::v1::CompletedScreening& sc =
            *b.page->mutable_screenings(static_cast<int>(b.sent[k]));
        if (item->has_error()) {
          ++b.failed;
          continue;
        }
        // Copied once out of the response's arena (a Swap between an arena
        // and the heap copies both ways).
        storage::v1::RescoreOutcome& o = *sc.mutable_outcome();
        o.set_time_ms(now);
        o.mutable_digest()->CopyFrom(item->after());
        o.set_changed(item->changed());
        if (item->changed())
          o.mutable_changed_result()->CopyFrom(item->result());
        if (options_.dry_run) continue;
        const size_t bytes = o.ByteSizeLong() + sc.screening_id().size() + 8;
        if (stores.back()->outcomes_size() >= kOutcomesPerCall ||
            store_bytes + bytes > kBytesPerCall) {
          stores.push_back(new_store());
          store_bytes = 0;
        }
        intake::v1::ScreeningOutcome* out = stores.back()->add_outcomes();
        out->set_screening_id(sc.screening_id());
        *out->mutable_outcome() = o;
        store_bytes += bytes;
      }
      for (intake::v1::StoreRescoreOutcomesRequest* store : stores) {
        if (store->outcomes().empty()) continue;
        store->set_ruleset_version(options_.ruleset_version);
        intake::v1::StoreRescoreOutcomesResponse stored;
        if (absl::Status s = CallIntake("storing outcomes",
                                        [&](grpc::ClientContext* ctx) {
                                          return intake_->StoreRescoreOutcomes(
                                              ctx, *store, &stored);
                                        });
            !s.ok()) {
          scored.Push(Batch{.kind = Batch::Kind::kError, .error = s});
          return;
        }
      }
      // Compare and count.
      for (int i = 0; i < b.page->screenings_size(); ++i) {
        const intake::v1::CompletedScreening& sc = b.page->screenings(i);
        if (!sc.completed() || !sc.has_outcome()) continue;
        if (options_.route.has_value() &&
            sc.before().primary_route() != *options_.route)
          continue;
        ++b.screened;
        if (!sc.outcome().changed()) continue;
        scoring::DigestChanges changes =
            scoring::CompareDigests(sc.before(), sc.outcome().digest());
        if (!changes.any()) continue;
        b.changed_route += changes.route;
        b.changed_band += changes.band;
        b.changed_flags += changes.flags;
        b.changed.push_back(static_cast<size_t>(i));
        b.change_lines.push_back(std::move(changes.lines));
      }
      if (!scored.Push(std::move(b))) return;
    }
  });
  // Ends the reader, the scorer and the stream; returns the stream's status.
  auto shut_down = [&](bool cancel) {
    queue.Close();   // wakes a reader waiting to hand over a batch
    scored.Close();  // and a scorer
    // Cancelling also unblocks a reader inside Write and a scorer inside
    // Read; Finish needs every response read or the call cancelled.
    if (cancel) stream_ctx.TryCancel();
    reader.join();
    scorer.join();
    return stream->Finish();
  };

  // This thread: for each scored batch, reads the changed sessions and sends
  // their re-review cases to referral on one of three threads kept for the
  // job, so at most three batches' cases are in flight; batches are
  // checkpointed in order, each once its cases are open.
  struct Pending {
    Batch batch;  // its counts and last entry
    std::future<absl::StatusOr<int64_t>> opened;
  };
  Workers case_senders(/*n=*/3);  // up to three batches' cases in flight
  std::deque<Pending> pending;
  int64_t done_this_run = 0;
  // Waits for the oldest batch's cases and checkpoints it.
  auto finish_oldest = [&]() -> absl::Status {
    Pending p = std::move(pending.front());
    pending.pop_front();
    absl::StatusOr<int64_t> opened = p.opened.get();
    if (!opened.ok()) return opened.status();
    const Batch& b = p.batch;
    cp.set_failed(cp.failed() + b.failed);
    cp.set_screened(cp.screened() + b.screened);
    cp.set_changed_route(cp.changed_route() + b.changed_route);
    cp.set_changed_band(cp.changed_band() + b.changed_band);
    cp.set_changed_flags(cp.changed_flags() + b.changed_flags);
    cp.set_cases_opened(cp.cases_opened() + *opened);
    done_this_run += b.screened;
    // The checkpoint moves past a batch only once its outcomes are stored
    // and its cases open.
    // (The last page has no token after it: its checkpoint keeps the one
    // before, so a job stopped before it is marked done redoes that page,
    // which changes nothing.)
    if (!b.page->next_page_token().empty())
      cp.set_after_page_token(b.page->next_page_token());
    if (!options_.dry_run) RETURN_IF_ERROR(SaveCheckpoint(job, cp));
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - started);
    if (progress) {
      progress(RescoreProgress{cp.screened(), total,
                               elapsed > 0 ? done_this_run / elapsed : 0});
    }
    return absl::OkStatus();
  };
  // On an error: let the calls in flight end, stop every stage.
  auto fail = [&](absl::Status error) {
    while (!pending.empty()) {
      pending.front().opened.wait();
      pending.pop_front();
    }
    shut_down(/*cancel=*/true);
    return error;
  };
  while (true) {
    Batch b = scored.Pop();
    if (b.kind == Batch::Kind::kEnd || b.kind == Batch::Kind::kStopped) {
      while (!pending.empty()) {
        if (absl::Status s = finish_oldest(); !s.ok()) return fail(s);
      }
      if (b.kind == Batch::Kind::kEnd) {
        cp.set_done(true);
      } else {
        summary.interrupted = true;
      }
      break;
    }
    if (b.kind == Batch::Kind::kStreamEnded) {
      while (!pending.empty()) {
        pending.front().opened.wait();
        pending.pop_front();
      }
      grpc::Status s = shut_down(/*cancel=*/false);
      return Annotate(s.ok() ? absl::UnavailableError("the stream ended early")
                             : ToAbslStatus(s),
                      "scoring (re-scoring stream)");
    }
    if (b.kind == Batch::Kind::kError) {
      while (!pending.empty()) {
        pending.front().opened.wait();
        pending.pop_front();
      }
      grpc::Status s = shut_down(/*cancel=*/true);
      if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) {
        return Annotate(ToAbslStatus(s), "scoring (re-scoring stream)");
      }
      return b.error;
    }
    for (size_t k = 0;
         k < b.change_lines.size() && summary.sample_changes.size() < 5; ++k) {
      summary.sample_changes.push_back(absl::StrJoin(b.change_lines[k], "; "));
    }
    referral::v1::CreateReferralsRequest cases;
    cases.set_view(
        referral::v1::REFERRAL_VIEW_BASIC);  // the job reads only how many
    if (!options_.dry_run && !b.changed.empty()) {
      // The case shows both results in full: read the originals (and where
      // the person is) for the changed screenings only.
      std::vector<intake::v1::ReviewContext> contexts;
      for (size_t begin = 0; begin < b.changed.size();
           begin += kContextsPerCall) {
        intake::v1::GetReviewContextsRequest ask;
        for (size_t k = begin;
             k < std::min(b.changed.size(), begin + kContextsPerCall); ++k) {
          ask.add_screening_ids(
              b.page->screenings(static_cast<int>(b.changed[k]))
                  .screening_id());
        }
        intake::v1::GetReviewContextsResponse got;
        if (absl::Status s = CallIntake("reading the changed screenings",
                                        [&](grpc::ClientContext* ctx) {
                                          return intake_->GetReviewContexts(
                                              ctx, ask, &got);
                                        });
            !s.ok()) {
          return fail(s);
        }
        for (auto& c : *got.mutable_contexts())
          contexts.push_back(std::move(c));
      }
      // Both results move into the case (all on the heap, so a Swap moves
      // pointers): the batch keeps only its counts from here on.
      for (size_t k = 0; k < b.changed.size() && k < contexts.size(); ++k) {
        intake::v1::ReviewContext& context = contexts[k];
        if (!context.found()) continue;
        intake::v1::CompletedScreening& sc =
            *b.page->mutable_screenings(static_cast<int>(b.changed[k]));
        referral::v1::CreateReferralRequest* req = cases.add_requests();
        req->set_request_id(absl::StrCat("rescore-", options_.ruleset_version,
                                         "-", sc.screening_id()));
        req->set_screening(context.screening());
        req->mutable_result()->Swap(
            sc.mutable_outcome()->mutable_changed_result());
        req->mutable_previous_result()->Swap(context.mutable_result());
        for (auto& line : b.change_lines[k]) req->add_changes(std::move(line));
        req->set_location_state(context.location_state());
      }
    }
    // One call per 200 cases (each carries two full results: ~700 kB a
    // call, well under referral's request limit); creation is idempotent
    // per screening and ruleset version, so a batch retried after a crash
    // creates nothing twice.
    auto open_cases = [this](referral::v1::CreateReferralsRequest cases)
        -> absl::StatusOr<int64_t> {
      int64_t opened = 0;
      constexpr int kCasesPerCall = 200;
      for (int begin = 0; begin < cases.requests_size();
           begin += kCasesPerCall) {
        referral::v1::CreateReferralsRequest chunk;
        chunk.set_view(cases.view());
        for (int k = begin;
             k < std::min(cases.requests_size(), begin + kCasesPerCall); ++k) {
          chunk.mutable_requests()->Add()->Swap(cases.mutable_requests(k));
        }
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
        if (absl::Status t = auth::Attach(ctx, *token_); !t.ok())
          return Annotate(t, "referral (re-review cases)");
        referral::v1::CreateReferralsResponse created;
        grpc::Status s = referral_->CreateReferrals(&ctx, chunk, &created);
        if (!s.ok())
          return Annotate(ToAbslStatus(s), "referral (re-review cases)");
        opened += created.referrals_size();
      }
      return opened;
    };
    Pending p;
    if (cases.requests_size() > 0) {
      p.opened = case_senders.Run(
          [open_cases, batch_cases = std::move(cases)]() mutable {
            return open_cases(std::move(batch_cases));
          });
    } else {
      std::promise<absl::StatusOr<int64_t>> none;
      none.set_value(0);
      p.opened = none.get_future();
    }
    p.batch = std::move(b);
    pending.push_back(std::move(p));
    if (pending.size() > 2) {
      if (absl::Status s = finish_oldest(); !s.ok()) return fail(s);
    }
  }
  grpc::Status finished = shut_down(/*cancel=*/false);
  if (!finished.ok() && cp.done())
    return Annotate(ToAbslStatus(finished), "scoring (re-scoring stream)");
  if (cp.done() && !options_.dry_run) RETURN_IF_ERROR(SaveCheckpoint(job, cp));
  summary.counts = cp;
  summary.seconds = absl::ToDoubleSeconds(absl::Now() - started);
  return summary;
}

absl::Status Rescorer::CallIntake(
    absl::string_view what,
    const std::function<grpc::Status(grpc::ClientContext*)>& call) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  if (absl::Status t = auth::Attach(ctx, *token_); !t.ok())
    return Annotate(t, absl::StrCat("intake (", what, ")"));
  grpc::Status s = call(&ctx);
  if (!s.ok())
    return Annotate(ToAbslStatus(s), absl::StrCat("intake (", what, ")"));
  return absl::OkStatus();
}

absl::Status Rescorer::SaveCheckpoint(
    const std::string& job, const storage::v1::RescoreCheckpoint& cp) {
  intake::v1::SaveRescoreCheckpointRequest save;
  save.set_job(job);
  *save.mutable_checkpoint() = cp;
  intake::v1::RescoreJob saved;
  return CallIntake("saving the checkpoint", [&](grpc::ClientContext* ctx) {
    return intake_->SaveRescoreCheckpoint(ctx, save, &saved);
  });
}

std::string SummaryJson(const RescoreSummary& s,
                        const RescoreOptions& options) {
  const auto& c = s.counts;
  return absl::StrFormat(
      "{\"ruleset_version\":\"%s\",\"dry_run\":%s,\"interrupted\":%s,\"done\":%"
      "s,\"screened\":%d,"
      "\"changed_route\":%d,\"changed_band\":%d,\"changed_flags\":%d,"
      "\"failed\":%d,"
      "\"cases_opened\":%d,\"seconds\":%.3f}\n",
      c.ruleset_version(), options.dry_run ? "true" : "false",
      s.interrupted ? "true" : "false", c.done() ? "true" : "false",
      c.screened(), c.changed_route(), c.changed_band(), c.changed_flags(),
      c.failed(), c.cases_opened(), s.seconds);
}

}  // namespace aqueduct::tools
