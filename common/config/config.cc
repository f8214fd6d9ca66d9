#include "common/config/config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace aqueduct::config {

std::string EnvOr(const char* name, absl::string_view fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::string(fallback);
  return v;
}

absl::StatusOr<std::string> SecretFromEnv(const std::string& name) {
  const std::string file = EnvOr((name + "_FILE").c_str(), "");
  if (file.empty()) return EnvOr(name.c_str(), "");
  std::ifstream in(file);
  if (!in)
    return absl::InvalidArgumentError(
        absl::StrCat(name, "_FILE: cannot read ", file));
  std::stringstream text;
  text << in.rdbuf();
  std::string secret = text.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r'))
    secret.pop_back();
  return secret;
}

int64_t EnvOrInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  int64_t out = 0;
  if (v == nullptr || !absl::SimpleAtoi(v, &out)) return fallback;
  return out;
}

std::string Endpoint::ToString() const {
  if (is_unix) return absl::StrCat("unix:", path);
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<Endpoint> ParseEndpoint(absl::string_view text,
                                       absl::string_view what) {
  Endpoint ep;
  if (text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": empty; expected host:port or unix:/path"));
  }
  if (absl::StartsWith(text, "unix:")) {
    ep.is_unix = true;
    ep.path = std::string(text.substr(5));
    if (ep.path.empty() || ep.path[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": \"", text, "\" needs an absolute socket path (unix:/...)"));
    }
    return ep;
  }
  size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos || colon + 1 == text.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", text,
                     "\" has no port; expected host:port or unix:/path"));
  }
  absl::string_view host = text.substr(0, colon);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": \"", text.substr(colon + 1), "\" is not a port number"));
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": host is empty"));
  }
  ep.host = std::string(host);
  ep.port = static_cast<uint16_t>(port);
  return ep;
}

absl::StatusOr<absl::Duration> PositiveMillis(int64_t ms,
                                              absl::string_view what) {
  if (ms <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": must be a positive number of milliseconds, got ", ms));
  }
  return absl::Milliseconds(ms);
}

absl::Status FirstError(std::initializer_list<absl::Status> checks) {
  for (const absl::Status& s : checks) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace aqueduct::config
