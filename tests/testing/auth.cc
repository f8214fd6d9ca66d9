#include "tests/testing/auth.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "absl/time/clock.h"

namespace aqueduct::testing {

TestAuth::TestAuth(Keys mode) {
  keys_dir_ = dir_.path() + "/keys";
  mkdir(keys_dir_.c_str(), 0700);
  std::map<std::string, std::string> grants;  // key id -> roles file text
  if (mode == Keys::kOneKey) {
    grants[kKeyId] = kGrants;
    service_key_id_ = kKeyId;
  } else {
    grants["idp"] = "patient clinician physician batch operator";
    grants["intake"] = "service:intake";
    service_key_id_ = "intake";
  }
  auth::KeySet keys;
  for (const auto& [kid, roles] : grants) {
    auto key = auth::GenerateKeyPair("EC");
    auto parsed = auth::KeyGrants::Parse(roles);
    if (!key.ok() || !parsed.ok() ||
        !keys.Add(kid, key->public_pem, *parsed).ok())
      std::abort();
    std::ofstream(keys_dir_ + "/" + kid + ".pem") << key->public_pem;
    std::ofstream(keys_dir_ + "/" + kid + ".roles") << roles << "\n";
    keys_[kid] = *std::move(key);
  }
  private_key_file_ = dir_.path() + "/signing.pem";
  std::ofstream(private_key_file_) << keys_[service_key_id_].private_pem;
  authorizer_ = std::make_shared<const auth::Authorizer>(
      std::make_shared<const auth::Verifier>(std::move(keys), kIssuer,
                                             kAudience));
}

std::string TestAuth::Token(const std::string& role, const std::string& subject,
                            std::vector<std::string> states) const {
  const std::string kid = keys_.count(kKeyId) > 0
                              ? kKeyId
                              : (role == "service" ? service_key_id_ : "idp");
  auth::Claims c;
  c.issuer = kIssuer;
  c.audience = kAudience;
  c.role = role;
  c.subject = subject;
  if (role == "clinician" || role == "physician") c.states = std::move(states);
  c.expires = absl::Now() + absl::Hours(1);
  auto token = auth::Sign(c, keys_.at(kid).private_pem, kid);
  return token.ok() ? *token : "";
}

std::string TestAuth::TokenSignedBy(const std::string& key_id,
                                    const std::string& role,
                                    const std::string& subject) const {
  auth::Claims c;
  c.issuer = kIssuer;
  c.audience = kAudience;
  c.role = role;
  c.subject = subject;
  if (role == "clinician" || role == "physician") c.states = {"NY"};
  c.expires = absl::Now() + absl::Hours(1);
  auto token = auth::Sign(c, keys_.at(key_id).private_pem, key_id);
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
