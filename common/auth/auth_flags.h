#ifndef AQUEDUCT_COMMON_AUTH_AUTH_FLAGS_H_
#define AQUEDUCT_COMMON_AUTH_AUTH_FLAGS_H_

// The token-checking flags every service binary takes (linked into the
// service binaries only): --auth_keys, --auth_issuer, --auth_audience, with
// environment defaults AQUEDUCT_AUTH_KEYS, AQUEDUCT_AUTH_ISSUER,
// AQUEDUCT_AUTH_AUDIENCE.

#include "common/auth/grpc_auth.h"
#include "common/server/tls.h"

namespace aqueduct::auth {

VerifierConfig VerifierConfigFromFlags();

// What every service binary sets up from its flags before serving: the
// transport (TLS, or plaintext with the development flag) and the token
// checks, service identities bound to their certificates unless plaintext.
struct CallerChecks {
  server::TlsConfig tls;
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::shared_ptr<const Authorizer> authorizer;
};
// Errors name the flag (e.g. "--tls_cert: is required ...").
absl::StatusOr<CallerChecks> CallerChecksFromFlags();

}  // namespace aqueduct::auth

#endif  // AQUEDUCT_COMMON_AUTH_AUTH_FLAGS_H_
