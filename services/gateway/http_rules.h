#ifndef AQUEDUCT_SERVICES_GATEWAY_HTTP_RULES_H_
#define AQUEDUCT_SERVICES_GATEWAY_HTTP_RULES_H_

// The HTTP/JSON face of the API, read from the `google.api.http`
// annotations on the protos (AIP-127, the mapping Envoy's transcoder and
// grpc-gateway follow): which RPC an HTTP method and path call, and the
// request message made from the path's variables, the query string and the
// JSON body, with protobuf's canonical JSON mapping. Nothing here knows an
// RPC by name: a new annotated RPC is served as soon as its proto has the
// option.

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace aqueduct::gateway {

// One path template, e.g. "/v1/{name=users/*/screenings/*}:complete":
// literal segments, `*` (one segment) and `**` (the rest), variables that
// bind a field to the segments they cover, and an optional `:verb`.
class PathTemplate {
 public:
  // INVALID_ARGUMENT naming what is wrong with `text`.
  static absl::StatusOr<PathTemplate> Parse(absl::string_view text);

  // Matches a request path (without the query string). On a match, the
  // variables' field paths and the text they bound (percent-decoded
  // segments joined by "/"; a decoded "/" inside a segment never matches).
  bool Match(absl::string_view path,
             std::vector<std::pair<std::string, std::string>>* bindings) const;

  const std::string& text() const { return text_; }
  // The field paths its variables bind, in order.
  std::vector<std::string> field_paths() const;
  // The literal segments before the first variable: more specific rules
  // are tried first.
  int literal_count() const;

 private:
  struct Segment {
    enum Kind { kLiteral, kOne, kRest } kind = kLiteral;
    std::string literal;
    int variable = -1;  // index into variables_, or -1
  };
  struct Variable {
    std::string field_path;
    int first = 0;  // first and one-past-last segment it covers
    int end = 0;
  };
  std::string text_;
  std::vector<Segment> segments_;
  std::vector<Variable> variables_;
  std::string verb_;
};

// One HTTP rule: an HTTP method and template calling one RPC.
struct HttpRule {
  std::string http_method;  // "GET", "POST", ...
  PathTemplate path;
  std::string body;  // "" (none), "*" (the whole request), or a field name
  const google::protobuf::MethodDescriptor* method = nullptr;
  // "/aqueduct.intake.v1.IntakeService/SubmitAnswers"
  std::string full_name() const;
  bool server_streaming() const { return method->server_streaming(); }
};

// What a request resolved to.
struct Resolved {
  const HttpRule* rule = nullptr;
  std::vector<std::pair<std::string, std::string>> bindings;
};

// Every annotated RPC of some services.
class HttpRules {
 public:
  // The rules of `services` (IntakeServiceDescriptor() below, say).
  // INVALID_ARGUMENT for a bad template, a variable or body naming no
  // field, client streaming, or two rules for one method and path.
  static absl::StatusOr<HttpRules> ForServices(
      const std::vector<const google::protobuf::ServiceDescriptor*>& services);

  // The rule for a method and path: NOT_FOUND when no template matches the
  // path, UNIMPLEMENTED (HTTP 405) when templates match but none for this
  // method; `allowed` then lists the methods that would.
  absl::StatusOr<Resolved> Resolve(absl::string_view http_method,
                                   absl::string_view path,
                                   std::vector<std::string>* allowed) const;

  const std::vector<std::unique_ptr<HttpRule>>& rules() const { return rules_; }

 private:
  std::vector<std::unique_ptr<HttpRule>> rules_;
};

// The services the gateway serves. Through a message of each file, so that
// the file is linked and in the generated pool.
const google::protobuf::ServiceDescriptor* IntakeServiceDescriptor();
const google::protobuf::ServiceDescriptor* FhirExportServiceDescriptor();
const google::protobuf::ServiceDescriptor* ReferralServiceDescriptor();
const google::protobuf::ServiceDescriptor* ScoringServiceDescriptor();

// Fills `request` (of the rule's input type) from a resolved request: the
// JSON body as the rule says (canonical mapping; unknown fields are errors),
// then the query parameters for fields neither the path nor the body set
// ("page_size=10&routes=THERAPY&routes=CRISIS_URGENT"; proto or JSON field
// names; dotted paths for nested fields; repeated fields by repeating the
// parameter), then the path variables. INVALID_ARGUMENT whose message names
// the field or parameter ("body: ...", "query parameter pageSize: ...").
absl::Status BuildRequest(const Resolved& resolved, absl::string_view query,
                          absl::string_view body,
                          google::protobuf::Message* request);

// Sets one field (a dotted path of proto or JSON names) from its text form:
// numbers, booleans ("true"/"false"), enums by name or number, strings and
// bytes (base64). Repeated fields get the value appended.
absl::Status SetFieldFromText(google::protobuf::Message* message,
                              absl::string_view path, absl::string_view value);

// Percent-decodes `text` ('+' stays '+': query strings decode it with
// `plus_is_space`). INVALID_ARGUMENT for a bad escape.
absl::StatusOr<std::string> PercentDecode(absl::string_view text,
                                          bool plus_is_space = false);

// Canonical JSON of a message (lowerCamelCase names, enums by name, int64 as
// strings), as every response body is written.
std::string ToJson(const google::protobuf::Message& message);

}  // namespace aqueduct::gateway

#endif  // AQUEDUCT_SERVICES_GATEWAY_HTTP_RULES_H_
