#include "common/auth/auth_flags.h"

#include "absl/flags/flag.h"
#include "common/config/config.h"

ABSL_FLAG(std::string, auth_keys,
          aqueduct::config::EnvOr("AQUEDUCT_AUTH_KEYS", ""),
          "Directory of <key id>.pem public keys that sign callers' tokens "
          "(required; every call "
          "but health checks needs a token). Env AQUEDUCT_AUTH_KEYS.");
ABSL_FLAG(std::string, auth_issuer,
          aqueduct::config::EnvOr("AQUEDUCT_AUTH_ISSUER", "aqueduct-local"),
          "Issuer (iss) tokens must name. Env AQUEDUCT_AUTH_ISSUER.");
ABSL_FLAG(std::string, auth_audience,
          aqueduct::config::EnvOr("AQUEDUCT_AUTH_AUDIENCE", "aqueduct"),
          "Audience (aud) tokens must include. Env AQUEDUCT_AUTH_AUDIENCE.");

namespace aqueduct::auth {

absl::StatusOr<CallerChecks> CallerChecksFromFlags() {
  CallerChecks out;
  out.tls = server::TlsConfigFromFlags();
  auto credentials = server::ServerCredentialsFor(out.tls);
  if (!credentials.ok()) return credentials.status();
  out.credentials = *std::move(credentials);
  VerifierConfig config = VerifierConfigFromFlags();
  config.bind_services_to_certificates = !out.tls.insecure_plaintext;
  auto authorizer = LoadAuthorizer(config);
  if (!authorizer.ok()) return authorizer.status();
  out.authorizer = *std::move(authorizer);
  return out;
}

VerifierConfig VerifierConfigFromFlags() {
  return {absl::GetFlag(FLAGS_auth_keys), absl::GetFlag(FLAGS_auth_issuer),
          absl::GetFlag(FLAGS_auth_audience)};
}

}  // namespace aqueduct::auth
