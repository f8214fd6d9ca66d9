#ifndef AQUEDUCT_COMMON_AUTH_AUTH_FLAGS_H_
#define AQUEDUCT_COMMON_AUTH_AUTH_FLAGS_H_

// The token-checking flags every service binary takes (linked into the
// service binaries only): --auth_keys, --auth_issuer, --auth_audience, with
// environment defaults AQUEDUCT_AUTH_KEYS, AQUEDUCT_AUTH_ISSUER,
// AQUEDUCT_AUTH_AUDIENCE.

#include "common/auth/grpc_auth.h"

namespace aqueduct::auth {

VerifierConfig VerifierConfigFromFlags();

}  // namespace aqueduct::auth

#endif  // AQUEDUCT_COMMON_AUTH_AUTH_FLAGS_H_
