#include "tests/testing/auth.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "absl/time/clock.h"

namespace aqueduct::testing {

TestAuth::TestAuth() {
  auto key = auth::GenerateKeyPair("EC");
  if (!key.ok()) std::abort();
  key_ = *key;
  keys_dir_ = dir_.path() + "/keys";
  mkdir(keys_dir_.c_str(), 0700);
  std::ofstream(keys_dir_ + "/" + kKeyId + ".pem") << key_.public_pem;
  private_key_file_ = dir_.path() + "/signing.pem";
  std::ofstream(private_key_file_) << key_.private_pem;
  auth::KeySet keys;
  if (!keys.Add(kKeyId, key_.public_pem).ok()) std::abort();
  authorizer_ = std::make_shared<const auth::Authorizer>(
      std::make_shared<const auth::Verifier>(std::move(keys), kIssuer,
                                             kAudience));
}

std::string TestAuth::Token(const std::string& role, const std::string& subject,
                            std::vector<std::string> states) const {
  auth::Claims c;
  c.issuer = kIssuer;
  c.audience = kAudience;
  c.role = role;
  c.subject = subject;
  if (role == "clinician" || role == "physician") c.states = std::move(states);
  c.expires = absl::Now() + absl::Hours(1);
  auto token = auth::Sign(c, key_.private_pem, kKeyId);
  return token.ok() ? *token : "";
}

void TestAuth::Attach(grpc::ClientContext& ctx, const std::string& role,
                      const std::string& subject) const {
  ctx.AddMetadata("authorization", auth::BearerValue(Token(role, subject)));
}

const crypto::DataKeys& TestDataKeys() {
  static const auto* keys = new crypto::DataKeys(crypto::DataKeys::Random());
  return *keys;
}

std::string DataKeysEnv() {
  return "AQUEDUCT_DATA_KEYS=" + TestDataKeys().ToText();
}

}  // namespace aqueduct::testing
