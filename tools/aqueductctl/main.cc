// aqueductctl: a terminal client of the Aqueduct services, written only from
// the protos. Foundation subcommands:
//   aqueductctl demo --answers=1,2,0,1,1,0,0,0,1,1 [--user=demo] [--state=FL]
//       takes a PHQ-9 screening end to end (start, submit, complete) and
//       prints the result, the route and any crisis resources.
//   aqueductctl queue [--page_size=20]
//       lists the clinician queue.
//   aqueductctl health
//       asks each service's grpc.health.v1 status.
// Connection settings: --intake/--referral/--scoring or the environment
// (AQUEDUCT_INTAKE_ADDR, AQUEDUCT_REFERRAL_ADDR, AQUEDUCT_SCORING_ADDR);
// defaults match the local stack that deploy/run-local.sh starts.

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/config/config.h"
#include "common/server/health_client.h"
#include "common/util/ids.h"
#include "tools/aqueductctl/scripted_answers.h"
#include "protos/intake/v1/intake_service.grpc.pb.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"

using aqueduct::config::EnvOr;

ABSL_FLAG(std::string, intake, EnvOr("AQUEDUCT_INTAKE_ADDR", "127.0.0.1:7100"),
          "Intake address. Env AQUEDUCT_INTAKE_ADDR.");
ABSL_FLAG(std::string, referral, EnvOr("AQUEDUCT_REFERRAL_ADDR", "127.0.0.1:7102"),
          "Referral address. Env AQUEDUCT_REFERRAL_ADDR.");
ABSL_FLAG(std::string, scoring, EnvOr("AQUEDUCT_SCORING_ADDR", "127.0.0.1:7101"),
          "Scoring address. Env AQUEDUCT_SCORING_ADDR.");
ABSL_FLAG(std::string, answers, "",
          "demo: PHQ-9 answers, ten comma-separated values 0-3 (items 1-9, then "
          "the difficulty item 10).");
ABSL_FLAG(std::string, user, "demo", "demo: user id to screen as.");
ABSL_FLAG(std::string, state, "NY", "demo: two-letter US state of location.");
ABSL_FLAG(std::string, set, "",
          "demo: more answers as item=value pairs, e.g. "
          "--set=ctx.age=40,gad7.1=3,asq.1=yes,ket.trials=two_or_more. Items not "
          "given get the lowest-burden answer.");
ABSL_FLAG(int32_t, page_size, 20, "queue: cases per page.");
ABSL_FLAG(std::string, actor, EnvOr("AQUEDUCT_ACTOR", "dr-demo"),
          "Clinician id for clinician commands (see deploy/local/clinicians.txt). Env "
          "AQUEDUCT_ACTOR.");
ABSL_FLAG(int32_t, timeout_s, 10, "Deadline of each call, seconds.");

namespace {

namespace intake = aqueduct::intake::v1;
namespace referral = aqueduct::referral::v1;

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout_s))));
  return ctx;
}

int Fail(const std::string& what, const grpc::Status& s) {
  std::cerr << "aqueductctl: " << what << " failed: "
            << s.error_code() << " " << s.error_message() << "\n";
  return 1;
}

std::shared_ptr<grpc::Channel> Channel(const std::string& addr) {
  return grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
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
    std::cerr << "aqueductctl demo: --set: " << overrides.status().message() << "\n";
    return 2;
  }
  for (size_t i = 0; i < parts.size(); ++i) (*overrides)[absl::StrCat("phq9.", i + 1)] = parts[i];
  // Context answers from flags unless --set gives them.
  overrides->try_emplace("ctx.state", absl::GetFlag(FLAGS_state));
  overrides->try_emplace("ctx.age", "35");
  overrides->try_emplace("ctx.role", "other");
  overrides->try_emplace("ctx.works", "yes");
  overrides->try_emplace("ctx.works_with_clients", "no");
  overrides->try_emplace("ctx.sex", "not_stated");

  auto stub = intake::IntakeService::NewStub(Channel(absl::GetFlag(FLAGS_intake)));
  intake::StartScreeningRequest start;
  start.set_parent(absl::StrCat("users/", absl::GetFlag(FLAGS_user)));
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
    if (auto s = stub->SubmitAnswers(Ctx().get(), submit, &submitted); !s.ok()) {
      return Fail("SubmitAnswers", s);
    }
    etag = submitted.screening().etag();
    std::cout << "page " << page + 1 << " (" << next.items(0).instrument_id() << "): answered "
              << submitted.next().progress().answered() << ", remaining "
              << submitted.next().progress().remaining() << "\n";
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
      std::printf("%-13s %6.1f  %s\n", score.instrument_id().c_str(), score.mean(),
                  score.band_label().c_str());
    } else if (!score.band().empty() || score.screen_positive() || score.total() > 0) {
      std::printf("%-13s %6d  %s%s\n", score.instrument_id().c_str(), score.total(),
                  score.band_label().c_str(), score.screen_positive() ? " (screen positive)" : "");
    }
  }
  std::cout << "profile: "
            << aqueduct::scoring::v1::Profile_Name(done.result().scoring().profile()) << "\n";
  std::cout << "route: " << aqueduct::common::v1::Route_Name(done.route().route())
            << (done.route().pending_review() ? " (pending clinician review)" : "")
            << "\n" << done.route().message() << "\n";
  for (const auto& item : done.route().self_help_plan()) {
    std::cout << "  - " << item.title() << ": " << item.text() << "\n";
  }
  if (done.has_crisis_resources()) {
    std::cout << "\n" << done.crisis_resources().message() << "\n";
    for (const auto& c : done.crisis_resources().contacts()) {
      std::cout << "  * " << c.name() << ": " << c.how() << " (" << c.when() << ")\n";
    }
  }
  std::cout << "referral hand-off: " << intake::HandoffState_Name(done.handoff()) << "\n";
  return 0;
}

int Queue() {
  auto stub = referral::ReferralService::NewStub(Channel(absl::GetFlag(FLAGS_referral)));
  referral::ListQueueRequest req;
  req.set_page_size(absl::GetFlag(FLAGS_page_size));
  referral::ListQueueResponse resp;
  auto ctx = Ctx();
  ctx->AddMetadata("x-aqueduct-actor", absl::GetFlag(FLAGS_actor));
  if (auto s = stub->ListQueue(ctx.get(), req, &resp); !s.ok()) {
    return Fail("ListQueue", s);
  }
  std::printf("%-8s %-16s %-20s %-5s %s\n", "PRIORITY", "ROUTE", "STATE", "LOC", "CASE");
  for (const auto& c : resp.cases()) {
    std::printf("%-8s %-16s %-20s %-5s %s\n", referral::Priority_Name(c.priority()).c_str(),
                aqueduct::common::v1::Route_Name(c.current_route()).c_str(),
                referral::CaseState_Name(c.state()).c_str(),
                c.location_state().empty() ? "-" : c.location_state().c_str(),
                c.name().c_str());
  }
  if (resp.cases().empty()) std::printf("(queue is empty)\n");
  if (!resp.next_page_token().empty()) std::printf("(more cases: ask for a larger --page_size)\n");
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
        Channel(addr), "", absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout_s)));
    std::string state = !serving.ok() ? "UNREACHABLE" : *serving ? "SERVING" : "NOT_SERVING";
    if (state != "SERVING") ++bad;
    std::printf("%-9s %-22s %s\n", name.c_str(), addr.c_str(), state.c_str());
  }
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "aqueductctl <demo|queue|health> [flags]\n"
      "  demo   --answers=1,2,0,1,1,0,0,0,0,1 [--set=item=value,...] [--user=demo] [--state=FL]\n"
      "  queue  [--page_size=20] [--actor=dr-demo]\n"
      "  health");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::cerr << absl::ProgramUsageMessage() << "\n";
    return 2;
  }
  std::string cmd = args[1];
  if (cmd == "demo") return Demo();
  if (cmd == "queue") return Queue();
  if (cmd == "health") return Health();
  std::cerr << "aqueductctl: unknown command \"" << cmd << "\"\n"
            << absl::ProgramUsageMessage() << "\n";
  return 2;
}
