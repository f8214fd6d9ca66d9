#include "services/scoring/scoring_engine.h"

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace aqueduct::scoring {
namespace {

using common::v1::Answer;
using common::v1::NamedValue;
using v1::InstrumentScore;
using v1::ScoringResult;

NamedValue Named(absl::string_view name, absl::string_view value) {
  NamedValue nv;
  nv.set_name(std::string(name));
  nv.set_value(std::string(value));
  return nv;
}

v1::RuleEvaluation* AddRule(ScoringResult& result, absl::string_view id,
                            absl::string_view description,
                            absl::string_view threshold, bool fired,
                            std::initializer_list<NamedValue> inputs) {
  v1::RuleEvaluation* rule = result.add_rules();
  rule->set_rule_id(std::string(id));
  rule->set_description(std::string(description));
  rule->set_threshold(std::string(threshold));
  rule->set_fired(fired);
  for (const auto& in : inputs) *rule->add_inputs() = in;
  return rule;
}

// Sums the scored items of a summed-scale instrument; INCOMPLETE when any
// scored item is missing or declined (never a low score).
InstrumentScore ScoreSummed(const v1::Instrument& ins,
                            const absl::flat_hash_map<std::string, const Answer*>&
                                answers) {
  InstrumentScore score;
  score.set_instrument_id(ins.id());
  score.set_loinc_total(ins.loinc_total());
  int total = 0;
  for (const auto& item : ins.items()) {
    if (item.unscored()) continue;
    auto it = answers.find(item.id());
    if (it == answers.end() ||
        it->second->value_case() != Answer::kOptionValue) {
      score.add_missing_item_ids(item.id());
      continue;
    }
    total += it->second->option_value();
  }
  if (score.missing_item_ids_size() > 0) {
    score.set_completeness(v1::INCOMPLETE);
    return score;
  }
  score.set_completeness(v1::COMPLETE);
  score.set_total(total);
  for (const auto& band : ins.bands()) {
    if (total >= band.min() && total <= band.max()) {
      score.set_band(band.id());
      score.set_band_label(band.label());
    }
  }
  return score;
}

std::optional<int> OptionOf(
    const absl::flat_hash_map<std::string, const Answer*>& answers,
    absl::string_view id) {
  auto it = answers.find(id);
  if (it == answers.end() || it->second->value_case() != Answer::kOptionValue) {
    return std::nullopt;
  }
  return it->second->option_value();
}

std::string Show(std::optional<int> v) {
  return v.has_value() ? absl::StrCat(*v) : "unanswered";
}

void AddPhq9Derived(InstrumentScore& score,
                    const absl::flat_hash_map<std::string, const Answer*>& answers) {
  if (score.completeness() != v1::COMPLETE) return;
  score.set_screen_positive(score.total() >= 10);
  // Kroenke 2001: a symptom counts when present "more than half the days"
  // (>= 2), item 9 when present at all (>= 1). Provisional major depressive
  // syndrome: >= 5 symptoms, one of them item 1 or item 2.
  int count = 0;
  bool core = false;
  for (int i = 1; i <= 9; ++i) {
    int v = OptionOf(answers, absl::StrCat("phq9.", i)).value_or(0);
    bool present = (i == 9) ? v >= 1 : v >= 2;
    if (present) {
      ++count;
      if (i <= 2) core = true;
    }
  }
  v1::DerivedValue* c = score.add_derived();
  c->set_name("phq9.mdd_symptom_count");
  c->set_value(count);
  c->set_explanation(
      "Items 1-8 scored >= 2 plus item 9 scored >= 1 (Kroenke 2001).");
  v1::DerivedValue* p = score.add_derived();
  p->set_name("phq9.provisional_mdd");
  p->set_value(count >= 5 && core ? 1 : 0);
  p->set_explanation(
      "1 when at least 5 symptoms count and one of them is item 1 or 2.");
}

v1::PlanItem Plan(absl::string_view id, absl::string_view title,
                  absl::string_view text) {
  v1::PlanItem p;
  p.set_id(std::string(id));
  p.set_title(std::string(title));
  p.set_text(std::string(text));
  return p;
}

}  // namespace

common::v1::CrisisResources CrisisResourcesForUs() {
  common::v1::CrisisResources r;
  r.set_message(
      "Some of your answers suggest you may be thinking about death or about "
      "hurting yourself. You do not have to wait: people are ready to talk "
      "with you right now.");
  auto* lifeline = r.add_contacts();
  lifeline->set_name("988 Suicide & Crisis Lifeline");
  lifeline->set_how("Call or text 988, or chat at 988lifeline.org (veterans: press 1)");
  lifeline->set_when("24/7, United States");
  lifeline->set_url("https://988lifeline.org");
  auto* emergency = r.add_contacts();
  emergency->set_name("Emergency services");
  emergency->set_how("Call 911 or your local emergency number");
  emergency->set_when("If you are in immediate danger");
  return r;
}

ScoringEngine::ScoringEngine(std::shared_ptr<const CatalogIndex> catalog)
    : catalog_(std::move(catalog)) {}

v1::ListRulesetsResponse ScoringEngine::Rulesets() const {
  v1::ListRulesetsResponse out;
  auto* rs = out.add_rulesets();
  rs->set_version(std::string(kSkeletonRuleset));
  rs->set_description(
      "Foundation ruleset: routes on PHQ-9 alone (crisis on item 9 > 0, "
      "therapy on depression signals or marked difficulty, else self-help).");
  rs->set_catalog_version(catalog_->catalog().version());
  for (const char* id : {"route.crisis_urgent", "profile.depression",
                         "route.therapy", "route.self_help"}) {
    rs->add_rule_ids(id);
  }
  return out;
}

absl::StatusOr<ScoringResult> ScoringEngine::Score(
    const v1::ScoreAnswersRequest& request) const {
  if (!request.ruleset_version().empty() &&
      request.ruleset_version() != kSkeletonRuleset) {
    return absl::NotFoundError(absl::StrCat(
        "ruleset_version: \"", request.ruleset_version(),
        "\" is not loaded (loaded: ", kSkeletonRuleset, ")"));
  }
  absl::flat_hash_map<std::string, const Answer*> answers;
  absl::flat_hash_set<std::string> administered;
  for (int i = 0; i < request.answers().answers_size(); ++i) {
    const Answer& a = request.answers().answers(i);
    std::string field = absl::StrCat("answers.answers[", i, "]");
    if (absl::Status s = catalog_->ValidateAnswer(a, field); !s.ok()) return s;
    if (!answers.emplace(a.item_id(), &a).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".item_id: ", a.item_id(), " is answered twice"));
    }
    administered.insert(catalog_->InstrumentOfItem(a.item_id())->id());
  }
  if (!request.administered_instruments().empty()) {
    administered.clear();
    for (int i = 0; i < request.administered_instruments_size(); ++i) {
      const std::string& id = request.administered_instruments(i);
      if (catalog_->FindInstrument(id) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("administered_instruments[", i, "]: \"", id,
                         "\" is not a catalog instrument"));
      }
      administered.insert(id);
    }
  }

  ScoringResult result;
  result.set_ruleset_version(std::string(kSkeletonRuleset));
  result.set_catalog_version(catalog_->catalog().version());
  const InstrumentScore* phq9 = nullptr;
  for (const auto& ins : catalog_->catalog().instruments()) {
    InstrumentScore* score = result.add_scores();
    if (!administered.contains(ins.id())) {
      score->set_instrument_id(ins.id());
      score->set_completeness(v1::NOT_ADMINISTERED);
      continue;
    }
    *score = ScoreSummed(ins, answers);
    if (ins.id() == "phq9") {
      AddPhq9Derived(*score, answers);
      phq9 = score;
    }
  }

  const std::optional<int> item9 = OptionOf(answers, "phq9.9");
  const std::optional<int> item1 = OptionOf(answers, "phq9.1");
  const std::optional<int> item2 = OptionOf(answers, "phq9.2");
  const std::optional<int> difficulty = OptionOf(answers, "phq9.10");
  const bool phq9_complete =
      phq9 != nullptr && phq9->completeness() == v1::COMPLETE;
  const std::string total_text =
      phq9_complete ? absl::StrCat(phq9->total()) : "incomplete";

  // Safety first: item 9 is never dropped, whatever else is missing.
  const bool item9_positive = item9.value_or(0) > 0;
  if (item9_positive) {
    auto* flag = result.add_safety_flags();
    flag->set_kind(v1::PHQ9_ITEM9_POSITIVE);
    flag->set_explanation(absl::StrCat("phq9.9 = ", *item9, " (> 0)"));
    *result.mutable_crisis_resources() = CrisisResourcesForUs();
  }

  // Reference section 4, depression signals.
  const bool marked_difficulty = difficulty.value_or(0) >= 2;
  const bool depression =
      phq9_complete &&
      (phq9->total() >= 10 || ((item1.value_or(0) >= 2 || item2.value_or(0) >= 2) &&
                               phq9->total() >= 5 && marked_difficulty));
  *result.add_profile_signals() = Named("phq9.total", total_text);
  *result.add_profile_signals() = Named("phq9.1", Show(item1));
  *result.add_profile_signals() = Named("phq9.2", Show(item2));
  *result.add_profile_signals() = Named("phq9.10", Show(difficulty));
  *result.add_profile_signals() =
      Named("cbi", "not administered: burnout not assessed by this ruleset");
  result.set_profile(depression ? v1::DEPRESSION : v1::PROFILE_INCOMPLETE);

  AddRule(result, "route.crisis_urgent",
          "PHQ-9 item 9 above 0: crisis resources at once, urgent clinician "
          "safety assessment within 24 hours.",
          "phq9.9 > 0", item9_positive, {Named("phq9.9", Show(item9))});
  AddRule(result, "profile.depression",
          "Depression signals: PHQ-9 >= 10, or item 1 or 2 >= 2 with PHQ-9 "
          ">= 5 and difficulty very or extremely difficult.",
          "phq9.total >= 10 || ((phq9.1 >= 2 || phq9.2 >= 2) && phq9.total >= 5 "
          "&& phq9.10 >= 2)",
          depression,
          {Named("phq9.total", total_text), Named("phq9.1", Show(item1)),
           Named("phq9.2", Show(item2)), Named("phq9.10", Show(difficulty))});
  const bool therapy =
      !item9_positive && (depression || marked_difficulty || !phq9_complete);
  AddRule(result, "route.therapy",
          "Depression profile, marked functional difficulty, or an incomplete "
          "PHQ-9 (never treated as a low score): clinician review.",
          "profile == DEPRESSION || phq9.10 >= 2 || phq9 incomplete",
          therapy,
          {Named("profile", depression ? "DEPRESSION" : "not depression"),
           Named("phq9.10", Show(difficulty)),
           Named("phq9.completeness", phq9_complete ? "complete" : "incomplete")});
  const bool self_help = !item9_positive && !therapy;
  AddRule(result, "route.self_help",
          "No risk, no depression signal, complete PHQ-9: self-help plan at "
          "once, re-screen in 2 weeks.",
          "otherwise", self_help, {Named("phq9.total", total_text)});

  v1::RoutingDecision* routing = result.mutable_routing();
  if (item9_positive) {
    routing->set_primary_route(common::v1::CRISIS_URGENT);
    routing->set_required_reviewer(common::v1::CLINICIAN);
  } else if (therapy) {
    routing->set_primary_route(common::v1::THERAPY);
    routing->set_required_reviewer(common::v1::CLINICIAN);
    if (!phq9_complete) {
      auto* f = routing->add_secondary_flags();
      f->set_code("incomplete.phq9");
      f->set_text("PHQ-9 incomplete: review the missing items with the person.");
    }
    if (depression) {
      auto* m = routing->add_modality_suggestions();
      m->set_modality("depression_treatment");
      m->set_reason(
          "Depression signals: evidence-based treatment for depression first.");
    }
  } else {
    routing->set_primary_route(common::v1::SELF_HELP);
    routing->set_required_reviewer(common::v1::REVIEWER_ROLE_UNSPECIFIED);
    routing->set_rescreen_after_days(14);
    *routing->add_self_help_plan() = Plan(
        "checkin_5min", "5-minute check-in",
        "Once a day: name the feeling, rate your energy from 0 to 10, and name "
        "one need.");
    *routing->add_self_help_plan() = Plan(
        "rest_window", "A 24-hour rest window",
        "Plan one 24-hour stretch this week with no work and no obligations.");
    *routing->add_self_help_plan() = Plan(
        "sleep_basics", "Protect sleep and basic care",
        "Keep regular sleep, meals and movement before anything optional.");
    *routing->add_self_help_plan() = Plan(
        "rescreen_2w", "Re-screen in 2 weeks",
        "If rest does not help and low mood or loss of interest are present, "
        "it may be more than exhaustion: talk to a clinician.");
  }
  return result;
}

}  // namespace aqueduct::scoring
