// aqueductctl: a terminal client of the Aqueduct services, written only from
// the protos. Foundation subcommands:
//   aqueductctl demo --answers=1,2,0,1,1,0,0,0,1,1 [--user=demo] [--state=FL]
//       takes a PHQ-9 screening end to end (start, submit, complete) and
//       prints the result, the route and any crisis resources.
//   aqueductctl queue [--page_size=20]
//       lists the clinician queue.
//   aqueductctl health
//       asks each service's grpc.health.v1 status.
//   aqueductctl rescore --ruleset=v2 [--dry_run] ...
//       re-scores stored screenings under a ruleset version (batch job).
// Connection settings: --intake/--referral/--scoring or the environment
// (AQUEDUCT_INTAKE_ADDR, AQUEDUCT_REFERRAL_ADDR, AQUEDUCT_SCORING_ADDR);
// defaults match the local stack that deploy/run-local.sh starts.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/auth/grpc_auth.h"
#include "common/config/config.h"
#include "common/server/channels.h"
#include "common/server/health_client.h"
#include "common/server/server_runner.h"
#include "common/server/tls.h"
#include "common/util/ids.h"
#include "protos/intake/v1/intake_service.grpc.pb.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "tools/aqueductctl/scripted_answers.h"
#include "tools/rescore/rescore.h"

using aqueduct::config::EnvOr;

ABSL_FLAG(std::string, intake, EnvOr("AQUEDUCT_INTAKE_ADDR", "127.0.0.1:7100"),
          "Intake address. Env AQUEDUCT_INTAKE_ADDR.");
ABSL_FLAG(std::string, referral,
          EnvOr("AQUEDUCT_REFERRAL_ADDR", "127.0.0.1:7102"),
          "Referral address. Env AQUEDUCT_REFERRAL_ADDR.");
ABSL_FLAG(std::string, scoring,
          EnvOr("AQUEDUCT_SCORING_ADDR", "127.0.0.1:7101"),
          "Scoring address. Env AQUEDUCT_SCORING_ADDR.");
ABSL_FLAG(
    std::string, answers, "",
    "demo: PHQ-9 answers, ten comma-separated values 0-3 (items 1-9, then "
    "the difficulty item 10).");
ABSL_FLAG(std::string, user, "",
          "screen/results/demo: the person (users/<user>); default: the "
          "subject of --token, or "
          "\"demo\" with --dev_key.");
ABSL_FLAG(std::string, state, "NY", "demo: two-letter US state of location.");
ABSL_FLAG(
    std::string, set, "",
    "demo: more answers as item=value pairs, e.g. "
    "--set=ctx.age=40,gad7.1=3,asq.1=yes,ket.trials=two_or_more. Items not "
    "given get the lowest-burden answer.");
ABSL_FLAG(int32_t, page_size, 20, "queue: cases per page.");
ABSL_FLAG(std::string, actor, EnvOr("AQUEDUCT_ACTOR", "dr-demo"),
          "Clinician commands with --dev_key: the clinician's id. Env "
          "AQUEDUCT_ACTOR.");
ABSL_FLAG(std::string, role, EnvOr("AQUEDUCT_ROLE", ""),
          "token: the role (patient, clinician, physician, batch, operator, "
          "service). Clinician "
          "commands with --dev_key: clinician or physician (default "
          "physician). Env AQUEDUCT_ROLE.");
ABSL_FLAG(std::string, states, EnvOr("AQUEDUCT_STATES", ""),
          "token / clinician commands with --dev_key: licensed US states, "
          "comma-separated "
          "(default: every state). Env AQUEDUCT_STATES.");
ABSL_FLAG(std::string, sub, "",
          "token: the subject (user id, clinician id or service name).");
ABSL_FLAG(int32_t, ttl_s, 3600, "token: lifetime in seconds.");
ABSL_FLAG(std::string, token, EnvOr("AQUEDUCT_TOKEN", ""),
          "Bearer token for every call (from your identity provider, or "
          "`aqueductctl token`). Env "
          "AQUEDUCT_TOKEN.");
ABSL_FLAG(std::string, dev_key, EnvOr("AQUEDUCT_DEV_KEY", ""),
          "Local development only: a PEM private key to mint tokens with (the "
          "run command creates "
          "one and prints it); used when --token is not given. Env "
          "AQUEDUCT_DEV_KEY.");
ABSL_FLAG(std::string, dev_key_id, EnvOr("AQUEDUCT_DEV_KEY_ID", "dev"),
          "Key id of --dev_key. Env AQUEDUCT_DEV_KEY_ID.");
ABSL_FLAG(std::string, issuer, EnvOr("AQUEDUCT_AUTH_ISSUER", "aqueduct-local"),
          "Issuer of minted tokens (the services' --auth_issuer). Env "
          "AQUEDUCT_AUTH_ISSUER.");
ABSL_FLAG(std::string, audience, EnvOr("AQUEDUCT_AUTH_AUDIENCE", "aqueduct"),
          "Audience of minted tokens (the services' --auth_audience). Env "
          "AQUEDUCT_AUTH_AUDIENCE.");
ABSL_FLAG(int32_t, timeout_s, 10, "Deadline of each call, seconds.");
ABSL_FLAG(std::string, ruleset, "",
          "rescore: ruleset version to apply (required).");
ABSL_FLAG(std::string, from, "",
          "rescore: only screenings completed on or after YYYY-MM-DD (UTC).");
ABSL_FLAG(std::string, to, "",
          "rescore: only screenings completed on or before YYYY-MM-DD (UTC).");
ABSL_FLAG(
    std::string, route, "",
    "rescore: only screenings whose current route is this (e.g. THERAPY).");
ABSL_FLAG(bool, dry_run, false,
          "rescore: compute and report the changes, write nothing.");
ABSL_FLAG(double, max_per_second, 0,
          "rescore: rate limit in screenings per second (0 = none).");
ABSL_FLAG(int32_t, batch, 1000,
          "rescore: screenings per batch (and per checkpoint), 1..5000.");
ABSL_FLAG(std::string, job, "",
          "rescore: job name for the checkpoint (default rescore-<ruleset>).");
ABSL_FLAG(std::string, summary_json, "",
          "rescore: also write the summary as JSON to this file.");
ABSL_FLAG(std::string, screening, "",
          "screen: resume this screening (users/<user>/screenings/<id>) "
          "instead of starting one.");
ABSL_FLAG(std::string, case_name, "",
          "claim/decide/case: the case, referrals/<id>.");
ABSL_FLAG(int32_t, lease_s, 0,
          "claim: lease in seconds (0 = the service default).");
ABSL_FLAG(std::string, action, "", "decide: confirm, change or withdraw.");
ABSL_FLAG(std::string, new_route, "",
          "decide: the new route for --action=change (e.g. THERAPY).");
ABSL_FLAG(std::string, reason, "", "decide: the written reason (required).");
ABSL_FLAG(std::string, cursor, "", "watch: resume after this cursor.");

namespace {

namespace intake = aqueduct::intake::v1;
namespace referral = aqueduct::referral::v1;

// Every US state and DC: the dev clinician's default licences.
constexpr char kAllStates[] =
    "AL,AK,AZ,AR,CA,CO,CT,DE,DC,FL,GA,HI,ID,IL,IN,IA,KS,KY,LA,ME,MD,MA,MI,MN,"
    "MS,MO,MT,NE,NV,NH,NJ,NM,NY,NC,"
    "ND,OH,OK,OR,PA,RI,SC,SD,TN,TX,UT,VT,VA,WA,WV,WI,WY";

// The token every call of this command carries (set up in main).
std::unique_ptr<aqueduct::auth::TokenSource> g_token;

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

aqueduct::auth::Claims DevClaims(const std::string& role,
                                 const std::string& subject) {
  aqueduct::auth::Claims c;
  c.issuer = absl::GetFlag(FLAGS_issuer);
  c.audience = absl::GetFlag(FLAGS_audience);
  c.role = role;
  c.subject = subject;
  if (role == "clinician" || role == "physician") {
    const std::string states = absl::GetFlag(FLAGS_states).empty()
                                   ? kAllStates
                                   : absl::GetFlag(FLAGS_states);
    c.states = absl::StrSplit(states, ',', absl::SkipEmpty());
  }
  return c;
}

// --token as given; else, with --dev_key, a token minted for `role` and
// `subject`; else an error saying how to get one.
absl::StatusOr<std::unique_ptr<aqueduct::auth::TokenSource>> TokenSourceFor(
    const std::string& role, const std::string& subject) {
  if (!absl::GetFlag(FLAGS_token).empty()) {
    return std::make_unique<aqueduct::auth::StaticToken>(
        absl::GetFlag(FLAGS_token));
  }
  if (!absl::GetFlag(FLAGS_dev_key).empty()) {
    auto source = aqueduct::auth::MintingTokenSource::FromFile(
        absl::GetFlag(FLAGS_dev_key), absl::GetFlag(FLAGS_dev_key_id),
        DevClaims(role, subject));
    if (!source.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("--dev_key: ", source.status().message()));
    return std::unique_ptr<aqueduct::auth::TokenSource>(std::move(*source));
  }
  return absl::UnauthenticatedError(
      "no token: pass --token (or AQUEDUCT_TOKEN), or --dev_key "
      "(AQUEDUCT_DEV_KEY) on the local stack, "
      "which the run command prints");
}

// The subject a token names, read without verifying (the services verify):
// the default user for a person's commands.
std::string SubjectOf(const std::string& token) {
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  std::string payload;
  if (parts.size() != 3 || !absl::WebSafeBase64Unescape(parts[1], &payload))
    return "";
  const size_t at = payload.find("\"sub\":\"");
  if (at == std::string::npos) return "";
  const size_t end = payload.find('"', at + 7);
  return end == std::string::npos ? "" : payload.substr(at + 7, end - at - 7);
}

std::string UserId() {
  if (!absl::GetFlag(FLAGS_user).empty()) return absl::GetFlag(FLAGS_user);
  if (!absl::GetFlag(FLAGS_token).empty()) {
    std::string sub = SubjectOf(absl::GetFlag(FLAGS_token));
    if (!sub.empty()) return sub;
  }
  return "demo";
}

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout_s))));
  if (g_token != nullptr) {
    if (absl::Status s = aqueduct::auth::Attach(*ctx, *g_token); !s.ok()) {
      std::cerr << "aqueductctl: " << s.message() << "\n";
    }
  }
  return ctx;
}

int Fail(const std::string& what, const grpc::Status& s) {
  std::cerr << "aqueductctl: " << what << " failed: " << s.error_code() << " "
            << s.error_message() << "\n";
  return 1;
}

// TLS with --tls_ca (the local stack's CA: the run command prints it), or
// plaintext with --insecure_plaintext (development).
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials() {
  static auto* creds = [] {
    auto c = aqueduct::server::ChannelCredentialsFor(
        aqueduct::server::TlsConfigFromFlags());
    if (!c.ok()) {
      std::cerr << "aqueductctl: " << c.status().message() << "\n";
      std::exit(2);
    }
    return new std::shared_ptr<grpc::ChannelCredentials>(*c);
  }();
  return *creds;
}

std::shared_ptr<grpc::Channel> Channel(const std::string& addr) {
  return grpc::CreateChannel(addr, ChannelCredentials());
}

// What a person's route waits for, after the route's name.
const char* PendingNote(const intake::PersonRoute& route) {
  if (!route.pending_review()) return "";
  return route.route() == aqueduct::common::v1::UNDER_PHYSICIAN_REVIEW
             ? " (pending physician review)"
             : " (pending clinician review)";
}

int Demo() {
  std::vector<std::string> parts =
      absl::StrSplit(absl::GetFlag(FLAGS_answers), ',', absl::SkipEmpty());
  if (!parts.empty() && parts.size() != 10) {
    std::cerr << "aqueductctl demo: --answers needs 10 values 0-3 "
                 "(PHQ-9 items 1-9, then item 10), e.g. "
                 "--answers=1,2,0,1,1,0,0,0,0,1\n";
    return 2;
  }
  auto overrides = aqueduct::tools::ParseOverrides(absl::GetFlag(FLAGS_set));
  if (!overrides.ok()) {
    std::cerr << "aqueductctl demo: --set: " << overrides.status().message()
              << "\n";
    return 2;
  }
  for (size_t i = 0; i < parts.size(); ++i)
    (*overrides)[absl::StrCat("phq9.", i + 1)] = parts[i];
  // Context answers from flags unless --set gives them.
  overrides->try_emplace("ctx.state", absl::GetFlag(FLAGS_state));
  overrides->try_emplace("ctx.age", "35");
  overrides->try_emplace("ctx.role", "other");
  overrides->try_emplace("ctx.works", "yes");
  overrides->try_emplace("ctx.works_with_clients", "no");
  overrides->try_emplace("ctx.sex", "not_stated");

  auto stub =
      intake::IntakeService::NewStub(Channel(absl::GetFlag(FLAGS_intake)));
  intake::StartScreeningRequest start;
  start.set_parent(absl::StrCat("users/", UserId()));
  start.set_request_id(aqueduct::NewId());
  start.set_consent_version("demo-consent-1");
  intake::Screening screening;
  if (auto s = stub->StartScreening(Ctx().get(), start, &screening); !s.ok()) {
    return Fail("StartScreening", s);
  }
  std::cout << "started " << screening.name() << "\n";

  std::string etag = screening.etag();
  for (int page = 0; page < 40; ++page) {
    intake::GetNextItemsRequest next_req;
    next_req.set_name(screening.name());
    intake::NextItems next;
    if (auto s = stub->GetNextItems(Ctx().get(), next_req, &next); !s.ok()) {
      return Fail("GetNextItems", s);
    }
    if (next.items().empty()) break;
    intake::SubmitAnswersRequest submit;
    submit.set_name(screening.name());
    submit.set_request_id(aqueduct::NewId());
    submit.set_etag(next.etag());
    for (const auto& ask : next.items()) {
      auto answer = aqueduct::tools::ScriptedAnswer(ask.item(), *overrides);
      if (!answer.ok()) {
        std::cerr << "aqueductctl demo: " << answer.status().message() << "\n";
        return 2;
      }
      *submit.add_answers() = *answer;
    }
    intake::SubmitAnswersResponse submitted;
    if (auto s = stub->SubmitAnswers(Ctx().get(), submit, &submitted);
        !s.ok()) {
      return Fail("SubmitAnswers", s);
    }
    etag = submitted.screening().etag();
    std::cout << "page " << page + 1 << " (" << next.items(0).instrument_id()
              << "): answered " << submitted.next().progress().answered()
              << ", remaining " << submitted.next().progress().remaining()
              << "\n";
  }

  intake::CompleteScreeningRequest complete;
  complete.set_name(screening.name());
  complete.set_request_id(aqueduct::NewId());
  complete.set_etag(etag);
  intake::CompleteScreeningResponse done;
  if (auto s = stub->CompleteScreening(Ctx().get(), complete, &done); !s.ok()) {
    return Fail("CompleteScreening", s);
  }
  for (const auto& score : done.result().scoring().scores()) {
    if (score.completeness() != aqueduct::scoring::v1::COMPLETE) continue;
    if (score.mean() > 0 || score.instrument_id().rfind("cbi", 0) == 0) {
      std::printf("%-13s %6.1f  %s\n", score.instrument_id().c_str(),
                  score.mean(), score.band_label().c_str());
    } else if (score.has_total()) {
      std::printf("%-13s %6d  %s%s\n", score.instrument_id().c_str(),
                  score.total(), score.band_label().c_str(),
                  score.screen_positive() ? " (screen positive)" : "");
    }
  }
  // (The person's view carries no profile: that is for clinicians.)
  std::cout << "route: "
            << aqueduct::common::v1::Route_Name(done.route().route())
            << PendingNote(done.route()) << "\n"
            << done.route().message() << "\n";
  for (const auto& item : done.route().self_help_plan()) {
    std::cout << "  - " << item.title() << ": " << item.text() << "\n";
  }
  if (!done.case_name().empty())
    std::cout << "case: " << done.case_name() << "\n";
  if (done.has_crisis_resources()) {
    std::cout << "\n" << done.crisis_resources().message() << "\n";
    for (const auto& c : done.crisis_resources().contacts()) {
      std::cout << "  * " << c.name() << ": " << c.how() << " (" << c.when()
                << ")\n";
    }
  }
  std::cout << "referral hand-off: "
            << intake::HandoffState_Name(done.handoff()) << "\n";
  return 0;
}

int Queue() {
  auto stub = referral::ReferralService::NewStub(
      Channel(absl::GetFlag(FLAGS_referral)));
  referral::ListQueueRequest req;
  req.set_page_size(absl::GetFlag(FLAGS_page_size));
  referral::ListQueueResponse resp;
  auto ctx = Ctx();
  if (auto s = stub->ListQueue(ctx.get(), req, &resp); !s.ok()) {
    return Fail("ListQueue", s);
  }
  std::printf("%-8s %-16s %-20s %-5s %s\n", "PRIORITY", "ROUTE", "STATE", "LOC",
              "CASE");
  for (const auto& c : resp.cases()) {
    std::printf("%-8s %-16s %-20s %-5s %s\n",
                referral::Priority_Name(c.priority()).c_str(),
                aqueduct::common::v1::Route_Name(c.current_route()).c_str(),
                referral::CaseState_Name(c.state()).c_str(),
                c.location_state().empty() ? "-" : c.location_state().c_str(),
                c.name().c_str());
  }
  if (resp.cases().empty()) std::printf("(queue is empty)\n");
  if (!resp.next_page_token().empty())
    std::printf("(more cases: ask for a larger --page_size)\n");
  return 0;
}

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

absl::StatusOr<int64_t> DayMillis(const std::string& day, bool end_of_day,
                                  const char* flag) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%d", day, absl::UTCTimeZone(), &t, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected YYYY-MM-DD, got \"", day, "\""));
  }
  if (end_of_day) t += absl::Hours(24) - absl::Milliseconds(1);
  return absl::ToUnixMillis(t);
}

int Rescore() {
  aqueduct::tools::RescoreOptions options;
  options.ruleset_version = absl::GetFlag(FLAGS_ruleset);
  options.job = absl::GetFlag(FLAGS_job);
  options.dry_run = absl::GetFlag(FLAGS_dry_run);
  options.max_per_second = absl::GetFlag(FLAGS_max_per_second);
  options.batch = absl::GetFlag(FLAGS_batch);
  if (options.ruleset_version.empty()) {
    std::cerr << "aqueductctl rescore: --ruleset is required (see ListRulesets "
                 "/ aqueductctl health)\n";
    return 2;
  }
  if (!absl::GetFlag(FLAGS_from).empty()) {
    auto ms = DayMillis(absl::GetFlag(FLAGS_from), false, "--from");
    if (!ms.ok()) {
      std::cerr << "aqueductctl rescore: " << ms.status().message() << "\n";
      return 2;
    }
    options.from_ms = *ms;
  }
  if (!absl::GetFlag(FLAGS_to).empty()) {
    auto ms = DayMillis(absl::GetFlag(FLAGS_to), true, "--to");
    if (!ms.ok()) {
      std::cerr << "aqueductctl rescore: " << ms.status().message() << "\n";
      return 2;
    }
    options.to_ms = *ms;
  }
  if (!absl::GetFlag(FLAGS_route).empty()) {
    aqueduct::common::v1::Route route;
    if (!aqueduct::common::v1::Route_Parse(absl::GetFlag(FLAGS_route),
                                           &route) ||
        route == aqueduct::common::v1::ROUTE_UNSPECIFIED) {
      std::cerr << "aqueductctl rescore: --route: not a route (SELF_HELP, "
                   "THERAPY, KETAMINE_REVIEW, "
                   "CRISIS_URGENT, CRISIS_ACUTE)\n";
      return 2;
    }
    options.route = route;
  }
  // Everything the job reads and writes is intake's, through intake's
  // RescoreService: the job holds its token and nothing else.
  auto intake = aqueduct::intake::v1::RescoreService::NewStub(
      aqueduct::server::PeerChannel(absl::GetFlag(FLAGS_intake),
                                    ChannelCredentials(),
                                    aqueduct::server::kBatchMaxReceiveBytes));
  // Batch channels: a Rescore response can carry thousands of full results.
  auto scoring = aqueduct::scoring::v1::ScoringService::NewStub(
      aqueduct::server::PeerChannel(absl::GetFlag(FLAGS_scoring),
                                    ChannelCredentials(),
                                    aqueduct::server::kBatchMaxReceiveBytes));
  auto referral = aqueduct::referral::v1::ReferralService::NewStub(
      Channel(absl::GetFlag(FLAGS_referral)));

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const bool tty = isatty(STDOUT_FILENO);
  aqueduct::tools::Rescorer job(intake.get(), scoring.get(), referral.get(),
                                g_token.get(), options);
  auto summary =
      job.Run(g_stop, [&](const aqueduct::tools::RescoreProgress& p) {
        if (!tty) return;
        const double frac =
            p.total > 0 ? std::min(1.0, static_cast<double>(p.done) / p.total)
                        : 1.0;
        const int width = 30, filled = static_cast<int>(frac * width);
        const double eta =
            p.per_second > 0 ? (p.total - p.done) / p.per_second : 0;
        std::printf("\r[%s%s] %lld/%lld  %.1fk/s  ETA %02d:%02d ",
                    std::string(filled, '#').c_str(),
                    std::string(width - filled, ' ').c_str(),
                    static_cast<long long>(p.done),
                    static_cast<long long>(p.total), p.per_second / 1000,
                    static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
        std::fflush(stdout);
      });
  if (tty) std::printf("\n");
  if (!summary.ok()) {
    std::cerr << "aqueductctl rescore: " << summary.status().message()
              << "\n(progress is checkpointed; run the same command again to "
                 "resume)\n";
    return 1;
  }
  const auto& c = summary->counts;
  std::printf("%-22s %s%s\n", "ruleset", c.ruleset_version().c_str(),
              options.dry_run ? " (dry run: nothing written)" : "");
  std::printf("%-22s %lld\n", "screened", static_cast<long long>(c.screened()));
  std::printf("%-22s %lld\n", "changed: route",
              static_cast<long long>(c.changed_route()));
  std::printf("%-22s %lld\n", "changed: band",
              static_cast<long long>(c.changed_band()));
  std::printf("%-22s %lld\n", "changed: safety flags",
              static_cast<long long>(c.changed_flags()));
  std::printf("%-22s %lld\n", "re-review cases",
              static_cast<long long>(c.cases_opened()));
  std::printf("%-22s %lld\n", "failed", static_cast<long long>(c.failed()));
  std::printf("%-22s %.1f s (%.0f/s)\n", "time", summary->seconds,
              summary->seconds > 0 ? c.screened() / summary->seconds : 0.0);
  for (const auto& line : summary->sample_changes)
    std::printf("  e.g. %s\n", line.c_str());
  if (!absl::GetFlag(FLAGS_summary_json).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_summary_json))
        << aqueduct::tools::SummaryJson(*summary, options);
  }
  if (summary->interrupted) {
    std::printf("interrupted: run the same command again to resume\n");
    return 130;
  }
  return 0;
}

// ---- Interactive screening
// ----------------------------------------------------

// Asks one item on the terminal; returns nullopt at end of input.
std::optional<aqueduct::common::v1::Answer> AskItem(
    const aqueduct::intake::v1::ItemToAsk& ask) {
  const auto& item = ask.item();
  std::printf("\n%s\n", item.text().c_str());
  if (item.kind() == aqueduct::scoring::v1::CHOICE) {
    for (int i = 0; i < item.options_size(); ++i) {
      std::printf("  %d) %s\n", i + 1, item.options(i).text().c_str());
    }
  } else if (item.kind() == aqueduct::scoring::v1::INTEGER) {
    std::printf("  (a number from %d to %d)\n", item.min_value(),
                item.max_value());
  } else {
    std::printf("  (a code, e.g. %s)\n", item.codes(0).c_str());
  }
  for (;;) {
    std::printf("> (or 'd' to decline) ");
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) return std::nullopt;
    line = std::string(absl::StripAsciiWhitespace(line));
    aqueduct::common::v1::Answer a;
    a.set_item_id(item.id());
    if (line == "d") {
      a.set_declined(true);
      return a;
    }
    int n = 0;
    if (item.kind() == aqueduct::scoring::v1::CHOICE) {
      if (absl::SimpleAtoi(line, &n) && n >= 1 && n <= item.options_size()) {
        a.set_option_value(item.options(n - 1).value());
        return a;
      }
    } else if (item.kind() == aqueduct::scoring::v1::INTEGER) {
      if (absl::SimpleAtoi(line, &n) && n >= item.min_value() &&
          n <= item.max_value()) {
        a.set_integer_value(n);
        return a;
      }
    } else {
      std::string code = absl::AsciiStrToUpper(line);
      if (std::find(item.codes().begin(), item.codes().end(), code) !=
          item.codes().end()) {
        a.set_code_value(code);
        return a;
      }
    }
    std::printf("Please choose one of the listed answers.\n");
  }
}

void PrintCrisis(const aqueduct::common::v1::CrisisResources& c) {
  std::printf("\n*** %s\n", c.message().c_str());
  for (const auto& contact : c.contacts()) {
    std::printf("*** %s: %s (%s)\n", contact.name().c_str(),
                contact.how().c_str(), contact.when().c_str());
  }
  std::printf("\n");
}

int Screen() {
  auto stub =
      intake::IntakeService::NewStub(Channel(absl::GetFlag(FLAGS_intake)));
  std::string name = absl::GetFlag(FLAGS_screening);
  if (name.empty()) {
    intake::StartScreeningRequest start;
    start.set_parent(absl::StrCat("users/", UserId()));
    start.set_request_id(aqueduct::NewId());
    start.set_consent_version("cli-consent-1");
    if (!absl::GetFlag(FLAGS_state).empty())
      start.mutable_context()->set_location_state(absl::GetFlag(FLAGS_state));
    intake::Screening screening;
    if (auto s = stub->StartScreening(Ctx().get(), start, &screening); !s.ok())
      return Fail("StartScreening", s);
    name = screening.name();
    std::printf(
        "This is a screening, not a diagnosis. If you are in danger, call or "
        "text 988 or call 911.\n");
  }
  std::printf(
      "Screening %s\n(to continue later: aqueductctl screen --screening=%s)\n",
      name.c_str(), name.c_str());
  bool crisis_shown = false;
  std::string last_instrument;
  std::string etag;
  for (int page = 0; page < 60; ++page) {
    intake::GetNextItemsRequest next_req;
    next_req.set_name(name);
    intake::NextItems next;
    if (auto s = stub->GetNextItems(Ctx().get(), next_req, &next); !s.ok())
      return Fail("GetNextItems", s);
    etag = next.etag();
    if (next.has_crisis_resources() && !crisis_shown) {
      PrintCrisis(next.crisis_resources());
      crisis_shown = true;
    }
    if (next.items().empty()) break;
    const auto& first = next.items(0);
    std::printf("\n[%d answered, %d to go]\n", next.progress().answered(),
                next.progress().remaining());
    if (first.instrument_id() != last_instrument) {
      last_instrument = first.instrument_id();
      if (!first.stem().empty()) std::printf("%s\n", first.stem().c_str());
      if (!first.copyright().empty())
        std::printf("(%s)\n", first.copyright().c_str());
    }
    intake::SubmitAnswersRequest submit;
    submit.set_name(name);
    submit.set_request_id(aqueduct::NewId());
    submit.set_etag(next.etag());
    for (const auto& ask : next.items()) {
      auto a = AskItem(ask);
      if (!a.has_value()) {
        std::printf(
            "\nPaused. Continue with: aqueductctl screen --screening=%s\n",
            name.c_str());
        return 0;
      }
      *submit.add_answers() = *a;
    }
    intake::SubmitAnswersResponse submitted;
    if (auto s = stub->SubmitAnswers(Ctx().get(), submit, &submitted); !s.ok())
      return Fail("SubmitAnswers", s);
    if (submitted.next().has_crisis_resources() && !crisis_shown) {
      PrintCrisis(submitted.next().crisis_resources());
      crisis_shown = true;
    }
  }
  intake::CompleteScreeningRequest complete;
  complete.set_name(name);
  complete.set_request_id(aqueduct::NewId());
  complete.set_etag(etag);
  intake::CompleteScreeningResponse done;
  if (auto s = stub->CompleteScreening(Ctx().get(), complete, &done); !s.ok())
    return Fail("CompleteScreening", s);
  if (done.has_crisis_resources() && !crisis_shown)
    PrintCrisis(done.crisis_resources());
  std::printf("\nDone. %s\n", done.route().message().c_str());
  for (const auto& item : done.route().self_help_plan()) {
    std::printf("  - %s: %s\n", item.title().c_str(), item.text().c_str());
  }
  std::printf("route: %s%s\n",
              aqueduct::common::v1::Route_Name(done.route().route()).c_str(),
              PendingNote(done.route()));
  return 0;
}

// ---- Clinician commands -----------------------------------------------------

std::unique_ptr<grpc::ClientContext> AsClinician() { return Ctx(); }

void PrintCase(const referral::Referral& c) {
  std::printf("%s  %s  %s  %s  priority %s%s\n", c.name().c_str(),
              referral::CaseState_Name(c.state()).c_str(),
              aqueduct::common::v1::Route_Name(c.current_route()).c_str(),
              c.location_state().empty() ? "-" : c.location_state().c_str(),
              referral::Priority_Name(c.priority()).c_str(),
              c.overdue() ? "  OVERDUE" : "");
  if (!c.claimed_by().empty())
    std::printf("  held by %s\n", c.claimed_by().c_str());
  if (!c.screening_finished()) {
    std::printf(
        "  SCREENING NOT FINISHED: opened from a risk answer; the result "
        "scores the answers given so far\n");
  } else if (c.opened_early()) {
    std::printf(
        "  opened from a risk answer before the screening was finished; full "
        "result attached\n");
  }
  for (const auto& a : c.risk_answers()) {
    std::printf("  risk answer %s: \"%s\" -> %s\n", a.item_id().c_str(),
                a.question().c_str(), a.answer().c_str());
  }
  for (const auto& f : c.result().routing().secondary_flags())
    std::printf("  flag: %s\n", f.text().c_str());
  for (const auto& line : c.changes())
    std::printf("  changed: %s\n", line.c_str());
  for (const auto& rule : c.result().rules()) {
    if (!rule.fired() && !rule.undecided()) continue;
    std::string inputs;
    for (const auto& in : rule.inputs())
      absl::StrAppend(&inputs, inputs.empty() ? "" : ", ", in.name(), "=",
                      in.value());
    std::printf("  %s %s: %s [%s]\n", rule.undecided() ? "undecided" : "fired",
                rule.rule_id().c_str(), rule.threshold().c_str(),
                inputs.c_str());
  }
}

int NeedCase(const char* cmd) {
  std::cerr
      << "aqueductctl " << cmd
      << ": --case_name=referrals/<id> is required (see aqueductctl queue)\n";
  return 2;
}

int Claim() {
  if (absl::GetFlag(FLAGS_case_name).empty()) return NeedCase("claim");
  auto stub = referral::ReferralService::NewStub(
      Channel(absl::GetFlag(FLAGS_referral)));
  referral::ClaimCaseRequest req;
  req.set_name(absl::GetFlag(FLAGS_case_name));
  req.set_lease_seconds(absl::GetFlag(FLAGS_lease_s));
  referral::Referral c;
  if (auto s = stub->ClaimCase(AsClinician().get(), req, &c); !s.ok())
    return Fail("ClaimCase", s);
  std::printf(
      "claimed until %s\n",
      absl::FormatTime(absl::FromUnixMillis(c.lease_expire_time_ms())).c_str());
  PrintCase(c);
  return 0;
}

int Decide() {
  if (absl::GetFlag(FLAGS_case_name).empty()) return NeedCase("decide");
  const std::string action = absl::GetFlag(FLAGS_action);
  referral::DecideCaseRequest req;
  if (action == "confirm") {
    req.mutable_decision()->set_action(referral::Decision::CONFIRM);
  } else if (action == "change") {
    req.mutable_decision()->set_action(referral::Decision::CHANGE_ROUTE);
    aqueduct::common::v1::Route route;
    if (!aqueduct::common::v1::Route_Parse(absl::GetFlag(FLAGS_new_route),
                                           &route)) {
      std::cerr << "aqueductctl decide: --new_route: not a route (SELF_HELP, "
                   "THERAPY, KETAMINE_REVIEW, ...)\n";
      return 2;
    }
    req.mutable_decision()->set_new_route(route);
  } else if (action == "withdraw") {
    req.mutable_decision()->set_action(referral::Decision::WITHDRAW);
  } else {
    std::cerr
        << "aqueductctl decide: --action must be confirm, change or withdraw\n";
    return 2;
  }
  req.mutable_decision()->set_reason(absl::GetFlag(FLAGS_reason));
  auto stub = referral::ReferralService::NewStub(
      Channel(absl::GetFlag(FLAGS_referral)));
  referral::GetCaseRequest get;
  get.set_name(absl::GetFlag(FLAGS_case_name));
  referral::Referral current;
  if (auto s = stub->GetCase(AsClinician().get(), get, &current); !s.ok())
    return Fail("GetCase", s);
  req.set_name(current.name());
  req.set_etag(current.etag());
  req.set_request_id(aqueduct::NewId());
  referral::Referral decided;
  if (auto s = stub->DecideCase(AsClinician().get(), req, &decided); !s.ok())
    return Fail("DecideCase", s);
  PrintCase(decided);
  return 0;
}

int Case() {
  if (absl::GetFlag(FLAGS_case_name).empty()) return NeedCase("case");
  auto stub = referral::ReferralService::NewStub(
      Channel(absl::GetFlag(FLAGS_referral)));
  referral::GetCaseRequest get;
  get.set_name(absl::GetFlag(FLAGS_case_name));
  referral::Referral c;
  if (auto s = stub->GetCase(AsClinician().get(), get, &c); !s.ok())
    return Fail("GetCase", s);
  PrintCase(c);
  referral::ListAuditEventsRequest audit;
  audit.set_parent(c.name());
  for (;;) {
    referral::ListAuditEventsResponse page;
    if (auto s = stub->ListAuditEvents(AsClinician().get(), audit, &page);
        !s.ok())
      return Fail("ListAuditEvents", s);
    for (const auto& e : page.events()) {
      std::printf("  %s  %-16s %-10s %-9s %s -> %s\n",
                  absl::FormatTime("%Y-%m-%d %H:%M:%S",
                                   absl::FromUnixMillis(e.time_ms()),
                                   absl::UTCTimeZone())
                      .c_str(),
                  e.kind().c_str(), e.actor().c_str(), e.actor_role().c_str(),
                  aqueduct::common::v1::Route_Name(e.route_before()).c_str(),
                  aqueduct::common::v1::Route_Name(e.route_after()).c_str());
    }
    if (page.next_page_token().empty()) break;
    audit.set_page_token(page.next_page_token());
  }
  return 0;
}

int Watch() {
  auto stub = referral::ReferralService::NewStub(
      Channel(absl::GetFlag(FLAGS_referral)));
  std::string cursor = absl::GetFlag(FLAGS_cursor);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  while (!g_stop) {
    grpc::ClientContext ctx;
    if (g_token != nullptr) (void)aqueduct::auth::Attach(ctx, *g_token);
    referral::WatchQueueRequest req;
    req.set_cursor(cursor);
    auto stream = stub->WatchQueue(&ctx, req);
    std::thread canceller([&] {
      while (!g_stop) absl::SleepFor(absl::Milliseconds(100));
      ctx.TryCancel();
    });
    referral::QueueEvent e;
    while (stream->Read(&e)) {
      cursor = e.cursor();
      if (e.kind() == "watching") continue;
      std::printf("%-9s ", e.kind().c_str());
      PrintCase(e.referral());
      std::fflush(stdout);
    }
    grpc::Status s = stream->Finish();
    g_stop = g_stop || s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
             s.error_code() == grpc::StatusCode::UNAUTHENTICATED;
    if (!g_stop) {
      std::fprintf(stderr, "watch: reconnecting after %s (cursor %s)\n",
                   s.error_message().c_str(), cursor.c_str());
      absl::SleepFor(absl::Seconds(1));
    }
    canceller.join();
  }
  std::printf("stopped; resume with --cursor=%s\n", cursor.c_str());
  return 0;
}

int Results() {
  auto stub =
      intake::IntakeService::NewStub(Channel(absl::GetFlag(FLAGS_intake)));
  intake::ListMyResultsRequest req;
  req.set_parent(absl::StrCat("users/", UserId()));
  req.set_page_size(absl::GetFlag(FLAGS_page_size));
  intake::ListMyResultsResponse resp;
  if (auto s = stub->ListMyResults(Ctx().get(), req, &resp); !s.ok())
    return Fail("ListMyResults", s);
  if (resp.results().empty()) std::printf("(no completed screenings)\n");
  for (const auto& r : resp.results()) {
    int phq9 = -1;
    for (const auto& sc : r.scoring().scores()) {
      if (sc.instrument_id() == "phq9" &&
          sc.completeness() == aqueduct::scoring::v1::COMPLETE)
        phq9 = sc.total();
    }
    std::string trend;
    if (r.has_trend() && !r.trend().previous().empty()) {
      trend = absl::StrCat(
          "change ", r.trend().phq9_change() > 0 ? "+" : "",
          r.trend().phq9_change(),
          r.trend().phq9_meaningful_change() ? " (meaningful)" : "",
          r.trend().phq9_response() ? ", response" : "",
          r.trend().phq9_remission() ? ", remission" : "");
    }
    // The person's view: their scores and trend; routes under review are a
    // clinician's business until decided (see the referral's person view).
    std::printf(
        "%s  PHQ-9 %s  %s%s\n",
        absl::FormatTime("%Y-%m-%d", absl::FromUnixMillis(r.complete_time_ms()),
                         absl::UTCTimeZone())
            .c_str(),
        phq9 >= 0 ? std::to_string(phq9).c_str() : "incomplete", trend.c_str(),
        r.scoring().routing().self_help_plan_size() > 0 ? "  (self-help plan)"
                                                        : "");
  }
  return 0;
}

// Mints a development token with --dev_key and prints it.
int Token() {
  if (absl::GetFlag(FLAGS_dev_key).empty()) {
    std::cerr << "aqueductctl token: --dev_key (AQUEDUCT_DEV_KEY) is required: "
                 "the local dev signing key\n";
    return 2;
  }
  aqueduct::auth::Role role;
  if (!aqueduct::auth::ParseRole(absl::GetFlag(FLAGS_role), &role)) {
    std::cerr << "aqueductctl token: --role: one of patient, clinician, "
                 "physician, batch, operator, service\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_sub).empty() || absl::GetFlag(FLAGS_ttl_s) <= 0) {
    std::cerr << "aqueductctl token: --sub is required and --ttl_s must be "
                 "positive\n";
    return 2;
  }
  aqueduct::auth::Claims c =
      DevClaims(absl::GetFlag(FLAGS_role), absl::GetFlag(FLAGS_sub));
  c.expires = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_ttl_s));
  const std::string pem = ReadFileOrEmpty(absl::GetFlag(FLAGS_dev_key));
  auto token = aqueduct::auth::Sign(c, pem, absl::GetFlag(FLAGS_dev_key_id));
  if (!token.ok()) {
    std::cerr << "aqueductctl token: " << absl::GetFlag(FLAGS_dev_key) << ": "
              << token.status().message() << "\n";
    return 2;
  }
  std::cout << *token << "\n";
  return 0;
}

int Health() {
  int bad = 0;
  for (const auto& [name, addr] :
       std::vector<std::pair<std::string, std::string>>{
           {"intake", absl::GetFlag(FLAGS_intake)},
           {"scoring", absl::GetFlag(FLAGS_scoring)},
           {"referral", absl::GetFlag(FLAGS_referral)}}) {
    auto serving = aqueduct::server::CheckHealth(
        Channel(addr), "",
        absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout_s)));
    std::string state = !serving.ok() ? "UNREACHABLE"
                        : *serving    ? "SERVING"
                                      : "NOT_SERVING";
    if (state != "SERVING") ++bad;
    std::printf("%-9s %-22s %s\n", name.c_str(), addr.c_str(), state.c_str());
  }
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "aqueductctl <command> [flags]\n"
      "  screen  [--user=me] [--state=NY] | "
      "--screening=users/me/screenings/<id>   take or resume a screening\n"
      "  results [--user=me]                                              your "
      "results and trend\n"
      "  queue   [--actor=dr-demo] [--role=physician] [--states=NY,FL]      "
      "the clinician queue\n"
      "  claim   --case_name=referrals/<id> [--lease_s=600]\n"
      "  decide  --case_name=referrals/<id> --action=confirm|change|withdraw "
      "[--new_route=THERAPY] --reason=\"...\"\n"
      "  case    --case_name=referrals/<id>                               the "
      "case and its audit trail\n"
      "  watch   [--cursor=...]                                           live "
      "queue changes\n"
      "  demo   --answers=1,2,0,1,1,0,0,0,0,1 [--set=item=value,...] "
      "[--user=demo] [--state=FL]\n"
      "  queue  [--page_size=20] [--actor=dr-demo]\n"
      "  health\n"
      "  token   --role=patient|clinician|physician|batch|operator|service "
      "--sub=<id> [--states=NY,FL] [--ttl_s=3600]\n"
      "          mints a development token with --dev_key (the local stack's "
      "key)\n"
      "Every call carries --token (AQUEDUCT_TOKEN), or one minted with "
      "--dev_key (AQUEDUCT_DEV_KEY).\n"
      "  rescore --ruleset=v2 [--from=YYYY-MM-DD] [--to=YYYY-MM-DD] "
      "[--route=THERAPY]\n"
      "          [--dry_run] [--max_per_second=N] [--summary_json=FILE] "
      "");
  aqueduct::server::ConfigureProcess();
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::cerr << absl::ProgramUsageMessage() << "\n";
    return 2;
  }
  std::string cmd = args[1];
  if (cmd == "token") return Token();
  if (cmd != "health") {
    // Who each command acts as when minting with --dev_key.
    std::string role = "patient", subject = UserId();
    if (cmd == "queue" || cmd == "claim" || cmd == "decide" || cmd == "case" ||
        cmd == "watch") {
      role = absl::GetFlag(FLAGS_role).empty() ? "physician"
                                               : absl::GetFlag(FLAGS_role);
      subject = absl::GetFlag(FLAGS_actor);
    } else if (cmd == "rescore") {
      role = "batch";
      subject = "rescore";
    }
    auto source = TokenSourceFor(role, subject);
    if (!source.ok()) {
      std::cerr << "aqueductctl " << cmd << ": " << source.status().message()
                << "\n";
      return 2;
    }
    g_token = std::move(*source);
  }
  if (cmd == "demo") return Demo();
  if (cmd == "queue") return Queue();
  if (cmd == "health") return Health();
  if (cmd == "rescore") return Rescore();
  if (cmd == "screen") return Screen();
  if (cmd == "claim") return Claim();
  if (cmd == "decide") return Decide();
  if (cmd == "case") return Case();
  if (cmd == "watch") return Watch();
  if (cmd == "results") return Results();
  std::cerr << "aqueductctl: unknown command \"" << cmd << "\"\n"
            << absl::ProgramUsageMessage() << "\n";
  return 2;
}
