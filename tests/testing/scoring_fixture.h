#ifndef AQUEDUCT_TESTS_TESTING_SCORING_FIXTURE_H_
#define AQUEDUCT_TESTS_TESTING_SCORING_FIXTURE_H_

// A test suite's scoring engine over the repository's catalog and rulesets
// (loaded once per suite), and the helpers its tests build requests and
// read results with.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "services/scoring/scoring_engine.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"
#include "tools/aqueductctl/scripted_answers.h"

namespace aqueduct::testing {

class ScoringFixture : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    auto engine = LoadRepositoryEngine();
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = engine->release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }

 protected:
  using Overrides = tools::Overrides;

  // A whole screening as the flow asks it, scored under `ruleset`: an adult
  // in NY (or the overrides' ctx.state) who works without clients,
  // lowest-burden answers unless overridden.
  static scoring::v1::ScoringResult ScreenUnder(Overrides overrides,
                                                const std::string& ruleset) {
    Overrides all = AdultContext(
        overrides.contains("ctx.state") ? overrides["ctx.state"] : "NY");
    for (auto& [k, v] : overrides) all[k] = v;
    auto request = ScriptedScreening(*engine_, all);
    EXPECT_THAT(request, IsOk());
    if (!request.ok()) return {};
    request->set_ruleset_version(ruleset);
    auto result = engine_->Score(*request);
    EXPECT_THAT(result, IsOk());
    return result.ok() ? *result : scoring::v1::ScoringResult();
  }
  // Exactly the listed answers ("item=value"), in catalog order, under
  // `ruleset`, with `administered` instruments added.
  static scoring::v1::ScoreAnswersRequest DirectUnder(
      const Overrides& answers, const std::string& ruleset,
      const std::vector<std::string>& administered = {}) {
    scoring::v1::ScoreAnswersRequest req;
    req.set_ruleset_version(ruleset);
    for (const auto& info : engine_->catalog().instruments()) {
      for (const auto& item : info.items) {
        if (!answers.contains(item.def->id())) continue;
        auto a = tools::ScriptedAnswer(*item.def, answers);
        EXPECT_THAT(a, IsOk());
        if (a.ok()) *req.mutable_answers()->add_answers() = *a;
      }
    }
    for (const auto& id : administered) req.add_administered_instruments(id);
    return req;
  }
  static const scoring::v1::InstrumentScore& Score(
      const scoring::v1::ScoringResult& r, const std::string& id) {
    for (const auto& s : r.scores()) {
      if (s.instrument_id() == id) return s;
    }
    static const scoring::v1::InstrumentScore none;
    ADD_FAILURE() << "no score for " << id;
    return none;
  }
  static bool HasFlag(const scoring::v1::ScoringResult& r,
                      scoring::v1::SafetyFlagKind kind) {
    for (const auto& f : r.safety_flags()) {
      if (f.kind() == kind) return true;
    }
    return false;
  }
  static bool HasSecondary(const scoring::v1::ScoringResult& r,
                           const std::string& code) {
    for (const auto& f : r.routing().secondary_flags()) {
      if (f.code() == code) return true;
    }
    return false;
  }
  static common::v1::Route RouteOf(const scoring::v1::ScoringResult& r) {
    return r.routing().primary_route();
  }

  static inline scoring::ScoringEngine* engine_ = nullptr;
};

}  // namespace aqueduct::testing

#endif  // AQUEDUCT_TESTS_TESTING_SCORING_FIXTURE_H_
