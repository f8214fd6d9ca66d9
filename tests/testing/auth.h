#ifndef AQUEDUCT_TESTS_TESTING_AUTH_H_
#define AQUEDUCT_TESTS_TESTING_AUTH_H_

// Test identities: a signing key made for the test, the key directory the
// services verify with (--auth_keys), and tokens for any role.

#include <grpcpp/grpcpp.h>

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

  TestAuth();
  // Directory with the public key, as `<kid>.pem` (for --auth_keys).
  const std::string& keys_dir() const { return keys_dir_; }
  // The private key as a PEM file (for intake's --service_key, whose key id
  // is then "test": pass --service_key_id=test).
  const std::string& private_key_file() const { return private_key_file_; }
  std::shared_ptr<const auth::Authorizer> authorizer() const {
    return authorizer_;
  }

  // A token valid for an hour. Clinicians and physicians get `states`
  // (default every state the tests use).
  std::string Token(const std::string& role, const std::string& subject,
                    std::vector<std::string> states = {"NY", "NJ", "FL", "TX",
                                                       "CA"}) const;
  // Adds "authorization: Bearer <token>" for that identity.
  void Attach(grpc::ClientContext& ctx, const std::string& role,
              const std::string& subject) const;

 private:
  TempDir dir_;
  auth::KeyPair key_;
  std::string keys_dir_;
  std::string private_key_file_;
  std::shared_ptr<const auth::Authorizer> authorizer_;
};

// Data keys for a test process (random, made once) and the environment
// entry that hands them to service binaries: "AQUEDUCT_DATA_KEYS=...".
const crypto::DataKeys& TestDataKeys();
std::string DataKeysEnv();

}  // namespace aqueduct::testing

#endif  // AQUEDUCT_TESTS_TESTING_AUTH_H_
