// Batch re-scoring end to end: real redis-server, real scoring, referral
// and intake binaries, screenings completed through intake, and the
// aqueductctl process running the job with a batch token and nothing else
// (killed and resumed in one test).

#include <google/protobuf/text_format.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/server/channels.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protos/intake/v1/rescore_service.grpc.pb.h"
#include "protos/scoring/v1/scoring_service.grpc.pb.h"
#include "services/intake/intake_core.h"
#include "services/intake/redis_session_store.h"
#include "tests/testing/auth.h"
#include "tests/testing/process.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct {
namespace {

namespace t = ::aqueduct::testing;
using ::testing::HasSubstr;
using ::testing::Not;

class RescoreTest : public ::testing::Test {
 protected:
  static constexpr int kScreenings = 40;

  void SetUp() override {
    auto redis = t::RedisServer::Start(dir_.path());
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = std::move(*redis);
    // Rulesets: v1 as shipped, and v2-test moving the depression threshold
    // from PHQ-9 >= 10 to >= 12. v2-test is published earlier, so new
    // screenings still complete under v1; the job names it explicitly.
    rulesets_ = dir_.path() + "/rulesets";
    ASSERT_EQ(mkdir(rulesets_.c_str(), 0755), 0);
    const std::string v1 =
        t::ReadFile(t::SourcePath("data/rulesets/v1.textproto"));
    std::ofstream(rulesets_ + "/v1.textproto") << v1;
    scoring::v1::Ruleset v2;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(v1, &v2));
    v2.set_version("v2-test");
    v2.set_published("2026-11-01");
    for (auto& s : *v2.mutable_signals()) {
      if (s.id() == "depression_signal") s.set_when("phq9.total >= 12");
    }
    std::string text;
    google::protobuf::TextFormat::PrintToString(v2, &text);
    std::ofstream(rulesets_ + "/v2-test.textproto") << text;
    scoring_addr_ =
        Start("scoring", "services/scoring/aqueduct-scoring",
              {"--catalog=" + t::SourcePath("data/catalog/catalog.textproto"),
               "--rulesets=" + rulesets_, "--auth_keys=" + auth_.keys_dir()});
    referral_addr_ = Start(
        "referral", "services/referral/aqueduct-referral",
        {"--redis=" + redis_->address(), "--auth_keys=" + auth_.keys_dir()});
    ASSERT_FALSE(scoring_addr_.empty());
    ASSERT_FALSE(referral_addr_.empty());
    // The intake the job reads from and writes through (the screenings
    // below are completed by an in-process replica of it on the same
    // Redis).
    intake_addr_ = Start(
        "intake", "services/intake/aqueduct-intake",
        {"--redis=" + redis_->address(), "--scoring=" + scoring_addr_,
         "--referral=" + referral_addr_, "--auth_keys=" + auth_.keys_dir(),
         "--service_key=" + auth_.private_key_file(),
         std::string("--service_key_id=") + t::TestAuth::kKeyId,
         "--metrics_listen=127.0.0.1:0",
         "--metrics_port_file=" + dir_.path() + "/intake.metrics"});
    ASSERT_FALSE(intake_addr_.empty());

    client_ = std::make_unique<redis::Client>(redis_->ClientOptions());
    store_ = std::make_unique<intake::RedisSessionStore>(client_.get(), &keys_);
    scoring_peer_ = std::make_unique<intake::GrpcScoringPeer>(
        server::PeerChannel(scoring_addr_), scoring_addr_, absl::Seconds(5),
        &intake_token_);
    referral_peer_ = std::make_unique<intake::GrpcReferralPeer>(
        server::PeerChannel(referral_addr_), referral_addr_, absl::Seconds(5),
        &intake_token_);
    ASSERT_THAT(
        catalog_.LoadFrom(*scoring_peer_, absl::Now() + absl::Seconds(10)),
        t::IsOk());
    intake::IntakeConfig config;
    config.max_open_sessions = 100;
    core_ = std::make_unique<intake::IntakeCore>(
        store_.get(), scoring_peer_.get(), referral_peer_.get(), &catalog_,
        &RealClock(), config);
    // Screenings with PHQ-9 totals 6..13 over and over; exactly those at 10
    // and 11 cross the moved threshold.
    for (int i = 0; i < kScreenings; ++i) {
      const int total = 6 + i % 8;
      expected_changes_ += (total == 10 || total == 11);
      Complete(total, "u" + std::to_string(i));
    }
  }

  std::string Start(const std::string& name, const std::string& binary,
                    std::vector<std::string> args) {
    args.push_back("--insecure_plaintext");  // TLS is tested in tls_e2e_test
    auto s = t::StartService(dir_.path(), name, binary, args,
                             {"AQUEDUCT_DATA_KEYS=" + keys_.ToText()});
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return "";
    processes_.push_back(std::move(s->process));
    EXPECT_TRUE(t::WaitServing(
        grpc::CreateChannel(s->address, grpc::InsecureChannelCredentials())))
        << t::ReadFile(s->log);
    return s->address;
  }

  void Complete(int phq9_total, const std::string& user) {
    intake::v1::StartScreeningRequest start;
    start.set_parent("users/" + user);
    start.set_consent_version("c1");
    auto s = core_->StartScreening(start, absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(s.ok()) << s.status();
    tools::Overrides o = t::AdultContext("NY");
    int left = phq9_total;
    for (int item = 1; item <= 8; ++item) {
      const int v = std::min(2, left);  // at most "more than half the days"
      left -= v;
      o["phq9." + std::to_string(item)] = std::to_string(v);
    }
    std::string etag = s->etag();
    for (int page = 0; page < 20; ++page) {
      intake::v1::GetNextItemsRequest next_req;
      next_req.set_name(s->name());
      auto next = core_->GetNextItems(next_req, absl::Now() + absl::Seconds(5));
      ASSERT_TRUE(next.ok());
      if (next->items().empty()) break;
      intake::v1::SubmitAnswersRequest submit;
      submit.set_name(s->name());
      submit.set_etag(next->etag());
      submit.set_request_id("p" + std::to_string(page));
      for (const auto& ask : next->items())
        *submit.add_answers() = *tools::ScriptedAnswer(ask.item(), o);
      auto done = t::SubmitAndWait(*core_, submit,
                                   absl::Now() + absl::Seconds(5), &pool_);
      ASSERT_TRUE(done.ok()) << done.status();
      etag = done->screening().etag();
    }
    intake::v1::CompleteScreeningRequest complete;
    complete.set_name(s->name());
    complete.set_etag(etag);
    complete.set_request_id("c");
    auto done =
        core_->CompleteScreening(complete, absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(done.ok()) << done.status();
    ASSERT_EQ(done->result().scoring().ruleset_version(), "v1");
  }

  // Runs "aqueductctl rescore" as a process; returns its exit status.
  std::unique_ptr<t::Subprocess> Rescore(std::vector<std::string> extra,
                                         const std::string& summary,
                                         std::vector<std::string> env = {}) {
    std::vector<std::string> args = {
        t::BinaryPath("tools/aqueductctl/aqueductctl"),
        "rescore",
        "--ruleset=v2-test",
        "--intake=" + intake_addr_,
        "--summary-json=" + summary,
        "--token=" + auth_.Token("batch", "rescore"),
        "--insecure-plaintext"};
    args.insert(args.end(), extra.begin(), extra.end());
    // No Redis address, no data keys, no other service's address: the job
    // holds a token and talks to intake alone.
    auto p = t::Subprocess::Start(args, dir_.path() + "/rescore.log", env);
    EXPECT_TRUE(p.ok());
    return std::move(*p);
  }
  int RunToEnd(std::vector<std::string> extra, const std::string& summary,
               std::vector<std::string> env = {}) {
    auto p = Rescore(std::move(extra), summary, std::move(env));
    auto status = p->Wait(absl::Seconds(120));
    EXPECT_TRUE(status.has_value());
    return status.has_value() && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  }

  // Every key and value in Redis, for "nothing was written" checks.
  std::map<std::string, std::string> Snapshot() {
    std::map<std::string, std::string> out;
    std::string cursor = "0";
    do {
      auto r = client_->Command({"SCAN", cursor, "COUNT", "1000"},
                                absl::Now() + absl::Seconds(5));
      EXPECT_TRUE(r.ok());
      if (!r.ok()) break;
      cursor = r->elements[0].str;
      for (const auto& k : r->elements[1].elements) {
        auto dump =
            client_->Command({"DUMP", k.str}, absl::Now() + absl::Seconds(5));
        out[k.str] = dump.ok() ? dump->str : "?";
      }
    } while (cursor != "0");
    return out;
  }

  std::vector<referral::v1::Referral> ReReviewCases() {
    auto stub = referral::v1::ReferralService::NewStub(
        server::PeerChannel(referral_addr_));
    grpc::ClientContext ctx;
    auth_.Attach(ctx, "physician", "dr-all");
    referral::v1::ListQueueRequest req;
    req.set_page_size(200);
    referral::v1::ListQueueResponse resp;
    EXPECT_TRUE(stub->ListQueue(&ctx, req, &resp).ok());
    std::vector<referral::v1::Referral> out;
    for (const auto& c : resp.cases()) {
      if (c.ruleset_version() == "v2-test") out.push_back(c);
    }
    return out;
  }

  // Outcomes stored under v2-test, read through intake's store.
  int64_t OutcomesStored() {
    auto entries = store_->ScanCompleted(0, INT64_MAX / 2, 0, "", 1000,
                                         absl::Now() + absl::Seconds(5));
    EXPECT_TRUE(entries.ok());
    if (!entries.ok()) return -1;
    std::vector<std::string> ids;
    for (const auto& e : *entries) ids.push_back(e.screening_id);
    auto stored = store_->ReadForRescore(
        ids, "v2-test", absl::Now() + absl::Seconds(5), &arena_);
    EXPECT_TRUE(stored.ok());
    if (!stored.ok()) return -1;
    int64_t n = 0;
    for (const auto& fr : *stored) n += fr.outcome != nullptr;
    return n;
  }

  // The job's checkpoint as intake stores it (absent: screened 0).
  int64_t CheckpointScreened(const std::string& job) {
    auto cp = store_->GetCheckpoint(job, absl::Now() + absl::Seconds(2));
    return cp.ok() && cp->has_value() ? (*cp)->screened() : 0;
  }

  t::TempDir dir_;
  t::TestAuth auth_;
  crypto::DataKeys keys_ = crypto::DataKeys::Random();
  auth::StaticToken intake_token_{auth_.Token("service", "intake")};
  std::unique_ptr<t::RedisServer> redis_;
  std::string rulesets_, scoring_addr_, referral_addr_, intake_addr_;
  std::vector<std::unique_ptr<t::Subprocess>> processes_;
  std::unique_ptr<redis::Client> client_;
  std::unique_ptr<intake::RedisSessionStore> store_;
  google::protobuf::Arena arena_;  // what ReadForRescore reads
  std::unique_ptr<intake::GrpcScoringPeer> scoring_peer_;
  std::unique_ptr<intake::GrpcReferralPeer> referral_peer_;
  intake::CatalogHolder catalog_;
  std::unique_ptr<intake::IntakeCore> core_;
  server::WorkerPool pool_{2, 64};  // SubmitAnswers' blocking steps
  int expected_changes_ = 0;
};

TEST_F(RescoreTest, DryRunReportsTheDiffAndWritesNothing) {
  ASSERT_EQ(expected_changes_, 10);
  const auto before = Snapshot();
  const std::string summary = dir_.path() + "/dry.json";
  ASSERT_EQ(RunToEnd({"--dry-run"}, summary), 0)
      << t::ReadFile(dir_.path() + "/rescore.log");
  EXPECT_EQ(Snapshot(), before) << "a dry run writes nothing";
  const std::string json = t::ReadFile(summary);
  EXPECT_THAT(json, HasSubstr("\"dry_run\":true"));
  EXPECT_THAT(json, HasSubstr(absl::StrCat("\"screened\":", kScreenings)));
  EXPECT_THAT(json,
              HasSubstr(absl::StrCat("\"changed_route\":", expected_changes_)));
  EXPECT_THAT(json, HasSubstr("\"cases_opened\":0"));
  // Progress, as an operator watches it: intake's own counters.
  const int port =
      t::WaitForPortFile(dir_.path() + "/intake.metrics", absl::Seconds(5));
  auto metrics = t::HttpGet(port, "/metrics", absl::Seconds(5));
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(
      *metrics,
      HasSubstr(absl::StrCat(
          "aqueduct_intake_rescore_screenings_total{outcome=\"rescored\"} ",
          kScreenings)));
  EXPECT_THAT(*metrics,
              HasSubstr("aqueduct_intake_rescore_screenings_total{outcome="
                        "\"failed\"} 0"));
  EXPECT_THAT(*metrics, HasSubstr(absl::StrCat(
                            "aqueduct_intake_rescore_route_changes_total ",
                            expected_changes_)));
  EXPECT_THAT(*metrics, HasSubstr("aqueduct_intake_rescore_jobs 0"))
      << "the job has ended";
}

// The job reaches intake's data only through intake's RescoreService, which
// answers the batch role alone: a person, a clinician, intake's own service
// identity and a caller without a token are all refused, and so is the job
// run with any of their tokens. Scoring's Rescore answers intake alone, so
// a batch token cannot go around intake either.
TEST_F(RescoreTest, OnlyTheBatchRoleReachesIntakesCompletedScreenings) {
  auto stub = intake::v1::RescoreService::NewStub(
      grpc::CreateChannel(intake_addr_, grpc::InsecureChannelCredentials()));
  intake::v1::RescoreScreeningsRequest request;
  request.set_ruleset_version("v2-test");
  request.set_to_time_ms(INT64_MAX / 2);
  request.set_page_size(kScreenings / 2);
  request.set_dry_run(true);
  // Reads a whole stream: its pages and how it ended.
  auto run = [&](grpc::ClientContext* ctx,
                 std::vector<intake::v1::RescoredPage>* pages) {
    auto reader = stub->RescoreScreenings(ctx, request);
    intake::v1::RescoredPage page;
    while (reader->Read(&page)) pages->push_back(page);
    return reader->Finish();
  };
  const auto before = Snapshot();
  for (const std::string who :
       {"patient:u1", "clinician:c1", "physician:dr-all", "service:intake"}) {
    grpc::ClientContext ctx;
    const size_t colon = who.find(':');
    auth_.Attach(ctx, who.substr(0, colon), who.substr(colon + 1));
    std::vector<intake::v1::RescoredPage> pages;
    EXPECT_EQ(run(&ctx, &pages).error_code(),
              grpc::StatusCode::PERMISSION_DENIED)
        << who;
    EXPECT_TRUE(pages.empty()) << who;
  }
  {
    grpc::ClientContext ctx;
    std::vector<intake::v1::RescoredPage> pages;
    EXPECT_EQ(run(&ctx, &pages).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  // The batch role gets every completed screening re-scored, in pages (a
  // dry run: counted, nothing stored).
  {
    grpc::ClientContext ctx;
    auth_.Attach(ctx, "batch", "rescore");
    std::vector<intake::v1::RescoredPage> pages;
    grpc::Status ok = run(&ctx, &pages);
    ASSERT_TRUE(ok.ok()) << ok.error_message();
    ASSERT_EQ(pages.size(), 2u);
    EXPECT_FALSE(pages[0].next_page_token().empty());
    int64_t screened = 0, changed = 0;
    for (const auto& p : pages) {
      screened += p.screened();
      changed += p.changed_route();
      for (const auto& c : p.changed()) {
        ASSERT_FALSE(c.changes().empty());
        EXPECT_THAT(c.changes(0), HasSubstr("route: THERAPY -> SELF_HELP"));
      }
    }
    EXPECT_EQ(screened, kScreenings);
    EXPECT_EQ(changed, expected_changes_);
  }
  EXPECT_EQ(Snapshot(), before) << "a dry run writes nothing";
  // A bad argument names its field.
  {
    grpc::ClientContext ctx;
    auth_.Attach(ctx, "batch", "rescore");
    request.set_page_size(0);
    std::vector<intake::v1::RescoredPage> pages;
    grpc::Status bad = run(&ctx, &pages);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(bad.error_message(), HasSubstr("page_size"));
    request.set_page_size(kScreenings / 2);
  }
  // Scoring's Rescore is intake's: a batch token is refused there.
  {
    auto scoring = scoring::v1::ScoringService::NewStub(
        grpc::CreateChannel(scoring_addr_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    auth_.Attach(ctx, "batch", "rescore");
    auto stream = scoring->Rescore(&ctx);
    stream->WritesDone();
    EXPECT_EQ(stream->Finish().error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }

  // The job itself with a person's token: refused, nothing written.
  EXPECT_NE(RunToEnd({"--token=" + auth_.Token("patient", "u1")},
                     dir_.path() + "/refused.json"),
            0);
  EXPECT_THAT(t::ReadFile(dir_.path() + "/rescore.log"),
              HasSubstr("role patient may not call GetRescoreJob"));
  EXPECT_EQ(Snapshot(), before);
}

// A job's stream runs on a thread of its own, so intake bounds how many run
// at once: a third while two run is UNAVAILABLE and says why, and a job that
// goes away frees its place.
TEST_F(RescoreTest, AtMostTwoStreamsRunAtOnce) {
  auto stub = intake::v1::RescoreService::NewStub(
      grpc::CreateChannel(intake_addr_, grpc::InsecureChannelCredentials()));
  intake::v1::RescoreScreeningsRequest slow;
  slow.set_ruleset_version("v2-test");
  slow.set_to_time_ms(INT64_MAX / 2);
  slow.set_page_size(1);
  slow.set_dry_run(true);
  slow.set_max_per_second(1);
  struct Open {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<intake::v1::RescoredPage>> reader;
  };
  std::vector<std::unique_ptr<Open>> open;
  for (int i = 0; i < 2; ++i) {
    auto o = std::make_unique<Open>();
    auth_.Attach(o->ctx, "batch", "rescore");
    o->reader = stub->RescoreScreenings(&o->ctx, slow);
    intake::v1::RescoredPage page;
    ASSERT_TRUE(o->reader->Read(&page)) << "stream " << i << " started";
    open.push_back(std::move(o));
  }
  auto third = [&] {
    grpc::ClientContext ctx;
    auth_.Attach(ctx, "batch", "rescore");
    auto reader = stub->RescoreScreenings(&ctx, slow);
    intake::v1::RescoredPage page;
    const bool got = reader->Read(&page);
    if (got) ctx.TryCancel();
    return std::make_pair(got, reader->Finish());
  };
  auto [got, refused] = third();
  EXPECT_FALSE(got);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.error_message(), HasSubstr("at most 2 re-scoring jobs"));
  // One job goes away: its place frees once intake sees it.
  open[0]->ctx.TryCancel();
  (void)open[0]->reader->Finish();
  bool started = false;
  for (int i = 0; i < 50 && !started; ++i) {
    started = third().first;
    if (!started) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(started);
  open[1]->ctx.TryCancel();
  (void)open[1]->reader->Finish();
}

TEST_F(RescoreTest, ExactlyTheScreeningsAcrossTheThresholdGetReReviews) {
  const std::string summary = dir_.path() + "/run.json";
  ASSERT_EQ(RunToEnd({}, summary), 0)
      << t::ReadFile(dir_.path() + "/rescore.log");
  const std::string json = t::ReadFile(summary);
  EXPECT_THAT(json, HasSubstr(absl::StrCat("\"screened\":", kScreenings)));
  EXPECT_THAT(json,
              HasSubstr(absl::StrCat("\"changed_route\":", expected_changes_)));
  EXPECT_THAT(json, HasSubstr("\"changed_band\":0"));
  EXPECT_THAT(json,
              HasSubstr(absl::StrCat("\"cases_opened\":", expected_changes_)));
  EXPECT_EQ(OutcomesStored(), kScreenings)
      << "a new outcome next to every original";
  auto cases = ReReviewCases();
  ASSERT_EQ(static_cast<int>(cases.size()), expected_changes_);
  for (const auto& c : cases) {
    EXPECT_EQ(c.location_state(), "NY")
        << "a re-review goes to clinicians licensed where the person is";
    const auto* phq9 = &c.previous_result().scores(1);
    ASSERT_EQ(phq9->instrument_id(), "phq9");
    EXPECT_TRUE(phq9->total() == 10 || phq9->total() == 11) << phq9->total();
    EXPECT_EQ(c.previous_result().routing().primary_route(),
              common::v1::THERAPY);
    EXPECT_EQ(c.current_route(), common::v1::SELF_HELP);
    ASSERT_FALSE(c.changes().empty());
    EXPECT_THAT(
        c.changes(0),
        HasSubstr(
            "route: THERAPY -> SELF_HELP (route.therapy -> route.self_help)"));
  }
  // The original results are untouched, and running again changes nothing.
  ASSERT_EQ(RunToEnd({}, summary), 0);
  EXPECT_EQ(static_cast<int>(ReReviewCases().size()), expected_changes_);
  EXPECT_EQ(OutcomesStored(), kScreenings);
}

// The state a job leaves when it dies after storing a batch's outcomes and
// before opening its cases: the run after reuses the stored outcomes (a
// changed one stored packed, with its full result) and opens the cases from
// them, each with both results whole.
TEST_F(RescoreTest, CasesAreOpenedFromOutcomesStoredBeforeACrash) {
  const std::string summary = dir_.path() + "/run.json";
  ASSERT_EQ(RunToEnd({}, summary), 0)
      << t::ReadFile(dir_.path() + "/rescore.log");
  ASSERT_EQ(static_cast<int>(ReReviewCases().size()), expected_changes_);
  // Take the cases and the checkpoint away; the outcomes stay.
  std::string cursor = "0";
  do {
    auto r = client_->Command(
        {"SCAN", cursor, "MATCH", "aq:referral:*", "COUNT", "1000"},
        absl::Now() + absl::Seconds(5));
    ASSERT_THAT(r, t::IsOk());
    cursor = r->elements[0].str;
    for (const auto& k : r->elements[1].elements) {
      ASSERT_THAT(
          client_->Command({"DEL", k.str}, absl::Now() + absl::Seconds(5)),
          t::IsOk());
    }
  } while (cursor != "0");
  // A job of another name starts with no checkpoint: the state of the first
  // job killed before its first checkpoint.
  ASSERT_TRUE(ReReviewCases().empty());
  ASSERT_EQ(OutcomesStored(), kScreenings);

  ASSERT_EQ(RunToEnd({"--job=second"}, summary), 0)
      << t::ReadFile(dir_.path() + "/rescore.log");
  EXPECT_THAT(t::ReadFile(summary),
              HasSubstr(absl::StrCat("\"cases_opened\":", expected_changes_)));
  auto cases = ReReviewCases();
  ASSERT_EQ(static_cast<int>(cases.size()), expected_changes_);
  for (const auto& c : cases) {
    EXPECT_EQ(c.result().ruleset_version(), "v2-test");
    EXPECT_EQ(c.result().routing().primary_route(), common::v1::SELF_HELP);
    EXPECT_FALSE(c.result().scores().empty())
        << "the full new result, from the stored outcome";
    EXPECT_EQ(c.previous_result().routing().primary_route(),
              common::v1::THERAPY);
  }
}

TEST_F(RescoreTest, KilledMidRunThenRunAgainEndsInTheCleanRunState) {
  const std::string summary = dir_.path() + "/killed.json";
  auto p = Rescore({"--batch=4", "--max-per-second=12"}, summary);
  // Wait for a checkpoint part-way, then kill without warning.
  const absl::Time end = absl::Now() + absl::Seconds(20);
  int64_t screened = 0;
  while (absl::Now() < end) {
    screened = CheckpointScreened("rescore-v2-test");
    if (screened >= 12) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_GE(screened, 12);
  p->Signal(SIGKILL);
  p->Wait(absl::Seconds(5));
  ASSERT_LT(OutcomesStored(), kScreenings) << "killed part-way";
  // Run again: picks up at the checkpoint and finishes.
  ASSERT_EQ(RunToEnd({"--batch=4"}, summary), 0)
      << t::ReadFile(dir_.path() + "/rescore.log");
  const std::string json = t::ReadFile(summary);
  EXPECT_THAT(json, HasSubstr(absl::StrCat("\"screened\":", kScreenings)));
  EXPECT_THAT(json,
              HasSubstr(absl::StrCat("\"changed_route\":", expected_changes_)));
  EXPECT_THAT(json,
              HasSubstr(absl::StrCat("\"cases_opened\":", expected_changes_)));
  EXPECT_EQ(OutcomesStored(), kScreenings);
  EXPECT_EQ(static_cast<int>(ReReviewCases().size()), expected_changes_)
      << "no duplicate cases";
}

}  // namespace
}  // namespace aqueduct
