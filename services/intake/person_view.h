#ifndef AQUEDUCT_SERVICES_INTAKE_PERSON_VIEW_H_
#define AQUEDUCT_SERVICES_INTAKE_PERSON_VIEW_H_

// What the person being screened sees of their result and route: their own
// scores and crisis resources, and a route in plain language, never a route
// under review as a decision and never "eligible for ketamine".

#include <memory>
#include <string>
#include <vector>

#include "common/texts/person_texts.h"
#include "protos/intake/v1/intake_service.pb.h"
#include "protos/scoring/v1/result.pb.h"
#include "services/scoring/catalog.h"

namespace aqueduct::intake {

// The person-facing texts intake shows (data/texts/person_texts.textproto):
// intake loads them at start and refuses to start without any of them.
const std::vector<std::string>& IntakeTextKeys();
// The texts as the repository ships them (the default when a config gives
// none); aborts when they cannot be read, as a missing data directory is an
// installation that cannot serve.
std::shared_ptr<const texts::PersonTexts> DefaultIntakeTexts();

// The person's view of a full scoring result (see the definition for what
// is left out and why). `catalog` may be null (scores are then left out).
scoring::v1::ScoringResult ForThePerson(const scoring::v1::ScoringResult& full,
                                        const scoring::CatalogIndex* catalog);

// The route as the person may see it, with its message from `texts`.
v1::PersonRoute PersonRouteOf(const scoring::v1::ScoringResult& result,
                              const texts::PersonTexts& texts);

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_PERSON_VIEW_H_
