#ifndef AQUEDUCT_COMMON_CONFIG_CONFIG_H_
#define AQUEDUCT_COMMON_CONFIG_CONFIG_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

// Configuration comes from flags, whose defaults come from the environment:
//   ABSL_FLAG(std::string, redis, EnvOr("AQUEDUCT_REDIS", "..."), "...");
// so a flag given on the command line wins over the environment, which wins
// over the built-in default. Each main reads its flags once into a plain
// config struct; libraries never read flags or the environment.

namespace aqueduct::config {

// The environment variable's value, or `fallback` when unset or empty.
std::string EnvOr(const char* name, absl::string_view fallback);
int64_t EnvOrInt(const char* name, int64_t fallback);
// A secret from the environment: the contents of the file named by
// `<name>_FILE` (trailing newline dropped) when that is set, else `<name>`,
// else empty. Files keep secrets out of `ps` and shell history. An
// unreadable file is an error naming the variable, never the contents.
absl::StatusOr<std::string> SecretFromEnv(const std::string& name);

// A network endpoint: "host:port" over TCP or "unix:/path/to.sock".
struct Endpoint {
  bool is_unix = false;
  std::string host;   // TCP host
  uint16_t port = 0;  // TCP port
  std::string path;   // Unix socket path

  std::string ToString() const;
};

// Parses "host:port", "[v6]:port" or "unix:/path". INVALID_ARGUMENT names
// `what` (e.g. "--redis") and the problem.
absl::StatusOr<Endpoint> ParseEndpoint(absl::string_view text,
                                       absl::string_view what);

// Parses a positive duration in milliseconds given as an integer flag;
// INVALID_ARGUMENT names `what` when it is not positive.
absl::StatusOr<absl::Duration> PositiveMillis(int64_t ms,
                                              absl::string_view what);

// The first error among the checks of a main's flags (OK when all pass), so
// a service reports the first bad setting by name and stops.
absl::Status FirstError(std::initializer_list<absl::Status> checks);

}  // namespace aqueduct::config

#endif  // AQUEDUCT_COMMON_CONFIG_CONFIG_H_
