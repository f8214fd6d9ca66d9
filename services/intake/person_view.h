#ifndef AQUEDUCT_SERVICES_INTAKE_PERSON_VIEW_H_
#define AQUEDUCT_SERVICES_INTAKE_PERSON_VIEW_H_

// What the person being screened sees of their result and route: their own
// scores and crisis resources, and a route in plain language, never a route
// under review as a decision and never "eligible for ketamine".

#include "protos/intake/v1/intake_service.pb.h"
#include "protos/scoring/v1/result.pb.h"
#include "services/scoring/catalog.h"

namespace aqueduct::intake {

// Opens every plain-language message a person sees.
inline constexpr char kDisclaimer[] = "This is a screening, not a diagnosis.";

// The person's view of a full scoring result (see the definition for what
// is left out and why). `catalog` may be null (scores are then left out).
scoring::v1::ScoringResult ForThePerson(const scoring::v1::ScoringResult& full,
                                        const scoring::CatalogIndex* catalog);

// The route as the person may see it, with its message.
v1::PersonRoute PersonRouteOf(const scoring::v1::ScoringResult& result);

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_PERSON_VIEW_H_
