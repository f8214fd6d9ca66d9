#include "common/server/tls.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/config/config.h"
#include "common/logging/logging.h"
#include "common/status/status_macros.h"

ABSL_FLAG(std::string, tls_cert,
          aqueduct::config::EnvOr("AQUEDUCT_TLS_CERT", ""),
          "This process's TLS certificate chain (PEM). Env AQUEDUCT_TLS_CERT.");
ABSL_FLAG(std::string, tls_key, aqueduct::config::EnvOr("AQUEDUCT_TLS_KEY", ""),
          "Its private key (PEM). Env AQUEDUCT_TLS_KEY.");
ABSL_FLAG(std::string, tls_ca, aqueduct::config::EnvOr("AQUEDUCT_TLS_CA", ""),
          "The CA certificate peers' certificates are checked against (PEM). "
          "Env AQUEDUCT_TLS_CA.");
ABSL_FLAG(bool, insecure_plaintext,
          aqueduct::config::EnvOr("AQUEDUCT_INSECURE_PLAINTEXT", "") == "1",
          "DEVELOPMENT ONLY: no TLS; tokens and health data cross the network "
          "in the clear. Env "
          "AQUEDUCT_INSECURE_PLAINTEXT=1.");

ABSL_FLAG(std::string, health_listen,
          aqueduct::config::EnvOr("AQUEDUCT_HEALTH_LISTEN", ""),
          "Also serve grpc.health.v1.Health alone, in plaintext, on this "
          "host:port (for probes that "
          "cannot speak TLS; no data, no tokens). Env AQUEDUCT_HEALTH_LISTEN.");

ABSL_FLAG(std::string, metrics_listen,
          aqueduct::config::EnvOr("AQUEDUCT_METRICS_LISTEN", ""),
          "Serve Prometheus metrics at http://<host:port>/metrics, in "
          "plaintext (counts and latencies only: no data, no tokens). Env "
          "AQUEDUCT_METRICS_LISTEN.");
ABSL_FLAG(bool, metrics,
          aqueduct::config::EnvOr("AQUEDUCT_METRICS", "1") != "0",
          "Record Prometheus metrics. --nometrics records none and serves no "
          "/metrics: only for measuring what recording costs. Env "
          "AQUEDUCT_METRICS=0.");
ABSL_FLAG(std::string, metrics_port_file, "",
          "Write the metrics listener's bound port to this file (tests).");

ABSL_FLAG(int64_t, grpc_memory_mb,
          aqueduct::config::EnvOrInt("AQUEDUCT_GRPC_MEMORY_MB", 32),
          "What gRPC's buffers (requests being received, replies being sent) "
          "may hold at once, in MiB; beyond it the service stops reading and "
          "refuses calls with RESOURCE_EXHAUSTED instead of growing. 0 = no "
          "limit. Env AQUEDUCT_GRPC_MEMORY_MB.");

namespace aqueduct::server {

std::string HealthListenFromFlags() {
  return absl::GetFlag(FLAGS_health_listen);
}

std::string MetricsListenFromFlags() {
  return absl::GetFlag(FLAGS_metrics_listen);
}

bool MetricsFromFlags() { return absl::GetFlag(FLAGS_metrics); }

std::string MetricsPortFileFromFlags() {
  return absl::GetFlag(FLAGS_metrics_port_file);
}

int64_t MemoryQuotaFromFlags() {
  return std::max<int64_t>(0, absl::GetFlag(FLAGS_grpc_memory_mb)) << 20;
}

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  if (path.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": is required (or --insecure_plaintext for development)"));
  std::ifstream in(path);
  if (!in)
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " is not PEM"));
  }
  return text.str();
}

}  // namespace

TlsConfig TlsConfigFromFlags() {
  return {absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
          absl::GetFlag(FLAGS_tls_ca), absl::GetFlag(FLAGS_insecure_plaintext)};
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsConfig& config) {
  if (config.insecure_plaintext) {
    log::Warn(
        "INSECURE: serving PLAINTEXT (--insecure_plaintext); development only, "
        "never with real data");
    return grpc::InsecureServerCredentials();
  }
  auto cert = ReadPem(config.cert_file, "--tls_cert");
  auto key = ReadPem(config.key_file, "--tls_key");
  auto ca = ReadPem(config.ca_file, "--tls_ca");
  for (const auto* s : {&cert, &key, &ca}) {
    if (!s->ok()) return s->status();
  }
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = *ca;
  options.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const TlsConfig& config) {
  if (config.insecure_plaintext) return grpc::InsecureChannelCredentials();
  ASSIGN_OR_RETURN(auto ca, ReadPem(config.ca_file, "--tls_ca"));
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca;
  if (!config.cert_file.empty() || !config.key_file.empty()) {
    auto cert = ReadPem(config.cert_file, "--tls_cert");
    auto key = ReadPem(config.key_file, "--tls_key");
    if (!cert.ok()) return cert.status();
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *cert;
    options.pem_private_key = *key;
  }
  return grpc::SslCredentials(options);
}

}  // namespace aqueduct::server
