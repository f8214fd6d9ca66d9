#ifndef AQUEDUCT_COMMON_AUTH_GRPC_AUTH_H_
#define AQUEDUCT_COMMON_AUTH_GRPC_AUTH_H_

// gRPC glue for tokens: the server-side check every handler starts with,
// the services' common auth flags, and the token sources clients attach.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/auth/authorizer.h"

namespace aqueduct::auth {

// Verifier settings every service takes: the public key directory (one
// `<key id>.pem` per key), and the issuer and audience tokens must name.
struct VerifierConfig {
  std::string keys_dir;
  std::string issuer = "aqueduct-local";
  std::string audience = "aqueduct";
  // Services must present their mutual-TLS certificate (off only when the
  // transport is plaintext, in development).
  bool bind_services_to_certificates = true;
};
// Errors name the setting (e.g. "--auth_keys: is required").
absl::StatusOr<std::shared_ptr<const Authorizer>> LoadAuthorizer(
    const VerifierConfig& config);

// The caller of `method` (a full name, "/aqueduct.scoring.v1.ScoringService/
// ScoreAnswers"), or the status to answer with. Refusals are logged with the
// RPC and the reason, never the token or who it names. A service identity
// must also come over mutual TLS with a client certificate whose common
// name is that service (when the authorizer binds them).
absl::StatusOr<Identity> CheckCall(const Authorizer& authorizer,
                                   const grpc::ServerContextBase& context,
                                   absl::string_view method);

// The common name of the caller's verified client certificate, or "" when
// it presented none (or the connection is plaintext).
std::string PeerCertificateName(const grpc::ServerContextBase& context);
// Where a client's bearer tokens come from.
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual absl::StatusOr<std::string> Token() = 0;
};

// A token given as is (a person's, or one minted by `aqueductctl token`).
class StaticToken final : public TokenSource {
 public:
  explicit StaticToken(std::string token) : token_(std::move(token)) {}
  absl::StatusOr<std::string> Token() override;

 private:
  std::string token_;
};

// Mints its own short-lived tokens with a private key: a service's own
// identity (intake calling scoring and referral) and the local dev tools.
// Renews once a third of the lifetime is left. Thread-safe.
class MintingTokenSource final : public TokenSource {
 public:
  MintingTokenSource(std::string private_key_pem, std::string key_id,
                     Claims claims, absl::Duration lifetime = absl::Minutes(10))
      : private_key_pem_(std::move(private_key_pem)),
        key_id_(std::move(key_id)),
        claims_(std::move(claims)),
        lifetime_(lifetime) {}
  // Reads the key from a PEM file; errors name the file.
  static absl::StatusOr<std::unique_ptr<MintingTokenSource>> FromFile(
      const std::string& path, const std::string& key_id, Claims claims,
      absl::Duration lifetime = absl::Minutes(10));
  absl::StatusOr<std::string> Token() override;

 private:
  const std::string private_key_pem_;
  const std::string key_id_;
  const Claims claims_;
  const absl::Duration lifetime_;
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  absl::Time expires_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Adds "authorization: Bearer <token>" to an outgoing call.
absl::Status Attach(grpc::ClientContext& context, TokenSource& source);

}  // namespace aqueduct::auth

#endif  // AQUEDUCT_COMMON_AUTH_GRPC_AUTH_H_
