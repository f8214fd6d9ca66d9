#ifndef AQUEDUCT_TESTS_TESTING_AUTH_H_
#define AQUEDUCT_TESTS_TESTING_AUTH_H_

// Test identities: a signing key made for the test, the key directory the
// services verify with (--auth_keys), and tokens for any role.

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/auth/authorizer.h"
#include "common/auth/jwt.h"
#include "common/crypto/data_keys.h"
#include "tests/testing/process.h"

namespace aqueduct::testing {

class TestAuth {
 public:
  static constexpr char kIssuer[] = "aqueduct-local";
  static constexpr char kAudience[] = "aqueduct";
  static constexpr char kKeyId[] = "test";
  // The one test key signs every role, as the identity provider and intake
  // both would (tests of key binding make keys of their own).
  static constexpr char kGrants[] =
      "patient clinician physician batch operator service:intake "
      "service:referral service:gateway";

  // kOneKey: one key (kKeyId) signs every role, as both the identity
  // provider and intake would. kSplit: as deployed, key "idp" signs people
  // and staff (patient clinician physician batch operator) and key "intake"
  // only intake's service tokens; Token() picks the key by role.
  enum class Keys { kOneKey, kSplit };
  explicit TestAuth(Keys keys = Keys::kOneKey);
  // Directory with the public key, as `<kid>.pem`, and its grants,
  // `<kid>.roles` (for --auth_keys).
  const std::string& keys_dir() const { return keys_dir_; }
  // The private key intake signs with as a PEM file (for intake's
  // --service_key), and its key id (--service_key_id).
  const std::string& private_key_file() const { return private_key_file_; }
  const std::string& service_key_id() const { return service_key_id_; }
  std::shared_ptr<const auth::Authorizer> authorizer() const {
    return authorizer_;
  }

  // A token valid for an hour. Clinicians and physicians get `states`
  // (default every state the tests use).
  std::string Token(const std::string& role, const std::string& subject,
                    std::vector<std::string> states = {"NY", "NJ", "FL", "TX",
                                                       "CA"}) const;
  // A token signed by the key `key_id` whatever its grants (kSplit: "idp"
  // or "intake"), to try what a key may not sign.
  std::string TokenSignedBy(const std::string& key_id, const std::string& role,
                            const std::string& subject) const;
  // Adds "authorization: Bearer <token>" for that identity.
  void Attach(grpc::ClientContext& ctx, const std::string& role,
              const std::string& subject) const;

 private:
  TempDir dir_;
  std::map<std::string, auth::KeyPair> keys_;  // by key id
  std::string keys_dir_;
  std::string private_key_file_;
  std::string service_key_id_;
  std::shared_ptr<const auth::Authorizer> authorizer_;
};

// Data keys for a test process (random, made once) and the environment
// entry that hands them to service binaries: "AQUEDUCT_DATA_KEYS=...".
const crypto::DataKeys& TestDataKeys();
std::string DataKeysEnv();

}  // namespace aqueduct::testing

#endif  // AQUEDUCT_TESTS_TESTING_AUTH_H_
