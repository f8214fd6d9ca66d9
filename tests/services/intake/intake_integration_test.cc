// IntakeCore against a real redis-server. Scoring is the real engine behind
// the ScoringPeer interface; referral is a controllable stand-in so the
// hand-off failure path can be exercised.

#include <atomic>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/compress/compress.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protos/scoring/v1/scoring_service.pb.h"
#include "services/intake/background.h"
#include "services/intake/fhir_export_service.h"
#include "services/intake/intake_core.h"
#include "services/intake/redis_session_store.h"
#include "services/scoring/digest.h"
#include "services/scoring/packed_answers.h"
#include "services/scoring/scoring_engine.h"
#include "tests/testing/process.h"
#include "tests/testing/redis_fixture.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::intake {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;

class EngineScoringPeer : public ScoringPeer {
 public:
  explicit EngineScoringPeer(
      std::shared_ptr<const scoring::ScoringEngine> engine)
      : engine_(std::move(engine)) {}
  absl::StatusOr<scoring::v1::ScoringResult> Score(
      const scoring::v1::ScoreAnswersRequest& request, absl::Time) override {
    ++calls;
    if (down) return absl::UnavailableError("scoring at test: down");
    return engine_->Score(request);
  }
  absl::StatusOr<scoring::v1::Catalog> DescribeCatalog(absl::Time) override {
    if (catalog_down) return absl::UnavailableError("scoring at test: down");
    return engine_->catalog().catalog();
  }
  absl::StatusOr<scoring::v1::ListRulesetsResponse> ListRulesets(
      absl::Time) override {
    return engine_->Rulesets();
  }
  // Re-scoring is tested end to end (tests/e2e/rescore_test.cc) against
  // the real scoring service; these tests never open a stream.
  absl::StatusOr<std::unique_ptr<RescoreStream>> OpenRescore() override {
    ADD_FAILURE() << "OpenRescore is not part of these tests";
    return absl::FailedPreconditionError("not part of these tests");
  }
  std::string Describe() const override { return "scoring at test"; }
  std::atomic<bool> down{false};
  std::atomic<bool> catalog_down{false};
  std::atomic<int> calls{0};

 private:
  std::shared_ptr<const scoring::ScoringEngine> engine_;
};

class RecordingReferralPeer : public ReferralPeer {
 public:
  absl::StatusOr<referral::v1::Referral> CreateReferral(
      const referral::v1::CreateReferralRequest& request,
      absl::Time deadline) override {
    ++calls;
    last_budget = deadline - absl::Now();
    if (hung) {  // a peer that never answers: the caller's deadline ends it
      absl::SleepFor(std::min(deadline - absl::Now(), absl::Seconds(10)));
      return absl::DeadlineExceededError("referral at test: no answer");
    }
    if (down) return absl::UnavailableError("referral at test: down");
    last = request;
    {
      absl::MutexLock lock(&mu);
      delivered.push_back(request);
    }
    referral::v1::Referral r;
    r.set_name(
        "referrals/" +
        request.screening().substr(request.screening().rfind('/') + 1) +
        (request.unfinished() || request.early_risk_raised() ? "-risk" : "-v"));
    r.set_screening(request.screening());
    return r;
  }
  // Batch creation comes only from re-scoring, tested end to end.
  absl::StatusOr<referral::v1::CreateReferralsResponse> CreateReferrals(
      const referral::v1::CreateReferralsRequest&, absl::Time) override {
    ADD_FAILURE() << "CreateReferrals is not part of these tests";
    return absl::FailedPreconditionError("not part of these tests");
  }
  std::vector<referral::v1::CreateReferralRequest> Delivered() {
    absl::MutexLock lock(&mu);
    return delivered;
  }
  std::string Describe() const override { return "referral at test"; }
  std::atomic<bool> down{false};
  std::atomic<bool> hung{false};
  std::atomic<int> calls{0};
  absl::Duration last_budget;
  referral::v1::CreateReferralRequest last;
  absl::Mutex mu;
  std::vector<referral::v1::CreateReferralRequest> delivered
      ABSL_GUARDED_BY(mu);
};

class IntakeTest : public aqueduct::testing::RedisTest {
 protected:
  void SetUp() override {
    RedisTest::SetUp();
    auto engine = aqueduct::testing::LoadRepositoryEngine();
    ASSERT_THAT(engine, IsOk());
    scoring_ = std::make_unique<EngineScoringPeer>(std::move(*engine));
    ASSERT_THAT(catalog_.LoadFrom(*scoring_, Soon()), IsOk());
    client_ = std::make_unique<redis::Client>(redis().ClientOptions());
    async_ = std::make_unique<redis::AsyncClient>(redis().ClientOptions());
    store_ = std::make_unique<RedisSessionStore>(client_.get(), &keys_,
                                                 absl::Hours(24), async_.get());
    core_ = Replica();
  }
  void Reconfigure(IntakeConfig config) { core_ = Replica(config); }
  // Another replica on the same Redis, scoring and referral, with its own
  // session cache (none with NoCache()).
  std::unique_ptr<IntakeCore> Replica(IntakeConfig config = IntakeConfig()) {
    return std::make_unique<IntakeCore>(store_.get(), scoring_.get(),
                                        &referral_, &catalog_, &RealClock(),
                                        config);
  }
  static IntakeConfig NoCache() {
    IntakeConfig config;
    config.session_cache_entries = 0;
    return config;
  }
  // The screening id of "users/{user}/screenings/{id}".
  static std::string IdOf(const v1::Screening& s) {
    return s.name().substr(s.name().rfind('/') + 1);
  }

  absl::StatusOr<v1::SubmitAnswersResponse> Submit(
      IntakeCore& core, const v1::SubmitAnswersRequest& req,
      absl::Time deadline) {
    return aqueduct::testing::SubmitAndWait(core, req, deadline, &pool_);
  }

  v1::Screening Start(const std::string& user = "alice",
                      const std::string& rid = "") {
    v1::StartScreeningRequest req;
    req.set_parent("users/" + user);
    req.set_consent_version("c1");
    req.set_request_id(rid);
    req.mutable_context()->set_location_state("FL");
    auto s = core_->StartScreening(req, Soon());
    EXPECT_THAT(s, IsOk());
    return s.ok() ? *s : v1::Screening();
  }
  static v1::SubmitAnswersRequest Answers(const v1::Screening& s,
                                          const std::vector<int>& values,
                                          const std::string& rid,
                                          int first = 1) {
    v1::SubmitAnswersRequest req;
    req.set_name(s.name());
    req.set_etag(s.etag());
    req.set_request_id(rid);
    for (size_t i = 0; i < values.size(); ++i) {
      auto* a = req.add_answers();
      a->set_item_id("phq9." + std::to_string(first + i));
      a->set_option_value(values[i]);
    }
    return req;
  }
  // Answers every page the flow asks, as an app would; returns the etag
  // after the last page.
  std::string AnswerAll(const v1::Screening& s,
                        const tools::Overrides& overrides) {
    std::string etag = s.etag();
    for (int page = 0; page < 30; ++page) {
      auto done = AnswerNextPage(s, overrides, "page-" + std::to_string(page));
      if (!done.has_value()) break;
      etag = done->screening().etag();
    }
    return etag;
  }
  // Answers the next page as an app would, from `overrides` over an adult
  // in FL (lowest answers otherwise); nullopt when nothing is left to ask
  // (or a call failed: the test has failed then).
  std::optional<v1::SubmitAnswersResponse> AnswerNextPage(
      const v1::Screening& s, const tools::Overrides& overrides,
      const std::string& rid) {
    tools::Overrides all = aqueduct::testing::AdultContext("FL");
    for (const auto& [k, v] : overrides) all[k] = v;
    v1::GetNextItemsRequest next_req;
    next_req.set_name(s.name());
    auto next = core_->GetNextItems(next_req, Soon());
    EXPECT_THAT(next, IsOk());
    if (!next.ok() || next->items().empty()) return std::nullopt;
    v1::SubmitAnswersRequest submit;
    submit.set_name(s.name());
    submit.set_etag(next->etag());
    submit.set_request_id(rid);
    for (const auto& ask : next->items()) {
      auto a = tools::ScriptedAnswer(ask.item(), all);
      EXPECT_THAT(a, IsOk());
      if (a.ok()) *submit.add_answers() = *a;
    }
    auto done = Submit(*core_, submit, Soon());
    EXPECT_THAT(done, IsOk());
    if (!done.ok()) return std::nullopt;
    return *done;
  }
  v1::CompleteScreeningRequest Complete(const std::string& name,
                                        const std::string& etag,
                                        const std::string& rid) {
    v1::CompleteScreeningRequest req;
    req.set_name(name);
    req.set_etag(etag);
    req.set_request_id(rid);
    return req;
  }

  std::unique_ptr<EngineScoringPeer> scoring_;
  RecordingReferralPeer referral_;
  CatalogHolder catalog_;
  std::unique_ptr<redis::Client> client_;
  crypto::DataKeys keys_ = crypto::DataKeys::Random();
  std::unique_ptr<redis::AsyncClient> async_;
  std::unique_ptr<RedisSessionStore> store_;
  google::protobuf::Arena arena_;  // what ReadForRescore reads
  std::unique_ptr<IntakeCore> core_;
  server::WorkerPool pool_{4, 64};
};

TEST_F(IntakeTest, StartCreatesAnInProgressScreeningWithFirstPage) {
  v1::Screening s = Start();
  EXPECT_THAT(s.name(), HasSubstr("users/alice/screenings/"));
  EXPECT_EQ(s.state(), v1::IN_PROGRESS);
  EXPECT_EQ(s.etag(), "1");
  EXPECT_EQ(s.progress().answered(), 1)
      << "the state came with the start context";
  EXPECT_GT(s.progress().remaining(), 30);
  EXPECT_GT(s.expire_time_ms(), s.create_time_ms());
  v1::GetNextItemsRequest next;
  next.set_name(s.name());
  auto items = core_->GetNextItems(next, Soon());
  ASSERT_THAT(items, IsOk());
  // The first page is about the person, minus what the start context
  // already said (the state); "works with clients" waits for "works".
  std::vector<std::string> ids;
  for (const auto& i : items->items()) ids.push_back(i.item().id());
  EXPECT_THAT(ids, ::testing::ElementsAre("ctx.role", "ctx.works", "ctx.age",
                                          "ctx.sex"));
  EXPECT_FALSE(items->ready_to_complete());
  // The start's reply carried that page already: the app needs no
  // GetNextItems call.
  EXPECT_EQ(s.next().SerializeAsString(), items->SerializeAsString());
  EXPECT_EQ(s.next().etag(), s.etag());
  // GetScreening's reply does not carry it.
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  auto got = core_->GetScreening(get, Soon());
  ASSERT_THAT(got, IsOk());
  EXPECT_FALSE(got->has_next());
  // The session lives in Redis with a TTL (expires when idle).
  auto ttl = client_->Command(
      {"PTTL", redis::Key("intake", IdOf(s), "session")}, Soon());
  ASSERT_THAT(ttl, IsOk());
  EXPECT_GT(ttl->integer, 0);
}

TEST_F(IntakeTest, StartIsIdempotentByRequestId) {
  v1::Screening a = Start("bob", "start-1");
  v1::Screening b = Start("bob", "start-1");
  EXPECT_EQ(a.name(), b.name());
  // The retry's reply carries the same first page.
  EXPECT_FALSE(b.next().items().empty());
  EXPECT_EQ(a.next().SerializeAsString(), b.next().SerializeAsString());
  v1::Screening c = Start("bob", "start-2");
  EXPECT_NE(a.name(), c.name());
  v1::Screening d = Start("bob");  // no request id: always a new one
  // Each started screening holds one of bob's open slots, once.
  const std::string owner = store_->OwnerOf("bob");
  auto listed = client_->Command(
      {"ZRANGE", redis::Key("intake", owner, "open"), "0", "-1"}, Soon());
  ASSERT_THAT(listed, IsOk());
  std::vector<std::string> ids;
  for (const auto& e : listed->elements) ids.push_back(e.str);
  EXPECT_THAT(ids, ::testing::UnorderedElementsAre(IdOf(a), IdOf(c), IdOf(d)));
  // No per-person index of every screening started (nothing read it).
  EXPECT_EQ(client_
                ->Command({"EXISTS", redis::Key("intake", owner, "screenings")},
                          Soon())
                ->integer,
            0);
}

TEST_F(IntakeTest, StartValidatesFields) {
  v1::StartScreeningRequest req;
  req.set_parent("users/alice");
  EXPECT_THAT(core_->StartScreening(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("consent_version")));
  req.set_consent_version("c1");
  req.set_parent("alice");
  EXPECT_THAT(
      core_->StartScreening(req, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parent")));
  req.set_parent("users/alice");
  req.mutable_context()->set_location_state("Florida");
  EXPECT_THAT(core_->StartScreening(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("context.location_state")));
}

TEST_F(IntakeTest, UnknownAndOtherUsersScreeningsAreNotFound) {
  v1::Screening s = Start("alice");
  v1::GetScreeningRequest get;
  get.set_name("users/alice/screenings/doesnotexist");
  EXPECT_THAT(core_->GetScreening(get, Soon()),
              StatusIs(absl::StatusCode::kNotFound));
  // Same id under another user: exactly the same answer as a missing one.
  std::string id = IdOf(s);
  get.set_name("users/mallory/screenings/" + id);
  auto other = core_->GetScreening(get, Soon());
  EXPECT_THAT(other, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(other.status().message(), "name: no such screening");
}

// The store's side of idempotency: the latest write and the 32 before it
// are recognised (by Get, and by Write, which races Get), nothing is written
// twice, and no reply is stored.
TEST_F(IntakeTest, StoreKnowsTheAppliedRequestsAndKeepsNoReplies) {
  using Kind = SessionStore::WriteOutcome::Kind;
  using Applied = SessionStore::Applied;
  SessionStore::WriteRequest w;
  w.record.set_screening_id("st1");
  w.record.set_user_id("alice");
  w.record.set_state(v1::IN_PROGRESS);
  w.expected_version = 0;
  w.request_id = "create";
  ASSERT_EQ(store_->Write("st1", w, Soon())->kind, Kind::kWritten);
  w.expected_version = 1;
  w.request_id = "x";
  auto x = store_->Write("st1", w, Soon());
  ASSERT_THAT(x, IsOk());
  ASSERT_EQ(x->kind, Kind::kWritten);
  EXPECT_EQ(x->version, 2);
  // The same request racing past Get: known, nothing written again.
  w.expected_version = 2;
  auto again = store_->Write("st1", w, Soon());
  ASSERT_EQ(again->kind, Kind::kLatest);
  EXPECT_EQ(again->version, 2);
  auto got = store_->Get("st1", "x", Soon());
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->applied, Applied::kLatest);
  EXPECT_EQ(got->session->version, 2);
  // After a later write, x is still known as applied, as an earlier one.
  w.request_id = "y";
  ASSERT_EQ(store_->Write("st1", w, Soon())->kind, Kind::kWritten);
  w.expected_version = 3;
  w.request_id = "x";
  EXPECT_EQ(store_->Write("st1", w, Soon())->kind, Kind::kApplied);
  EXPECT_EQ(store_->Get("st1", "x", Soon())->applied, Applied::kEarlier);
  EXPECT_EQ(store_->Get("st1", "create", Soon())->applied, Applied::kEarlier);
  EXPECT_EQ(store_->Get("st1", "y", Soon())->applied, Applied::kLatest);
  got = store_->Get("st1", "z", Soon());
  EXPECT_EQ(got->applied, Applied::kNo);
  EXPECT_EQ(got->session->version, 3);
  // The history is bounded: the latest write and the 32 before it.
  for (int i = 0; i < 40; ++i) {
    w.expected_version = 3 + i;
    w.request_id = "w" + std::to_string(i);
    ASSERT_EQ(store_->Write("st1", w, Soon())->kind, Kind::kWritten);
  }
  EXPECT_EQ(store_->Get("st1", "w7", Soon())->applied, Applied::kEarlier);
  EXPECT_EQ(store_->Get("st1", "w6", Soon())->applied, Applied::kNo);
  EXPECT_EQ(store_->Get("st1", "x", Soon())->applied, Applied::kNo);
  auto h = client_->Command(
      {"HSTRLEN", redis::Key("intake", "st1", "session"), "h"}, Soon());
  EXPECT_EQ(h->integer, 256);
  // No key per request: the session hash is the only key.
  auto keys = client_->Command({"KEYS", "*st1*"}, Soon());
  ASSERT_THAT(keys, IsOk());
  EXPECT_EQ(keys->elements.size(), 1u);
}

// A completion whose request id was already used for a page of the same
// screening is refused by name, and completes nothing.
TEST_F(IntakeTest, CompletionWithAPagesRequestIdIsRefused) {
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {{"phq9.1", "1"}});
  for (const char* used : {"page-0", "page-3"}) {
    EXPECT_THAT(
        core_->CompleteScreening(Complete(s.name(), etag, used), Soon()),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")))
        << used;
  }
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  EXPECT_EQ(core_->GetScreening(get, Soon())->state(), v1::IN_PROGRESS);
  EXPECT_THAT(
      core_->CompleteScreening(Complete(s.name(), etag, "complete"), Soon()),
      IsOk());
  EXPECT_EQ(referral_.calls.load(), 1);
}

TEST_F(IntakeTest, SubmitIsIdempotentByRequestId) {
  v1::Screening s = Start();
  auto first = Submit(*core_, Answers(s, {1, 1, 1}, "r1"), Soon());
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->screening().etag(), "2");
  EXPECT_EQ(first->next().progress().answered(), 4);  // 3 + the prefilled state
  // Same request again (a mobile retry): same reply, no second effect.
  auto again = Submit(*core_, Answers(s, {1, 1, 1}, "r1"), Soon());
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->SerializeAsString(), first->SerializeAsString());
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  EXPECT_EQ(core_->GetScreening(get, Soon())->etag(), "2");
}

TEST_F(IntakeTest, StaleEtagIsAbortedWithTheCurrentOne) {
  v1::Screening s = Start();
  ASSERT_THAT(Submit(*core_, Answers(s, {1}, "device-a"), Soon()), IsOk());
  // A second device still holding etag 1 must not overwrite silently.
  auto stale = Submit(*core_, Answers(s, {3}, "device-b"), Soon());
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kAborted,
                              HasSubstr("current etag \"2\"")));
}

// How many times Redis ran `command` (commands a script runs count too),
// or -1 when INFO does not say.
int64_t CommandCalls(redis::Client& client, const std::string& command) {
  auto stats = aqueduct::testing::RedisInfoField(client, "commandstats",
                                                 "cmdstat_" + command);
  if (absl::IsNotFound(stats.status())) return 0;  // never run yet
  int64_t calls = -1;
  if (!stats.ok() || !absl::StartsWith(*stats, "calls=") ||
      !absl::SimpleAtoi(stats->substr(6, stats->find(',') - 6), &calls)) {
    return -1;
  }
  return calls;
}

// The session cache (SessionCache): the replica that wrote a session's
// latest version does not read it back for the next page.
TEST_F(IntakeTest, NextPageSkipsTheSessionReadOnTheReplicaThatWroteIt) {
  v1::Screening s = Start();
  int64_t before = CommandCalls(*client_, "hmget");
  auto first = Submit(*core_, Answers(s, {1}, "p1"), Soon());
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(CommandCalls(*client_, "hmget") - before, 1)
      << "the write script's own check only";
  before = CommandCalls(*client_, "hmget");
  auto second =
      Submit(*core_, Answers(first->screening(), {2}, "p2", 2), Soon());
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(CommandCalls(*client_, "hmget") - before, 1);
  // Without the cache, every page reads the session first.
  Reconfigure(NoCache());
  before = CommandCalls(*client_, "hmget");
  auto third =
      Submit(*core_, Answers(second->screening(), {3}, "p3", 3), Soon());
  ASSERT_THAT(third, IsOk());
  EXPECT_EQ(CommandCalls(*client_, "hmget") - before, 2);
  // Either way Redis holds every page.
  const std::string id = IdOf(s);
  auto stored = store_->Get(id, "", Soon());
  ASSERT_THAT(stored, IsOk());
  ASSERT_TRUE(stored->session.has_value());
  EXPECT_EQ(stored->session->version, 4);
  EXPECT_EQ(stored->session->record.answers().at("phq9.1").option_value(), 1);
  EXPECT_EQ(stored->session->record.answers().at("phq9.2").option_value(), 2);
  EXPECT_EQ(stored->session->record.answers().at("phq9.3").option_value(), 3);
  EXPECT_EQ(third->screening().etag(), "4");
}

// A session changed by another replica after this one cached it: the
// cached page stores nothing and gets exactly what a replica without the
// cache would have said.
TEST_F(IntakeTest, ASessionChangedElsewhereGetsTheAnswerARedisReadWouldGive) {
  auto other = Replica();
  auto cold = Replica(NoCache());

  // A retry of a page the other replica applied: the reply it gave.
  v1::Screening s = Start("carol");
  auto a1 = Submit(*core_, Answers(s, {1}, "p1"),
                   Soon());  // cached here at version 2
  ASSERT_THAT(a1, IsOk());
  auto b2 = Submit(*other, Answers(a1->screening(), {2}, "p2", 2), Soon());
  ASSERT_THAT(b2, IsOk());
  auto retried = Submit(*core_, Answers(a1->screening(), {2}, "p2", 2), Soon());
  ASSERT_THAT(retried, IsOk());
  EXPECT_EQ(retried->SerializeAsString(), b2->SerializeAsString());

  // Another page on the same etag: ABORTED naming the current etag, as
  // without the cache, and the other replica's answer stays.
  s = Start("dave");
  a1 = Submit(*core_, Answers(s, {1}, "p1"), Soon());
  ASSERT_THAT(a1, IsOk());
  b2 = Submit(*other, Answers(a1->screening(), {2}, "p2", 2), Soon());
  ASSERT_THAT(b2, IsOk());
  auto stale =
      Submit(*core_, Answers(a1->screening(), {0}, "p2-phone", 2), Soon());
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kAborted,
                              HasSubstr("current etag \"3\"")));
  auto stale_cold =
      Submit(*cold, Answers(a1->screening(), {0}, "p2-tablet", 2), Soon());
  EXPECT_EQ(stale.status(), stale_cold.status());
  auto stored = store_->Get(IdOf(s), "", Soon());
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->session->version, 3);
  EXPECT_EQ(stored->session->record.answers().at("phq9.2").option_value(), 2);

  // Abandoned elsewhere: FAILED_PRECONDITION, not a conflict.
  s = Start("erin");
  a1 = Submit(*core_, Answers(s, {1}, "p1"), Soon());
  ASSERT_THAT(a1, IsOk());
  v1::AbandonScreeningRequest abandon;
  abandon.set_name(s.name());
  ASSERT_THAT(other->AbandonScreening(abandon, Soon()), IsOk());
  auto late = Submit(*core_, Answers(a1->screening(), {2}, "p2", 2), Soon());
  EXPECT_THAT(late, StatusIs(absl::StatusCode::kFailedPrecondition,
                             HasSubstr("ABANDONED")));
  EXPECT_EQ(
      late.status(),
      Submit(*cold, Answers(a1->screening(), {2}, "p2b", 2), Soon()).status());

  // Gone from Redis (expired): NOT_FOUND, and nothing is recreated.
  s = Start("frank");
  a1 = Submit(*core_, Answers(s, {1}, "p1"), Soon());
  ASSERT_THAT(a1, IsOk());
  ASSERT_THAT(client_->Command(
                  {"DEL", redis::Key("intake", IdOf(s), "session")}, Soon()),
              IsOk());
  auto gone = Submit(*core_, Answers(a1->screening(), {2}, "p2", 2), Soon());
  EXPECT_THAT(gone, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(gone.status().message(), "name: no such screening");
  EXPECT_EQ(client_
                ->Command({"EXISTS", redis::Key("intake", IdOf(s), "session")},
                          Soon())
                ->integer,
            0);
}

TEST_F(IntakeTest, BadAnswerNamesTheFieldAndStoresNothingOfThePage) {
  v1::Screening s = Start();
  auto req = Answers(s, {1, 2, 3}, "r1");
  req.mutable_answers(1)->set_option_value(9);
  EXPECT_THAT(Submit(*core_, req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("answers[1].option_value")));
  req = Answers(s, {1}, "r2");
  req.mutable_answers(0)->set_item_id("mbi.1");
  EXPECT_THAT(Submit(*core_, req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("answers[0].item_id")));
  // An item that does not apply given the same page's answers.
  req = Answers(s, {}, "r2b");
  auto* works = req.add_answers();
  works->set_item_id("ctx.works");
  works->set_option_value(0);  // no
  auto* cbi = req.add_answers();
  cbi->set_item_id("cbi_work.1");
  cbi->set_option_value(50);
  EXPECT_THAT(Submit(*core_, req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("answers[1].item_id"),
                                        HasSubstr("does not apply"))));
  req = Answers(s, {}, "r3");
  EXPECT_THAT(
      Submit(*core_, req, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("answers")));
  req = Answers(s, {1}, "");
  EXPECT_THAT(
      Submit(*core_, req, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
  req = Answers(s, {1}, "r4");
  req.set_etag("abc");
  EXPECT_THAT(Submit(*core_, req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("etag")));
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  auto now = core_->GetScreening(get, Soon());
  EXPECT_EQ(now->etag(), "1");
  EXPECT_EQ(now->progress().answered(), 1) << "only the prefilled state";
}

TEST_F(IntakeTest, AnswersCanChangeUntilCompletion) {
  v1::Screening s = Start();
  auto a = Submit(*core_, Answers(s, {3}, "r1"), Soon());
  ASSERT_THAT(a, IsOk());
  auto b = Submit(*core_, Answers(a->screening(), {0}, "r2"), Soon());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->next().progress().answered(), 2);
  EXPECT_EQ(b->screening().etag(), "3");
}

TEST_F(IntakeTest, ChangedAnswerDropsAnswersItMadeMoot) {
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {});
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  auto before = core_->GetScreening(get, Soon());
  ASSERT_THAT(before, IsOk());
  // "I do not work" after answering the work questions: they no longer
  // apply and go, and the screening can still complete.
  v1::SubmitAnswersRequest change;
  change.set_name(s.name());
  change.set_etag(etag);
  change.set_request_id("change");
  auto* a = change.add_answers();
  a->set_item_id("ctx.works");
  a->set_option_value(0);
  auto changed = Submit(*core_, change, Soon());
  ASSERT_THAT(changed, IsOk());
  EXPECT_LT(changed->next().progress().answered(),
            before->progress().answered());
  EXPECT_TRUE(changed->next().ready_to_complete());
  // The reply is what a fresh read says (the flow after the moot answers
  // went, not before).
  v1::GetNextItemsRequest next_req;
  next_req.set_name(s.name());
  auto fresh = core_->GetNextItems(next_req, Soon());
  ASSERT_THAT(fresh, IsOk());
  EXPECT_EQ(changed->next().SerializeAsString(), fresh->SerializeAsString());
  EXPECT_EQ(changed->screening().progress().SerializeAsString(),
            fresh->progress().SerializeAsString());
  auto done = core_->CompleteScreening(
      Complete(s.name(), changed->screening().etag(), "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  for (const auto& score : done->result().scoring().scores()) {
    if (score.instrument_id() == "cbi_work") {
      EXPECT_EQ(score.completeness(), scoring::v1::NOT_ADMINISTERED);
    }
  }
}

TEST_F(IntakeTest, CompleteNeedsEveryRequiredItem) {
  v1::Screening s = Start();
  auto a = Submit(*core_, Answers(s, {0, 0, 0, 0, 0, 0, 0, 0}, "r1"), Soon());
  ASSERT_THAT(a, IsOk());
  auto incomplete = core_->CompleteScreening(
      Complete(s.name(), a->screening().etag(), "c1"), Soon());
  EXPECT_THAT(incomplete,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::AllOf(HasSubstr("ctx.role"),
                                        HasSubstr("phq9.9, phq9.10"))));
  EXPECT_EQ(scoring_->calls.load(), 0);
}

// Read events Redis has processed: one per round trip of a client (on
// loopback each of intake's pipelines arrives in one read), and one for
// the INFO that asks.
int64_t RedisReads(redis::Client& client) {
  auto reads = aqueduct::testing::RedisInfoField(client, "stats",
                                                 "total_reads_processed");
  int64_t n = -1;
  if (!reads.ok() || !absl::SimpleAtoi(*reads, &n)) return -1;
  return n;
}

// A completion on the replica that wrote the last page reads nothing back,
// the result's indexes ride with its write and the open slot's release
// with the hand-off's: two round trips to Redis in all. Without the
// session cached, one more: the
// read. What is stored is the same either way.
TEST_F(IntakeTest,
       ACompletionOnTheReplicaThatWroteTheLastPageTakesTwoRoundTrips) {
  for (const bool cached : {true, false}) {
    SCOPED_TRACE(cached ? "cached" : "not cached");
    Reconfigure(cached ? IntakeConfig() : NoCache());
    const std::string user = cached ? "alice" : "bob";
    v1::Screening s = Start(user);
    const std::string etag = AnswerAll(s, {{"phq9.1", "2"}, {"phq9.2", "2"}});
    const int64_t before = RedisReads(*client_);
    auto done =
        core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
    const int64_t after = RedisReads(*client_);
    ASSERT_THAT(done, IsOk());
    ASSERT_GE(before, 0);
    EXPECT_EQ(after - before - 1, cached ? 2 : 3)
        << "the INFO that asks is one read";
    EXPECT_EQ(done->handoff(), v1::DELIVERED);
    EXPECT_EQ(done->screening().state(), v1::COMPLETED);
    const std::string id = IdOf(s);
    const std::string owner = store_->OwnerOf(user);
    EXPECT_FALSE(
        client_
            ->Command({"ZSCORE", redis::Key("intake", owner, "results"), id},
                      Soon())
            ->is_nil());
    EXPECT_FALSE(
        client_
            ->Command({"ZSCORE", redis::GlobalKey("intake", "completed"), id},
                      Soon())
            ->is_nil());
    EXPECT_TRUE(client_
                    ->Command({"ZSCORE", redis::GlobalKey("intake", "outbox"),
                               absl::StrCat(owner, "/", id)},
                              Soon())
                    ->is_nil());
    EXPECT_TRUE(
        client_
            ->Command({"ZSCORE", redis::Key("intake", owner, "open"), id},
                      Soon())
            ->is_nil());
    auto stored = store_->Get(id, "", Soon());
    ASSERT_THAT(stored, IsOk());
    ASSERT_TRUE(stored->session.has_value());
    EXPECT_EQ(stored->session->record.state(), v1::COMPLETED);
    EXPECT_EQ(stored->session->record.handoff(), v1::DELIVERED);
    ASSERT_TRUE(stored->session->result.has_value());
    EXPECT_EQ(stored->session->result->scoring().SerializeAsString(),
              referral_.last.result().SerializeAsString());
  }
}

// A completion on a replica whose cached session changed elsewhere
// meanwhile stores nothing of its own and gets exactly the answer a replica
// without the cache gives.
TEST_F(IntakeTest,
       ACompletionOfASessionChangedElsewhereGetsTheAnswerARedisReadWouldGive) {
  auto other = Replica();
  auto cold = Replica(NoCache());
  auto state_of = [&](const v1::Screening& s) {
    auto read = store_->Get(IdOf(s), "", Soon());
    return read.ok() && read->session.has_value()
               ? read->session->record.state()
               : v1::SCREENING_STATE_UNSPECIFIED;
  };

  // Another page on the last etag, through the other replica: ABORTED naming
  // the current etag, nothing completed, and the screening is in nobody's
  // results (the indexes sent ahead of the refused write are skipped).
  v1::Screening s = Start("carol");
  std::string etag = AnswerAll(s, {});
  v1::Screening at = s;
  at.set_etag(etag);
  auto changed = Submit(*other, Answers(at, {3}, "p-other"), Soon());
  ASSERT_THAT(changed, IsOk());
  auto stale = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  EXPECT_THAT(
      stale,
      StatusIs(absl::StatusCode::kAborted,
               HasSubstr(absl::StrCat("current etag \"",
                                      changed->screening().etag(), "\""))));
  EXPECT_EQ(stale.status(),
            cold->CompleteScreening(Complete(s.name(), etag, "c1-cold"), Soon())
                .status());
  EXPECT_EQ(state_of(s), v1::IN_PROGRESS);
  v1::ListMyResultsRequest list;
  list.set_parent("users/carol");
  auto results = core_->ListMyResults(list, Soon());
  ASSERT_THAT(results, IsOk());
  EXPECT_EQ(results->results_size(), 0);
  EXPECT_EQ(scoring_->calls.load(), 1)
      << "scored by the cached try, refused at its write; nothing kept";
  // On the current etag it completes.
  auto done = core_->CompleteScreening(
      Complete(s.name(), changed->screening().etag(), "c2"), Soon());
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->screening().state(), v1::COMPLETED);

  // Completed through the other replica by the same request (the app's
  // retry went there): the same result, scored once.
  s = Start("dave");
  etag = AnswerAll(s, {});
  auto first = other->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(first, IsOk());
  auto again = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->result().SerializeAsString(),
            first->result().SerializeAsString());
  EXPECT_EQ(again->screening().SerializeAsString(),
            first->screening().SerializeAsString());
  // ... and by another request: already completed.
  s = Start("dave2");
  etag = AnswerAll(s, {});
  ASSERT_THAT(other->CompleteScreening(Complete(s.name(), etag, "c1"), Soon()),
              IsOk());
  auto twice = core_->CompleteScreening(Complete(s.name(), etag, "c2"), Soon());
  EXPECT_THAT(twice, StatusIs(absl::StatusCode::kFailedPrecondition,
                              HasSubstr("already completed")));
  EXPECT_EQ(
      twice.status(),
      cold->CompleteScreening(Complete(s.name(), etag, "c3"), Soon()).status());

  // Abandoned elsewhere: FAILED_PRECONDITION, as without the cache.
  s = Start("erin");
  etag = AnswerAll(s, {});
  v1::AbandonScreeningRequest abandon;
  abandon.set_name(s.name());
  ASSERT_THAT(other->AbandonScreening(abandon, Soon()), IsOk());
  auto late = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  EXPECT_THAT(late, StatusIs(absl::StatusCode::kFailedPrecondition,
                             HasSubstr("ABANDONED")));
  EXPECT_EQ(
      late.status(),
      cold->CompleteScreening(Complete(s.name(), etag, "c1"), Soon()).status());
  EXPECT_EQ(state_of(s), v1::ABANDONED);

  // Gone from Redis (expired): NOT_FOUND, and nothing is recreated.
  s = Start("frank");
  etag = AnswerAll(s, {});
  ASSERT_THAT(client_->Command(
                  {"DEL", redis::Key("intake", IdOf(s), "session")}, Soon()),
              IsOk());
  auto gone = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  EXPECT_THAT(gone, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(
      gone.status(),
      cold->CompleteScreening(Complete(s.name(), etag, "c1"), Soon()).status());
  EXPECT_EQ(client_
                ->Command({"EXISTS", redis::Key("intake", IdOf(s), "session")},
                          Soon())
                ->integer,
            0);
}

TEST_F(IntakeTest, CompleteScoresStoresAndHandsOff) {
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {{"phq9.1", "2"},
                                   {"phq9.2", "2"},
                                   {"phq9.3", "2"},
                                   {"phq9.4", "2"},
                                   {"phq9.5", "1"},
                                   {"phq9.6", "1"},
                                   {"phq9.7", "1"},
                                   {"phq9.10", "1"}});
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->screening().state(), v1::COMPLETED);
  ASSERT_EQ(done->result().scoring().scores(0).instrument_id(), "phq9")
      << "the person's own scores";
  EXPECT_EQ(done->result().scoring().scores(0).total(), 11);
  EXPECT_EQ(done->route().route(), common::v1::THERAPY);
  EXPECT_TRUE(done->route().pending_review());
  EXPECT_THAT(done->route().message(), HasSubstr("not a diagnosis"));
  EXPECT_FALSE(done->has_crisis_resources());
  EXPECT_EQ(done->handoff(), v1::DELIVERED);
  EXPECT_EQ(referral_.calls.load(), 1);
  EXPECT_EQ(referral_.last.screening(), s.name());
  {
    v1::GetScreeningRequest get;
    get.set_name(s.name());
    auto now = core_->GetScreening(get, Soon());
    ASSERT_THAT(now, IsOk());
    EXPECT_GT(done->screening().progress().answered(), 0);
    EXPECT_EQ(done->screening().progress().SerializeAsString(),
              now->progress().SerializeAsString())
        << "the reply's progress is what a fresh read says";
  }
  EXPECT_EQ(referral_.last.location_state(), "FL")
      << "the state the start context gave";
  // The completed result does not expire.
  std::string id = IdOf(s);
  auto ttl =
      client_->Command({"PTTL", redis::Key("intake", id, "session")}, Soon());
  EXPECT_EQ(ttl->integer, -1);
  // Indexed for the person and for re-scoring; delivered, so out of the
  // outbox; no longer an open screening.
  const std::string owner = store_->OwnerOf("alice");
  EXPECT_FALSE(
      client_
          ->Command({"ZSCORE", redis::Key("intake", owner, "results"), id},
                    Soon())
          ->is_nil());
  EXPECT_FALSE(
      client_
          ->Command({"ZSCORE", redis::GlobalKey("intake", "completed"), id},
                    Soon())
          ->is_nil())
      << "the screening id alone";
  // What re-scoring walks: this entry.
  auto walked = store_->ScanCompleted(0, INT64_MAX / 2, 0, "", 10, Soon());
  ASSERT_THAT(walked, IsOk());
  ASSERT_EQ(walked->size(), 1u);
  EXPECT_EQ((*walked)[0].screening_id, id);
  EXPECT_EQ((*walked)[0].member, id);
  EXPECT_EQ(
      client_->Command({"ZCARD", redis::GlobalKey("intake", "outbox")}, Soon())
          ->integer,
      0);
  EXPECT_TRUE(
      client_
          ->Command({"ZSCORE", redis::Key("intake", owner, "open"), id}, Soon())
          ->is_nil());

  // Same request id: the stored result again, without scoring again.
  auto replay =
      core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(replay, IsOk());
  EXPECT_EQ(replay->result().SerializeAsString(),
            done->result().SerializeAsString());
  EXPECT_EQ(scoring_->calls.load(), 1);
  // Another request id: already completed.
  EXPECT_THAT(core_->CompleteScreening(Complete(s.name(), "9", "c2"), Soon()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("already completed")));
  // And answers can no longer change.
  EXPECT_THAT(Submit(*core_, Answers(done->screening(), {0}, "late"), Soon()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// A completed session keeps its answers once, in the form scoring takes, and
// a digest of its result: what re-scoring reads. Sessions stored before that
// layout (answers inside the record, no digest) read the same.
TEST_F(IntakeTest, CompletedAnswersAreStoredPackedAndReadBackWhole) {
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {{"phq9.1", "2"}, {"phq9.2", "2"}});
  const std::string id = IdOf(s);
  auto before = store_->Get(id, "", Soon());
  ASSERT_THAT(before, IsOk());
  const auto answers_in_progress = before->session->record.answers();
  ASSERT_GT(answers_in_progress.size(), 20u);
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());

  const std::string key = redis::Key("intake", id, "session");
  auto sealed = client_->Command({"HMGET", key, "d", "a", "s", "r"}, Soon());
  ASSERT_THAT(sealed, IsOk());
  // Every field is sealed (encryption at rest), bound to its key and field.
  redis::Reply opened = *sealed;
  const char* names[] = {"d", "a", "s", "r"};
  for (int f = 0; f < 4; ++f) {
    auto plain = keys_.Open(sealed->elements[f].str, key + "#" + names[f]);
    ASSERT_THAT(plain, IsOk()) << names[f];
    EXPECT_FALSE(keys_.Open(sealed->elements[f].str, key + "#x").ok())
        << names[f] << " opens only in its place";
    opened.elements[f].str = *plain;
  }
  // What a completed session keeps for good is packed (common/compress):
  // the record and the answers here, the result below (not the digest:
  // ~80 B, too small to pay for it).
  for (int f : {0, 1}) {
    EXPECT_EQ(opened.elements[f].str.substr(0, 2), std::string("\0\3", 2))
        << names[f] << " packed, dictionary 3";
    auto plain = compress::Unpack(opened.elements[f].str);
    ASSERT_THAT(plain, IsOk()) << names[f];
    opened.elements[f].str = *plain;
  }
  const redis::Reply* raw = &opened;
  storage::v1::SessionRecord record;
  ASSERT_TRUE(record.ParseFromString(raw->elements[0].str));
  EXPECT_TRUE(record.answers().empty()) << "answers are not stored twice";
  scoring::v1::ScoreAnswersRequest packed;
  ASSERT_TRUE(packed.ParseFromString(raw->elements[1].str));
  EXPECT_EQ(packed.answers().answers_size(), 0)
      << "the answers are in the packed form";
  EXPECT_EQ(packed.administered_instruments_size(), 0);
  common::v1::AnswerSet unpacked;
  std::vector<std::string> administered;
  ASSERT_THAT(scoring::packed::Unpack(packed.packed_answers(), &unpacked,
                                      &administered),
              IsOk());
  EXPECT_EQ(unpacked.answers_size(),
            static_cast<int>(answers_in_progress.size()));
  EXPECT_THAT(administered,
              ::testing::IsSupersetOf(before->session->record.instruments()));
  EXPECT_LT(packed.packed_answers().size(), answers_in_progress.size() * 6)
      << "a few bytes per answer, not the item id and a message each";
  // The full result is packed (common/compress): under a sixth of its size
  // (this one is self-help under ruleset v2, with its whole plan's text).
  auto result_bytes = compress::Unpack(raw->elements[3].str);
  ASSERT_THAT(result_bytes, IsOk());
  EXPECT_EQ(raw->elements[3].str[0], '\0') << "packed";
  EXPECT_LT(raw->elements[3].str.size() * 6, result_bytes->size());
  storage::v1::ResultRecord result;
  ASSERT_TRUE(result.ParseFromString(*result_bytes));
  EXPECT_EQ(raw->elements[2].str,
            scoring::DigestOf(result.scoring()).SerializeAsString());

  // Read back whole: the record has its answers again.
  auto after = store_->Get(id, "", Soon());
  ASSERT_THAT(after, IsOk());
  ASSERT_EQ(after->session->record.answers().size(),
            answers_in_progress.size());
  for (const auto& [item, answer] : answers_in_progress) {
    EXPECT_EQ(after->session->record.answers().at(item).SerializeAsString(),
              answer.SerializeAsString())
        << item;
  }
  auto many = store_->GetMany({id, "missing"}, Soon());
  ASSERT_THAT(many, IsOk());
  ASSERT_TRUE((*many)[0].has_value());
  EXPECT_EQ((*many)[0]->record.answers().size(), answers_in_progress.size());
  EXPECT_FALSE((*many)[1].has_value());

  // What re-scoring reads, from this layout and from the one before it.
  auto fast = store_->ReadForRescore({id, "missing"}, "v2", Soon(), &arena_);
  ASSERT_THAT(fast, IsOk());
  ASSERT_TRUE((*fast)[0].completed);
  EXPECT_FALSE((*fast)[1].completed);
  EXPECT_EQ((*fast)[0].packed_request, raw->elements[1].str);
  EXPECT_EQ((*fast)[0].before->SerializeAsString(), raw->elements[2].str);
  EXPECT_FALSE((*fast)[0].outcome != nullptr);

  // Field a as a plain answer list (before the packed form): read back whole.
  scoring::v1::ScoreAnswersRequest plain;
  *plain.mutable_answers() = unpacked;
  ASSERT_THAT(
      client_->Command({"HSET", key, "a",
                        store_->SealField(id, "a", plain.SerializeAsString())},
                       Soon()),
      IsOk());
  auto from_plain = store_->Get(id, "", Soon());
  ASSERT_THAT(from_plain, IsOk());
  ASSERT_EQ(from_plain->session->record.answers().size(),
            answers_in_progress.size());
  for (const auto& [item, answer] : answers_in_progress) {
    EXPECT_EQ(
        from_plain->session->record.answers().at(item).SerializeAsString(),
        answer.SerializeAsString())
        << item;
  }

  // The layout older builds wrote (the answers in the record, no fields a
  // and s, an "<owner>/<screening>" index member) is not read as completed
  // until the migration step rewrites it; then it reads as a completion
  // writes it now, and a second run changes nothing.
  storage::v1::SessionRecord old_layout = after->session->record;
  ASSERT_THAT(client_->Command({"HDEL", key, "a", "s"}, Soon()), IsOk());
  ASSERT_THAT(client_->Command(
                  {"HSET", key, "d",
                   store_->SealField(id, "d", old_layout.SerializeAsString())},
                  Soon()),
              IsOk());
  const std::string index = redis::GlobalKey("intake", "completed");
  auto score = client_->Command({"ZSCORE", index, id}, Soon());
  ASSERT_THAT(score, IsOk());
  ASSERT_THAT(client_->Command({"ZREM", index, id}, Soon()), IsOk());
  ASSERT_THAT(
      client_->Command({"ZADD", index, score->str, "someone/" + id}, Soon()),
      IsOk());
  auto unmigrated = store_->ReadForRescore({id}, "v2", Soon(), &arena_);
  ASSERT_THAT(unmigrated, IsOk());
  EXPECT_FALSE((*unmigrated)[0].completed);
  auto report = store_->MigrateOlderLayouts(Soon());
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->index_members, 1);
  EXPECT_EQ(report->sessions, 1);
  auto rewalked = store_->ScanCompleted(0, INT64_MAX / 2, 0, "", 10, Soon());
  ASSERT_THAT(rewalked, IsOk());
  ASSERT_EQ(rewalked->size(), 1u);
  EXPECT_EQ((*rewalked)[0].member, id);
  auto migrated = store_->ReadForRescore({id}, "v2", Soon(), &arena_);
  ASSERT_THAT(migrated, IsOk());
  ASSERT_TRUE((*migrated)[0].completed);
  EXPECT_EQ((*migrated)[0].packed_request, raw->elements[1].str);
  EXPECT_EQ((*migrated)[0].before->SerializeAsString(), raw->elements[2].str);
  auto again_report = store_->MigrateOlderLayouts(Soon());
  ASSERT_THAT(again_report, IsOk());
  EXPECT_EQ(again_report->index_members, 0);
  EXPECT_EQ(again_report->sessions, 0);

  // Outcomes are write-once per version.
  storage::v1::RescoreOutcome first, second;
  first.set_time_ms(1);
  second.set_time_ms(2);
  ASSERT_THAT(store_->PutOutcomes({{id, &first}}, "v2", Soon()), IsOk());
  ASSERT_THAT(store_->PutOutcomes({{id, &second}}, "v2", Soon()), IsOk());
  auto with_outcome = store_->ReadForRescore({id}, "v2", Soon(), &arena_);
  ASSERT_THAT(with_outcome, IsOk());
  ASSERT_TRUE((*with_outcome)[0].outcome != nullptr);
  EXPECT_EQ((*with_outcome)[0].outcome->time_ms(), 1);

  // An unchanged outcome is stored without its digest (the original's) and
  // read back with it; a changed one is stored whole, packed.
  storage::v1::RescoreOutcome unchanged, changed;
  unchanged.set_time_ms(3);
  *unchanged.mutable_digest() = *(*migrated)[0].before;
  changed.set_time_ms(4);
  changed.set_changed(true);
  changed.mutable_digest()->set_bands("phq9=severe");
  changed.mutable_digest()->set_route_rule("moved");
  *changed.mutable_changed_result() = result.scoring();
  changed.mutable_changed_result()->set_ruleset_version("v3");
  ASSERT_THAT(store_->PutOutcomes({{id, &unchanged}}, "v4", Soon()), IsOk());
  ASSERT_THAT(store_->PutOutcomes({{id, &changed}}, "v3", Soon()), IsOk());
  auto stored_unchanged = client_->Command({"HGET", key, "o:v4"}, Soon());
  ASSERT_THAT(stored_unchanged, IsOk());
  auto plain_unchanged = store_->OpenField(id, "o:v4", stored_unchanged->str);
  ASSERT_THAT(plain_unchanged, IsOk());
  storage::v1::RescoreOutcome raw_unchanged;
  ASSERT_TRUE(raw_unchanged.ParseFromString(*plain_unchanged));
  EXPECT_FALSE(raw_unchanged.has_digest()) << "the digest is field s's";
  EXPECT_EQ(raw_unchanged.time_ms(), 3);
  auto read_unchanged = store_->ReadForRescore({id}, "v4", Soon(), &arena_);
  ASSERT_THAT(read_unchanged, IsOk());
  ASSERT_TRUE((*read_unchanged)[0].outcome != nullptr);
  EXPECT_EQ((*read_unchanged)[0].outcome->SerializeAsString(),
            unchanged.SerializeAsString());
  auto read_changed = store_->ReadForRescore({id}, "v3", Soon(), &arena_);
  ASSERT_THAT(read_changed, IsOk());
  ASSERT_TRUE((*read_changed)[0].outcome != nullptr);
  EXPECT_EQ((*read_changed)[0].outcome->SerializeAsString(),
            changed.SerializeAsString());
  auto stored_changed = client_->Command({"HGET", key, "o:v3"}, Soon());
  ASSERT_THAT(stored_changed, IsOk());
  auto plain_changed = store_->OpenField(id, "o:v3", stored_changed->str);
  ASSERT_THAT(plain_changed, IsOk());
  EXPECT_EQ(plain_changed->substr(0, 2), std::string("\0\3", 2))
      << "packed, dictionary 3";
  EXPECT_LT(plain_changed->size() * 4, changed.ByteSizeLong())
      << "the full result packs to under a quarter";
  // A changed outcome stored unpacked reads the same.
  ASSERT_THAT(client_->Command(
                  {"HSET", key, "o:v5",
                   store_->SealField(id, "o:v5", changed.SerializeAsString())},
                  Soon()),
              IsOk());
  auto read_unpacked = store_->ReadForRescore({id}, "v5", Soon(), &arena_);
  ASSERT_THAT(read_unpacked, IsOk());
  ASSERT_TRUE((*read_unpacked)[0].outcome != nullptr);
  EXPECT_EQ((*read_unpacked)[0].outcome->SerializeAsString(),
            changed.SerializeAsString());
}

// Per-user rate limits: over the limit is RESOURCE_EXHAUSTED saying when to
// try again; other people are unaffected; nothing accepted is lost; the
// next window opens again.
TEST_F(IntakeTest, StartsAndSubmitsAreRateLimitedPerPerson) {
  struct SettableClock : Clock {
    absl::Time Now() const override { return now; }
    absl::Time now =
        absl::FromUnixSeconds(1'800'000'000);  // on an hour boundary
  } clock;
  IntakeConfig config;
  config.max_open_sessions = 10;
  config.start_limit_per_hour = 3;
  config.submit_limit_per_minute = 2;
  core_ = std::make_unique<IntakeCore>(store_.get(), scoring_.get(), &referral_,
                                       &catalog_, &clock, config);
  std::vector<v1::Screening> started;
  for (int i = 0; i < 3; ++i) started.push_back(Start("rita"));
  v1::StartScreeningRequest req;
  req.set_parent("users/rita");
  req.set_consent_version("c1");
  clock.now += absl::Minutes(20);
  EXPECT_THAT(core_->StartScreening(req, Soon()),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("try again in 2400 s")));
  Start("sam");                    // someone else: unaffected
  clock.now += absl::Minutes(40);  // the next hour
  started.push_back(Start("rita"));

  // Submits: two a minute.
  v1::Screening s = started[0];
  const std::string id = IdOf(s);
  auto before = store_->Get(id, "", Soon());
  ASSERT_THAT(before, IsOk());
  auto first = Submit(*core_, Answers(s, {1}, "a1"), Soon());
  ASSERT_THAT(first, IsOk());
  auto second =
      Submit(*core_, Answers(first->screening(), {2}, "a2", 2), Soon());
  ASSERT_THAT(second, IsOk());
  EXPECT_THAT(
      Submit(*core_, Answers(second->screening(), {3}, "a3", 3), Soon()),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("submit")));
  auto kept = store_->Get(id, "", Soon());
  ASSERT_THAT(kept, IsOk());
  EXPECT_EQ(kept->session->record.answers().size(),
            before->session->record.answers().size() + 2)
      << "what was accepted stays";
  clock.now += absl::Minutes(1);
  EXPECT_THAT(
      Submit(*core_, Answers(second->screening(), {3}, "a3", 3), Soon()),
      IsOk());
}

TEST_F(IntakeTest, Item9ShowsCrisisResourcesEvenWhenReferralIsDown) {
  referral_.down = true;
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {{"phq9.9", "1"}});
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  ASSERT_TRUE(done->has_crisis_resources());
  EXPECT_THAT(done->crisis_resources().contacts(0).how(), HasSubstr("988"));
  EXPECT_EQ(done->route().route(), common::v1::CRISIS_URGENT);
  EXPECT_EQ(done->handoff(), v1::PENDING);
  EXPECT_EQ(done->screening().state(), v1::COMPLETED) << "the result is kept";
  const std::string id = IdOf(s);
  EXPECT_TRUE(
      client_
          ->Command(
              {"ZSCORE", redis::Key("intake", store_->OwnerOf("alice"), "open"),
               id},
              Soon())
          ->is_nil())
      << "no longer an open screening, though the hand-off waits";

  // Referral back: retrying the completion delivers the hand-off once.
  referral_.down = false;
  auto retry = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(retry, IsOk());
  EXPECT_EQ(retry->handoff(), v1::DELIVERED);
  EXPECT_TRUE(retry->has_crisis_resources());
  auto third = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  EXPECT_EQ(third->handoff(), v1::DELIVERED);
  EXPECT_EQ(referral_.calls.load(), 2)
      << "one failed try, one delivery, no more";
}

TEST_F(IntakeTest, HungReferralDoesNotHoldTheCompletionReply) {
  referral_.hung = true;
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {{"phq9.9", "2"}});
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"),
                                       absl::Now() + absl::Seconds(10));
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(done->has_crisis_resources());
  EXPECT_EQ(done->handoff(), v1::PENDING) << "left to the outbox";
  EXPECT_EQ(
      client_->Command({"ZCARD", redis::GlobalKey("intake", "outbox")}, Soon())
          ->integer,
      1);
  // The hand-off got the short inline budget, not the call's 10 s.
  EXPECT_LE(referral_.last_budget, IntakeConfig().handoff_inline_budget);
}

TEST_F(IntakeTest, ThePersonNeverSeesAKetamineReviewOrClinicalDetail) {
  v1::StartScreeningRequest start;
  start.set_parent("users/ket");
  start.set_consent_version("c1");
  start.mutable_context()->set_location_state("FL");
  auto s = core_->StartScreening(start, Soon());
  ASSERT_THAT(s, IsOk());
  std::string etag = AnswerAll(*s, {{"ctx.state", "FL"},
                                    {"phq9.1", "2"},
                                    {"phq9.2", "2"},
                                    {"phq9.3", "2"},
                                    {"phq9.4", "2"},
                                    {"phq9.5", "2"},
                                    {"ket.trials", "two_or_more"},
                                    {"ket.pregnant", "no"}});
  auto done = core_->CompleteScreening(Complete(s->name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  ASSERT_EQ(referral_.last.result().routing().primary_route(),
            common::v1::KETAMINE_REVIEW)
      << "the clinician side has it";
  v1::ListMyResultsRequest list;
  list.set_parent("users/ket");
  auto results = core_->ListMyResults(list, Soon());
  ASSERT_THAT(results, IsOk());
  for (const std::string& text :
       {done->DebugString(), results->DebugString()}) {
    EXPECT_THAT(text, ::testing::Not(HasSubstr("KETAMINE"))) << text;
    EXPECT_THAT(text, ::testing::Not(HasSubstr("ket."))) << text;
    EXPECT_THAT(text, ::testing::Not(HasSubstr("ketamine"))) << text;
    EXPECT_THAT(text, ::testing::Not(HasSubstr("DEPRESSION")))
        << "no diagnosis-like labels";
    EXPECT_THAT(text, ::testing::Not(HasSubstr("rule_id")));
  }
  EXPECT_THAT(done->route().message(),
              HasSubstr("under review by a physician"));
  EXPECT_EQ(done->result().scoring().scores(0).instrument_id(), "phq9");
  EXPECT_EQ(done->result().scoring().scores(0).total(), 10)
      << "their own scores are theirs to see";
}

TEST_F(IntakeTest, ScoringDownLosesNothing) {
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {});
  scoring_->down = true;
  EXPECT_THAT(core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("scoring")));
  scoring_->down = false;
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->route().route(), common::v1::SELF_HELP);
  EXPECT_GE(done->route().self_help_plan_size(), 1);
  EXPECT_FALSE(done->route().pending_review());
}

// The page a replica writes after its own last write holds no thread while
// Redis works: it never touches the pool. What must block (a session this
// replica has not cached) goes to the pool, and a pool with no room answers
// UNAVAILABLE at once, storing nothing.
TEST_F(IntakeTest, TheUsualPageHoldsNoThreadAndWhatMustBlockGoesToThePool) {
  server::WorkerPool refusing(1, /*max_queued=*/0);  // every Schedule fails
  auto submit_with = [&](IntakeCore& core, server::WorkerPool* pool,
                         const v1::SubmitAnswersRequest& req) {
    return aqueduct::testing::SubmitAndWait(core, req, Soon(), pool);
  };
  v1::Screening s = Start();  // cached as started
  auto first = submit_with(*core_, &refusing, Answers(s, {1}, "p1"));
  ASSERT_THAT(first, IsOk()) << "a cached session's page needs no pool thread";
  auto second =
      submit_with(*core_, &refusing, Answers(first->screening(), {2}, "p2", 2));
  ASSERT_THAT(second, IsOk());

  auto cold = Replica(NoCache());
  EXPECT_THAT(
      submit_with(*cold, &refusing, Answers(second->screening(), {3}, "p3", 3)),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("overloaded")));
  const std::string id = IdOf(s);
  auto stored = store_->Get(id, "", Soon());
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->session->version, 3) << "the refused page stored nothing";
  auto third =
      submit_with(*cold, &pool_, Answers(second->screening(), {3}, "p3", 3));
  ASSERT_THAT(third, IsOk()) << "read from Redis on a pool thread";
  EXPECT_EQ(third->screening().etag(), "4");
}

// Redis stops answering while a page is being written: UNAVAILABLE within
// the command timeout (500 ms here), not the caller's whole deadline. The
// app retries the same request once Redis is back, and the page is stored
// exactly once, whether or not the first write reached Redis.
TEST_F(IntakeTest,
       AHungRedisMidWriteIsUnavailableAndTheRetryStoresThePageOnce) {
  v1::Screening s = Start();
  redis().Pause();
  const absl::Time start = absl::Now();
  auto hung =
      Submit(*core_, Answers(s, {2}, "r1"), absl::Now() + absl::Seconds(8));
  const absl::Duration took = absl::Now() - start;
  redis().Resume();
  EXPECT_THAT(hung, StatusIs(absl::StatusCode::kUnavailable,
                             HasSubstr("did not answer")));
  EXPECT_LT(took, absl::Seconds(4));
  auto retried = Submit(*core_, Answers(s, {2}, "r1"), Soon());
  ASSERT_THAT(retried, IsOk());
  EXPECT_EQ(retried->screening().etag(), "2");
  const std::string id = IdOf(s);
  auto stored = store_->Get(id, "", Soon());
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->session->version, 2);
  EXPECT_EQ(stored->session->record.answers().at("phq9.1").option_value(), 2);
}

TEST_F(IntakeTest, RedisDownIsUnavailableAndRecovers) {
  v1::Screening s = Start();
  ASSERT_THAT(redis().Stop(), IsOk());
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  EXPECT_THAT(core_->GetScreening(get, Soon()),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(Submit(*core_, Answers(s, {1}, "r1"), Soon()),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(redis().Restart(), IsOk());
  auto back = core_->GetScreening(get, Soon());
  ASSERT_THAT(back, IsOk()) << "AOF kept the session; the client reconnected";
  EXPECT_THAT(Submit(*core_, Answers(*back, {1}, "r1"), Soon()), IsOk());
}

TEST_F(IntakeTest, NotReadyWithoutCatalog) {
  CatalogHolder empty;
  IntakeCore core(store_.get(), scoring_.get(), &referral_, &empty,
                  &RealClock(), IntakeConfig());
  v1::StartScreeningRequest req;
  req.set_parent("users/alice");
  req.set_consent_version("c1");
  EXPECT_THAT(core.StartScreening(req, Soon()),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("catalog not loaded")));
}

// ---- Issue 4: the session lifecycle
// ------------------------------------------

TEST_F(IntakeTest, OpenSessionLimitPerUser) {
  IntakeConfig config;
  config.max_open_sessions = 2;
  Reconfigure(config);
  v1::Screening a = Start("lim");
  v1::Screening b = Start("lim");
  v1::StartScreeningRequest third;
  third.set_parent("users/lim");
  third.set_consent_version("c1");
  EXPECT_THAT(core_->StartScreening(third, Soon()),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("open screenings")));
  EXPECT_THAT(core_->StartScreening(
                  [] {
                    v1::StartScreeningRequest r;
                    r.set_parent("users/other");
                    r.set_consent_version("c1");
                    return r;
                  }(),
                  Soon()),
              IsOk())
      << "the limit is per user";
  // Abandoning one frees a slot; completing one does too.
  v1::AbandonScreeningRequest abandon;
  abandon.set_name(a.name());
  ASSERT_THAT(core_->AbandonScreening(abandon, Soon()), IsOk());
  EXPECT_THAT(core_->StartScreening(third, Soon()), IsOk());
  EXPECT_THAT(core_->StartScreening(third, Soon()),
              StatusIs(absl::StatusCode::kResourceExhausted));
  std::string etag = AnswerAll(b, {});
  ASSERT_THAT(core_->CompleteScreening(Complete(b.name(), etag, "c1"), Soon()),
              IsOk());
  EXPECT_THAT(core_->StartScreening(third, Soon()), IsOk());
}

TEST_F(IntakeTest, AbandonAndDeleteAnswers) {
  v1::Screening s = Start();
  ASSERT_THAT(Submit(*core_, Answers(s, {1, 2}, "r1"), Soon()), IsOk());
  v1::AbandonScreeningRequest req;
  req.set_name(s.name());
  req.set_delete_answers(true);
  auto abandoned = core_->AbandonScreening(req, Soon());
  ASSERT_THAT(abandoned, IsOk());
  EXPECT_EQ(abandoned->state(), v1::ABANDONED);
  EXPECT_EQ(abandoned->progress().answered(), 0) << "answers deleted";
  std::string id = IdOf(s);
  auto stored = store_->Get(id, "", Soon());
  ASSERT_THAT(stored, IsOk());
  EXPECT_TRUE(stored->session->record.answers().empty());
  EXPECT_THAT(core_->AbandonScreening(req, Soon()), IsOk())
      << "abandoning again is the same";
  v1::GetNextItemsRequest next;
  next.set_name(s.name());
  EXPECT_THAT(core_->GetNextItems(next, Soon()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Submit(*core_, Answers(*abandoned, {1}, "r2"), Soon()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // A completed screening cannot be abandoned.
  v1::Screening c = Start();
  std::string etag = AnswerAll(c, {});
  ASSERT_THAT(core_->CompleteScreening(Complete(c.name(), etag, "c1"), Soon()),
              IsOk());
  req.set_name(c.name());
  EXPECT_THAT(core_->AbandonScreening(req, Soon()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// Each page moves the screening's open-slot expiry (the user's open zset)
// to the session's own expiry, in the same round trip as the write.
TEST_F(IntakeTest, EachPageMovesTheOpenSlotExpiry) {
  v1::Screening s = Start();
  const std::string id = IdOf(s);
  const std::string open =
      redis::Key("intake", store_->OwnerOf("alice"), "open");
  auto before = client_->Command({"ZSCORE", open, id}, Soon());
  ASSERT_THAT(before, IsOk());
  ASSERT_FALSE(before->is_nil());
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_THAT(Submit(*core_, Answers(s, {1}, "r1"), Soon()), IsOk());
  auto stored = store_->Get(id, "", Soon());
  ASSERT_THAT(stored, IsOk());
  auto after = client_->Command({"ZSCORE", open, id}, Soon());
  ASSERT_THAT(after, IsOk());
  int64_t before_ms = 0, after_ms = 0;
  ASSERT_TRUE(absl::SimpleAtoi(before->str, &before_ms));
  ASSERT_TRUE(absl::SimpleAtoi(after->str, &after_ms));
  EXPECT_GT(after_ms, before_ms);
  EXPECT_EQ(after_ms,
            stored->session->record.update_time_ms() +
                absl::ToInt64Milliseconds(IntakeConfig().session_ttl));
}

TEST_F(IntakeTest, IdleScreeningExpiresToNotFound) {
  // Generous margins (0.3-1.0 s): this runs beside other tests on 2 cores.
  IntakeConfig config;
  config.session_ttl = absl::Milliseconds(1000);
  Reconfigure(config);
  v1::Screening s = Start();
  auto a = Submit(*core_, Answers(s, {1}, "r1"), Soon());
  ASSERT_THAT(a, IsOk());
  absl::SleepFor(absl::Milliseconds(700));
  // Activity refreshes the expiry...
  ASSERT_THAT(Submit(*core_, Answers(a->screening(), {2}, "r2"), Soon()),
              IsOk());
  absl::SleepFor(absl::Milliseconds(700));
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  EXPECT_THAT(core_->GetScreening(get, Soon()), IsOk())
      << "1.4 s after start, 0.7 s idle";
  // ...idleness ends it.
  absl::SleepFor(absl::Milliseconds(1300));
  EXPECT_THAT(core_->GetScreening(get, Soon()),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Submit(*core_, Answers(a->screening(), {0}, "r3"), Soon()),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(IntakeTest, ConcurrentSubmitsOnOneVersionExactlyOneWins) {
  v1::Screening s = Start();
  const int kClients = 8;
  std::vector<absl::StatusOr<v1::SubmitAnswersResponse>> results(
      kClients, absl::UnknownError("unset"));
  std::vector<std::thread> threads;
  absl::Notification go;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      go.WaitForNotification();
      results[i] = Submit(
          *core_, Answers(s, {i % 4}, "device-" + std::to_string(i)), Soon());
    });
  }
  go.Notify();
  for (auto& t : threads) t.join();
  int won = -1, aborted = 0;
  for (int i = 0; i < kClients; ++i) {
    if (results[i].ok()) {
      EXPECT_EQ(won, -1) << "two writers won";
      won = i;
    } else {
      EXPECT_THAT(results[i], StatusIs(absl::StatusCode::kAborted,
                                       HasSubstr("current etag \"2\"")));
      ++aborted;
    }
  }
  ASSERT_GE(won, 0);
  EXPECT_EQ(aborted, kClients - 1);
  // The winner's answer is the one stored; nothing else changed.
  std::string id = IdOf(s);
  auto stored = store_->Get(id, "", Soon());
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->session->version, 2);
  EXPECT_EQ(stored->session->record.answers().at("phq9.1").option_value(),
            won % 4);
}

// Four devices complete one screening at once, each through its own
// replica (one of them, the one that took the pages, has it cached):
// exactly one completion is committed and handed off; the others are told
// the screening changed or is completed, and store nothing.
TEST_F(IntakeTest, ConcurrentCompletionsExactlyOneIsCommittedAndHandedOff) {
  v1::Screening s = Start();
  const std::string etag = AnswerAll(s, {{"phq9.1", "2"}, {"phq9.2", "2"}});
  std::vector<std::unique_ptr<IntakeCore>> others;
  for (int i = 0; i < 3; ++i) others.push_back(Replica());
  std::vector<IntakeCore*> replicas = {core_.get(), others[0].get(),
                                       others[1].get(), others[2].get()};
  std::vector<absl::StatusOr<v1::CompleteScreeningResponse>> results(
      replicas.size(), absl::UnknownError("unset"));
  std::vector<std::thread> threads;
  absl::Notification go;
  for (size_t i = 0; i < replicas.size(); ++i) {
    threads.emplace_back([&, i] {
      go.WaitForNotification();
      results[i] = replicas[i]->CompleteScreening(
          Complete(s.name(), etag, absl::StrCat("device-", i)), Soon());
    });
  }
  go.Notify();
  for (auto& t : threads) t.join();
  int won = -1;
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok()) {
      EXPECT_EQ(won, -1) << "two completions committed";
      won = static_cast<int>(i);
      EXPECT_EQ(results[i]->handoff(), v1::DELIVERED);
    } else {
      EXPECT_THAT(results[i].status().code(),
                  ::testing::AnyOf(absl::StatusCode::kAborted,
                                   absl::StatusCode::kFailedPrecondition))
          << results[i].status();
    }
  }
  ASSERT_GE(won, 0);
  EXPECT_EQ(referral_.calls.load(), 1) << "handed off once";
  auto stored = store_->Get(IdOf(s), "", Soon());
  ASSERT_THAT(stored, IsOk());
  ASSERT_TRUE(stored->session.has_value());
  EXPECT_EQ(stored->session->record.state(), v1::COMPLETED);
  EXPECT_EQ(stored->session->record.complete_request_id(),
            absl::StrCat("device-", won));
  EXPECT_EQ(stored->session->record.handoff(), v1::DELIVERED);
  const std::string owner = store_->OwnerOf("alice");
  EXPECT_EQ(
      client_
          ->Command({"ZCARD", redis::Key("intake", owner, "results")}, Soon())
          ->integer,
      1);
  EXPECT_EQ(
      client_->Command({"ZCARD", redis::Key("intake", owner, "open")}, Soon())
          ->integer,
      0);
  // A loser's indexes, sent ahead of its refused write, may land after the
  // winner's hand-off took the screening out of the outbox: the worker
  // then finds it delivered and drops the entry without calling referral.
  const std::string outbox = redis::GlobalKey("intake", "outbox");
  if (client_->Command({"ZCARD", outbox}, Soon())->integer > 0) {
    ASSERT_THAT(client_->Command({"ZADD", outbox, "XX", "0",
                                  absl::StrCat(owner, "/", IdOf(s))},
                                 Soon()),
                IsOk());
    auto delivered = core_->DeliverPendingHandoffs(10, Soon());
    ASSERT_THAT(delivered, IsOk());
    EXPECT_EQ(*delivered, 0);
  }
  EXPECT_EQ(client_->Command({"ZCARD", outbox}, Soon())->integer, 0);
  EXPECT_EQ(referral_.calls.load(), 1);
  // ... and its index time, a few ms off, does not make the screening its
  // own previous one.
  ASSERT_THAT(client_->Command({"ZADD", redis::Key("intake", owner, "results"),
                                "1", IdOf(s)},
                               Soon()),
              IsOk())
      << "as if a losing attempt had indexed it earlier than the winner's time";
  v1::GetMyResultRequest get;
  get.set_name(s.name());
  auto result = core_->GetMyResult(get, Soon());
  ASSERT_THAT(result, IsOk());
  EXPECT_FALSE(result->has_trend()) << result->trend().DebugString();
  // A loser's retry with its own request id: already completed, as for anyone.
  for (size_t i = 0; i < replicas.size(); ++i) {
    if (static_cast<int>(i) == won) continue;
    EXPECT_THAT(
        replicas[i]->CompleteScreening(
            Complete(s.name(), etag, absl::StrCat("device-", i)), Soon()),
        StatusIs(absl::StatusCode::kFailedPrecondition,
                 HasSubstr("already completed")));
  }
}

// Pages of results follow the index, even where a screening's index time
// is not its record's (a completion race can leave it a few ms off): every
// result is listed once.
TEST_F(IntakeTest, ResultPagesFollowTheIndexWhereItsTimeDiffersFromTheRecord) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    v1::Screening s = Start("pat");
    ASSERT_THAT(core_->CompleteScreening(
                    Complete(s.name(), AnswerAll(s, {}), "c"), Soon()),
                IsOk());
    ids.push_back(IdOf(s));
    absl::SleepFor(absl::Milliseconds(5));
  }
  // The middle one's index entry moves past the newest one's time.
  const std::string results =
      redis::Key("intake", store_->OwnerOf("pat"), "results");
  auto newest = client_->Command({"ZSCORE", results, ids[2]}, Soon());
  ASSERT_THAT(newest, IsOk());
  int64_t newest_ms = 0;
  ASSERT_TRUE(absl::SimpleAtoi(newest->str, &newest_ms));
  ASSERT_THAT(client_->Command({"ZADD", results, "XX",
                                absl::StrCat(newest_ms + 1000), ids[1]},
                               Soon()),
              IsOk());
  std::vector<std::string> listed;
  v1::ListMyResultsRequest list;
  list.set_parent("users/pat");
  list.set_page_size(1);
  for (int page = 0; page < 5; ++page) {
    auto got = core_->ListMyResults(list, Soon());
    ASSERT_THAT(got, IsOk());
    for (const auto& r : got->results())
      listed.push_back(r.name().substr(r.name().rfind('/') + 1));
    if (got->next_page_token().empty()) break;
    list.set_page_token(got->next_page_token());
  }
  EXPECT_THAT(listed, ::testing::ElementsAre(ids[1], ids[2], ids[0]));

  // Page tokens are sealed and bound to the person: another person's, and
  // one made up, are INVALID_ARGUMENT before anything is read.
  list.clear_page_token();
  auto first = core_->ListMyResults(list, Soon());
  ASSERT_THAT(first, IsOk());
  ASSERT_FALSE(first->next_page_token().empty());
  v1::ListMyResultsRequest theirs;
  theirs.set_parent("users/someone-else");
  theirs.set_page_token(first->next_page_token());
  EXPECT_THAT(core_->ListMyResults(theirs, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("page_token: not a next_page_token")));
  list.set_page_token(absl::WebSafeBase64Escape(
      absl::StrCat(newest_ms, "/", ids[0])));  // the unsealed form
  EXPECT_THAT(
      core_->ListMyResults(list, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

TEST_F(IntakeTest, ReplayedRequestsHaveOneEffectEvenAfterCompletion) {
  v1::Screening s = Start();
  auto first = Submit(*core_, Answers(s, {2}, "once"), Soon());
  ASSERT_THAT(first, IsOk());
  std::string etag = AnswerAll(s, {{"phq9.1", "2"}});
  ASSERT_THAT(core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon()),
              IsOk());
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  const std::string etag_after = core_->GetScreening(get, Soon())->etag();
  // A page's late retry after completion: the pages' request tags are not
  // kept for good, so it is refused like any page of a completed screening,
  // and changes nothing.
  EXPECT_THAT(
      Submit(*core_, Answers(s, {2}, "once"), Soon()),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("COMPLETED")));
  EXPECT_EQ(referral_.calls.load(), 1);
  EXPECT_EQ(core_->GetScreening(get, Soon())->etag(), etag_after)
      << "nothing written";
  const std::string key = redis::Key("intake", IdOf(s), "session");
  // At most the completion's own tag, moved there by the hand-off's write.
  EXPECT_LE(client_->Command({"HSTRLEN", key, "h"}, Soon())->integer, 8)
      << "no page tags kept";
  // The completion's own retry still gets its reply.
  auto again = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->screening().state(), v1::COMPLETED);
  EXPECT_EQ(referral_.calls.load(), 1) << "not handed off twice";
}

// A page's retry arriving after a later page changed the same answer must
// not put the old answer back, and gets the screening as it is now; a retry
// of the latest page gets its reply byte for byte.
TEST_F(IntakeTest, RetryOfAnEarlierPageChangesNothing) {
  v1::Screening s = Start();
  auto first = Submit(*core_, Answers(s, {1}, "page-1"), Soon());
  ASSERT_THAT(first, IsOk());
  auto second_req = Answers(s, {3}, "page-2");
  second_req.set_etag(first->screening().etag());
  auto second = Submit(*core_, second_req, Soon());
  ASSERT_THAT(second, IsOk());

  auto late = Submit(*core_, Answers(s, {1}, "page-1"), Soon());
  ASSERT_THAT(late, IsOk());
  EXPECT_EQ(late->screening().etag(), second->screening().etag());
  EXPECT_EQ(late->next().SerializeAsString(),
            second->next().SerializeAsString());
  std::string id = IdOf(s);
  auto stored = store_->Get(id, "", Soon());
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->session->record.answers().at("phq9.1").option_value(), 3)
      << "the later answer stands";
  EXPECT_EQ(stored->session->version, 3);

  auto again = Submit(*core_, second_req, Soon());
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->SerializeAsString(), second->SerializeAsString());
  // A new request id with the old etag is a stale write, not a retry.
  EXPECT_THAT(
      Submit(*core_, Answers(s, {2}, "page-1b"), Soon()),
      StatusIs(absl::StatusCode::kAborted, HasSubstr("current etag \"3\"")));
}

TEST_F(IntakeTest, AnswersToItemsNotOfferedAreRejected) {
  v1::Screening s = Start();
  ASSERT_THAT(
      Submit(*core_, Answers(s, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "r1"), Soon()),
      IsOk());
  auto asq = Answers(s, {}, "r2");
  asq.set_etag("2");
  auto* a = asq.add_answers();
  a->set_item_id("asq.1");
  a->set_option_value(0);
  EXPECT_THAT(Submit(*core_, asq, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("answers[0].item_id"),
                                        HasSubstr("not offered"))));
  a->set_item_id("ket.trials");
  EXPECT_THAT(Submit(*core_, asq, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"ket.trials\" is not offered")));
}

TEST_F(IntakeTest, CrisisResourcesTheMomentItem9IsAnswered) {
  v1::Screening s = Start();
  auto low =
      Submit(*core_, Answers(s, {1, 1, 0, 0, 0, 0, 0, 0, 0, 0}, "r1"), Soon());
  ASSERT_THAT(low, IsOk());
  EXPECT_FALSE(low->next().has_crisis_resources());
  auto risk = Submit(
      *core_, Answers(low->screening(), {1, 1, 0, 0, 0, 0, 0, 0, 1, 0}, "r2"),
      Soon());
  ASSERT_THAT(risk, IsOk());
  ASSERT_TRUE(risk->next().has_crisis_resources())
      << "before completion, before the ASQ";
  EXPECT_THAT(risk->next().crisis_resources().contacts(0).how(),
              HasSubstr("988"));
  // Even with scoring down: the check is local.
  scoring_->down = true;
  v1::GetNextItemsRequest next;
  next.set_name(s.name());
  auto items = core_->GetNextItems(next, Soon());
  ASSERT_THAT(items, IsOk());
  EXPECT_TRUE(items->has_crisis_resources());
}

TEST_F(IntakeTest, StartContextPrefillsContextItems) {
  v1::StartScreeningRequest req;
  req.set_parent("users/ctx");
  req.set_consent_version("c1");
  req.mutable_context()->set_role("unpaid_caregiver");
  req.mutable_context()->set_works(true);
  req.mutable_context()->set_works_with_clients(false);
  req.mutable_context()->set_location_state("NJ");
  auto s = core_->StartScreening(req, Soon());
  ASSERT_THAT(s, IsOk());
  v1::GetNextItemsRequest next;
  next.set_name(s->name());
  auto items = core_->GetNextItems(next, Soon());
  ASSERT_THAT(items, IsOk());
  std::vector<std::string> ids;
  for (const auto& i : items->items()) ids.push_back(i.item().id());
  EXPECT_THAT(ids, ::testing::ElementsAre("ctx.age", "ctx.sex"));
  req.mutable_context()->set_role("astronaut");
  EXPECT_THAT(
      core_->StartScreening(req, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context.role")));
  req.mutable_context()->set_role("other");
  req.mutable_context()->set_works(false);
  req.mutable_context()->set_works_with_clients(true);
  EXPECT_THAT(core_->StartScreening(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("context.works_with_clients")));
  // Age and sex too: then the context asks nothing more.
  req.mutable_context()->clear_works_with_clients();
  req.mutable_context()->set_age(40);
  req.mutable_context()->set_sex("female");
  req.set_parent("users/ctx2");
  s = core_->StartScreening(req, Soon());
  ASSERT_THAT(s, IsOk());
  next.set_name(s->name());
  items = core_->GetNextItems(next, Soon());
  ASSERT_THAT(items, IsOk());
  ASSERT_GT(items->items_size(), 0);
  EXPECT_EQ(items->items(0).instrument_id(), "phq9");
  req.mutable_context()->set_age(7);
  EXPECT_THAT(core_->StartScreening(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("context.age: 7 is outside 12..120")));
  req.mutable_context()->set_age(40);
  req.mutable_context()->set_sex("robot");
  EXPECT_THAT(
      core_->StartScreening(req, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context.sex")));
}

// Waits up to 5 s for `done` (a background loop's timing is not asserted,
// only what it must do eventually).
template <typename F>
bool Eventually(F done) {
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (absl::Now() < end && !done()) absl::SleepFor(absl::Milliseconds(5));
  return done();
}

TEST_F(IntakeTest, CatalogLoaderRetriesUntilScoringAnswersThenEnds) {
  scoring_->catalog_down = true;
  CatalogHolder catalog;
  CatalogLoader loader(&catalog, scoring_.get(), absl::Milliseconds(5));
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_EQ(catalog.Get(), nullptr) << "scoring is down";
  EXPECT_FALSE(loader.loaded());
  scoring_->catalog_down = false;
  ASSERT_TRUE(Eventually([&] { return loader.loaded(); }));
  ASSERT_NE(catalog.Get(), nullptr);
  EXPECT_FALSE(catalog.Get()->default_ruleset.empty());
}

// The worker a completion left a pending hand-off to delivers it by itself
// once referral is back, and a wake-up runs a round at once.
TEST_F(IntakeTest, HandoffWorkerDeliversWhatCompletionLeftPending) {
  IntakeConfig config;
  config.handoff_retry = absl::Milliseconds(20);
  Reconfigure(config);
  referral_.down = true;
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {});
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  ASSERT_EQ(done->handoff(), v1::PENDING);
  // A tick no test waits for: rounds run only when woken.
  HandoffWorker worker(core_.get(), &catalog_, absl::Hours(1));
  ASSERT_TRUE(Eventually([&] { return worker.rounds() >= 1; }));
  referral_.down = false;
  absl::SleepFor(absl::Milliseconds(30));  // past the retry delay
  EXPECT_TRUE(referral_.Delivered().empty()) << "no round ran unwoken";
  worker.Wake();
  ASSERT_TRUE(Eventually([&] { return !referral_.Delivered().empty(); }));
  EXPECT_EQ(referral_.Delivered()[0].screening(), s.name());
}

TEST_F(IntakeTest, OutboxDeliversPendingHandOffExactlyOnce) {
  IntakeConfig config;
  config.handoff_retry = absl::Milliseconds(50);
  Reconfigure(config);
  referral_.down = true;
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {{"phq9.9", "1"}});
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->handoff(), v1::PENDING);
  EXPECT_TRUE(done->has_crisis_resources());
  absl::SleepFor(absl::Milliseconds(80));
  auto attempt = core_->DeliverPendingHandoffs(10, Soon());
  ASSERT_THAT(attempt, IsOk());
  EXPECT_EQ(*attempt, 0) << "referral still down";
  referral_.down = false;
  EXPECT_EQ(*core_->DeliverPendingHandoffs(10, Soon()), 0)
      << "not due again yet";
  absl::SleepFor(absl::Milliseconds(80));
  EXPECT_EQ(*core_->DeliverPendingHandoffs(10, Soon()), 1);
  absl::SleepFor(absl::Milliseconds(80));
  EXPECT_EQ(*core_->DeliverPendingHandoffs(10, Soon()), 0)
      << "delivered once, then gone";
  EXPECT_EQ(referral_.calls.load(), 3)
      << "inline try, worker retry while down, delivery";
  EXPECT_EQ(referral_.last.screening(), s.name());
  auto replay =
      core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(replay, IsOk());
  EXPECT_EQ(replay->handoff(), v1::DELIVERED);
  EXPECT_EQ(referral_.calls.load(), 3)
      << "a delivered hand-off is not sent again";
}

TEST_F(IntakeTest, OutboxAgeIsItsOldestEntrysWaitAndForgetsDeliveredOnes) {
  IntakeConfig config;
  config.handoff_retry = absl::Milliseconds(1);
  Reconfigure(config);
  referral_.down = true;
  auto sizes = store_->OutboxSizes(Soon());
  ASSERT_THAT(sizes, IsOk());
  EXPECT_EQ(sizes->handoffs, 0);
  EXPECT_EQ(sizes->oldest_handoff_ms, 0) << "empty: no age";
  const int64_t before_ms = absl::ToUnixMillis(absl::Now());
  v1::Screening first = Start("age1");
  std::string etag = AnswerAll(first, {});
  ASSERT_THAT(
      core_->CompleteScreening(Complete(first.name(), etag, "c1"), Soon()),
      IsOk());
  absl::SleepFor(absl::Milliseconds(20));
  v1::Screening second = Start("age2");
  etag = AnswerAll(second, {});
  ASSERT_THAT(
      core_->CompleteScreening(Complete(second.name(), etag, "c2"), Soon()),
      IsOk());
  const int64_t after_ms = absl::ToUnixMillis(absl::Now());
  sizes = store_->OutboxSizes(Soon());
  ASSERT_THAT(sizes, IsOk());
  EXPECT_EQ(sizes->handoffs, 2);
  EXPECT_GE(sizes->oldest_handoff_ms, before_ms) << "the first one's";
  EXPECT_LT(sizes->oldest_handoff_ms, after_ms - 15) << "not the second's";
  const int64_t first_ms = sizes->oldest_handoff_ms;

  // A retry moves an entry's due time, not its age.
  absl::SleepFor(absl::Milliseconds(5));
  auto attempt = core_->DeliverPendingHandoffs(10, Soon());
  ASSERT_THAT(attempt, IsOk());
  EXPECT_EQ(*attempt, 0) << "referral still down";
  EXPECT_GE(referral_.calls.load(), 4) << "both tried inline and again";
  sizes = store_->OutboxSizes(Soon());
  ASSERT_THAT(sizes, IsOk());
  EXPECT_EQ(sizes->oldest_handoff_ms, first_ms);

  // A since-entry left behind by an outbox entry removed some other way
  // never makes the outbox look old; it is dropped when seen.
  const std::string since = redis::GlobalKey("intake", "outbox-since");
  ASSERT_THAT(client_->Command({"ZADD", since, "1", "ghost/screening"}, Soon()),
              IsOk());
  sizes = store_->OutboxSizes(Soon());
  ASSERT_THAT(sizes, IsOk());
  EXPECT_EQ(sizes->oldest_handoff_ms, first_ms);
  EXPECT_TRUE(
      client_->Command({"ZSCORE", since, "ghost/screening"}, Soon())->is_nil());

  // Delivered: gone from both, so the age is the next one's, then none.
  referral_.down = false;
  absl::SleepFor(absl::Milliseconds(5));
  auto delivered = core_->DeliverPendingHandoffs(10, Soon());
  ASSERT_THAT(delivered, IsOk());
  EXPECT_EQ(*delivered, 2);
  sizes = store_->OutboxSizes(Soon());
  ASSERT_THAT(sizes, IsOk());
  EXPECT_EQ(sizes->handoffs, 0);
  EXPECT_EQ(sizes->oldest_handoff_ms, 0);
  EXPECT_EQ(client_->Command({"ZCARD", since}, Soon())->integer, 0);
}

// The FHIR export reads the re-scoring outcomes stored beside a result:
// each ruleset's Observations beside the original's, a changed outcome with
// its own route, and only what the caller may see.
TEST_F(IntakeTest, FhirExportCarriesEveryRescoringOutcome) {
  v1::Screening s = Start("fhir1");
  std::string etag = AnswerAll(
      s, {{"phq9.1", "3"}, {"phq9.2", "3"}, {"phq9.3", "3"}, {"phq9.4", "1"}});
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  const std::string id = IdOf(s);
  auto read = store_->Get(id, "", Soon());
  ASSERT_THAT(read, IsOk());
  ASSERT_TRUE(read->session->result.has_value());
  const auto& original = read->session->result->scoring();
  ASSERT_EQ(original.routing().primary_route(), common::v1::THERAPY);

  // An unchanged outcome under "v8", a changed one under "v9".
  storage::v1::RescoreOutcome same;
  same.set_time_ms(1);
  storage::v1::RescoreOutcome changed;
  changed.set_time_ms(2);
  changed.set_changed(true);
  *changed.mutable_changed_result() = original;
  changed.mutable_changed_result()->set_ruleset_version("v9");
  changed.mutable_changed_result()->mutable_routing()->set_primary_route(
      common::v1::SELF_HELP);
  ASSERT_THAT(store_->PutOutcomes({{id, &same}}, "v8", Soon()), IsOk());
  ASSERT_THAT(store_->PutOutcomes({{id, &changed}}, "v9", Soon()), IsOk());
  auto outcomes = store_->ReadOutcomes({id, "no-such-screening"}, Soon());
  ASSERT_THAT(outcomes, IsOk());
  ASSERT_EQ(outcomes->size(), 2u);
  EXPECT_EQ((*outcomes)[0].size(), 2u);
  EXPECT_TRUE((*outcomes)[1].empty());

  FhirExporter exporter(store_.get(), &catalog_, crypto::PageTokens(&keys_),
                        fhir::ExportOptions());
  auth::Identity batch{"export", auth::Role::kBatch, {}, "k"};
  v1::ExportScreeningRequest req;
  req.set_name(s.name());
  auto bundle = exporter.ExportScreening(req, batch, Soon());
  ASSERT_THAT(bundle, IsOk());
  const std::string& json = bundle->json();
  const std::string route_system =
      "\"system\":\"https://aqueduct.example/fhir/CodeSystem/route\"";
  for (const std::string& version :
       {original.ruleset_version(), std::string("v8"), std::string("v9")}) {
    EXPECT_THAT(json, HasSubstr("\"id\":\"" + id + "-" + version + "-route\""))
        << version;
  }
  // The original's and v8's route THERAPY, v9's SELF_HELP; the responses
  // once.
  size_t therapy = 0, self_help = 0, pos = 0;
  while ((pos = json.find("\"code\":\"THERAPY\"", pos)) != std::string::npos) {
    ++therapy;
    ++pos;
  }
  pos = 0;
  while ((pos = json.find("\"code\":\"SELF_HELP\"", pos)) !=
         std::string::npos) {
    ++self_help;
    ++pos;
  }
  EXPECT_EQ(therapy, 2u);
  EXPECT_EQ(self_help, 1u);
  EXPECT_EQ(json.find("\"id\":\"" + id + "-phq9\""),
            json.rfind("\"id\":\"" + id + "-phq9\""))
      << "one QuestionnaireResponse per instrument, whatever the re-scores";

  // Another person: not found, and nothing recorded for it.
  auth::Identity other{"someone", auth::Role::kPatient, {}, "k"};
  EXPECT_THAT(exporter.ExportScreening(req, other, Soon()),
              StatusIs(absl::StatusCode::kNotFound));
  auth::Identity owner{"fhir1", auth::Role::kPatient, {}, "k"};
  EXPECT_THAT(exporter.ExportScreening(req, owner, Soon()), IsOk());
  auto audit = store_->RecentExports(10, Soon());
  ASSERT_THAT(audit, IsOk());
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].actor_role(), "patient") << "newest first";
  EXPECT_EQ((*audit)[1].actor(), "export");
  EXPECT_THAT((*audit)[1].screening_ids(), ::testing::ElementsAre(id));
}

TEST_F(IntakeTest, ResultsHistoryNewestFirstWithTrends) {
  const std::vector<std::vector<std::pair<std::string, std::string>>>
      screenings = {
          {{"phq9.1", "3"},
           {"phq9.2", "3"},
           {"phq9.3", "3"},
           {"phq9.4", "3"},
           {"phq9.5", "3"}},  // 15
          {{"phq9.1", "2"},
           {"phq9.2", "2"},
           {"phq9.3", "2"},
           {"phq9.4", "2"}},                                    // 8
          {{"phq9.1", "1"}, {"phq9.2", "1"}, {"phq9.3", "1"}},  // 3
      };
  std::vector<std::string> names;
  for (const auto& answers : screenings) {
    v1::Screening s = Start("hist");
    tools::Overrides o(answers.begin(), answers.end());
    std::string etag = AnswerAll(s, o);
    ASSERT_THAT(core_->CompleteScreening(Complete(s.name(), etag, "c"), Soon()),
                IsOk());
    names.push_back(s.name());
    absl::SleepFor(absl::Milliseconds(3));
  }
  Start("hist");  // in progress: not a result
  v1::ListMyResultsRequest list;
  list.set_parent("users/hist");
  auto all = core_->ListMyResults(list, Soon());
  ASSERT_THAT(all, IsOk());
  ASSERT_EQ(all->results_size(), 3);
  EXPECT_EQ(all->results(0).name(), names[2]) << "newest first";
  EXPECT_EQ(all->results(2).name(), names[0]);
  const auto& t0 = all->results(0).trend();  // 3 after 8
  EXPECT_EQ(t0.previous(), names[1]);
  EXPECT_EQ(t0.phq9_change(), -5);
  EXPECT_TRUE(t0.phq9_meaningful_change());
  EXPECT_TRUE(t0.phq9_response());
  EXPECT_TRUE(t0.phq9_remission());
  const auto& t1 = all->results(1).trend();  // 8 after 15
  EXPECT_EQ(t1.phq9_change(), -7);
  EXPECT_TRUE(t1.phq9_meaningful_change());
  EXPECT_FALSE(t1.phq9_response()) << "16 > 15: not a 50% drop";
  EXPECT_FALSE(t1.phq9_remission());
  EXPECT_FALSE(all->results(2).has_trend()) << "nothing before the first";
  EXPECT_TRUE(all->next_page_token().empty());
  // Pages of one keep the trend of the last item on each page.
  list.set_page_size(1);
  std::vector<std::string> paged;
  for (int i = 0; i < 5; ++i) {
    auto page = core_->ListMyResults(list, Soon());
    ASSERT_THAT(page, IsOk());
    for (const auto& r : page->results()) {
      paged.push_back(r.name());
      if (r.name() != names[0]) {
        EXPECT_TRUE(r.has_trend()) << r.name();
      }
    }
    if (page->next_page_token().empty()) break;
    list.set_page_token(page->next_page_token());
  }
  EXPECT_THAT(paged, ::testing::ElementsAre(names[2], names[1], names[0]));
  // One result by name, with its trend; another user's is not found.
  v1::GetMyResultRequest get;
  get.set_name(names[1]);
  auto one = core_->GetMyResult(get, Soon());
  ASSERT_THAT(one, IsOk());
  EXPECT_EQ(one->trend().phq9_change(), -7);
  get.set_name("users/mallory" +
               names[1].substr(names[1].find("/screenings/")));
  EXPECT_THAT(core_->GetMyResult(get, Soon()),
              StatusIs(absl::StatusCode::kNotFound));
  v1::ListMyResultsRequest bad;
  bad.set_parent("users/hist");
  bad.set_page_token("zz!");
  EXPECT_THAT(
      core_->ListMyResults(bad, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

// Each adaptive branch of the flow, decided by the catalog's data.
struct Branch {
  const char* name;
  std::vector<std::pair<std::string, std::string>> answers;
  const char* instrument;
  bool asked;
};
class FlowBranchTest : public IntakeTest,
                       public ::testing::WithParamInterface<Branch> {};

TEST_P(FlowBranchTest, InstrumentAskedOnlyWhenItsConditionHolds) {
  v1::StartScreeningRequest req;
  req.set_parent("users/branch");
  req.set_consent_version("c1");
  auto s = core_->StartScreening(req, Soon());
  ASSERT_THAT(s, IsOk());
  tools::Overrides o(GetParam().answers.begin(), GetParam().answers.end());
  std::string etag = AnswerAll(*s, o);
  auto done = core_->CompleteScreening(Complete(s->name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  bool asked = false;
  // The full result, as referral got it (the person's reply is a projection).
  for (const auto& score : referral_.last.result().scores()) {
    if (score.instrument_id() == GetParam().instrument) {
      asked = score.completeness() != scoring::v1::NOT_ADMINISTERED;
    }
  }
  EXPECT_EQ(asked, GetParam().asked);
}

const std::vector<std::pair<std::string, std::string>> kTen = {{"phq9.1", "2"},
                                                               {"phq9.2", "2"},
                                                               {"phq9.3", "2"},
                                                               {"phq9.4", "2"},
                                                               {"phq9.5", "2"}};
std::vector<std::pair<std::string, std::string>> With(
    std::vector<std::pair<std::string, std::string>> base,
    std::vector<std::pair<std::string, std::string>> more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

INSTANTIATE_TEST_SUITE_P(
    Issue4, FlowBranchTest,
    ::testing::Values(
        Branch{"item9_zero_no_asq", {{"phq9.9", "0"}}, "asq", false},
        Branch{"item9_above_zero_asq", {{"phq9.9", "1"}}, "asq", true},
        Branch{"phq9_9_no_ketamine",
               {{"ctx.state", "FL"},
                {"phq9.1", "3"},
                {"phq9.2", "3"},
                {"phq9.3", "3"}},
               "ket",
               false},
        Branch{"phq9_10_ketamine", With(kTen, {{"ctx.state", "FL"}}), "ket",
               true},
        Branch{"state_not_covered", With(kTen, {{"ctx.state", "NY"}}), "ket",
               false},
        Branch{"state_covered_nj", With(kTen, {{"ctx.state", "NJ"}}), "ket",
               true},
        Branch{"age_17", With(kTen, {{"ctx.state", "FL"}, {"ctx.age", "17"}}),
               "ket", false},
        Branch{"age_18", With(kTen, {{"ctx.state", "FL"}, {"ctx.age", "18"}}),
               "ket", true},
        Branch{"not_working_no_work_cbi",
               {{"ctx.works", "no"}},
               "cbi_work",
               false},
        Branch{"working_work_cbi", {{"ctx.works", "yes"}}, "cbi_work", true},
        Branch{"no_clients_no_client_cbi",
               {{"ctx.works", "yes"}, {"ctx.works_with_clients", "no"}},
               "cbi_client",
               false},
        Branch{"clients_client_cbi",
               {{"ctx.works", "yes"}, {"ctx.works_with_clients", "yes"}},
               "cbi_client",
               true}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace aqueduct::intake

namespace aqueduct::intake {
namespace {

// ---- Crisis first and early risk cases (reference section 10) ------------

class EarlyRiskTest : public IntakeTest {
 protected:
  v1::SubmitAnswersResponse Page(const v1::Screening& s,
                                 const tools::Overrides& overrides,
                                 const std::string& rid) {
    auto done = AnswerNextPage(s, overrides, rid);
    EXPECT_TRUE(done.has_value());
    return done.value_or(v1::SubmitAnswersResponse());
  }
  // Answers the context pages; the next page is then the PHQ-9.
  void ToPhq9(const v1::Screening& s) {
    for (int page = 0; page < 5; ++page) {
      v1::GetNextItemsRequest next_req;
      next_req.set_name(s.name());
      auto next = core_->GetNextItems(next_req, Soon());
      ASSERT_THAT(next, IsOk());
      if (!next->items().empty() && next->items(0).instrument_id() == "phq9")
        return;
      EXPECT_FALSE(next->has_crisis_resources());
      Page(s, {}, "ctx-" + std::to_string(page));
    }
    ADD_FAILURE() << "no PHQ-9 page";
  }
  static std::vector<std::string> Ids(const v1::NextItems& next) {
    std::vector<std::string> ids;
    for (const auto& i : next.items()) ids.push_back(i.item().id());
    return ids;
  }
  // The session hash's remaining time to live, ms (-1: none).
  int64_t Ttl(const v1::Screening& s) {
    auto r = client_->Command(
        {"PTTL", redis::Key("intake", IdOf(s), "session")}, Soon());
    EXPECT_THAT(r, IsOk());
    return r.ok() ? r->integer : -2;
  }
};

TEST_F(EarlyRiskTest, TheAsqIsTheVeryNextPageAfterARiskAnswer) {
  for (const std::string item9 : {"1", "declined"}) {
    SCOPED_TRACE("item 9 " + item9);
    v1::Screening s = Start(item9 == "1" ? "bob" : "carol");
    ToPhq9(s);
    auto phq9 = Page(s, {{"phq9.9", item9}}, "p2");
    EXPECT_THAT(Ids(phq9.next()),
                ::testing::ElementsAre("asq.1", "asq.2", "asq.3", "asq.4"))
        << "before GAD-7, CBI, AUDIT-C";
    ASSERT_TRUE(phq9.next().has_crisis_resources()) << "988 at once";
    EXPECT_THAT(phq9.next().crisis_resources().contacts(0).how(),
                HasSubstr("988"));
    auto asq = Page(s, {{"phq9.9", item9}}, "p3");
    EXPECT_THAT(Ids(asq.next()), ::testing::Contains("gad7.1"))
        << "then the rest, in order";
    EXPECT_TRUE(asq.next().has_crisis_resources())
        << "crisis resources stay on every reply";
  }
}

TEST_F(EarlyRiskTest, AnAcutePositiveAsksNothingMoreAndOffersToFinish) {
  // PHQ-9 at 12 in FL: without the acute answer the ketamine pre-screen
  // would follow.
  tools::Overrides o = {{"phq9.1", "2"},  {"phq9.2", "2"}, {"phq9.3", "2"},
                        {"phq9.4", "2"},  {"phq9.5", "2"}, {"phq9.9", "2"},
                        {"asq.1", "yes"}, {"asq.5", "yes"}};
  v1::Screening s = Start();
  ToPhq9(s);
  Page(s, o, "p2");
  auto q14 = Page(s, o, "p3");
  EXPECT_THAT(Ids(q14.next()), ::testing::ElementsAre("asq.5"));
  auto q5 = Page(s, o, "p4");
  EXPECT_TRUE(q5.next().items().empty())
      << "no further module, no ketamine pre-screen";
  EXPECT_TRUE(q5.next().ready_to_complete());
  EXPECT_TRUE(q5.next().has_crisis_resources());
  auto done = core_->CompleteScreening(
      Complete(s.name(), q5.screening().etag(), "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->route().route(), common::v1::CRISIS_ACUTE);
  EXPECT_TRUE(done->has_crisis_resources());
  for (const auto& score : done->result().scoring().scores()) {
    EXPECT_NE(score.instrument_id(), "ket");
    EXPECT_NE(score.instrument_id(), "gad7")
        << "never asked, so never shown as a score";
  }
}

TEST_F(EarlyRiskTest,
       ARiskAnswerQueuesAnEarlyCaseDeliveredOnceWhenReferralIsBack) {
  IntakeConfig config;
  config.handoff_retry = absl::Milliseconds(50);
  Reconfigure(config);
  std::atomic<int> wakes{0};
  core_->set_on_early_risk([&] { ++wakes; });
  referral_.down = true;
  v1::Screening s = Start();
  ToPhq9(s);
  EXPECT_EQ(wakes.load(), 0);
  auto phq9 = Page(s, {{"phq9.9", "1"}}, "p2");
  EXPECT_EQ(wakes.load(), 1) << "the worker is woken when the page is stored";
  EXPECT_EQ(Ttl(s), -1) << "a session owing an early case does not expire";
  // Referral down: nothing delivered, the entry waits for its retry.
  EXPECT_EQ(*core_->DeliverPendingHandoffs(10, Soon()), 0);
  EXPECT_EQ(referral_.calls.load(), 1);
  referral_.down = false;
  EXPECT_EQ(*core_->DeliverPendingHandoffs(10, Soon()), 0)
      << "not due again yet";
  absl::SleepFor(absl::Milliseconds(80));
  EXPECT_EQ(*core_->DeliverPendingHandoffs(10, Soon()), 1);
  absl::SleepFor(absl::Milliseconds(80));
  EXPECT_EQ(*core_->DeliverPendingHandoffs(10, Soon()), 0)
      << "delivered once, then gone";
  auto delivered = referral_.Delivered();
  ASSERT_EQ(delivered.size(), 1u);
  const auto& early = delivered[0];
  EXPECT_TRUE(early.unfinished());
  EXPECT_EQ(early.screening(), s.name());
  EXPECT_EQ(early.location_state(), "FL");
  EXPECT_EQ(early.result().routing().primary_route(),
            common::v1::CRISIS_URGENT);
  ASSERT_EQ(early.risk_answers_size(), 1);
  EXPECT_EQ(early.risk_answers(0).item_id(), "phq9.9");
  EXPECT_EQ(early.risk_answers(0).answer(), "Several days");
  EXPECT_THAT(early.risk_answers(0).question(), HasSubstr("better off dead"));
  EXPECT_GT(Ttl(s), 0) << "delivered: it expires when idle again";

  // A later acute answer raises it: a second delivery at CRISIS_ACUTE.
  Page(s, {{"phq9.9", "1"}, {"asq.1", "yes"}}, "p3");
  EXPECT_EQ(wakes.load(), 1) << "a yes to q1 is urgent, as the case already is";
  Page(s, {{"phq9.9", "1"}, {"asq.1", "yes"}, {"asq.5", "yes"}}, "p4");
  EXPECT_EQ(wakes.load(), 2) << "q5 yes raises it to acute";
  EXPECT_GE(*core_->DeliverPendingHandoffs(10, Soon()), 1);
  delivered = referral_.Delivered();
  ASSERT_GE(delivered.size(), 2u);
  EXPECT_EQ(delivered.back().result().routing().primary_route(),
            common::v1::CRISIS_ACUTE);
  std::vector<std::string> risk_ids;
  for (const auto& a : delivered.back().risk_answers())
    risk_ids.push_back(a.item_id());
  EXPECT_THAT(risk_ids, ::testing::IsSupersetOf({"phq9.9", "asq.1", "asq.5"}));

  // Abandoning with deletion keeps the answers behind the case, and only
  // those.
  v1::AbandonScreeningRequest abandon;
  abandon.set_name(s.name());
  abandon.set_delete_answers(true);
  ASSERT_THAT(core_->AbandonScreening(abandon, Soon()), IsOk());
  auto after = store_->Get(IdOf(s), "", Soon());
  ASSERT_THAT(after, IsOk());
  std::vector<std::string> kept;
  for (const auto& [id, a] : after->session->record.answers())
    kept.push_back(id);
  EXPECT_THAT(kept, ::testing::UnorderedElementsAre("phq9.9", "asq.1", "asq.2",
                                                    "asq.3", "asq.4", "asq.5"));
  EXPECT_EQ(after->session->record.early_risk_route(),
            common::v1::CRISIS_ACUTE);
}

TEST_F(EarlyRiskTest, CompletionSendsItsResultToTheEarlyCase) {
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {{"phq9.9", "2"}});
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->handoff(), v1::DELIVERED);
  EXPECT_TRUE(referral_.last.early_risk_raised()) << "one case per screening";
  EXPECT_FALSE(referral_.last.unfinished());
  EXPECT_EQ(done->case_name(), "referrals/" + IdOf(s) + "-risk");
  ASSERT_GE(referral_.last.risk_answers_size(), 1);
  EXPECT_EQ(referral_.last.risk_answers(0).answer(), "More than half the days");
  // The early case waiting in the outbox is owed no more: completion
  // carried it.
  const int before = static_cast<int>(referral_.Delivered().size());
  EXPECT_EQ(*core_->DeliverPendingHandoffs(10, Soon()), 0);
  EXPECT_EQ(static_cast<int>(referral_.Delivered().size()), before);
  auto replay =
      core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(replay, IsOk());
  EXPECT_EQ(replay->case_name(), done->case_name());
}

TEST_F(EarlyRiskTest, NoRiskAnswerNoEarlyCase) {
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {});
  EXPECT_EQ(*core_->DeliverPendingHandoffs(10, Soon()), 0);
  EXPECT_TRUE(referral_.Delivered().empty());
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  EXPECT_FALSE(referral_.last.early_risk_raised());
  EXPECT_EQ(done->case_name(), "referrals/" + IdOf(s) + "-v");
}

}  // namespace
}  // namespace aqueduct::intake
