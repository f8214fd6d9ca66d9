#ifndef AQUEDUCT_SERVICES_INTAKE_FHIR_EXPORT_H_
#define AQUEDUCT_SERVICES_INTAKE_FHIR_EXPORT_H_

// FHIR R4 resources for what Aqueduct holds (reference §8): a Questionnaire
// per instrument and version, and per completed screening its raw answers
// (one QuestionnaireResponse per instrument asked) and what was derived from
// them under one ruleset (survey Observations, a RiskAssessment when a
// safety flag was raised, the proposed route). Pure: no I/O, no clock.
//
// Identity and versions:
//  - Questionnaire canonical: <base>/Questionnaire/<instrument>, version
//    the instrument's; a QuestionnaireResponse pins <canonical>|<version>.
//  - Resource ids are derived from the screening id (and, for what is
//    derived, the ruleset version), so exporting twice gives the same ids
//    (a transaction Bundle PUTs them idempotently) and a re-score under a
//    new ruleset adds new Observations beside the old ones, never touching
//    the responses.
//  - Codes: LOINC where the catalog has one (items, answers, panels,
//    totals); elsewhere the project's code system <base>/CodeSystem/aqueduct
//    (the catalog's local codes, CBI's scores, the route).

#include <cstdint>
#include <string>
#include <vector>

#include "google/protobuf/struct.pb.h"
#include "protos/common/v1/common.pb.h"
#include "protos/scoring/v1/catalog.pb.h"
#include "protos/scoring/v1/result.pb.h"

namespace aqueduct::intake::fhir {

struct ExportOptions {
  // Base of the canonical URLs and of the project's code system.
  std::string base = "https://aqueduct.example/fhir";
  // subject.reference = patient_prefix + the pseudonymous user id: the EHR
  // maps it to its Patient (the export never holds a name).
  std::string patient_prefix = "Patient/";
};

// A completed screening as intake stores it.
struct CompletedScreening {
  std::string id;           // the screening's id (the last part of its name)
  std::string subject;      // pseudonymous user id
  int64_t authored_ms = 0;  // when it was completed
  common::v1::AnswerSet answers;
  std::vector<std::string> administered;  // instruments asked, in order
  scoring::v1::ScoringResult result;      // under result.ruleset_version()
  // Results under later rulesets (re-scoring), each exported beside the
  // original with its own ruleset version.
  std::vector<scoring::v1::ScoringResult> rescored;
};

// The Questionnaire of one instrument.
google::protobuf::Value Questionnaire(const scoring::v1::Instrument& instrument,
                                      const ExportOptions& options);

// Every resource of one completed screening: its QuestionnaireResponses,
// then the Observations (per scored instrument a panel with hasMember its
// total or mean, each derivedFrom the response), a RiskAssessment when a
// safety flag was raised, and the route Observation (status preliminary:
// a clinician confirms or changes it in referral).
std::vector<google::protobuf::Value> ScreeningResources(
    const scoring::v1::Catalog& catalog, const CompletedScreening& screening,
    const ExportOptions& options);

// The resources as a Bundle: "collection", or "transaction" (each entry a
// PUT of <type>/<id>, so posting it twice changes nothing).
google::protobuf::Value Bundle(const std::vector<google::protobuf::Value>& r,
                               const std::string& type,
                               const ExportOptions& options);

// Compact JSON of a resource (one NDJSON line).
std::string ToJson(const google::protobuf::Value& resource);

}  // namespace aqueduct::intake::fhir

#endif  // AQUEDUCT_SERVICES_INTAKE_FHIR_EXPORT_H_
