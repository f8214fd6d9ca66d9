// ReferralCore over the Redis store against a real redis-server.

#include <map>
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/compress/compress.h"
#include "common/crypto/page_tokens.h"
#include "common/metrics/metrics.h"
#include "common/util/names.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "services/referral/queue_feed.h"
#include "services/referral/redis_referral_store.h"
#include "services/referral/referral_core.h"
#include "services/referral/sweeper.h"
#include "tests/testing/process.h"
#include "tests/testing/redis_fixture.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::referral {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;

// The test's clinicians: who their tokens would say they are.
Actor As(const std::string& who) {
  static const auto* known = new std::map<std::string, Actor>{
      {"dr-all", {"dr-all", "physician", {"FL", "NJ", "NY"}}},
      {"cl-all", {"cl-all", "clinician", {"FL", "NJ", "NY"}}},
      {"nurse-ny", {"nurse-ny", "clinician", {"NY"}}},
      {"dr-fl", {"dr-fl", "physician", {"FL"}}},
      {"cl-fl", {"cl-fl", "clinician", {"FL"}}},
  };
  auto it = known->find(who);
  return it == known->end() ? Actor{who, "patient", {}} : it->second;
}
const Actor kAll = As("dr-all");

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
    store_ = std::make_unique<RedisReferralStore>(client_.get(), &keys_);
    ReferralConfig config;
    config.overdue_after = absl::Minutes(15);
    config.page_token_keys = &keys_;  // as main.cc: the data keys
    core_ = std::make_unique<ReferralCore>(store_.get(), &clock_, config);
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
  absl::StatusOr<v1::Referral> Create(const std::string& id,
                                      common::v1::Route route,
                                      const std::string& state = "FL") {
    clock_.now += absl::Seconds(1);
    return core_->CreateReferral(Request(id, route, state),
                                 Actor{"intake", "service", {}}, Soon());
  }
  absl::StatusOr<v1::Referral> GetCaseAs(const std::string& who,
                                         const v1::Referral& r) {
    v1::GetCaseRequest req;
    req.set_name(r.name());
    return core_->GetCase(req, As(who), Soon());
  }
  std::vector<std::string> Screenings(const v1::ListQueueResponse& page) {
    std::vector<std::string> out;
    for (const auto& c : page.cases())
      out.push_back(c.screening().substr(c.screening().rfind('/') + 1));
    return out;
  }

  crypto::DataKeys keys_ = crypto::DataKeys::Random();
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
  // The trail is in the case's own hash: n events, e1..en (no list key).
  const std::string key = redis::Key("referral", "s1-v0-skeleton", "case");
  auto audit = client_->Command({"HMGET", key, "n", "e1", "e2"}, Soon());
  ASSERT_THAT(audit, IsOk());
  ASSERT_EQ(audit->elements.size(), 3u);
  EXPECT_EQ(audit->elements[0].str, "1");
  EXPECT_TRUE(audit->elements[2].is_nil());
  EXPECT_EQ(client_
                ->Command({"EXISTS",
                           redis::Key("referral", "s1-v0-skeleton", "audit")},
                          Soon())
                ->integer,
            0);
  v1::AuditEvent e;
  auto plain = keys_.Open(audit->elements[1].str,
                          redis::Key("referral", "s1-v0-skeleton", "audit"));
  ASSERT_THAT(plain, IsOk()) << "audit events are sealed";
  ASSERT_TRUE(e.ParseFromString(*plain));
  EXPECT_EQ(e.kind(), "created");
  EXPECT_EQ(e.actor(), "intake");
  EXPECT_EQ(e.route_after(), common::v1::THERAPY);
  EXPECT_EQ(e.ruleset_version(), "v0-skeleton");
}

// The case record is sealed over its packed form (common/compress); one
// written before packing existed (sealed as it was) still reads.
TEST_F(ReferralTest, CaseRecordsArePackedAndOlderOnesStillRead) {
  auto r = Create("s1", common::v1::THERAPY);
  ASSERT_THAT(r, IsOk());
  const std::string key = redis::Key("referral", "s1-v0-skeleton", "case");
  auto d = client_->Command({"HGET", key, "d"}, Soon());
  ASSERT_THAT(d, IsOk());
  auto sealed = keys_.Open(d->str, key + "#d");
  ASSERT_THAT(sealed, IsOk());
  ASSERT_FALSE(sealed->empty());
  EXPECT_EQ((*sealed)[0], '\0') << "packed";
  auto plain = compress::Unpack(*sealed);
  ASSERT_THAT(plain, IsOk());
  v1::Referral stored;
  ASSERT_TRUE(stored.ParseFromString(*plain));
  EXPECT_EQ(stored.name(), r->name());
  // The earlier layout: the record sealed without packing.
  ASSERT_THAT(client_->Command(
                  {"HSET", key, "d", keys_.Seal(*plain, key + "#d")}, Soon()),
              IsOk());
  auto read = store_->Get("s1-v0-skeleton", Soon());
  ASSERT_THAT(read, IsOk());
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ((*read)->name(), r->name());
  EXPECT_EQ((*read)->current_route(), common::v1::THERAPY);
}

// Events append in order to the case's hash and page back in order, with
// no key of their own.
TEST_F(ReferralTest, AuditTrailsAppendAndPageInOrder) {
  auto r = Create("new1", common::v1::THERAPY);
  ASSERT_THAT(r, IsOk());
  const std::string id = "new1-v0-skeleton";
  const std::string case_key = redis::Key("referral", id, "case");
  for (int i = 0; i < 4; ++i) {
    v1::AuditEvent e;
    e.set_kind("viewed");
    e.set_actor("dr-" + std::to_string(i));
    ASSERT_THAT(store_->AppendAudit(id, e, Soon()), IsOk());
  }
  v1::AuditEvent changed;
  changed.set_kind("claimed");
  changed.set_actor("dr-9");
  ASSERT_THAT(store_->Update(id, 1, *r, {changed}, Soon()), IsOk());
  auto first = store_->ListAudit(id, 0, 2, Soon());
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->second, 6) << "created, four views, the claim";
  ASSERT_EQ(first->first.size(), 2u);
  EXPECT_EQ(first->first[0].kind(), "created");
  EXPECT_EQ(first->first[1].actor(), "dr-0");
  auto rest = store_->ListAudit(id, 2, 10, Soon());
  ASSERT_THAT(rest, IsOk());
  ASSERT_EQ(rest->first.size(), 4u);
  EXPECT_EQ(rest->first[2].actor(), "dr-3");
  EXPECT_EQ(rest->first[3].kind(), "claimed");
  EXPECT_EQ(client_->Command({"HGET", case_key, "n"}, Soon())->str, "6");
  EXPECT_EQ(
      client_->Command({"EXISTS", redis::Key("referral", id, "audit")}, Soon())
          ->integer,
      0);
  v1::AuditEvent e;
  e.set_kind("viewed");
  EXPECT_THAT(store_->AppendAudit("missing-v0-skeleton", e, Soon()),
              StatusIs(absl::StatusCode::kNotFound));
}

// aqueduct-referral --migrate: an audit trail an older build kept in a
// list of its own moves into the case's hash (and reads and appends there
// after), a per-screening set of case ids folds into the rulesets set (its
// case is found again), and a second run changes nothing. This build reads
// neither older layout: before the migration they are not seen.
TEST_F(ReferralTest, MigrationMovesOlderLayoutsOnce) {
  // A case whose trail an older build kept in a list.
  ASSERT_THAT(Create("old1", common::v1::THERAPY), IsOk());
  const std::string id = "old1-v0-skeleton";
  const std::string case_key = redis::Key("referral", id, "case");
  const std::string list_key = redis::Key("referral", id, "audit");
  auto e1 = client_->Command({"HGET", case_key, "e1"}, Soon());
  ASSERT_THAT(e1, IsOk());
  v1::AuditEvent viewed;
  viewed.set_kind("viewed");
  viewed.set_actor("dr-1");
  ASSERT_THAT(
      client_->Command({"RPUSH", list_key, e1->str,
                        keys_.Seal(viewed.SerializeAsString(), list_key)},
                       Soon()),
      IsOk());
  ASSERT_THAT(client_->Command({"HDEL", case_key, "n", "e1"}, Soon()), IsOk());
  // A case an older build indexed only in its screening's own set.
  auto older = Request("s9", common::v1::THERAPY);
  older.mutable_result()->set_ruleset_version("vOld");
  ASSERT_THAT(
      core_->CreateReferral(older, Actor{"intake", "service", {}}, Soon()),
      IsOk());
  const std::string rulesets = redis::GlobalKey("referral", "rulesets");
  const std::string set_key = redis::Key("referral", "s9", "cases");
  ASSERT_THAT(client_->Command({"SREM", rulesets, "vold"}, Soon()), IsOk());
  ASSERT_THAT(client_->Command({"SADD", set_key, "s9-vold"}, Soon()), IsOk());
  auto before = store_->CasesOfScreening("s9", Soon());
  ASSERT_THAT(before, IsOk());
  EXPECT_TRUE(before->empty()) << "the older set is not read";
  auto unread = store_->ListAudit(id, 0, 10, Soon());
  ASSERT_THAT(unread, IsOk());
  EXPECT_EQ(unread->second, 0) << "the older list is not read";

  auto report = store_->MigrateOlderLayouts(Soon());
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->audit_trails, 1);
  EXPECT_EQ(report->screening_sets, 1);
  EXPECT_EQ(client_->Command({"EXISTS", list_key}, Soon())->integer, 0);
  EXPECT_EQ(client_->Command({"EXISTS", set_key}, Soon())->integer, 0);
  auto trail = store_->ListAudit(id, 0, 10, Soon());
  ASSERT_THAT(trail, IsOk());
  ASSERT_EQ(trail->second, 2);
  EXPECT_EQ(trail->first[0].kind(), "created");
  EXPECT_EQ(trail->first[1].actor(), "dr-1");
  v1::AuditEvent later;
  later.set_kind("claimed");
  ASSERT_THAT(store_->AppendAudit(id, later, Soon()), IsOk());
  trail = store_->ListAudit(id, 2, 10, Soon());
  ASSERT_THAT(trail, IsOk());
  ASSERT_EQ(trail->first.size(), 1u);
  EXPECT_EQ(trail->first[0].kind(), "claimed");
  auto after = store_->CasesOfScreening("s9", Soon());
  ASSERT_THAT(after, IsOk());
  EXPECT_THAT(*after, ::testing::ElementsAre("s9-vold"));

  auto again = store_->MigrateOlderLayouts(Soon());
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->audit_trails, 0);
  EXPECT_EQ(again->screening_sets, 0);

  // A set naming a case not made from its screening stops the migration,
  // names the key, and is left for a person to look at.
  const std::string odd = redis::Key("referral", "s10", "cases");
  ASSERT_THAT(client_->Command({"SADD", odd, "other-v1"}, Soon()), IsOk());
  EXPECT_THAT(store_->MigrateOlderLayouts(Soon()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::HasSubstr(odd)));
  EXPECT_EQ(client_->Command({"EXISTS", odd}, Soon())->integer, 1);
}

// A screening's cases are found from the ruleset versions cases were made
// under, with no key per screening.
TEST_F(ReferralTest, CasesOfAScreeningNeedNoKeyPerScreening) {
  ASSERT_THAT(Create("s7", common::v1::THERAPY), IsOk());
  ASSERT_THAT(Create("s8", common::v1::THERAPY), IsOk());
  auto rereview = Request("s7", common::v1::KETAMINE_REVIEW);
  rereview.mutable_result()->set_ruleset_version("V2.1");
  ASSERT_THAT(
      core_->CreateReferral(rereview, Actor{"rescore", "batch", {}}, Soon()),
      IsOk());
  EXPECT_EQ(
      client_
          ->Command({"EXISTS", redis::Key("referral", "s7", "cases")}, Soon())
          ->integer,
      0);
  auto ids = store_->CasesOfScreening("s7", Soon());
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, ::testing::ElementsAre("s7-v0-skeleton", "s7-v2-1"));
  ids = store_->CasesOfScreening("s8", Soon());
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, ::testing::ElementsAre("s8-v0-skeleton"))
      << "only the cases that exist";
  ids = store_->CasesOfScreening("none", Soon());
  ASSERT_THAT(ids, IsOk());
  EXPECT_TRUE(ids->empty());
}

TEST_F(ReferralTest, RetriedHandOffNeverMakesTwo) {
  auto a = Create("s1", common::v1::CRISIS_URGENT);
  auto b = Create("s1", common::v1::CRISIS_URGENT);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->name(), b->name());
  EXPECT_EQ(a->create_time_ms(), b->create_time_ms())
      << "the existing case is returned";
  EXPECT_EQ(
      client_->Command({"ZCARD", redis::GlobalKey("referral", "queue")}, Soon())
          ->integer,
      1);
  EXPECT_EQ(
      client_
          ->Command(
              {"HGET", redis::Key("referral", "s1-v0-skeleton", "case"), "n"},
              Soon())
          ->str,
      "1");
}

TEST_F(ReferralTest, BatchCreateIsAllOrNothingAndIdempotent) {
  v1::CreateReferralsRequest batch;
  for (int i = 0; i < 30; ++i) {
    *batch.add_requests() =
        Request("b" + std::to_string(i),
                i % 3 == 0 ? common::v1::CRISIS_URGENT : common::v1::THERAPY);
  }
  batch.mutable_requests(17)->set_location_state("florida");
  EXPECT_THAT(
      core_->CreateReferrals(batch, Actor{"rescore", "batch", {}}, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("requests[17].location_state")));
  EXPECT_TRUE(
      core_->ListQueue(v1::ListQueueRequest(), kAll, Soon())->cases().empty())
      << "nothing written";
  batch.mutable_requests(17)->set_location_state("FL");
  auto first =
      core_->CreateReferrals(batch, Actor{"rescore", "batch", {}}, Soon());
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->referrals_size(), 30);
  EXPECT_EQ(first->referrals(5).screening(), "users/u1/screenings/b5")
      << "request order";
  EXPECT_TRUE(first->referrals(5).has_result()) << "the full view by default";
  batch.set_view(v1::REFERRAL_VIEW_BASIC);
  auto again =
      core_->CreateReferrals(batch, Actor{"rescore", "batch", {}}, Soon());
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->referrals(5).create_time_ms(),
            first->referrals(5).create_time_ms());
  // The basic view: the case without its results.
  EXPECT_EQ(again->referrals(5).name(), first->referrals(5).name());
  EXPECT_EQ(again->referrals(5).state(), first->referrals(5).state());
  EXPECT_EQ(again->referrals(5).current_route(),
            first->referrals(5).current_route());
  EXPECT_FALSE(again->referrals(5).has_result());
  EXPECT_FALSE(again->referrals(5).has_previous_result());
  v1::ListQueueRequest all;
  all.set_page_size(100);
  EXPECT_EQ(core_->ListQueue(all, kAll, Soon())->cases_size(), 30)
      << "no duplicates";
  EXPECT_EQ(
      client_
          ->Command(
              {"HGET", redis::Key("referral", "b3-v0-skeleton", "case"), "n"},
              Soon())
          ->str,
      "1");
  // Urgent ones got their overdue timer like a single create.
  clock_.now += absl::Minutes(16);
  ReferralConfig config;
  ReferralCore sweeper(store_.get(), &clock_, config);
  EXPECT_EQ(*sweeper.Sweep(Soon()), 10);
  v1::CreateReferralsRequest too_many;
  for (int i = 0; i <= ReferralCore::kMaxBatch; ++i)
    *too_many.add_requests() = Request("x", common::v1::THERAPY);
  EXPECT_THAT(
      core_->CreateReferrals(too_many, Actor{"rescore", "batch", {}}, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most")));
}

TEST_F(ReferralTest, CreateValidatesFields) {
  auto req = Request("s1", common::v1::THERAPY);
  req.set_screening("s1");
  EXPECT_THAT(
      core_->CreateReferral(req, Actor(), Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("screening")));
  req = Request("s1", common::v1::ROUTE_UNSPECIFIED);
  EXPECT_THAT(
      core_->CreateReferral(req, Actor(), Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("primary_route")));
  req = Request("s1", common::v1::THERAPY);
  req.mutable_result()->clear_ruleset_version();
  EXPECT_THAT(core_->CreateReferral(req, Actor(), Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ruleset_version")));
  req = Request("s1", common::v1::THERAPY, "fl");
  EXPECT_THAT(core_->CreateReferral(req, Actor(), Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("location_state")));
  req = Request("s1", common::v1::THERAPY);
  req.clear_result();
  EXPECT_THAT(
      core_->CreateReferral(req, Actor(), Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("result")));
}

TEST_F(ReferralTest, QueueOrdersByPriorityThenAge) {
  ASSERT_THAT(Create("help1", common::v1::SELF_HELP), IsOk());
  ASSERT_THAT(Create("ther1", common::v1::THERAPY), IsOk());
  ASSERT_THAT(Create("urg1", common::v1::CRISIS_URGENT), IsOk());
  ASSERT_THAT(Create("ther2", common::v1::THERAPY), IsOk());
  ASSERT_THAT(Create("acute1", common::v1::CRISIS_ACUTE), IsOk());
  auto page = core_->ListQueue(v1::ListQueueRequest(), kAll, Soon());
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(
      Screenings(*page),
      ::testing::ElementsAre("acute1", "urg1", "ther1", "ther2", "help1"));
  EXPECT_TRUE(page->next_page_token().empty());
}

TEST_F(ReferralTest, AcuteRiskIsAboveUrgentHoweverOldTheUrgentCase) {
  ASSERT_THAT(Create("urgent_old", common::v1::CRISIS_URGENT), IsOk());
  clock_.now += absl::Hours(30);
  ASSERT_THAT(Create("acute_new", common::v1::CRISIS_ACUTE), IsOk());
  ASSERT_THAT(Create("therapy_old", common::v1::THERAPY), IsOk());
  auto page = core_->ListQueue(v1::ListQueueRequest(), kAll, Soon());
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Screenings(*page),
              ::testing::ElementsAre("acute_new", "urgent_old", "therapy_old"));
}

TEST_F(ReferralTest, PagesCoverTheQueueExactlyOnce) {
  for (int i = 0; i < 7; ++i)
    ASSERT_THAT(Create("c" + std::to_string(i), common::v1::THERAPY), IsOk());
  v1::ListQueueRequest req;
  req.set_page_size(3);
  std::vector<std::string> all;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = core_->ListQueue(req, kAll, Soon());
    ASSERT_THAT(page, IsOk());
    EXPECT_LE(page->cases_size(), 3);
    for (const auto& s : Screenings(*page)) all.push_back(s);
    if (page->next_page_token().empty()) break;
    req.set_page_token(page->next_page_token());
  }
  EXPECT_THAT(all,
              ::testing::ElementsAre("c0", "c1", "c2", "c3", "c4", "c5", "c6"));
}

// A page token this service did not make is INVALID_ARGUMENT naming it, and
// never reaches Redis (a NaN score once came back as INTERNAL from Redis):
// tokens are sealed, and what a sealed token holds is still checked.
TEST_F(ReferralTest, ForgedPageTokensAreRefused) {
  ASSERT_THAT(Create("c0", common::v1::THERAPY), IsOk());
  const crypto::PageTokens sealer(&keys_);  // the service's own keys
  for (const std::string raw : {"nan/x", "inf/x", "-1/x", "1e300/x", "1.5/x",
                                "5/", "5/bad id", "no-slash"}) {
    for (const std::string& token :
         {absl::WebSafeBase64Escape(raw), sealer.Make("ListQueue", "", raw)}) {
      v1::ListQueueRequest req;
      req.set_page_token(token);
      EXPECT_THAT(core_->ListQueue(req, kAll, Soon()),
                  StatusIs(absl::StatusCode::kInvalidArgument,
                           ::testing::HasSubstr("page_token")))
          << raw;
    }
  }
  // The earlier, unsealed form of a real position is refused too, and so is
  // a sealed one from another RPC or made with other keys.
  const std::string real = "10000000000000/c0-v0-skeleton";
  crypto::DataKeys other = crypto::DataKeys::Random();
  for (const std::string& token :
       {absl::WebSafeBase64Escape(real),
        sealer.Make("ListAuditEvents", "", real),
        crypto::PageTokens(&other).Make("ListQueue", "", real)}) {
    v1::ListQueueRequest req;
    req.set_page_token(token);
    EXPECT_THAT(core_->ListQueue(req, kAll, Soon()),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("page_token: not a next_page_token")));
  }
}

// Replicas seal with the same data keys: a page token from one pages on at
// another (a portal's next call may reach any replica).
TEST_F(ReferralTest, PageTokensWorkOnEveryReplica) {
  for (int i = 0; i < 3; ++i)
    ASSERT_THAT(Create("r" + std::to_string(i), common::v1::THERAPY), IsOk());
  ReferralConfig config;
  config.page_token_keys = &keys_;
  ReferralCore replica(store_.get(), &clock_, config);
  v1::ListQueueRequest req;
  req.set_page_size(2);
  auto first = core_->ListQueue(req, kAll, Soon());
  ASSERT_THAT(first, IsOk());
  ASSERT_FALSE(first->next_page_token().empty());
  req.set_page_token(first->next_page_token());
  auto second = replica.ListQueue(req, kAll, Soon());
  ASSERT_THAT(second, IsOk());
  EXPECT_THAT(Screenings(*second), ::testing::ElementsAre("r2"));
}

TEST_F(ReferralTest, EqualScoresArePagedByIdWithoutLoss) {
  // Same creation time: the queue breaks ties by id, and paging must not
  // skip or repeat any of them.
  for (const char* id : {"b", "a", "d", "c"}) {
    ASSERT_THAT(core_->CreateReferral(Request(id, common::v1::THERAPY), Actor(),
                                      Soon()),
                IsOk());
  }
  v1::ListQueueRequest req;
  req.set_page_size(1);
  std::vector<std::string> all;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = core_->ListQueue(req, kAll, Soon());
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
  EXPECT_THAT(Screenings(*core_->ListQueue(req, kAll, Soon())),
              ::testing::ElementsAre("nj2", "nj1"));
  req.add_routes(common::v1::THERAPY);
  EXPECT_THAT(Screenings(*core_->ListQueue(req, kAll, Soon())),
              ::testing::ElementsAre("nj1"));
  v1::ListQueueRequest urgent;
  urgent.set_priority(v1::URGENT);
  EXPECT_THAT(Screenings(*core_->ListQueue(urgent, kAll, Soon())),
              ::testing::ElementsAre("nj2"));
}

// A case whose person did not say where they are goes to the configured
// triage states' clinicians, by default to those licensed everywhere, and
// never to every clinician (issue 24: it was visible to all).
TEST_F(ReferralTest, ACaseWithNoStateGoesToTheFallbackNeverToEveryone) {
  ASSERT_THAT(Create("fl1", common::v1::THERAPY, "FL"), IsOk());
  auto nowhere = Create("nowhere", common::v1::CRISIS_URGENT, "");
  ASSERT_THAT(nowhere, IsOk());
  const Actor everywhere{"triage", "clinician", UsStateCodes()};
  auto queue_of = [&](const Actor& who) {
    auto page = core_->ListQueue(v1::ListQueueRequest(), who, Soon());
    EXPECT_THAT(page, IsOk());
    return page.ok() ? Screenings(*page) : std::vector<std::string>{};
  };
  EXPECT_THAT(queue_of(As("cl-all")), ::testing::ElementsAre("fl1"));
  EXPECT_THAT(GetCaseAs("cl-all", *nowhere),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("no location state")));
  EXPECT_THAT(queue_of(everywhere), ::testing::ElementsAre("nowhere", "fl1"));
  v1::GetCaseRequest get;
  get.set_name(nowhere->name());
  EXPECT_THAT(core_->GetCase(get, everywhere, Soon()), IsOk());

  // Configured: the NY triage team sees it, Florida's clinicians do not.
  ReferralConfig config;
  config.unlocated_case_states = {"NY"};
  ReferralCore triage(store_.get(), &clock_, config);
  auto ny = triage.ListQueue(v1::ListQueueRequest(), As("nurse-ny"), Soon());
  ASSERT_THAT(ny, IsOk());
  EXPECT_THAT(Screenings(*ny), ::testing::ElementsAre("nowhere"));
  auto fl = triage.ListQueue(v1::ListQueueRequest(), As("cl-fl"), Soon());
  ASSERT_THAT(fl, IsOk());
  EXPECT_THAT(Screenings(*fl), ::testing::ElementsAre("fl1"));
}

TEST_F(ReferralTest, BadListArgumentsAreInvalid) {
  v1::ListQueueRequest req;
  req.set_page_token("not-a-token!");
  EXPECT_THAT(
      core_->ListQueue(req, kAll, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  req.Clear();
  req.set_page_size(-1);
  EXPECT_THAT(
      core_->ListQueue(req, kAll, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  req.Clear();
  req.add_location_states("Florida");
  EXPECT_THAT(core_->ListQueue(req, kAll, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("location_states[0]")));
}

TEST_F(ReferralTest, PageSizeIsCoercedToTheMaximum) {
  for (int i = 0; i < 3; ++i)
    ASSERT_THAT(Create("c" + std::to_string(i), common::v1::THERAPY), IsOk());
  v1::ListQueueRequest req;
  req.set_page_size(100000);
  auto page = core_->ListQueue(req, kAll, Soon());
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(page->cases_size(), 3);
}

TEST_F(ReferralTest, RedisDownIsUnavailable) {
  ASSERT_THAT(Create("s1", common::v1::THERAPY), IsOk());
  ASSERT_THAT(redis().Stop(), IsOk());
  EXPECT_THAT(core_->ListQueue(v1::ListQueueRequest(), kAll, Soon()),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(Create("s2", common::v1::THERAPY),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(redis().Restart(), IsOk());
  auto page = core_->ListQueue(v1::ListQueueRequest(), kAll, Soon());
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Screenings(*page), ::testing::ElementsAre("s1"));
}

// ---- Issue 5: clinician control
// -----------------------------------------------

class CaseTest : public ReferralTest {
 protected:
  v1::Referral Make(const std::string& id, common::v1::Route route,
                    const std::string& state = "FL") {
    auto r = Create(id, route, state);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : v1::Referral();
  }
  absl::StatusOr<v1::Referral> Claim(const std::string& who,
                                     const v1::Referral& r, int lease_s = 0) {
    v1::ClaimCaseRequest req;
    req.set_name(r.name());
    req.set_lease_seconds(lease_s);
    return core_->ClaimCase(req, As(who), Soon());
  }
  absl::StatusOr<v1::Referral> Decide(
      const std::string& who, const v1::Referral& r,
      v1::Decision::Action action, const std::string& reason = "seen",
      common::v1::Route new_route = common::v1::ROUTE_UNSPECIFIED,
      const std::string& request_id = "d1") {
    v1::DecideCaseRequest req;
    req.set_name(r.name());
    req.set_etag(r.etag());
    req.set_request_id(request_id);
    req.mutable_decision()->set_action(action);
    req.mutable_decision()->set_reason(reason);
    req.mutable_decision()->set_new_route(new_route);
    return core_->DecideCase(req, As(who), Soon());
  }
  std::vector<std::string> AuditKinds(const v1::Referral& r) {
    v1::ListAuditEventsRequest req;
    req.set_parent(r.name());
    auto page = core_->ListAuditEvents(req, kAll, Soon());
    EXPECT_THAT(page, IsOk());
    std::vector<std::string> out;
    if (page.ok()) {
      for (const auto& e : page->events())
        out.push_back(e.kind() + ":" + e.actor());
    }
    return out;
  }
  v1::MyReferral View(const v1::Referral& r) {
    v1::GetMyReferralRequest req;
    req.set_screening(r.screening());
    auto view = core_->GetMyReferral(req, Soon());
    EXPECT_THAT(view, IsOk());
    return view.ok() ? *view : v1::MyReferral();
  }
};

TEST_F(CaseTest, LicensureAndRoleGating) {
  v1::Referral fl = Make("fl1", common::v1::THERAPY, "FL");
  v1::Referral ket = Make("ket1", common::v1::KETAMINE_REVIEW, "FL");
  EXPECT_THAT(
      Claim("nurse-ny", fl),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("licensed")));
  EXPECT_THAT(Claim("stranger", fl),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(Claim("", fl), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(Claim("cl-fl", ket), StatusIs(absl::StatusCode::kPermissionDenied,
                                            HasSubstr("physician")));
  // The queue lists only what the caller may act on.
  auto fl_queue = core_->ListQueue(v1::ListQueueRequest(), As("cl-fl"), Soon());
  ASSERT_THAT(fl_queue, IsOk());
  EXPECT_THAT(Screenings(*fl_queue), ::testing::ElementsAre("fl1"));
  auto ny_queue =
      core_->ListQueue(v1::ListQueueRequest(), As("nurse-ny"), Soon());
  ASSERT_THAT(ny_queue, IsOk());
  EXPECT_TRUE(ny_queue->cases().empty());
  auto dr_queue = core_->ListQueue(v1::ListQueueRequest(), As("dr-fl"), Soon());
  EXPECT_THAT(Screenings(*dr_queue),
              ::testing::UnorderedElementsAre("fl1", "ket1"));
  // A physician decides the ketamine review; a clinician may not route to one.
  auto claimed = Claim("dr-fl", ket);
  ASSERT_THAT(claimed, IsOk());
  EXPECT_THAT(Decide("dr-fl", *claimed, v1::Decision::CONFIRM,
                     "eligible for evaluation"),
              IsOk());
  auto mine = Claim("cl-fl", fl);
  ASSERT_THAT(mine, IsOk());
  EXPECT_THAT(Decide("cl-fl", *mine, v1::Decision::CHANGE_ROUTE, "try ketamine",
                     common::v1::KETAMINE_REVIEW),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(GetCaseAs("nurse-ny", fl),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(CaseTest, ManyClinciansRacingExactlyOneHolds) {
  v1::Referral r = Make("race", common::v1::CRISIS_URGENT, "FL");
  const std::vector<std::string> who = {"dr-all", "cl-all", "dr-fl", "cl-fl"};
  std::vector<absl::StatusOr<v1::Referral>> results(
      16, absl::UnknownError("unset"));
  std::vector<std::thread> threads;
  absl::Notification go;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      go.WaitForNotification();
      results[i] = Claim(who[i % who.size()], r);
    });
  }
  go.Notify();
  for (auto& t : threads) t.join();
  std::set<std::string> holders;
  for (const auto& res : results) {
    if (res.ok())
      holders.insert(res->claimed_by());
    else
      EXPECT_THAT(res, StatusIs(absl::StatusCode::kAborted));
  }
  ASSERT_EQ(holders.size(), 1u) << "exactly one holder";
  auto stored = store_->Get("race-v0-skeleton", Soon());
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ((*stored)->claimed_by(), *holders.begin());
}

TEST_F(CaseTest, ExpiredLeaseReturnsTheCaseToTheQueue) {
  v1::Referral r = Make("lease", common::v1::THERAPY, "FL");
  auto held = Claim("cl-fl", r, 60);
  ASSERT_THAT(held, IsOk());
  EXPECT_THAT(Claim("dr-fl", r), StatusIs(absl::StatusCode::kAborted,
                                          HasSubstr("held by another")));
  v1::ListQueueRequest open_only;
  EXPECT_TRUE(
      core_->ListQueue(open_only, As("dr-fl"), Soon())->cases().empty());
  clock_.now += absl::Seconds(61);
  auto queue = core_->ListQueue(open_only, As("dr-fl"), Soon());
  ASSERT_THAT(queue, IsOk());
  ASSERT_EQ(queue->cases_size(), 1)
      << "back in the queue once the lease ran out";
  EXPECT_EQ(queue->cases(0).state(), v1::OPEN);
  // The sweeper records it and tells watchers.
  auto swept = core_->Sweep(Soon());
  ASSERT_THAT(swept, IsOk());
  EXPECT_EQ(*swept, 1);
  EXPECT_THAT(AuditKinds(r),
              ::testing::ElementsAre("created:intake", "claimed:cl-fl",
                                     "lease_expired:system"));
  // The old holder can no longer decide; another clinician can claim.
  EXPECT_THAT(Decide("cl-fl", *held, v1::Decision::CONFIRM),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Claim("dr-fl", r), IsOk());
}

TEST_F(CaseTest, DecisionsNeedTheCaseAReasonAndTheCurrentEtag) {
  v1::Referral r = Make("dec", common::v1::THERAPY, "FL");
  EXPECT_THAT(Decide("cl-fl", r, v1::Decision::CONFIRM),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("do not hold")));
  auto held = Claim("cl-fl", r);
  ASSERT_THAT(held, IsOk());
  EXPECT_THAT(Decide("cl-fl", *held, v1::Decision::CONFIRM, "   "),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("decision.reason")));
  EXPECT_THAT(Decide("cl-fl", *held, v1::Decision::ACTION_UNSPECIFIED),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("decision.action")));
  EXPECT_THAT(Decide("cl-fl", *held, v1::Decision::CHANGE_ROUTE),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("decision.new_route")));
  EXPECT_THAT(Decide("cl-fl", r, v1::Decision::CONFIRM),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));
  EXPECT_THAT(Decide("dr-fl", *held, v1::Decision::CONFIRM),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  auto decided = Decide("cl-fl", *held, v1::Decision::CHANGE_ROUTE,
                        "self-help first", common::v1::SELF_HELP);
  ASSERT_THAT(decided, IsOk());
  EXPECT_EQ(decided->state(), v1::DECIDED);
  EXPECT_EQ(decided->current_route(), common::v1::SELF_HELP);
  EXPECT_EQ(decided->proposed_route(), common::v1::THERAPY);
  EXPECT_EQ(decided->decision().decided_by(), "cl-fl");
  // The same decision again has one effect.
  auto again = Decide("cl-fl", *held, v1::Decision::CHANGE_ROUTE,
                      "self-help first", common::v1::SELF_HELP);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->etag(), decided->etag());
  EXPECT_THAT(Claim("cl-fl", r), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("already decided")));
  EXPECT_TRUE(
      core_->ListQueue(v1::ListQueueRequest(), kAll, Soon())->cases().empty())
      << "out of the queue";
}

// The value this process's registry holds for a gauge with exactly these
// labels (-1 when there is none).
double GaugeValue(const std::string& family,
                  const std::map<std::string, std::string>& labels) {
  for (const auto& f : aqueduct::metrics::Registry()->Collect()) {
    if (f.name != family) continue;
    for (const auto& m : f.metric) {
      std::map<std::string, std::string> got;
      for (const auto& l : m.label) got[l.name] = l.value;
      if (got == labels) return m.gauge.value;
    }
  }
  return -1;
}

TEST_F(CaseTest, SweeperCountsTheQueueByRouteAndPriority) {
  v1::Referral t1 = Make("rt1", common::v1::THERAPY);
  Make("rt2", common::v1::THERAPY);
  Make("rk1", common::v1::KETAMINE_REVIEW);
  Make("ru1", common::v1::CRISIS_URGENT);
  auto held = Claim("cl-fl", t1);
  ASSERT_THAT(held, IsOk());
  ASSERT_THAT(core_->Sweep(Soon()), IsOk());
  const std::string family = "aqueduct_referral_queue_cases_by_route";
  EXPECT_EQ(GaugeValue(family, {{"route", "THERAPY"}, {"priority", "ROUTINE"}}),
            2)
      << "open and claimed both wait for a decision";
  EXPECT_EQ(GaugeValue(family,
                       {{"route", "KETAMINE_REVIEW"}, {"priority", "ROUTINE"}}),
            1);
  EXPECT_EQ(
      GaugeValue(family, {{"route", "CRISIS_URGENT"}, {"priority", "URGENT"}}),
      1);

  // Decided: no longer counted, even when a failed dequeue left it in the
  // queue index; and not counted again before the interval has passed.
  auto decided = Decide("cl-fl", *held, v1::Decision::CONFIRM);
  ASSERT_THAT(decided, IsOk());
  ASSERT_THAT(
      client_->Command({"ZADD", redis::GlobalKey("referral", "queue"), "NX",
                        "1", t1.name().substr(t1.name().rfind('/') + 1)},
                       Soon()),
      IsOk());
  ASSERT_THAT(core_->Sweep(Soon()), IsOk());
  EXPECT_EQ(GaugeValue(family, {{"route", "THERAPY"}, {"priority", "ROUTINE"}}),
            2)
      << "the last count stands until the next one is due";
  clock_.now += ReferralConfig().route_count_interval;
  ASSERT_THAT(core_->Sweep(Soon()), IsOk());
  EXPECT_EQ(GaugeValue(family, {{"route", "THERAPY"}, {"priority", "ROUTINE"}}),
            1);
  EXPECT_EQ(GaugeValue(family,
                       {{"route", "KETAMINE_REVIEW"}, {"priority", "ROUTINE"}}),
            1);
}

TEST_F(CaseTest, UrgentCaseNotClaimedInTimeIsOverdue) {
  v1::Referral late = Make("late", common::v1::CRISIS_URGENT, "FL");
  v1::Referral seen = Make("seen", common::v1::CRISIS_URGENT, "FL");
  v1::Referral routine = Make("routine", common::v1::THERAPY, "FL");
  ASSERT_THAT(Claim("cl-fl", seen, 3600),
              IsOk());  // a lease longer than the wait
  clock_.now += absl::Minutes(14);
  EXPECT_EQ(*core_->Sweep(Soon()), 0);
  clock_.now += absl::Minutes(2);
  EXPECT_EQ(*core_->Sweep(Soon()), 1);
  auto queue = core_->ListQueue(v1::ListQueueRequest(), kAll, Soon());
  ASSERT_THAT(queue, IsOk());
  ASSERT_GE(queue->cases_size(), 2);
  EXPECT_EQ(queue->cases(0).screening(), late.screening()) << "stays on top";
  EXPECT_TRUE(queue->cases(0).overdue());
  EXPECT_FALSE(queue->cases(1).overdue());
  EXPECT_THAT(AuditKinds(late),
              ::testing::ElementsAre("created:intake", "overdue:system"));
  EXPECT_EQ(*core_->Sweep(Soon()), 0) << "marked once";
}

// The sweeper runs Sweep by itself, every tick, and goes on after a sweep.
TEST_F(CaseTest, SweeperMarksAnUnclaimedUrgentCaseOverdueByItself) {
  v1::Referral late = Make("late-bg", common::v1::CRISIS_URGENT, "FL");
  clock_.now += absl::Minutes(16);
  Sweeper sweeper(core_.get(), absl::Milliseconds(5));
  const absl::Time end = absl::Now() + absl::Seconds(5);
  bool overdue = false;
  while (!overdue && absl::Now() < end) {
    auto queue = core_->ListQueue(v1::ListQueueRequest(), kAll, Soon());
    ASSERT_THAT(queue, IsOk());
    overdue = queue->cases_size() > 0 && queue->cases(0).overdue();
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(overdue);
  const int64_t sweeps = sweeper.sweeps();
  while (sweeper.sweeps() < sweeps + 2 && absl::Now() < end)
    absl::SleepFor(absl::Milliseconds(5));
  EXPECT_GE(sweeper.sweeps(), sweeps + 2) << "the loop goes on";
  EXPECT_THAT(AuditKinds(late),
              ::testing::ElementsAre("created:intake", "overdue:system"))
      << "marked once, however many sweeps";
}

TEST_F(CaseTest, AuditTrailHoldsExactlyTheScriptedSequence) {
  v1::Referral r = Make("audit", common::v1::SELF_HELP, "NY");
  ASSERT_THAT(GetCaseAs("nurse-ny", r), IsOk());
  auto a = Claim("nurse-ny", r);
  ASSERT_THAT(a, IsOk());
  v1::ReleaseCaseRequest release;
  release.set_name(r.name());
  ASSERT_THAT(core_->ReleaseCase(release, As("nurse-ny"), Soon()), IsOk());
  auto b = Claim("cl-all", r);
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT(Decide("cl-all", *b, v1::Decision::CHANGE_ROUTE,
                     "more than exhaustion", common::v1::THERAPY),
              IsOk());
  EXPECT_THAT(AuditKinds(r),
              ::testing::ElementsAre("created:intake", "read:nurse-ny",
                                     "claimed:nurse-ny", "released:nurse-ny",
                                     "claimed:cl-all", "overridden:cl-all"));
  v1::ListAuditEventsRequest page;
  page.set_parent(r.name());
  page.set_page_size(2);
  std::vector<std::string> names;
  for (int i = 0; i < 10; ++i) {
    auto p = core_->ListAuditEvents(page, kAll, Soon());
    ASSERT_THAT(p, IsOk());
    for (const auto& e : p->events()) {
      names.push_back(e.name());
      if (e.kind() == "overridden") {
        EXPECT_EQ(e.route_before(), common::v1::SELF_HELP);
        EXPECT_EQ(e.route_after(), common::v1::THERAPY);
        EXPECT_EQ(e.actor_role(), "clinician");
        EXPECT_EQ(e.ruleset_version(), "v0-skeleton");
      }
    }
    if (p->next_page_token().empty()) break;
    page.set_page_token(p->next_page_token());
  }
  ASSERT_EQ(names.size(), 6u);
  EXPECT_EQ(names[0], r.name() + "/auditEvents/1");
  EXPECT_EQ(names[5], r.name() + "/auditEvents/6");
}

TEST_F(CaseTest, NoHalfWrittenDecisionWhenRedisFails) {
  v1::Referral r = Make("atomic", common::v1::THERAPY, "FL");
  auto held = Claim("cl-fl", r);
  ASSERT_THAT(held, IsOk());
  ASSERT_THAT(redis().Stop(), IsOk());
  EXPECT_THAT(Decide("cl-fl", *held, v1::Decision::CONFIRM),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(redis().Restart(), IsOk());
  auto stored = store_->Get("atomic-v0-skeleton", Soon());
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ((*stored)->state(), v1::CLAIMED);
  EXPECT_THAT(AuditKinds(r),
              ::testing::ElementsAre("created:intake", "claimed:cl-fl"));
  EXPECT_THAT(Decide("cl-fl", *held, v1::Decision::CONFIRM), IsOk())
      << "and it can be decided after";
}

TEST_F(CaseTest, ThePersonsViewInPlainLanguage) {
  v1::Referral therapy = Make("p-therapy", common::v1::THERAPY);
  auto v = View(therapy);
  EXPECT_TRUE(v.pending_review());
  EXPECT_EQ(v.route(), common::v1::THERAPY);
  EXPECT_THAT(v.message(), HasSubstr("not a diagnosis"));

  v1::Referral ket = Make("p-ket", common::v1::KETAMINE_REVIEW);
  v = View(ket);
  EXPECT_EQ(v.route(), common::v1::UNDER_PHYSICIAN_REVIEW)
      << "no eligibility before a physician confirms";
  EXPECT_THAT(v.message(), HasSubstr("under review by a physician"));
  EXPECT_THAT(v.message(), ::testing::Not(HasSubstr("ketamine")));
  auto held = Claim("dr-fl", ket);
  ASSERT_THAT(held, IsOk());
  ASSERT_THAT(
      Decide("dr-fl", *held, v1::Decision::CONFIRM, "private note: BP fine"),
      IsOk());
  v = View(ket);
  EXPECT_EQ(v.route(), common::v1::KETAMINE_REVIEW);
  EXPECT_FALSE(v.pending_review());
  EXPECT_THAT(v.message(), HasSubstr("in-person evaluation"));
  EXPECT_THAT(v.message(), ::testing::Not(HasSubstr("private note")))
      << "never internal notes";

  auto req = Request("p-help", common::v1::SELF_HELP);
  auto* item = req.mutable_result()->mutable_routing()->add_self_help_plan();
  item->set_id("rest_window");
  item->set_title("A 24-hour rest window");
  ASSERT_THAT(
      core_->CreateReferral(req, Actor{"intake", "service", {}}, Soon()),
      IsOk());
  v1::GetMyReferralRequest mine;
  mine.set_screening(req.screening());
  auto help = core_->GetMyReferral(mine, Soon());
  ASSERT_THAT(help, IsOk());
  EXPECT_EQ(help->route(), common::v1::SELF_HELP);
  EXPECT_FALSE(help->pending_review());
  ASSERT_EQ(help->self_help_plan_size(), 1);

  v1::Referral crisis = Make("p-crisis", common::v1::CRISIS_URGENT);
  EXPECT_THAT(View(crisis).message(), HasSubstr("988"));

  // Another person's screening answers like a missing one.
  mine.set_screening("users/mallory/screenings/p-therapy");
  EXPECT_THAT(core_->GetMyReferral(mine, Soon()),
              StatusIs(absl::StatusCode::kNotFound));
  mine.set_screening("users/u1/screenings/nothing");
  EXPECT_THAT(core_->GetMyReferral(mine, Soon()),
              StatusIs(absl::StatusCode::kNotFound));
}

// The process's one reader of queue events: every watcher takes what is
// after its cursor from the feed's window without Redis; one with nothing
// new registers a wake-up instead of holding a thread; one older than the
// window is told to catch up from Redis.
TEST_F(CaseTest, QueueFeedFansOutEventsAndSaysWhoIsBehind) {
  QueueFeed feed(store_.get(), core_.get(), /*window=*/3);
  feed.Start();
  std::vector<QueueFeed::Event> got;
  const std::string first_cursor = *core_->StartWatch({}, kAll, Soon());
  for (int i = 0; i < 200 && feed.floor().empty(); ++i)
    absl::SleepFor(absl::Milliseconds(10));
  ASSERT_FALSE(feed.floor().empty()) << "the reader resolves where it starts";

  absl::Notification woken;
  EXPECT_EQ(feed.After(feed.floor(), 10, &got, [&] { woken.Notify(); }),
            QueueFeed::Read::kNothingYet);
  EXPECT_EQ(feed.waiting(), 1u);
  Make("f1", common::v1::THERAPY);
  ASSERT_TRUE(woken.WaitForNotificationWithTimeout(absl::Seconds(5)))
      << "a new event wakes the waiting watcher";
  EXPECT_EQ(feed.waiting(), 0u);
  ASSERT_EQ(feed.After(first_cursor, 10, &got, nullptr),
            QueueFeed::Read::kEvents);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, "created");
  ASSERT_NE(got[0].referral, nullptr) << "the case, read once for everyone";
  EXPECT_EQ(got[0].referral->screening(), "users/u1/screenings/f1");
  // Serialized once, for every watcher that sees it: the event as sent.
  ASSERT_NE(got[0].wire, nullptr);
  v1::QueueEvent sent;
  ASSERT_TRUE(sent.ParseFromString(*got[0].wire));
  EXPECT_EQ(sent.cursor(), got[0].cursor);
  EXPECT_EQ(sent.kind(), "created");
  EXPECT_EQ(sent.referral().screening(), "users/u1/screenings/f1");
  const std::string after_f1 = got[0].cursor;

  // Four more events: the window keeps three; a cursor older than it is
  // behind, one inside it gets the rest in order.
  for (const char* id : {"f2", "f3", "f4", "f5"}) {
    Make(id, common::v1::THERAPY);
  }
  for (int i = 0; i < 200; ++i) {
    if (feed.After(after_f1, 10, &got, nullptr) == QueueFeed::Read::kBehind)
      break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(feed.After(after_f1, 10, &got, nullptr), QueueFeed::Read::kBehind);
  EXPECT_EQ(feed.After(feed.floor(), 10, &got, nullptr),
            QueueFeed::Read::kEvents);
  std::vector<std::string> ids;
  for (const auto& e : got) ids.push_back(e.referral->screening());
  EXPECT_THAT(ids, ::testing::ElementsAre("users/u1/screenings/f3",
                                          "users/u1/screenings/f4",
                                          "users/u1/screenings/f5"));
  // At most `max` at a time, oldest first.
  EXPECT_EQ(feed.After(feed.floor(), 2, &got, nullptr),
            QueueFeed::Read::kEvents);
  EXPECT_EQ(got.size(), 2u);
  EXPECT_TRUE(QueueFeed::Older("1-9", "2-0"));
  EXPECT_TRUE(QueueFeed::Older("5-1", "5-2"));
  EXPECT_FALSE(QueueFeed::Older("5-2", "5-2"));
  EXPECT_FALSE(QueueFeed::Older("bad", "5-2"));
}

TEST_F(CaseTest, WatchResumedFromItsCursorMissesNothing) {
  v1::WatchQueueRequest watch;
  auto cursor = core_->StartWatch(watch, kAll, Soon());
  ASSERT_THAT(cursor, IsOk());
  std::vector<std::string> seen;
  auto collect = [&](const v1::QueueEvent& e) {
    seen.push_back(e.kind() + ":" +
                   e.referral().screening().substr(
                       e.referral().screening().rfind('/') + 1));
    return true;
  };
  v1::Referral a = Make("w1", common::v1::THERAPY);
  std::string position = *cursor;
  ASSERT_THAT(core_->WatchStep(watch, kAll, &position, absl::Milliseconds(200),
                               collect, Soon()),
              IsOk());
  EXPECT_THAT(seen, ::testing::ElementsAre("created:w1"));
  // The portal disconnects here, remembering `position`; things happen.
  auto held = Claim("cl-fl", a);
  ASSERT_THAT(held, IsOk());
  Make("w2", common::v1::CRISIS_URGENT);
  ASSERT_THAT(Decide("cl-fl", *held, v1::Decision::CONFIRM), IsOk());
  Make("ny-only", common::v1::THERAPY, "NY");
  // Reconnecting with the cursor: every event since, in order.
  seen.clear();
  for (int i = 0; i < 3 && seen.size() < 4; ++i) {
    ASSERT_THAT(core_->WatchStep(watch, kAll, &position,
                                 absl::Milliseconds(200), collect, Soon()),
                IsOk());
  }
  EXPECT_THAT(seen, ::testing::ElementsAre("claimed:w1", "created:w2",
                                           "decided:w1", "created:ny-only"));
  // A watcher sees only what it may act on.
  std::string fl_position = *cursor;
  seen.clear();
  ASSERT_THAT(core_->WatchStep(watch, As("cl-fl"), &fl_position,
                               absl::Milliseconds(200), collect, Soon()),
              IsOk());
  EXPECT_THAT(seen, ::testing::Not(::testing::Contains("created:ny-only")));
  EXPECT_THAT(
      core_->StartWatch(
          [] {
            v1::WatchQueueRequest w;
            w.set_cursor("nonsense");
            return w;
          }(),
          kAll, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cursor")));
}

// The HTTP gateway's relay stream sees every case, each event with the
// audience the service itself applies; no other service may watch.
TEST_F(CaseTest, TheGatewaysRelayStreamCarriesEachCasesAudience) {
  const Actor gateway{"gateway", "service", {}};
  v1::WatchQueueRequest watch;
  auto cursor = core_->StartWatch(watch, gateway, Soon());
  ASSERT_THAT(cursor, IsOk());
  EXPECT_THAT(core_->StartWatch(watch, Actor{"intake", "service", {}}, Soon()),
              StatusIs(absl::StatusCode::kPermissionDenied));
  Make("ny1", common::v1::THERAPY, "NY");
  Make("ket1", common::v1::KETAMINE_REVIEW, "FL");
  Make("nowhere", common::v1::CRISIS_URGENT, "");
  std::map<std::string, v1::Audience> seen;
  std::string position = *cursor;
  for (int i = 0; i < 3 && seen.size() < 3; ++i) {
    ASSERT_THAT(core_->WatchStep(
                    watch, gateway, &position, absl::Milliseconds(200),
                    [&](const v1::QueueEvent& e) {
                      const std::string& s = e.referral().screening();
                      seen[s.substr(s.rfind('/') + 1)] = e.audience();
                      return true;
                    },
                    Soon()),
                IsOk());
  }
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_THAT(seen["ny1"].states(), ::testing::ElementsAre("NY"));
  EXPECT_FALSE(seen["ny1"].physicians_only());
  EXPECT_FALSE(seen["ny1"].every_state());
  EXPECT_THAT(seen["ket1"].states(), ::testing::ElementsAre("FL"));
  EXPECT_TRUE(seen["ket1"].physicians_only());
  // No state, no triage states configured: only clinicians licensed in
  // every state (ACaseWithNoStateGoesToTheFallbackNeverToEveryone).
  EXPECT_TRUE(seen["nowhere"].every_state());
  EXPECT_EQ(seen["nowhere"].states_size(),
            static_cast<int>(UsStateCodes().size()));
  // A clinician's own stream carries the same audience.
  std::string fl_position = *cursor;
  v1::Audience fl_seen;
  ASSERT_THAT(core_->WatchStep(
                  watch, As("dr-fl"), &fl_position, absl::Milliseconds(200),
                  [&](const v1::QueueEvent& e) {
                    fl_seen = e.audience();
                    return false;
                  },
                  Soon()),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_TRUE(fl_seen.physicians_only());
  EXPECT_THAT(fl_seen.states(), ::testing::ElementsAre("FL"));
}

}  // namespace
}  // namespace aqueduct::referral

namespace aqueduct::referral {
namespace {

// ---- Early risk cases (reference section 10) -----------------------------

class RiskCaseTest : public CaseTest {
 protected:
  absl::StatusOr<v1::Referral> Early(const std::string& id,
                                     common::v1::Route route) {
    clock_.now += absl::Seconds(1);
    v1::CreateReferralRequest req = Request(id, route);
    req.set_unfinished(true);
    v1::RiskAnswer* a = req.add_risk_answers();
    a->set_item_id(route == common::v1::CRISIS_ACUTE ? "asq.5" : "phq9.9");
    a->set_question("the question");
    a->set_answer(route == common::v1::CRISIS_ACUTE ? "Yes" : "Several days");
    return core_->CreateReferral(req, Actor{"intake", "service", {}}, Soon());
  }
  absl::StatusOr<v1::Referral> Completed(const std::string& id,
                                         common::v1::Route route) {
    clock_.now += absl::Seconds(1);
    v1::CreateReferralRequest req = Request(id, route);
    req.mutable_result()->set_ruleset_version("v2");
    req.set_early_risk_raised(true);
    return core_->CreateReferral(req, Actor{"intake", "service", {}}, Soon());
  }
  std::vector<std::string> Events(const std::string& cursor) {
    std::vector<std::string> out;
    std::string at = cursor;
    EXPECT_THAT(core_->WatchStep(
                    v1::WatchQueueRequest(), kAll, &at, absl::Milliseconds(50),
                    [&](const v1::QueueEvent& e) {
                      // (The case as it is now, not as it was then.)
                      out.push_back(e.kind());
                      return true;
                    },
                    Soon()),
                IsOk());
    return out;
  }
};

TEST_F(RiskCaseTest, OneCaseRaisedByLaterAnswersAndCompletedByTheResult) {
  auto cursor = core_->StartWatch(v1::WatchQueueRequest(), kAll, Soon());
  ASSERT_THAT(cursor, IsOk());
  auto early = Early("s1", common::v1::CRISIS_URGENT);
  ASSERT_THAT(early, IsOk());
  EXPECT_EQ(early->name(), "referrals/s1-risk");
  EXPECT_EQ(early->priority(), v1::URGENT);
  EXPECT_TRUE(early->opened_early());
  EXPECT_FALSE(early->screening_finished())
      << "the case says the screening is not finished";
  ASSERT_EQ(early->risk_answers_size(), 1);
  EXPECT_EQ(early->risk_answers(0).answer(), "Several days");
  // A retry changes nothing; a routine case opened later sorts below it.
  ASSERT_THAT(Early("s1", common::v1::CRISIS_URGENT), IsOk());
  ASSERT_THAT(Create("s2", common::v1::CRISIS_URGENT), IsOk());
  auto queue = core_->ListQueue(v1::ListQueueRequest(), kAll, Soon());
  ASSERT_THAT(queue, IsOk());
  EXPECT_THAT(Screenings(*queue), ::testing::ElementsAre("s1", "s2"));

  // An acute answer raises it above every urgent case.
  ASSERT_THAT(Create("s3", common::v1::CRISIS_URGENT), IsOk());
  auto raised = Early("s1", common::v1::CRISIS_ACUTE);
  ASSERT_THAT(raised, IsOk());
  EXPECT_EQ(raised->current_route(), common::v1::CRISIS_ACUTE);
  EXPECT_EQ(raised->risk_answers(0).item_id(), "asq.5");
  auto lower = Early("s1", common::v1::CRISIS_URGENT);
  ASSERT_THAT(lower, IsOk());
  EXPECT_EQ(lower->current_route(), common::v1::CRISIS_ACUTE)
      << "never lowered";

  // Completion attaches the full result (route THERAPY: an answer changed)
  // and keeps the acute route.
  auto done = Completed("s1", common::v1::THERAPY);
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->name(), "referrals/s1-risk") << "one case per screening";
  EXPECT_TRUE(done->screening_finished());
  EXPECT_EQ(done->current_route(), common::v1::CRISIS_ACUTE);
  EXPECT_EQ(done->ruleset_version(), "v2");
  auto again = Completed("s1", common::v1::THERAPY);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->etag(), done->etag())
      << "a retried hand-off changes nothing";
  EXPECT_THAT(
      AuditKinds(*done),
      ::testing::ElementsAre("opened_early_risk:intake", "escalated:intake",
                             "result_attached:intake"));

  v1::ListQueueRequest mine;
  mine.set_screening("users/u1/screenings/s1");
  auto one = core_->ListQueue(mine, kAll, Soon());
  ASSERT_THAT(one, IsOk());
  ASSERT_EQ(one->cases_size(), 1);
  EXPECT_EQ(one->cases(0).name(), "referrals/s1-risk");
  queue = core_->ListQueue(v1::ListQueueRequest(), kAll, Soon());
  ASSERT_THAT(queue, IsOk());
  EXPECT_THAT(Screenings(*queue), ::testing::ElementsAre("s1", "s2", "s3"))
      << "acute first";

  EXPECT_THAT(Events(*cursor),
              ::testing::ElementsAre("created", "created", "created",
                                     "escalated", "updated"));
}

TEST_F(RiskCaseTest, CompletionFirstThenTheLateEarlyDeliveryChangesNothing) {
  auto done = Completed("s1", common::v1::CRISIS_URGENT);
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->name(), "referrals/s1-risk");
  EXPECT_FALSE(done->opened_early());
  EXPECT_TRUE(done->screening_finished());
  auto late = Early("s1", common::v1::CRISIS_ACUTE);
  ASSERT_THAT(late, IsOk());
  EXPECT_EQ(late->etag(), done->etag());
  EXPECT_EQ(late->current_route(), common::v1::CRISIS_URGENT)
      << "the finished result decides";
  EXPECT_THAT(AuditKinds(*late), ::testing::ElementsAre("created:intake"));
}

TEST_F(RiskCaseTest, AnAcuteAnswerReopensADecidedCase) {
  auto early = Early("s1", common::v1::CRISIS_URGENT);
  ASSERT_THAT(early, IsOk());
  v1::ClaimCaseRequest claim;
  claim.set_name(early->name());
  auto held = core_->ClaimCase(claim, kAll, Soon());
  ASSERT_THAT(held, IsOk());
  v1::DecideCaseRequest decide;
  decide.set_name(early->name());
  decide.set_etag(held->etag());
  decide.set_request_id("d1");
  decide.mutable_decision()->set_action(v1::Decision::CONFIRM);
  decide.mutable_decision()->set_reason("called, safety plan made");
  ASSERT_THAT(core_->DecideCase(decide, kAll, Soon()), IsOk());
  auto raised = Early("s1", common::v1::CRISIS_ACUTE);
  ASSERT_THAT(raised, IsOk());
  EXPECT_EQ(raised->state(), v1::OPEN)
      << "imminent risk goes back to the queue";
  EXPECT_EQ(raised->current_route(), common::v1::CRISIS_ACUTE);
  auto queue = core_->ListQueue(v1::ListQueueRequest(), kAll, Soon());
  ASSERT_THAT(queue, IsOk());
  EXPECT_THAT(Screenings(*queue), ::testing::ElementsAre("s1"));
}

TEST_F(RiskCaseTest, BadRiskRequestsNameWhatIsWrong) {
  EXPECT_THAT(Early("s1", common::v1::THERAPY),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("CRISIS_URGENT or CRISIS_ACUTE")));
  EXPECT_THAT(Create("s1", common::v1::UNDER_PHYSICIAN_REVIEW),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("UNDER_PHYSICIAN_REVIEW")));
  v1::CreateReferralsRequest batch;
  *batch.add_requests() = Request("s1", common::v1::CRISIS_URGENT);
  batch.mutable_requests(0)->set_unfinished(true);
  EXPECT_THAT(
      core_->CreateReferrals(batch, Actor{"rescore", "batch", {}}, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("requests[0].unfinished")));
  v1::ListQueueRequest bad;
  bad.set_screening("s1");
  EXPECT_THAT(
      core_->ListQueue(bad, kAll, Soon()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("screening")));
}

}  // namespace
}  // namespace aqueduct::referral
