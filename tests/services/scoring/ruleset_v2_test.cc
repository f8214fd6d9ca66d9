// Ruleset v2 (reference section 9, settled questions) and the scoring
// engine's fixes of section 9.3 and 9.4, which apply under every ruleset.
// Each case names the point of the reference it checks.

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "services/scoring/ruleset.h"
#include "services/scoring/scoring_engine.h"
#include "tests/testing/process.h"
#include "tests/testing/scoring_fixture.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"
#include "tools/aqueductctl/scripted_answers.h"

namespace aqueduct::scoring {
namespace {

using ::aqueduct::testing::IsOk;
using tools::Overrides;

class V2Test : public aqueduct::testing::ScoringFixture {
 protected:
  static v1::ScoringResult Screen(Overrides overrides,
                                  const std::string& ruleset = "v2") {
    return ScreenUnder(std::move(overrides), ruleset);
  }
  // Exactly the listed answers, scored under `ruleset`.
  static v1::ScoringResult Direct(
      const Overrides& answers, const std::string& ruleset,
      const std::vector<std::string>& administered = {}) {
    auto result = engine_->Score(DirectUnder(answers, ruleset, administered));
    EXPECT_THAT(result, IsOk());
    return result.ok() ? *result : v1::ScoringResult();
  }
  static const v1::InstrumentScore* Find(const v1::ScoringResult& r,
                                         const std::string& id) {
    return &Score(r, id);
  }
  // PHQ-9 items 1-9 summing to 12 with item 9 at 0 (items 1-6 at 2).
  static Overrides Phq9Twelve() {
    Overrides o;
    for (int i = 1; i <= 9; ++i)
      o["phq9." + std::to_string(i)] = i <= 6 ? "2" : "0";
    return o;
  }
};

// ---- Section 9.3: completeness counts scored items only (every ruleset) ---

TEST_F(V2Test, Phq9Item10DeclinedKeepsTheTotalAndTheKetamineReview) {
  // The example: items 1-9 sum to 12, item 10 declined, FL, age 40,
  // two or more adequate trials, no exclusions, high blood pressure.
  Overrides o = Phq9Twelve();
  o["phq9.10"] = "declined";
  o["ctx.state"] = "FL";
  o["ctx.age"] = "40";
  o["ket.trials"] = "two_or_more";
  o["ket.high_bp"] = "yes";
  for (const std::string ruleset : {"v1", "v2"}) {
    SCOPED_TRACE(ruleset);
    const auto r = Screen(o, ruleset);
    const auto* phq9 = Find(r, "phq9");
    ASSERT_NE(phq9, nullptr);
    EXPECT_EQ(phq9->completeness(), v1::COMPLETE);
    ASSERT_TRUE(phq9->has_total());
    EXPECT_EQ(phq9->total(), 12);
    EXPECT_EQ(phq9->band(), "moderate");
    EXPECT_TRUE(phq9->missing_item_ids().empty()) << "item 10 is not scored";
    EXPECT_EQ(RouteOf(r), common::v1::KETAMINE_REVIEW);
    EXPECT_EQ(r.routing().required_reviewer(), common::v1::PHYSICIAN);
    EXPECT_TRUE(HasSecondary(r, "caution.blood_pressure"))
        << "cautions survive";
    EXPECT_EQ(r.engine_version(), ScoringEngine::kEngineVersion);
  }
}

TEST_F(V2Test, AnUnscoredItemLeftOutNeverMakesItsInstrumentIncomplete) {
  // The same shape for every instrument that has an unscored item: every
  // scored item answered, each unscored one declined, then left out.
  int checked = 0;
  for (const auto& info : engine_->catalog().instruments()) {
    const auto& ins = *info.def;
    if (ins.scoring() == v1::SCORING_METHOD_UNSPECIFIED) continue;
    std::vector<std::string> unscored;
    for (const auto& item : ins.items()) {
      if (item.unscored()) unscored.push_back(item.id());
    }
    if (unscored.empty()) continue;
    for (const bool declined : {true, false}) {
      SCOPED_TRACE(ins.id() + (declined ? ": declined" : ": left out"));
      Overrides o = aqueduct::testing::AdultContext("NY");
      for (const auto& item : ins.items()) {
        if (item.unscored()) {
          if (declined) o[item.id()] = "declined";
        } else if (item.id() != "asq.1") {
          o[item.id()] = "0";
        }
      }
      // The ASQ's item 5 applies only after a yes: asq.1 yes makes it
      // applicable (and positive); everything else as the lowest answer.
      if (ins.id() == "asq") o["asq.1"] = "yes";
      if (ins.id() == "asq") o.erase("asq.5");
      if (ins.id() == "asq" && declined) o["asq.5"] = "declined";
      for (const std::string ruleset : {"v1", "v2"}) {
        const auto r = Direct(o, ruleset, {ins.id()});
        const auto* score = Find(r, ins.id());
        ASSERT_NE(score, nullptr);
        EXPECT_EQ(score->completeness(), v1::COMPLETE) << ruleset;
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 4)
      << "PHQ-9 item 10 and ASQ item 5, declined and left out";
}

// ---- Section 9.4: ASQ positivity item by item (every ruleset) ------------

TEST_F(V2Test, AsqYesToQuestionThreeWithQuestionFiveUnansweredIsCrisisUrgent) {
  // The example: item 9 = 0, ASQ q1 no, q2 no, q3 yes, q4 no, q5
  // unanswered.
  Overrides o = aqueduct::testing::AdultContext("NY");
  for (int i = 1; i <= 10; ++i) o["phq9." + std::to_string(i)] = "0";
  o["asq.1"] = "no";
  o["asq.2"] = "no";
  o["asq.3"] = "yes";
  o["asq.4"] = "no";
  for (const std::string ruleset : {"v1", "v2"}) {
    SCOPED_TRACE(ruleset);
    const auto r = Direct(o, ruleset, {"asq"});
    EXPECT_TRUE(HasFlag(r, v1::ASQ_NON_ACUTE_POSITIVE));
    EXPECT_FALSE(HasFlag(r, v1::ASQ_ACUTE_POSITIVE))
        << "acuity unknown, never read as no";
    EXPECT_EQ(RouteOf(r), common::v1::CRISIS_URGENT);
    EXPECT_TRUE(r.has_crisis_resources());
  }
  // A yes counts even when another of q1-q4 is unanswered (no total then).
  o.erase("asq.4");
  for (const std::string ruleset : {"v1", "v2"}) {
    SCOPED_TRACE(ruleset + ", q4 unanswered");
    const auto r = Direct(o, ruleset, {"asq"});
    EXPECT_EQ(Find(r, "asq")->completeness(), v1::INCOMPLETE);
    EXPECT_TRUE(HasFlag(r, v1::ASQ_NON_ACUTE_POSITIVE));
    EXPECT_EQ(RouteOf(r), common::v1::CRISIS_URGENT);
  }
}

TEST_F(V2Test, AsqRefusalAnywhereIsPositiveWhateverElseIsMissing) {
  Overrides o = aqueduct::testing::AdultContext("NY");
  for (int i = 1; i <= 10; ++i) o["phq9." + std::to_string(i)] = "0";
  o["asq.2"] = "declined";  // q1, q3, q4 unanswered
  const auto r = Direct(o, "v2", {"asq"});
  EXPECT_TRUE(HasFlag(r, v1::ASQ_NON_ACUTE_POSITIVE));
  EXPECT_EQ(RouteOf(r), common::v1::CRISIS_URGENT);
}

TEST_F(V2Test, AsqSomeUnansweredNoneYesIsUnknownAndNeverBelowTherapy) {
  Overrides o = aqueduct::testing::AdultContext("NY");
  for (int i = 1; i <= 10; ++i) o["phq9." + std::to_string(i)] = "0";
  o["asq.1"] = "no";
  o["asq.2"] = "no";  // q3, q4 unanswered
  const auto r = Screen({{"phq9.9", "0"}});
  ASSERT_EQ(RouteOf(r), common::v1::SELF_HELP)
      << "the same person with no ASQ at all";
  Overrides full;
  for (const auto& info : engine_->catalog().instruments()) {
    for (const auto& item : info.items) {
      if (o.contains(item.def->id())) full[item.def->id()] = o[item.def->id()];
    }
  }
  // Everything the flow asks of this person, plus the half-answered ASQ.
  auto flow = aqueduct::testing::ScriptedScreening(
      *engine_, aqueduct::testing::AdultContext("NY"));
  ASSERT_THAT(flow, IsOk());
  v1::ScoreAnswersRequest req = *flow;
  req.set_ruleset_version("v2");
  for (const char* id : {"asq.1", "asq.2"}) {
    auto* a = req.mutable_answers()->add_answers();
    a->set_item_id(id);
    a->set_option_value(0);
  }
  req.add_administered_instruments("asq");
  auto scored = engine_->Score(req);
  ASSERT_THAT(scored, IsOk());
  EXPECT_FALSE(HasFlag(*scored, v1::ASQ_NON_ACUTE_POSITIVE));
  EXPECT_EQ(RouteOf(*scored), common::v1::THERAPY);
}

TEST_F(V2Test, AsqQuestionFiveDeclinedAfterAYesStaysCrisisUrgent) {
  const auto r =
      Screen({{"phq9.9", "1"}, {"asq.1", "yes"}, {"asq.5", "declined"}});
  EXPECT_TRUE(HasFlag(r, v1::ASQ_NON_ACUTE_POSITIVE));
  EXPECT_FALSE(HasFlag(r, v1::ASQ_ACUTE_POSITIVE));
  EXPECT_EQ(RouteOf(r), common::v1::CRISIS_URGENT);
  EXPECT_TRUE(HasSecondary(r, "undecided.route.crisis_acute"))
      << "the clinician sees acuity is unknown";
  const auto acute =
      Screen({{"phq9.9", "1"}, {"asq.1", "yes"}, {"asq.5", "yes"}});
  EXPECT_EQ(RouteOf(acute), common::v1::CRISIS_ACUTE);
}

// ---- Sections 9.1, 9.5-9.8: ruleset v2 table -----------------------------

struct V2Case {
  const char* name;
  const char* section;
  Overrides answers;
  common::v1::Route route;
  v1::Profile profile;  // PROFILE_UNSPECIFIED: not checked
  std::vector<std::string> flags;
  std::vector<std::string> not_flags;
};

class V2TableTest : public V2Test,
                    public ::testing::WithParamInterface<V2Case> {};

Overrides BurnoutHigh() {
  Overrides o;
  for (int i = 1; i <= 6; ++i) o["cbi_personal." + std::to_string(i)] = "100";
  return o;
}
Overrides With(Overrides a, const Overrides& b) {
  for (const auto& [k, v] : b) a[k] = v;
  return a;
}

TEST_P(V2TableTest, SettledQuestion) {
  const V2Case& c = GetParam();
  SCOPED_TRACE(std::string(c.section) + ": " + c.name);
  const auto r = Screen(c.answers);
  EXPECT_EQ(r.ruleset_version(), "v2");
  EXPECT_EQ(RouteOf(r), c.route) << common::v1::Route_Name(RouteOf(r));
  if (c.profile != v1::PROFILE_UNSPECIFIED) {
    EXPECT_EQ(r.profile(), c.profile) << v1::Profile_Name(r.profile());
  }
  for (const auto& f : c.flags) EXPECT_TRUE(HasSecondary(r, f)) << f;
  for (const auto& f : c.not_flags) EXPECT_FALSE(HasSecondary(r, f)) << f;
}

const Overrides kKetamineCandidate = {
    {"ctx.state", "FL"}, {"ctx.age", "40"}, {"ket.trials", "two_or_more"},
    {"phq9.1", "2"},     {"phq9.2", "2"},   {"phq9.3", "2"},
    {"phq9.4", "2"},     {"phq9.5", "2"},   {"phq9.6", "2"}};

INSTANTIATE_TEST_SUITE_P(
    Reference9, V2TableTest,
    ::testing::Values(V2Case{"overload",
                             "9.1",
                             BurnoutHigh(),
                             common::v1::SELF_HELP,
                             v1::OVERLOAD,
                             {},
                             {"low_mood_or_anhedonia"}},
                      V2Case{"mixed_by_low_mood", "9.1",
                             With(BurnoutHigh(), {{"phq9.1", "2"}}),
                             common::v1::THERAPY, v1::MIXED},
                      V2Case{"mixed_by_depression", "9.1",
                             With(BurnoutHigh(), {{"phq9.3", "3"},
                                                  {"phq9.4", "3"},
                                                  {"phq9.5", "3"},
                                                  {"phq9.6", "1"}}),
                             common::v1::THERAPY, v1::MIXED},
                      V2Case{"depression",
                             "9.1",
                             {{"phq9.3", "3"},
                              {"phq9.4", "3"},
                              {"phq9.5", "3"},
                              {"phq9.6", "1"}},
                             common::v1::THERAPY,
                             v1::DEPRESSION},
                      V2Case{"low",
                             "9.1",
                             {},
                             common::v1::SELF_HELP,
                             v1::LOW,
                             {},
                             {"low_mood_or_anhedonia"}},
                      V2Case{"low_with_low_mood",
                             "9.1",
                             {{"phq9.2", "2"}},
                             common::v1::SELF_HELP,
                             v1::LOW,
                             {"low_mood_or_anhedonia"}},
                      V2Case{"item9_declined_asq_negative",
                             "9.5",
                             {{"phq9.9", "declined"}},
                             common::v1::THERAPY,
                             v1::PROFILE_UNSPECIFIED,
                             {"item9_declined"}},
                      V2Case{"item9_declined_asq_refused",
                             "9.5",
                             {{"phq9.9", "declined"}, {"asq.1", "declined"}},
                             common::v1::CRISIS_URGENT,
                             v1::PROFILE_UNSPECIFIED,
                             {"item9_declined"}},
                      V2Case{"item9_declined_ketamine_candidate",
                             "9.5",
                             With(kKetamineCandidate, {{"phq9.9", "declined"}}),
                             common::v1::THERAPY,
                             v1::PROFILE_UNSPECIFIED,
                             {"item9_declined"}},
                      V2Case{"undecided_phq9_never_self_help",
                             "9.6",
                             {{"phq9.4", "declined"}},
                             common::v1::THERAPY,
                             v1::PROFILE_INCOMPLETE},
                      V2Case{"ketamine_review_cautions",
                             "9.7",
                             With(kKetamineCandidate,
                                  {{"auditc.1", "4"}, {"auditc.2", "1"}}),
                             common::v1::KETAMINE_REVIEW,
                             v1::PROFILE_UNSPECIFIED,
                             {"caution.auditc"},
                             {"screen_positive"}},
                      V2Case{"therapy_screen_positive",
                             "9.7",
                             {{"auditc.1", "4"}, {"auditc.2", "1"}},
                             common::v1::THERAPY,
                             v1::PROFILE_UNSPECIFIED,
                             {"screen_positive"},
                             {"caution.auditc"}},
                      V2Case{"excluded_candidate",
                             "9.7",
                             With(kKetamineCandidate, {{"ket.pregnant", "yes"},
                                                       {"ket.bipolar", "yes"}}),
                             common::v1::THERAPY,
                             v1::PROFILE_UNSPECIFIED,
                             {"ketamine_excluded.pregnancy"},
                             {"caution.bipolar"}}),
    [](const ::testing::TestParamInfo<V2Case>& info) {
      return std::string(info.param.name);
    });

TEST_F(V2Test, NoKetamineReviewBelowAnUndecidedCrisisRule) {
  // Section 9.6: a ketamine candidate whose ASQ is half answered (q1, q2
  // no; positivity unknown, so CRISIS_URGENT is undecided). v1 let the
  // reviewed ketamine route hold below it; v2 sends the case to a clinician.
  auto flow = aqueduct::testing::ScriptedScreening(
      *engine_,
      With(aqueduct::testing::AdultContext("FL"), kKetamineCandidate));
  ASSERT_THAT(flow, IsOk());
  v1::ScoreAnswersRequest req = *flow;
  for (const char* id : {"asq.1", "asq.2"}) {
    auto* a = req.mutable_answers()->add_answers();
    a->set_item_id(id);
    a->set_option_value(0);
  }
  req.add_administered_instruments("asq");
  req.set_ruleset_version("v1");
  auto v1_result = engine_->Score(req);
  ASSERT_THAT(v1_result, IsOk());
  EXPECT_EQ(RouteOf(*v1_result), common::v1::KETAMINE_REVIEW);
  req.set_ruleset_version("v2");
  auto v2_result = engine_->Score(req);
  ASSERT_THAT(v2_result, IsOk());
  EXPECT_EQ(RouteOf(*v2_result), common::v1::THERAPY);
  EXPECT_EQ(v2_result->routing().required_reviewer(), common::v1::CLINICIAN);
  EXPECT_TRUE(HasSecondary(*v2_result, "undecided.route.crisis_urgent"));
}

TEST_F(V2Test, CbiIsScoredFromHalfItsItems) {
  // Section 9.2: personal >= 3 of 6 answered; v1 needed all 6.
  Overrides o = BurnoutHigh();
  o["cbi_personal.1"] = "declined";
  o["cbi_personal.2"] = "declined";
  o["cbi_personal.3"] = "declined";
  const auto v2 = Screen(o, "v2");
  const auto* p = Find(v2, "cbi_personal");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->completeness(), v1::COMPLETE);
  EXPECT_DOUBLE_EQ(p->mean(), 100);
  EXPECT_FALSE(p->has_total()) << "a mean-scored scale has no total";
  EXPECT_EQ(v2.profile(), v1::OVERLOAD);
  EXPECT_EQ(Find(Screen(o, "v1"), "cbi_personal")->completeness(),
            v1::INCOMPLETE);
  o["cbi_personal.4"] = "declined";
  EXPECT_EQ(Find(Screen(o, "v2"), "cbi_personal")->completeness(),
            v1::INCOMPLETE)
      << "2 of 6";
  // Work-related: 4 of 7.
  Overrides w;
  for (int i = 1; i <= 3; ++i) w["cbi_work." + std::to_string(i)] = "declined";
  EXPECT_EQ(Find(Screen(w, "v2"), "cbi_work")->completeness(), v1::COMPLETE)
      << "4 of 7";
  w["cbi_work.4"] = "declined";
  EXPECT_EQ(Find(Screen(w, "v2"), "cbi_work")->completeness(), v1::INCOMPLETE)
      << "3 of 7";
}

TEST_F(V2Test, AnInstrumentTheFlowShouldHaveAskedIsUnknownNeverAbsent) {
  // Section 9.8: GAD-7 administered but not given reads as unknown, so the
  // route cannot be self-help.
  Overrides o = aqueduct::testing::AdultContext("NY");
  for (int i = 1; i <= 10; ++i) o["phq9." + std::to_string(i)] = "0";
  for (int i = 1; i <= 6; ++i) o["cbi_personal." + std::to_string(i)] = "0";
  const auto r = Direct(o, "v2", {"gad7"});
  EXPECT_EQ(Find(r, "gad7")->completeness(), v1::INCOMPLETE);
  EXPECT_NE(RouteOf(r), common::v1::SELF_HELP);
  EXPECT_EQ(RouteOf(r), common::v1::THERAPY);
}

TEST_F(V2Test, AddingV2ChangesNoV1Result) {
  // Every v1 result is the same whether v2 is loaded beside it or not.
  auto catalog = CatalogIndex::LoadFile(
      aqueduct::testing::SourcePath("data/catalog/catalog.textproto"));
  ASSERT_THAT(catalog, IsOk());
  auto all = RulesetIndex::LoadDir(
      aqueduct::testing::SourcePath("data/rulesets"), *catalog);
  ASSERT_THAT(all, IsOk());
  std::vector<std::shared_ptr<const RulesetIndex>> only_v1;
  for (const auto& rs : *all) {
    if (rs->version() == "v1") only_v1.push_back(rs);
  }
  ASSERT_EQ(only_v1.size(), 1u);
  auto alone = ScoringEngine::Create(*catalog, only_v1);
  ASSERT_THAT(alone, IsOk());
  // Random whole screenings: every choice item at a random option, some
  // declined.
  std::mt19937 rng(22);
  int compared = 0;
  for (int n = 0; n < 300; ++n) {
    Overrides o = aqueduct::testing::AdultContext(n % 3 == 0 ? "FL" : "NY");
    for (const auto& info : engine_->catalog().instruments()) {
      if (info.def->id() == "ctx") continue;
      for (const auto& item : info.def->items()) {
        if (item.kind() != v1::CHOICE || item.options().empty()) continue;
        const int pick = static_cast<int>(rng() % (item.options_size() + 1));
        o[item.id()] = pick == item.options_size()
                           ? "declined"
                           : std::to_string(item.options(pick).value());
      }
    }
    auto request = aqueduct::testing::ScriptedScreening(*engine_, o);
    ASSERT_THAT(request, IsOk());
    request->set_ruleset_version("v1");
    auto with_v2 = engine_->Score(*request);
    auto without = (*alone)->Score(*request);
    ASSERT_THAT(with_v2, IsOk());
    ASSERT_THAT(without, IsOk());
    EXPECT_EQ(with_v2->SerializeAsString(), without->SerializeAsString())
        << "screening " << n;
    ++compared;
  }
  EXPECT_EQ(compared, 300);
}

}  // namespace
}  // namespace aqueduct::scoring
