#include "tools/rescore/rescore.h"

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status/status_util.h"
#include "common/util/names.h"
#include "services/intake/intake_core.h"

namespace aqueduct::tools {
namespace {

std::string RouteRuleOf(const scoring::v1::ScoringResult& r) {
  for (const auto& rule : r.rules()) {
    if (rule.rule_id().rfind("route.", 0) == 0 && rule.fired()) return rule.rule_id();
  }
  return "default route";
}

std::set<int> FlagsOf(const scoring::v1::ScoringResult& r) {
  std::set<int> out;
  for (const auto& f : r.safety_flags()) out.insert(f.kind());
  return out;
}

std::string FlagNames(const std::set<int>& flags) {
  std::vector<std::string> names;
  for (int f : flags) names.push_back(scoring::v1::SafetyFlagKind_Name(f));
  return absl::StrCat("[", absl::StrJoin(names, ", "), "]");
}

}  // namespace

ResultChanges Compare(const scoring::v1::ScoringResult& before, const scoring::v1::ScoringResult& after) {
  ResultChanges c;
  const auto rb = before.routing().primary_route(), ra = after.routing().primary_route();
  if (rb != ra) {
    c.route = true;
    c.lines.push_back(absl::StrCat("route: ", common::v1::Route_Name(rb), " -> ", common::v1::Route_Name(ra),
                                   " (", RouteRuleOf(before), " -> ", RouteRuleOf(after), ")"));
  }
  std::map<std::string, std::string> bands_before;
  for (const auto& s : before.scores()) bands_before[s.instrument_id()] = s.band();
  for (const auto& s : after.scores()) {
    auto it = bands_before.find(s.instrument_id());
    const std::string old_band = it == bands_before.end() ? "" : it->second;
    if (old_band != s.band()) {
      c.band = true;
      c.lines.push_back(absl::StrCat(s.instrument_id(), " band: ", old_band.empty() ? "none" : old_band,
                                     " -> ", s.band().empty() ? "none" : s.band()));
    }
  }
  const auto fb = FlagsOf(before), fa = FlagsOf(after);
  if (fb != fa) {
    c.flags = true;
    c.lines.push_back(absl::StrCat("safety flags: ", FlagNames(fb), " -> ", FlagNames(fa)));
  }
  return c;
}

absl::Status Rescorer::ScoreBatch(const std::vector<scoring::v1::ScoreBatchRequest>& requests,
                                  std::vector<scoring::v1::ScoreBatchResponse>* responses) {
  if (requests.empty()) return absl::OkStatus();
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto stream = scoring_->ScoreBatch(&ctx);
  // Write and read together: scoring answers in order, one per request.
  std::thread writer([&] {
    for (const auto& r : requests) {
      if (!stream->Write(r)) break;
    }
    stream->WritesDone();
  });
  scoring::v1::ScoreBatchResponse response;
  while (stream->Read(&response)) responses->push_back(response);
  writer.join();
  grpc::Status s = stream->Finish();
  if (!s.ok()) return Annotate(ToAbslStatus(s), "scoring batch stream");
  if (responses->size() != requests.size()) {
    return absl::UnavailableError("scoring batch stream ended early");
  }
  return absl::OkStatus();
}

absl::StatusOr<RescoreSummary> Rescorer::Run(const std::atomic<bool>& stop,
                                             const std::function<void(const RescoreProgress&)>& progress) {
  if (options_.ruleset_version.empty()) return absl::InvalidArgumentError("--ruleset: is required");
  if (options_.batch < 1) return absl::InvalidArgumentError("--batch: must be positive");
  const std::string job = options_.job.empty() ? absl::StrCat("rescore-", options_.ruleset_version) : options_.job;
  if (absl::Status s = ValidateIdSegment(job, "--job"); !s.ok()) return s;
  const absl::Time started = absl::Now();
  auto deadline = [] { return absl::Now() + absl::Seconds(30); };

  storage::v1::RescoreCheckpoint cp;
  cp.set_ruleset_version(options_.ruleset_version);
  if (!options_.dry_run) {
    auto saved = store_->GetCheckpoint(job, deadline());
    if (!saved.ok()) return saved.status();
    if (saved->has_value()) {
      if ((*saved)->ruleset_version() != options_.ruleset_version) {
        return absl::FailedPreconditionError(absl::StrCat("job ", job, " was for ruleset ",
                                                          (*saved)->ruleset_version(), "; use another --job"));
      }
      cp = **saved;
    }
  }
  RescoreSummary summary;
  auto total = store_->CountCompleted(options_.from_ms, options_.to_ms, deadline());
  if (!total.ok()) return total.status();
  int64_t done_this_run = 0;
  while (!cp.done()) {
    if (stop.load()) {
      summary.interrupted = true;
      break;
    }
    auto entries = store_->ScanCompleted(options_.from_ms, options_.to_ms, cp.after_time_ms(),
                                         cp.after_member(), options_.batch, deadline());
    if (!entries.ok()) return entries.status();
    if (entries->empty()) {
      cp.set_done(true);
      break;
    }
    std::vector<std::string> ids;
    for (const auto& e : *entries) ids.push_back(e.screening_id);
    auto stored = store_->ReadForRescore(ids, options_.ruleset_version, deadline());
    if (!stored.ok()) return stored.status();

    // Score what has no outcome under this version yet (a resumed batch
    // reuses the outcomes stored before the interruption).
    std::vector<scoring::v1::ScoreBatchRequest> requests;
    std::vector<size_t> request_of;  // entry index per request
    for (size_t i = 0; i < entries->size(); ++i) {
      const auto& fr = (*stored)[i];
      if (!fr.session.has_value() || fr.session->record.state() != intake::v1::COMPLETED ||
          !fr.session->result.has_value() || fr.session->record.user_id() != (*entries)[i].user_id) {
        continue;  // indexed before a completion that did not commit
      }
      if (options_.route.has_value() &&
          fr.session->result->scoring().routing().primary_route() != *options_.route) {
        continue;
      }
      if (fr.outcome.has_value()) continue;
      scoring::v1::ScoreBatchRequest r;
      r.set_correlation_id((*entries)[i].member);
      r.mutable_request()->set_ruleset_version(options_.ruleset_version);
      const auto& rec = fr.session->record;
      for (const auto& id : rec.instruments()) r.mutable_request()->add_administered_instruments(id);
      for (const auto& [item, answer] : rec.answers()) *r.mutable_request()->mutable_answers()->add_answers() = answer;
      // Map order is not stable across builds; scoring's result does not
      // depend on answer order, so sort for a reproducible request.
      auto* list = r.mutable_request()->mutable_answers()->mutable_answers();
      std::sort(list->begin(), list->end(),
                [](const auto& a, const auto& b) { return a.item_id() < b.item_id(); });
      requests.push_back(std::move(r));
      request_of.push_back(i);
    }
    std::vector<scoring::v1::ScoreBatchResponse> responses;
    if (absl::Status s = ScoreBatch(requests, &responses); !s.ok()) return s;

    std::map<size_t, scoring::v1::ScoringResult> fresh;
    for (size_t k = 0; k < responses.size(); ++k) {
      if (responses[k].has_error()) {
        cp.set_failed(cp.failed() + 1);
        continue;
      }
      fresh[request_of[k]] = responses[k].result();
    }
    std::vector<std::pair<std::string, storage::v1::ResultRecord>> outcomes;
    const int64_t now = absl::ToUnixMillis(absl::Now());
    for (const auto& [i, result] : fresh) {
      storage::v1::ResultRecord r;
      r.set_complete_time_ms(now);
      *r.mutable_scoring() = result;
      outcomes.emplace_back(ids[i], std::move(r));
    }
    if (!options_.dry_run) {
      if (absl::Status s = store_->PutOutcomes(outcomes, options_.ruleset_version, deadline()); !s.ok()) {
        return s;
      }
    }
    // Compare, count, and open re-review cases.
    referral::v1::CreateReferralsRequest cases;
    for (size_t i = 0; i < entries->size(); ++i) {
      const auto& fr = (*stored)[i];
      const scoring::v1::ScoringResult* after = nullptr;
      if (auto it = fresh.find(i); it != fresh.end()) after = &it->second;
      else if (fr.outcome.has_value()) after = &fr.outcome->scoring();
      if (after == nullptr) continue;
      const auto& before = fr.session->result->scoring();
      cp.set_screened(cp.screened() + 1);
      ++done_this_run;
      ResultChanges changes = Compare(before, *after);
      if (!changes.any()) continue;
      cp.set_changed_route(cp.changed_route() + changes.route);
      cp.set_changed_band(cp.changed_band() + changes.band);
      cp.set_changed_flags(cp.changed_flags() + changes.flags);
      if (summary.sample_changes.size() < 5) {
        summary.sample_changes.push_back(absl::StrJoin(changes.lines, "; "));
      }
      if (options_.dry_run) continue;
      referral::v1::CreateReferralRequest* req = cases.add_requests();
      req->set_request_id(absl::StrCat("rescore-", options_.ruleset_version, "-", ids[i]));
      req->set_screening(ScreeningName{fr.session->record.user_id(), ids[i]}.ToString());
      *req->mutable_result() = *after;
      *req->mutable_previous_result() = before;
      for (const auto& line : changes.lines) req->add_changes(line);
      req->set_location_state(intake::LocationStateOf(fr.session->record));
    }
    // One call per batch; creation is idempotent per screening and ruleset
    // version, so a batch retried after a crash creates nothing twice.
    for (int begin = 0; begin < cases.requests_size(); begin += 1000) {
      referral::v1::CreateReferralsRequest chunk;
      for (int k = begin; k < std::min(cases.requests_size(), begin + 1000); ++k) {
        *chunk.add_requests() = cases.requests(k);
      }
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
      ctx.AddMetadata("x-aqueduct-actor", "service:rescore");
      referral::v1::CreateReferralsResponse created;
      grpc::Status s = referral_->CreateReferrals(&ctx, chunk, &created);
      if (!s.ok()) return Annotate(ToAbslStatus(s), "referral (re-review cases)");
      cp.set_cases_opened(cp.cases_opened() + created.referrals_size());
    }
    cp.set_after_time_ms(entries->back().time_ms);
    cp.set_after_member(entries->back().member);
    if (!options_.dry_run) {
      if (absl::Status s = store_->PutCheckpoint(job, cp, deadline()); !s.ok()) return s;
    }
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - started);
    if (progress) {
      progress(RescoreProgress{cp.screened(), *total, elapsed > 0 ? done_this_run / elapsed : 0});
    }
    // Rate limit (protects a production Redis): stay under max_per_second.
    if (options_.max_per_second > 0) {
      const absl::Duration should_take = absl::Seconds(done_this_run / options_.max_per_second);
      const absl::Duration took = absl::Now() - started;
      if (should_take > took) absl::SleepFor(should_take - took);
    }
  }
  if (cp.done() && !options_.dry_run) {
    if (absl::Status s = store_->PutCheckpoint(job, cp, deadline()); !s.ok()) return s;
  }
  summary.counts = cp;
  summary.seconds = absl::ToDoubleSeconds(absl::Now() - started);
  return summary;
}

std::string SummaryJson(const RescoreSummary& s, const RescoreOptions& options) {
  const auto& c = s.counts;
  return absl::StrFormat(
      "{\"ruleset_version\":\"%s\",\"dry_run\":%s,\"interrupted\":%s,\"done\":%s,\"screened\":%d,"
      "\"changed_route\":%d,\"changed_band\":%d,\"changed_flags\":%d,\"failed\":%d,"
      "\"cases_opened\":%d,\"seconds\":%.3f}\n",
      c.ruleset_version(), options.dry_run ? "true" : "false", s.interrupted ? "true" : "false",
      c.done() ? "true" : "false", c.screened(), c.changed_route(), c.changed_band(), c.changed_flags(),
      c.failed(), c.cases_opened(), s.seconds);
}

}  // namespace aqueduct::tools
