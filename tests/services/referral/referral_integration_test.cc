// ReferralCore over the Redis store against a real redis-server.

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/referral/redis_referral_store.h"
#include "services/referral/referral_core.h"
#include "tests/testing/process.h"
#include "tests/testing/redis_fixture.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::referral {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;

class ManualClock : public Clock {
 public:
  absl::Time Now() const override { return now; }
  absl::Time now = absl::FromUnixSeconds(1'790'000'000);
};

class ReferralTest : public aqueduct::testing::RedisTest {
 protected:
  void SetUp() override {
    RedisTest::SetUp();
    client_ = std::make_unique<redis::Client>(redis().ClientOptions());
    store_ = std::make_unique<RedisReferralStore>(client_.get());
    core_ = std::make_unique<ReferralCore>(store_.get(), &clock_);
  }

  static v1::CreateReferralRequest Request(const std::string& screening_id,
                                           common::v1::Route route,
                                           const std::string& state = "FL") {
    v1::CreateReferralRequest req;
    req.set_screening("users/u1/screenings/" + screening_id);
    req.set_location_state(state);
    req.mutable_result()->set_ruleset_version("v0-skeleton");
    req.mutable_result()->mutable_routing()->set_primary_route(route);
    return req;
  }
  absl::StatusOr<v1::Referral> Create(const std::string& id, common::v1::Route route,
                                      const std::string& state = "FL") {
    clock_.now += absl::Seconds(1);
    return core_->CreateReferral(Request(id, route, state), Actor{"intake", "service"}, Soon());
  }
  std::vector<std::string> Screenings(const v1::ListQueueResponse& page) {
    std::vector<std::string> out;
    for (const auto& c : page.cases()) out.push_back(c.screening().substr(c.screening().rfind('/') + 1));
    return out;
  }

  ManualClock clock_;
  std::unique_ptr<redis::Client> client_;
  std::unique_ptr<RedisReferralStore> store_;
  std::unique_ptr<ReferralCore> core_;
};

TEST_F(ReferralTest, CreateStoresCaseWithAuditEvent) {
  auto r = Create("s1", common::v1::THERAPY);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->name(), "referrals/s1-v0-skeleton");
  EXPECT_EQ(r->state(), v1::OPEN);
  EXPECT_EQ(r->priority(), v1::ROUTINE);
  EXPECT_EQ(r->current_route(), common::v1::THERAPY);
  EXPECT_EQ(r->etag(), "1");
  auto audit = client_->Command({"LRANGE", redis::Key("referral", "s1-v0-skeleton", "audit"), "0", "-1"}, Soon());
  ASSERT_THAT(audit, IsOk());
  ASSERT_EQ(audit->elements.size(), 1u);
  v1::AuditEvent e;
  ASSERT_TRUE(e.ParseFromString(audit->elements[0].str));
  EXPECT_EQ(e.kind(), "created");
  EXPECT_EQ(e.actor(), "intake");
  EXPECT_EQ(e.route_after(), common::v1::THERAPY);
  EXPECT_EQ(e.ruleset_version(), "v0-skeleton");
}

TEST_F(ReferralTest, RetriedHandOffNeverMakesTwo) {
  auto a = Create("s1", common::v1::CRISIS_URGENT);
  auto b = Create("s1", common::v1::CRISIS_URGENT);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->name(), b->name());
  EXPECT_EQ(a->create_time_ms(), b->create_time_ms()) << "the existing case is returned";
  EXPECT_EQ(client_->Command({"ZCARD", redis::GlobalKey("referral", "queue")}, Soon())->integer, 1);
  EXPECT_EQ(client_->Command({"LLEN", redis::Key("referral", "s1-v0-skeleton", "audit")}, Soon())->integer, 1);
}

TEST_F(ReferralTest, CreateValidatesFields) {
  auto req = Request("s1", common::v1::THERAPY);
  req.set_screening("s1");
  EXPECT_THAT(core_->CreateReferral(req, Actor(), Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("screening")));
  req = Request("s1", common::v1::ROUTE_UNSPECIFIED);
  EXPECT_THAT(core_->CreateReferral(req, Actor(), Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("primary_route")));
  req = Request("s1", common::v1::THERAPY);
  req.mutable_result()->clear_ruleset_version();
  EXPECT_THAT(core_->CreateReferral(req, Actor(), Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ruleset_version")));
  req = Request("s1", common::v1::THERAPY, "fl");
  EXPECT_THAT(core_->CreateReferral(req, Actor(), Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("location_state")));
  req = Request("s1", common::v1::THERAPY);
  req.clear_result();
  EXPECT_THAT(core_->CreateReferral(req, Actor(), Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("result")));
}

TEST_F(ReferralTest, QueueOrdersByPriorityThenAge) {
  ASSERT_THAT(Create("help1", common::v1::SELF_HELP), IsOk());
  ASSERT_THAT(Create("ther1", common::v1::THERAPY), IsOk());
  ASSERT_THAT(Create("urg1", common::v1::CRISIS_URGENT), IsOk());
  ASSERT_THAT(Create("ther2", common::v1::THERAPY), IsOk());
  ASSERT_THAT(Create("acute1", common::v1::CRISIS_ACUTE), IsOk());
  auto page = core_->ListQueue(v1::ListQueueRequest(), Soon());
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Screenings(*page),
              ::testing::ElementsAre("acute1", "urg1", "ther1", "ther2", "help1"));
  EXPECT_TRUE(page->next_page_token().empty());
}

TEST_F(ReferralTest, AcuteRiskIsAboveUrgentHoweverOldTheUrgentCase) {
  ASSERT_THAT(Create("urgent_old", common::v1::CRISIS_URGENT), IsOk());
  clock_.now += absl::Hours(30);
  ASSERT_THAT(Create("acute_new", common::v1::CRISIS_ACUTE), IsOk());
  ASSERT_THAT(Create("therapy_old", common::v1::THERAPY), IsOk());
  auto page = core_->ListQueue(v1::ListQueueRequest(), Soon());
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Screenings(*page),
              ::testing::ElementsAre("acute_new", "urgent_old", "therapy_old"));
}

TEST_F(ReferralTest, PagesCoverTheQueueExactlyOnce) {
  for (int i = 0; i < 7; ++i) ASSERT_THAT(Create("c" + std::to_string(i), common::v1::THERAPY), IsOk());
  v1::ListQueueRequest req;
  req.set_page_size(3);
  std::vector<std::string> all;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = core_->ListQueue(req, Soon());
    ASSERT_THAT(page, IsOk());
    EXPECT_LE(page->cases_size(), 3);
    for (const auto& s : Screenings(*page)) all.push_back(s);
    if (page->next_page_token().empty()) break;
    req.set_page_token(page->next_page_token());
  }
  EXPECT_THAT(all, ::testing::ElementsAre("c0", "c1", "c2", "c3", "c4", "c5", "c6"));
}

TEST_F(ReferralTest, EqualScoresArePagedByIdWithoutLoss) {
  // Same creation time: the queue breaks ties by id, and paging must not
  // skip or repeat any of them.
  for (const char* id : {"b", "a", "d", "c"}) {
    ASSERT_THAT(core_->CreateReferral(Request(id, common::v1::THERAPY), Actor(), Soon()), IsOk());
  }
  v1::ListQueueRequest req;
  req.set_page_size(1);
  std::vector<std::string> all;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = core_->ListQueue(req, Soon());
    ASSERT_THAT(page, IsOk());
    for (const auto& s : Screenings(*page)) all.push_back(s);
    if (page->next_page_token().empty()) break;
    req.set_page_token(page->next_page_token());
  }
  EXPECT_THAT(all, ::testing::ElementsAre("a", "b", "c", "d"));
}

TEST_F(ReferralTest, FiltersByRouteStateAndPriority) {
  ASSERT_THAT(Create("fl1", common::v1::THERAPY, "FL"), IsOk());
  ASSERT_THAT(Create("nj1", common::v1::THERAPY, "NJ"), IsOk());
  ASSERT_THAT(Create("nj2", common::v1::CRISIS_URGENT, "NJ"), IsOk());
  v1::ListQueueRequest req;
  req.add_location_states("NJ");
  EXPECT_THAT(Screenings(*core_->ListQueue(req, Soon())), ::testing::ElementsAre("nj2", "nj1"));
  req.add_routes(common::v1::THERAPY);
  EXPECT_THAT(Screenings(*core_->ListQueue(req, Soon())), ::testing::ElementsAre("nj1"));
  v1::ListQueueRequest urgent;
  urgent.set_priority(v1::URGENT);
  EXPECT_THAT(Screenings(*core_->ListQueue(urgent, Soon())), ::testing::ElementsAre("nj2"));
}

TEST_F(ReferralTest, BadListArgumentsAreInvalid) {
  v1::ListQueueRequest req;
  req.set_page_token("not-a-token!");
  EXPECT_THAT(core_->ListQueue(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  req.Clear();
  req.set_page_size(-1);
  EXPECT_THAT(core_->ListQueue(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  req.Clear();
  req.add_location_states("Florida");
  EXPECT_THAT(core_->ListQueue(req, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("location_states[0]")));
}

TEST_F(ReferralTest, PageSizeIsCoercedToTheMaximum) {
  for (int i = 0; i < 3; ++i) ASSERT_THAT(Create("c" + std::to_string(i), common::v1::THERAPY), IsOk());
  v1::ListQueueRequest req;
  req.set_page_size(100000);
  auto page = core_->ListQueue(req, Soon());
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(page->cases_size(), 3);
}

TEST_F(ReferralTest, RedisDownIsUnavailable) {
  ASSERT_THAT(Create("s1", common::v1::THERAPY), IsOk());
  ASSERT_THAT(redis().Stop(), IsOk());
  EXPECT_THAT(core_->ListQueue(v1::ListQueueRequest(), Soon()),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(Create("s2", common::v1::THERAPY), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(redis().Restart(), IsOk());
  auto page = core_->ListQueue(v1::ListQueueRequest(), Soon());
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Screenings(*page), ::testing::ElementsAre("s1"));
}

}  // namespace
}  // namespace aqueduct::referral
