#include "services/intake/clinical.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace aqueduct::intake {

std::shared_ptr<const Clinical> CatalogHolder::Get() const {
  absl::MutexLock lock(&mu_);
  return clinical_;
}

void CatalogHolder::Set(std::shared_ptr<const Clinical> clinical) {
  absl::MutexLock lock(&mu_);
  clinical_ = std::move(clinical);
}

absl::Status CatalogHolder::LoadFrom(ScoringPeer& scoring,
                                     absl::Time deadline) {
  auto catalog = scoring.DescribeCatalog(deadline);
  if (!catalog.ok()) return catalog.status();
  ASSIGN_OR_RETURN(auto rulesets, scoring.ListRulesets(deadline));
  if (rulesets.rulesets().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(scoring.Describe(), " has no ruleset loaded"));
  }
  ASSIGN_OR_RETURN(auto index,
                   scoring::CatalogIndex::Build(std::move(*catalog)));
  auto clinical = std::make_shared<Clinical>();
  clinical->catalog = std::move(index);
  const auto& newest = rulesets.rulesets(0);
  clinical->default_ruleset = newest.version();
  for (const auto& set : newest.sets()) {
    clinical->sets.emplace_back(
        set.name(),
        std::vector<std::string>(set.values().begin(), set.values().end()));
  }
  ASSIGN_OR_RETURN(auto ruleset, scoring::RulesetIndex::Build(
                                     newest.definition(), clinical->catalog));
  auto engine = scoring::ScoringEngine::Create(clinical->catalog, {ruleset});
  if (!engine.ok()) return engine.status();
  clinical->engine = std::move(*engine);
  Set(std::move(clinical));
  return absl::OkStatus();
}

scoring::v1::ScoreAnswersRequest AnswersSoFar(
    const storage::v1::SessionRecord& record,
    const scoring::CatalogIndex& catalog) {
  scoring::v1::ScoreAnswersRequest partial;
  for (const auto& info : catalog.instruments()) {
    for (const auto& item : info.items) {
      auto it = record.answers().find(item.def->id());
      if (it != record.answers().end())
        *partial.mutable_answers()->add_answers() = it->second;
    }
  }
  return partial;
}

}  // namespace aqueduct::intake
