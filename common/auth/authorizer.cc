#include "common/auth/authorizer.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace aqueduct::auth {

namespace {

constexpr char kIntake[] = "/aqueduct.intake.v1.IntakeService/";
constexpr char kScoring[] = "/aqueduct.scoring.v1.ScoringService/";
constexpr char kReferral[] = "/aqueduct.referral.v1.ReferralService/";
constexpr char kRescore[] = "/aqueduct.intake.v1.RescoreService/";
constexpr char kFhir[] = "/aqueduct.intake.v1.FhirExportService/";

absl::flat_hash_map<std::string, Access> BuildPolicy() {
  const std::vector<Role> clinicians = {Role::kClinician, Role::kPhysician};
  const Access patient_own{
      {Role::kPatient},
      {},
      "the caller's own screenings only (users/{sub}/...)"};
  const Access queue{
      clinicians, {}, "cases in the caller's licensed states only"};
  absl::flat_hash_map<std::string, Access> p;
  // Intake: the person screened, on their own screenings.
  for (const char* m : {"StartScreening", "GetScreening", "GetNextItems",
                        "SubmitAnswers", "CompleteScreening",
                        "AbandonScreening", "ListMyResults", "GetMyResult"}) {
    p[absl::StrCat(kIntake, m)] = patient_own;
  }
  // Intake's completed screenings, for batch re-scoring jobs only.
  for (const char* m :
       {"GetRescoreJob", "SaveRescoreCheckpoint", "RescoreScreenings"}) {
    p[absl::StrCat(kRescore, m)] = {{Role::kBatch}, {}, ""};
  }
  // FHIR export: the Questionnaires are reference data; one screening for
  // the person (their own), clinicians (their licensed states), the batch
  // identity and operators; ranges for the batch identity and operators.
  p[absl::StrCat(kFhir, "GetQuestionnaires")] = {
      {Role::kPatient, Role::kClinician, Role::kPhysician, Role::kBatch,
       Role::kOperator},
      {},
      ""};
  p[absl::StrCat(kFhir, "ExportScreening")] = {
      {Role::kPatient, Role::kClinician, Role::kPhysician, Role::kBatch,
       Role::kOperator},
      {},
      "the person's own; clinicians the states they are licensed in"};
  p[absl::StrCat(kFhir, "ExportScreenings")] = {
      {Role::kBatch, Role::kOperator}, {}, ""};
  // Scoring: intake scores completed screenings, and re-scores them for
  // batch jobs (RescoreScreenings);
  // the catalog and rulesets are not personal data.
  p[absl::StrCat(kScoring, "ScoreAnswers")] = {
      {Role::kService}, {"intake"}, ""};
  p[absl::StrCat(kScoring, "ScoreBatch")] = {{Role::kBatch}, {}, ""};
  p[absl::StrCat(kScoring, "Rescore")] = {{Role::kService}, {"intake"}, ""};
  const Access reference{{Role::kService, Role::kBatch, Role::kClinician,
                          Role::kPhysician, Role::kOperator},
                         {"intake"},
                         ""};
  p[absl::StrCat(kScoring, "DescribeCatalog")] = reference;
  p[absl::StrCat(kScoring, "ListRulesets")] = reference;
  // Referral: intake hands completed screenings over and opens re-reviews
  // (for batch jobs' RescoreScreenings); clinicians work the queue; a
  // person reads their own.
  p[absl::StrCat(kReferral, "CreateReferral")] = {
      {Role::kService}, {"intake"}, ""};
  p[absl::StrCat(kReferral, "CreateReferrals")] = {
      {Role::kService}, {"intake"}, ""};
  for (const char* m : {"ListQueue", "ClaimCase", "ReleaseCase", "GetCase",
                        "ListAuditEvents"}) {
    p[absl::StrCat(kReferral, m)] = queue;
  }
  // The HTTP gateway relays one stream to its portals, applying each
  // event's audience to each of them.
  p[absl::StrCat(kReferral, "WatchQueue")] = {
      {Role::kClinician, Role::kPhysician, Role::kService},
      {kGatewayService},
      "cases in the caller's licensed states only; the gateway's relay "
      "stream every case, with the audience it applies to each portal"};
  p[absl::StrCat(kReferral, "DecideCase")] = {
      clinicians,
      {},
      "cases in the caller's licensed states; ketamine reviews by physicians "
      "only"};
  p[absl::StrCat(kReferral, "GetMyReferral")] = patient_own;
  return p;
}

}  // namespace

const absl::flat_hash_map<std::string, Access>& Policy() {
  static const auto* policy =
      new absl::flat_hash_map<std::string, Access>(BuildPolicy());
  return *policy;
}

std::string BearerValue(absl::string_view token) {
  return absl::StrCat("Bearer ", token);
}

absl::StatusOr<Identity> Authorizer::Check(absl::string_view authorization,
                                           absl::string_view method,
                                           absl::Time now,
                                           Rejection* why) const {
  absl::string_view token;
  if (authorization.size() > 7 &&
      absl::StartsWithIgnoreCase(authorization, "bearer ")) {
    token = authorization.substr(7);
  } else if (!authorization.empty()) {
    token = "-";  // not a bearer credential: malformed
  }
  Rejection reason = Rejection::kMissing;
  auto identity = verifier_->Verify(token, now, &reason);
  if (!identity.ok()) {
    if (why != nullptr) *why = reason;
    return absl::UnauthenticatedError("missing or invalid credentials");
  }
  auto it = Policy().find(method);
  const size_t slash = method.rfind('/');
  const absl::string_view short_name =
      slash == absl::string_view::npos ? method : method.substr(slash + 1);
  if (it == Policy().end()) {
    return absl::PermissionDeniedError(
        absl::StrCat(short_name, " is not open to any caller"));
  }
  const Access& access = it->second;
  if (std::find(access.roles.begin(), access.roles.end(), identity->role) ==
      access.roles.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "role ", RoleName(identity->role), " may not call ", short_name));
  }
  if (identity->role == Role::kService &&
      std::find(access.services.begin(), access.services.end(),
                identity->subject) == access.services.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("this service may not call ", short_name));
  }
  return identity;
}

}  // namespace aqueduct::auth
