#ifndef AQUEDUCT_SERVICES_GATEWAY_GATEWAY_SERVER_H_
#define AQUEDUCT_SERVICES_GATEWAY_GATEWAY_SERVER_H_

// The HTTP/JSON gateway: HTTP/1.1 (TLS unless the development plaintext
// flag says otherwise) on Boost.Beast, one I/O thread for every connection
// (an open Server-Sent Events stream holds a socket and a few buffers, no
// thread), calling intake and referral over gRPC with the caller's own
// bearer token, checked here first with the same policy the services apply.
//
//   /v1/...             every annotated RPC (HttpRules), JSON in and out;
//                       errors as google.rpc.Status JSON with the HTTP status
//                       for their gRPC code
//   /v1/referrals:watch WatchQueue as Server-Sent Events (QueueRelay)
//   /console/           the reference clinician console (static files)
//   /openapi.json       the OpenAPI document of /v1
//   /healthz            liveness, and whether the queue stream is followed
//
// Nothing a request holds (its path names people; its body their answers)
// is logged: a log line names the RPC and the outcome only.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/authorizer.h"
#include "common/auth/grpc_auth.h"
#include "services/gateway/http_rules.h"
#include "services/gateway/queue_relay.h"

namespace aqueduct::gateway {

struct GatewayConfig {
  std::string listen = "127.0.0.1:7180";  // host:port; port 0 = any free one
  std::string port_file;                  // the bound port is written here
  // TLS for HTTP: this certificate chain and key. Both empty only with
  // `insecure_plaintext`.
  std::string cert_file;
  std::string key_file;
  bool insecure_plaintext = false;
  // Origins (scheme://host[:port]) whose pages may call the API from a
  // browser (CORS); the console itself is same-origin and needs none.
  std::vector<std::string> cors_origins;
  size_t max_body_bytes = 64 << 10;
  size_t max_header_bytes = 16 << 10;
  // Per client address: requests per second, and the burst allowed.
  double rate_per_second = 20;
  double rate_burst = 60;
  int max_connections = 20000;
  int max_streams = 10000;                     // open queue streams
  absl::Duration max_rpc = absl::Seconds(10);  // cap on any call's deadline
  absl::Duration idle_timeout = absl::Seconds(60);
  absl::Duration heartbeat = absl::Seconds(15);  // stream keep-alive and
                                                 // token re-check
  size_t max_stream_backlog = 1 << 20;           // bytes a slow stream may lag
  // A stream's socket send buffer (SO_SNDBUF, which the kernel doubles):
  // fixed, so what the kernel holds for a portal that stopped reading is
  // bounded too (autotuning lets it grow to megabytes), and such a portal
  // reaches max_stream_backlog and is dropped.
  int stream_send_buffer = 128 << 10;
  std::string console_dir;  // index.html, app.js, app.css
  std::string openapi_file;
};

// Where each service's RPCs go.
struct Upstreams {
  // Full service name ("aqueduct.intake.v1.IntakeService") -> channel.
  absl::flat_hash_map<std::string, std::shared_ptr<grpc::Channel>> channels;
  std::shared_ptr<grpc::Channel> referral;  // the queue stream's
  // The gateway's own identity for the queue stream (service "gateway").
  std::shared_ptr<auth::TokenSource> own_token;
};

class Gateway {
 public:
  // Binds, loads the static files, starts the I/O thread and the queue
  // stream. Errors name the setting (an unreadable certificate, a busy
  // port, a missing console file).
  static absl::StatusOr<std::unique_ptr<Gateway>> Start(
      GatewayConfig config, HttpRules rules,
      std::shared_ptr<const auth::Authorizer> authorizer, Upstreams upstreams);
  ~Gateway();

  int port() const;
  // Stops accepting, ends every stream and the upstream stream, joins.
  void Shutdown();

  class Impl;

 private:
  explicit Gateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The deadline a request asks for in its Grpc-Timeout header ("10S",
// "500m": gRPC's timeout format, as grpc-gateway reads it), capped at
// `cap`; `cap` when absent or malformed.
absl::Duration RequestTimeout(absl::string_view header, absl::Duration cap);

// The queue relay's options for `config`. A resume is sent to a stream at
// once, so it must fit well within what the stream may lag
// (max_stream_backlog): a larger one would be dropped as it starts, and
// again at every reconnect. Beyond half the backlog it is a reset.
QueueRelay::Options RelayOptions(const GatewayConfig& config);

}  // namespace aqueduct::gateway

#endif  // AQUEDUCT_SERVICES_GATEWAY_GATEWAY_SERVER_H_
