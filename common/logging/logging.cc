#include "common/logging/logging.h"

#include <cstdio>
#include <ctime>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace aqueduct::log {
namespace {

struct State {
  absl::Mutex mu;
  std::string service ABSL_GUARDED_BY(mu) = "aqueduct";
  Severity min_severity ABSL_GUARDED_BY(mu) = Severity::kInfo;
  std::string* sink ABSL_GUARDED_BY(mu) = nullptr;
};

State& GetState() {
  static State* state = new State();
  return *state;
}

absl::string_view SeverityName(Severity s) {
  switch (s) {
    case Severity::kDebug:
      return "DEBUG";
    case Severity::kInfo:
      return "INFO";
    case Severity::kWarning:
      return "WARNING";
    case Severity::kError:
      return "ERROR";
  }
  return "INFO";
}

void AppendValue(std::string& out, const Field& f) {
  if (IsRedactedKey(f.key)) {
    AppendJsonString(out, "[redacted]");
    return;
  }
  if (const auto* s = std::get_if<std::string>(&f.value)) {
    AppendJsonString(out, *s);
  } else if (const auto* i = std::get_if<int64_t>(&f.value)) {
    absl::StrAppend(&out, *i);
  } else if (const auto* d = std::get_if<double>(&f.value)) {
    absl::StrAppend(&out, absl::StrFormat("%.3f", *d));
  } else if (const auto* b = std::get_if<bool>(&f.value)) {
    out += *b ? "true" : "false";
  }
}

thread_local std::string current_trace;

}  // namespace

void AppendJsonString(std::string& out, absl::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

absl::string_view CurrentTraceId() { return current_trace; }

TraceScope::TraceScope(std::string trace_id)
    : previous_(std::exchange(current_trace, std::move(trace_id))) {}

TraceScope::~TraceScope() { current_trace = std::move(previous_); }

bool IsRedactedKey(absl::string_view key) {
  static constexpr absl::string_view kDenied[] = {
      "answer", "text",     "token",  "reason",        "name", "email",
      "note",   "password", "secret", "authorization", "user"};
  std::string lower = absl::AsciiStrToLower(key);
  for (absl::string_view d : kDenied) {
    if (absl::StrContains(lower, d)) return true;
  }
  return false;
}

void Init(absl::string_view service, Severity min_severity) {
  State& st = GetState();
  absl::MutexLock lock(&st.mu);
  st.service = std::string(service);
  st.min_severity = min_severity;
}

void SetSinkForTest(std::string* sink) {
  State& st = GetState();
  absl::MutexLock lock(&st.mu);
  st.sink = sink;
}

std::string Timestamp(absl::Time t) {
  // Formatting a time zone-aware time costs more than the rest of a line;
  // the part up to the seconds changes once a second, so each thread keeps
  // it and appends the milliseconds.
  thread_local int64_t cached_second = std::numeric_limits<int64_t>::min();
  thread_local std::string cached;
  const int64_t ms = absl::ToUnixMillis(t);
  const int64_t second = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
  if (second != cached_second) {
    cached =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(second),
                         absl::UTCTimeZone());
    cached_second = second;
  }
  return absl::StrFormat("%s.%03dZ", cached, ms - second * 1000);
}

std::string FormatLine(Severity severity, absl::string_view msg,
                       std::initializer_list<Field> fields) {
  std::string service;
  {
    State& st = GetState();
    absl::MutexLock lock(&st.mu);
    service = st.service;
  }
  std::string out = "{\"ts\":";
  AppendJsonString(out, Timestamp(absl::Now()));
  out += ",\"severity\":";
  AppendJsonString(out, SeverityName(severity));
  out += ",\"service\":";
  AppendJsonString(out, service);
  if (!current_trace.empty()) {
    out += ",\"trace_id\":";
    AppendJsonString(out, current_trace);
  }
  out += ",\"msg\":";
  AppendJsonString(out, msg);
  for (const Field& f : fields) {
    out.push_back(',');
    AppendJsonString(out, f.key);
    out.push_back(':');
    AppendValue(out, f);
  }
  out.push_back('}');
  return out;
}

void Write(Severity severity, absl::string_view msg,
           std::initializer_list<Field> fields) {
  State& st = GetState();
  {
    absl::MutexLock lock(&st.mu);
    if (severity < st.min_severity) return;
  }
  std::string line = FormatLine(severity, msg, fields);
  line.push_back('\n');
  absl::MutexLock lock(&st.mu);
  if (st.sink != nullptr) {
    st.sink->append(line);
    return;
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace aqueduct::log
