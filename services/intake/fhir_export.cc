#include "services/intake/fhir_export.h"

#include <algorithm>
#include <initializer_list>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "common/logging/logging.h"

namespace aqueduct::intake::fhir {
namespace {

using google::protobuf::Value;

constexpr char kLoinc[] = "http://loinc.org";
constexpr char kOrdinalValue[] =
    "http://hl7.org/fhir/StructureDefinition/ordinalValue";
constexpr char kDataAbsentReason[] =
    "http://hl7.org/fhir/StructureDefinition/data-absent-reason";
constexpr char kObservationCategory[] =
    "http://terminology.hl7.org/CodeSystem/observation-category";
constexpr char kRiskProbability[] =
    "http://terminology.hl7.org/CodeSystem/risk-probability";

// A small builder over google.protobuf.Value (printed by ToJson).
Value Str(const std::string& s) {
  Value v;
  v.set_string_value(s);
  return v;
}
Value Num(double d) {
  Value v;
  v.set_number_value(d);
  return v;
}
Value Bool(bool b) {
  Value v;
  v.set_bool_value(b);
  return v;
}
Value Obj(std::initializer_list<std::pair<const char*, Value>> fields) {
  Value v;
  auto* m = v.mutable_struct_value()->mutable_fields();
  for (const auto& [k, f] : fields) (*m)[k] = f;
  return v;
}
Value Arr(std::initializer_list<Value> items = {}) {
  Value v;
  auto* l = v.mutable_list_value();
  for (const auto& i : items) *l->add_values() = i;
  return v;
}
void Set(Value& obj, const std::string& key, Value field) {
  (*obj.mutable_struct_value()->mutable_fields())[key] = std::move(field);
}
void Append(Value& list, Value item) {
  *list.mutable_list_value()->add_values() = std::move(item);
}
Value Coding(const std::string& system, const std::string& code,
             const std::string& display = "") {
  Value c = Obj({{"system", Str(system)}, {"code", Str(code)}});
  if (!display.empty()) Set(c, "display", Str(display));
  return c;
}
Value Concept(Value coding, const std::string& text = "") {
  Value c = Obj({{"coding", Arr({std::move(coding)})}});
  if (!text.empty()) Set(c, "text", Str(text));
  return c;
}
Value Reference(const std::string& type, const std::string& id) {
  return Obj({{"reference", Str(absl::StrCat(type, "/", id))}});
}

std::string LocalSystem(const ExportOptions& o) {
  return o.base + "/CodeSystem/aqueduct";
}
std::string RouteSystem(const ExportOptions& o) {
  return o.base + "/CodeSystem/route";
}
std::string RulesetSystem(const ExportOptions& o) {
  return o.base + "/CodeSystem/ruleset-version";
}
std::string EngineSystem(const ExportOptions& o) {
  return o.base + "/CodeSystem/engine-version";
}

// FHIR ids are [A-Za-z0-9-.]{1,64}.
std::string FhirId(const std::string& raw) {
  std::string out;
  for (char c : raw) {
    out.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                          c == '-' || c == '.'
                      ? c
                      : '-');
  }
  return out.substr(0, 64);
}
std::string QuestionnaireUrl(const scoring::v1::Instrument& in,
                             const ExportOptions& o) {
  return absl::StrCat(o.base, "/Questionnaire/", in.id());
}
std::string DateTime(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms),
                          absl::UTCTimeZone());
}

// An item's code: LOINC, else the catalog's local code.
Value ItemCoding(const scoring::v1::Item& item, const ExportOptions& o) {
  if (!item.loinc().empty()) return Coding(kLoinc, item.loinc(), item.text());
  return Coding(LocalSystem(o),
                item.local_code().empty() ? item.id() : item.local_code(),
                item.text());
}
// An option's code: its LOINC answer, else "<item>=<option code>".
Value OptionCoding(const scoring::v1::Item& item,
                   const scoring::v1::Option& option, const ExportOptions& o) {
  if (!option.loinc_answer().empty())
    return Coding(kLoinc, option.loinc_answer(), option.text());
  return Coding(
      LocalSystem(o),
      absl::StrCat(
          item.id(), "=",
          option.code().empty() ? absl::StrCat(option.value()) : option.code()),
      option.text());
}
Value CodeCoding(const scoring::v1::Item& item, const std::string& code,
                 const ExportOptions& o) {
  return Coding(LocalSystem(o), absl::StrCat(item.id(), "=", code), code);
}

Value QuestionnaireItem(const scoring::v1::Item& item, const ExportOptions& o) {
  Value q = Obj({{"linkId", Str(item.id())},
                 {"text", Str(item.text())},
                 {"required", Bool(item.required())},
                 {"code", Arr({ItemCoding(item, o)})}});
  switch (item.kind()) {
    case scoring::v1::INTEGER: {
      Set(q, "type", Str("integer"));
      Value ext = Arr();
      if (item.min_value() != 0 || item.max_value() != 0) {
        Append(ext, Obj({{"url", Str("http://hl7.org/fhir/StructureDefinition/"
                                     "minValue")},
                         {"valueInteger", Num(item.min_value())}}));
        Append(ext, Obj({{"url", Str("http://hl7.org/fhir/StructureDefinition/"
                                     "maxValue")},
                         {"valueInteger", Num(item.max_value())}}));
        Set(q, "extension", std::move(ext));
      }
      break;
    }
    case scoring::v1::CODE: {
      Set(q, "type", Str("choice"));
      Value options = Arr();
      for (const auto& code : item.codes())
        Append(options, Obj({{"valueCoding", CodeCoding(item, code, o)}}));
      Set(q, "answerOption", std::move(options));
      break;
    }
    default: {
      Set(q, "type", Str("choice"));
      Value options = Arr();
      for (const auto& option : item.options()) {
        // The ordinal value is what the option scores before any reversal
        // (the catalog's value); the scoring rules are the ruleset's.
        Append(options,
               Obj({{"valueCoding", OptionCoding(item, option, o)},
                    {"extension",
                     Arr({Obj({{"url", Str(kOrdinalValue)},
                               {"valueDecimal", Num(option.value())}})})}}));
      }
      Set(q, "answerOption", std::move(options));
    }
  }
  return q;
}

struct ItemRef {
  const scoring::v1::Instrument* instrument = nullptr;
  const scoring::v1::Item* item = nullptr;
};

Value Meta(const scoring::v1::ScoringResult& result, const ExportOptions& o) {
  Value tags = Arr({Coding(RulesetSystem(o), result.ruleset_version(),
                           "ruleset " + result.ruleset_version())});
  if (!result.engine_version().empty()) {
    Append(tags, Coding(EngineSystem(o), result.engine_version(),
                        "scoring engine " + result.engine_version()));
  }
  return Obj({{"tag", std::move(tags)}});
}

Value SurveyCategory() {
  return Arr({Concept(Coding(kObservationCategory, "survey", "Survey"))});
}

Value QrAnswer(const scoring::v1::Item& item, const common::v1::Answer& a,
               const ExportOptions& o) {
  switch (a.value_case()) {
    case common::v1::Answer::kOptionValue:
      for (const auto& option : item.options()) {
        if (option.value() == a.option_value())
          return Obj({{"valueCoding", OptionCoding(item, option, o)}});
      }
      return Obj({{"valueInteger", Num(a.option_value())}});
    case common::v1::Answer::kIntegerValue:
      return Obj({{"valueInteger", Num(a.integer_value())}});
    case common::v1::Answer::kCodeValue:
      return Obj({{"valueCoding", CodeCoding(item, a.code_value(), o)}});
    default:
      return Value();
  }
}

}  // namespace

Value Questionnaire(const scoring::v1::Instrument& instrument,
                    const ExportOptions& options) {
  std::string name = "Aqueduct";
  for (char c : instrument.id()) {
    name.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) ? c
                                                                      : '_');
  }
  Value q = Obj({{"resourceType", Str("Questionnaire")},
                 {"id", Str(FhirId(absl::StrCat(instrument.id(), "-v",
                                                instrument.version())))},
                 {"url", Str(QuestionnaireUrl(instrument, options))},
                 {"version", Str(instrument.version())},
                 {"name", Str(name)},
                 {"title", Str(instrument.title())},
                 {"status", Str("active")},
                 {"subjectType", Arr({Str("Patient")})}});
  if (!instrument.stem().empty()) Set(q, "description", Str(instrument.stem()));
  if (!instrument.copyright().empty())
    Set(q, "copyright", Str(instrument.copyright()));
  if (!instrument.loinc_panel().empty()) {
    Set(q, "code",
        Arr({Coding(kLoinc, instrument.loinc_panel(), instrument.title())}));
  }
  Value items = Arr();
  for (const auto& item : instrument.items())
    Append(items, QuestionnaireItem(item, options));
  Set(q, "item", std::move(items));
  return q;
}

std::vector<Value> ScreeningResources(const scoring::v1::Catalog& catalog,
                                      const CompletedScreening& s,
                                      const ExportOptions& o) {
  std::map<std::string, ItemRef> items;
  std::map<std::string, const scoring::v1::Instrument*> instruments;
  for (const auto& in : catalog.instruments()) {
    instruments[in.id()] = &in;
    for (const auto& item : in.items()) items[item.id()] = {&in, &item};
  }
  const std::string authored = DateTime(s.authored_ms);
  const Value subject = Obj({{"reference", Str(o.patient_prefix + s.subject)}});
  std::vector<Value> out;

  // The raw answers: one response per instrument that has any, in the
  // catalog's order (stable whatever order the answers came in).
  std::map<std::string, Value> response_items;
  for (const auto& a : s.answers.answers()) {
    auto it = items.find(a.item_id());
    if (it == items.end()) continue;  // not in this catalog: not exported
    const scoring::v1::Item& item = *it->second.item;
    Value qi = Obj({{"linkId", Str(item.id())}, {"text", Str(item.text())}});
    if (a.value_case() == common::v1::Answer::kDeclined) {
      Set(qi, "extension",
          Arr({Obj({{"url", Str(kDataAbsentReason)},
                    {"valueCode", Str("asked-declined")}})}));
    } else {
      Value answer = QrAnswer(item, a, o);
      if (answer.has_struct_value()) Set(qi, "answer", Arr({answer}));
    }
    auto [slot, fresh] =
        response_items.try_emplace(it->second.instrument->id(), Arr());
    Append(slot->second, std::move(qi));
  }
  std::map<std::string, std::string> response_id;  // instrument -> id
  for (const auto& in : catalog.instruments()) {
    auto it = response_items.find(in.id());
    if (it == response_items.end()) continue;
    const std::string id = FhirId(absl::StrCat(s.id, "-", in.id()));
    response_id[in.id()] = id;
    out.push_back(
        Obj({{"resourceType", Str("QuestionnaireResponse")},
             {"id", Str(id)},
             {"questionnaire",
              Str(absl::StrCat(QuestionnaireUrl(in, o), "|", in.version()))},
             {"status", Str("completed")},
             {"subject", subject},
             {"authored", Str(authored)},
             {"item", it->second}}));
  }

  // What each ruleset derived: the original result's, then each re-score's
  // (new Observations beside the old, the responses untouched).
  std::vector<const scoring::v1::ScoringResult*> results = {&s.result};
  for (const auto& r : s.rescored) results.push_back(&r);
  for (const scoring::v1::ScoringResult* each : results) {
    const scoring::v1::ScoringResult& result = *each;
    // Per scored instrument a panel and its score.
    const std::string derived = FhirId(absl::StrCat(
        s.id, "-",
        result.ruleset_version().empty() ? std::string("unversioned")
                                         : result.ruleset_version()));
    const Value meta = Meta(result, o);
    for (const auto& score : result.scores()) {
      if (score.completeness() == scoring::v1::NOT_ADMINISTERED ||
          score.completeness() == scoring::v1::COMPLETENESS_UNSPECIFIED) {
        continue;
      }
      auto in_it = instruments.find(score.instrument_id());
      if (in_it == instruments.end()) continue;
      const scoring::v1::Instrument& in = *in_it->second;
      const std::string base_id =
          FhirId(absl::StrCat(derived, "-", score.instrument_id()));
      Value derived_from = Arr();
      if (auto r = response_id.find(in.id()); r != response_id.end())
        Append(derived_from, Reference("QuestionnaireResponse", r->second));

      const bool mean = in.scoring() == scoring::v1::MEAN_0_100;
      const std::string total_code =
          !score.loinc_total().empty() ? score.loinc_total() : in.loinc_total();
      Value score_obs = Obj(
          {{"resourceType", Str("Observation")},
           {"id", Str(base_id + "-score")},
           {"meta", meta},
           {"status", Str("final")},
           {"category", SurveyCategory()},
           {"code",
            Concept(
                total_code.empty()
                    ? Coding(
                          LocalSystem(o),
                          absl::StrCat(in.id(), mean ? ".mean" : ".total"),
                          absl::StrCat(in.title(), mean ? " mean score (0-100)"
                                                        : " total score"))
                    : Coding(kLoinc, total_code,
                             absl::StrCat(in.title(), " total score")))},
           {"subject", subject},
           {"effectiveDateTime", Str(authored)},
           {"derivedFrom", derived_from}});
      if (score.completeness() == scoring::v1::COMPLETE &&
          (mean || score.has_total())) {
        if (mean) {
          Set(score_obs, "valueQuantity",
              Obj({{"value", Num(score.mean())},
                   {"unit", Str("score")},
                   {"system", Str("http://unitsofmeasure.org")},
                   {"code", Str("{score}")}}));
        } else {
          Set(score_obs, "valueInteger", Num(score.total()));
        }
        Value interpretation = Arr();
        if (!score.band().empty()) {
          Append(interpretation,
                 Concept(Coding(LocalSystem(o),
                                absl::StrCat(in.id(), ".band=", score.band()),
                                score.band_label()),
                         score.band_label()));
        }
        if (score.screen_positive()) {
          Append(interpretation,
                 Concept(Coding(LocalSystem(o), "screen-positive",
                                "Screen positive")));
        }
        if (interpretation.list_value().values_size() > 0)
          Set(score_obs, "interpretation", std::move(interpretation));
      } else {
        // Incomplete: no score is reported (reference §2: never a low score).
        Set(score_obs, "dataAbsentReason",
            Concept(Coding("http://terminology.hl7.org/CodeSystem/"
                           "data-absent-reason",
                           "not-performed", "Not Performed"),
                    "incomplete: a score is reported only when enough items "
                    "are answered"));
      }
      Value panel = Obj(
          {{"resourceType", Str("Observation")},
           {"id", Str(base_id)},
           {"meta", meta},
           {"status", Str("final")},
           {"category", SurveyCategory()},
           {"code",
            Concept(in.loinc_panel().empty()
                        ? Coding(LocalSystem(o), in.id(), in.title())
                        : Coding(kLoinc, in.loinc_panel(), in.title()))},
           {"subject", subject},
           {"effectiveDateTime", Str(authored)},
           {"hasMember", Arr({Reference("Observation", base_id + "-score")})},
           {"derivedFrom", derived_from}});
      out.push_back(std::move(panel));
      out.push_back(std::move(score_obs));
    }

    // Safety flags: a suicide-risk assessment for the clinician.
    if (result.safety_flags_size() > 0) {
      bool acute = false;
      Value notes = Arr();
      for (const auto& f : result.safety_flags()) {
        acute = acute || f.kind() == scoring::v1::ASQ_ACUTE_POSITIVE;
        Append(notes,
               Obj({{"text", Str(absl::StrCat(
                                 scoring::v1::SafetyFlagKind_Name(f.kind()),
                                 ": ", f.explanation()))}}));
      }
      Value basis = Arr();
      for (const char* id : {"phq9", "asq"}) {
        if (auto r = response_id.find(id); r != response_id.end())
          Append(basis, Reference("QuestionnaireResponse", r->second));
      }
      out.push_back(Obj(
          {{"resourceType", Str("RiskAssessment")},
           {"id", Str(FhirId(derived + "-suicide-risk"))},
           {"meta", meta},
           {"status", Str("final")},
           {"code", Concept(Coding(LocalSystem(o), "suicide-risk-screen",
                                   "Suicide risk screen (PHQ-9 item 9, ASQ)"))},
           {"subject", subject},
           {"occurrenceDateTime", Str(authored)},
           {"basis", basis},
           {"prediction",
            Arr({Obj({{"outcome", Obj({{"text", Str("Suicide or self-harm")}})},
                      {"qualitativeRisk",
                       Concept(acute ? Coding(kRiskProbability, "high",
                                              "High likelihood")
                                     : Coding(kRiskProbability, "moderate",
                                              "Moderate likelihood"))}})})},
           {"note", notes}}));
    }

    // The proposed route: preliminary until a clinician decides in referral.
    const auto& routing = result.routing();
    Value all_responses = Arr();
    for (const auto& [instrument, id] : response_id)
      Append(all_responses, Reference("QuestionnaireResponse", id));
    Value route =
        Obj({{"resourceType", Str("Observation")},
             {"id", Str(FhirId(derived + "-route"))},
             {"meta", meta},
             {"status", Str("preliminary")},
             {"category", SurveyCategory()},
             {"code",
              Concept(Coding(LocalSystem(o), "route", "Proposed care route"))},
             {"subject", subject},
             {"effectiveDateTime", Str(authored)},
             {"valueCodeableConcept",
              Concept(Coding(RouteSystem(o),
                             common::v1::Route_Name(routing.primary_route())))},
             {"derivedFrom", all_responses}});
    if (routing.required_reviewer() != common::v1::REVIEWER_ROLE_UNSPECIFIED) {
      Set(route, "component",
          Arr({Obj({{"code", Concept(Coding(LocalSystem(o), "required-reviewer",
                                            "Required reviewer"))},
                    {"valueCodeableConcept",
                     Concept(Coding(
                         LocalSystem(o),
                         absl::StrCat("reviewer=",
                                      common::v1::ReviewerRole_Name(
                                          routing.required_reviewer()))))}})}));
    }
    out.push_back(std::move(route));
  }
  return out;
}

Value Bundle(const std::vector<Value>& resources, const std::string& type,
             const ExportOptions& options) {
  Value entries = Arr();
  for (const auto& r : resources) {
    const auto& f = r.struct_value().fields();
    const std::string rtype = f.at("resourceType").string_value();
    const std::string id = f.at("id").string_value();
    Value entry =
        Obj({{"fullUrl", Str(absl::StrCat(options.base, "/", rtype, "/", id))},
             {"resource", r}});
    if (type == "transaction") {
      Set(entry, "request",
          Obj({{"method", Str("PUT")},
               {"url", Str(absl::StrCat(rtype, "/", id))}}));
    }
    Append(entries, std::move(entry));
  }
  return Obj({{"resourceType", Str("Bundle")},
              {"type", Str(type)},
              {"entry", std::move(entries)}});
}

namespace {

// Keys in a stable order, resourceType and id first, so the same resource
// always prints the same bytes (exports can be compared and deduplicated).
int KeyRank(const std::string& key) {
  if (key == "resourceType") return 0;
  if (key == "id") return 1;
  return 2;
}

void AppendJson(std::string& out, const Value& v) {
  switch (v.kind_case()) {
    case Value::kStringValue:
      log::AppendJsonString(out, v.string_value());
      break;
    case Value::kNumberValue: {
      const double d = v.number_value();
      if (d == static_cast<double>(static_cast<int64_t>(d))) {
        absl::StrAppend(&out, static_cast<int64_t>(d));
      } else {
        absl::StrAppendFormat(&out, "%.15g", d);
      }
      break;
    }
    case Value::kBoolValue:
      out += v.bool_value() ? "true" : "false";
      break;
    case Value::kStructValue: {
      std::vector<const std::string*> keys;
      for (const auto& [k, unused] : v.struct_value().fields())
        keys.push_back(&k);
      std::sort(keys.begin(), keys.end(),
                [](const std::string* a, const std::string* b) {
                  return std::make_pair(KeyRank(*a), *a) <
                         std::make_pair(KeyRank(*b), *b);
                });
      out.push_back('{');
      for (size_t i = 0; i < keys.size(); ++i) {
        if (i > 0) out.push_back(',');
        log::AppendJsonString(out, *keys[i]);
        out.push_back(':');
        AppendJson(out, v.struct_value().fields().at(*keys[i]));
      }
      out.push_back('}');
      break;
    }
    case Value::kListValue: {
      out.push_back('[');
      for (int i = 0; i < v.list_value().values_size(); ++i) {
        if (i > 0) out.push_back(',');
        AppendJson(out, v.list_value().values(i));
      }
      out.push_back(']');
      break;
    }
    default:
      out += "null";
  }
}

}  // namespace

std::string ToJson(const Value& resource) {
  std::string out;
  AppendJson(out, resource);
  return out;
}

}  // namespace aqueduct::intake::fhir
