// PHQ-9 scoring against reference section 2, 3 and 7: every band edge,
// safety flags, incompleteness, routing and determinism.

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/scoring/scoring_engine.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::scoring {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;

class Phq9Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto catalog = CatalogIndex::LoadFile(
        aqueduct::testing::SourcePath("data/catalog/catalog.textproto"));
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    engine_ = new ScoringEngine(*catalog);
  }
  static void TearDownTestSuite() { delete engine_; }

  // Items 1..9 then item 10 (difficulty); -1 leaves an item unanswered.
  static v1::ScoreAnswersRequest Request(const std::vector<int>& values) {
    v1::ScoreAnswersRequest req;
    for (size_t i = 0; i < values.size(); ++i) {
      if (values[i] < 0) continue;
      auto* a = req.mutable_answers()->add_answers();
      a->set_item_id("phq9." + std::to_string(i + 1));
      a->set_option_value(values[i]);
    }
    req.add_administered_instruments("phq9");
    return req;
  }
  static const v1::InstrumentScore& Phq9(const v1::ScoringResult& r) {
    for (const auto& s : r.scores()) {
      if (s.instrument_id() == "phq9") return s;
    }
    static v1::InstrumentScore none;
    return none;
  }
  static double Derived(const v1::InstrumentScore& s, const std::string& name) {
    for (const auto& d : s.derived()) {
      if (d.name() == name) return d.value();
    }
    return -1;
  }
  static const v1::RuleEvaluation* Rule(const v1::ScoringResult& r, const std::string& id) {
    for (const auto& rule : r.rules()) {
      if (rule.rule_id() == id) return &rule;
    }
    return nullptr;
  }

  static ScoringEngine* engine_;
};
ScoringEngine* Phq9Test::engine_ = nullptr;

// Answers 1..8 summing to `total - item9`, item 9 = `item9`, difficulty 0.
std::vector<int> WithTotal(int total, int item9 = 0) {
  std::vector<int> v(10, 0);
  int left = total - item9;
  for (int i = 0; i < 8 && left > 0; ++i) {
    v[i] = std::min(3, left);
    left -= v[i];
  }
  v[8] = item9;
  return v;
}

struct BandCase {
  int total;
  const char* band;
  bool positive;
};

class Phq9BandTest : public Phq9Test, public ::testing::WithParamInterface<BandCase> {};

TEST_P(Phq9BandTest, TotalFallsInThePublishedBand) {
  auto result = engine_->Score(Request(WithTotal(GetParam().total)));
  ASSERT_THAT(result, IsOk());
  const auto& s = Phq9(*result);
  EXPECT_EQ(s.completeness(), v1::COMPLETE);
  EXPECT_EQ(s.total(), GetParam().total);
  EXPECT_EQ(s.band(), GetParam().band);
  EXPECT_EQ(s.screen_positive(), GetParam().positive);
  EXPECT_EQ(s.loinc_total(), "44261-6");
}

INSTANTIATE_TEST_SUITE_P(
    EveryBandEdge, Phq9BandTest,
    ::testing::Values(BandCase{0, "minimal", false}, BandCase{4, "minimal", false},
                      BandCase{5, "mild", false}, BandCase{9, "mild", false},
                      BandCase{10, "moderate", true}, BandCase{14, "moderate", true},
                      BandCase{15, "moderately_severe", true},
                      BandCase{19, "moderately_severe", true},
                      BandCase{20, "severe", true}, BandCase{24, "severe", true}),
    [](const auto& info) { return "total_" + std::to_string(info.param.total); });

TEST_F(Phq9Test, MaximumTotalIs27AndSevere) {
  auto result = engine_->Score(Request({3, 3, 3, 3, 3, 3, 3, 3, 3, 3}));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(Phq9(*result).total(), 27);
  EXPECT_EQ(Phq9(*result).band(), "severe");
}

TEST_F(Phq9Test, DifficultyItemIsNotScored) {
  auto a = engine_->Score(Request({1, 1, 1, 1, 0, 0, 0, 0, 0, 0}));
  auto b = engine_->Score(Request({1, 1, 1, 1, 0, 0, 0, 0, 0, 3}));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(Phq9(*a).total(), 4);
  EXPECT_EQ(Phq9(*b).total(), 4);
}

TEST_F(Phq9Test, Item9AboveZeroFlagsCrisisWithResourcesAtOnce) {
  for (int item9 : {1, 2, 3}) {
    auto result = engine_->Score(Request(WithTotal(item9, item9)));
    ASSERT_THAT(result, IsOk());
    ASSERT_EQ(result->safety_flags_size(), 1);
    EXPECT_EQ(result->safety_flags(0).kind(), v1::PHQ9_ITEM9_POSITIVE);
    EXPECT_EQ(result->routing().primary_route(), common::v1::CRISIS_URGENT);
    EXPECT_EQ(result->routing().required_reviewer(), common::v1::CLINICIAN);
    ASSERT_TRUE(result->has_crisis_resources());
    ASSERT_GE(result->crisis_resources().contacts_size(), 2);
    EXPECT_THAT(result->crisis_resources().contacts(0).how(), HasSubstr("988"));
    EXPECT_THAT(result->crisis_resources().contacts(1).how(), HasSubstr("911"));
    const auto* rule = Rule(*result, "route.crisis_urgent");
    ASSERT_NE(rule, nullptr);
    EXPECT_TRUE(rule->fired());
    EXPECT_EQ(rule->threshold(), "phq9.9 > 0");
  }
}

TEST_F(Phq9Test, Item9ZeroSetsNoFlagAndNoResources) {
  auto result = engine_->Score(Request(WithTotal(12)));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->safety_flags_size(), 0);
  EXPECT_FALSE(result->has_crisis_resources());
}

TEST_F(Phq9Test, Item9CountsEvenWhenOtherItemsAreMissing) {
  auto result = engine_->Score(Request({-1, -1, -1, -1, -1, -1, -1, -1, 1, -1}));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(Phq9(*result).completeness(), v1::INCOMPLETE);
  EXPECT_EQ(result->routing().primary_route(), common::v1::CRISIS_URGENT);
  EXPECT_TRUE(result->has_crisis_resources());
}

TEST_F(Phq9Test, MissingItemIsIncompleteNeverALowScore) {
  auto result = engine_->Score(Request({0, 0, 0, -1, 0, 0, 0, 0, 0, 0}));
  ASSERT_THAT(result, IsOk());
  const auto& s = Phq9(*result);
  EXPECT_EQ(s.completeness(), v1::INCOMPLETE);
  EXPECT_EQ(s.total(), 0);
  EXPECT_EQ(s.band(), "");
  EXPECT_THAT(s.missing_item_ids(), ::testing::ElementsAre("phq9.4"));
  EXPECT_NE(result->routing().primary_route(), common::v1::SELF_HELP)
      << "an incomplete screen must not be routed as low";
}

TEST_F(Phq9Test, DeclinedItemMakesItIncomplete) {
  auto req = Request({0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  req.mutable_answers()->mutable_answers(2)->set_declined(true);
  auto result = engine_->Score(req);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(Phq9(*result).completeness(), v1::INCOMPLETE);
}

TEST_F(Phq9Test, NotAdministeredIsReportedAsSuch) {
  v1::ScoreAnswersRequest req;
  auto result = engine_->Score(req);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(Phq9(*result).completeness(), v1::NOT_ADMINISTERED);
}

TEST_F(Phq9Test, ProvisionalMajorDepressiveSyndromeCount) {
  // Items 1, 3, 4, 5 at 2 and item 9 at 1: five symptoms, core item 1.
  auto result = engine_->Score(Request({2, 0, 2, 2, 2, 0, 0, 0, 1, 0}));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(Derived(Phq9(*result), "phq9.mdd_symptom_count"), 5);
  EXPECT_EQ(Derived(Phq9(*result), "phq9.provisional_mdd"), 1);
  // Five symptoms but neither item 1 nor 2: not provisional MDD.
  result = engine_->Score(Request({1, 1, 2, 2, 2, 2, 2, 0, 0, 0}));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(Derived(Phq9(*result), "phq9.mdd_symptom_count"), 5);
  EXPECT_EQ(Derived(Phq9(*result), "phq9.provisional_mdd"), 0);
  // A "several days" answer (1) does not count for items 1-8.
  result = engine_->Score(Request({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(Derived(Phq9(*result), "phq9.mdd_symptom_count"), 0);
}

TEST_F(Phq9Test, RoutesTherapyOnDepressionSignals) {
  auto result = engine_->Score(Request(WithTotal(10)));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->profile(), v1::DEPRESSION);
  EXPECT_EQ(result->routing().primary_route(), common::v1::THERAPY);
  EXPECT_TRUE(Rule(*result, "profile.depression")->fired());
  // Total 9 is not enough on its own...
  result = engine_->Score(Request(WithTotal(9)));
  EXPECT_NE(result->profile(), v1::DEPRESSION);
  EXPECT_EQ(result->routing().primary_route(), common::v1::SELF_HELP);
  // ...but low mood >= 2 with total >= 5 and "very difficult" is.
  result = engine_->Score(Request({0, 2, 1, 1, 1, 0, 0, 0, 0, 2}));
  EXPECT_EQ(Phq9(*result).total(), 5);
  EXPECT_EQ(result->profile(), v1::DEPRESSION);
  EXPECT_EQ(result->routing().primary_route(), common::v1::THERAPY);
}

TEST_F(Phq9Test, LowScoreRoutesSelfHelpWithPlanAndNoReview) {
  auto result = engine_->Score(Request(WithTotal(3)));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->routing().primary_route(), common::v1::SELF_HELP);
  EXPECT_EQ(result->routing().required_reviewer(), common::v1::REVIEWER_ROLE_UNSPECIFIED);
  EXPECT_GE(result->routing().self_help_plan_size(), 1);
  EXPECT_EQ(result->routing().rescreen_after_days(), 14);
}

TEST_F(Phq9Test, ResultExplainsEveryRuleWithVersion) {
  auto result = engine_->Score(Request(WithTotal(12)));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->ruleset_version(), "v0-skeleton");
  EXPECT_EQ(result->catalog_version(), "2026-11.0");
  ASSERT_EQ(result->rules_size(), 4);
  int fired = 0;
  for (const auto& r : result->rules()) {
    EXPECT_FALSE(r.threshold().empty()) << r.rule_id();
    EXPECT_FALSE(r.inputs().empty()) << r.rule_id();
    fired += r.fired() && r.rule_id().rfind("route.", 0) == 0;
  }
  EXPECT_EQ(fired, 1) << "exactly one route rule fires";
}

TEST_F(Phq9Test, SameAnswersGiveByteIdenticalResults) {
  auto req = Request({2, 1, 3, 0, 1, 2, 0, 1, 1, 2});
  auto a = engine_->Score(req);
  auto b = engine_->Score(req);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->SerializeAsString(), b->SerializeAsString());
}

TEST_F(Phq9Test, BadInputNamesTheField) {
  auto req = Request({0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  req.mutable_answers()->mutable_answers(3)->set_option_value(4);
  EXPECT_THAT(engine_->Score(req),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("answers.answers[3].option_value")));
  req = Request({0});
  req.mutable_answers()->mutable_answers(0)->set_item_id("phq9.11");
  EXPECT_THAT(engine_->Score(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("answers.answers[0].item_id")));
  req = Request({0, 0});
  req.mutable_answers()->mutable_answers(1)->set_item_id("phq9.1");
  EXPECT_THAT(engine_->Score(req),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("answered twice")));
  req = Request({0});
  req.add_administered_instruments("mbi");
  EXPECT_THAT(engine_->Score(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("administered_instruments[1]")));
}

TEST_F(Phq9Test, UnknownRulesetIsNotFound) {
  auto req = Request(WithTotal(3));
  req.set_ruleset_version("v9");
  EXPECT_THAT(engine_->Score(req),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("ruleset_version")));
  req.set_ruleset_version("v0-skeleton");
  EXPECT_THAT(engine_->Score(req), IsOk());
}

}  // namespace
}  // namespace aqueduct::scoring
