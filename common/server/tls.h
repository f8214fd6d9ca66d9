#ifndef AQUEDUCT_COMMON_SERVER_TLS_H_
#define AQUEDUCT_COMMON_SERVER_TLS_H_

// Transport security from certificate files. Servers speak TLS and ask
// callers for a client certificate: people's apps and staff portals connect
// with TLS alone; services connect with mutual TLS, and a service identity
// in a token is only accepted over a connection whose verified client
// certificate names that service (tls.cc, CheckCall). Plaintext only with an
// explicit development flag, logged loudly at start-up.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace aqueduct::server {

struct TlsConfig {
  std::string cert_file;  // this process's certificate chain (PEM)
  std::string key_file;   // its private key (PEM)
  std::string ca_file;    // the CA that signs peers' certificates (PEM)
  bool insecure_plaintext = false;  // development only: no TLS at all
};

// --tls_cert, --tls_key, --tls_ca, --insecure_plaintext (environment
// AQUEDUCT_TLS_CERT, AQUEDUCT_TLS_KEY, AQUEDUCT_TLS_CA,
// AQUEDUCT_INSECURE_PLAINTEXT=1), linked into binaries that use it.
TlsConfig TlsConfigFromFlags();

// --health_listen (env AQUEDUCT_HEALTH_LISTEN): "host:port" of a plaintext
// listener serving only the health service (probes that cannot speak TLS),
// or "" for none.
std::string HealthListenFromFlags();

// --metrics_listen (env AQUEDUCT_METRICS_LISTEN): "host:port" of a plaintext
// HTTP listener serving Prometheus metrics at /metrics, or "" for none; and
// --metrics_port_file, where its bound port is written (tests).
std::string MetricsListenFromFlags();
std::string MetricsPortFileFromFlags();
// --metrics (env AQUEDUCT_METRICS, default on), for ServerOptions::metrics.
bool MetricsFromFlags();

// --grpc_memory_mb (env AQUEDUCT_GRPC_MEMORY_MB, default 32), in bytes, for
// ServerOptions::memory_quota_bytes.
int64_t MemoryQuotaFromFlags();

// Server credentials: TLS with the certificate and key, verifying any client
// certificate against the CA. INVALID_ARGUMENT names the missing or
// unreadable file; plaintext (insecure_plaintext) is logged as a warning
// every start.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsConfig& config);

// Channel credentials to a peer: TLS verifying the server against the CA,
// presenting our certificate when cert and key are set (mutual TLS).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const TlsConfig& config);

}  // namespace aqueduct::server

#endif  // AQUEDUCT_COMMON_SERVER_TLS_H_
