// aqueductctl: a terminal client of the Aqueduct services, written only
// from the protos, in the shape kubectl and grpcurl users know:
//   aqueductctl [global flags] <command> [NAME] [flags]
// `aqueductctl help` lists the commands, global flags and exit codes;
// `aqueductctl help <command>` gives a command's flags and examples (the
// tables below, tools/aqueductctl/cli.h). Connection defaults match the
// local stack that deploy/run-local.sh starts.

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
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
#include "common/util/names.h"
#include "protos/intake/v1/fhir_export_service.grpc.pb.h"
#include "protos/intake/v1/intake_service.grpc.pb.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "tools/aqueductctl/cli.h"
#include "tools/aqueductctl/scripted_answers.h"
#include "tools/rescore/rescore.h"

using aqueduct::config::EnvOr;

namespace {

namespace intake = aqueduct::intake::v1;
namespace referral = aqueduct::referral::v1;

// The token every call of this command carries (set up in main).
std::unique_ptr<aqueduct::auth::TokenSource> g_token;

// The parsed command line (set up in main) and its flags' values; numbers
// are checked in main before any command runs.
const aqueduct::tools::Invocation* g_inv = nullptr;
const std::string& Str(const std::string& flag) { return g_inv->Str(flag); }
bool Bool(const std::string& flag) { return g_inv->Bool(flag); }
int64_t IntFlag(const std::string& flag) { return g_inv->Int(flag).value(); }
double DoubleFlag(const std::string& flag) {
  return g_inv->Double(flag).value();
}
bool JsonOut() { return g_inv->Str("output") == "json"; }

// NAME of claim, decide and case: "referrals/<id>", or the id alone.
std::string CaseName() {
  if (g_inv->args.empty()) return "";
  const std::string& n = g_inv->args[0];
  return absl::StartsWith(n, "referrals/") ? n : "referrals/" + n;
}
// NAME of screen: a screening to resume ("" starts one).
std::string ScreeningArg() { return g_inv->args.empty() ? "" : g_inv->args[0]; }

// Prints a message as one line of JSON (fields named as in the protos'
// JSON mapping), for -o json.
void PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  std::printf("%s\n", out.c_str());
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

aqueduct::auth::Claims DevClaims(const std::string& role,
                                 const std::string& subject) {
  aqueduct::auth::Claims c;
  c.issuer = Str("issuer");
  c.audience = Str("audience");
  c.role = role;
  c.subject = subject;
  if (role == "clinician" || role == "physician") {
    c.states = Str("states").empty()
                   ? aqueduct::UsStateCodes()
                   : std::vector<std::string>(
                         absl::StrSplit(Str("states"), ',', absl::SkipEmpty()));
  }
  return c;
}

// --token as given; else, with --dev-key, a token minted for `role` and
// `subject`; else an error saying how to get one.
absl::StatusOr<std::unique_ptr<aqueduct::auth::TokenSource>> TokenSourceFor(
    const std::string& role, const std::string& subject) {
  if (!Str("token").empty()) {
    return std::make_unique<aqueduct::auth::StaticToken>(Str("token"));
  }
  if (!Str("dev-key").empty()) {
    auto source = aqueduct::auth::MintingTokenSource::FromFile(
        Str("dev-key"), Str("dev-key-id"), DevClaims(role, subject));
    if (!source.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("--dev-key: ", source.status().message()));
    return std::unique_ptr<aqueduct::auth::TokenSource>(std::move(*source));
  }
  return absl::UnauthenticatedError(
      "no token: pass --token (or AQUEDUCT_TOKEN), or --dev-key "
      "(AQUEDUCT_DEV_KEY) on the local stack, "
      "which the run command prints");
}

std::string UserId() {
  if (!Str("user").empty()) return Str("user");
  if (!Str("token").empty()) {
    std::string sub = aqueduct::tools::TokenSubject(Str("token"));
    if (!sub.empty()) return sub;
  }
  return "demo";
}

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Seconds(IntFlag("timeout"))));
  if (g_token != nullptr) {
    if (absl::Status s = aqueduct::auth::Attach(*ctx, *g_token); !s.ok()) {
      std::cerr << "aqueductctl: " << s.message() << "\n";
    }
  }
  return ctx;
}

// A failed call: "Error: <CODE>: <message> (<rpc>)" on stderr, and the exit
// code 64 + the gRPC status code (cli.h).
int Fail(const std::string& what, const grpc::Status& s) {
  std::cerr << "Error: "
            << absl::StatusCodeToString(
                   static_cast<absl::StatusCode>(s.error_code()))
            << ": " << s.error_message() << " (" << what << ")\n";
  return aqueduct::tools::kExitCallBase + static_cast<int>(s.error_code());
}

// TLS with --tls_ca (the local stack's CA: the run command prints it), or
// plaintext with --insecure_plaintext (development).
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials() {
  static auto* creds = [] {
    aqueduct::server::TlsConfig tls;
    tls.ca_file = Str("tls-ca");
    tls.insecure_plaintext = Bool("insecure-plaintext");
    auto c = aqueduct::server::ChannelCredentialsFor(tls);
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
      absl::StrSplit(Str("answers"), ',', absl::SkipEmpty());
  if (!parts.empty() && parts.size() != 10) {
    std::cerr << "aqueductctl demo: --answers needs 10 values 0-3 "
                 "(PHQ-9 items 1-9, then item 10), e.g. "
                 "--answers=1,2,0,1,1,0,0,0,0,1\n";
    return aqueduct::tools::kExitUsage;
  }
  auto overrides = aqueduct::tools::ParseOverrides(Str("set"));
  if (!overrides.ok()) {
    std::cerr << "aqueductctl demo: --set: " << overrides.status().message()
              << "\n";
    return aqueduct::tools::kExitUsage;
  }
  for (size_t i = 0; i < parts.size(); ++i)
    (*overrides)[absl::StrCat("phq9.", i + 1)] = parts[i];
  // Context answers from flags unless --set gives them.
  overrides->try_emplace("ctx.state", Str("state"));
  overrides->try_emplace("ctx.age", "35");
  overrides->try_emplace("ctx.role", "other");
  overrides->try_emplace("ctx.works", "yes");
  overrides->try_emplace("ctx.works_with_clients", "no");
  overrides->try_emplace("ctx.sex", "not_stated");

  auto stub = intake::IntakeService::NewStub(Channel(Str("intake")));
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
  // The start's reply holds the first page and each submit's the next one.
  intake::NextItems next = screening.next();
  for (int page = 0; page < 40; ++page) {
    if (next.items().empty()) break;
    intake::SubmitAnswersRequest submit;
    submit.set_name(screening.name());
    submit.set_request_id(aqueduct::NewId());
    submit.set_etag(next.etag());
    for (const auto& ask : next.items()) {
      auto answer = aqueduct::tools::ScriptedAnswer(ask.item(), *overrides);
      if (!answer.ok()) {
        std::cerr << "aqueductctl demo: " << answer.status().message() << "\n";
        return aqueduct::tools::kExitUsage;
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
    next = submitted.next();
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
  auto stub = referral::ReferralService::NewStub(Channel(Str("referral")));
  referral::ListQueueRequest req;
  req.set_page_size(static_cast<int32_t>(IntFlag("page-size")));
  req.set_page_token(Str("page-token"));
  int shown = 0;
  if (!JsonOut()) {
    std::printf("%-8s %-16s %-20s %-5s %s\n", "PRIORITY", "ROUTE", "STATE",
                "LOC", "CASE");
  }
  while (true) {
    referral::ListQueueResponse resp;
    if (auto s = stub->ListQueue(Ctx().get(), req, &resp); !s.ok())
      return Fail("ListQueue", s);
    for (const auto& c : resp.cases()) {
      ++shown;
      if (JsonOut()) {
        PrintJson(c);
        continue;
      }
      std::printf("%-8s %-16s %-20s %-5s %s\n",
                  referral::Priority_Name(c.priority()).c_str(),
                  aqueduct::common::v1::Route_Name(c.current_route()).c_str(),
                  referral::CaseState_Name(c.state()).c_str(),
                  c.location_state().empty() ? "-" : c.location_state().c_str(),
                  c.name().c_str());
    }
    if (resp.next_page_token().empty()) break;
    if (!Bool("all")) {
      if (!JsonOut()) {
        std::printf("(more: --page-token=%s, or --all)\n",
                    resp.next_page_token().c_str());
      }
      break;
    }
    req.set_page_token(resp.next_page_token());
  }
  if (shown == 0 && !JsonOut()) std::printf("(queue is empty)\n");
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

// export --fhir: one screening's Bundle to stdout, or a completion range
// as NDJSON, one file per resource type (the FHIR Bulk Data layout), in
// --out.
int Export() {
  if (!Bool("fhir")) {
    std::cerr << "aqueductctl export: --fhir is required (the only format)\n";
    return aqueduct::tools::kExitUsage;
  }
  auto stub = intake::FhirExportService::NewStub(Channel(Str("intake")));
  if (!g_inv->args.empty()) {
    intake::ExportScreeningRequest req;
    req.set_name(g_inv->args[0]);
    req.set_bundle_type(Str("bundle"));
    intake::FhirJson bundle;
    if (auto s = stub->ExportScreening(Ctx().get(), req, &bundle); !s.ok())
      return Fail("ExportScreening", s);
    std::cout << bundle.json() << "\n";
    return 0;
  }
  const std::string dir = Str("out");
  if (dir.empty()) {
    std::cerr << "aqueductctl export: give a screening name, or --out=DIR "
                 "for a range\n";
    return aqueduct::tools::kExitUsage;
  }
  intake::ExportScreeningsRequest req;
  for (const auto& [flag, end] : {std::pair<const char*, bool>{"from", false},
                                  std::pair<const char*, bool>{"to", true}}) {
    if (Str(flag).empty()) continue;
    auto ms = DayMillis(Str(flag), end, flag);
    if (!ms.ok()) {
      std::cerr << "aqueductctl export: --" << ms.status().message() << "\n";
      return aqueduct::tools::kExitUsage;
    }
    end ? req.set_to_time_ms(*ms) : req.set_from_time_ms(*ms);
  }
  req.set_page_size(static_cast<int32_t>(IntFlag("page-size")));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    std::cerr << "aqueductctl export: cannot make " << dir << "\n";
    return aqueduct::tools::kExitUsage;
  }
  // Raw answers leave here: files this user alone can read.
  ::umask(077);
  std::map<std::string, std::unique_ptr<std::ofstream>> files;
  std::map<std::string, int64_t> counts;
  auto write = [&](const std::string& type, const std::string& json) {
    auto& f = files[type];
    if (f == nullptr) {
      f = std::make_unique<std::ofstream>(dir + "/" + type + ".ndjson",
                                          std::ios::trunc);
    }
    *f << json << "\n";
    ++counts[type];
  };
  {
    intake::GetQuestionnairesRequest qreq;
    intake::FhirPage questionnaires;
    if (auto s = stub->GetQuestionnaires(Ctx().get(), qreq, &questionnaires);
        !s.ok())
      return Fail("GetQuestionnaires", s);
    for (const auto& r : questionnaires.resources())
      write(r.resource_type(), r.json());
  }
  auto ctx = Ctx();
  auto reader = stub->ExportScreenings(ctx.get(), req);
  intake::FhirPage page;
  int64_t screenings = 0;
  while (reader->Read(&page)) {
    screenings += page.screenings();
    for (const auto& r : page.resources()) write(r.resource_type(), r.json());
  }
  if (auto s = reader->Finish(); !s.ok()) return Fail("ExportScreenings", s);
  for (auto& [type, f] : files) f->close();
  std::printf("exported %lld screenings to %s:\n",
              static_cast<long long>(screenings), dir.c_str());
  for (const auto& [type, n] : counts)
    std::printf("  %-24s %lld\n", (type + ".ndjson").c_str(),
                static_cast<long long>(n));
  return 0;
}

int Rescore() {
  aqueduct::tools::RescoreOptions options;
  options.ruleset_version = Str("ruleset");
  options.job = Str("job");
  options.dry_run = Bool("dry-run");
  options.max_per_second = DoubleFlag("max-per-second");
  options.batch = IntFlag("batch");
  if (options.ruleset_version.empty()) {
    std::cerr << "aqueductctl rescore: --ruleset is required (see ListRulesets "
                 "/ aqueductctl health)\n";
    return aqueduct::tools::kExitUsage;
  }
  if (!Str("from").empty()) {
    auto ms = DayMillis(Str("from"), false, "--from");
    if (!ms.ok()) {
      std::cerr << "aqueductctl rescore: " << ms.status().message() << "\n";
      return aqueduct::tools::kExitUsage;
    }
    options.from_ms = *ms;
  }
  if (!Str("to").empty()) {
    auto ms = DayMillis(Str("to"), true, "--to");
    if (!ms.ok()) {
      std::cerr << "aqueductctl rescore: " << ms.status().message() << "\n";
      return aqueduct::tools::kExitUsage;
    }
    options.to_ms = *ms;
  }
  if (!Str("route").empty()) {
    aqueduct::common::v1::Route route;
    if (!aqueduct::common::v1::Route_Parse(Str("route"), &route) ||
        route == aqueduct::common::v1::ROUTE_UNSPECIFIED) {
      std::cerr << "aqueductctl rescore: --route: not a route (SELF_HELP, "
                   "THERAPY, KETAMINE_REVIEW, "
                   "CRISIS_URGENT, CRISIS_ACUTE)\n";
      return aqueduct::tools::kExitUsage;
    }
    options.route = route;
  }
  // Everything the job reads and writes is intake's, through intake's
  // RescoreService: the job holds its token and nothing else. A batch
  // channel: a page can carry thousands of full results.
  auto intake = aqueduct::intake::v1::RescoreService::NewStub(
      aqueduct::server::PeerChannel(Str("intake"), ChannelCredentials(),
                                    aqueduct::server::kBatchMaxReceiveBytes));
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const bool tty = isatty(STDOUT_FILENO);
  aqueduct::tools::Rescorer job(intake.get(), g_token.get(), options);
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
  if (!Str("summary-json").empty()) {
    std::ofstream(Str("summary-json"))
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
  auto stub = intake::IntakeService::NewStub(Channel(Str("intake")));
  std::string name = ScreeningArg();
  if (name.empty()) {
    intake::StartScreeningRequest start;
    start.set_parent(absl::StrCat("users/", UserId()));
    start.set_request_id(aqueduct::NewId());
    start.set_consent_version("cli-consent-1");
    if (!Str("state").empty())
      start.mutable_context()->set_location_state(Str("state"));
    intake::Screening screening;
    if (auto s = stub->StartScreening(Ctx().get(), start, &screening); !s.ok())
      return Fail("StartScreening", s);
    name = screening.name();
    std::printf(
        "This is a screening, not a diagnosis. If you are in danger, call or "
        "text 988 or call 911.\n");
  }
  std::printf("Screening %s\n(to continue later: aqueductctl screen %s)\n",
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
        std::printf("\nPaused. Continue with: aqueductctl screen %s\n",
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

int Claim() {
  auto stub = referral::ReferralService::NewStub(Channel(Str("referral")));
  referral::ClaimCaseRequest req;
  req.set_name(CaseName());
  req.set_lease_seconds(IntFlag("lease"));
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
  const std::string action = Str("action");
  referral::DecideCaseRequest req;
  if (action == "confirm") {
    req.mutable_decision()->set_action(referral::Decision::CONFIRM);
  } else if (action == "change") {
    req.mutable_decision()->set_action(referral::Decision::CHANGE_ROUTE);
    aqueduct::common::v1::Route route;
    if (!aqueduct::common::v1::Route_Parse(Str("new-route"), &route)) {
      std::cerr << "aqueductctl decide: --new-route: not a route (SELF_HELP, "
                   "THERAPY, KETAMINE_REVIEW, ...)\n";
      return aqueduct::tools::kExitUsage;
    }
    req.mutable_decision()->set_new_route(route);
  } else if (action == "withdraw") {
    req.mutable_decision()->set_action(referral::Decision::WITHDRAW);
  } else {
    std::cerr
        << "aqueductctl decide: --action must be confirm, change or withdraw\n";
    return aqueduct::tools::kExitUsage;
  }
  req.mutable_decision()->set_reason(Str("reason"));
  auto stub = referral::ReferralService::NewStub(Channel(Str("referral")));
  referral::GetCaseRequest get;
  get.set_name(CaseName());
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
  auto stub = referral::ReferralService::NewStub(Channel(Str("referral")));
  referral::GetCaseRequest get;
  get.set_name(CaseName());
  referral::Referral c;
  if (auto s = stub->GetCase(AsClinician().get(), get, &c); !s.ok())
    return Fail("GetCase", s);
  if (JsonOut()) {
    PrintJson(c);  // then its audit events, one a line
  } else {
    PrintCase(c);
  }
  referral::ListAuditEventsRequest audit;
  audit.set_parent(c.name());
  for (;;) {
    referral::ListAuditEventsResponse page;
    if (auto s = stub->ListAuditEvents(AsClinician().get(), audit, &page);
        !s.ok())
      return Fail("ListAuditEvents", s);
    for (const auto& e : page.events()) {
      if (JsonOut()) {
        PrintJson(e);
        continue;
      }
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
  auto stub = referral::ReferralService::NewStub(Channel(Str("referral")));
  std::string cursor = Str("cursor");
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
      if (JsonOut()) {
        PrintJson(e);
      } else {
        std::printf("%-9s ", e.kind().c_str());
        PrintCase(e.referral());
      }
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
  std::fprintf(JsonOut() ? stderr : stdout,
               "stopped; resume with --cursor=%s\n", cursor.c_str());
  return 0;
}

int Results() {
  auto stub = intake::IntakeService::NewStub(Channel(Str("intake")));
  intake::ListMyResultsRequest req;
  req.set_parent(absl::StrCat("users/", UserId()));
  req.set_page_size(IntFlag("page-size"));
  intake::ListMyResultsResponse resp;
  if (auto s = stub->ListMyResults(Ctx().get(), req, &resp); !s.ok())
    return Fail("ListMyResults", s);
  if (JsonOut()) {
    for (const auto& r : resp.results()) PrintJson(r);
    return 0;
  }
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

// Mints a development token with --dev-key and prints it.
int Token() {
  if (Str("dev-key").empty()) {
    std::cerr << "aqueductctl token: --dev-key (AQUEDUCT_DEV_KEY) is required: "
                 "the local dev signing key\n";
    return aqueduct::tools::kExitUsage;
  }
  aqueduct::auth::Role role;
  if (!aqueduct::auth::ParseRole(Str("role"), &role)) {
    std::cerr << "aqueductctl token: --role: one of patient, clinician, "
                 "physician, batch, operator, service\n";
    return aqueduct::tools::kExitUsage;
  }
  if (Str("sub").empty() || IntFlag("ttl") <= 0) {
    std::cerr << "aqueductctl token: --sub is required and --ttl must be "
                 "positive\n";
    return aqueduct::tools::kExitUsage;
  }
  aqueduct::auth::Claims c = DevClaims(Str("role"), Str("sub"));
  c.expires = absl::Now() + absl::Seconds(IntFlag("ttl"));
  const std::string pem = ReadFileOrEmpty(Str("dev-key"));
  auto token = aqueduct::auth::Sign(c, pem, Str("dev-key-id"));
  if (!token.ok()) {
    std::cerr << "aqueductctl token: " << Str("dev-key") << ": "
              << token.status().message() << "\n";
    return aqueduct::tools::kExitUsage;
  }
  std::cout << *token << "\n";
  return 0;
}

int Health() {
  int bad = 0;
  for (const auto& [name, addr] :
       std::vector<std::pair<std::string, std::string>>{
           {"intake", Str("intake")},
           {"scoring", Str("scoring")},
           {"referral", Str("referral")}}) {
    auto serving = aqueduct::server::CheckHealth(
        Channel(addr), "", absl::Now() + absl::Seconds(IntFlag("timeout")));
    std::string state = !serving.ok() ? "UNREACHABLE"
                        : *serving    ? "SERVING"
                                      : "NOT_SERVING";
    if (state != "SERVING") ++bad;
    if (JsonOut()) {
      std::printf("{\"service\":\"%s\",\"address\":\"%s\",\"status\":\"%s\"}\n",
                  name.c_str(), absl::CEscape(addr).c_str(), state.c_str());
    } else {
      std::printf("%-9s %-22s %s\n", name.c_str(), addr.c_str(), state.c_str());
    }
  }
  return bad == 0 ? 0 : 1;
}

// The command line: global flags, then each command's own (cli.h).
aqueduct::tools::Cli MakeCli() {
  using aqueduct::tools::FlagSpec;
  using aqueduct::tools::VerbSpec;
  std::vector<FlagSpec> globals = {
      {"intake", "ADDR", "intake's address (env AQUEDUCT_INTAKE_ADDR)",
       EnvOr("AQUEDUCT_INTAKE_ADDR", "127.0.0.1:7100")},
      {"referral", "ADDR", "referral's address (env AQUEDUCT_REFERRAL_ADDR)",
       EnvOr("AQUEDUCT_REFERRAL_ADDR", "127.0.0.1:7102")},
      {"scoring", "ADDR", "scoring's address (env AQUEDUCT_SCORING_ADDR)",
       EnvOr("AQUEDUCT_SCORING_ADDR", "127.0.0.1:7101")},
      {"token", "JWT",
       "bearer token every call carries, from your identity provider or "
       "'token' (env AQUEDUCT_TOKEN)",
       EnvOr("AQUEDUCT_TOKEN", "")},
      {"dev-key", "PEM",
       "local development only: a private key to mint a token per command "
       "with, when --token is not given (env AQUEDUCT_DEV_KEY)",
       EnvOr("AQUEDUCT_DEV_KEY", "")},
      {"dev-key-id", "ID", "key id of --dev-key (env AQUEDUCT_DEV_KEY_ID)",
       EnvOr("AQUEDUCT_DEV_KEY_ID", "dev")},
      {"issuer", "ISS", "issuer of minted tokens (env AQUEDUCT_AUTH_ISSUER)",
       EnvOr("AQUEDUCT_AUTH_ISSUER", "aqueduct-local")},
      {"audience", "AUD",
       "audience of minted tokens (env AQUEDUCT_AUTH_AUDIENCE)",
       EnvOr("AQUEDUCT_AUTH_AUDIENCE", "aqueduct")},
      {"user", "ID",
       "the person, for a person's commands; default: the subject of "
       "--token, or \"demo\" with --dev-key",
       ""},
      {"actor", "ID",
       "with --dev-key, the clinician for clinician commands (env "
       "AQUEDUCT_ACTOR)",
       EnvOr("AQUEDUCT_ACTOR", "dr-demo")},
      {"role", "ROLE",
       "with --dev-key: clinician or physician for clinician commands "
       "(default physician); any role for 'token' (env AQUEDUCT_ROLE)",
       EnvOr("AQUEDUCT_ROLE", "")},
      {"states", "LIST",
       "with --dev-key, licensed US states, comma-separated (default every "
       "state; env AQUEDUCT_STATES)",
       EnvOr("AQUEDUCT_STATES", "")},
      {"tls-ca", "PEM",
       "the CA the services' certificates are checked against (env "
       "AQUEDUCT_TLS_CA)",
       EnvOr("AQUEDUCT_TLS_CA", "")},
      {"insecure-plaintext", "",
       "development only: no TLS (env AQUEDUCT_INSECURE_PLAINTEXT=1)",
       EnvOr("AQUEDUCT_INSECURE_PLAINTEXT", "") == "1" ? "true" : "false"},
      {"timeout", "SECONDS", "deadline of each call", "10"},
  };
  std::vector<VerbSpec> verbs = {
      {"screen",
       "[SCREENING]",
       0,
       1,
       "take a screening in the terminal, or resume one",
       "Asks each question and reads the answer's number from stdin; an empty "
       "input pauses. SCREENING (users/<user>/screenings/<id>) resumes one.",
       {"aqueductctl screen --user=me",
        "aqueductctl screen users/me/screenings/4f2a9c"},
       {{"state", "XX", "your US state, two letters", ""}}},
      {"results",
       "",
       0,
       0,
       "your completed screenings and PHQ-9 trend",
       "",
       {"aqueductctl results --user=me", "aqueductctl results -o json"},
       {{"page-size", "N", "results per page", "20"}},
       true},
      {"demo",
       "",
       0,
       0,
       "a whole screening from scripted answers",
       "Starts, answers and completes a screening, then prints the scores, "
       "the route and any crisis resources. Items not given get the "
       "lowest-burden answer.",
       {"aqueductctl demo --answers=1,1,0,1,1,0,0,0,0,1",
        "aqueductctl demo --answers=2,2,2,2,1,1,1,0,0,2 --state=FL",
        "aqueductctl demo --set=ctx.age=40,asq.1=yes"},
       {{"answers", "LIST",
         "PHQ-9 answers: ten values 0-3 (items 1-9, then item 10)", ""},
        {"set", "PAIRS", "more answers as item=value pairs, comma-separated",
         ""},
        {"state", "XX", "the person's US state", "NY"}}},
      {"queue",
       "",
       0,
       0,
       "the clinician queue, most urgent first",
       "",
       {"aqueductctl queue", "aqueductctl queue --all -o json",
        "aqueductctl queue --actor=nurse --role=clinician --states=NY"},
       {{"page-size", "N", "cases per page", "20"},
        {"page-token", "TOKEN", "the page to show (from the page before)", ""},
        {"all", "", "every page", ""}},
       true},
      {"claim",
       "NAME",
       1,
       1,
       "claim a case (referrals/<id>, or the id)",
       "",
       {"aqueductctl claim referrals/4f2a9c-v1",
        "aqueductctl claim 4f2a9c-v1 --lease=900"},
       {{"lease", "SECONDS", "how long the claim holds (0: the default)",
         "0"}}},
      {"decide",
       "NAME",
       1,
       1,
       "decide a claimed case",
       "Every decision needs a written reason; ketamine reviews are for "
       "physicians only.",
       {"aqueductctl decide referrals/4f2a9c-v1 --action=confirm "
        "--reason=\"called; plan agreed\"",
        "aqueductctl decide 4f2a9c-v1 --action=change --new-route=THERAPY "
        "--reason=\"prefers therapy\""},
       {{"action", "ACTION", "confirm, change or withdraw", ""},
        {"new-route", "ROUTE", "the route for --action=change (e.g. THERAPY)",
         ""},
        {"reason", "TEXT", "the written reason (required)", ""}}},
      {"case",
       "NAME",
       1,
       1,
       "a case and its audit trail",
       "",
       {"aqueductctl case referrals/4f2a9c-v1",
        "aqueductctl case 4f2a9c-v1 -o json"},
       {},
       true},
      {"watch",
       "",
       0,
       0,
       "follow queue changes live (Ctrl-C stops)",
       "",
       {"aqueductctl watch", "aqueductctl watch --cursor=1733300000000-0"},
       {{"cursor", "CURSOR", "resume after this cursor", ""}},
       true},
      {"rescore",
       "",
       0,
       0,
       "re-score stored screenings under a ruleset (batch job)",
       "Runs as the batch identity through intake alone (intake has scoring "
       "re-score and opens the re-review cases in referral); "
       "checkpointed: run the same command again to resume.",
       {"aqueductctl rescore --ruleset=v2 --dry-run",
        "aqueductctl rescore --ruleset=v2 --from=2026-11-01 "
        "--max-per-second=500"},
       {{"ruleset", "VERSION", "the ruleset version to apply (required)", ""},
        {"from", "DAY",
         "only screenings completed on or after YYYY-MM-DD "
         "(UTC)",
         ""},
        {"to", "DAY", "only screenings completed on or before YYYY-MM-DD", ""},
        {"route", "ROUTE", "only screenings whose route is this", ""},
        {"dry-run", "", "compute and report, write nothing", ""},
        {"max-per-second", "RATE", "rate limit (0: none)", "0"},
        {"batch", "N", "screenings per page and checkpoint, 1..5000", "1000"},
        {"job", "NAME", "checkpoint name (default rescore-<ruleset>)", ""},
        {"summary-json", "FILE", "also write the summary as JSON here", ""}}},
      {"export",
       "[NAME]",
       0,
       1,
       "export completed screenings as FHIR R4",
       "With NAME (users/{user}/screenings/{id}), that screening's resources "
       "as one Bundle on stdout. Without, every screening completed in "
       "--from..--to as NDJSON in --out, one file per resource type (FHIR "
       "Bulk Data), the catalog's Questionnaires included. Every export is "
       "recorded in intake's export audit. With --dev-key it acts as --role "
       "(the batch identity by default; --role=patient --user=ID for a "
       "person's own, --role=clinician|physician --actor=ID --states=... for "
       "a clinician's).",
       {"aqueductctl export --fhir --from=2026-12-01 --out=export/",
        "aqueductctl export --fhir users/me/screenings/4f2a9c --role=patient "
        "--user=me --bundle=transaction"},
       {{"fhir", "", "FHIR R4 (required: the only format)", ""},
        {"from", "DAY", "completed on or after YYYY-MM-DD (UTC)", ""},
        {"to", "DAY", "completed on or before YYYY-MM-DD (default: now)", ""},
        {"out", "DIR", "where the NDJSON files go (a range)", ""},
        {"bundle", "TYPE", "collection or transaction (one screening)",
         "collection"},
        {"page-size", "N", "screenings per page, 1..500", "100"}}},
      {"token",
       "",
       0,
       0,
       "mint a development token with --dev-key",
       "",
       {"aqueductctl token --role=patient --sub=me",
        "aqueductctl token --role=clinician --sub=nurse --states=NY,NJ"},
       {{"sub", "ID", "the subject (user, clinician or service id)", ""},
        {"ttl", "SECONDS", "lifetime", "3600"}}},
      {"health",
       "",
       0,
       0,
       "each service's health",
       "",
       {"aqueductctl health", "aqueductctl health -o json"},
       {},
       true},
      {"completion",
       "SHELL",
       1,
       1,
       "shell completion (bash)",
       "",
       {"source <(aqueductctl completion bash)"},
       {}},
  };
  return aqueduct::tools::Cli("aqueductctl", std::move(globals),
                              std::move(verbs));
}

}  // namespace

int main(int argc, char** argv) {
  aqueduct::server::ConfigureProcess();
  const aqueduct::tools::Cli cli = MakeCli();
  auto inv = cli.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!inv.ok()) {
    std::cerr << "Error: " << inv.status().message() << "\n";
    return aqueduct::tools::kExitUsage;
  }
  g_inv = &*inv;
  const std::string& cmd = inv->verb;
  if (cmd == "help") {
    if (inv->args.empty()) {
      std::cout << cli.Usage();
      return 0;
    }
    auto help = cli.Help(inv->args[0]);
    if (!help.ok()) {
      std::cerr << "Error: " << help.status().message() << "\n";
      return aqueduct::tools::kExitUsage;
    }
    std::cout << *help;
    return 0;
  }
  // Numbers first, so no command starts with a bad one.
  for (const auto& v : cli.verbs()) {
    if (v.name != cmd) continue;
    for (const auto& f : v.flags) {
      if (f.value == "N" || f.value == "SECONDS") {
        if (auto n = inv->Int(f.name); !n.ok()) {
          std::cerr << "Error: " << n.status().message() << "\n";
          return aqueduct::tools::kExitUsage;
        }
      } else if (f.value == "RATE") {
        if (auto d = inv->Double(f.name); !d.ok()) {
          std::cerr << "Error: " << d.status().message() << "\n";
          return aqueduct::tools::kExitUsage;
        }
      }
    }
  }
  if (auto t = inv->Int("timeout"); !t.ok() || *t <= 0) {
    std::cerr << "Error: --timeout: a positive number of seconds\n";
    return aqueduct::tools::kExitUsage;
  }
  if (cmd == "completion") {
    if (inv->args[0] != "bash") {
      std::cerr << "Error: completion: only bash is supported\n";
      return aqueduct::tools::kExitUsage;
    }
    std::cout << cli.BashCompletion();
    return 0;
  }
  if (cmd == "token") return Token();
  if (cmd != "health") {
    // Who each command acts as when minting with --dev-key.
    std::string role = "patient", subject = UserId();
    if (cmd == "queue" || cmd == "claim" || cmd == "decide" || cmd == "case" ||
        cmd == "watch") {
      role = Str("role").empty() ? "physician" : Str("role");
      subject = Str("actor");
    } else if (cmd == "rescore") {
      role = "batch";
      subject = "rescore";
    } else if (cmd == "export") {
      role = Str("role").empty() ? "batch" : Str("role");
      subject = role == "patient" ? UserId()
                : role == "batch" ? std::string("export")
                                  : Str("actor");
    }
    auto source = TokenSourceFor(role, subject);
    if (!source.ok()) {
      std::cerr << "Error: " << source.status().message() << "\n";
      return aqueduct::tools::kExitUsage;
    }
    g_token = std::move(*source);
  }
  if (cmd == "demo") return Demo();
  if (cmd == "queue") return Queue();
  if (cmd == "health") return Health();
  if (cmd == "rescore") return Rescore();
  if (cmd == "export") return Export();
  if (cmd == "screen") return Screen();
  if (cmd == "claim") return Claim();
  if (cmd == "decide") return Decide();
  if (cmd == "case") return Case();
  if (cmd == "watch") return Watch();
  if (cmd == "results") return Results();
  std::cerr << "Error: no command \"" << cmd << "\"\n";
  return aqueduct::tools::kExitUsage;
}
