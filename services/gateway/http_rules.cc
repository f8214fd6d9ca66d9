#include "services/gateway/http_rules.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/api/annotations.pb.h"
#include "google/api/http.pb.h"
#include "google/protobuf/util/json_util.h"
#include "protos/intake/v1/fhir_export_service.pb.h"
#include "protos/intake/v1/intake_service.pb.h"
#include "protos/referral/v1/referral_service.pb.h"
#include "protos/scoring/v1/scoring_service.pb.h"

namespace aqueduct::gateway {

namespace pb = google::protobuf;

namespace {

bool IsIdentChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The field of `d` named `name` (its proto name or its JSON name).
const pb::FieldDescriptor* FindField(const pb::Descriptor* d,
                                     absl::string_view name) {
  if (const auto* f = d->FindFieldByName(std::string(name))) return f;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->json_name() == name) return d->field(i);
  }
  return nullptr;
}

// Checks that a dotted path names a singular scalar (or string) field of
// `d`, through singular message fields.
absl::Status CheckFieldPath(const pb::Descriptor* d, absl::string_view path) {
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::FieldDescriptor* f = FindField(d, parts[i]);
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("no field ", parts[i], " in ", d->full_name()));
    }
    if (i + 1 < parts.size()) {
      if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE ||
          f->is_repeated()) {
        return absl::InvalidArgumentError(
            absl::StrCat(parts[i], " is not a message field"));
      }
      d = f->message_type();
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> PercentDecode(absl::string_view text,
                                          bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) {
        return absl::InvalidArgumentError("a '%' escape is cut short");
      }
      const int hi = HexValue(text[i + 1]);
      const int lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError("a '%' escape is not two hex digits");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<PathTemplate> PathTemplate::Parse(absl::string_view text) {
  PathTemplate t;
  t.text_ = std::string(text);
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("path template \"", text, "\": ", why));
  };
  if (!absl::ConsumePrefix(&text, "/")) return bad("does not start with /");
  // The verb: a ':' after the last '/' and the last '}'.
  const size_t last_slash = text.rfind('/');
  const size_t last_brace = text.rfind('}');
  size_t after = 0;
  if (last_slash != absl::string_view::npos) after = last_slash;
  if (last_brace != absl::string_view::npos)
    after = std::max(after, last_brace);
  const size_t colon = text.find(':', after);
  if (colon != absl::string_view::npos) {
    t.verb_ = std::string(text.substr(colon + 1));
    text = text.substr(0, colon);
    if (t.verb_.empty()) return bad("empty verb");
  }
  // Segments; a variable's own segments are inside braces.
  size_t i = 0;
  auto literal_or_wildcard = [&](absl::string_view seg,
                                 int variable) -> absl::Status {
    Segment s;
    s.variable = variable;
    if (seg == "*") {
      s.kind = Segment::kOne;
    } else if (seg == "**") {
      s.kind = Segment::kRest;
    } else {
      if (seg.empty()) return bad("empty segment");
      for (char c : seg) {
        if (c == '{' || c == '}' || c == '=' || c == '*') {
          return bad(absl::StrCat("unexpected '", std::string(1, c), "'"));
        }
      }
      s.literal = std::string(seg);
    }
    t.segments_.push_back(std::move(s));
    return absl::OkStatus();
  };
  while (i <= text.size()) {
    if (i < text.size() && text[i] == '{') {
      const size_t close = text.find('}', i);
      if (close == absl::string_view::npos) return bad("unclosed '{'");
      absl::string_view inner = text.substr(i + 1, close - i - 1);
      Variable v;
      const size_t eq = inner.find('=');
      v.field_path = std::string(inner.substr(0, eq));
      if (v.field_path.empty() ||
          !std::all_of(v.field_path.begin(), v.field_path.end(),
                       [](char c) { return IsIdentChar(c) || c == '.'; })) {
        return bad("a variable needs a field path");
      }
      const int index = static_cast<int>(t.variables_.size());
      v.first = static_cast<int>(t.segments_.size());
      if (eq == absl::string_view::npos) {
        if (absl::Status s = literal_or_wildcard("*", index); !s.ok()) return s;
      } else {
        for (absl::string_view seg : absl::StrSplit(inner.substr(eq + 1), '/'))
          if (absl::Status s = literal_or_wildcard(seg, index); !s.ok())
            return s;
      }
      v.end = static_cast<int>(t.segments_.size());
      t.variables_.push_back(std::move(v));
      i = close + 1;
      if (i < text.size() && text[i] != '/') return bad("text after '}'");
      ++i;
      continue;
    }
    size_t slash = text.find('/', i);
    if (slash == absl::string_view::npos) slash = text.size();
    if (absl::Status s = literal_or_wildcard(text.substr(i, slash - i), -1);
        !s.ok())
      return s;
    i = slash + 1;
  }
  for (size_t k = 0; k + 1 < t.segments_.size(); ++k) {
    if (t.segments_[k].kind == Segment::kRest) return bad("'**' not last");
  }
  return t;
}

std::vector<std::string> PathTemplate::field_paths() const {
  std::vector<std::string> out;
  for (const auto& v : variables_) out.push_back(v.field_path);
  return out;
}

int PathTemplate::literal_count() const {
  int n = 0;
  for (const auto& s : segments_) n += s.kind == Segment::kLiteral ? 1 : 0;
  return n + (verb_.empty() ? 0 : 1);
}

bool PathTemplate::Match(
    absl::string_view path,
    std::vector<std::pair<std::string, std::string>>* bindings) const {
  if (!absl::ConsumePrefix(&path, "/")) return false;
  if (!verb_.empty()) {
    if (!absl::ConsumeSuffix(&path, absl::StrCat(":", verb_))) return false;
  }
  std::vector<std::string> parts;
  for (absl::string_view raw : absl::StrSplit(path, '/')) {
    auto decoded = PercentDecode(raw);
    if (!decoded.ok() || decoded->empty() ||
        decoded->find('/') != std::string::npos) {
      return false;
    }
    parts.push_back(*std::move(decoded));
  }
  // Without a verb, a last segment with one is another rule's.
  if (verb_.empty() && !parts.empty() &&
      parts.back().find(':') != std::string::npos) {
    return false;
  }
  std::vector<std::pair<int, int>> spans(variables_.size(), {-1, -1});
  size_t p = 0;
  for (const auto& s : segments_) {
    const size_t begin = p;
    switch (s.kind) {
      case Segment::kLiteral:
        if (p >= parts.size() || parts[p] != s.literal) return false;
        ++p;
        break;
      case Segment::kOne:
        if (p >= parts.size()) return false;
        ++p;
        break;
      case Segment::kRest:
        p = parts.size();
        break;
    }
    if (s.variable >= 0) {
      auto& span = spans[s.variable];
      if (span.first < 0) span.first = static_cast<int>(begin);
      span.second = static_cast<int>(p);
    }
  }
  if (p != parts.size()) return false;
  bindings->clear();
  for (size_t v = 0; v < variables_.size(); ++v) {
    std::vector<absl::string_view> covered;
    for (int k = spans[v].first; k < spans[v].second; ++k)
      covered.push_back(parts[k]);
    bindings->emplace_back(variables_[v].field_path,
                           absl::StrJoin(covered, "/"));
  }
  return true;
}

std::string HttpRule::full_name() const {
  return absl::StrCat("/", method->service()->full_name(), "/", method->name());
}

const pb::ServiceDescriptor* IntakeServiceDescriptor() {
  return intake::v1::StartScreeningRequest::descriptor()
      ->file()
      ->FindServiceByName("IntakeService");
}

const pb::ServiceDescriptor* FhirExportServiceDescriptor() {
  return intake::v1::ExportScreeningRequest::descriptor()
      ->file()
      ->FindServiceByName("FhirExportService");
}

const pb::ServiceDescriptor* ScoringServiceDescriptor() {
  return scoring::v1::ListRulesetsRequest::descriptor()
      ->file()
      ->FindServiceByName("ScoringService");
}

const pb::ServiceDescriptor* ReferralServiceDescriptor() {
  return referral::v1::ListQueueRequest::descriptor()
      ->file()
      ->FindServiceByName("ReferralService");
}

absl::StatusOr<HttpRules> HttpRules::ForServices(
    const std::vector<const pb::ServiceDescriptor*>& services) {
  HttpRules rules;
  std::set<std::pair<std::string, std::string>> seen;
  for (const pb::ServiceDescriptor* service : services) {
    if (service == nullptr) {
      return absl::InvalidArgumentError("no such service");
    }
    for (int m = 0; m < service->method_count(); ++m) {
      const pb::MethodDescriptor* method = service->method(m);
      if (!method->options().HasExtension(google::api::http)) continue;
      const google::api::HttpRule& annotation =
          method->options().GetExtension(google::api::http);
      auto where = [&](absl::string_view why) {
        return absl::InvalidArgumentError(
            absl::StrCat(method->full_name(), ": ", why));
      };
      if (method->client_streaming()) {
        return where("client streaming has no HTTP mapping here");
      }
      std::string verb, text;
      switch (annotation.pattern_case()) {
        case google::api::HttpRule::kGet:
          verb = "GET", text = annotation.get();
          break;
        case google::api::HttpRule::kPost:
          verb = "POST", text = annotation.post();
          break;
        case google::api::HttpRule::kPut:
          verb = "PUT", text = annotation.put();
          break;
        case google::api::HttpRule::kDelete:
          verb = "DELETE", text = annotation.delete_();
          break;
        case google::api::HttpRule::kPatch:
          verb = "PATCH", text = annotation.patch();
          break;
        default:
          return where("an HTTP rule without a method and path");
      }
      auto path = PathTemplate::Parse(text);
      if (!path.ok()) return where(path.status().message());
      const std::string& body = annotation.body();
      if (!body.empty() && body != "*") {
        const pb::FieldDescriptor* f = FindField(method->input_type(), body);
        if (f == nullptr || f->is_repeated() ||
            f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
          return where(
              absl::StrCat("body \"", body, "\" is not a message field"));
        }
      }
      if (!seen.emplace(verb, text).second) {
        return where(absl::StrCat("a second rule for ", verb, " ", text));
      }
      auto rule = std::make_unique<HttpRule>(
          HttpRule{verb, *std::move(path), body, method});
      // Every variable must name a field of the request.
      for (const std::string& field : rule->path.field_paths()) {
        if (absl::Status s = CheckFieldPath(method->input_type(), field);
            !s.ok()) {
          return where(s.message());
        }
      }
      rules.rules_.push_back(std::move(rule));
    }
  }
  return rules;
}

absl::StatusOr<Resolved> HttpRules::Resolve(
    absl::string_view http_method, absl::string_view path,
    std::vector<std::string>* allowed) const {
  Resolved best;
  int best_score = -1;
  std::set<std::string> methods;
  std::vector<std::pair<std::string, std::string>> bindings;
  for (const auto& rule : rules_) {
    if (!rule->path.Match(path, &bindings)) continue;
    methods.insert(rule->http_method);
    if (rule->http_method != http_method) continue;
    const int score = rule->path.literal_count();
    if (score > best_score) {
      best_score = score;
      best.rule = rule.get();
      best.bindings = bindings;
    }
  }
  if (best.rule != nullptr) return best;
  if (methods.empty()) return absl::NotFoundError("no such resource or method");
  if (allowed != nullptr) allowed->assign(methods.begin(), methods.end());
  return absl::UnimplementedError(absl::StrCat(
      "HTTP method ", http_method,
      " is not allowed here (allowed: ", absl::StrJoin(methods, ", "), ")"));
}

absl::Status SetFieldFromText(pb::Message* message, absl::string_view path,
                              absl::string_view value) {
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  pb::Message* m = message;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::Descriptor* d = m->GetDescriptor();
    const pb::Reflection* r = m->GetReflection();
    const pb::FieldDescriptor* f = FindField(d, parts[i]);
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("no field ", parts[i], " in this request"));
    }
    if (i + 1 < parts.size()) {
      if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE ||
          f->is_repeated()) {
        return absl::InvalidArgumentError(
            absl::StrCat(parts[i], " is not a message field"));
      }
      m = r->MutableMessage(m, f);
      continue;
    }
    const bool rep = f->is_repeated();
    auto invalid = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", value, "\" is not ", what));
    };
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32: {
        int32_t v;
        if (!absl::SimpleAtoi(value, &v)) return invalid("a 32-bit integer");
        rep ? r->AddInt32(m, f, v) : r->SetInt32(m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_INT64: {
        int64_t v;
        if (!absl::SimpleAtoi(value, &v)) return invalid("an integer");
        rep ? r->AddInt64(m, f, v) : r->SetInt64(m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t v;
        if (!absl::SimpleAtoi(value, &v))
          return invalid("an unsigned 32-bit integer");
        rep ? r->AddUInt32(m, f, v) : r->SetUInt32(m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v;
        if (!absl::SimpleAtoi(value, &v)) return invalid("an unsigned integer");
        rep ? r->AddUInt64(m, f, v) : r->SetUInt64(m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      case pb::FieldDescriptor::CPPTYPE_FLOAT: {
        double v;
        if (!absl::SimpleAtod(value, &v)) return invalid("a number");
        if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE) {
          rep ? r->AddDouble(m, f, v) : r->SetDouble(m, f, v);
        } else {
          rep ? r->AddFloat(m, f, static_cast<float>(v))
              : r->SetFloat(m, f, static_cast<float>(v));
        }
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        bool v;
        if (value == "true" || value == "1") {
          v = true;
        } else if (value == "false" || value == "0") {
          v = false;
        } else {
          return invalid("true or false");
        }
        rep ? r->AddBool(m, f, v) : r->SetBool(m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const pb::EnumValueDescriptor* e =
            f->enum_type()->FindValueByName(std::string(value));
        int number;
        if (e == nullptr && absl::SimpleAtoi(value, &number))
          e = f->enum_type()->FindValueByNumber(number);
        if (e == nullptr)
          return invalid(absl::StrCat("a ", f->enum_type()->name(), " value"));
        rep ? r->AddEnum(m, f, e) : r->SetEnum(m, f, e);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_STRING: {
        std::string v(value);
        if (f->type() == pb::FieldDescriptor::TYPE_BYTES) {
          if (!absl::WebSafeBase64Unescape(value, &v) &&
              !absl::Base64Unescape(value, &v)) {
            return invalid("base64");
          }
        }
        rep ? r->AddString(m, f, std::move(v))
            : r->SetString(m, f, std::move(v));
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        return absl::InvalidArgumentError(
            "a message field cannot be set from a path or query parameter");
    }
  }
  return absl::OkStatus();
}

absl::Status BuildRequest(const Resolved& resolved, absl::string_view query,
                          absl::string_view body, pb::Message* request) {
  const HttpRule& rule = *resolved.rule;
  const bool has_body = !absl::StripAsciiWhitespace(body).empty();
  pb::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = false;
  if (rule.body.empty()) {
    if (has_body) {
      return absl::InvalidArgumentError(
          "body: this call takes no body (its fields go in the path and the "
          "query string)");
    }
  } else if (has_body) {
    pb::Message* target = request;
    if (rule.body != "*") {
      target = request->GetReflection()->MutableMessage(
          request, FindField(request->GetDescriptor(), rule.body));
    }
    auto parsed = pb::util::JsonStringToMessage(
        std::string(body.data(), body.size()), target, parse);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("body: ", parsed.message().as_string()));
    }
  }
  // The query string: fields the body does not hold.
  if (!query.empty()) {
    if (rule.body == "*") {
      return absl::InvalidArgumentError(
          "query string: this call takes every field in its JSON body");
    }
    for (absl::string_view pair : absl::StrSplit(query, '&')) {
      if (pair.empty()) continue;
      const size_t eq = pair.find('=');
      auto key = PercentDecode(pair.substr(0, eq), true);
      auto value = PercentDecode(
          eq == absl::string_view::npos ? "" : pair.substr(eq + 1), true);
      if (!key.ok() || !value.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "query string: ",
            (!key.ok() ? key.status() : value.status()).message()));
      }
      for (const auto& [field, unused] : resolved.bindings) {
        if (field == *key) {
          return absl::InvalidArgumentError(absl::StrCat(
              "query parameter ", *key, ": the path already sets it"));
        }
      }
      if (!rule.body.empty() &&
          (*key == rule.body ||
           absl::StartsWith(*key, absl::StrCat(rule.body, ".")))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "query parameter ", *key, ": the body already sets it"));
      }
      if (absl::Status s = SetFieldFromText(request, *key, *value); !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("query parameter ", *key, ": ", s.message()));
      }
    }
  }
  // The path's variables, last: the path names the resource.
  for (const auto& [field, value] : resolved.bindings) {
    if (absl::Status s = SetFieldFromText(request, field, value); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("path ", field, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

std::string ToJson(const pb::Message& message) {
  pb::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string out;
  if (!pb::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

}  // namespace aqueduct::gateway
