#ifndef AQUEDUCT_SERVICES_SCORING_DIGEST_H_
#define AQUEDUCT_SERVICES_SCORING_DIGEST_H_

#include <string>
#include <vector>

#include "protos/scoring/v1/result.pb.h"

namespace aqueduct::scoring {

// The care-relevant core of a result: route and the route rule behind it,
// each instrument's severity band, the safety flags. Intake stores it beside
// every result; re-scoring compares digests instead of whole results.
void DigestInto(const v1::ScoringResult& result, v1::ResultDigest* digest);
v1::ResultDigest DigestOf(const v1::ScoringResult& result);

// What changed between two digests, one line each (route with its rules,
// each band, the flag set); no line when nothing that matters for care did.
struct DigestChanges {
  bool route = false, band = false, flags = false;
  std::vector<std::string> lines;
  bool any() const { return route || band || flags; }
};
DigestChanges CompareDigests(const v1::ResultDigest& before,
                             const v1::ResultDigest& after);

// Whether two digests differ in route, a band or the flags (what
// CompareDigests reports, without building the lines).
bool DigestsDiffer(const v1::ResultDigest& before,
                   const v1::ResultDigest& after);

}  // namespace aqueduct::scoring

#endif  // AQUEDUCT_SERVICES_SCORING_DIGEST_H_
