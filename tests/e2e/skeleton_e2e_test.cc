// End to end: the three real service binaries and a real redis-server on
// loopback, driven by a client written only from the protos.

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/redis/redis_client.h"
#include "common/server/health_client.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "protos/intake/v1/intake_service.grpc.pb.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "tests/testing/auth.h"
#include "tests/testing/process.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct {
namespace {

using ::aqueduct::testing::GrpcIs;
using ::testing::HasSubstr;
namespace t = ::aqueduct::testing;

class SkeletonE2eTest : public ::testing::Test {
 protected:
  using Service = t::ServiceProcess;

  void SetUp() override {
    auto redis = t::RedisServer::Start(dir_.path());
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = std::move(*redis);
    scoring_ = StartService(
        "scoring", "services/scoring/aqueduct-scoring",
        {"--catalog=" + t::SourcePath("data/catalog/catalog.textproto"),
         "--rulesets=" + t::SourcePath("data/rulesets")});
    referral_ =
        StartService("referral", "services/referral/aqueduct-referral",
                     {"--redis=" + redis_->address(), "--redis_timeout_ms=300",
                      "--route_count_interval_ms=500"});
    intake_ = StartIntake("intake");
    ASSERT_FALSE(intake_.address.empty());
    intake_stub_ = intake::v1::IntakeService::NewStub(Channel(intake_.address));
    referral_stub_ =
        referral::v1::ReferralService::NewStub(Channel(referral_.address));
    for (Service* s : {&scoring_, &referral_, &intake_}) {
      ASSERT_TRUE(WaitHealth(s->address, true)) << s->log << "\n"
                                                << t::ReadFile(s->log);
    }
  }

  Service StartService(const std::string& name, const std::string& binary,
                       std::vector<std::string> args,
                       const std::string& listen = "127.0.0.1:0") {
    // Every service checks tokens signed by the test's key; intake signs
    // its own calls with it too.
    args.push_back("--auth_keys=" + Auth().keys_dir());
    args.push_back("--insecure_plaintext");  // TLS is tested in tls_e2e_test
    args.push_back("--metrics_listen=127.0.0.1:0");
    args.push_back("--metrics_port_file=" + MetricsPortFile(name));
    if (binary == "services/intake/aqueduct-intake") {
      args.push_back("--service_key=" + Auth().private_key_file());
      args.push_back(std::string("--service_key_id=") + t::TestAuth::kKeyId);
    }
    auto s = t::StartService(dir_.path(), name, binary, args,
                             {t::DataKeysEnv()}, listen);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : Service{};
  }

  std::string MetricsPortFile(const std::string& name) const {
    return dir_.path() + "/" + name + ".metrics_port";
  }

  Service StartIntake(const std::string& name) {
    return StartService(
        name, "services/intake/aqueduct-intake",
        {"--redis=" + redis_->address(), "--redis_timeout_ms=300",
         "--scoring=" + scoring_.address, "--referral=" + referral_.address,
         "--handoff_retry_ms=300"});
  }

  // Answers up to `pages` pages of a screening through `stub`; returns the
  // number answered (0 when the screening has nothing more to ask).
  int AnswerPages(intake::v1::IntakeService::Stub& stub,
                  const std::string& name, const tools::Overrides& overrides,
                  int pages) {
    int answered = 0;
    for (int page = 0; page < pages; ++page) {
      intake::v1::GetNextItemsRequest next_req;
      next_req.set_name(name);
      intake::v1::NextItems next;
      grpc::Status s = stub.GetNextItems(Ctx(name).get(), next_req, &next);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok() || next.items().empty()) break;
      intake::v1::SubmitAnswersRequest submit;
      submit.set_name(name);
      submit.set_etag(next.etag());
      submit.set_request_id(absl::StrCat("p", next.etag()));
      for (const auto& ask : next.items())
        *submit.add_answers() = *tools::ScriptedAnswer(ask.item(), overrides);
      intake::v1::SubmitAnswersResponse submitted;
      s = stub.SubmitAnswers(Ctx(name).get(), submit, &submitted);
      EXPECT_TRUE(s.ok()) << s.error_message();
      ++answered;
    }
    return answered;
  }

  static std::shared_ptr<grpc::Channel> Channel(const std::string& addr) {
    return grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  }

  // Polls health until it reports `serving` (health is checked in the
  // background every 500 ms; this waits, it does not time the service).
  bool WaitHealth(const std::string& address, bool serving,
                  absl::Duration timeout = absl::Seconds(15)) {
    auto channel = Channel(address);
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      auto h = server::CheckHealth(channel, "", absl::Now() + absl::Seconds(1));
      if (h.ok() && *h == serving) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  static t::TestAuth& Auth() {
    static auto* auth = new t::TestAuth();
    return *auth;
  }
  // A person's call: a patient token for `user` (a user id, or a name
  // "users/{user}/...").
  // A traceparent the person's calls send while set (LogsFollowOneTrace).
  static std::string& CallerTraceparent() {
    static auto* value = new std::string();
    return *value;
  }
  static std::unique_ptr<grpc::ClientContext> Ctx(
      const std::string& user = "e2e", absl::Duration d = absl::Seconds(5)) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(absl::ToChronoTime(absl::Now() + d));
    if (!CallerTraceparent().empty())
      c->AddMetadata("traceparent", CallerTraceparent());
    std::string id = user;
    if (absl::StartsWith(id, "users/")) id = id.substr(6, id.find('/', 6) - 6);
    c->AddMetadata("authorization",
                   auth::BearerValue(Auth().Token("patient", id)));
    return c;
  }
  // A clinician's call: the test's clinicians and their licences.
  static std::unique_ptr<grpc::ClientContext> As(
      const std::string& actor, absl::Duration d = absl::Seconds(5)) {
    static const auto* known =
        new std::map<std::string,
                     std::pair<std::string, std::vector<std::string>>>{
            {"dr-all", {"physician", {"FL", "NJ", "NY", "TX"}}},
            {"cl-nj", {"clinician", {"NJ"}}},
            {"cl-ny", {"clinician", {"NY"}}},
        };
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(absl::ToChronoTime(absl::Now() + d));
    const auto& [role, states] = known->at(actor);
    c->AddMetadata("authorization",
                   auth::BearerValue(Auth().Token(role, actor, states)));
    return c;
  }

  // Runs a whole screening page by page, as an app would: PHQ-9 items 1-10
  // from `values`, context for an adult in NJ, everything else at the
  // lowest-burden answer. Returns the completion reply.
  intake::v1::CompleteScreeningResponse Screen(
      const std::vector<int>& values, const std::string& user = "e2e",
      const tools::Overrides& extra = {}) {
    tools::Overrides overrides = t::AdultContext("NJ");
    for (size_t i = 0; i < values.size(); ++i) {
      overrides["phq9." + std::to_string(i + 1)] = std::to_string(values[i]);
    }
    for (const auto& [k, v] : extra) overrides[k] = v;
    intake::v1::StartScreeningRequest start;
    start.set_parent("users/" + user);
    start.set_consent_version("c1");
    intake::v1::Screening screening;
    EXPECT_TRUE(
        intake_stub_->StartScreening(Ctx(user).get(), start, &screening).ok());
    std::string etag = screening.etag();
    bool ready = false;
    for (int page = 0; page < 30; ++page) {
      intake::v1::GetNextItemsRequest next_req;
      next_req.set_name(screening.name());
      intake::v1::NextItems next;
      EXPECT_TRUE(
          intake_stub_->GetNextItems(Ctx(user).get(), next_req, &next).ok());
      ready = next.ready_to_complete();
      if (next.items().empty()) break;
      intake::v1::SubmitAnswersRequest submit;
      submit.set_name(screening.name());
      submit.set_etag(next.etag());
      submit.set_request_id("submit-" + std::to_string(page));
      for (const auto& ask : next.items()) {
        auto a = tools::ScriptedAnswer(ask.item(), overrides);
        EXPECT_TRUE(a.ok()) << a.status();
        *submit.add_answers() = *a;
      }
      intake::v1::SubmitAnswersResponse submitted;
      grpc::Status s =
          intake_stub_->SubmitAnswers(Ctx(user).get(), submit, &submitted);
      EXPECT_TRUE(s.ok()) << s.error_message();
      etag = submitted.screening().etag();
    }
    EXPECT_TRUE(ready);
    intake::v1::CompleteScreeningRequest complete;
    complete.set_name(screening.name());
    complete.set_etag(etag);
    complete.set_request_id("complete-1");
    intake::v1::CompleteScreeningResponse done;
    grpc::Status s =
        intake_stub_->CompleteScreening(Ctx(user).get(), complete, &done);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return done;
  }

  static const scoring::v1::InstrumentScore& ScoreOf(
      const intake::v1::CompleteScreeningResponse& r, const std::string& id) {
    for (const auto& s : r.result().scoring().scores()) {
      if (s.instrument_id() == id) return s;
    }
    static scoring::v1::InstrumentScore none;
    return none;
  }

  t::TempDir dir_;
  std::unique_ptr<t::RedisServer> redis_;
  Service scoring_, referral_, intake_;
  std::unique_ptr<intake::v1::IntakeService::Stub> intake_stub_;
  std::unique_ptr<referral::v1::ReferralService::Stub> referral_stub_;
};

TEST_F(SkeletonE2eTest, Phq9ScreeningReachesTheClinicianQueue) {
  auto done = Screen({1, 2, 1, 2, 1, 1, 1, 1, 0, 1});
  EXPECT_EQ(ScoreOf(done, "phq9").total(), 10);
  EXPECT_EQ(done.route().route(), common::v1::THERAPY);
  EXPECT_TRUE(done.route().pending_review());
  EXPECT_FALSE(done.has_crisis_resources());
  EXPECT_EQ(done.handoff(), intake::v1::DELIVERED);

  referral::v1::ListQueueResponse queue;
  ASSERT_TRUE(referral_stub_
                  ->ListQueue(As("dr-all").get(),
                              referral::v1::ListQueueRequest(), &queue)
                  .ok());
  ASSERT_EQ(queue.cases_size(), 1);
  EXPECT_EQ(queue.cases(0).screening(), done.screening().name());
  EXPECT_EQ(queue.cases(0).current_route(), common::v1::THERAPY);
  EXPECT_EQ(queue.cases(0).location_state(), "NJ");
  EXPECT_EQ(queue.cases(0).result().scores(1).instrument_id(), "phq9");
  EXPECT_EQ(queue.cases(0).result().scores(1).total(), 10);
}

TEST_F(SkeletonE2eTest, Item9ReturnsCrisisResourcesAndQueuesUrgent) {
  Screen({0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "calm");
  auto done = Screen({1, 1, 0, 1, 0, 0, 0, 0, 1, 1}, "atrisk");
  ASSERT_TRUE(done.has_crisis_resources());
  EXPECT_THAT(done.crisis_resources().contacts(0).how(), HasSubstr("988"));
  EXPECT_THAT(done.crisis_resources().contacts(1).how(), HasSubstr("911"));
  EXPECT_EQ(done.route().route(), common::v1::CRISIS_URGENT);

  referral::v1::ListQueueResponse queue;
  ASSERT_TRUE(referral_stub_
                  ->ListQueue(As("dr-all").get(),
                              referral::v1::ListQueueRequest(), &queue)
                  .ok());
  ASSERT_EQ(queue.cases_size(), 2);
  EXPECT_EQ(queue.cases(0).screening(), done.screening().name())
      << "urgent first";
  EXPECT_EQ(queue.cases(0).priority(), referral::v1::URGENT);
}

TEST_F(SkeletonE2eTest, ErrorsCarryTheRightCodes) {
  intake::v1::GetScreeningRequest get;
  get.set_name("users/e2e/screenings/unknown");
  intake::v1::Screening screening;
  EXPECT_THAT(intake_stub_->GetScreening(Ctx().get(), get, &screening),
              GrpcIs(grpc::StatusCode::NOT_FOUND));

  intake::v1::StartScreeningRequest start;
  start.set_parent("users/e2e");
  grpc::Status missing =
      intake_stub_->StartScreening(Ctx().get(), start, &screening);
  EXPECT_THAT(missing, GrpcIs(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(missing.error_message(), HasSubstr("consent_version"));

  start.set_consent_version("c1");
  ASSERT_TRUE(
      intake_stub_->StartScreening(Ctx().get(), start, &screening).ok());
  intake::v1::SubmitAnswersRequest submit;
  submit.set_name(screening.name());
  submit.set_etag(screening.etag());
  submit.set_request_id("r1");
  auto* a = submit.add_answers();
  a->set_item_id("phq9.1");
  a->set_option_value(5);
  intake::v1::SubmitAnswersResponse submitted;
  grpc::Status bad =
      intake_stub_->SubmitAnswers(Ctx().get(), submit, &submitted);
  EXPECT_THAT(bad, GrpcIs(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(bad.error_message(), HasSubstr("answers[0].option_value"));

  auto done = Screen({0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  intake::v1::CompleteScreeningRequest again;
  again.set_name(done.screening().name());
  again.set_etag(done.screening().etag());
  again.set_request_id("another-request");
  intake::v1::CompleteScreeningResponse reply;
  EXPECT_THAT(intake_stub_->CompleteScreening(Ctx().get(), again, &reply),
              GrpcIs(grpc::StatusCode::FAILED_PRECONDITION));
  again.set_request_id("complete-1");
  ASSERT_TRUE(intake_stub_->CompleteScreening(Ctx().get(), again, &reply).ok());
  EXPECT_EQ(reply.result().SerializeAsString(),
            done.result().SerializeAsString());
}

TEST_F(SkeletonE2eTest, RedisDownThenBack) {
  auto before = Screen({0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  ASSERT_TRUE(redis_->Stop().ok());

  // Calls fail UNAVAILABLE within their deadline...
  intake::v1::GetScreeningRequest get;
  get.set_name(before.screening().name());
  intake::v1::Screening screening;
  absl::Time start = absl::Now();
  EXPECT_THAT(intake_stub_->GetScreening(Ctx("e2e", absl::Seconds(3)).get(),
                                         get, &screening),
              GrpcIs(grpc::StatusCode::UNAVAILABLE));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  referral::v1::ListQueueResponse queue;
  EXPECT_THAT(
      referral_stub_->ListQueue(As("dr-all", absl::Seconds(3)).get(),
                                referral::v1::ListQueueRequest(), &queue),
      GrpcIs(grpc::StatusCode::UNAVAILABLE));
  // ...health says NOT_SERVING, and the services stay up.
  EXPECT_TRUE(WaitHealth(intake_.address, false));
  EXPECT_TRUE(WaitHealth(referral_.address, false));
  EXPECT_TRUE(WaitHealth(scoring_.address, true))
      << "scoring does not need Redis";
  EXPECT_TRUE(intake_.process->Running());

  // Redis back: both recover without a restart, and nothing was lost.
  ASSERT_TRUE(redis_->Restart().ok());
  EXPECT_TRUE(WaitHealth(intake_.address, true));
  EXPECT_TRUE(WaitHealth(referral_.address, true));
  grpc::Status s = intake_stub_->GetScreening(Ctx().get(), get, &screening);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(screening.state(), intake::v1::COMPLETED);
  ASSERT_TRUE(referral_stub_
                  ->ListQueue(As("dr-all").get(),
                              referral::v1::ListQueueRequest(), &queue)
                  .ok());
  EXPECT_EQ(queue.cases_size(), 1);
  auto after = Screen({1, 1, 1, 1, 1, 1, 1, 1, 0, 0});
  EXPECT_EQ(after.handoff(), intake::v1::DELIVERED);
}

// Redis SIGKILLed twice while people answer (appendfsync always, as the
// project runs it): every call answers OK, UNAVAILABLE or DEADLINE_EXCEEDED,
// never INTERNAL; no acknowledged answer is lost; every screening goes on
// once Redis is back; the first calls after a crash find no stale pooled
// connection; and a Redis refusing writes (out of memory) is UNAVAILABLE.
TEST_F(SkeletonE2eTest, RedisKilledUnderLoadLosesNoAcknowledgedAnswer) {
  constexpr int kPeople = 4;
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::map<std::string, int> codes;  // gRPC code name -> calls
  auto count = [&](const grpc::Status& s) {
    absl::MutexLock lock(&mu);
    ++codes[absl::StatusCodeToString(
        static_cast<absl::StatusCode>(s.error_code()))];
    return s.ok();
  };
  struct Person {
    std::string name;
    int acknowledged = 0;  // answers the last OK SubmitAnswers reported
  };
  std::vector<Person> people(kPeople);
  std::vector<std::thread> threads;
  for (int i = 0; i < kPeople; ++i) {
    threads.emplace_back([&, i] {
      Person& p = people[i];
      const std::string user = absl::StrCat("load", i);
      tools::Overrides o = t::AdultContext("NJ");
      while (!stop.load()) {
        if (p.name.empty()) {
          intake::v1::StartScreeningRequest start;
          start.set_parent("users/" + user);
          start.set_consent_version("c1");
          intake::v1::Screening started;
          if (count(intake_stub_->StartScreening(
                  Ctx(user, absl::Seconds(2)).get(), start, &started))) {
            p.name = started.name();
          } else {
            absl::SleepFor(absl::Milliseconds(20));
          }
          continue;
        }
        intake::v1::GetNextItemsRequest next_req;
        next_req.set_name(p.name);
        intake::v1::NextItems next;
        if (!count(intake_stub_->GetNextItems(Ctx(user, absl::Seconds(2)).get(),
                                              next_req, &next))) {
          absl::SleepFor(absl::Milliseconds(20));
          continue;
        }
        if (next.items().empty()) return;  // all asked: this person is done
        intake::v1::SubmitAnswersRequest submit;
        submit.set_name(p.name);
        submit.set_etag(next.etag());
        submit.set_request_id(absl::StrCat("p", next.etag()));
        for (const auto& ask : next.items())
          *submit.add_answers() = *tools::ScriptedAnswer(ask.item(), o);
        intake::v1::SubmitAnswersResponse submitted;
        if (count(intake_stub_->SubmitAnswers(Ctx(user, absl::Seconds(2)).get(),
                                              submit, &submitted))) {
          p.acknowledged = submitted.screening().progress().answered();
        } else {
          absl::SleepFor(absl::Milliseconds(20));
        }
        absl::SleepFor(absl::Milliseconds(30));  // a person reads the page
      }
    });
  }
  for (int round = 0; round < 2; ++round) {
    absl::SleepFor(absl::Milliseconds(700));
    ASSERT_THAT(redis_->Kill(), t::IsOk());
    absl::SleepFor(absl::Milliseconds(500));
    ASSERT_THAT(redis_->Restart(), t::IsOk());
  }
  ASSERT_TRUE(WaitHealth(intake_.address, true));
  absl::SleepFor(absl::Milliseconds(700));
  stop.store(true);
  for (auto& th : threads) th.join();

  {
    absl::MutexLock lock(&mu);
    std::string seen;
    for (const auto& [code, n] : codes)
      absl::StrAppend(&seen, code, "=", n, " ");
    for (const auto& [code, n] : codes) {
      EXPECT_TRUE(code == "OK" || code == "UNAVAILABLE" ||
                  code == "DEADLINE_EXCEEDED")
          << code << " x" << n << " (all: " << seen << ")";
    }
    EXPECT_GT(codes["OK"], 20) << seen;
  }
  // A crash with no load: every pooled connection is idle and stale when
  // Redis is back, and the first calls after it still succeed.
  ASSERT_THAT(redis_->Kill(), t::IsOk());
  ASSERT_THAT(redis_->Restart(), t::IsOk());
  ASSERT_TRUE(WaitHealth(intake_.address, true));
  ASSERT_TRUE(WaitHealth(referral_.address, true));
  // (Eight at once, so every pooled connection is taken, not only the one
  // the health check renewed.)
  std::vector<std::thread> callers;
  for (int c = 0; c < 8; ++c) {
    callers.emplace_back([&, c] {
      for (int i = 0; i < 4; ++i) {
        intake::v1::ListMyResultsRequest mine;
        mine.set_parent(absl::StrCat("users/load", c % kPeople));
        intake::v1::ListMyResultsResponse results;
        grpc::Status s = intake_stub_->ListMyResults(
            Ctx(absl::StrCat("load", c % kPeople)).get(), mine, &results);
        EXPECT_TRUE(s.ok()) << "intake call " << i << ": " << s.error_message();
        referral::v1::ListQueueResponse queue;
        s = referral_stub_->ListQueue(As("dr-all").get(),
                                      referral::v1::ListQueueRequest(), &queue);
        EXPECT_TRUE(s.ok())
            << "referral call " << i << ": " << s.error_message();
      }
    });
  }
  for (auto& c : callers) c.join();
  // Redis refusing writes (out of memory) is a condition a caller retries:
  // UNAVAILABLE, for the pipelined writes and the SubmitAnswers path alike.
  redis::Client admin(redis_->ClientOptions());
  auto set_max = [&](const char* bytes) {
    return admin.Command({"CONFIG", "SET", "maxmemory", bytes},
                         absl::Now() + absl::Seconds(5));
  };
  ASSERT_THAT(set_max("1"), t::IsOk());
  {
    intake::v1::StartScreeningRequest start;
    start.set_parent("users/oom");
    start.set_consent_version("c1");
    intake::v1::Screening started;
    grpc::Status s =
        intake_stub_->StartScreening(Ctx("oom").get(), start, &started);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
        << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("OOM"));
  }
  ASSERT_THAT(set_max("0"), t::IsOk());

  // Every acknowledged answer is still there, and every screening goes on.
  for (const Person& p : people) {
    if (p.name.empty()) continue;
    intake::v1::GetScreeningRequest get;
    get.set_name(p.name);
    intake::v1::Screening now;
    grpc::Status s = intake_stub_->GetScreening(Ctx(p.name).get(), get, &now);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_GE(now.progress().answered(), p.acknowledged) << p.name;
    EXPECT_EQ(AnswerPages(*intake_stub_, p.name, t::AdultContext("NJ"), 1) +
                  (now.progress().remaining() == 0 ? 1 : 0),
              1)
        << p.name << " goes on";
  }
}

TEST_F(SkeletonE2eTest, ReferralDownThenBackGetsTheCaseExactlyOnce) {
  const std::string referral_listen = referral_.address;
  referral_.process->Signal(SIGKILL);
  referral_.process->Wait(absl::Seconds(5));
  auto done = Screen({0, 0, 0, 0, 0, 0, 0, 0, 2, 0});
  ASSERT_TRUE(done.has_crisis_resources()) << "shown at once, referral or not";
  EXPECT_EQ(done.handoff(), intake::v1::PENDING);
  EXPECT_EQ(done.screening().state(), intake::v1::COMPLETED);

  // Referral back on its address: the outbox delivers the case by itself.
  referral_ = StartService("referral2", "services/referral/aqueduct-referral",
                           {"--redis=" + redis_->address()}, referral_listen);
  ASSERT_TRUE(WaitHealth(referral_.address, true));
  referral_stub_ =
      referral::v1::ReferralService::NewStub(Channel(referral_.address));
  int found = 0;
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (absl::Now() < end) {
    referral::v1::ListQueueResponse queue;
    if (referral_stub_
            ->ListQueue(As("dr-all").get(), referral::v1::ListQueueRequest(),
                        &queue)
            .ok()) {
      found = 0;
      for (const auto& c : queue.cases())
        found += c.screening() == done.screening().name();
      if (found > 0) break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(found, 1);
  // Give the outbox a few more rounds: still exactly one case.
  absl::SleepFor(absl::Seconds(1));
  referral::v1::ListQueueResponse queue;
  ASSERT_TRUE(referral_stub_
                  ->ListQueue(As("dr-all").get(),
                              referral::v1::ListQueueRequest(), &queue)
                  .ok());
  EXPECT_EQ(queue.cases_size(), 1);
}

TEST_F(SkeletonE2eTest, ResumeAfterIntakeRestartAndAcrossReplicas) {
  tools::Overrides overrides = t::AdultContext("NJ");
  overrides["phq9.9"] = "1";
  intake::v1::StartScreeningRequest start;
  start.set_parent("users/resume");
  start.set_consent_version("c1");
  intake::v1::Screening screening;
  ASSERT_TRUE(
      intake_stub_->StartScreening(Ctx("resume").get(), start, &screening)
          .ok());
  ASSERT_EQ(AnswerPages(*intake_stub_, screening.name(), overrides, 2), 2);

  // Kill intake mid-screening and start it again: nothing was in memory.
  intake_.process->Signal(SIGKILL);
  intake_.process->Wait(absl::Seconds(5));
  Service restarted = StartIntake("intake-restarted");
  ASSERT_TRUE(WaitHealth(restarted.address, true))
      << t::ReadFile(restarted.log);
  auto stub_a = intake::v1::IntakeService::NewStub(Channel(restarted.address));
  intake::v1::GetScreeningRequest get;
  get.set_name(screening.name());
  intake::v1::Screening resumed;
  ASSERT_TRUE(stub_a->GetScreening(Ctx("resume").get(), get, &resumed).ok());
  EXPECT_GT(resumed.progress().answered(), 0);
  EXPECT_EQ(resumed.etag(), "3") << "both pages kept";

  // A second replica alongside: alternate pages between them.
  Service replica = StartIntake("intake-replica");
  ASSERT_TRUE(WaitHealth(replica.address, true));
  auto stub_b = intake::v1::IntakeService::NewStub(Channel(replica.address));
  for (int i = 0; i < 20; ++i) {
    auto& stub = (i % 2 == 0) ? *stub_a : *stub_b;
    if (AnswerPages(stub, screening.name(), overrides, 1) == 0) break;
  }
  ASSERT_TRUE(stub_b->GetScreening(Ctx("resume").get(), get, &resumed).ok());
  intake::v1::CompleteScreeningRequest complete;
  complete.set_name(screening.name());
  complete.set_etag(resumed.etag());
  complete.set_request_id("complete-on-b");
  intake::v1::CompleteScreeningResponse done;
  grpc::Status s =
      stub_b->CompleteScreening(Ctx("resume").get(), complete, &done);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(done.route().route(), common::v1::CRISIS_URGENT);
  EXPECT_TRUE(done.has_crisis_resources());
  // The other replica answers the same retry with the same result.
  intake::v1::CompleteScreeningResponse again;
  ASSERT_TRUE(
      stub_a->CompleteScreening(Ctx("resume").get(), complete, &again).ok());
  EXPECT_EQ(again.result().SerializeAsString(),
            done.result().SerializeAsString());
}

TEST_F(SkeletonE2eTest, StartsWithoutDependenciesAndSaysWhichAndWhere) {
  // A fresh intake pointed at a Redis and a scoring service that are not
  // there: it stays up, NOT_SERVING, and its log names both addresses.
  const std::string missing_redis = "unix:" + dir_.path() + "/absent.sock";
  Service lonely =
      StartService("lonely", "services/intake/aqueduct-intake",
                   {"--redis=" + missing_redis, "--scoring=127.0.0.1:1",
                    "--referral=127.0.0.1:1"});
  ASSERT_FALSE(lonely.address.empty());
  EXPECT_TRUE(WaitHealth(lonely.address, false));
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_TRUE(lonely.process->Running());
  const std::string log = t::ReadFile(lonely.log);
  EXPECT_THAT(log, HasSubstr("scoring at 127.0.0.1:1"));
  EXPECT_THAT(log, HasSubstr("catalog not loaded"));
  // Referral without Redis: up, NOT_SERVING, and the log names the Redis.
  Service alone = StartService("alone", "services/referral/aqueduct-referral",
                               {"--redis=" + missing_redis});
  ASSERT_FALSE(alone.address.empty());
  EXPECT_TRUE(WaitHealth(alone.address, false));
  EXPECT_THAT(t::ReadFile(alone.log), HasSubstr("redis at " + missing_redis));
  EXPECT_TRUE(alone.process->Running());

  // Graceful shutdown on SIGTERM exits 0.
  lonely.process->Signal(SIGTERM);
  auto status = lonely.process->Wait(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST_F(SkeletonE2eTest, ScoringRefusesToRunHalfLoaded) {
  // A ruleset naming an instrument the catalog does not have: the binary
  // stops at start-up, exit code 2, naming the file and the problem.
  const std::string rules = dir_.path() + "/bad-rulesets";
  ASSERT_EQ(mkdir(rules.c_str(), 0755), 0);
  std::string v1 = t::ReadFile(t::SourcePath("data/rulesets/v1.textproto"));
  const std::string needle = "gad7.total >= 10 || auditc.positive";
  ASSERT_NE(v1.find(needle), std::string::npos);
  v1.replace(v1.find(needle), needle.size(),
             "gad8.total >= 10 || auditc.positive");
  {
    FILE* f = fopen((rules + "/v1.textproto").c_str(), "w");
    fputs(v1.c_str(), f);
    fclose(f);
  }
  const std::string log = dir_.path() + "/bad-scoring.log";
  auto p = t::Subprocess::Start(
      {t::BinaryPath("services/scoring/aqueduct-scoring"),
       "--listen=127.0.0.1:0",
       "--catalog=" + t::SourcePath("data/catalog/catalog.textproto"),
       "--rulesets=" + rules},
      log);
  ASSERT_TRUE(p.ok());
  auto status = (*p)->Wait(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  const std::string text = t::ReadFile(log);
  EXPECT_THAT(text, HasSubstr(rules + "/v1.textproto"));
  EXPECT_THAT(text, HasSubstr("route.therapy"));
  EXPECT_THAT(text, HasSubstr("unknown name"));
  EXPECT_THAT(text, HasSubstr("gad8.total"));
}

// Each route end to end: intake completion -> referral -> queue -> claim ->
// decide -> the person's view, over real gRPC between real processes.
struct RoutePath {
  const char* name;
  std::vector<int> phq9;
  std::vector<std::pair<std::string, std::string>> extra;
  common::v1::Route route;
  const char* decider;      // who may decide
  const char* refused;      // a clinician who may not (or "")
  const char* view_before;  // the person's view before the decision
  const char* view_after;
};

class RoutePathTest : public SkeletonE2eTest,
                      public ::testing::WithParamInterface<RoutePath> {};

TEST_P(RoutePathTest, FromCompletionToThePersonsView) {
  const RoutePath& p = GetParam();
  tools::Overrides extra(p.extra.begin(), p.extra.end());
  auto done = Screen(p.phq9, "path", extra);
  ASSERT_EQ(done.handoff(), intake::v1::DELIVERED);

  referral::v1::ListQueueResponse queue;
  ASSERT_TRUE(referral_stub_
                  ->ListQueue(As(p.decider).get(),
                              referral::v1::ListQueueRequest(), &queue)
                  .ok());
  ASSERT_EQ(queue.cases_size(), 1);
  referral::v1::Referral c = queue.cases(0);
  ASSERT_EQ(c.proposed_route(), p.route);
  EXPECT_EQ(c.screening(), done.screening().name());
  EXPECT_EQ(c.location_state(), "NJ");

  referral::v1::GetMyReferralRequest mine;
  mine.set_screening(done.screening().name());
  referral::v1::MyReferral view;
  ASSERT_TRUE(
      referral_stub_->GetMyReferral(Ctx(mine.screening()).get(), mine, &view)
          .ok());
  EXPECT_THAT(view.message(), HasSubstr(p.view_before));

  referral::v1::ClaimCaseRequest claim;
  claim.set_name(c.name());
  referral::v1::Referral held;
  if (*p.refused) {
    EXPECT_THAT(referral_stub_->ClaimCase(As(p.refused).get(), claim, &held),
                GrpcIs(grpc::StatusCode::PERMISSION_DENIED));
  }
  grpc::Status s = referral_stub_->ClaimCase(As(p.decider).get(), claim, &held);
  ASSERT_TRUE(s.ok()) << s.error_message();
  referral::v1::GetCaseRequest get;
  get.set_name(c.name());
  referral::v1::Referral read;
  ASSERT_TRUE(referral_stub_->GetCase(As(p.decider).get(), get, &read).ok());
  EXPECT_EQ(read.claimed_by(), p.decider);

  referral::v1::DecideCaseRequest decide;
  decide.set_name(c.name());
  decide.set_etag(held.etag());
  decide.set_request_id("decision-1");
  decide.mutable_decision()->set_action(referral::v1::Decision::CONFIRM);
  decide.mutable_decision()->set_reason("reviewed with the person by phone");
  referral::v1::Referral decided;
  s = referral_stub_->DecideCase(As(p.decider).get(), decide, &decided);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(decided.state(), referral::v1::DECIDED);

  ASSERT_TRUE(
      referral_stub_->GetMyReferral(Ctx(mine.screening()).get(), mine, &view)
          .ok());
  EXPECT_THAT(view.message(), HasSubstr(p.view_after));
  EXPECT_FALSE(view.pending_review());
  EXPECT_THAT(view.message(), ::testing::Not(HasSubstr("by phone")))
      << "no internal notes";

  referral::v1::ListAuditEventsRequest audit;
  audit.set_parent(c.name());
  referral::v1::ListAuditEventsResponse trail;
  ASSERT_TRUE(
      referral_stub_->ListAuditEvents(As(p.decider).get(), audit, &trail).ok());
  std::vector<std::string> kinds;
  for (const auto& e : trail.events()) kinds.push_back(e.kind());
  if (!kinds.empty() && kinds[0] == "opened_early_risk") {
    // A crisis answer opened the case before completion (the outbox was
    // first); completion then attached the result to that same case.
    // An acute answer after item 9 raised it ("escalated"), before
    // completion attached the result or, when the worker was slower than
    // the person, with it.
    ASSERT_TRUE(p.route == common::v1::CRISIS_URGENT ||
                p.route == common::v1::CRISIS_ACUTE);
    EXPECT_TRUE(c.opened_early());
    size_t i = 1;
    int attached = 0;
    while (i < kinds.size() &&
           (kinds[i] == "escalated" || kinds[i] == "result_attached")) {
      attached += kinds[i] == "result_attached";
      ++i;
    }
    EXPECT_EQ(attached, 1) << "the result attached once";
    kinds.erase(kinds.begin(), kinds.begin() + static_cast<long>(i));
    kinds.insert(kinds.begin(), "created");
  }
  EXPECT_THAT(kinds,
              ::testing::ElementsAre("created", "claimed", "read", "decided"));
  EXPECT_TRUE(c.screening_finished());
}

INSTANTIATE_TEST_SUITE_P(
    EveryRoute, RoutePathTest,
    ::testing::Values(RoutePath{"self_help",
                                {0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
                                {},
                                common::v1::SELF_HELP,
                                "cl-nj",
                                "cl-ny",
                                "self-help plan",
                                "self-help plan"},
                      RoutePath{"therapy",
                                {2, 2, 2, 2, 1, 1, 0, 0, 0, 1},
                                {},
                                common::v1::THERAPY,
                                "cl-nj",
                                "cl-ny",
                                "is reviewing your answers",
                                "recommends therapy"},
                      RoutePath{"ketamine_review",
                                {2, 2, 2, 2, 2, 0, 0, 0, 0, 2},
                                {{"ket.trials", "two_or_more"}},
                                common::v1::KETAMINE_REVIEW,
                                "dr-all",
                                "cl-nj",
                                "under review by a physician",
                                "in-person evaluation"},
                      RoutePath{"crisis_urgent",
                                {1, 1, 0, 1, 0, 0, 0, 0, 1, 1},
                                {},
                                common::v1::CRISIS_URGENT,
                                "cl-nj",
                                "cl-ny",
                                "988",
                                "988"},
                      RoutePath{"crisis_acute",
                                {1, 1, 0, 1, 0, 0, 0, 0, 2, 1},
                                {{"asq.1", "yes"}, {"asq.5", "yes"}},
                                common::v1::CRISIS_ACUTE,
                                "cl-nj",
                                "cl-ny",
                                "988",
                                "988"}),
    [](const auto& info) { return std::string(info.param.name); });

// One watching portal on gRPC's callback client API (no thread of its
// own): counts what it reads, and notes the screening of each created case.
class PortalWatch final
    : public grpc::ClientReadReactor<referral::v1::QueueEvent> {
 public:
  // A `stalled` portal reads the first event and never another: its
  // unread events back up in its own stream only.
  PortalWatch(referral::v1::ReferralService::Stub* stub,
              std::unique_ptr<grpc::ClientContext> ctx, bool stalled)
      : ctx_(std::move(ctx)), stalled_(stalled) {
    stub->async()->WatchQueue(ctx_.get(), &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    {
      absl::MutexLock lock(&mu_);
      if (event_.kind() == "watching") watching_ = true;
      if (event_.kind() == "created")
        created_.push_back(event_.referral().screening());
    }
    if (!stalled_) StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
    status_ = s;
  }
  bool watching() {
    absl::MutexLock lock(&mu_);
    return watching_;
  }
  bool Saw(const std::string& screening) {
    absl::MutexLock lock(&mu_);
    return std::find(created_.begin(), created_.end(), screening) !=
           created_.end();
  }
  void Cancel() { ctx_->TryCancel(); }
  bool WaitDone(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&done_), d);
  }

 private:
  std::unique_ptr<grpc::ClientContext> ctx_;
  const bool stalled_;
  referral::v1::WatchQueueRequest request_;
  referral::v1::QueueEvent event_;
  absl::Mutex mu_;
  bool watching_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> created_ ABSL_GUARDED_BY(mu_);
};

// A referral process's threads and resident memory, from /proc.
std::pair<int64_t, int64_t> ThreadsAndRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  int64_t threads = -1, rss = -1;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "Threads:"))
      threads = std::stoll(line.substr(8));
    if (absl::StartsWith(line, "VmRSS:")) rss = std::stoll(line.substr(6));
  }
  return {threads, rss};
}

// Issue 24 §3: 2,000 portals watch one referral process. They share the
// process's one reader of queue events and hold no thread while they wait
// (referral's thread count stays that of an idle process), a stalled portal
// holds back no one, every portal sees a new case, and the clinicians'
// ListQueue is answered meanwhile. Prints referral's threads and RSS.
TEST_F(SkeletonE2eTest, TwoThousandPortalsWatchOneReferralProcess) {
  constexpr int kPortals = 2000;
  constexpr int kChannels = 16;  // separate connections, as portals have
  const pid_t pid = referral_.process->pid();
  const auto idle = ThreadsAndRssKiB(pid);
  std::vector<std::unique_ptr<referral::v1::ReferralService::Stub>> stubs;
  for (int c = 0; c < kChannels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("aqueduct.test.connection", c);  // no shared connection
    stubs.push_back(
        referral::v1::ReferralService::NewStub(grpc::CreateCustomChannel(
            referral_.address, grpc::InsecureChannelCredentials(), args)));
  }
  std::vector<std::unique_ptr<PortalWatch>> portals;
  for (int i = 0; i < kPortals; ++i) {
    portals.push_back(std::make_unique<PortalWatch>(
        stubs[i % kChannels].get(), As("dr-all", absl::Seconds(120)),
        /*stalled=*/i == 0));
  }
  auto all = [&](const std::function<bool(PortalWatch&)>& ok,
                 absl::Duration within) {
    const absl::Time end = absl::Now() + within;
    int missing = kPortals;
    while (absl::Now() < end) {
      missing = 0;
      for (auto& p : portals) missing += !ok(*p);
      if (missing == 0) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return missing;
  };
  EXPECT_EQ(all([](PortalWatch& p) { return p.watching(); }, absl::Seconds(60)),
            0)
      << "every portal's stream started";
  const auto watching = ThreadsAndRssKiB(pid);

  // A new case while they watch; ListQueue answered meanwhile.
  auto done = Screen({2, 2, 2, 2, 1, 1, 1, 0, 0, 2}, "watched");
  referral::v1::ListQueueResponse queue;
  EXPECT_TRUE(referral_stub_
                  ->ListQueue(As("dr-all").get(),
                              referral::v1::ListQueueRequest(), &queue)
                  .ok());
  const std::string screening = done.screening().name();
  const int missed = all(
      [&](PortalWatch& p) {
        return &p == portals[0].get() || p.Saw(screening);
      },
      absl::Seconds(60));
  EXPECT_EQ(missed, 0) << "portals that never saw the new case";
  const auto after = ThreadsAndRssKiB(pid);
  std::printf(
      "referral with %d portals watching: threads %lld (idle %lld), RSS "
      "%lld KiB (idle %lld, %lld with all watching)\n",
      kPortals, static_cast<long long>(after.first),
      static_cast<long long>(idle.first), static_cast<long long>(after.second),
      static_cast<long long>(idle.second),
      static_cast<long long>(watching.second));
  EXPECT_LE(watching.first, idle.first + 8)
      << "a waiting portal holds no thread";
  for (auto& p : portals) p->Cancel();
  for (auto& p : portals) EXPECT_TRUE(p->WaitDone(absl::Seconds(30)));
}

TEST_F(SkeletonE2eTest, WatchReconnectsWithItsCursorAndMissesNoEvent) {
  auto watch_ctx = As("dr-all", absl::Seconds(30));
  auto stream = referral_stub_->WatchQueue(watch_ctx.get(),
                                           referral::v1::WatchQueueRequest());
  referral::v1::QueueEvent event;
  ASSERT_TRUE(stream->Read(&event));
  EXPECT_EQ(event.kind(), "watching");
  auto first = Screen({2, 2, 2, 2, 1, 1, 0, 0, 0, 1}, "watcher1");
  ASSERT_TRUE(stream->Read(&event));
  EXPECT_EQ(event.kind(), "created");
  EXPECT_EQ(event.referral().screening(), first.screening().name());
  const std::string cursor = event.cursor();
  // The portal drops off.
  watch_ctx->TryCancel();
  while (stream->Read(&event)) {
  }
  stream->Finish();

  // Meanwhile: a claim, a decision, a new case.
  referral::v1::ListQueueResponse queue;
  ASSERT_TRUE(referral_stub_
                  ->ListQueue(As("dr-all").get(),
                              referral::v1::ListQueueRequest(), &queue)
                  .ok());
  referral::v1::ClaimCaseRequest claim;
  claim.set_name(queue.cases(0).name());
  referral::v1::Referral held;
  ASSERT_TRUE(referral_stub_->ClaimCase(As("cl-nj").get(), claim, &held).ok());
  referral::v1::DecideCaseRequest decide;
  decide.set_name(held.name());
  decide.set_etag(held.etag());
  decide.set_request_id("d");
  decide.mutable_decision()->set_action(referral::v1::Decision::CONFIRM);
  decide.mutable_decision()->set_reason("seen");
  referral::v1::Referral decided;
  ASSERT_TRUE(
      referral_stub_->DecideCase(As("cl-nj").get(), decide, &decided).ok());
  auto second = Screen({0, 0, 0, 0, 0, 0, 0, 0, 1, 0}, "watcher2");

  // Back with the cursor: exactly what happened, in order.
  referral::v1::WatchQueueRequest resume;
  resume.set_cursor(cursor);
  auto again_ctx = As("dr-all", absl::Seconds(30));
  auto again = referral_stub_->WatchQueue(again_ctx.get(), resume);
  std::vector<std::string> kinds;
  ASSERT_TRUE(again->Read(&event));
  EXPECT_EQ(event.kind(), "watching");
  while (kinds.size() < 3 && again->Read(&event)) kinds.push_back(event.kind());
  EXPECT_THAT(kinds, ::testing::ElementsAre("claimed", "decided", "created"));
  EXPECT_EQ(event.referral().screening(), second.screening().name());
  again_ctx->TryCancel();
  while (again->Read(&event)) {
  }
  again->Finish();
}

// The terminal client as people use it: an interactive screening typed on
// stdin, the person's results, and a clinician's claim, decision, case view
// and live watch.
TEST_F(SkeletonE2eTest, CommandLineClient) {
  const std::string ctl = t::BinaryPath("tools/aqueductctl/aqueductctl");
  // The CLI mints its tokens with the dev key, as on the local stack.
  const std::vector<std::string> env = {
      "AQUEDUCT_INTAKE_ADDR=" + intake_.address,
      "AQUEDUCT_REFERRAL_ADDR=" + referral_.address,
      "AQUEDUCT_SCORING_ADDR=" + scoring_.address,
      "AQUEDUCT_DEV_KEY=" + Auth().private_key_file(),
      std::string("AQUEDUCT_DEV_KEY_ID=") + t::TestAuth::kKeyId,
      "AQUEDUCT_INSECURE_PLAINTEXT=1",
      t::DataKeysEnv()};
  auto run = [&](std::vector<std::string> args,
                 const std::string& stdin_text = "") {
    const std::string in = dir_.path() + "/stdin.txt",
                      out = dir_.path() + "/ctl.out";
    std::ofstream(in) << stdin_text;
    std::remove(out.c_str());
    args.insert(args.begin(), ctl);
    auto p = t::Subprocess::Start(args, out, env, in);
    EXPECT_TRUE(p.ok());
    auto status = (*p)->Wait(absl::Seconds(30));
    EXPECT_TRUE(status.has_value() && WIFEXITED(*status) &&
                WEXITSTATUS(*status) == 0)
        << t::ReadFile(out);
    return t::ReadFile(out);
  };
  // Watch the queue while the person screens.
  const std::string watch_out = dir_.path() + "/watch.out";
  auto watch =
      t::Subprocess::Start({ctl, "watch", "--actor=dr-all"}, watch_out, env);
  ASSERT_TRUE(watch.ok());
  absl::SleepFor(absl::Milliseconds(500));

  // role: other; works: no; age 35; sex: not stated. PHQ-9 item 9 "several
  // days"; then at once the ASQ (crisis first), 1-4 no; GAD-7, CBI, AUDIT-C
  // low; no drug use.
  std::string answers = "5\n1\n35\n4\n";
  for (int i = 1; i <= 8; ++i) answers += "1\n";
  answers += "2\n1\n";                           // item 9, item 10
  for (int i = 0; i < 4; ++i) answers += "1\n";  // ASQ: no
  for (int i = 0; i < 7; ++i) answers += "1\n";  // GAD-7
  for (int i = 0; i < 6; ++i) answers += "5\n";  // CBI personal: never
  answers += "1\n1\n1\n0\n";                     // AUDIT-C, drug screen
  const std::string screen =
      run({"screen", "--user=cli", "--state=NJ"}, answers);
  EXPECT_THAT(screen, HasSubstr("988"));
  EXPECT_THAT(screen, HasSubstr("answered"));
  EXPECT_THAT(screen, HasSubstr("route: CRISIS_URGENT"));
  const std::string results = run({"results", "--user=cli"});
  EXPECT_THAT(results, HasSubstr("PHQ-9 1"));
  EXPECT_THAT(results, ::testing::Not(HasSubstr("CRISIS")))
      << "the person's view carries no internal route";

  referral::v1::ListQueueResponse queue;
  ASSERT_TRUE(referral_stub_
                  ->ListQueue(As("dr-all").get(),
                              referral::v1::ListQueueRequest(), &queue)
                  .ok());
  ASSERT_EQ(queue.cases_size(), 1);
  const std::string name = queue.cases(0).name();
  EXPECT_THAT(
      run({"queue", "--actor=cl-nj", "--role=clinician", "--states=NJ"}),
      HasSubstr(name));
  EXPECT_THAT(
      run({"claim", name, "--actor=cl-nj", "--role=clinician", "--states=NJ"}),
      HasSubstr("claimed until"));
  EXPECT_THAT(run({"--actor=cl-nj", "--role", "clinician", "--states=NJ",
                   "decide", name.substr(name.find('/') + 1),
                   "--action=confirm", "--reason=called; safety plan agreed"}),
              HasSubstr("DECIDED"))
      << "global flags before the command, the NAME without referrals/";
  const std::string shown =
      run({"case", name, "--actor=cl-nj", "--role=clinician", "--states=NJ"});
  EXPECT_THAT(shown, HasSubstr("fired route.crisis_urgent"));
  EXPECT_THAT(shown, HasSubstr("decided"));

  // The watch saw the case come and go.
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (absl::Now() < end &&
         t::ReadFile(watch_out).find("decided") == std::string::npos) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  (*watch)->Signal(SIGTERM);
  (*watch)->Wait(absl::Seconds(5));
  const std::string watched = t::ReadFile(watch_out);
  EXPECT_THAT(watched, HasSubstr("created"));
  EXPECT_THAT(watched, HasSubstr("claimed"));
  EXPECT_THAT(watched, HasSubstr("decided"));
  EXPECT_THAT(watched, HasSubstr("resume with --cursor="));

  // The README's demo: the whole screening from the start's first page on,
  // one call per page; item 9 above 0 shows 988.
  const std::string demo =
      run({"demo", "--answers=1,1,0,1,0,0,0,0,1,1", "--user=demo"});
  EXPECT_THAT(demo, HasSubstr("page 1 ("));
  EXPECT_THAT(demo, HasSubstr("page 2 ("));
  EXPECT_THAT(demo, HasSubstr("988"));
  EXPECT_THAT(demo, HasSubstr("referral hand-off: DELIVERED"));
}

// FHIR export through intake, as the CLI runs it: one screening to the
// person and to a clinician licensed in their state (not one licensed
// elsewhere, nor another person), a completion range as NDJSON that
// validates against FHIR R4, and every export recorded, sealed, in the
// export audit.
TEST_F(SkeletonE2eTest, FhirExportThroughTheCommandLine) {
  auto crisis = Screen({1, 1, 0, 1, 0, 0, 0, 0, 2, 1}, "fhiruser",
                       {{"asq.1", "yes"}, {"asq.5", "no"}});
  auto therapy = Screen({3, 3, 3, 1, 0, 0, 0, 0, 0, 1}, "fhiruser2");
  const std::string name = crisis.screening().name();
  const std::string id = name.substr(name.rfind('/') + 1);

  const std::string ctl = t::BinaryPath("tools/aqueductctl/aqueductctl");
  const std::vector<std::string> env = {
      "AQUEDUCT_INTAKE_ADDR=" + intake_.address,
      "AQUEDUCT_DEV_KEY=" + Auth().private_key_file(),
      std::string("AQUEDUCT_DEV_KEY_ID=") + t::TestAuth::kKeyId,
      "AQUEDUCT_INSECURE_PLAINTEXT=1"};
  // Runs the CLI; returns its exit code and output.
  auto run = [&](std::vector<std::string> args) {
    const std::string out = dir_.path() + "/export.out";
    std::remove(out.c_str());
    args.insert(args.begin(), ctl);
    auto p = t::Subprocess::Start(args, out, env);
    EXPECT_TRUE(p.ok());
    auto status = (*p)->Wait(absl::Seconds(30));
    const int code =
        status.has_value() && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
    return std::make_pair(code, t::ReadFile(out));
  };

  auto [own_code, own] = run({"export", "--fhir", name, "--role=patient",
                              "--user=fhiruser", "--bundle=transaction"});
  ASSERT_EQ(own_code, 0) << own;
  EXPECT_THAT(own, HasSubstr("\"type\":\"transaction\""));
  EXPECT_THAT(own, HasSubstr("\"method\":\"PUT\""));
  EXPECT_THAT(own, HasSubstr("\"code\":\"44249-1\"")) << "the PHQ-9 panel";
  EXPECT_THAT(own, HasSubstr("\"resourceType\":\"RiskAssessment\""));
  EXPECT_THAT(own, HasSubstr("CRISIS_URGENT"));
  EXPECT_THAT(own, ::testing::Not(HasSubstr("fhiruser")))
      << "the subject is the person's pseudonym";

  auto [other_code, other] =
      run({"export", "--fhir", name, "--role=patient", "--user=someone"});
  EXPECT_NE(other_code, 0);
  EXPECT_THAT(other, HasSubstr("NOT_FOUND"));
  auto [far_code, far] = run({"export", "--fhir", name, "--role=clinician",
                              "--actor=cl-ca", "--states=CA"});
  EXPECT_NE(far_code, 0) << "licensed elsewhere";
  EXPECT_THAT(far, HasSubstr("NOT_FOUND"));
  auto [near_code, near] = run({"export", "--fhir", name, "--role=clinician",
                                "--actor=cl-nj", "--states=NJ"});
  EXPECT_EQ(near_code, 0) << near;
  EXPECT_THAT(near, HasSubstr("\"type\":\"collection\""));

  const std::string out = dir_.path() + "/fhir-export";
  auto [range_code, range] = run({"export", "--fhir", "--out=" + out});
  ASSERT_EQ(range_code, 0) << range;
  EXPECT_THAT(range, HasSubstr("exported 2 screenings"));
  std::vector<std::string> files;
  for (const char* type : {"Questionnaire", "QuestionnaireResponse",
                           "Observation", "RiskAssessment"}) {
    const std::string f = absl::StrCat(out, "/", type, ".ndjson");
    EXPECT_FALSE(t::ReadFile(f).empty()) << f;
    files.push_back(f);
  }
  EXPECT_THAT(t::ReadFile(out + "/Observation.ndjson"),
              HasSubstr(therapy.screening().name().substr(
                  therapy.screening().name().rfind('/') + 1)));
  // Valid FHIR R4 (tests/fhir/validate.cjs).
  const std::string log = dir_.path() + "/validate.log";
  std::string command =
      absl::StrCat("export NODE_PATH=$(", t::SourcePath("tests/npm/install.sh"),
                   " ", std::getenv("AQUEDUCT_BINARY_DIR"), ") && node ",
                   t::SourcePath("tests/fhir/validate.cjs"));
  for (const auto& f : files) absl::StrAppend(&command, " ", f);
  absl::StrAppend(&command, " >", log, " 2>&1");
  EXPECT_EQ(std::system(command.c_str()), 0) << t::ReadFile(log);

  // Each export recorded (the person's, the near clinician's, the range),
  // the refused ones not; sealed, so the stream holds no id in the clear.
  redis::Client admin(redis_->ClientOptions());
  auto audit = admin.Command(
      {"XRANGE", redis::GlobalKey("intake", "export-audit"), "-", "+"},
      absl::Now() + absl::Seconds(2));
  ASSERT_TRUE(audit.ok()) << audit.status();
  EXPECT_EQ(audit->elements.size(), 3u);
  for (const auto& entry : audit->elements) {
    for (const auto& field : entry.elements[1].elements) {
      EXPECT_THAT(field.str, ::testing::Not(HasSubstr(id)));
    }
  }
  EXPECT_THAT(t::ReadFile(intake_.log), HasSubstr("\"msg\":\"fhir export\""));
  EXPECT_THAT(t::ReadFile(intake_.log), ::testing::Not(HasSubstr(id)));
}

TEST_F(SkeletonE2eTest, LogsCarryNoAnswersOrIdentities) {
  auto done = Screen({3, 3, 3, 3, 3, 3, 3, 3, 3, 3}, "secretuser");
  const std::string id =
      done.screening().name().substr(done.screening().name().rfind('/') + 1);
  for (Service* s : {&scoring_, &referral_, &intake_}) {
    const std::string log = t::ReadFile(s->log);
    EXPECT_THAT(log, HasSubstr("\"msg\":\"rpc\"")) << s->log;
    // Status codes by name, as operators search for them.
    EXPECT_THAT(log, HasSubstr("\"code\":\"OK\"")) << s->log;
    EXPECT_THAT(log, ::testing::Not(HasSubstr("secretuser"))) << s->log;
    EXPECT_THAT(log, ::testing::Not(HasSubstr(id))) << s->log;
    EXPECT_THAT(log, ::testing::Not(HasSubstr("option_value"))) << s->log;
  }
}

// The google.rpc.Status a failed call carried (grpc-status-details-bin),
// with the one detail of type T unpacked into `out`; false when absent.
template <typename T>
bool DetailOf(const grpc::Status& s, T* out) {
  google::rpc::Status details;
  if (s.error_details().empty() || !details.ParseFromString(s.error_details()))
    return false;
  if (details.code() != s.error_code() ||
      details.message() != s.error_message())
    return false;
  for (const auto& any : details.details()) {
    if (any.UnpackTo(out)) return true;
  }
  return false;
}

// What a client program can act on without reading prose: the field of a
// bad request, the current etag of a conflict, why a start is refused, and
// when to retry past a rate limit.
TEST_F(SkeletonE2eTest, FailuresCarryMachineReadableDetails) {
  const std::string user = "details";
  intake::v1::StartScreeningRequest start;
  start.set_parent("users/" + user);
  start.set_consent_version("c1");
  intake::v1::Screening screening;
  ASSERT_TRUE(
      intake_stub_->StartScreening(Ctx(user).get(), start, &screening).ok());

  intake::v1::SubmitAnswersRequest submit;
  submit.set_name(screening.name());
  submit.set_etag(screening.etag());
  submit.set_request_id("bad-item");
  submit.add_answers()->set_item_id("phq9.99");
  intake::v1::SubmitAnswersResponse out;
  grpc::Status s = intake_stub_->SubmitAnswers(Ctx(user).get(), submit, &out);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  google::rpc::BadRequest bad;
  ASSERT_TRUE(DetailOf(s, &bad)) << s.error_message();
  ASSERT_EQ(bad.field_violations_size(), 1);
  EXPECT_EQ(bad.field_violations(0).field(), "answers[0].item_id");
  EXPECT_FALSE(bad.field_violations(0).description().empty());

  submit.set_etag("999");
  submit.set_request_id("stale");
  submit.mutable_answers(0)->set_item_id(screening.next().items(0).item().id());
  submit.mutable_answers(0)->set_option_value(
      screening.next().items(0).item().options(0).value());
  s = intake_stub_->SubmitAnswers(Ctx(user).get(), submit, &out);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(DetailOf(s, &info)) << s.error_message();
  EXPECT_EQ(info.reason(), "ETAG_MISMATCH");
  EXPECT_EQ(info.domain(), "aqueduct");
  EXPECT_EQ(info.metadata().at("etag"), screening.etag())
      << "the etag to resubmit with";

  for (int i = 0; i < 2; ++i) {
    intake::v1::Screening more;
    ASSERT_TRUE(
        intake_stub_->StartScreening(Ctx(user).get(), start, &more).ok());
  }
  s = intake_stub_->StartScreening(Ctx(user).get(), start, &screening);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  info.Clear();
  ASSERT_TRUE(DetailOf(s, &info)) << s.error_message();
  EXPECT_EQ(info.reason(), "TOO_MANY_OPEN_SCREENINGS");
  EXPECT_EQ(info.metadata().at("max_open_screenings"), "3");
  google::rpc::RetryInfo retry;
  EXPECT_FALSE(DetailOf(s, &retry)) << "waiting does not help here";

  // Past --submit_limit_per_minute (60): when the window ends.
  s = grpc::Status::OK;
  for (int i = 0;
       i < 70 && s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED; ++i) {
    submit.set_request_id("flood-" + std::to_string(i));
    s = intake_stub_->SubmitAnswers(Ctx(user).get(), submit, &out);
  }
  ASSERT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(DetailOf(s, &retry)) << s.error_message();
  EXPECT_GT(retry.retry_delay().seconds(), 0);
  EXPECT_LE(retry.retry_delay().seconds(), 60);
}

// A caller's W3C traceparent reaches every service the screening touches:
// intake's lines for the person's calls, and scoring's and referral's for
// the calls intake made on its behalf, carry the caller's trace id. Every
// line any service wrote is one JSON object (gRPC's and protobuf's own
// messages included).
TEST_F(SkeletonE2eTest, LogsFollowOneTraceAcrossServices) {
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  CallerTraceparent() = "00-" + trace + "-00f067aa0ba902b7-01";
  auto done = Screen({1, 1, 1, 1, 1, 1, 1, 1, 0, 1}, "traced");
  CallerTraceparent().clear();
  EXPECT_EQ(done.handoff(), intake::v1::DELIVERED);
  // A call that sends none starts a trace of its own.
  Screen({0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "untraced");
  const std::string field = "\"trace_id\":\"" + trace + "\"";
  for (Service* s : {&intake_, &scoring_, &referral_}) {
    const std::string log = t::ReadFile(s->log);
    int traced_rpcs = 0, rpcs = 0;
    for (absl::string_view line :
         absl::StrSplit(log, '\n', absl::SkipEmpty())) {
      ASSERT_TRUE(absl::StartsWith(line, "{") && absl::EndsWith(line, "}"))
          << s->log << ": not a JSON line: " << line;
      if (!absl::StrContains(line, "\"msg\":\"rpc\"")) continue;
      ++rpcs;
      EXPECT_THAT(std::string(line), HasSubstr("\"trace_id\":\""))
          << "every call's line has a trace id";
      if (absl::StrContains(line, field)) ++traced_rpcs;
    }
    EXPECT_GT(traced_rpcs, 0) << s->log;
    EXPECT_LT(traced_rpcs, rpcs) << "the untraced screening's calls differ";
  }
  // Intake's own lines inside the calls carry it too.
  EXPECT_THAT(t::ReadFile(intake_.log),
              HasSubstr(field + ",\"msg\":\"screening started\""));
}

// The number in a Prometheus instant query's answer (the sum of its
// series), or an error naming what came back.
absl::StatusOr<double> PrometheusValue(int port, const std::string& query) {
  std::string escaped;
  for (unsigned char c : query) {
    if (std::isalnum(c) || c == '_' || c == '.' || c == '-') {
      escaped += static_cast<char>(c);
    } else {
      escaped += absl::StrFormat("%%%02X", c);
    }
  }
  auto body =
      t::HttpGet(port, "/api/v1/query?query=" + escaped, absl::Seconds(5));
  if (!body.ok()) return body.status();
  google::protobuf::Struct answer;
  if (!google::protobuf::util::JsonStringToMessage(*body, &answer).ok())
    return absl::InternalError("not JSON: " + *body);
  const auto& fields = answer.fields();
  if (fields.count("status") == 0 ||
      fields.at("status").string_value() != "success" ||
      fields.count("data") == 0)
    return absl::InternalError("query failed: " + *body);
  const auto& result =
      fields.at("data").struct_value().fields().at("result").list_value();
  if (result.values_size() == 0)
    return absl::NotFoundError("no series for " + query);
  double sum = 0;
  for (const auto& series : result.values()) {
    const auto& value = series.struct_value().fields().at("value").list_value();
    double v = 0;
    if (value.values_size() != 2 ||
        !absl::SimpleAtod(value.values(1).string_value(), &v))
      return absl::InternalError("unexpected sample: " + *body);
    sum += v;
  }
  return sum;
}

// Issue 26 §1: a real Prometheus (Debian's) scrapes the three services'
// /metrics, and a screening taken through intake shows up in the
// grpc_server_* counters it answers queries with: every service's calls,
// status codes by name, latencies; Redis round trips; and no name or id in
// any label.
TEST_F(SkeletonE2eTest, PrometheusScrapesEveryService) {
  std::map<std::string, int> metrics_port;
  for (const char* name : {"scoring", "referral", "intake"}) {
    metrics_port[name] =
        t::WaitForPortFile(MetricsPortFile(name), absl::Seconds(10));
    ASSERT_GT(metrics_port[name], 0) << name;
  }
  const int prometheus_port = t::FreeLoopbackPort();
  ASSERT_GT(prometheus_port, 0);
  const std::string config = dir_.path() + "/prometheus.yml";
  {
    std::ofstream out(config);
    out << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        << "scrape_configs:\n";
    for (const auto& [name, port] : metrics_port) {
      out << "  - job_name: " << name << "\n    static_configs:\n"
          << "      - targets: ['127.0.0.1:" << port << "']\n";
    }
  }
  auto prometheus = t::Subprocess::Start(
      {"/usr/bin/prometheus", "--config.file=" + config,
       "--storage.tsdb.path=" + dir_.path() + "/prometheus-data",
       "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)},
      dir_.path() + "/prometheus.log");
  ASSERT_TRUE(prometheus.ok()) << prometheus.status();

  auto done = Screen({1, 2, 1, 2, 1, 1, 1, 1, 0, 1}, "metricsuser");
  ASSERT_EQ(done.handoff(), intake::v1::DELIVERED);
  // One screening started and abandoned.
  {
    intake::v1::StartScreeningRequest start;
    start.set_parent("users/metricsuser");
    start.set_consent_version("c1");
    intake::v1::Screening started;
    ASSERT_TRUE(
        intake_stub_->StartScreening(Ctx("metricsuser").get(), start, &started)
            .ok());
    intake::v1::AbandonScreeningRequest abandon;
    abandon.set_name(started.name());
    intake::v1::Screening abandoned;
    ASSERT_TRUE(
        intake_stub_
            ->AbandonScreening(Ctx("metricsuser").get(), abandon, &abandoned)
            .ok());
  }
  // One refused call, to see a code by its name.
  intake::v1::GetNextItemsRequest bad;
  bad.set_name("users/metricsuser/screenings/");
  intake::v1::NextItems ignored;
  EXPECT_THAT(
      intake_stub_->GetNextItems(Ctx("metricsuser").get(), bad, &ignored),
      GrpcIs(grpc::StatusCode::INVALID_ARGUMENT));

  // Each query must reach its floor within the wait (scrapes run every
  // second; this waits, it does not time anything).
  const std::vector<std::pair<std::string, double>> expected = {
      {"sum(up)", 3},
      {"sum(grpc_server_handled_total{job=\"intake\",grpc_service="
       "\"aqueduct.intake.v1.IntakeService\",grpc_method="
       "\"CompleteScreening\",grpc_code=\"OK\",grpc_type=\"unary\"})",
       1},
      {"sum(grpc_server_handled_total{job=\"intake\",grpc_method="
       "\"GetNextItems\",grpc_code=\"INVALID_ARGUMENT\"})",
       1},
      {"sum(grpc_server_started_total{job=\"intake\",grpc_method="
       "\"SubmitAnswers\"})",
       2},
      {"sum(grpc_server_handling_seconds_count{job=\"intake\",grpc_method="
       "\"SubmitAnswers\"})",
       2},
      {"sum(grpc_server_handled_total{job=\"referral\",grpc_service="
       "\"aqueduct.referral.v1.ReferralService\",grpc_code=\"OK\"})",
       1},
      {"sum(aqueduct_intake_screenings_started_total{job=\"intake\"})", 2},
      {"sum(aqueduct_intake_screenings_abandoned_total{job=\"intake\","
       "early_risk_route=\"ROUTE_UNSPECIFIED\"})",
       1},
      {"sum(aqueduct_intake_screenings_completed_total{job=\"intake\","
       "route=\"THERAPY\",handoff=\"DELIVERED\"})",
       1},
      {"sum(aqueduct_referral_cases_opened_total{job=\"referral\","
       "route=\"THERAPY\"})",
       1},
      {"sum(aqueduct_referral_queue_cases{job=\"referral\","
       "priority=\"ROUTINE\"})",
       1},
      {"sum(aqueduct_referral_queue_cases_by_route{job=\"referral\","
       "route=\"THERAPY\",priority=\"ROUTINE\"})",
       1},
      // A gauge the hand-off worker sets every round: present, and empty
      // once the hand-off was delivered.
      {"count(aqueduct_intake_outbox_entries{job=\"intake\"} == 0)", 2},
      {"count(aqueduct_intake_outbox_oldest_age_seconds{job=\"intake\"} == "
       "0)",
       2},
      {"sum(aqueduct_redis_round_trip_seconds_count{job=\"intake\"})", 1},
      {"sum(aqueduct_redis_round_trip_seconds_count{job=\"referral\"})", 1},
      {"sum(grpc_server_handled_total{job=\"scoring\",grpc_service="
       "\"aqueduct.scoring.v1.ScoringService\",grpc_code=\"OK\"})",
       1},
  };
  const absl::Time end = absl::Now() + absl::Seconds(45);
  for (const auto& [query, floor] : expected) {
    absl::StatusOr<double> value = absl::UnavailableError("not asked yet");
    while (absl::Now() < end) {
      value = PrometheusValue(prometheus_port, query);
      if (value.ok() && *value >= floor) break;
      absl::SleepFor(absl::Milliseconds(250));
    }
    ASSERT_TRUE(value.ok()) << query << ": " << value.status() << "\n"
                            << t::ReadFile(dir_.path() + "/prometheus.log");
    EXPECT_GE(*value, floor) << query;
  }
  // What the services serve names no person and no screening.
  const std::string id =
      done.screening().name().substr(done.screening().name().rfind('/') + 1);
  for (const auto& [name, port] : metrics_port) {
    auto text = t::HttpGet(port, "/metrics", absl::Seconds(5));
    ASSERT_TRUE(text.ok()) << name << ": " << text.status();
    EXPECT_THAT(*text, HasSubstr("grpc_server_handled_total")) << name;
    EXPECT_THAT(*text, ::testing::Not(HasSubstr("metricsuser"))) << name;
    EXPECT_THAT(*text, ::testing::Not(HasSubstr(id))) << name;
  }
}

// ---- Early risk cases through the real binaries (reference section 10) ---

class EarlyRiskE2eTest : public SkeletonE2eTest {
 protected:
  // Starts a screening for `user` and answers pages until the PHQ-9 page
  // (item 9 = `item9`) is acknowledged; returns the screening's name and
  // sets `*acked` to when the acknowledgement arrived.
  std::string AnswerToRisk(const std::string& user, const std::string& item9,
                           absl::Time* acked) {
    tools::Overrides overrides = t::AdultContext("NJ");
    overrides["phq9.9"] = item9;
    intake::v1::StartScreeningRequest start;
    start.set_parent("users/" + user);
    start.set_consent_version("c1");
    intake::v1::Screening screening;
    EXPECT_TRUE(
        intake_stub_->StartScreening(Ctx(user).get(), start, &screening).ok());
    for (int page = 0; page < 5; ++page) {
      intake::v1::GetNextItemsRequest next_req;
      next_req.set_name(screening.name());
      intake::v1::NextItems next;
      EXPECT_TRUE(
          intake_stub_->GetNextItems(Ctx(user).get(), next_req, &next).ok());
      const bool phq9 =
          !next.items().empty() && next.items(0).instrument_id() == "phq9";
      EXPECT_EQ(AnswerPages(*intake_stub_, screening.name(), overrides, 1), 1);
      if (phq9) {
        *acked = absl::Now();
        return screening.name();
      }
    }
    ADD_FAILURE() << "no PHQ-9 page";
    return screening.name();
  }
  // Polls the clinician queue for the screening's cases (bounded: gives up
  // after `limit`); sets `*seen` to when they were first listed.
  std::vector<referral::v1::Referral> WaitForCases(
      const std::string& screening, absl::Time* seen,
      absl::Duration limit = absl::Seconds(20)) {
    referral::v1::ListQueueRequest req;
    req.set_screening(screening);
    req.set_include_claimed(true);
    const absl::Time end = absl::Now() + limit;
    while (absl::Now() < end) {
      referral::v1::ListQueueResponse queue;
      if (referral_stub_->ListQueue(As("dr-all").get(), req, &queue).ok() &&
          queue.cases_size() > 0) {
        *seen = absl::Now();
        return {queue.cases().begin(), queue.cases().end()};
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return {};
  }
  std::vector<std::string> AuditKinds(const std::string& name) {
    referral::v1::ListAuditEventsRequest req;
    req.set_parent(name);
    referral::v1::ListAuditEventsResponse trail;
    EXPECT_TRUE(
        referral_stub_->ListAuditEvents(As("dr-all").get(), req, &trail).ok());
    std::vector<std::string> kinds;
    for (const auto& e : trail.events()) kinds.push_back(e.kind());
    return kinds;
  }
  // Kills referral; RestartReferral brings it back on the same address.
  void KillReferral() {
    referral_listen_ = referral_.address;
    referral_.process->Signal(SIGKILL);
    referral_.process->Wait(absl::Seconds(5));
  }
  void RestartReferral() {
    referral_ =
        StartService("referral-back", "services/referral/aqueduct-referral",
                     {"--redis=" + redis_->address()}, referral_listen_);
    ASSERT_TRUE(WaitHealth(referral_.address, true));
    referral_stub_ =
        referral::v1::ReferralService::NewStub(Channel(referral_.address));
  }
  std::string referral_listen_;
};

TEST_F(EarlyRiskE2eTest,
       ARiskAnswerThenAbandonLeavesAnUrgentCaseOnTheWatchedQueue) {
  // A clinician's live queue, open before the person answers.
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  watch_ctx.AddMetadata("authorization", auth::BearerValue(Auth().Token(
                                             "physician", "dr-all", {"NJ"})));
  auto stream =
      referral_stub_->WatchQueue(&watch_ctx, referral::v1::WatchQueueRequest());
  referral::v1::QueueEvent event;
  ASSERT_TRUE(stream->Read(&event));
  ASSERT_EQ(event.kind(), "watching")
      << "the watch is established before the answer";

  absl::Time acked, seen;
  const std::string name = AnswerToRisk("early1", "1", &acked);
  ASSERT_TRUE(stream->Read(&event)) << "an event on the live queue";
  const absl::Time streamed = absl::Now();
  EXPECT_EQ(event.kind(), "created");
  EXPECT_EQ(event.referral().screening(), name);
  watch_ctx.TryCancel();
  auto cases = WaitForCases(name, &seen);
  ASSERT_EQ(cases.size(), 1u);
  // Reported, not asserted on time (the machine decides seconds): the
  // issue's bound is 2 s with referral up.
  std::printf(
      "early risk case: on the watch %.0f ms, in the queue %.0f ms after the "
      "acknowledged answer\n",
      absl::ToDoubleMilliseconds(streamed - acked),
      absl::ToDoubleMilliseconds(seen - acked));
  const auto& c = cases[0];
  EXPECT_EQ(c.priority(), referral::v1::URGENT);
  EXPECT_EQ(c.current_route(), common::v1::CRISIS_URGENT);
  EXPECT_TRUE(c.opened_early());
  EXPECT_FALSE(c.screening_finished());
  ASSERT_EQ(c.risk_answers_size(), 1);
  EXPECT_EQ(c.risk_answers(0).item_id(), "phq9.9");
  EXPECT_EQ(c.risk_answers(0).answer(), "Several days");

  // The person closes the app for good: abandon, deleting the answers.
  intake::v1::AbandonScreeningRequest abandon;
  abandon.set_name(name);
  abandon.set_delete_answers(true);
  intake::v1::Screening abandoned;
  ASSERT_TRUE(
      intake_stub_->AbandonScreening(Ctx("early1").get(), abandon, &abandoned)
          .ok());
  absl::SleepFor(absl::Seconds(1));  // a few outbox rounds
  cases = WaitForCases(name, &seen);
  ASSERT_EQ(cases.size(), 1u) << "never deleted or silenced";
  EXPECT_EQ(cases[0].state(), referral::v1::OPEN);
  EXPECT_FALSE(cases[0].screening_finished())
      << "the case says the screening was not finished";
  EXPECT_THAT(AuditKinds(cases[0].name()),
              ::testing::ElementsAre("opened_early_risk"));
}

TEST_F(EarlyRiskE2eTest,
       IntakeKilledRightAfterTheAcknowledgementStillOpensTheCase) {
  // Referral down, so the case can only be in intake's outbox when intake
  // dies the moment the answer is acknowledged.
  KillReferral();
  absl::Time acked, seen;
  const std::string name = AnswerToRisk("early2", "2", &acked);
  intake_.process->Signal(SIGKILL);
  intake_.process->Wait(absl::Seconds(5));
  RestartReferral();
  Service restarted = StartIntake("intake-after-kill");
  ASSERT_TRUE(WaitHealth(restarted.address, true))
      << t::ReadFile(restarted.log);
  auto cases = WaitForCases(name, &seen);
  ASSERT_EQ(cases.size(), 1u) << t::ReadFile(restarted.log);
  EXPECT_EQ(cases[0].current_route(), common::v1::CRISIS_URGENT);
  EXPECT_EQ(cases[0].risk_answers(0).answer(), "More than half the days");
}

TEST_F(EarlyRiskE2eTest,
       ReferralDownDuringTheAnswerThenOneCaseCompletedByTheResult) {
  KillReferral();
  absl::Time acked, seen;
  const std::string name = AnswerToRisk("early3", "1", &acked);
  absl::SleepFor(absl::Seconds(1));  // attempts fail meanwhile
  RestartReferral();
  const absl::Time back = absl::Now();
  auto cases = WaitForCases(name, &seen);
  ASSERT_EQ(cases.size(), 1u);
  std::printf(
      "early risk case: in the queue %.0f ms after referral came back (outbox "
      "retry 300 ms)\n",
      absl::ToDoubleMilliseconds(seen - back));
  absl::SleepFor(absl::Seconds(1));  // more outbox rounds: still one
  cases = WaitForCases(name, &seen);
  ASSERT_EQ(cases.size(), 1u) << "delivered exactly once";

  // The person finishes: the same case gets the full result.
  tools::Overrides overrides = t::AdultContext("NJ");
  overrides["phq9.9"] = "1";
  for (int i = 0; i < 20 && AnswerPages(*intake_stub_, name, overrides, 1) == 1;
       ++i) {
  }
  intake::v1::GetScreeningRequest get;
  get.set_name(name);
  intake::v1::Screening now;
  ASSERT_TRUE(intake_stub_->GetScreening(Ctx("early3").get(), get, &now).ok());
  intake::v1::CompleteScreeningRequest complete;
  complete.set_name(name);
  complete.set_etag(now.etag());
  complete.set_request_id("complete-early3");
  intake::v1::CompleteScreeningResponse done;
  grpc::Status s =
      intake_stub_->CompleteScreening(Ctx("early3").get(), complete, &done);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(done.handoff(), intake::v1::DELIVERED);
  EXPECT_EQ(done.case_name(), cases[0].name())
      << "the person's completion names the case";
  cases = WaitForCases(name, &seen);
  ASSERT_EQ(cases.size(), 1u) << "one case per screening";
  EXPECT_TRUE(cases[0].screening_finished());
  EXPECT_EQ(cases[0].result().ruleset_version(), "v2");
  EXPECT_EQ(cases[0].result().engine_version(), "2");
  EXPECT_THAT(AuditKinds(cases[0].name()),
              ::testing::ElementsAre("opened_early_risk", "result_attached"));
  referral::v1::GetMyReferralRequest mine;
  mine.set_screening(name);
  referral::v1::MyReferral view;
  ASSERT_TRUE(
      referral_stub_->GetMyReferral(Ctx("early3").get(), mine, &view).ok());
  EXPECT_EQ(view.case_name(), cases[0].name());
}

}  // namespace
}  // namespace aqueduct
