#include "tools/rescore/rescore.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "common/util/ids.h"

namespace aqueduct::tools {
namespace {

constexpr int kMaxBatch = 5000;  // scoring's limit per Rescore message

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

  // Each page is checkpointed as it arrives: intake stored its outcomes and
  // opened its cases before sending it. (The last page has no token after
  // it: its checkpoint keeps the one before, so a job stopped before it is
  // marked done redoes that page, which changes nothing.)
  int64_t done_this_run = 0;
  absl::Status failed;
  intake::v1::RescoredPage page;
  while (stream->Read(&page)) {
    for (int k = 0;
         k < page.changed_size() && summary.sample_changes.size() < 5; ++k) {
      summary.sample_changes.push_back(
          absl::StrJoin(page.changed(k).changes(), "; "));
    }
    cp.set_failed(cp.failed() + page.failed());
    cp.set_screened(cp.screened() + page.screened());
    cp.set_changed_route(cp.changed_route() + page.changed_route());
    cp.set_changed_band(cp.changed_band() + page.changed_band());
    cp.set_changed_flags(cp.changed_flags() + page.changed_flags());
    cp.set_cases_opened(cp.cases_opened() + page.cases_opened());
    done_this_run += page.screened();
    if (!page.next_page_token().empty())
      cp.set_after_page_token(page.next_page_token());
    if (!options_.dry_run) {
      failed = SaveCheckpoint(job, cp);
      if (!failed.ok()) break;
    }
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - started);
    if (progress) {
      progress(RescoreProgress{cp.screened(), total,
                               elapsed > 0 ? done_this_run / elapsed : 0});
    }
  }
  const bool stopped = stop.load();
  if (!failed.ok()) stream_ctx.TryCancel();
  finished_reading.store(true);
  stopper.join();
  grpc::Status ended = stream->Finish();
  if (!failed.ok()) return failed;
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
