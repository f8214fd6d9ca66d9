// Issue 24 §2: Redis failover under Sentinel. Three Redis nodes (a primary
// and two replicas; AOF fsynced on every write; a password) and three
// Sentinels (a password of their own) on loopback; the three services find
// the primary through the Sentinels and every write waits for a replica
// (WAIT 1). People take screenings page by page while the primary is
// SIGKILLed. The test prints the seconds no answer page was acknowledged,
// the calls that failed and their codes, and checks that no acknowledged
// answer was lost and that every screening goes on to completion.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/auth/authorizer.h"
#include "common/redis/redis_client.h"
#include "common/server/health_client.h"
#include "gtest/gtest.h"
#include "protos/intake/v1/intake_service.grpc.pb.h"
#include "tests/testing/auth.h"
#include "tests/testing/process.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"
#include "tools/aqueductctl/scripted_answers.h"

namespace aqueduct {
namespace {

namespace t = ::aqueduct::testing;

constexpr char kPassword[] = "data-node-secret";
constexpr char kSentinelPassword[] = "sentinel-secret";
constexpr char kMaster[] = "aqueduct";

redis::Options At(int port, const std::string& password) {
  redis::Options o;
  o.endpoint.host = "127.0.0.1";
  o.endpoint.port = static_cast<uint16_t>(port);
  o.password = password;
  o.pool_size = 1;
  return o;
}

class SentinelE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) node_ports_.push_back(t::FreeLoopbackPort());
    for (int i = 0; i < 3; ++i)
      sentinel_ports_.push_back(t::FreeLoopbackPort());
    for (int i = 0; i < 3; ++i) {
      const std::string d = absl::StrCat(dir_.path(), "/node", i);
      ASSERT_EQ(system(("mkdir -p " + d).c_str()), 0);
      std::vector<std::string> argv = {"redis-server",
                                       "--port",
                                       absl::StrCat(node_ports_[i]),
                                       "--bind",
                                       "127.0.0.1",
                                       "--dir",
                                       d,
                                       "--appendonly",
                                       "yes",
                                       "--appendfsync",
                                       "always",
                                       "--save",
                                       "",
                                       "--requirepass",
                                       kPassword,
                                       "--masterauth",
                                       kPassword};
      if (i > 0) {
        argv.insert(argv.end(),
                    {"--replicaof", "127.0.0.1", absl::StrCat(node_ports_[0])});
      }
      auto p = t::Subprocess::Start(argv, d + ".log");
      ASSERT_TRUE(p.ok()) << p.status();
      nodes_.push_back(std::move(*p));
    }
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(Until([&] {
        redis::Client c(At(node_ports_[i], kPassword));
        return c.Ping(absl::Now() + absl::Milliseconds(300)).ok();
      })) << "node "
          << i << " answers";
    }
    for (int i = 0; i < 3; ++i) {
      const std::string conf =
          absl::StrCat(dir_.path(), "/sentinel", i, ".conf");
      std::ofstream(conf) << "port " << sentinel_ports_[i] << "\n"
                          << "bind 127.0.0.1\n"
                          << "dir " << dir_.path() << "\n"
                          << "requirepass " << kSentinelPassword << "\n"
                          << "sentinel sentinel-pass " << kSentinelPassword
                          << "\n"
                          << "sentinel monitor " << kMaster << " 127.0.0.1 "
                          << node_ports_[0] << " 2\n"
                          << "sentinel auth-pass " << kMaster << " "
                          << kPassword << "\n"
                          << "sentinel down-after-milliseconds " << kMaster
                          << " 1000\n"
                          << "sentinel failover-timeout " << kMaster
                          << " 10000\n"
                          << "sentinel parallel-syncs " << kMaster << " 2\n";
      auto p = t::Subprocess::Start({"redis-server", conf, "--sentinel"},
                                    conf + ".log");
      ASSERT_TRUE(p.ok()) << p.status();
      sentinels_.push_back(std::move(*p));
    }
    // Both replicas have finished their first sync (a write waits for one).
    ASSERT_TRUE(Until(
        [&] {
          redis::Client c(At(node_ports_[0], kPassword));
          auto info = c.Command({"INFO", "replication"},
                                absl::Now() + absl::Seconds(1));
          if (!info.ok()) return false;
          int online = 0;
          for (size_t at = info->str.find("state=online");
               at != std::string::npos;
               at = info->str.find("state=online", at + 1))
            ++online;
          return online == 2;
        },
        absl::Seconds(30)))
        << "the replicas are in sync";
    // Every Sentinel knows both replicas and the two other Sentinels.
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(Until(
          [&] {
            redis::Client s(At(sentinel_ports_[i], kSentinelPassword));
            auto replicas = s.Command({"SENTINEL", "replicas", kMaster},
                                      absl::Now() + absl::Seconds(1));
            auto others = s.Command({"SENTINEL", "sentinels", kMaster},
                                    absl::Now() + absl::Seconds(1));
            return replicas.ok() && replicas->elements.size() == 2 &&
                   others.ok() && others->elements.size() == 2;
          },
          absl::Seconds(30)))
          << "Sentinel " << i << " sees the whole set";
    }

    std::vector<std::string> list;
    for (int port : sentinel_ports_)
      list.push_back(absl::StrCat("127.0.0.1:", port));
    const std::vector<std::string> env = {
        t::DataKeysEnv(),
        "AQUEDUCT_REDIS_SENTINELS=" + absl::StrJoin(list, ","),
        std::string("AQUEDUCT_REDIS_MASTER=") + kMaster,
        std::string("AQUEDUCT_REDIS_PASSWORD=") + kPassword,
        std::string("AQUEDUCT_REDIS_SENTINEL_PASSWORD=") + kSentinelPassword};
    const std::vector<std::string> common = {
        "--auth_keys=" + auth_.keys_dir(), "--insecure_plaintext",
        // Unused under Sentinel: the primary is asked of the Sentinels.
        "--redis=127.0.0.1:1", "--redis_timeout_ms=500"};
    auto with = [&](std::vector<std::string> args) {
      args.insert(args.end(), common.begin(), common.end());
      return args;
    };
    auto scoring = t::StartService(
        dir_.path(), "scoring", "services/scoring/aqueduct-scoring",
        {"--catalog=" + t::SourcePath("data/catalog/catalog.textproto"),
         "--rulesets=" + t::SourcePath("data/rulesets"),
         "--auth_keys=" + auth_.keys_dir(), "--insecure_plaintext"},
        {t::DataKeysEnv()});
    ASSERT_TRUE(scoring.ok()) << scoring.status();
    scoring_ = std::move(*scoring);
    auto referral =
        t::StartService(dir_.path(), "referral",
                        "services/referral/aqueduct-referral", with({}), env);
    ASSERT_TRUE(referral.ok()) << referral.status();
    referral_ = std::move(*referral);
    auto intake = t::StartService(
        dir_.path(), "intake", "services/intake/aqueduct-intake",
        with({"--scoring=" + scoring_.address,
              "--referral=" + referral_.address, "--handoff_retry_ms=300",
              "--service_key=" + auth_.private_key_file(),
              std::string("--service_key_id=") + t::TestAuth::kKeyId}),
        env);
    ASSERT_TRUE(intake.ok()) << intake.status();
    intake_ = std::move(*intake);
    for (auto* s : {&scoring_, &referral_, &intake_}) {
      ASSERT_TRUE(t::WaitServing(
          grpc::CreateChannel(s->address, grpc::InsecureChannelCredentials())))
          << t::ReadFile(s->log);
    }
    intake_stub_ = intake::v1::IntakeService::NewStub(grpc::CreateChannel(
        intake_.address, grpc::InsecureChannelCredentials()));
  }

  static bool Until(const std::function<bool()>& ok,
                    absl::Duration within = absl::Seconds(15)) {
    const absl::Time end = absl::Now() + within;
    while (absl::Now() < end) {
      if (ok()) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& user) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    c->AddMetadata("authorization",
                   auth::BearerValue(auth_.Token("patient", user)));
    return c;
  }

  t::TempDir dir_;
  t::TestAuth auth_;
  std::vector<int> node_ports_, sentinel_ports_;
  std::vector<std::unique_ptr<t::Subprocess>> nodes_, sentinels_;
  t::ServiceProcess scoring_, referral_, intake_;
  std::unique_ptr<intake::v1::IntakeService::Stub> intake_stub_;
};

TEST_F(SentinelE2eTest, PrimaryKilledUnderLoadLosesNoAcknowledgedAnswer) {
  constexpr int kPeople = 4;
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::map<std::string, int> codes;  // gRPC code name -> calls
  absl::Time last_ok_before_kill = absl::InfinitePast();
  absl::Time first_ok_after_kill = absl::InfiniteFuture();
  absl::Time killed_at = absl::InfiniteFuture();
  // One screening and the answers the last OK SubmitAnswers reported.
  struct Screening {
    std::string name;
    int acknowledged = 0;
    bool completed = false;
  };
  struct Person {
    std::string user;
    std::vector<Screening> screenings;  // the last one is in progress
  };
  std::vector<Person> people(kPeople);
  const tools::Overrides answers = t::AdultContext("NJ");
  auto count = [&](const grpc::Status& s, bool is_write, absl::Time started) {
    absl::MutexLock lock(&mu);
    ++codes[absl::StatusCodeToString(
        static_cast<absl::StatusCode>(s.error_code()))];
    if (s.ok() && is_write) {
      if (started > killed_at)
        first_ok_after_kill = std::min(first_ok_after_kill, absl::Now());
      else
        last_ok_before_kill = std::max(last_ok_before_kill, absl::Now());
    }
    return s.ok();
  };
  // One step of a person's screenings, as an app takes them: start one,
  // answer its next page, or complete it and start the next. False once
  // `stop` is set and nothing is in progress.
  auto step = [&](Person& p, bool finish_only) {
    if (p.screenings.empty() || p.screenings.back().completed) {
      if (finish_only) return false;
      intake::v1::StartScreeningRequest start;
      start.set_parent("users/" + p.user);
      start.set_consent_version("c1");
      intake::v1::Screening started;
      const absl::Time at = absl::Now();
      if (count(
              intake_stub_->StartScreening(Ctx(p.user).get(), start, &started),
              true, at))
        p.screenings.push_back({started.name()});
      return true;
    }
    Screening& sc = p.screenings.back();
    intake::v1::GetNextItemsRequest next_req;
    next_req.set_name(sc.name);
    intake::v1::NextItems next;
    if (!count(intake_stub_->GetNextItems(Ctx(p.user).get(), next_req, &next),
               false, absl::Now()))
      return true;  // try again
    const absl::Time at = absl::Now();
    if (next.items().empty()) {
      intake::v1::CompleteScreeningRequest complete;
      complete.set_name(sc.name);
      complete.set_etag(next.etag());
      complete.set_request_id("done");
      intake::v1::CompleteScreeningResponse done;
      if (count(intake_stub_->CompleteScreening(Ctx(p.user).get(), complete,
                                                &done),
                true, at))
        sc.completed = true;
      return true;
    }
    intake::v1::SubmitAnswersRequest submit;
    submit.set_name(sc.name);
    submit.set_etag(next.etag());
    submit.set_request_id(absl::StrCat("p", next.etag()));
    for (const auto& ask : next.items())
      *submit.add_answers() = *tools::ScriptedAnswer(ask.item(), answers);
    intake::v1::SubmitAnswersResponse submitted;
    if (count(
            intake_stub_->SubmitAnswers(Ctx(p.user).get(), submit, &submitted),
            true, at)) {
      sc.acknowledged = submitted.screening().progress().answered();
    }
    return true;
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kPeople; ++i) {
    people[i].user = absl::StrCat("failover", i);
    threads.emplace_back([&, i] {
      while (!stop.load() && step(people[i], false)) {
        absl::SleepFor(absl::Milliseconds(50));  // a person reads the page
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(1500));
  {
    absl::MutexLock lock(&mu);
    killed_at = absl::Now();
  }
  nodes_[0]->Signal(SIGKILL);
  (void)nodes_[0]->Wait(absl::Seconds(5));
  // Until a write is acknowledged again (the failover), and a little more.
  const bool recovered = Until(
      [&] {
        absl::MutexLock lock(&mu);
        return first_ok_after_kill != absl::InfiniteFuture();
      },
      absl::Seconds(60));
  absl::SleepFor(absl::Milliseconds(1000));
  stop.store(true);
  for (auto& th : threads) th.join();
  ASSERT_TRUE(recovered)
      << "nothing acknowledged after the primary was killed\nintake log:\n"
      << t::ReadFile(intake_.log);

  // Every acknowledged answer is still there, and every screening in
  // progress goes on to completion on the new primary.
  int lost = 0, acknowledged = 0, screenings = 0, completed_before = 0;
  for (Person& p : people) {
    for (const Screening& sc : p.screenings) {
      ++screenings;
      completed_before += sc.completed;
      intake::v1::GetScreeningRequest get;
      get.set_name(sc.name);
      intake::v1::Screening now;
      grpc::Status s = intake_stub_->GetScreening(Ctx(p.user).get(), get, &now);
      ASSERT_TRUE(s.ok()) << s.error_message();
      acknowledged += sc.acknowledged;
      if (now.progress().answered() < sc.acknowledged)
        lost += sc.acknowledged - now.progress().answered();
      if (sc.completed) {
        EXPECT_EQ(now.state(), intake::v1::COMPLETED);
      }
    }
    for (int i = 0; i < 60 && step(p, true); ++i) {
    }
    ASSERT_FALSE(p.screenings.empty());
    EXPECT_TRUE(p.screenings.back().completed)
        << p.user << " could not finish after the failover";
  }
  std::string seen;
  {
    absl::MutexLock lock(&mu);
    for (const auto& [code, n] : codes)
      absl::StrAppend(&seen, code, "=", n, " ");
    std::printf(
        "primary killed under load: %.2f s without an acknowledged write "
        "(from the kill), %.2f s since the last one before it; %d "
        "screenings (%d completed before the end), answers acknowledged %d, "
        "lost %d; calls: %s\n",
        absl::ToDoubleSeconds(first_ok_after_kill - killed_at),
        absl::ToDoubleSeconds(first_ok_after_kill - last_ok_before_kill),
        screenings, completed_before, acknowledged, lost, seen.c_str());
    for (const auto& [code, n] : codes) {
      EXPECT_TRUE(code == "OK" || code == "UNAVAILABLE")
          << code << " x" << n << " (all: " << seen << ")";
    }
  }
  EXPECT_EQ(lost, 0) << "acknowledged answers lost in the failover";
  EXPECT_GT(acknowledged, 0);
}

}  // namespace
}  // namespace aqueduct
