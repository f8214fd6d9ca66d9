#include "common/auth/grpc_auth.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging/logging.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"

namespace aqueduct::auth {

absl::StatusOr<std::shared_ptr<const Authorizer>> LoadAuthorizer(
    const VerifierConfig& config) {
  if (config.keys_dir.empty()) {
    return absl::InvalidArgumentError(
        "--auth_keys: is required (a directory of <key id>.pem public keys "
        "that sign callers' tokens)");
  }
  if (config.issuer.empty())
    return absl::InvalidArgumentError("--auth_issuer: is required");
  if (config.audience.empty())
    return absl::InvalidArgumentError("--auth_audience: is required");
  auto keys = KeySet::LoadDirectory(config.keys_dir);
  if (!keys.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_keys: ", keys.status().message()));
  return std::make_shared<const Authorizer>(
      std::make_shared<const Verifier>(std::move(*keys), config.issuer,
                                       config.audience),
      config.bind_services_to_certificates);
}

std::string PeerCertificateName(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  for (const auto& v : auth->FindPropertyValues("x509_common_name"))
    return std::string(v.data(), v.size());
  return "";
}

absl::StatusOr<Identity> CheckCall(const Authorizer& authorizer,
                                   const grpc::ServerContextBase& context,
                                   absl::string_view method) {
  absl::string_view header;
  const auto& md = context.client_metadata();
  if (auto it = md.find("authorization"); it != md.end())
    header = absl::string_view(it->second.data(), it->second.size());
  Rejection why = Rejection::kMissing;
  auto id = authorizer.Check(header, method, absl::Now(), &why);
  if (!id.ok()) {
    const size_t slash = method.rfind('/');
    const std::string rpc(
        slash == absl::string_view::npos ? method : method.substr(slash + 1));
    if (id.status().code() == absl::StatusCode::kUnauthenticated) {
      log::Warn("call refused: credentials",
                {{"rpc", rpc}, {"why", std::string(RejectionName(why))}});
    } else {
      // "role <role> may not call <rpc>": no identity in it.
      log::Warn("call refused: permission",
                {{"rpc", rpc}, {"error", std::string(id.status().message())}});
    }
    return id;
  }
  if (id->role == Role::kService &&
      authorizer.bind_services_to_certificates() &&
      PeerCertificateName(context) != id->subject) {
    const size_t slash = method.rfind('/');
    const std::string rpc(
        slash == absl::string_view::npos ? method : method.substr(slash + 1));
    log::Warn("call refused: service without its certificate", {{"rpc", rpc}});
    return absl::PermissionDeniedError(
        "a service identity needs its mutual-TLS client certificate");
  }
  return id;
}

absl::StatusOr<std::string> StaticToken::Token() {
  if (token_.empty()) return absl::UnauthenticatedError("no token configured");
  return token_;
}

absl::StatusOr<std::unique_ptr<MintingTokenSource>>
MintingTokenSource::FromFile(const std::string& path, const std::string& key_id,
                             Claims claims, absl::Duration lifetime) {
  std::ifstream in(path);
  if (!in)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot read the signing key"));
  std::stringstream text;
  text << in.rdbuf();
  auto source = std::make_unique<MintingTokenSource>(
      text.str(), key_id, std::move(claims), lifetime);
  if (auto t = source->Token(); !t.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", t.status().message()));
  }
  return source;
}

absl::StatusOr<std::string> MintingTokenSource::Token() {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  if (now < expires_ - lifetime_ / 3) return token_;
  Claims c = claims_;
  c.expires = now + lifetime_;
  ASSIGN_OR_RETURN(auto token, Sign(c, private_key_pem_, key_id_));
  token_ = std::move(token);
  expires_ = c.expires;
  return token_;
}

absl::Status Attach(grpc::ClientContext& context, TokenSource& source) {
  ASSIGN_OR_RETURN(auto token, source.Token());
  context.AddMetadata("authorization", BearerValue(token));
  return absl::OkStatus();
}

}  // namespace aqueduct::auth
