#ifndef AQUEDUCT_COMMON_AUTH_JWT_H_
#define AQUEDUCT_COMMON_AUTH_JWT_H_

// Bearer tokens: compact JWS (RFC 7515/7519) signed with ES256 (P-256) or
// RS256 (RSA >= 2048 bits), verified with OpenSSL against a configured key
// set. The algorithm is pinned by the key a token names (`kid`): an EC key
// verifies ES256 only, an RSA key RS256 only; `none` and every HS algorithm
// are refused, so no token can choose a weaker check than its key allows.
//
// Claims read: iss and aud (must equal the configured issuer and audience;
// aud may be a list), exp (required), nbf (optional), sub (required, the
// identity), role (patient, clinician, physician, batch, operator or service)
// and, for clinicians and physicians, states (the US states they are licensed
// in, e.g. ["NY","FL"]).

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace aqueduct::auth {

// kService: an Aqueduct service calling another on its own behalf (intake
// calling scoring and referral); its subject names the service.
enum class Role {
  kPatient,
  kClinician,
  kPhysician,
  kBatch,
  kOperator,
  kService
};

// "patient", "clinician", ...
absl::string_view RoleName(Role role);
// nullopt-like: false when `name` is not a role.
bool ParseRole(absl::string_view name, Role* role);

// Who a verified token says the caller is.
struct Identity {
  std::string subject;
  Role role = Role::kPatient;
  std::vector<std::string> licensed_states;  // clinicians and physicians
  std::string key_id;                        // which key signed it
};

// What tokens one key may sign: a set of roles, and for the service role
// the subjects it may name. A token outside its key's grants is refused
// (Rejection::kKeyRole), so intake's own key cannot mint a patient's or a
// clinician's token, nor the identity provider's a service's.
struct KeyGrants {
  std::set<Role> roles;  // never Role::kService: see `services`
  std::set<std::string, std::less<>> services;  // subjects of role service

  // Grants as written in a `<key id>.roles` file: names separated by white
  // space or commas, `#` to the end of a line a comment; a role name
  // (patient, clinician, physician, batch, operator) or `service:<subject>`
  // (e.g. service:intake). INVALID_ARGUMENT naming the word not understood,
  // or when nothing is granted.
  static absl::StatusOr<KeyGrants> Parse(absl::string_view text);
  bool Allows(Role role, absl::string_view subject) const;
};

// Public keys by key id, each with what it may sign. Keys rotate by adding
// the new key beside the old one, switching the signer, then removing the
// old key.
class KeySet {
 public:
  KeySet();
  ~KeySet();
  KeySet(KeySet&&) noexcept;
  KeySet& operator=(KeySet&&) noexcept;

  // Adds a PEM public key (SubjectPublicKeyInfo). INVALID_ARGUMENT for an
  // unparsable key, a curve other than P-256, RSA under 2048 bits, any other
  // key type, or a duplicate key id.
  absl::Status Add(const std::string& key_id, absl::string_view pem,
                   KeyGrants grants);
  // Every `<key id>.pem` file in `dir` with its grants from `<key id>.roles`
  // beside it; errors name the file. A key without a roles file, and a
  // directory without keys, are errors (what the key may sign would be a
  // guess; nothing could be verified).
  static absl::StatusOr<KeySet> LoadDirectory(const std::string& dir);

  size_t size() const;
  struct Key;
  const Key* Find(absl::string_view key_id) const;

 private:
  std::map<std::string, std::unique_ptr<Key>, std::less<>> keys_;
};

// Why a token was refused. Callers of an RPC see only UNAUTHENTICATED with a
// fixed message; the reason is for logs and tests.
enum class Rejection {
  kMissing,      // no token
  kMalformed,    // not three base64url parts, bad JSON, too long
  kAlgorithm,    // none, HS*, or an algorithm the key does not pin
  kUnknownKey,   // no kid, or a kid not in the key set
  kSignature,    // the signature does not verify (tampered, wrong key)
  kExpired,      // exp passed (beyond the leeway) or missing
  kNotYetValid,  // nbf in the future (beyond the leeway)
  kIssuer,       // iss is not the configured issuer
  kAudience,     // aud does not include the configured audience
  kClaims,       // sub, role or states missing or not valid
  kKeyRole,      // the role (or service subject) is not one its key may sign
};
absl::string_view RejectionName(Rejection r);

class Verifier {
 public:
  Verifier(KeySet keys, std::string issuer, std::string audience,
           absl::Duration leeway = absl::Seconds(60));

  // The identity of a valid token; otherwise UNAUTHENTICATED whose message
  // is RejectionName(why) (never any part of the token) and `why` is set.
  // Tokens that verified are remembered by their SHA-256 (bounded), so an
  // app's next call costs a hash and a lookup instead of a signature check
  // and JSON parsing; exp and nbf are checked again on every call.
  absl::StatusOr<Identity> Verify(absl::string_view token, absl::Time now,
                                  Rejection* why = nullptr) const;

  const std::string& issuer() const { return issuer_; }
  const std::string& audience() const { return audience_; }

 private:
  KeySet keys_;
  std::string issuer_;
  std::string audience_;
  absl::Duration leeway_;
  struct Cache;
  std::shared_ptr<Cache> cache_;

  absl::StatusOr<Identity> VerifyFull(absl::string_view token, absl::Time now,
                                      Rejection* why, absl::Time* expires,
                                      absl::Time* not_before) const;
};

// What a signed token says (for minting development and test tokens).
struct Claims {
  std::string issuer;
  std::string audience;
  // When set, "aud" is a list: these, then `audience` (if not empty).
  std::vector<std::string> more_audiences;
  std::string subject;
  std::string role;  // as written, so tests can mint invalid roles
  std::vector<std::string> states;
  absl::Time expires = absl::InfiniteFuture();   // InfiniteFuture: no exp claim
  absl::Time not_before = absl::InfinitePast();  // InfinitePast: no nbf claim
};

// Signs `claims` with a PEM private key: ES256 for a P-256 key, RS256 for
// RSA. `alg` overrides the header's algorithm name (tests of refusals);
// empty = the key's.
absl::StatusOr<std::string> Sign(const Claims& claims,
                                 absl::string_view private_key_pem,
                                 const std::string& key_id,
                                 const std::string& alg = "");

// A fresh key pair as PEM (private PKCS#8, public SubjectPublicKeyInfo):
// "EC" (P-256) or "RSA" (2048 bits). For tests and the local dev key.
struct KeyPair {
  std::string private_pem;
  std::string public_pem;
};
absl::StatusOr<KeyPair> GenerateKeyPair(const std::string& type);

}  // namespace aqueduct::auth

#endif  // AQUEDUCT_COMMON_AUTH_JWT_H_
