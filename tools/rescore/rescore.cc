#include "tools/rescore/rescore.h"

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

namespace aqueduct::tools {
namespace {

constexpr int kMaxBatch = 5000;  // scoring's limit per Rescore message

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
  RETURN_IF_ERROR(
      CallIntake("reading the job's checkpoint", [&](grpc::ClientContext* ctx) {
        return intake_->GetRescoreJob(ctx, job_request, &saved);
      }));
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

  // One stream for the whole job, from the checkpoint on. It has no
  // deadline of its own: a job over millions of screenings runs for
  // minutes; an intake or scoring that goes away fails the stream, and the
  // job stops with the error (and resumes from its checkpoint when run
  // again).
  intake::v1::RescoreScreeningsRequest request;
  request.set_ruleset_version(options_.ruleset_version);
  request.set_from_time_ms(options_.from_ms);
  request.set_to_time_ms(options_.to_ms);
  request.set_page_size(options_.batch);
  request.set_page_token(cp.after_page_token());
  if (options_.route.has_value()) request.set_route(*options_.route);
  request.set_dry_run(options_.dry_run);
  request.set_max_per_second(options_.max_per_second);
  grpc::ClientContext stream_ctx;
  if (absl::Status t = auth::Attach(stream_ctx, *token_); !t.ok())
    return Annotate(t, "intake (re-scoring stream)");
  auto stream = intake_->RescoreScreenings(&stream_ctx, request);
  // A stop asked for while a page is awaited cancels the stream; the pages
  // already read are still finished and checkpointed.
  std::atomic<bool> finished_reading{false};
  std::thread stopper([&] {
    while (!finished_reading.load()) {
      if (stop.load()) {
        stream_ctx.TryCancel();
        return;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  });

  // For each page, its re-review cases go to referral on one of three
  // threads kept for the job, so at most three pages' cases are in flight;
  // pages are checkpointed in order, each once its cases are open.
  struct Pending {
    intake::v1::RescoredPage page;  // its counts and next token
    std::future<absl::StatusOr<int64_t>> opened;
  };
  Workers case_senders(/*n=*/3);
  std::deque<Pending> pending;
  int64_t done_this_run = 0;
  // Waits for the oldest page's cases and checkpoints it.
  auto finish_oldest = [&]() -> absl::Status {
    Pending p = std::move(pending.front());
    pending.pop_front();
    absl::StatusOr<int64_t> opened = p.opened.get();
    if (!opened.ok()) return opened.status();
    const intake::v1::RescoredPage& page = p.page;
    cp.set_failed(cp.failed() + page.failed());
    cp.set_screened(cp.screened() + page.screened());
    cp.set_changed_route(cp.changed_route() + page.changed_route());
    cp.set_changed_band(cp.changed_band() + page.changed_band());
    cp.set_changed_flags(cp.changed_flags() + page.changed_flags());
    cp.set_cases_opened(cp.cases_opened() + *opened);
    done_this_run += page.screened();
    // The checkpoint moves past a page only once its outcomes are stored
    // (intake stores them before sending the page) and its cases are open.
    // The last page has no token after it: its checkpoint keeps the one
    // before, so a job stopped before it is marked done redoes that page,
    // which changes nothing.
    if (!page.next_page_token().empty())
      cp.set_after_page_token(page.next_page_token());
    if (!options_.dry_run) RETURN_IF_ERROR(SaveCheckpoint(job, cp));
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - started);
    if (progress) {
      progress(RescoreProgress{cp.screened(), total,
                               elapsed > 0 ? done_this_run / elapsed : 0});
    }
    return absl::OkStatus();
  };
  // Ends the stream and the stopper; returns the stream's status.
  auto end_stream = [&](bool cancel) {
    if (cancel) stream_ctx.TryCancel();
    finished_reading.store(true);
    stopper.join();
    return stream->Finish();
  };
  // On an error: let the calls in flight end, then end the stream.
  auto fail = [&](absl::Status error) {
    while (!pending.empty()) {
      pending.front().opened.wait();
      pending.pop_front();
    }
    end_stream(/*cancel=*/true);
    return error;
  };

  // One call per 200 cases (each carries two full results: ~700 kB a call,
  // well under referral's request limit); creation is idempotent per
  // screening and ruleset version, so a page done again after a crash
  // creates nothing twice.
  auto open_cases = [this](referral::v1::CreateReferralsRequest cases)
      -> absl::StatusOr<int64_t> {
    int64_t opened = 0;
    constexpr int kCasesPerCall = 200;
    for (int begin = 0; begin < cases.requests_size(); begin += kCasesPerCall) {
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

  intake::v1::RescoredPage page;
  while (stream->Read(&page)) {
    for (int k = 0;
         k < page.changed_size() && summary.sample_changes.size() < 5; ++k) {
      summary.sample_changes.push_back(
          absl::StrJoin(page.changed(k).changes(), "; "));
    }
    referral::v1::CreateReferralsRequest cases;
    cases.set_view(
        referral::v1::REFERRAL_VIEW_BASIC);  // the job reads only how many
    if (!options_.dry_run) {
      // Both results move into the case: the page keeps only its counts.
      for (intake::v1::ChangedScreening& c : *page.mutable_changed()) {
        if (c.screening().empty()) continue;  // gone meanwhile
        referral::v1::CreateReferralRequest* req = cases.add_requests();
        req->set_request_id(absl::StrCat("rescore-", options_.ruleset_version,
                                         "-", c.screening_id()));
        req->set_screening(c.screening());
        req->mutable_result()->Swap(c.mutable_result());
        req->mutable_previous_result()->Swap(c.mutable_previous_result());
        req->mutable_changes()->Swap(c.mutable_changes());
        req->set_location_state(c.location_state());
      }
    }
    page.clear_changed();
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
    p.page = std::move(page);
    page = intake::v1::RescoredPage();
    pending.push_back(std::move(p));
    if (pending.size() > 2) {
      if (absl::Status s = finish_oldest(); !s.ok()) return fail(s);
    }
  }
  // The stream ended: finish what was read, then see why it ended.
  while (!pending.empty()) {
    if (absl::Status s = finish_oldest(); !s.ok()) return fail(s);
  }
  const bool stopped = stop.load();
  grpc::Status ended = end_stream(/*cancel=*/false);
  if (ended.ok()) {
    cp.set_done(true);
    if (!options_.dry_run) RETURN_IF_ERROR(SaveCheckpoint(job, cp));
  } else if (stopped && ended.error_code() == grpc::StatusCode::CANCELLED) {
    summary.interrupted = true;
  } else {
    return Annotate(ToAbslStatus(ended), "intake (re-scoring stream)");
  }
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
