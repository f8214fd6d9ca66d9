// The RPC x role matrix: every method of every service, every role, the
// exact code; the policy covers every method the protos define and nothing
// else; a bad or missing credential says nothing more than that.

#include "common/auth/authorizer.h"

#include <google/protobuf/descriptor.h>

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protos/intake/v1/fhir_export_service.pb.h"
#include "protos/intake/v1/intake_service.pb.h"
#include "protos/intake/v1/rescore_service.pb.h"
#include "protos/referral/v1/referral_service.pb.h"
#include "protos/scoring/v1/scoring_service.pb.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::auth {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kNow = absl::FromUnixSeconds(1795000000);

// Callers, as "<role>" or "service:<name>".
const std::vector<std::string> kCallers = {
    "patient",  "clinician",      "physician",        "batch",
    "operator", "service:intake", "service:referral", "service:gateway"};

// The matrix, written out here independently of policy.cc: who may call
// each method (everyone else: PERMISSION_DENIED).
const std::map<std::string, std::set<std::string>>& Expected() {
  static const auto* m = new std::map<std::string, std::set<std::string>>{
      {"aqueduct.intake.v1.IntakeService/StartScreening", {"patient"}},
      {"aqueduct.intake.v1.IntakeService/GetScreening", {"patient"}},
      {"aqueduct.intake.v1.IntakeService/GetNextItems", {"patient"}},
      {"aqueduct.intake.v1.IntakeService/SubmitAnswers", {"patient"}},
      {"aqueduct.intake.v1.IntakeService/CompleteScreening", {"patient"}},
      {"aqueduct.intake.v1.IntakeService/AbandonScreening", {"patient"}},
      {"aqueduct.intake.v1.IntakeService/ListMyResults", {"patient"}},
      {"aqueduct.intake.v1.IntakeService/GetMyResult", {"patient"}},
      {"aqueduct.intake.v1.RescoreService/GetRescoreJob", {"batch"}},
      {"aqueduct.intake.v1.RescoreService/SaveRescoreCheckpoint", {"batch"}},
      {"aqueduct.intake.v1.RescoreService/RescoreScreenings", {"batch"}},
      {"aqueduct.intake.v1.FhirExportService/GetQuestionnaires",
       {"patient", "clinician", "physician", "batch", "operator"}},
      {"aqueduct.intake.v1.FhirExportService/ExportScreening",
       {"patient", "clinician", "physician", "batch", "operator"}},
      {"aqueduct.intake.v1.FhirExportService/ExportScreenings",
       {"batch", "operator"}},
      {"aqueduct.scoring.v1.ScoringService/ScoreAnswers", {"service:intake"}},
      {"aqueduct.scoring.v1.ScoringService/ScoreBatch", {"batch"}},
      {"aqueduct.scoring.v1.ScoringService/Rescore", {"service:intake"}},
      {"aqueduct.scoring.v1.ScoringService/DescribeCatalog",
       {"service:intake", "batch", "clinician", "physician", "operator"}},
      {"aqueduct.scoring.v1.ScoringService/ListRulesets",
       {"service:intake", "batch", "clinician", "physician", "operator"}},
      {"aqueduct.referral.v1.ReferralService/CreateReferral",
       {"service:intake"}},
      {"aqueduct.referral.v1.ReferralService/CreateReferrals",
       {"service:intake"}},
      {"aqueduct.referral.v1.ReferralService/ListQueue",
       {"clinician", "physician"}},
      {"aqueduct.referral.v1.ReferralService/ClaimCase",
       {"clinician", "physician"}},
      {"aqueduct.referral.v1.ReferralService/ReleaseCase",
       {"clinician", "physician"}},
      {"aqueduct.referral.v1.ReferralService/DecideCase",
       {"clinician", "physician"}},
      {"aqueduct.referral.v1.ReferralService/GetCase",
       {"clinician", "physician"}},
      {"aqueduct.referral.v1.ReferralService/ListAuditEvents",
       {"clinician", "physician"}},
      {"aqueduct.referral.v1.ReferralService/WatchQueue",
       {"clinician", "physician", "service:gateway"}},
      {"aqueduct.referral.v1.ReferralService/GetMyReferral", {"patient"}},
  };
  return *m;
}

class AuthorizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pair = GenerateKeyPair("EC");
    ASSERT_THAT(pair, IsOk());
    key_ = *pair;
    KeySet keys;
    ASSERT_THAT(keys.Add("k1", key_.public_pem,
                         *KeyGrants::Parse("patient clinician physician "
                                           "batch operator service:intake "
                                           "service:referral service:gateway")),
                IsOk());
    authorizer_ = std::make_unique<Authorizer>(std::make_shared<Verifier>(
        std::move(keys), "https://aqueduct.test", "aqueduct"));
  }

  std::string TokenFor(const std::string& caller) {
    Claims c;
    c.issuer = "https://aqueduct.test";
    c.audience = "aqueduct";
    c.expires = kNow + absl::Minutes(5);
    const size_t colon = caller.find(':');
    c.role = caller.substr(0, colon);
    c.subject = colon == std::string::npos ? "u1" : caller.substr(colon + 1);
    if (c.role == "clinician" || c.role == "physician") c.states = {"NY"};
    auto t = Sign(c, key_.private_pem, "k1");
    EXPECT_THAT(t, IsOk());
    return *t;
  }

  KeyPair key_;
  std::unique_ptr<Authorizer> authorizer_;
};

std::vector<std::string> MethodsOf(
    const google::protobuf::ServiceDescriptor* s) {
  std::vector<std::string> out;
  for (int i = 0; i < s->method_count(); ++i)
    out.push_back(absl::StrCat(s->full_name(), "/", s->method(i)->name()));
  return out;
}

std::vector<std::string> AllMethods() {
  std::vector<std::string> all;
  // Through a message of each file, so the file is linked and registered.
  for (auto [file, name] :
       {std::pair{intake::v1::StartScreeningRequest::descriptor()->file(),
                  "IntakeService"},
        std::pair{intake::v1::GetRescoreJobRequest::descriptor()->file(),
                  "RescoreService"},
        std::pair{intake::v1::ExportScreeningRequest::descriptor()->file(),
                  "FhirExportService"},
        std::pair{scoring::v1::ScoreAnswersRequest::descriptor()->file(),
                  "ScoringService"},
        std::pair{referral::v1::CreateReferralRequest::descriptor()->file(),
                  "ReferralService"}}) {
    const auto* s = file->FindServiceByName(name);
    EXPECT_NE(s, nullptr) << name;
    if (s == nullptr) continue;
    for (auto& m : MethodsOf(s)) all.push_back(std::move(m));
  }
  return all;
}

TEST_F(AuthorizerTest, EveryMethodOfEveryServiceIsInThePolicyAndTheMatrix) {
  const auto all = AllMethods();
  ASSERT_EQ(all.size(), 29u);
  for (const auto& m : all) {
    EXPECT_TRUE(Policy().contains("/" + m))
        << m << " has no policy row: nobody could call it";
    EXPECT_TRUE(Expected().count(m))
        << m << " is missing from this test's matrix";
  }
  EXPECT_EQ(Policy().size(), all.size())
      << "a policy row for a method that does not exist";
}

TEST_F(AuthorizerTest, RpcByRoleMatrix) {
  int allowed = 0, denied = 0;
  for (const auto& method : AllMethods()) {
    const auto& who = Expected().at(method);
    for (const auto& caller : kCallers) {
      auto id =
          authorizer_->Check(BearerValue(TokenFor(caller)), "/" + method, kNow);
      if (who.count(caller)) {
        ++allowed;
        ASSERT_THAT(id, IsOk()) << caller << " -> " << method;
        EXPECT_EQ(
            absl::StrCat(RoleName(id->role),
                         id->role == Role::kService ? ":" + id->subject : ""),
            caller);
      } else {
        ++denied;
        EXPECT_THAT(id, StatusIs(absl::StatusCode::kPermissionDenied))
            << caller << " -> " << method;
      }
    }
    // No token, and a bad one: UNAUTHENTICATED for every method.
    Rejection why;
    EXPECT_THAT(authorizer_->Check("", "/" + method, kNow, &why),
                StatusIs(absl::StatusCode::kUnauthenticated,
                         "missing or invalid credentials"));
    EXPECT_EQ(why, Rejection::kMissing);
  }
  EXPECT_EQ(allowed + denied, 29 * static_cast<int>(kCallers.size()));
  // intake, re-scoring, FHIR export, scoring, referral (+ the gateway's
  // relay stream)
  EXPECT_EQ(allowed,
            8 + 3 + (5 + 5 + 2) + 1 + 2 + 2 * 5 + 1 + 1 + 7 * 2 + 1 + 1);
}

TEST_F(AuthorizerTest, CredentialsOtherThanAValidBearerTokenSayNothingMore) {
  const std::string method = "/aqueduct.intake.v1.IntakeService/GetScreening";
  const std::string token = TokenFor("patient");
  EXPECT_THAT(authorizer_->Check("bearer " + token, method, kNow), IsOk())
      << "the scheme is case-insensitive";
  for (const std::string& header :
       {std::string("Basic dTE6cHc="), std::string("Bearer"),
        std::string("Bearer "), token,
        "Bearer " + token.substr(0, token.size() - 3)}) {
    Rejection why;
    auto id = authorizer_->Check(header, method, kNow, &why);
    EXPECT_THAT(id, StatusIs(absl::StatusCode::kUnauthenticated,
                             "missing or invalid credentials"))
        << header;
    EXPECT_THAT(std::string(id.status().message()), Not(HasSubstr("u1")));
  }
  EXPECT_THAT(
      authorizer_->Check(BearerValue(token), method, kNow + absl::Hours(1)),
      StatusIs(absl::StatusCode::kUnauthenticated,
               "missing or invalid credentials"))
      << "expired";
}

TEST_F(AuthorizerTest, UnknownMethodsAreDeniedByDefault) {
  EXPECT_THAT(authorizer_->Check(BearerValue(TokenFor("operator")),
                                 "/aqueduct.admin.v1.Admin/DropAll", kNow),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("DropAll is not open to any caller")));
}

}  // namespace
}  // namespace aqueduct::auth
