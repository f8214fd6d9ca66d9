#ifndef AQUEDUCT_COMMON_AUTH_AUTHORIZER_H_
#define AQUEDUCT_COMMON_AUTH_AUTHORIZER_H_

// Function-level authorisation: which roles may call which RPC, in one table
// (policy.cc), checked with the caller's verified bearer token. Object-level
// rules (a patient's own screenings, a clinician's licensed states, only
// physicians decide ketamine reviews) are applied by the services with the
// Identity this returns.

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/auth/jwt.h"

namespace aqueduct::auth {

// Who may call one RPC.
struct Access {
  std::vector<Role> roles;
  // For Role::kService: the service subjects allowed (e.g. "intake").
  std::vector<std::string> services;
  // What the service then restricts, for the documentation table
  // ("own screenings only", "licensed states").
  std::string scope;
};

// RPC full name ("/aqueduct.scoring.v1.ScoringService/ScoreAnswers") ->
// access. Health checks are not in it: they need no token.
const absl::flat_hash_map<std::string, Access>& Policy();

class Authorizer {
 public:
  // With `bind_services_to_certificates`, a service identity (role
  // service) is only accepted over a connection whose verified client
  // certificate names that service (mutual TLS); see CheckCall.
  explicit Authorizer(std::shared_ptr<const Verifier> verifier,
                      bool bind_services_to_certificates = false)
      : verifier_(std::move(verifier)),
        bind_services_to_certificates_(bind_services_to_certificates) {}
  bool bind_services_to_certificates() const {
    return bind_services_to_certificates_;
  }

  // The caller of `method`, from the value of its "authorization" metadata
  // ("Bearer <token>"; empty when absent). UNAUTHENTICATED ("missing or
  // invalid credentials", nothing more) for a missing or bad token, with the
  // reason in `why` for the log; PERMISSION_DENIED when the role may not
  // call `method` (or the method is not in the policy: denied by default).
  absl::StatusOr<Identity> Check(absl::string_view authorization,
                                 absl::string_view method, absl::Time now,
                                 Rejection* why = nullptr) const;

 private:
  std::shared_ptr<const Verifier> verifier_;
  bool bind_services_to_certificates_;
};

// The subject of the HTTP gateway's own service identity
// (services/gateway). It may call WatchQueue only, and there sees every
// case with its QueueEvent.audience: it holds one stream for every portal
// it serves and applies that rule to each of them.
inline constexpr char kGatewayService[] = "gateway";

// The metadata value for a token: "Bearer <token>".
std::string BearerValue(absl::string_view token);

}  // namespace aqueduct::auth

#endif  // AQUEDUCT_COMMON_AUTH_AUTHORIZER_H_
