// IntakeCore against a real redis-server. Scoring is the real engine behind
// the ScoringPeer interface; referral is a controllable stand-in so the
// hand-off failure path can be exercised.

#include <atomic>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/intake/intake_core.h"
#include "services/intake/redis_session_store.h"
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
  explicit EngineScoringPeer(std::shared_ptr<const scoring::ScoringEngine> engine)
      : engine_(std::move(engine)) {}
  absl::StatusOr<scoring::v1::ScoringResult> Score(
      const scoring::v1::ScoreAnswersRequest& request, absl::Time) override {
    ++calls;
    if (down) return absl::UnavailableError("scoring at test: down");
    return engine_->Score(request);
  }
  absl::StatusOr<scoring::v1::Catalog> DescribeCatalog(absl::Time) override {
    return engine_->catalog().catalog();
  }
  absl::StatusOr<scoring::v1::ListRulesetsResponse> ListRulesets(absl::Time) override {
    return engine_->Rulesets();
  }
  std::string Describe() const override { return "scoring at test"; }
  std::atomic<bool> down{false};
  std::atomic<int> calls{0};

 private:
  std::shared_ptr<const scoring::ScoringEngine> engine_;
};

class RecordingReferralPeer : public ReferralPeer {
 public:
  absl::StatusOr<referral::v1::Referral> CreateReferral(
      const referral::v1::CreateReferralRequest& request, absl::Time) override {
    ++calls;
    if (down) return absl::UnavailableError("referral at test: down");
    last = request;
    referral::v1::Referral r;
    r.set_screening(request.screening());
    return r;
  }
  std::string Describe() const override { return "referral at test"; }
  std::atomic<bool> down{false};
  std::atomic<int> calls{0};
  referral::v1::CreateReferralRequest last;
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
    store_ = std::make_unique<RedisSessionStore>(client_.get());
    core_ = std::make_unique<IntakeCore>(store_.get(), scoring_.get(), &referral_,
                                         &catalog_, &RealClock(), IntakeConfig());
  }

  v1::Screening Start(const std::string& user = "alice", const std::string& rid = "") {
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
                                          const std::string& rid, int first = 1) {
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
  std::string AnswerAll(const v1::Screening& s, tools::Overrides overrides) {
    tools::Overrides all = aqueduct::testing::AdultContext("FL");
    for (auto& [k, v] : overrides) all[k] = v;
    std::string etag = s.etag();
    for (int page = 0; page < 30; ++page) {
      v1::GetNextItemsRequest next_req;
      next_req.set_name(s.name());
      auto next = core_->GetNextItems(next_req, Soon());
      EXPECT_THAT(next, IsOk());
      if (!next.ok() || next->items().empty()) break;
      v1::SubmitAnswersRequest submit;
      submit.set_name(s.name());
      submit.set_etag(next->etag());
      submit.set_request_id("page-" + std::to_string(page));
      for (const auto& ask : next->items()) {
        auto a = tools::ScriptedAnswer(ask.item(), all);
        EXPECT_THAT(a, IsOk());
        *submit.add_answers() = *a;
      }
      auto done = core_->SubmitAnswers(submit, Soon());
      EXPECT_THAT(done, IsOk());
      if (!done.ok()) break;
      etag = done->screening().etag();
    }
    return etag;
  }
  v1::CompleteScreeningRequest Complete(const std::string& name, const std::string& etag,
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
  std::unique_ptr<RedisSessionStore> store_;
  std::unique_ptr<IntakeCore> core_;
};

TEST_F(IntakeTest, StartCreatesAnInProgressScreeningWithFirstPage) {
  v1::Screening s = Start();
  EXPECT_THAT(s.name(), HasSubstr("users/alice/screenings/"));
  EXPECT_EQ(s.state(), v1::IN_PROGRESS);
  EXPECT_EQ(s.etag(), "1");
  EXPECT_EQ(s.progress().answered(), 1) << "the state came with the start context";
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
  EXPECT_THAT(ids, ::testing::ElementsAre("ctx.role", "ctx.works", "ctx.age", "ctx.sex"));
  EXPECT_FALSE(items->ready_to_complete());
  // The session lives in Redis with a TTL (expires when idle).
  auto ttl = client_->Command({"PTTL", redis::Key("intake", s.name().substr(s.name().rfind('/') + 1), "session")}, Soon());
  ASSERT_THAT(ttl, IsOk());
  EXPECT_GT(ttl->integer, 0);
}

TEST_F(IntakeTest, StartIsIdempotentByRequestId) {
  v1::Screening a = Start("bob", "start-1");
  v1::Screening b = Start("bob", "start-1");
  EXPECT_EQ(a.name(), b.name());
  v1::Screening c = Start("bob", "start-2");
  EXPECT_NE(a.name(), c.name());
}

TEST_F(IntakeTest, StartValidatesFields) {
  v1::StartScreeningRequest req;
  req.set_parent("users/alice");
  EXPECT_THAT(core_->StartScreening(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("consent_version")));
  req.set_consent_version("c1");
  req.set_parent("alice");
  EXPECT_THAT(core_->StartScreening(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parent")));
  req.set_parent("users/alice");
  req.mutable_context()->set_location_state("Florida");
  EXPECT_THAT(core_->StartScreening(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context.location_state")));
}

TEST_F(IntakeTest, UnknownAndOtherUsersScreeningsAreNotFound) {
  v1::Screening s = Start("alice");
  v1::GetScreeningRequest get;
  get.set_name("users/alice/screenings/doesnotexist");
  EXPECT_THAT(core_->GetScreening(get, Soon()), StatusIs(absl::StatusCode::kNotFound));
  // Same id under another user: exactly the same answer as a missing one.
  std::string id = s.name().substr(s.name().rfind('/') + 1);
  get.set_name("users/mallory/screenings/" + id);
  auto other = core_->GetScreening(get, Soon());
  EXPECT_THAT(other, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(other.status().message(), "name: no such screening");
}

TEST_F(IntakeTest, SubmitIsIdempotentByRequestId) {
  v1::Screening s = Start();
  auto first = core_->SubmitAnswers(Answers(s, {1, 1, 1}, "r1"), Soon());
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->screening().etag(), "2");
  EXPECT_EQ(first->next().progress().answered(), 4);  // 3 + the prefilled state
  // Same request again (a mobile retry): same reply, no second effect.
  auto again = core_->SubmitAnswers(Answers(s, {1, 1, 1}, "r1"), Soon());
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->SerializeAsString(), first->SerializeAsString());
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  EXPECT_EQ(core_->GetScreening(get, Soon())->etag(), "2");
}

TEST_F(IntakeTest, StaleEtagIsAbortedWithTheCurrentOne) {
  v1::Screening s = Start();
  ASSERT_THAT(core_->SubmitAnswers(Answers(s, {1}, "device-a"), Soon()), IsOk());
  // A second device still holding etag 1 must not overwrite silently.
  auto stale = core_->SubmitAnswers(Answers(s, {3}, "device-b"), Soon());
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kAborted, HasSubstr("current etag \"2\"")));
}

TEST_F(IntakeTest, BadAnswerNamesTheFieldAndStoresNothingOfThePage) {
  v1::Screening s = Start();
  auto req = Answers(s, {1, 2, 3}, "r1");
  req.mutable_answers(1)->set_option_value(9);
  EXPECT_THAT(core_->SubmitAnswers(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("answers[1].option_value")));
  req = Answers(s, {1}, "r2");
  req.mutable_answers(0)->set_item_id("mbi.1");
  EXPECT_THAT(core_->SubmitAnswers(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("answers[0].item_id")));
  // An item that does not apply given the same page's answers.
  req = Answers(s, {}, "r2b");
  auto* works = req.add_answers();
  works->set_item_id("ctx.works");
  works->set_option_value(0);  // no
  auto* cbi = req.add_answers();
  cbi->set_item_id("cbi_work.1");
  cbi->set_option_value(50);
  EXPECT_THAT(core_->SubmitAnswers(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("answers[1].item_id"), HasSubstr("does not apply"))));
  req = Answers(s, {}, "r3");
  EXPECT_THAT(core_->SubmitAnswers(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("answers")));
  req = Answers(s, {1}, "");
  EXPECT_THAT(core_->SubmitAnswers(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
  req = Answers(s, {1}, "r4");
  req.set_etag("abc");
  EXPECT_THAT(core_->SubmitAnswers(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("etag")));
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  auto now = core_->GetScreening(get, Soon());
  EXPECT_EQ(now->etag(), "1");
  EXPECT_EQ(now->progress().answered(), 1) << "only the prefilled state";
}

TEST_F(IntakeTest, AnswersCanChangeUntilCompletion) {
  v1::Screening s = Start();
  auto a = core_->SubmitAnswers(Answers(s, {3}, "r1"), Soon());
  ASSERT_THAT(a, IsOk());
  auto b = core_->SubmitAnswers(Answers(a->screening(), {0}, "r2"), Soon());
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
  auto changed = core_->SubmitAnswers(change, Soon());
  ASSERT_THAT(changed, IsOk());
  EXPECT_LT(changed->next().progress().answered(), before->progress().answered());
  EXPECT_TRUE(changed->next().ready_to_complete());
  auto done = core_->CompleteScreening(Complete(s.name(), changed->screening().etag(), "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  for (const auto& score : done->result().scoring().scores()) {
    if (score.instrument_id() == "cbi_work") EXPECT_EQ(score.completeness(), scoring::v1::NOT_ADMINISTERED);
  }
}

TEST_F(IntakeTest, CompleteNeedsEveryRequiredItem) {
  v1::Screening s = Start();
  auto a = core_->SubmitAnswers(Answers(s, {0, 0, 0, 0, 0, 0, 0, 0}, "r1"), Soon());
  ASSERT_THAT(a, IsOk());
  auto incomplete = core_->CompleteScreening(Complete(s.name(), a->screening().etag(), "c1"), Soon());
  EXPECT_THAT(incomplete, StatusIs(absl::StatusCode::kFailedPrecondition,
                                   ::testing::AllOf(HasSubstr("ctx.role"), HasSubstr("phq9.9, phq9.10"))));
  EXPECT_EQ(scoring_->calls.load(), 0);
}

TEST_F(IntakeTest, CompleteScoresStoresAndHandsOff) {
  v1::Screening s = Start();
  std::string etag = AnswerAll(s, {{"phq9.1", "2"}, {"phq9.2", "2"}, {"phq9.3", "2"}, {"phq9.4", "2"},
                                   {"phq9.5", "1"}, {"phq9.6", "1"}, {"phq9.7", "1"}, {"phq9.10", "1"}});
  auto done = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->screening().state(), v1::COMPLETED);
  ASSERT_EQ(done->result().scoring().scores(1).instrument_id(), "phq9");
  EXPECT_EQ(done->result().scoring().scores(1).total(), 11);
  EXPECT_EQ(done->route().route(), common::v1::THERAPY);
  EXPECT_TRUE(done->route().pending_review());
  EXPECT_THAT(done->route().message(), HasSubstr("not a diagnosis"));
  EXPECT_FALSE(done->has_crisis_resources());
  EXPECT_EQ(done->handoff(), v1::DELIVERED);
  EXPECT_EQ(referral_.calls.load(), 1);
  EXPECT_EQ(referral_.last.screening(), s.name());
  EXPECT_EQ(referral_.last.location_state(), "FL") << "the state the start context gave";
  // The completed result does not expire.
  std::string id = s.name().substr(s.name().rfind('/') + 1);
  auto ttl = client_->Command({"PTTL", redis::Key("intake", id, "session")}, Soon());
  EXPECT_EQ(ttl->integer, -1);

  // Same request id: the stored result again, without scoring again.
  auto replay = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(replay, IsOk());
  EXPECT_EQ(replay->result().SerializeAsString(), done->result().SerializeAsString());
  EXPECT_EQ(scoring_->calls.load(), 1);
  // Another request id: already completed.
  EXPECT_THAT(core_->CompleteScreening(Complete(s.name(), "9", "c2"), Soon()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already completed")));
  // And answers can no longer change.
  EXPECT_THAT(core_->SubmitAnswers(Answers(done->screening(), {0}, "late"), Soon()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
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

  // Referral back: retrying the completion delivers the hand-off once.
  referral_.down = false;
  auto retry = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  ASSERT_THAT(retry, IsOk());
  EXPECT_EQ(retry->handoff(), v1::DELIVERED);
  EXPECT_TRUE(retry->has_crisis_resources());
  auto third = core_->CompleteScreening(Complete(s.name(), etag, "c1"), Soon());
  EXPECT_EQ(third->handoff(), v1::DELIVERED);
  EXPECT_EQ(referral_.calls.load(), 2) << "one failed try, one delivery, no more";
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

TEST_F(IntakeTest, RedisDownIsUnavailableAndRecovers) {
  v1::Screening s = Start();
  ASSERT_THAT(redis().Stop(), IsOk());
  v1::GetScreeningRequest get;
  get.set_name(s.name());
  EXPECT_THAT(core_->GetScreening(get, Soon()), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(core_->SubmitAnswers(Answers(s, {1}, "r1"), Soon()),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(redis().Restart(), IsOk());
  auto back = core_->GetScreening(get, Soon());
  ASSERT_THAT(back, IsOk()) << "AOF kept the session; the client reconnected";
  EXPECT_THAT(core_->SubmitAnswers(Answers(*back, {1}, "r1"), Soon()), IsOk());
}

TEST_F(IntakeTest, NotReadyWithoutCatalog) {
  CatalogHolder empty;
  IntakeCore core(store_.get(), scoring_.get(), &referral_, &empty, &RealClock(), IntakeConfig());
  v1::StartScreeningRequest req;
  req.set_parent("users/alice");
  req.set_consent_version("c1");
  EXPECT_THAT(core.StartScreening(req, Soon()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("catalog not loaded")));
}

}  // namespace
}  // namespace aqueduct::intake
