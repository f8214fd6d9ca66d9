#include "bench/load/watch_load.h"

#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/auth/authorizer.h"
#include "protos/intake/v1/intake_service.grpc.pb.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "tests/testing/process.h"
#include "tests/testing/screening.h"
#include "tools/aqueductctl/scripted_answers.h"

namespace aqueduct::bench {
namespace {

using referral::v1::QueueEvent;
using referral::v1::ReferralService;

// Portals get every state a screened person is from here; clinicians
// listing the queue get one.
const std::vector<std::string> kAllStates = {"NY", "NJ", "FL", "TX", "CA"};

// One crisis hand-off is due this often: each is an event every watching
// portal is sent.
constexpr absl::Duration kCrisisEvery = absl::Milliseconds(250);

// One portal's WatchQueue stream, reading every event; `on_event` (when
// set) sees each one as it arrives, on gRPC's thread.
class Portal final : public grpc::ClientReadReactor<QueueEvent> {
 public:
  using OnEvent = std::function<void(const QueueEvent&)>;
  Portal(ReferralService::Stub* stub, const std::string& token,
         OnEvent on_event)
      : on_event_(std::move(on_event)) {
    ctx_.AddMetadata("authorization", token);
    stub->async()->WatchQueue(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (event_.kind() == "watching") {
      absl::MutexLock lock(&mu_);
      watching_ = true;
    }
    if (on_event_) on_event_(event_);
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
    status_ = s;
  }
  bool watching() {
    absl::MutexLock lock(&mu_);
    return watching_ && !done_;
  }
  void Cancel() { ctx_.TryCancel(); }
  bool WaitDone(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&done_), d);
  }

 private:
  const OnEvent on_event_;
  grpc::ClientContext ctx_;
  referral::v1::WatchQueueRequest request_;
  QueueEvent event_;
  absl::Mutex mu_;
  bool watching_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// When each screening's case first reached the measuring portal.
class Arrivals {
 public:
  void Note(const QueueEvent& e) {
    if (e.referral().screening().empty()) return;
    absl::MutexLock lock(&mu_);
    arrived_.try_emplace(e.referral().screening(), absl::Now());
  }
  // The arrival of `screening`'s case, or nullopt after `within`.
  std::optional<absl::Time> Await(const std::string& screening,
                                  absl::Duration within) {
    absl::MutexLock lock(&mu_);
    auto here = [&] { return arrived_.contains(screening); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&here), within))
      return std::nullopt;
    return arrived_.at(screening);
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> arrived_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  ctx->AddMetadata("authorization", token);
  return ctx;
}

// One person's screening up to the page that carries a suicide-risk answer
// (PHQ-9 item 9, "nearly every day"); returns that page's hand-off latency
// (until `arrivals` has the case), or an error.
absl::StatusOr<double> CrisisHandOff(intake::v1::IntakeService::Stub& intake,
                                     const std::string& user,
                                     const std::string& token,
                                     Arrivals& arrivals) {
  tools::Overrides answers = testing::AdultContext("NY");
  answers["phq9.9"] = "3";
  auto fail = [](const grpc::Status& s) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        s.error_message());
  };
  intake::v1::StartScreeningRequest start;
  start.set_parent("users/" + user);
  start.set_consent_version("c1");
  intake::v1::Screening screening;
  grpc::Status s =
      intake.StartScreening(Context(token).get(), start, &screening);
  if (!s.ok()) return fail(s);
  intake::v1::GetNextItemsRequest next_req;
  next_req.set_name(screening.name());
  intake::v1::NextItems next;
  s = intake.GetNextItems(Context(token).get(), next_req, &next);
  if (!s.ok()) return fail(s);
  for (int page = 0; page < 30 && !next.items().empty(); ++page) {
    intake::v1::SubmitAnswersRequest submit;
    submit.set_name(screening.name());
    submit.set_etag(next.etag());
    submit.set_request_id(absl::StrCat("p", page));
    bool crisis = false;
    for (const auto& ask : next.items()) {
      auto a = tools::ScriptedAnswer(ask.item(), answers);
      if (!a.ok()) continue;
      crisis |= ask.item().id() == "phq9.9";
      *submit.add_answers() = *a;
    }
    intake::v1::SubmitAnswersResponse submitted;
    const absl::Time sent = absl::Now();
    s = intake.SubmitAnswers(Context(token).get(), submit, &submitted);
    if (!s.ok()) return fail(s);
    if (crisis) {
      auto arrived = arrivals.Await(screening.name(), absl::Seconds(10));
      if (!arrived)
        return absl::DeadlineExceededError(
            "the early risk case reached no watching portal within 10 s");
      return absl::ToDoubleMilliseconds(*arrived - sent);
    }
    next.Swap(submitted.mutable_next());
  }
  return absl::NotFoundError("the flow never asked PHQ-9 item 9");
}

// Referral's thread count and current resident set, from /proc.
void ReadProcess(pid_t pid, WatchPhase& phase) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view v = line;
    int64_t n = 0;
    if (absl::ConsumePrefix(&v, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &n))
      phase.referral_threads = n;
    if (absl::ConsumePrefix(&v, "VmRSS:") &&
        absl::SimpleAtoi(
            absl::StripSuffix(absl::StripAsciiWhitespace(v), " kB"), &n))
      phase.referral_rss_mib = n / 1024.0;
  }
}

// ListQueue closed loop for `duration` while one person after another
// submits a crisis page; the phase's figures.
WatchPhase RunPhase(const std::string& phase_name,
                    intake::v1::IntakeService::Stub& intake,
                    ReferralService::Stub& referral,
                    const testing::TestAuth& auth, Arrivals& arrivals,
                    pid_t referral_pid, double list_per_second,
                    absl::Duration duration) {
  WatchPhase phase;
  const double cpu_before = testing::CpuSeconds(referral_pid);
  absl::Mutex error_mu;
  auto note = [&](const std::string& what) {
    absl::MutexLock lock(&error_mu);
    if (phase.first_error.empty()) phase.first_error = what;
  };
  std::atomic<bool> stop{false};
  std::thread crisis([&] {
    const absl::Time began = absl::Now();
    for (int i = 0; !stop.load(); ++i) {
      absl::SleepFor(began + i * kCrisisEvery - absl::Now());
      const std::string user = absl::StrCat("crisis-", phase_name, "-", i);
      auto ms = CrisisHandOff(intake, user,
                              auth::BearerValue(auth.Token("patient", user)),
                              arrivals);
      if (ms.ok()) {
        ++phase.handoff.calls;
        phase.handoff.latencies_ms.push_back(*ms);
      } else {
        ++phase.handoff.errors;
        note(absl::StrCat("crisis hand-off: ", ms.status().ToString()));
      }
    }
    phase.handoff.seconds = absl::ToDoubleSeconds(absl::Now() - began);
    std::sort(phase.handoff.latencies_ms.begin(),
              phase.handoff.latencies_ms.end());
  });
  const std::string clinician =
      auth::BearerValue(auth.Token("clinician", "bench-clinician", {"NY"}));
  struct ListCall {
    grpc::ClientContext ctx;
    referral::v1::ListQueueRequest req;
    referral::v1::ListQueueResponse resp;
  };
  phase.list_queue = RunOpenLoop(
      list_per_second, duration, [&](int, std::function<void(bool)> done) {
        auto* call = new ListCall;
        call->ctx.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
        call->ctx.AddMetadata("authorization", clinician);
        call->req.set_page_size(50);
        referral.async()->ListQueue(
            &call->ctx, &call->req, &call->resp,
            [call, done, &note](grpc::Status s) {
              if (!s.ok())
                note(absl::StrCat("ListQueue: ", s.error_code(), " ",
                                  s.error_message()));
              done(s.ok());
              delete call;
            });
      });
  ReadProcess(referral_pid, phase);
  stop = true;
  crisis.join();
  phase.referral_cpu_seconds = testing::CpuSeconds(referral_pid) - cpu_before;
  return phase;
}

// Separate connections to referral, as portals from many places have
// (gRPC would otherwise share one between these channels).
std::vector<std::unique_ptr<ReferralService::Stub>> Connections(
    const std::string& address, int n) {
  std::vector<std::unique_ptr<ReferralService::Stub>> stubs;
  for (int c = 0; c < n; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(ReferralService::NewStub(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args)));
  }
  return stubs;
}

int Watching(std::vector<std::unique_ptr<Portal>>& portals) {
  return static_cast<int>(std::count_if(portals.begin(), portals.end(),
                                        [](auto& p) { return p->watching(); }));
}

std::atomic<bool> portals_stop{false};

}  // namespace

int PortalsMain(const std::string& referral_address, int watchers,
                const std::string& ready_file) {
  const char* token = std::getenv("AQUEDUCT_BENCH_PORTAL_TOKEN");
  if (token == nullptr) return 2;
  // The portals stand for other machines: on this one they take only the
  // CPU the measured processes leave (threads made later inherit it).
  (void)setpriority(PRIO_PROCESS, 0, 19);
  std::signal(SIGTERM, [](int) { portals_stop = true; });
  auto stubs = Connections(referral_address, 16);
  std::vector<std::unique_ptr<Portal>> portals;
  for (int i = 0; i < watchers; ++i)
    portals.push_back(std::make_unique<Portal>(stubs[i % stubs.size()].get(),
                                               token, nullptr));
  int written = -1;
  while (!portals_stop) {
    const int watching = Watching(portals);
    if (watching != written) {
      const std::string tmp = ready_file + ".tmp";
      std::ofstream(tmp) << watching << "\n";
      std::rename(tmp.c_str(), ready_file.c_str());
      written = watching;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  for (auto& p : portals) p->Cancel();
  for (auto& p : portals) p->WaitDone(absl::Seconds(30));
  return 0;
}

WatchFigure MeasureWatchers(const std::string& self, const std::string& dir,
                            const std::string& intake_address,
                            const std::string& referral_address,
                            pid_t referral_pid, const testing::TestAuth& auth,
                            int watchers, double list_per_second,
                            absl::Duration duration) {
  WatchFigure figure;
  auto intake = intake::v1::IntakeService::NewStub(
      grpc::CreateChannel(intake_address, grpc::InsecureChannelCredentials()));
  auto referral = Connections(referral_address, 1);
  const std::string physician =
      auth::BearerValue(auth.Token("physician", "bench-portal", kAllStates));
  // The measuring portal watches in both phases, in this process.
  Arrivals arrivals;
  std::vector<std::unique_ptr<Portal>> measuring;
  measuring.push_back(std::make_unique<Portal>(
      referral[0].get(), physician,
      [&arrivals](const QueueEvent& e) { arrivals.Note(e); }));
  for (int i = 0; i < 200 && Watching(measuring) == 0; ++i)
    absl::SleepFor(absl::Milliseconds(50));

  figure.quiet = RunPhase("quiet", *intake, *referral[0], auth, arrivals,
                          referral_pid, list_per_second, duration);

  const std::string ready = dir + "/portals.ready";
  auto count = [&ready] {
    int n = 0;
    return absl::SimpleAtoi(
               absl::StripAsciiWhitespace(testing::ReadFile(ready)), &n)
               ? n
               : 0;
  };
  auto portals = testing::Subprocess::Start(
      {self, "--portals_of=" + referral_address,
       absl::StrCat("--watchers=", watchers), "--portals_ready=" + ready},
      dir + "/portals.log", {"AQUEDUCT_BENCH_PORTAL_TOKEN=" + physician});
  if (!portals.ok()) {
    figure.watched.first_error = portals.status().ToString();
    return figure;
  }
  for (int i = 0; i < 1200 && count() < watchers; ++i)
    absl::SleepFor(absl::Milliseconds(50));
  figure.watched = RunPhase("watched", *intake, *referral[0], auth, arrivals,
                            referral_pid, list_per_second, duration);
  // Streams that ended during the phase (cut off, or refused) show here.
  figure.watchers_open = count();
  (*portals)->Signal(SIGTERM);
  (*portals)->Wait(absl::Seconds(60));
  measuring[0]->Cancel();
  measuring[0]->WaitDone(absl::Seconds(30));
  return figure;
}

}  // namespace aqueduct::bench
