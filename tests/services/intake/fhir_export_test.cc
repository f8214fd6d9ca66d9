#include "services/intake/fhir_export.h"

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/scoring_fixture.h"

namespace aqueduct::intake::fhir {
namespace {

using google::protobuf::Value;
using ::testing::UnorderedElementsAreArray;

const Value& Field(const Value& v, const std::string& key) {
  static const Value none;
  if (!v.has_struct_value()) return none;
  auto it = v.struct_value().fields().find(key);
  return it == v.struct_value().fields().end() ? none : it->second;
}
std::string Text(const Value& v, const std::string& key) {
  return Field(v, key).string_value();
}
const Value& At(const Value& v, int i) { return v.list_value().values(i); }
int Size(const Value& v) { return v.list_value().values_size(); }
// system|code of the first coding of a CodeableConcept.
std::string CodeOf(const Value& codeable) {
  const Value& c = At(Field(codeable, "coding"), 0);
  return Text(c, "system") + "|" + Text(c, "code");
}

class FhirExportTest : public testing::ScoringFixture {
 protected:
  const scoring::v1::Catalog& Catalog() const {
    return engine_->catalog().catalog();
  }

  // A screening as intake stores it once completed: the flow's answers
  // (with the overrides), scored under `ruleset`.
  CompletedScreening Completed(Overrides overrides,
                               const std::string& ruleset = "v2") {
    Overrides all = testing::AdultContext(
        overrides.contains("ctx.state") ? overrides["ctx.state"] : "NY");
    for (auto& [k, v] : overrides) all[k] = v;
    auto request = testing::ScriptedScreening(*engine_, all);
    EXPECT_THAT(request, testing::IsOk());
    CompletedScreening s;
    s.id = "f7ux2kq3m4n5p6r7s8t9v0w1xy";
    s.subject = "pseudonym-3jk2";
    s.authored_ms = 1'796'400'000'123;
    if (!request.ok()) return s;
    request->set_ruleset_version(ruleset);
    s.answers = request->answers();
    for (const auto& id : request->administered_instruments())
      s.administered.push_back(id);
    auto result = engine_->Score(*request);
    EXPECT_THAT(result, testing::IsOk());
    if (result.ok()) s.result = *result;
    return s;
  }

  // The resources by "<type>/<id>".
  static std::map<std::string, Value> ById(const std::vector<Value>& rs) {
    std::map<std::string, Value> out;
    for (const auto& r : rs)
      out[Text(r, "resourceType") + "/" + Text(r, "id")] = r;
    return out;
  }
  // The Observation whose code is `system|code`.
  static const Value* ObservationCoded(const std::vector<Value>& rs,
                                       const std::string& code) {
    for (const auto& r : rs) {
      if (Text(r, "resourceType") == "Observation" &&
          CodeOf(Field(r, "code")) == code) {
        return &r;
      }
    }
    return nullptr;
  }

  static constexpr char kLoinc[] = "http://loinc.org";
  const ExportOptions options_;
};

// Reference §2: the LOINC codes of PHQ-9, GAD-7 and AUDIT-C, item by item.
TEST_F(FhirExportTest, QuestionnairesCarryTheReferencesLoincCodes) {
  const std::map<std::string, std::vector<std::string>> expected = {
      {"phq9",
       {"44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2",
        "44252-5", "44253-3", "44260-8", "69722-7"}},
      {"gad7",
       {"69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8",
        "69736-7"}},
      {"auditc", {"68518-0", "68519-8", "68520-6"}},
  };
  const std::map<std::string, std::string> panels = {
      {"phq9", "44249-1"}, {"gad7", "69737-5"}, {"auditc", "72109-2"}};
  int checked = 0;
  for (const auto& in : Catalog().instruments()) {
    Value q = Questionnaire(in, options_);
    EXPECT_EQ(Text(q, "url"), options_.base + "/Questionnaire/" + in.id());
    EXPECT_EQ(Text(q, "version"), in.version());
    EXPECT_EQ(Size(Field(q, "item")), in.items_size()) << in.id();
    auto want = expected.find(in.id());
    if (want == expected.end()) continue;
    ++checked;
    const Value& code = At(Field(q, "code"), 0);
    EXPECT_EQ(Text(code, "system"), kLoinc);
    EXPECT_EQ(Text(code, "code"), panels.at(in.id()));
    std::vector<std::string> got;
    for (const auto& item : Field(q, "item").list_value().values()) {
      const Value& c = At(Field(item, "code"), 0);
      EXPECT_EQ(Text(c, "system"), kLoinc) << Text(item, "linkId");
      got.push_back(Text(c, "code"));
    }
    EXPECT_EQ(got, want->second) << in.id();
  }
  EXPECT_EQ(checked, 3);
  // PHQ-9's answers: the LOINC answer codes with their ordinal values.
  for (const auto& in : Catalog().instruments()) {
    if (in.id() != "phq9") continue;
    const Value q = Questionnaire(in, options_);
    const Value& options = Field(At(Field(q, "item"), 0), "answerOption");
    ASSERT_EQ(Size(options), 4);
    const std::vector<std::string> la = {"LA6568-5", "LA6569-3", "LA6570-1",
                                         "LA6571-9"};
    for (int i = 0; i < 4; ++i) {
      const Value& o = At(options, i);
      EXPECT_EQ(Text(Field(o, "valueCoding"), "code"), la[i]);
      const Value& ext = At(Field(o, "extension"), 0);
      EXPECT_EQ(Text(ext, "url"),
                "http://hl7.org/fhir/StructureDefinition/ordinalValue");
      EXPECT_EQ(Field(ext, "valueDecimal").number_value(), i);
    }
  }
}

// Score observations by code (system|code) -> their value.
std::map<std::string, double> ScoreValues(const std::vector<Value>& rs) {
  std::map<std::string, double> out;
  for (const auto& r : rs) {
    if (Text(r, "resourceType") != "Observation") continue;
    const Value& integer = Field(r, "valueInteger");
    const Value& quantity = Field(r, "valueQuantity");
    if (integer.has_number_value()) {
      out[CodeOf(Field(r, "code"))] = integer.number_value();
    } else if (quantity.has_struct_value()) {
      out[CodeOf(Field(r, "code"))] = Field(quantity, "value").number_value();
    }
  }
  return out;
}

TEST_F(FhirExportTest, APhq9PanelHoldsItsTotalDerivedFromTheRawAnswers) {
  CompletedScreening s = Completed(
      {{"phq9.1", "3"}, {"phq9.2", "3"}, {"phq9.3", "3"}, {"phq9.4", "1"}});
  ASSERT_EQ(s.result.routing().primary_route(), common::v1::THERAPY);
  const auto resources = ScreeningResources(Catalog(), s, options_);
  const auto by_id = ById(resources);
  const std::string qr = "QuestionnaireResponse/" + s.id + "-phq9";
  ASSERT_TRUE(by_id.contains(qr));
  const Value& response = by_id.at(qr);
  EXPECT_EQ(Text(response, "questionnaire"),
            options_.base + "/Questionnaire/phq9|1");
  EXPECT_EQ(Text(response, "status"), "completed");
  EXPECT_EQ(Text(Field(response, "subject"), "reference"),
            "Patient/pseudonym-3jk2");
  EXPECT_EQ(Text(response, "authored"), "2026-12-04T16:00:00.123Z");
  const Value& first = At(Field(response, "item"), 0);
  EXPECT_EQ(Text(first, "linkId"), "phq9.1");
  EXPECT_EQ(Text(Field(At(Field(first, "answer"), 0), "valueCoding"), "code"),
            "LA6571-9")
      << "3 = nearly every day";

  const Value* panel =
      ObservationCoded(resources, std::string(kLoinc) + "|44249-1");
  ASSERT_NE(panel, nullptr);
  EXPECT_EQ(Text(*panel, "status"), "final");
  EXPECT_EQ(
      CodeOf(At(Field(*panel, "category"), 0)),
      "http://terminology.hl7.org/CodeSystem/observation-category|survey");
  EXPECT_EQ(Text(At(Field(*panel, "derivedFrom"), 0), "reference"), qr);
  const Value& tag = At(Field(Field(*panel, "meta"), "tag"), 0);
  EXPECT_EQ(Text(tag, "code"), "v2");
  const std::string member =
      Text(At(Field(*panel, "hasMember"), 0), "reference");
  ASSERT_TRUE(by_id.contains(member)) << member;
  const Value& total = by_id.at(member);
  EXPECT_EQ(CodeOf(Field(total, "code")), std::string(kLoinc) + "|44261-6");
  EXPECT_EQ(Field(total, "valueInteger").number_value(),
            Score(s.result, "phq9").total());
  EXPECT_EQ(Text(At(Field(total, "interpretation"), 0), "text"),
            Score(s.result, "phq9").band_label());
  // CBI has no LOINC code: a local code and the mean as a quantity.
  const Value* cbi = ObservationCoded(
      resources, options_.base + "/CodeSystem/aqueduct|cbi_personal.mean");
  ASSERT_NE(cbi, nullptr);
  EXPECT_EQ(Field(Field(*cbi, "valueQuantity"), "value").number_value(),
            Score(s.result, "cbi_personal").mean());
}

// Each route, field by field: the route observation (preliminary until a
// clinician decides), the reviewer it needs, and the risk assessment that
// exists only when a safety flag was raised.
TEST_F(FhirExportTest, EachRouteIsExportedWithWhatAClinicianNeeds) {
  struct Path {
    Overrides answers;
    common::v1::Route route;
    std::string reviewer;  // "" = none
    std::string risk;      // qualitative risk, "" = no RiskAssessment
  };
  const std::vector<Path> paths = {
      {{}, common::v1::SELF_HELP, "", ""},
      {{{"phq9.1", "3"}, {"phq9.2", "3"}, {"phq9.3", "3"}, {"phq9.4", "1"}},
       common::v1::THERAPY,
       "CLINICIAN",
       ""},
      {{{"ctx.state", "FL"},
        {"phq9.1", "2"},
        {"phq9.2", "2"},
        {"phq9.3", "2"},
        {"phq9.4", "2"},
        {"phq9.5", "2"},
        {"ket.trials", "two_or_more"}},
       common::v1::KETAMINE_REVIEW,
       "PHYSICIAN",
       ""},
      {{{"phq9.9", "2"}, {"asq.2", "yes"}, {"asq.5", "no"}},
       common::v1::CRISIS_URGENT,
       "CLINICIAN",
       "moderate"},
      {{{"phq9.9", "2"}, {"asq.2", "yes"}, {"asq.5", "yes"}},
       common::v1::CRISIS_ACUTE,
       "CLINICIAN",
       "high"},
  };
  for (const auto& p : paths) {
    SCOPED_TRACE(common::v1::Route_Name(p.route));
    CompletedScreening s = Completed(p.answers);
    ASSERT_EQ(s.result.routing().primary_route(), p.route);
    const auto resources = ScreeningResources(Catalog(), s, options_);
    const auto by_id = ById(resources);
    const std::string route_id = "Observation/" + s.id + "-v2-route";
    ASSERT_TRUE(by_id.contains(route_id));
    const Value& route = by_id.at(route_id);
    EXPECT_EQ(Text(route, "status"), "preliminary");
    EXPECT_EQ(
        CodeOf(Field(route, "valueCodeableConcept")),
        options_.base + "/CodeSystem/route|" + common::v1::Route_Name(p.route));
    int responses = 0;
    for (const auto& [id, r] : by_id)
      responses += id.rfind("QuestionnaireResponse/", 0) == 0;
    EXPECT_EQ(Size(Field(route, "derivedFrom")), responses)
        << "derived from every response";
    if (p.reviewer.empty()) {
      EXPECT_FALSE(Field(route, "component").has_list_value());
    } else {
      EXPECT_EQ(CodeOf(Field(At(Field(route, "component"), 0),
                             "valueCodeableConcept")),
                options_.base + "/CodeSystem/aqueduct|reviewer=" + p.reviewer);
    }
    const std::string risk_id = "RiskAssessment/" + s.id + "-v2-suicide-risk";
    if (p.risk.empty()) {
      EXPECT_FALSE(by_id.contains(risk_id));
    } else {
      ASSERT_TRUE(by_id.contains(risk_id));
      const Value& risk = by_id.at(risk_id);
      EXPECT_EQ(
          CodeOf(Field(At(Field(risk, "prediction"), 0), "qualitativeRisk")),
          "http://terminology.hl7.org/CodeSystem/risk-probability|" + p.risk);
      std::set<std::string> basis;
      for (const auto& b : Field(risk, "basis").list_value().values())
        basis.insert(Text(b, "reference"));
      EXPECT_THAT(basis, UnorderedElementsAreArray(
                             {"QuestionnaireResponse/" + s.id + "-phq9",
                              "QuestionnaireResponse/" + s.id + "-asq"}));
      EXPECT_GE(Size(Field(risk, "note")), 1);
    }
  }
}

// The raw answers read back from the responses and scored again give the
// totals the Observations carry.
TEST_F(FhirExportTest, ResponsesScoredAgainGiveTheObservationsTotals) {
  CompletedScreening s = Completed({{"phq9.1", "2"},
                                    {"phq9.2", "1"},
                                    {"phq9.9", "1"},
                                    {"gad7.1", "3"},
                                    {"gad7.2", "2"},
                                    {"auditc.1", "2"},
                                    {"auditc.2", "1"}});
  const auto resources = ScreeningResources(Catalog(), s, options_);
  // From each response item's coding back to the catalog's answer.
  std::map<std::string, const scoring::v1::Item*> items;
  for (const auto& in : Catalog().instruments())
    for (const auto& item : in.items()) items[item.id()] = &item;
  scoring::v1::ScoreAnswersRequest again;
  again.set_ruleset_version("v2");
  for (const auto& id : s.administered) again.add_administered_instruments(id);
  int answered = 0;
  for (const auto& r : resources) {
    if (Text(r, "resourceType") != "QuestionnaireResponse") continue;
    for (const auto& qi : Field(r, "item").list_value().values()) {
      const scoring::v1::Item& item = *items.at(Text(qi, "linkId"));
      common::v1::Answer* a = again.mutable_answers()->add_answers();
      a->set_item_id(item.id());
      ++answered;
      if (!Field(qi, "answer").has_list_value()) {
        a->set_declined(true);
        continue;
      }
      const Value& answer = At(Field(qi, "answer"), 0);
      if (Field(answer, "valueInteger").has_number_value()) {
        a->set_integer_value(
            static_cast<int>(Field(answer, "valueInteger").number_value()));
        continue;
      }
      const std::string code = Text(Field(answer, "valueCoding"), "code");
      bool found = false;
      for (const auto& o : item.options()) {
        if (o.loinc_answer() == code ||
            item.id() + "=" +
                    (o.code().empty() ? std::to_string(o.value()) : o.code()) ==
                code) {
          a->set_option_value(o.value());
          found = true;
        }
      }
      if (!found) a->set_code_value(code.substr(code.find('=') + 1));
    }
  }
  EXPECT_EQ(answered, s.answers.answers_size());
  auto rescored = engine_->Score(again);
  ASSERT_THAT(rescored, testing::IsOk());
  const auto values = ScoreValues(resources);
  int compared = 0;
  for (const auto& score : rescored->scores()) {
    if (score.completeness() != scoring::v1::COMPLETE) continue;
    for (const auto& [code, value] : values) {
      const std::string loinc =
          score.loinc_total().empty()
              ? ""
              : std::string(kLoinc) + "|" + score.loinc_total();
      const std::string local = options_.base + "/CodeSystem/aqueduct|" +
                                score.instrument_id() + ".mean";
      if (code == loinc) {
        EXPECT_EQ(value, score.total()) << code;
        ++compared;
      } else if (code == local) {
        EXPECT_DOUBLE_EQ(value, score.mean()) << code;
        ++compared;
      }
    }
  }
  EXPECT_GE(compared, 4) << "PHQ-9, GAD-7, AUDIT-C and a CBI scale at least";
}

// Re-scoring under another ruleset adds Observations beside the old ones
// and leaves the raw responses exactly as they were.
TEST_F(FhirExportTest, ReScoringAddsObservationsAndNeverRewritesResponses) {
  const Overrides answers = {{"ctx.state", "NJ"},
                             {"phq9.1", "2"},
                             {"phq9.2", "2"},
                             {"phq9.3", "2"},
                             {"phq9.4", "2"},
                             {"phq9.5", "2"},
                             {"ket.trials", "two_or_more"}};
  const auto v1 =
      ById(ScreeningResources(Catalog(), Completed(answers, "v1"), options_));
  const auto v2 =
      ById(ScreeningResources(Catalog(), Completed(answers, "v2"), options_));
  int responses = 0;
  for (const auto& [id, r] : v1) {
    if (id.rfind("QuestionnaireResponse/", 0) == 0) {
      ASSERT_TRUE(v2.contains(id));
      EXPECT_EQ(ToJson(r), ToJson(v2.at(id))) << id;
      ++responses;
    } else {
      EXPECT_FALSE(v2.contains(id)) << id << ": derived under v1, not v2";
      EXPECT_NE(id.find("-v1-"), std::string::npos) << id;
    }
  }
  EXPECT_GE(responses, 3);

  // Both in one export (the original under v1, a re-score under v2):
  // every resource of each, the responses once.
  CompletedScreening both = Completed(answers, "v1");
  both.rescored.push_back(Completed(answers, "v2").result);
  const auto combined = ById(ScreeningResources(Catalog(), both, options_));
  for (const auto* one : {&v1, &v2}) {
    for (const auto& [id, r] : *one) {
      ASSERT_TRUE(combined.contains(id)) << id;
      EXPECT_EQ(ToJson(combined.at(id)), ToJson(r)) << id;
    }
  }
  EXPECT_EQ(combined.size(), v1.size() + v2.size() - responses);
}

// Every resource, alone and in both kinds of Bundle, validates against the
// FHIR R4 core specification (tests/fhir/validate.cjs, the fhir npm
// package, run with node).
TEST_F(FhirExportTest, EveryResourceValidatesAgainstFhirR4) {
  testing::TempDir dir;
  std::vector<std::string> files;
  auto write = [&](const std::string& name, const std::string& json) {
    const std::string path = dir.path() + "/" + name;
    std::ofstream(path) << json << "\n";
    files.push_back(path);
  };
  for (const auto& in : Catalog().instruments())
    write("questionnaire-" + in.id() + ".json",
          ToJson(Questionnaire(in, options_)));
  const std::vector<Overrides> paths = {
      {},
      {{"phq9.1", "3"}, {"phq9.2", "3"}, {"phq9.3", "3"}, {"phq9.4", "1"}},
      {{"ctx.state", "FL"},
       {"phq9.1", "2"},
       {"phq9.2", "2"},
       {"phq9.3", "2"},
       {"phq9.4", "2"},
       {"phq9.5", "2"},
       {"ket.trials", "two_or_more"}},
      {{"phq9.9", "2"}, {"asq.2", "yes"}, {"asq.5", "yes"}},
      {{"phq9.4", "declined"}},
  };
  for (size_t i = 0; i < paths.size(); ++i) {
    const auto resources =
        ScreeningResources(Catalog(), Completed(paths[i]), options_);
    write(absl::StrCat("collection-", i, ".json"),
          ToJson(Bundle(resources, "collection", options_)));
    write(absl::StrCat("transaction-", i, ".json"),
          ToJson(Bundle(resources, "transaction", options_)));
    std::string ndjson;
    for (const auto& r : resources) ndjson += ToJson(r) + "\n";
    write(absl::StrCat("resources-", i, ".ndjson"), ndjson);
  }
  const char* source = std::getenv("AQUEDUCT_SOURCE_DIR");
  const char* binary = std::getenv("AQUEDUCT_BINARY_DIR");
  ASSERT_NE(source, nullptr);
  if (binary == nullptr) {
    // The Bazel build's sandbox has no npm registry; the CMake build's
    // ctest (the test command) runs this step.
    GTEST_SKIP() << "no AQUEDUCT_BINARY_DIR to install the validator into";
  }
  const std::string log = dir.path() + "/validate.log";
  std::string command =
      absl::StrCat("export NODE_PATH=$(", source, "/tests/npm/install.sh ",
                   binary, ") && node ", source, "/tests/fhir/validate.cjs");
  for (const auto& f : files) absl::StrAppend(&command, " ", f);
  absl::StrAppend(&command, " >", log, " 2>&1");
  const int rc = std::system(command.c_str());
  EXPECT_EQ(rc, 0) << testing::ReadFile(log);
  EXPECT_THAT(testing::ReadFile(log),
              ::testing::HasSubstr(" resources valid, 0 not"));
}

}  // namespace
}  // namespace aqueduct::intake::fhir
