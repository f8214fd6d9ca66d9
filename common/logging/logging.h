#ifndef AQUEDUCT_COMMON_LOGGING_LOGGING_H_
#define AQUEDUCT_COMMON_LOGGING_LOGGING_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <variant>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

// The one logging facade: JSON lines on stderr, one object per event, with
// "ts", "severity", "service", "trace_id" (inside a TraceScope), "msg" and
// the given fields.
//
// Mental-health data must never reach a log. Log operational facts only
// (method, status code, latency, counts, addresses). As a second line of
// defence, fields whose key names suggest content (answer, text, token,
// reason, name, email, note, password, secret) are written as
// "[redacted]" whatever their value.

namespace aqueduct::log {

enum class Severity { kDebug, kInfo, kWarning, kError };

struct Field {
  Field(absl::string_view k, absl::string_view v)
      : key(k), value(std::string(v)) {}
  Field(absl::string_view k, const char* v) : key(k), value(std::string(v)) {}
  Field(absl::string_view k, const std::string& v) : key(k), value(v) {}
  Field(absl::string_view k, int64_t v) : key(k), value(v) {}
  Field(absl::string_view k, int v) : key(k), value(static_cast<int64_t>(v)) {}
  Field(absl::string_view k, uint16_t v)
      : key(k), value(static_cast<int64_t>(v)) {}
  Field(absl::string_view k, double v) : key(k), value(v) {}
  Field(absl::string_view k, bool v) : key(k), value(v) {}

  absl::string_view key;
  std::variant<std::string, int64_t, double, bool> value;
};

// Sets the "service" field of every line and the minimum severity written.
void Init(absl::string_view service, Severity min_severity = Severity::kInfo);

// Redirects output (tests). Pass nullptr to restore stderr.
void SetSinkForTest(std::string* sink);

// "2026-11-22T08:37:44.568Z" (UTC, milliseconds): a line's "ts".
std::string Timestamp(absl::Time t);

// Appends `s` as a JSON string literal (quotes, backslashes and control
// characters escaped; UTF-8 passes through), as every log line's values
// are; also the FHIR export's JSON (services/intake/fhir_export.cc).
void AppendJsonString(std::string& out, absl::string_view s);

// Renders one line (without the trailing newline); exposed for tests.
std::string FormatLine(Severity severity, absl::string_view msg,
                       std::initializer_list<Field> fields);

void Write(Severity severity, absl::string_view msg,
           std::initializer_list<Field> fields = {});

inline void Info(absl::string_view msg, std::initializer_list<Field> f = {}) {
  Write(Severity::kInfo, msg, f);
}
inline void Warn(absl::string_view msg, std::initializer_list<Field> f = {}) {
  Write(Severity::kWarning, msg, f);
}
inline void Error(absl::string_view msg, std::initializer_list<Field> f = {}) {
  Write(Severity::kError, msg, f);
}

// The W3C trace id (32 lowercase hex digits) every line this thread writes
// carries as "trace_id" while a TraceScope is alive; "" outside any.
absl::string_view CurrentTraceId();

// Sets the thread's trace id for the scope's lifetime, restoring the one
// before it after (scopes nest). Work that hops threads carries the id
// along (server::FinishOnPool does) and opens a scope on arrival.
class TraceScope {
 public:
  explicit TraceScope(std::string trace_id);
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  std::string previous_;
};

// True for key names that must never carry a value into a log.
bool IsRedactedKey(absl::string_view key);

}  // namespace aqueduct::log

#endif  // AQUEDUCT_COMMON_LOGGING_LOGGING_H_
