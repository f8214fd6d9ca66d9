#include "services/intake/person_view.h"

namespace aqueduct::intake {

// What a person may see of their own scoring result: their instrument
// scores, the crisis resources, and the self-help plan when that is their
// route. Not the route under review, the rules that fired, secondary flags
// (e.g. a ketamine exclusion), modality suggestions or the profile label:
// nothing reaches a person before a clinician has looked, and a ketamine
// review is never shown as eligibility.
scoring::v1::ScoringResult ForThePerson(const scoring::v1::ScoringResult& full,
                                        const scoring::CatalogIndex* catalog) {
  scoring::v1::ScoringResult out;
  out.set_ruleset_version(full.ruleset_version());
  out.set_catalog_version(full.catalog_version());
  for (const auto& score : full.scores()) {
    const auto* ins = catalog != nullptr
                          ? catalog->FindInstrument(score.instrument_id())
                          : nullptr;
    // Only scored instruments (not the context or the ketamine pre-screen).
    if (ins == nullptr ||
        ins->scoring() == scoring::v1::SCORING_METHOD_UNSPECIFIED)
      continue;
    if (score.completeness() == scoring::v1::NOT_ADMINISTERED) continue;
    *out.add_scores() = score;
  }
  if (full.has_crisis_resources())
    *out.mutable_crisis_resources() = full.crisis_resources();
  if (full.routing().primary_route() == common::v1::SELF_HELP) {
    *out.mutable_routing()->mutable_self_help_plan() =
        full.routing().self_help_plan();
    out.mutable_routing()->set_primary_route(common::v1::SELF_HELP);
    out.mutable_routing()->set_rescreen_after_days(
        full.routing().rescreen_after_days());
  }
  return out;
}

const std::vector<std::string>& IntakeTextKeys() {
  static const auto* keys = new std::vector<std::string>{
      "route.self_help", "route.therapy", "route.physician_review",
      "route.crisis", "route.other"};
  return *keys;
}

std::shared_ptr<const texts::PersonTexts> DefaultIntakeTexts() {
  static const auto* texts = new std::shared_ptr<const texts::PersonTexts>(
      texts::PersonTexts::Load(texts::PersonTexts::DefaultPath(),
                               IntakeTextKeys())
          .value());
  return *texts;
}

v1::PersonRoute PersonRouteOf(const scoring::v1::ScoringResult& result,
                              const texts::PersonTexts& texts) {
  v1::PersonRoute route;
  const auto primary = result.routing().primary_route();
  switch (primary) {
    case common::v1::SELF_HELP:
      route.set_route(primary);
      route.set_message(texts.Message("route.self_help"));
      *route.mutable_self_help_plan() = result.routing().self_help_plan();
      break;
    case common::v1::THERAPY:
      route.set_route(primary);
      route.set_pending_review(true);
      route.set_message(texts.Message("route.therapy"));
      break;
    case common::v1::KETAMINE_REVIEW:
      // Nothing about eligibility reaches the person before a physician
      // confirms it: only that a physician is reviewing.
      route.set_route(common::v1::UNDER_PHYSICIAN_REVIEW);
      route.set_pending_review(true);
      route.set_message(texts.Message("route.physician_review"));
      break;
    case common::v1::CRISIS_URGENT:
    case common::v1::CRISIS_ACUTE:
      route.set_route(primary);
      route.set_pending_review(true);
      route.set_message(texts.Message("route.crisis"));
      break;
    default:
      route.set_pending_review(true);
      route.set_message(texts.Message("route.other"));
  }
  return route;
}

}  // namespace aqueduct::intake
