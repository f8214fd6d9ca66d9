#include "services/scoring/scoring_engine.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"

namespace aqueduct::scoring {
namespace {

using common::v1::Answer;
using expr::Truth;
using expr::Value;
using v1::InstrumentScore;
using v1::ScoringResult;

// Appends a rule evaluation with the current values of its inputs. The
// rule's wording is not repeated in every result (it would be most of a
// stored result's size): ListRulesets serves it once under the same id.
void Explain(ScoringResult& result, const expr::Schema& schema,
             const Value* values, absl::string_view id,
             absl::string_view /*description*/, const expr::Expr& when,
             Truth truth, absl::string_view outcome) {
  v1::RuleEvaluation* rule = result.add_rules();
  // assign, not set_x(std::string(...)): a reused result keeps its buffers.
  rule->mutable_rule_id()->assign(id.data(), id.size());
  rule->set_threshold(when.text());
  rule->set_fired(truth == Truth::kTrue);
  rule->set_undecided(truth == Truth::kUnknown);
  rule->mutable_outcome()->assign(outcome.data(), outcome.size());
  for (int slot : when.slots()) {
    common::v1::NamedValue* in = rule->add_inputs();
    in->set_name(schema.entry(slot).name);
    expr::RenderTo(values[slot], in->mutable_value());
  }
}

std::string Inputs(const expr::Schema& schema, const Value* values,
                   const expr::Expr& when) {
  std::string out;
  for (int slot : when.slots()) {
    if (!out.empty()) out += ", ";
    absl::StrAppend(&out, schema.entry(slot).name, " = ",
                    expr::Render(values[slot]));
  }
  return out;
}

struct Scratch {
  std::vector<Value> values;
  // A crisis_resources message kept between results (see ClearForReuse).
  std::unique_ptr<common::v1::CrisisResources> spare_crisis;
};

// Clears a result for the next screening without freeing what it holds.
// ScoringResult::Clear() keeps its repeated fields' elements for reuse but,
// off an arena, deletes its singular messages (routing, crisis_resources),
// so a batch loop reusing one result allocated them, every plan item, flag
// and crisis contact in them, and each of their strings again per screening
// (callgrind: a third of the scoring bench's instructions). Here routing is
// cleared in place (every result sets it) and crisis_resources is parked in
// the thread's scratch, so has_crisis_resources() is false until a result
// sets it again. On an arena allocation is cheap and release would copy:
// plain Clear().
void ClearForReuse(ScoringResult* out, Scratch& scratch) {
  if (out->GetArena() != nullptr) {
    out->Clear();
    return;
  }
  v1::RoutingDecision* routing =
      out->has_routing() ? out->release_routing() : nullptr;
  if (out->has_crisis_resources()) {
    std::unique_ptr<common::v1::CrisisResources> parked(
        out->release_crisis_resources());
    if (scratch.spare_crisis == nullptr)
      scratch.spare_crisis = std::move(parked);
  }
  out->Clear();
  if (routing != nullptr) {
    routing->Clear();
    out->set_allocated_routing(routing);
  }
}

// Sets result.crisis_resources to the ruleset's, reusing a parked message.
void SetCrisisResources(ScoringResult& result,
                        const common::v1::CrisisResources& from,
                        Scratch& scratch) {
  if (result.GetArena() != nullptr || scratch.spare_crisis == nullptr) {
    *result.mutable_crisis_resources() = from;
    return;
  }
  *scratch.spare_crisis = from;
  result.set_allocated_crisis_resources(scratch.spare_crisis.release());
}

}  // namespace

absl::StatusOr<std::unique_ptr<ScoringEngine>> ScoringEngine::Create(
    std::shared_ptr<const CatalogIndex> catalog,
    std::vector<std::shared_ptr<const RulesetIndex>> rulesets) {
  if (rulesets.empty()) return absl::InvalidArgumentError("no ruleset loaded");
  for (const auto& rs : rulesets) {
    if (&rs->catalog() != catalog.get()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ruleset ", rs->version(), " was built for another catalog"));
    }
  }
  std::sort(rulesets.begin(), rulesets.end(), [](const auto& a, const auto& b) {
    if (a->ruleset().published() != b->ruleset().published()) {
      return a->ruleset().published() > b->ruleset().published();
    }
    return a->version() > b->version();
  });
  std::unique_ptr<ScoringEngine> engine(new ScoringEngine());
  engine->catalog_ = std::move(catalog);
  engine->rulesets_ = std::move(rulesets);
  return engine;
}

absl::StatusOr<std::unique_ptr<ScoringEngine>> ScoringEngine::Load(
    const std::string& catalog_path, const std::string& rulesets_dir) {
  ASSIGN_OR_RETURN(auto catalog, CatalogIndex::LoadFile(catalog_path));
  ASSIGN_OR_RETURN(auto rulesets, RulesetIndex::LoadDir(rulesets_dir, catalog));
  return Create(catalog, std::move(rulesets));
}

const RulesetIndex* ScoringEngine::Find(const std::string& version) const {
  for (const auto& rs : rulesets_) {
    if (rs->version() == version) return rs.get();
  }
  return nullptr;
}

v1::ListRulesetsResponse ScoringEngine::Rulesets() const {
  v1::ListRulesetsResponse out;
  for (const auto& rs : rulesets_) {
    v1::RulesetInfo* info = out.add_rulesets();
    *info = rs->Info();
    auto describe = [&](const std::vector<RulesetIndex::Compiled>& rules,
                        absl::string_view prefix) {
      for (const auto& r : rules) {
        v1::RuleEvaluation* e = info->add_rules();
        e->set_rule_id(absl::StrCat(prefix, r.id));  // the same ids results use
        e->set_description(r.description);
        e->set_threshold(r.when.text());
      }
    };
    describe(rs->flags(), "");
    describe(rs->signals(), "");
    describe(rs->profiles(), "");
    describe(rs->routes(), "");
    describe(rs->secondary_flags(), "");
    describe(rs->modalities(), "");
    describe(rs->plan(), "");
  }
  return out;
}

absl::StatusOr<ScoringResult> ScoringEngine::Score(
    const v1::ScoreAnswersRequest& request) const {
  ScoringResult result;
  RETURN_IF_ERROR(ScoreInto(request, &result));
  return result;
}

absl::Status ScoringEngine::ScoreInto(const v1::ScoreAnswersRequest& request,
                                      ScoringResult* out) const {
  return Evaluate(request, /*full=*/true, out, nullptr, nullptr);
}

absl::Status ScoringEngine::DigestInto(const v1::ScoreAnswersRequest& request,
                                       v1::ResultDigest* digest,
                                       bool* crisis_certain) const {
  thread_local ScoringResult lean;
  std::string route_rule;
  Truth crisis = Truth::kUnknown;
  RETURN_IF_ERROR(
      Evaluate(request, /*full=*/false, &lean, &route_rule, &crisis));
  if (crisis_certain != nullptr) *crisis_certain = crisis == Truth::kTrue;
  scoring::DigestInto(lean, digest);
  digest->set_route_rule(std::move(route_rule));
  return absl::OkStatus();
}

absl::Status ScoringEngine::Evaluate(const v1::ScoreAnswersRequest& request,
                                     bool full, ScoringResult* out,
                                     std::string* route_rule,
                                     Truth* crisis) const {
  thread_local Scratch scratch;
  ClearForReuse(out, scratch);
  const RulesetIndex* rs = rulesets_.front().get();
  if (!request.ruleset_version().empty()) {
    rs = Find(request.ruleset_version());
    if (rs == nullptr) {
      std::vector<std::string> loaded;
      for (const auto& r : rulesets_) loaded.push_back(r->version());
      return absl::NotFoundError(absl::StrCat(
          "ruleset_version: \"", request.ruleset_version(),
          "\" is not loaded (loaded: ", absl::StrJoin(loaded, ", "), ")"));
    }
  }
  const CatalogIndex& cat = *catalog_;
  const expr::Schema& schema = rs->schema();
  const expr::SetTable& sets = rs->sets();
  scratch.values.assign(schema.size(), Value::Unknown());
  Value* values = scratch.values.data();

  ScoringResult& result = *out;
  result.set_ruleset_version(rs->version());
  result.set_catalog_version(cat.catalog().version());
  result.set_engine_version(kEngineVersion);
  if (!request.packed_answers().empty()) {
    if (request.answers().answers_size() > 0 ||
        request.administered_instruments_size() > 0) {
      return absl::InvalidArgumentError(
          "packed_answers: set together with answers or "
          "administered_instruments (use one form)");
    }
    RETURN_IF_ERROR(cat.ScorePacked(request.packed_answers(), sets, values,
                                    &result, full, &rs->min_answered()));
  } else
    RETURN_IF_ERROR(cat.ScoreInstruments(
        request.answers().answers(), request.administered_instruments(), sets,
        values, &result, nullptr, full, &rs->min_answered()));

  // Safety flags.
  for (size_t i = 0; i < rs->flags().size(); ++i) {
    const auto& rule = rs->flags()[i];
    const auto& def = rs->ruleset().flags(static_cast<int>(i));
    const Truth t = rule.when.Eval(values, sets);
    values[rs->flag_slots()[i]] = Value::FromTruth(t);
    if (t == Truth::kTrue) {
      v1::SafetyFlag* flag = result.add_safety_flags();
      flag->set_kind(def.kind());
      if (full) flag->set_explanation(Inputs(schema, values, rule.when));
    }
    if (full && t != Truth::kFalse) {
      Explain(result, schema, values, rule.id, rule.description, rule.when, t,
              v1::SafetyFlagKind_Name(def.kind()));
    }
  }
  // Signals.
  for (size_t i = 0; i < rs->signals().size(); ++i) {
    const auto& rule = rs->signals()[i];
    const Truth t = rule.when.Eval(values, sets);
    values[rs->signal_slots()[i]] = Value::FromTruth(t);
    if (full && t != Truth::kFalse) {
      Explain(result, schema, values, rule.id, rule.description, rule.when, t,
              "");
    }
  }
  // Profile: first rule that holds; one that cannot be decided first makes
  // the profile incomplete.
  v1::Profile profile = v1::PROFILE_INCOMPLETE;
  const RulesetIndex::Compiled* deciding = nullptr;
  for (size_t i = 0; i < rs->profiles().size(); ++i) {
    const auto& rule = rs->profiles()[i];
    const Truth t = rule.when.Eval(values, sets);
    if (t == Truth::kFalse) continue;
    const v1::Profile p = rs->ruleset().profiles(static_cast<int>(i)).profile();
    if (full)
      Explain(result, schema, values, rule.id, rule.description, rule.when, t,
              v1::Profile_Name(p));
    if (t == Truth::kTrue) {
      profile = p;
      deciding = &rule;
    }
    break;
  }
  result.set_profile(profile);
  values[rs->profile_slot()] = profile == v1::PROFILE_INCOMPLETE
                                   ? Value::Unknown()
                                   : Value::Code(v1::Profile_Name(profile));
  if (full) {
    // The signals behind the profile: the deciding rule's inputs, or every
    // profile input when it could not be decided.
    std::vector<int> slots;
    auto add = [&](const expr::Expr& e) {
      for (int s : e.slots()) {
        if (std::find(slots.begin(), slots.end(), s) == slots.end())
          slots.push_back(s);
      }
    };
    if (deciding != nullptr) {
      add(deciding->when);
    } else {
      for (const auto& r : rs->profiles()) add(r.when);
    }
    for (int s : slots) {
      common::v1::NamedValue* nv = result.add_profile_signals();
      nv->set_name(schema.entry(s).name);
      expr::RenderTo(values[s], nv->mutable_value());
    }
  }

  // Routes: the first rule that holds wins. A rule above it that could not
  // be decided (answers missing or declined) is flagged for the reviewer and
  // forbids an outcome without review: the case then takes the default
  // (reviewed) route instead of self-help. A reviewed route that holds is
  // kept, so a missing ASQ never pushes item 9 > 0 below CRISIS_URGENT.
  v1::RoutingDecision* routing = result.mutable_routing();
  int chosen = -1;
  std::vector<int> undecided;
  for (size_t i = 0; i < rs->routes().size() && chosen < 0; ++i) {
    const auto& rule = rs->routes()[i];
    const Truth t = rule.when.Eval(values, sets);
    if (t == Truth::kFalse) continue;
    if (full) {
      Explain(result, schema, values, rule.id, rule.description, rule.when, t,
              common::v1::Route_Name(
                  rs->ruleset().routes(static_cast<int>(i)).route()));
    }
    if (t == Truth::kUnknown) {
      undecided.push_back(static_cast<int>(i));
    } else {
      chosen = static_cast<int>(i);
    }
  }
  if (chosen >= 0 && !undecided.empty()) {
    const auto& def = rs->ruleset().routes(chosen);
    // No unreviewed outcome when something above is undecided; under
    // strict priority no outcome at all, but for the routes that must never
    // be lowered (crisis).
    const bool gives_way =
        rs->ruleset().strict_priority()
            ? !def.kept_below_undecided()
            : def.reviewer() == common::v1::REVIEWER_ROLE_UNSPECIFIED;
    if (gives_way) chosen = -1;
  }
  if (route_rule != nullptr) {
    // What the full result's explanations name as the fired route rule: the
    // first route rule that held (even when an undecided one above it sends
    // the case to the default route).
    route_rule->clear();
    for (size_t i = 0; i < rs->routes().size(); ++i) {
      if (rs->routes()[i].when.Eval(values, sets) == Truth::kTrue) {
        *route_rule = rs->routes()[i].id;
        break;
      }
    }
  }
  const common::v1::Route primary = chosen >= 0
                                        ? rs->ruleset().routes(chosen).route()
                                        : rs->ruleset().default_route().route();
  values[rs->route_slot()] = Value::Code(common::v1::Route_Name(primary));
  if (crisis != nullptr) *crisis = rs->crisis_when().Eval(values, sets);
  if (!full) {
    // A digest needs the route, bands and flags only.
    routing->set_primary_route(primary);
    return absl::OkStatus();
  }
  if (chosen >= 0) {
    const auto& def = rs->ruleset().routes(chosen);
    routing->set_primary_route(def.route());
    routing->set_required_reviewer(def.reviewer());
    routing->set_fallback_route(def.fallback_route());
    routing->set_rescreen_after_days(def.rescreen_after_days());
  } else {
    const auto& def = rs->ruleset().default_route();
    routing->set_primary_route(def.route());
    routing->set_required_reviewer(def.reviewer());
    if (undecided.empty()) {
      v1::SecondaryFlag* f = routing->add_secondary_flags();
      f->set_code("undecided.no_rule");
      f->set_text(def.description());
    }
  }
  for (int i : undecided) {
    const auto& rule = rs->routes()[i];
    v1::SecondaryFlag* f = routing->add_secondary_flags();
    f->set_code("undecided." + rule.id);
    f->set_text(absl::StrCat("Could not decide ", rule.id, " (",
                             Inputs(schema, values, rule.when),
                             "): a clinician should review it."));
  }
  // Secondary flags, modalities, plan.
  for (size_t i = 0; i < rs->secondary_flags().size(); ++i) {
    const auto& rule = rs->secondary_flags()[i];
    if (rule.when.Eval(values, sets) != Truth::kTrue) continue;
    const auto& def = rs->ruleset().secondary_flags(static_cast<int>(i));
    v1::SecondaryFlag* f = routing->add_secondary_flags();
    f->set_code(def.code());
    f->set_text(def.text());
    Explain(result, schema, values, rule.id, def.text(), rule.when,
            Truth::kTrue, def.code());
  }
  for (size_t i = 0; i < rs->modalities().size(); ++i) {
    const auto& rule = rs->modalities()[i];
    if (rule.when.Eval(values, sets) != Truth::kTrue) continue;
    const auto& def = rs->ruleset().modalities(static_cast<int>(i));
    v1::ModalitySuggestion* m = routing->add_modality_suggestions();
    m->set_modality(def.modality());
    m->set_reason(def.reason());
    Explain(result, schema, values, rule.id, def.reason(), rule.when,
            Truth::kTrue, def.modality());
  }
  for (size_t i = 0; i < rs->plan().size(); ++i) {
    const auto& rule = rs->plan()[i];
    if (rule.when.Eval(values, sets) != Truth::kTrue) continue;
    *routing->add_self_help_plan() =
        rs->ruleset().plan(static_cast<int>(i)).item();
  }
  // Crisis resources: when a risk flag is set, and also when it cannot be
  // ruled out (item 9 left unanswered or declined).
  if (rs->crisis_when().Eval(values, sets) != Truth::kFalse) {
    SetCrisisResources(result, rs->ruleset().crisis_resources(), scratch);
  }
  return absl::OkStatus();
}

}  // namespace aqueduct::scoring
