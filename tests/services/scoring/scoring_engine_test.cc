// Scoring against shared/clinical/reference.md with the repository's
// catalog and ruleset v1: instrument scoring at every band edge, safety
// flags, applicability, the profile, every route rule and its priority,
// properties over generated answer sets, and versioned rulesets.

#include "services/scoring/scoring_engine.h"

#include <google/protobuf/arena.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/scoring/packed_answers.h"
#include "tests/testing/process.h"
#include "tests/testing/scoring_fixture.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::scoring {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;
using tools::Overrides;

// This suite pins ruleset v1 (what it documents; v2 has its own suite).
class ScoringTest : public aqueduct::testing::ScoringFixture {
 protected:
  static v1::ScoringResult Screen(Overrides overrides,
                                  const std::string& ruleset = "v1") {
    return ScreenUnder(std::move(overrides), ruleset);
  }
  // Answers for the listed items only ("item=value").
  static v1::ScoreAnswersRequest Direct(const Overrides& answers) {
    return DirectUnder(answers, "v1");
  }
  // Every item of `instrument` answered so the scored items sum to `total`
  // (filled in order at the highest option), others at their lowest.
  static Overrides WithTotal(const std::string& instrument, int total) {
    Overrides out;
    const auto* ins = engine_->catalog().FindInstrument(instrument);
    int left = total;
    for (const auto& item : ins->items()) {
      int max = 0;
      for (const auto& o : item.options()) max = std::max(max, o.value());
      int v = item.unscored() ? 0 : std::min(max, left);
      if (!item.unscored()) left -= v;
      out[item.id()] = std::to_string(v);
    }
    return out;
  }
  static double Derived(const v1::InstrumentScore& s, const std::string& name) {
    for (const auto& d : s.derived()) {
      if (d.name() == name) return d.value();
    }
    return -1;
  }
  static const v1::RuleEvaluation* Rule(const v1::ScoringResult& r,
                                        const std::string& id) {
    for (const auto& rule : r.rules()) {
      if (rule.rule_id() == id) return &rule;
    }
    return nullptr;
  }
};

// ---- Band edges of every summed instrument ---------------------------------

struct Edge {
  const char* instrument;
  int total;
  const char* band;
  bool positive;
};
class SumBandTest : public ScoringTest,
                    public ::testing::WithParamInterface<Edge> {};

TEST_P(SumBandTest, TotalBandAndScreenPositivity) {
  const Edge& e = GetParam();
  auto result = engine_->Score(Direct(WithTotal(e.instrument, e.total)));
  ASSERT_THAT(result, IsOk());
  const auto& s = Score(*result, e.instrument);
  EXPECT_EQ(s.completeness(), v1::COMPLETE);
  EXPECT_EQ(s.total(), e.total);
  EXPECT_EQ(s.band(), e.band);
  EXPECT_EQ(s.screen_positive(), e.positive);
}

INSTANTIATE_TEST_SUITE_P(
    Phq9AndGad7, SumBandTest,
    ::testing::Values(
        Edge{"phq9", 0, "minimal", false}, Edge{"phq9", 4, "minimal", false},
        Edge{"phq9", 5, "mild", false}, Edge{"phq9", 9, "mild", false},
        Edge{"phq9", 10, "moderate", true}, Edge{"phq9", 14, "moderate", true},
        Edge{"phq9", 15, "moderately_severe", true},
        Edge{"phq9", 19, "moderately_severe", true},
        Edge{"phq9", 20, "severe", true}, Edge{"phq9", 27, "severe", true},
        Edge{"gad7", 0, "minimal", false}, Edge{"gad7", 4, "minimal", false},
        Edge{"gad7", 5, "mild", false}, Edge{"gad7", 9, "mild", false},
        Edge{"gad7", 10, "moderate", true}, Edge{"gad7", 14, "moderate", true},
        Edge{"gad7", 15, "severe", true}, Edge{"gad7", 21, "severe", true}),
    [](const auto& info) {
      return std::string(info.param.instrument) + "_" +
             std::to_string(info.param.total);
    });

struct ShortEdge {
  const char* first;
  const char* second;
  const char* name;
  int item1, item2;
  bool positive;
};
class ShortFormTest : public ScoringTest,
                      public ::testing::WithParamInterface<ShortEdge> {};

TEST_P(ShortFormTest, TwoOrThreeIsTheCutOff) {
  const auto& p = GetParam();
  const std::string parent =
      std::string(p.first).substr(0, std::string(p.first).find('.'));
  Overrides o = WithTotal(parent, 0);
  o[p.first] = std::to_string(p.item1);
  o[p.second] = std::to_string(p.item2);
  auto result = engine_->Score(Direct(o));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(Derived(Score(*result, parent), std::string(p.name) + ".total"),
            p.item1 + p.item2);
  // What rules see: <name>.positive.
  const auto& schema = engine_->newest().schema();
  std::vector<expr::Value> values(schema.size());
  v1::ScoringResult scores;
  auto req = Direct(o);
  ASSERT_THAT(engine_->catalog().ScoreInstruments(
                  req.answers().answers(), req.administered_instruments(),
                  engine_->newest().sets(), values.data(), &scores),
              IsOk());
  int slot = -1;
  ASSERT_NE(schema.Find(std::string(p.name) + ".positive", &slot), nullptr);
  EXPECT_EQ(values[slot].kind, expr::Value::Kind::kBool);
  EXPECT_EQ(values[slot].boolean, p.positive);
}

INSTANTIATE_TEST_SUITE_P(
    Phq2AndGad2, ShortFormTest,
    ::testing::Values(ShortEdge{"phq9.1", "phq9.2", "phq2", 1, 1, false},
                      ShortEdge{"phq9.1", "phq9.2", "phq2", 2, 1, true},
                      ShortEdge{"gad7.1", "gad7.2", "gad2", 2, 0, false},
                      ShortEdge{"gad7.1", "gad7.2", "gad2", 0, 3, true}),
    [](const auto& info) {
      return std::string(info.param.name) + "_" +
             std::to_string(info.param.item1 + info.param.item2);
    });

TEST_F(ScoringTest, ShortFormPositivityDrivesRules) {
  // PHQ-2 >= 3 is available to rules: check it through an expression.
  expr::Schema schema = engine_->newest().schema();
  auto e = expr::Expr::Compile("phq2.positive && gad2.positive", schema);
  ASSERT_THAT(e, IsOk());
  Overrides o = WithTotal("phq9", 0);
  o["phq9.1"] = "2";
  o["phq9.2"] = "1";
  for (auto& [k, v] : WithTotal("gad7", 0)) o[k] = v;
  o["gad7.1"] = "3";
  std::vector<expr::Value> values(schema.size());
  v1::ScoringResult scores;
  auto req = Direct(o);
  ASSERT_THAT(engine_->catalog().ScoreInstruments(
                  req.answers().answers(), req.administered_instruments(),
                  engine_->newest().sets(), values.data(), &scores),
              IsOk());
  EXPECT_EQ(e->Eval(values.data(), engine_->newest().sets()),
            expr::Truth::kTrue);
  values.assign(schema.size(), expr::Value::Unknown());
  o["phq9.2"] = "0";
  req = Direct(o);
  ASSERT_THAT(engine_->catalog().ScoreInstruments(
                  req.answers().answers(), req.administered_instruments(),
                  engine_->newest().sets(), values.data(), &scores),
              IsOk());
  EXPECT_EQ(e->Eval(values.data(), engine_->newest().sets()),
            expr::Truth::kFalse);
}

// ---- AUDIT-C threshold by sex ----------------------------------------------

struct AuditCase {
  const char* sex;  // "" = not answered
  int total;
  bool positive;
};
class AuditCTest : public ScoringTest,
                   public ::testing::WithParamInterface<AuditCase> {};

TEST_P(AuditCTest, FourForMenThreeForEveryoneElse) {
  Overrides o = WithTotal("auditc", GetParam().total);
  if (*GetParam().sex) o["ctx.sex"] = GetParam().sex;
  auto result = engine_->Score(Direct(o));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(Score(*result, "auditc").total(), GetParam().total);
  EXPECT_EQ(Score(*result, "auditc").screen_positive(), GetParam().positive);
}

INSTANTIATE_TEST_SUITE_P(
    BySex, AuditCTest,
    ::testing::Values(AuditCase{"male", 3, false}, AuditCase{"male", 4, true},
                      AuditCase{"female", 2, false},
                      AuditCase{"female", 3, true},
                      AuditCase{"another", 3, true},
                      AuditCase{"not_stated", 3, true},
                      AuditCase{"not_stated", 2, false}, AuditCase{"", 3, true},
                      AuditCase{"male", 12, true}),
    [](const auto& info) {
      return std::string(*info.param.sex ? info.param.sex : "unanswered") +
             "_" + std::to_string(info.param.total);
    });

// ---- CBI means, bands, reverse scoring
// ---------------------------------------

struct CbiCase {
  std::vector<int> values;
  double mean;
  const char* band;
};
class CbiTest : public ScoringTest,
                public ::testing::WithParamInterface<CbiCase> {};

TEST_P(CbiTest, MeanOfItemsAndBand) {
  Overrides o;
  for (size_t i = 0; i < GetParam().values.size(); ++i) {
    o["cbi_personal." + std::to_string(i + 1)] =
        std::to_string(GetParam().values[i]);
  }
  auto result = engine_->Score(Direct(o));
  ASSERT_THAT(result, IsOk());
  const auto& s = Score(*result, "cbi_personal");
  EXPECT_EQ(s.completeness(), v1::COMPLETE);
  EXPECT_NEAR(s.mean(), GetParam().mean, 0.01);
  EXPECT_EQ(s.band(), GetParam().band);
}

INSTANTIATE_TEST_SUITE_P(
    ReachableEdges, CbiTest,
    ::testing::Values(CbiCase{{0, 0, 0, 0, 0, 0}, 0, "low"},
                      CbiCase{{50, 50, 50, 50, 50, 25}, 45.83, "low"},
                      CbiCase{{50, 50, 50, 50, 50, 50}, 50, "moderate"},
                      CbiCase{{75, 75, 75, 75, 75, 50}, 70.83, "moderate"},
                      CbiCase{{75, 75, 75, 75, 75, 75}, 75, "high"},
                      CbiCase{{100, 100, 100, 100, 100, 75}, 95.83, "high"},
                      CbiCase{{100, 100, 100, 100, 100, 100}, 100, "severe"}));

TEST_F(ScoringTest, CbiWorkItem7IsReverseScored) {
  Overrides o = {{"ctx.works", "yes"}};
  for (int i = 1; i <= 6; ++i) o["cbi_work." + std::to_string(i)] = "0";
  o["cbi_work.7"] = "100";  // "Always" has enough energy: no burnout
  auto result = engine_->Score(Direct(o));
  ASSERT_THAT(result, IsOk());
  EXPECT_NEAR(Score(*result, "cbi_work").mean(), 0, 1e-9);
  o["cbi_work.7"] = "0";  // "Never or almost never": burnout
  result = engine_->Score(Direct(o));
  ASSERT_THAT(result, IsOk());
  EXPECT_NEAR(Score(*result, "cbi_work").mean(), 100.0 / 7, 0.01);
}

TEST_F(ScoringTest, MissingCbiItemIsIncomplete) {
  Overrides o;
  for (int i = 1; i <= 5; ++i) o["cbi_personal." + std::to_string(i)] = "100";
  auto result = engine_->Score(Direct(o));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(Score(*result, "cbi_personal").completeness(), v1::INCOMPLETE);
  EXPECT_EQ(Score(*result, "cbi_personal").band(), "");
}

// ---- PHQ-9 specifics -------------------------------------------------------

TEST_F(ScoringTest, Phq9DifficultyItemIsNotScored) {
  Overrides o = WithTotal("phq9", 4);
  o["phq9.10"] = "3";
  auto result = engine_->Score(Direct(o));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(Score(*result, "phq9").total(), 4);
}

TEST_F(ScoringTest, Phq9ProvisionalMajorDepressiveSyndrome) {
  Overrides o = WithTotal("phq9", 0);
  for (const char* id : {"phq9.1", "phq9.3", "phq9.4", "phq9.5"}) o[id] = "2";
  o["phq9.9"] = "1";
  auto result = engine_->Score(Direct(o));
  EXPECT_EQ(Derived(Score(*result, "phq9"), "phq9.mdd_count"), 5);
  EXPECT_EQ(Derived(Score(*result, "phq9"), "phq9.provisional_mdd"), 1);
  o = WithTotal("phq9", 0);
  for (const char* id : {"phq9.3", "phq9.4", "phq9.5", "phq9.6", "phq9.7"})
    o[id] = "2";
  result = engine_->Score(Direct(o));
  EXPECT_EQ(Derived(Score(*result, "phq9"), "phq9.mdd_count"), 5);
  EXPECT_EQ(Derived(Score(*result, "phq9"), "phq9.provisional_mdd"), 0)
      << "no core symptom";
  o = WithTotal("phq9", 0);
  for (int i = 1; i <= 8; ++i) o["phq9." + std::to_string(i)] = "1";
  result = engine_->Score(Direct(o));
  EXPECT_EQ(Derived(Score(*result, "phq9"), "phq9.mdd_count"), 0)
      << "'several days' does not count";
}

TEST_F(ScoringTest, IncompletePhq9IsNeverALowScore) {
  Overrides o = WithTotal("phq9", 0);
  o.erase("phq9.4");
  auto result = engine_->Score(Direct(o));
  ASSERT_THAT(result, IsOk());
  const auto& s = Score(*result, "phq9");
  EXPECT_EQ(s.completeness(), v1::INCOMPLETE);
  EXPECT_EQ(s.total(), 0);
  EXPECT_EQ(s.band(), "");
  EXPECT_FALSE(s.screen_positive());
  EXPECT_THAT(s.missing_item_ids(), ::testing::ElementsAre("phq9.4"));
  // Full screening with a declined PHQ-9 item: never self-help.
  auto screened = Screen({{"phq9.4", "declined"}});
  EXPECT_EQ(Score(screened, "phq9").completeness(), v1::INCOMPLETE);
  EXPECT_EQ(screened.profile(), v1::PROFILE_INCOMPLETE);
  EXPECT_EQ(RouteOf(screened), common::v1::THERAPY);
  EXPECT_NE(RouteOf(screened), common::v1::SELF_HELP);
  EXPECT_TRUE(HasSecondary(screened, "undecided.route.self_help") ||
              HasSecondary(screened, "undecided.route.therapy"));
}

// ---- Applicability and the ASQ branch
// ----------------------------------------

TEST_F(ScoringTest, AnswersToItemsThatDoNotApplyAreRejectedByName) {
  Overrides o = {{"ctx.works", "no"}, {"cbi_work.1", "50"}};
  EXPECT_THAT(engine_->Score(Direct(o)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("cbi_work.1"),
                                        HasSubstr("does not apply"))));
  o = {{"ctx.works", "yes"},
       {"ctx.works_with_clients", "no"},
       {"cbi_client.2", "50"}};
  EXPECT_THAT(
      engine_->Score(Direct(o)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cbi_client.2")));
  o = {{"ctx.works", "no"}, {"ctx.works_with_clients", "yes"}};
  EXPECT_THAT(engine_->Score(Direct(o)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ctx.works_with_clients")));
}

TEST_F(ScoringTest, AsqItem5OnlyAfterAYes) {
  Overrides o = {{"asq.1", "no"},
                 {"asq.2", "no"},
                 {"asq.3", "no"},
                 {"asq.4", "no"},
                 {"asq.5", "no"}};
  EXPECT_THAT(engine_->Score(Direct(o)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("asq.5"),
                                        HasSubstr("does not apply"))));
  o["asq.3"] = "yes";
  auto result = engine_->Score(Direct(o));
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(Score(*result, "asq").screen_positive());
  o["asq.3"] = "declined";  // refusing to answer counts as a yes
  result = engine_->Score(Direct(o));
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(Score(*result, "asq").screen_positive());
}

TEST_F(ScoringTest, InvalidInputNamesTheField) {
  auto req = Direct(WithTotal("phq9", 0));
  req.mutable_answers()->mutable_answers(3)->set_option_value(4);
  EXPECT_THAT(engine_->Score(req),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("answers.answers[3].option_value")));
  req = Direct(WithTotal("phq9", 0));
  req.mutable_answers()->mutable_answers(0)->set_item_id("phq9.11");
  EXPECT_THAT(engine_->Score(req),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("answers.answers[0].item_id")));
  req = Direct(WithTotal("phq9", 0));
  req.mutable_answers()->mutable_answers(1)->set_item_id("phq9.1");
  EXPECT_THAT(engine_->Score(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("answered twice")));
  req = Direct(WithTotal("phq9", 0));
  req.add_administered_instruments("mbi");
  EXPECT_THAT(engine_->Score(req),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("administered_instruments[0]")));
  req = Direct({{"ctx.age", "200"}});
  EXPECT_THAT(engine_->Score(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("integer_value")));
}

// ---- Safety ---------------------------------------------------------------

TEST_F(ScoringTest, Item9WithNegativeAsqIsCrisisUrgentNeverCleared) {
  auto r = Screen({{"phq9.9", "1"}});
  EXPECT_EQ(Score(r, "asq").completeness(), v1::COMPLETE)
      << "the flow asked the ASQ";
  EXPECT_FALSE(Score(r, "asq").screen_positive());
  EXPECT_TRUE(HasFlag(r, v1::PHQ9_ITEM9_POSITIVE));
  EXPECT_TRUE(HasFlag(r, v1::ITEM9_WITH_NEGATIVE_ASQ));
  EXPECT_TRUE(HasSecondary(r, "item9_negative_asq"));
  EXPECT_EQ(RouteOf(r), common::v1::CRISIS_URGENT);
  ASSERT_TRUE(r.has_crisis_resources());
  EXPECT_THAT(r.crisis_resources().contacts(0).how(), HasSubstr("988"));
  EXPECT_THAT(r.crisis_resources().contacts(1).how(), HasSubstr("911"));
}

TEST_F(ScoringTest, AsqNonAcuteAndAcute) {
  auto r = Screen({{"phq9.9", "2"}, {"asq.2", "yes"}, {"asq.5", "no"}});
  EXPECT_TRUE(HasFlag(r, v1::ASQ_NON_ACUTE_POSITIVE));
  EXPECT_FALSE(HasFlag(r, v1::ASQ_ACUTE_POSITIVE));
  EXPECT_EQ(RouteOf(r), common::v1::CRISIS_URGENT);
  r = Screen({{"phq9.9", "2"}, {"asq.2", "yes"}, {"asq.5", "yes"}});
  EXPECT_TRUE(HasFlag(r, v1::ASQ_ACUTE_POSITIVE));
  EXPECT_EQ(RouteOf(r), common::v1::CRISIS_ACUTE);
  EXPECT_EQ(r.routing().required_reviewer(), common::v1::CLINICIAN);
  EXPECT_TRUE(r.has_crisis_resources());
}

TEST_F(ScoringTest, DeclinedItem9ShowsCrisisResourcesAndAsksForReview) {
  auto r = Screen({{"phq9.9", "declined"}});
  EXPECT_EQ(Score(r, "asq").completeness(), v1::COMPLETE)
      << "the ASQ is asked when item 9 is declined";
  EXPECT_TRUE(r.has_crisis_resources());
  EXPECT_EQ(RouteOf(r), common::v1::THERAPY);
  EXPECT_TRUE(HasSecondary(r, "undecided.route.crisis_urgent"));
  const auto* rule = Rule(r, "route.crisis_urgent");
  ASSERT_NE(rule, nullptr);
  EXPECT_TRUE(rule->undecided());
}

// Found by the generated-answer property below: an ASQ that was never given
// must not push item 9 > 0 below CRISIS_URGENT.
TEST_F(ScoringTest, Item9WithMissingAsqStaysCrisisUrgent) {
  Overrides o = WithTotal("phq9", 0);
  o["phq9.9"] = "1";
  auto r =
      engine_->Score(Direct(o));  // PHQ-9 only: the ASQ was expected, not given
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(Score(*r, "asq").completeness(), v1::NOT_ADMINISTERED);
  EXPECT_EQ(RouteOf(*r), common::v1::CRISIS_URGENT);
  EXPECT_TRUE(HasSecondary(*r, "undecided.route.crisis_acute"));
  EXPECT_TRUE(r->has_crisis_resources());
  const auto* acute = Rule(*r, "route.crisis_acute");
  ASSERT_NE(acute, nullptr);
  EXPECT_TRUE(acute->undecided());
}

TEST_F(ScoringTest, NoRiskNoCrisisResources) {
  auto r = Screen({});
  EXPECT_EQ(r.safety_flags_size(), 0);
  EXPECT_FALSE(r.has_crisis_resources());
}

// ---- Profile and routes -----------------------------------------------------

Overrides CbiPersonalAt(int value) {
  Overrides o;
  for (int i = 1; i <= 6; ++i)
    o["cbi_personal." + std::to_string(i)] = std::to_string(value);
  return o;
}

TEST_F(ScoringTest, LowProfileGetsSelfHelpAtOnce) {
  auto r = Screen({});
  EXPECT_EQ(r.profile(), v1::LOW);
  EXPECT_EQ(RouteOf(r), common::v1::SELF_HELP);
  EXPECT_EQ(r.routing().required_reviewer(),
            common::v1::REVIEWER_ROLE_UNSPECIFIED);
  EXPECT_EQ(r.routing().rescreen_after_days(), 14);
  std::vector<std::string> plan;
  for (const auto& p : r.routing().self_help_plan()) plan.push_back(p.id());
  EXPECT_THAT(plan, ::testing::Contains("checkin_5min"));
  EXPECT_THAT(plan, ::testing::Not(::testing::Contains("energy_inventory")));
}

TEST_F(ScoringTest, OverloadProfileGetsSelfHelpForTheConditions) {
  Overrides o = CbiPersonalAt(75);
  o["phq9.4"] = "2";  // tired, but items 1 and 2 low and PHQ-9 < 10
  auto r = Screen(o);
  EXPECT_EQ(r.profile(), v1::OVERLOAD);
  EXPECT_EQ(RouteOf(r), common::v1::SELF_HELP);
  std::vector<std::string> plan;
  for (const auto& p : r.routing().self_help_plan()) plan.push_back(p.id());
  EXPECT_THAT(plan,
              ::testing::IsSupersetOf(
                  {"energy_inventory", "boundary_statement", "rest_window"}));
  std::vector<std::string> signals;
  for (const auto& s : r.profile_signals())
    signals.push_back(s.name() + "=" + s.value());
  EXPECT_THAT(signals, ::testing::Contains("overload_signal=true"));
}

TEST_F(ScoringTest, DepressionAndMixedProfilesGoToTherapy) {
  Overrides dep = {{"phq9.1", "2"}, {"phq9.2", "2"}, {"phq9.3", "2"},
                   {"phq9.4", "2"}, {"phq9.5", "2"}, {"phq9.6", "2"}};
  auto r = Screen(dep);
  EXPECT_EQ(r.profile(), v1::DEPRESSION);
  EXPECT_EQ(RouteOf(r), common::v1::THERAPY);
  std::vector<std::string> modalities;
  for (const auto& m : r.routing().modality_suggestions())
    modalities.push_back(m.modality());
  EXPECT_THAT(modalities, ::testing::Contains("depression_treatment"));
  Overrides mixed = dep;
  for (auto& [k, v] : CbiPersonalAt(75)) mixed[k] = v;
  r = Screen(mixed);
  EXPECT_EQ(r.profile(), v1::MIXED);
  EXPECT_EQ(RouteOf(r), common::v1::THERAPY);
}

TEST_F(ScoringTest, LowMoodWithMarkedDifficultyIsDepressionBelowTen) {
  auto r = Screen(
      {{"phq9.2", "2"}, {"phq9.3", "2"}, {"phq9.4", "1"}, {"phq9.10", "2"}});
  EXPECT_EQ(Score(r, "phq9").total(), 5);
  EXPECT_EQ(r.profile(), v1::DEPRESSION);
  EXPECT_EQ(RouteOf(r), common::v1::THERAPY);
}

struct TherapyTrigger {
  const char* name;
  Overrides answers;
  const char* secondary;  // expected secondary flag, or ""
};
class TherapyTriggerTest
    : public ScoringTest,
      public ::testing::WithParamInterface<TherapyTrigger> {};

TEST_P(TherapyTriggerTest, EachTriggerAloneRoutesToTherapy) {
  auto r = Screen(GetParam().answers);
  EXPECT_EQ(RouteOf(r), common::v1::THERAPY);
  EXPECT_EQ(r.routing().required_reviewer(), common::v1::CLINICIAN);
  const auto* rule = Rule(r, "route.therapy");
  ASSERT_NE(rule, nullptr);
  EXPECT_TRUE(rule->fired());
  EXPECT_FALSE(rule->threshold().empty());
  EXPECT_FALSE(rule->inputs().empty());
  if (*GetParam().secondary) {
    EXPECT_TRUE(HasSecondary(r, GetParam().secondary));
  }
}

INSTANTIATE_TEST_SUITE_P(
    V1, TherapyTriggerTest,
    ::testing::Values(
        TherapyTrigger{"gad7",
                       {{"gad7.1", "3"},
                        {"gad7.2", "3"},
                        {"gad7.3", "3"},
                        {"gad7.4", "1"}},
                       "anxiety.gad7"},
        TherapyTrigger{
            "auditc", {{"auditc.1", "2"}, {"auditc.2", "1"}}, "caution.auditc"},
        TherapyTrigger{"drug", {{"drug.1", "2"}}, "caution.drug_screen"},
        TherapyTrigger{"difficulty", {{"phq9.10", "3"}}, ""},
        TherapyTrigger{"depression",
                       {{"phq9.1", "3"},
                        {"phq9.2", "3"},
                        {"phq9.3", "3"},
                        {"phq9.4", "1"}},
                       ""}),
    [](const auto& info) { return std::string(info.param.name); });

Overrides TrdIn(const std::string& state, int age = 40) {
  return {{"ctx.state", state}, {"ctx.age", std::to_string(age)},
          {"phq9.1", "2"},      {"phq9.2", "2"},
          {"phq9.3", "2"},      {"phq9.4", "2"},
          {"phq9.5", "2"},      {"ket.trials", "two_or_more"}};
}

TEST_F(ScoringTest, KetamineReviewForCoveredAdultsWithTrd) {
  for (const char* state : {"FL", "NJ"}) {
    auto r = Screen(TrdIn(state));
    EXPECT_EQ(Score(r, "ket").completeness(), v1::COMPLETE) << state;
    EXPECT_EQ(RouteOf(r), common::v1::KETAMINE_REVIEW) << state;
    EXPECT_EQ(r.routing().required_reviewer(), common::v1::PHYSICIAN);
    EXPECT_EQ(r.routing().fallback_route(), common::v1::THERAPY);
    EXPECT_FALSE(r.has_crisis_resources());
  }
  auto r = Screen([] {
    auto o = TrdIn("FL");
    o["ket.trials"] = "one";
    return o;
  }());
  EXPECT_EQ(RouteOf(r), common::v1::THERAPY) << "one failed trial is not TRD";
}

TEST_F(ScoringTest, OutsideCoverageOrUnder18NeverKetamine) {
  auto r = Screen(TrdIn("NY"));
  EXPECT_EQ(Score(r, "ket").completeness(), v1::NOT_ADMINISTERED)
      << "the module is not asked";
  EXPECT_EQ(RouteOf(r), common::v1::THERAPY);
  r = Screen(TrdIn("FL", 17));
  EXPECT_EQ(Score(r, "ket").completeness(), v1::NOT_ADMINISTERED);
  EXPECT_EQ(RouteOf(r), common::v1::THERAPY);
  // Even if a client sends the module anyway.
  auto request = aqueduct::testing::ScriptedScreening(*engine_, [] {
    auto o = aqueduct::testing::AdultContext("FL");
    for (auto& [k, v] : TrdIn("FL", 17)) o[k] = v;
    return o;
  }());
  ASSERT_THAT(request, IsOk());
  auto* a = request->mutable_answers()->add_answers();
  a->set_item_id("ket.trials");
  a->set_option_value(2);
  auto forced = engine_->Score(*request);
  ASSERT_THAT(forced, IsOk());
  EXPECT_NE(RouteOf(*forced), common::v1::KETAMINE_REVIEW);
}

struct Exclusion {
  const char* item;
  const char* flag;
};
class KetamineExclusionTest : public ScoringTest,
                              public ::testing::WithParamInterface<Exclusion> {
};

TEST_P(KetamineExclusionTest, AbsoluteExclusionSendsToTherapyWithTheReason) {
  Overrides o = TrdIn("FL");
  o[GetParam().item] = "yes";
  auto r = Screen(o);
  EXPECT_EQ(RouteOf(r), common::v1::THERAPY);
  EXPECT_TRUE(HasSecondary(r, GetParam().flag));
}

INSTANTIATE_TEST_SUITE_P(
    Section5, KetamineExclusionTest,
    ::testing::Values(Exclusion{"ket.vascular", "ketamine_excluded.vascular"},
                      Exclusion{"ket.ich", "ketamine_excluded.ich"},
                      Exclusion{"ket.psychosis", "ketamine_excluded.psychosis"},
                      Exclusion{"ket.pregnant", "ketamine_excluded.pregnancy"},
                      Exclusion{"ket.hypersensitivity",
                                "ketamine_excluded.hypersensitivity"}),
    [](const auto& info) { return std::string(info.param.item).substr(4); });

class KetamineCautionTest : public ScoringTest,
                            public ::testing::WithParamInterface<Exclusion> {};

TEST_P(KetamineCautionTest, CautionQueuesForThePhysicianWithTheFlag) {
  Overrides o = TrdIn("NJ");
  if (std::string(GetParam().item) == "auditc") {
    o["auditc.1"] = "3";
  } else {
    o[GetParam().item] = "yes";
  }
  auto r = Screen(o);
  EXPECT_EQ(RouteOf(r), common::v1::KETAMINE_REVIEW);
  EXPECT_TRUE(HasSecondary(r, GetParam().flag));
}

INSTANTIATE_TEST_SUITE_P(
    Section5, KetamineCautionTest,
    ::testing::Values(Exclusion{"ket.high_bp", "caution.blood_pressure"},
                      Exclusion{"ket.sud", "caution.substance_use_history"},
                      Exclusion{"ket.bipolar", "caution.bipolar"},
                      Exclusion{"ket.breastfeeding", "caution.breastfeeding"},
                      Exclusion{"auditc", "caution.auditc"}),
    [](const auto& info) {
      std::string n = info.param.item;
      return n.substr(n.find('.') == std::string::npos ? 0 : 4);
    });

TEST_F(ScoringTest, CrisisBeatsEverything) {
  Overrides o = TrdIn("FL");
  o["phq9.9"] = "1";
  auto r = Screen(o);
  EXPECT_EQ(RouteOf(r), common::v1::CRISIS_URGENT)
      << "crisis before the ketamine review";
  EXPECT_TRUE(HasSecondary(r, "ketamine_after_crisis"));
  EXPECT_TRUE(r.has_crisis_resources());
  o["asq.1"] = "yes";
  o["asq.5"] = "yes";
  r = Screen(o);
  EXPECT_EQ(RouteOf(r), common::v1::CRISIS_ACUTE) << "acute before urgent";
  // The explanation names the deciding rule with its inputs and threshold.
  const auto* rule = Rule(r, "route.crisis_acute");
  ASSERT_NE(rule, nullptr);
  EXPECT_TRUE(rule->fired());
  EXPECT_EQ(rule->threshold(), "flag.asq_acute");
  EXPECT_EQ(rule->inputs(0).name(), "flag.asq_acute");
  EXPECT_EQ(rule->inputs(0).value(), "true");
  EXPECT_EQ(rule->outcome(), "CRISIS_ACUTE");
}

TEST_F(ScoringTest, EveryExplainedRuleIsListedUnderTheSameId) {
  std::set<std::string> listed;
  const auto rulesets =
      engine_->Rulesets();  // keep the response alive while iterating
  for (const auto& r : rulesets.rulesets(0).rules()) listed.insert(r.rule_id());
  EXPECT_TRUE(listed.contains("flag.phq9_item9"));
  EXPECT_TRUE(listed.contains("signal.burnout_high"));
  EXPECT_TRUE(listed.contains("secondary.caution.auditc"));
  EXPECT_TRUE(listed.contains("modality.cbt"));
  EXPECT_TRUE(listed.contains("plan.checkin_5min"));
  int checked = 0;
  for (const Overrides& o :
       {Overrides{{"phq9.9", "1"}, {"auditc.1", "3"}}, TrdIn("FL"),
        CbiPersonalAt(75), Overrides{{"phq9.4", "declined"}}}) {
    const v1::ScoringResult result = Screen(o);
    for (const auto& rule : result.rules()) {
      EXPECT_TRUE(listed.contains(rule.rule_id())) << rule.rule_id();
      ++checked;
    }
  }
  EXPECT_GT(checked, 10);
}

TEST_F(ScoringTest, EveryResultCarriesVersionsAndTheDecidingRule) {
  for (const Overrides& o :
       {Overrides{}, Overrides{{"phq9.9", "1"}}, TrdIn("FL")}) {
    auto r = Screen(o);
    EXPECT_EQ(r.ruleset_version(), "v1");
    EXPECT_EQ(r.catalog_version(), "2026-11.1");
    int route_rules = 0;
    for (const auto& rule : r.rules()) {
      if (rule.rule_id().rfind("route.", 0) == 0) {
        ++route_rules;
        EXPECT_TRUE(rule.fired());
        EXPECT_EQ(rule.outcome(), common::v1::Route_Name(RouteOf(r)));
      }
    }
    EXPECT_EQ(route_rules, 1);
  }
}

// ---- Properties over generated answer sets ----------------------------------

class GeneratedTest : public ScoringTest {
 protected:
  // A random but valid full screening: random answers to whatever the flow
  // asks.
  v1::ScoreAnswersRequest Random(std::mt19937& rng) {
    Overrides o;
    o["ctx.state"] =
        std::vector<std::string>{"FL", "NJ", "NY", "TX"}[rng() % 4];
    o["ctx.age"] = std::to_string(16 + rng() % 50);
    for (const auto& info : engine_->catalog().instruments()) {
      for (const auto& item : info.items) {
        const auto& def = *item.def;
        if (def.kind() == v1::CHOICE) {
          // Lean low so most sets avoid a crisis and exercise other routes.
          int pick = (rng() % 3 == 0) ? rng() % def.options_size() : 0;
          o.try_emplace(def.id(), std::to_string(def.options(pick).value()));
        } else if (def.kind() == v1::INTEGER) {
          o.try_emplace(def.id(),
                        std::to_string(std::max(def.min_value(),
                                                static_cast<int>(rng() % 3))));
        }
      }
    }
    auto req = aqueduct::testing::ScriptedScreening(*engine_, o);
    EXPECT_THAT(req, IsOk());
    return *req;
  }
};

TEST_F(GeneratedTest, RaisingAnyAnswerNeverLowersATotal) {
  std::mt19937 rng(20261122);
  int compared = 0;
  for (int n = 0; n < 60; ++n) {
    auto req = Random(rng);
    auto base = engine_->Score(req);
    ASSERT_THAT(base, IsOk());
    for (int i = 0; i < req.answers().answers_size(); ++i) {
      const auto& a = req.answers().answers(i);
      const auto* item = engine_->catalog().FindItem(a.item_id());
      if (item->kind() != v1::CHOICE || item->unscored()) continue;
      int next = -1;
      for (const auto& o : item->options()) {
        if (o.value() > a.option_value() && (next < 0 || o.value() < next))
          next = o.value();
      }
      if (next < 0) continue;
      auto raised = req;
      raised.mutable_answers()->mutable_answers(i)->set_option_value(next);
      auto after = engine_->Score(raised);
      if (!after.ok()) continue;  // e.g. a new yes makes ASQ item 5 apply
      const std::string ins =
          engine_->catalog().InstrumentOfItem(a.item_id())->id();
      const auto& before_s = Score(*base, ins);
      const auto& after_s = Score(*after, ins);
      if (before_s.completeness() != v1::COMPLETE ||
          after_s.completeness() != v1::COMPLETE)
        continue;
      ++compared;
      if (item->reverse_scored()) {
        EXPECT_LE(after_s.mean(), before_s.mean()) << a.item_id();
      } else {
        EXPECT_GE(after_s.total(), before_s.total()) << a.item_id();
        EXPECT_GE(after_s.mean(), before_s.mean()) << a.item_id();
      }
    }
  }
  EXPECT_GT(compared, 500);
}

TEST_F(GeneratedTest, ACrisisFlagIsNeverRemovedByOtherAnswers) {
  std::mt19937 rng(7);
  int checked = 0;
  for (int n = 0; n < 60; ++n) {
    auto req = Random(rng);
    // Force item 9 above 0.
    for (auto& a : *req.mutable_answers()->mutable_answers()) {
      if (a.item_id() == "phq9.9") a.set_option_value(1 + rng() % 3);
    }
    auto base = engine_->Score(req);
    if (!base.ok()) continue;
    ASSERT_TRUE(HasFlag(*base, v1::PHQ9_ITEM9_POSITIVE));
    for (int i = 0; i < req.answers().answers_size(); ++i) {
      const auto& a = req.answers().answers(i);
      const auto* item = engine_->catalog().FindItem(a.item_id());
      if (a.item_id() == "phq9.9" || item->kind() != v1::CHOICE) continue;
      for (const auto& o : item->options()) {
        auto changed = req;
        changed.mutable_answers()->mutable_answers(i)->set_option_value(
            o.value());
        auto r = engine_->Score(changed);
        if (!r.ok()) continue;  // the change made another answer inapplicable
        ++checked;
        EXPECT_TRUE(HasFlag(*r, v1::PHQ9_ITEM9_POSITIVE)) << a.item_id();
        EXPECT_TRUE(RouteOf(*r) == common::v1::CRISIS_URGENT ||
                    RouteOf(*r) == common::v1::CRISIS_ACUTE)
            << a.item_id();
        EXPECT_TRUE(r->has_crisis_resources()) << a.item_id();
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

TEST_F(GeneratedTest, SameInputSameBytesWhateverTheAnswerOrder) {
  std::mt19937 rng(99);
  for (int n = 0; n < 50; ++n) {
    auto req = Random(rng);
    auto a = engine_->Score(req);
    auto b = engine_->Score(req);
    auto shuffled = req;
    std::shuffle(shuffled.mutable_answers()->mutable_answers()->begin(),
                 shuffled.mutable_answers()->mutable_answers()->end(), rng);
    auto c = engine_->Score(shuffled);
    ASSERT_THAT(a, IsOk());
    ASSERT_THAT(c, IsOk());
    EXPECT_EQ(a->SerializeAsString(), b->SerializeAsString());
    EXPECT_EQ(a->SerializeAsString(), c->SerializeAsString());
  }
}

// The digest re-scoring compares must be exactly the digest of the full
// result, for every kind of screening (crisis, ketamine, incomplete ones).
TEST_F(GeneratedTest, DigestWithoutExplanationsEqualsTheFullResultsDigest) {
  std::mt19937 rng(42);
  std::set<int> routes;
  for (int n = 0; n < 300; ++n) {
    auto req = Random(rng);
    if (n % 3 == 0) {  // also screenings with item 9 above 0
      for (auto& a : *req.mutable_answers()->mutable_answers()) {
        if (a.item_id() == "phq9.9") a.set_option_value(1 + rng() % 3);
      }
    }
    if (n % 5 == 0 &&
        req.answers().answers_size() > 12) {  // and incomplete ones
      req.mutable_answers()->mutable_answers()->DeleteSubrange(10, 1);
    }
    auto full = engine_->Score(req);
    v1::ResultDigest lean;
    absl::Status s = engine_->DigestInto(req, &lean);
    ASSERT_EQ(s.ok(), full.ok()) << s;
    if (!full.ok()) continue;
    routes.insert(full->routing().primary_route());
    EXPECT_EQ(lean.SerializeAsString(), DigestOf(*full).SerializeAsString())
        << lean.ShortDebugString();
  }
  EXPECT_GE(routes.size(), 3u);  // the generator reaches several routes
}

// A batch loop scores into one result message again and again, and the
// engine keeps what that message holds allocated between screenings. Each
// result must still be exactly a fresh one's, whatever came before it: a
// crisis result's resources gone from the next, an error's partial result
// gone, on the heap and on an arena alike.
TEST_F(GeneratedTest, AReusedResultScoresExactlyLikeAFreshOne) {
  std::mt19937 rng(1202);
  google::protobuf::Arena arena;
  v1::ScoringResult heap_result;
  auto* arena_result =
      google::protobuf::Arena::CreateMessage<v1::ScoringResult>(&arena);
  int crisis = 0, calm_after_crisis = 0, errors = 0;
  bool last_was_crisis = false;
  for (int n = 0; n < 300; ++n) {
    auto req = Random(rng);
    if (rng() % 3 == 0) {  // item 9 above 0: crisis resources
      for (auto& a : *req.mutable_answers()->mutable_answers()) {
        if (a.item_id() == "phq9.9") a.set_option_value(1 + rng() % 3);
      }
    }
    if (n % 13 == 0)
      req.mutable_answers()->mutable_answers(3)->set_option_value(
          9);  // not an option
    const auto fresh = engine_->Score(req);
    for (v1::ScoringResult* reused : {&heap_result, arena_result}) {
      const absl::Status s = engine_->ScoreInto(req, reused);
      ASSERT_EQ(s.code(), fresh.status().code()) << s;
      if (!fresh.ok()) continue;
      EXPECT_EQ(reused->has_crisis_resources(), fresh->has_crisis_resources());
      EXPECT_EQ(reused->SerializeAsString(), fresh->SerializeAsString())
          << "screening " << n;
    }
    if (!fresh.ok()) {
      ++errors;
      continue;
    }
    if (fresh->has_crisis_resources()) ++crisis;
    if (!fresh->has_crisis_resources() && last_was_crisis) ++calm_after_crisis;
    last_was_crisis = fresh->has_crisis_resources();
  }
  // The generator reached each case the reuse must get right.
  EXPECT_GT(crisis, 20);
  EXPECT_GT(calm_after_crisis, 10);
  EXPECT_GT(errors, 5);
}

// The packed answer form scores exactly like the answer list it packs: the
// same full result, byte for byte, and the same errors by code.
v1::ScoreAnswersRequest PackedOf(const v1::ScoreAnswersRequest& req) {
  std::vector<const common::v1::Answer*> answers;
  for (const auto& a : req.answers().answers()) answers.push_back(&a);
  std::vector<absl::string_view> administered(
      req.administered_instruments().begin(),
      req.administered_instruments().end());
  auto bytes = packed::Pack(answers, administered);
  EXPECT_THAT(bytes, IsOk());
  v1::ScoreAnswersRequest out;
  out.set_ruleset_version(req.ruleset_version());
  out.set_packed_answers(*bytes);
  return out;
}

TEST_F(GeneratedTest, PackedAnswersScoreExactlyLikeTheAnswerList) {
  std::mt19937 rng(2611);
  int errors = 0;
  for (int n = 0; n < 300; ++n) {
    auto req = Random(rng);
    if (n % 3 == 0) {
      for (auto& a : *req.mutable_answers()->mutable_answers()) {
        if (a.item_id() == "phq9.9") a.set_option_value(1 + rng() % 3);
      }
    }
    if (n % 5 == 0 && req.answers().answers_size() > 12) {  // incomplete
      req.mutable_answers()->mutable_answers()->DeleteSubrange(10, 1);
    }
    if (n % 7 == 0)
      req.mutable_answers()->mutable_answers(3)->set_option_value(
          9);  // not an option
    if (n % 11 == 0)
      req.mutable_answers()->mutable_answers(0)->set_declined(true);
    const auto list = engine_->Score(req);
    const auto packed = engine_->Score(PackedOf(req));
    ASSERT_EQ(packed.status().code(), list.status().code())
        << packed.status() << " / " << list.status();
    if (!list.ok()) {
      ++errors;
      continue;
    }
    EXPECT_EQ(packed->SerializeAsString(), list->SerializeAsString());
    v1::ResultDigest lean;
    ASSERT_THAT(engine_->DigestInto(PackedOf(req), &lean), IsOk());
    EXPECT_EQ(lean.SerializeAsString(), DigestOf(*list).SerializeAsString());
  }
  EXPECT_GT(errors, 10);  // the bad values above were refused both ways
}

// Codes are checked by lookup and a packed group is read in Pack's order:
// a code outside the item's list is refused in both forms without echoing
// it, a code where a number belongs too, and a packed group in any other
// order (Pack never writes one, another writer might) scores the same.
TEST_F(ScoringTest, EveryCodeCheckedAndPackedGroupsReadInAnyOrder) {
  auto with_state = [](const std::string& code) {
    v1::ScoreAnswersRequest r;
    common::v1::Answer* a = r.mutable_answers()->add_answers();
    a->set_item_id("ctx.state");
    a->set_code_value(code);
    return r;
  };
  EXPECT_THAT(engine_->Score(with_state("FL")), IsOk());
  const absl::Status list = engine_->Score(with_state("ZQ")).status();
  EXPECT_THAT(list, StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("answers.answers[0].code_value: not an "
                                       "allowed code of ctx.state")));
  EXPECT_THAT(std::string(list.message()), ::testing::Not(HasSubstr("ZQ")));
  const absl::Status packed =
      engine_->Score(PackedOf(with_state("ZQ"))).status();
  EXPECT_THAT(
      packed,
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr(
              "packed_answers[ctx.state].code_value: not an allowed code")));
  EXPECT_THAT(std::string(packed.message()), ::testing::Not(HasSubstr("ZQ")));
  v1::ScoreAnswersRequest code_for_choice;
  common::v1::Answer* a = code_for_choice.mutable_answers()->add_answers();
  a->set_item_id("phq9.1");
  a->set_code_value("FL");
  EXPECT_THAT(engine_->Score(code_for_choice),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("option_value: is required")));

  // PHQ-9 items 9 down to 1, each at its own value, in one packed group.
  const auto list_form = Direct(WithTotal("phq9", 13));
  std::string reversed(1, packed::kFormatVersion);
  reversed += std::string("\x04phq9", 5);
  std::vector<std::pair<std::string, int>> items;
  for (const auto& answer : list_form.answers().answers()) {
    items.emplace_back(answer.item_id().substr(5), answer.option_value());
  }
  ASSERT_GE(items.size(), 9u);
  std::sort(items.begin(), items.end(),
            [](const auto& x, const auto& y) { return x.first > y.first; });
  reversed += static_cast<char>(items.size());
  for (const auto& [part, value] : items) {
    reversed += static_cast<char>(part.size());
    reversed += part;
    reversed += static_cast<char>((value * 2) << 3);  // zigzag, option kind
  }
  v1::ScoreAnswersRequest out_of_order;
  out_of_order.set_packed_answers(reversed);
  out_of_order.set_ruleset_version("v1");
  const auto from_list = engine_->Score(list_form);
  const auto from_reversed = engine_->Score(out_of_order);
  ASSERT_THAT(from_list, IsOk());
  ASSERT_THAT(from_reversed, IsOk());
  EXPECT_EQ(from_reversed->SerializeAsString(), from_list->SerializeAsString());
  EXPECT_EQ(Score(*from_reversed, "phq9").total(), 13);
}

TEST_F(ScoringTest, PackedAnswersErrorsNameTheItemNotTheValue) {
  auto base = aqueduct::testing::ScriptedScreening(
      *engine_, aqueduct::testing::AdultContext("NY"));
  ASSERT_THAT(base, IsOk());
  auto with = [&](auto edit) {
    v1::ScoreAnswersRequest r = *base;
    edit(r);
    return engine_->Score(PackedOf(r)).status();
  };
  EXPECT_THAT(
      with([](auto& r) {
        r.mutable_answers()->mutable_answers(0)->set_item_id("nope.1");
      }),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("packed_answers: \"nope\" is not a catalog instrument")));
  EXPECT_THAT(with([](auto& r) {
                r.mutable_answers()->add_answers()->set_item_id("phq9.99");
              }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("packed_answers[phq9.99].item_id: \"phq9.99\" "
                                 "is not a catalog item")));
  EXPECT_THAT(with([](auto& r) {
                for (auto& a : *r.mutable_answers()->mutable_answers()) {
                  if (a.item_id() == "phq9.4") a.set_option_value(7);
                }
              }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("packed_answers[phq9.4].option_value: not one "
                                 "of the options of phq9.4")));
  EXPECT_THAT(with([](auto& r) {
                *r.mutable_answers()->add_answers() = r.answers().answers(0);
              }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is answered twice")));
  // A packed form with two groups for one instrument (Pack never writes it).
  v1::ScoreAnswersRequest twice;
  twice.set_packed_answers(std::string("\x01\x04phq9\x00\x04phq9\x00", 13));
  EXPECT_THAT(engine_->Score(twice),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("instrument phq9 appears twice")));
  // Both forms at once.
  v1::ScoreAnswersRequest both = PackedOf(*base);
  *both.mutable_answers() = base->answers();
  EXPECT_THAT(engine_->Score(both),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("packed_answers: set together with answers")));
  // Malformed bytes.
  v1::ScoreAnswersRequest bad;
  bad.set_packed_answers("\x07");
  EXPECT_THAT(engine_->Score(bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("packed_answers: byte 0: format version 7")));
}

TEST_F(ScoringTest, DigestIsCanonical) {
  v1::ScoringResult r;
  r.mutable_routing()->set_primary_route(common::v1::THERAPY);
  auto* therapy = r.add_rules();
  therapy->set_rule_id("route.therapy");
  therapy->set_fired(true);
  auto* undecided = r.add_rules();
  undecided->set_rule_id("route.self_help");
  undecided->set_undecided(true);
  for (auto [id, band] :
       std::vector<std::pair<std::string, std::string>>{{"phq9", "moderate"},
                                                        {"auditc", ""},
                                                        {"gad7", "mild"},
                                                        {"cbi_work", "high"}}) {
    auto* sc = r.add_scores();
    sc->set_instrument_id(id);
    sc->set_band(band);
  }
  r.add_safety_flags()->set_kind(v1::ITEM9_WITH_NEGATIVE_ASQ);
  r.add_safety_flags()->set_kind(v1::PHQ9_ITEM9_POSITIVE);
  const v1::ResultDigest d = DigestOf(r);
  EXPECT_EQ(d.primary_route(), common::v1::THERAPY);
  EXPECT_EQ(d.route_rule(), "route.therapy");
  EXPECT_EQ(
      d.bands(),
      "cbi_work=high,gad7=mild,phq9=moderate");  // by id; no band, no entry
  ASSERT_EQ(d.safety_flags_size(), 2);
  EXPECT_EQ(d.safety_flags(0), v1::PHQ9_ITEM9_POSITIVE);
  EXPECT_EQ(d.safety_flags(1), v1::ITEM9_WITH_NEGATIVE_ASQ);
}

TEST(DigestCompareTest, NamesEachChangeAndNothingElse) {
  v1::ResultDigest before;
  before.set_primary_route(common::v1::THERAPY);
  before.set_route_rule("route.therapy");
  before.set_bands("gad7=mild,phq9=moderate");
  v1::ResultDigest same = before;
  EXPECT_FALSE(DigestsDiffer(before, same));
  EXPECT_FALSE(CompareDigests(before, same).any());
  EXPECT_TRUE(CompareDigests(before, same).lines.empty());
  // A different route rule alone is not a change in care.
  same.set_route_rule("route.other");
  EXPECT_FALSE(DigestsDiffer(before, same));

  v1::ResultDigest after;
  after.set_primary_route(common::v1::SELF_HELP);
  after.set_route_rule("route.self_help");
  after.set_bands("auditc=low,phq9=mild");
  after.add_safety_flags(v1::PHQ9_ITEM9_POSITIVE);
  EXPECT_TRUE(DigestsDiffer(before, after));
  const DigestChanges c = CompareDigests(before, after);
  EXPECT_TRUE(c.route && c.band && c.flags);
  EXPECT_THAT(
      c.lines,
      ::testing::ElementsAre(
          "route: THERAPY -> SELF_HELP (route.therapy -> route.self_help)",
          "auditc band: none -> low", "gad7 band: mild -> none",
          "phq9 band: moderate -> mild",
          "safety flags: [] -> [PHQ9_ITEM9_POSITIVE]"));
  // The default route has no rule.
  after.clear_route_rule();
  EXPECT_THAT(CompareDigests(before, after).lines[0],
              HasSubstr("(route.therapy -> default route)"));
  // Only flags.
  v1::ResultDigest flagged = before;
  flagged.add_safety_flags(v1::ASQ_ACUTE_POSITIVE);
  const DigestChanges f = CompareDigests(before, flagged);
  EXPECT_TRUE(f.flags);
  EXPECT_FALSE(f.route || f.band);
}

// ---- Versioned rulesets
// -------------------------------------------------------

v1::Ruleset ReadV1() {
  std::ifstream in(aqueduct::testing::SourcePath("data/rulesets/v1.textproto"));
  std::stringstream buf;
  buf << in.rdbuf();
  v1::Ruleset rs;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(buf.str(), &rs));
  return rs;
}

std::shared_ptr<const CatalogIndex> RepoCatalog() {
  auto c = CatalogIndex::LoadFile(
      aqueduct::testing::SourcePath("data/catalog/catalog.textproto"));
  EXPECT_THAT(c, IsOk());
  return *c;
}

TEST(RulesetVersionsTest, SecondVersionSideBySideCallersChoose) {
  auto catalog = RepoCatalog();
  v1::Ruleset v2 = ReadV1();
  v2.set_version("v2-test");
  v2.set_published("2027-01-15");
  for (auto& s : *v2.mutable_signals()) {
    if (s.id() == "depression_signal") s.set_when("phq9.total >= 12");
  }
  auto r1 = RulesetIndex::Build(ReadV1(), catalog);
  auto r2 = RulesetIndex::Build(v2, catalog);
  ASSERT_THAT(r1, IsOk());
  ASSERT_THAT(r2, IsOk());
  auto engine = ScoringEngine::Create(catalog, {*r1, *r2});
  ASSERT_THAT(engine, IsOk());
  auto list = (*engine)->Rulesets();
  ASSERT_EQ(list.rulesets_size(), 2);
  EXPECT_EQ(list.rulesets(0).version(), "v2-test") << "newest first";
  EXPECT_EQ(list.rulesets(0).sets(0).name(), "ketamine_states");
  EXPECT_GT(list.rulesets(1).rules_size(), 20);

  Overrides o = aqueduct::testing::AdultContext();
  for (const char* id : {"phq9.1", "phq9.3", "phq9.4", "phq9.5", "phq9.6"})
    o[id] = "2";
  o["phq9.7"] = "1";  // total 11: depression under v1, not under v2
  auto req = aqueduct::testing::ScriptedScreening(**engine, o);
  ASSERT_THAT(req, IsOk());
  auto by_default = (*engine)->Score(*req);
  ASSERT_THAT(by_default, IsOk());
  EXPECT_EQ(by_default->ruleset_version(), "v2-test");
  EXPECT_NE(by_default->profile(), v1::DEPRESSION);
  req->set_ruleset_version("v1");
  auto old = (*engine)->Score(*req);
  ASSERT_THAT(old, IsOk());
  EXPECT_EQ(old->ruleset_version(), "v1");
  EXPECT_EQ(old->profile(), v1::DEPRESSION);
  EXPECT_EQ(old->routing().primary_route(), common::v1::THERAPY);
  req->set_ruleset_version("v9");
  EXPECT_THAT((*engine)->Score(*req),
              StatusIs(absl::StatusCode::kNotFound,
                       ::testing::AllOf(HasSubstr("v9"), HasSubstr("v1"))));
}

TEST(RulesetValidationTest, ProblemsAreNamed) {
  auto catalog = RepoCatalog();
  struct Case {
    std::function<void(v1::Ruleset&)> mutate;
    const char* message;
  } cases[] = {
      {[](v1::Ruleset& r) {
         r.mutable_routes(3)->set_when("gad8.total >= 10");
       },
       "route.therapy: column 1: unknown name \"gad8.total\""},
      {[](v1::Ruleset& r) { r.mutable_routes(0)->clear_when(); },
       "route.crisis_acute: has no condition"},
      {[](v1::Ruleset& r) { r.set_catalog_version("2020-01.0"); },
       "written for catalog \"2020-01.0\""},
      {[](v1::Ruleset& r) { r.clear_sets(); }, "set \"ketamine_states\""},
      {[](v1::Ruleset& r) {
         r.mutable_default_route()->set_route(common::v1::SELF_HELP);
       },
       "default_route"},
      {[](v1::Ruleset& r) {
         r.mutable_signals(0)->set_when("depression_signal");
       },
       "unknown name \"depression_signal\""},  // used before it is defined
      {[](v1::Ruleset& r) { r.mutable_routes(2)->clear_reviewer(); },
       "needs a reviewer"},
      {[](v1::Ruleset& r) { r.set_published("soon"); }, "published"},
      {[](v1::Ruleset& r) { r.mutable_flags(0)->set_when("phq9.9 > high"); },
       "is a number"},
      {[](v1::Ruleset& r) { r.mutable_routes(3)->set_id("therapy"); },
       "must start with \"route.\""},
  };
  for (auto& c : cases) {
    v1::Ruleset r = ReadV1();
    c.mutate(r);
    EXPECT_THAT(
        RulesetIndex::Build(r, catalog),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.message;
  }
}

TEST(RulesetVersionsTest, LoadingADirectoryWithTwoVersions) {
  aqueduct::testing::TempDir dir;
  v1::Ruleset v2 = ReadV1();
  v2.set_version("v2-test");
  v2.set_published("2027-02-01");
  std::string t1, t2;
  google::protobuf::TextFormat::PrintToString(ReadV1(), &t1);
  google::protobuf::TextFormat::PrintToString(v2, &t2);
  std::ofstream(dir.path() + "/v1.textproto") << t1;
  std::ofstream(dir.path() + "/v2-test.textproto") << t2;
  auto engine = ScoringEngine::Load(
      aqueduct::testing::SourcePath("data/catalog/catalog.textproto"),
      dir.path());
  ASSERT_THAT(engine, IsOk());
  auto list = (*engine)->Rulesets();
  ASSERT_EQ(list.rulesets_size(), 2);
  EXPECT_EQ(list.rulesets(0).version(), "v2-test");
  EXPECT_EQ(list.rulesets(1).version(), "v1");
  EXPECT_NE((*engine)->Find("v1"), nullptr);
}

TEST(RulesetValidationTest, LoadDirNamesTheFile) {
  auto catalog = RepoCatalog();
  aqueduct::testing::TempDir dir;
  std::string text;
  google::protobuf::TextFormat::PrintToString(ReadV1(), &text);
  { std::ofstream(dir.path() + "/a.textproto") << text; }
  EXPECT_THAT(RulesetIndex::LoadDir(dir.path(), catalog), IsOk());
  {
    std::ofstream(dir.path() + "/b.textproto") << text;  // same version again
  }
  EXPECT_THAT(
      RulesetIndex::LoadDir(dir.path(), catalog),
      StatusIs(absl::StatusCode::kInvalidArgument,
               ::testing::AllOf(HasSubstr("b.textproto"), HasSubstr("twice"))));
  {
    std::ofstream(dir.path() + "/b.textproto")
        << "version: \"v3\"\nroutes { nonsense: 1 }\n";
  }
  EXPECT_THAT(RulesetIndex::LoadDir(dir.path(), catalog),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("b.textproto"),
                                        HasSubstr("line 2"))));
  EXPECT_THAT(RulesetIndex::LoadDir(dir.path() + "/none", catalog),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace aqueduct::scoring
