#ifndef AQUEDUCT_COMMON_SERVER_SERVER_RUNNER_H_
#define AQUEDUCT_COMMON_SERVER_SERVER_RUNNER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/metrics/metrics.h"

// Server bootstrap shared by every service: listening port, health service
// fed by a real readiness check, reflection, message-size and thread limits,
// one log line per RPC (method, code, latency; never a payload), and graceful
// shutdown (NOT_SERVING first, then drain).

namespace aqueduct::server {

struct ServerOptions {
  // "host:port"; port 0 picks a free one (tests), see port().
  std::string listen_address = "127.0.0.1:0";
  // If set, the bound port is written here once listening (tests, scripts).
  std::string port_file;
  // Upper bound on threads serving RPCs (the sync API blocks one per call).
  int max_threads = 256;
  // Threads kept waiting for calls even when idle, so a burst is served
  // without first starting threads.
  int min_pollers = 4;
  // Largest request accepted (OWASP API4).
  int max_receive_message_bytes = 1 << 20;
  // What gRPC's own buffers (requests being received, replies being sent)
  // may hold at once, across every connection; beyond it gRPC stops
  // reading and cancels streams (RESOURCE_EXHAUSTED) rather than grow.
  // 0 = no limit.
  int64_t memory_quota_bytes = 0;
  // How long in-flight calls may finish on shutdown.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // How often the readiness check runs.
  absl::Duration health_interval = absl::Milliseconds(500);
  // Serve grpc.reflection.v1alpha (development and internal listeners).
  bool reflection = true;
  // Transport (tls.h: ServerCredentialsFor); unset = plaintext, which only
  // in-process tests use (service binaries always set it).
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // If set ("host:port"), a second, plaintext listener serving only
  // grpc.health.v1.Health with the same status: for probes that cannot
  // speak TLS (Kubernetes' grpc probes). Carries no data and no tokens.
  std::string health_listen_address;
  // Its bound port is written here (tests).
  std::string health_port_file;
  // If set ("host:port"), Prometheus metrics over plaintext HTTP at
  // /metrics (common/metrics): the process's registry, which includes the
  // grpc_server_* metrics of every call this server answers.
  std::string metrics_listen_address;
  // Whether the process records metrics at all (metrics::SetEnabled, at
  // Start). Off, a metrics_listen_address is refused.
  bool metrics = true;
  // Its bound port is written here (tests).
  std::string metrics_port_file;
};

// Returns OK when the service can do its work (e.g. Redis answers PING).
// Runs on the health thread, never on an RPC thread.
using ReadinessCheck = std::function<absl::Status()>;

class ServerRunner {
 public:
  // Builds and starts the server and the health thread. Fails with a message
  // naming the address when the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<ServerRunner>> Start(
      const ServerOptions& options, std::vector<grpc::Service*> services,
      ReadinessCheck readiness);

  ~ServerRunner();

  // The bound TCP port.
  int port() const { return port_; }

  // True when the last readiness check passed.
  bool serving() const;

  // Runs the readiness check now (tests use it instead of waiting).
  void CheckNow();

  // Health -> NOT_SERVING, stop accepting calls, let in-flight calls finish
  // within the grace period, then return. Idempotent.
  void Shutdown();

 private:
  ServerRunner() = default;
  void HealthLoop();
  void SetServing(bool serving, const absl::Status& why);

  ServerOptions options_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server>
      health_server_;  // optional plaintext health-only listener
  std::unique_ptr<metrics::MetricsServer> metrics_server_;  // optional
  ReadinessCheck readiness_;
  int port_ = 0;
  absl::Notification stop_;
  std::thread health_thread_;
  mutable absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  bool known_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

// Blocks SIGINT and SIGTERM in the calling thread and every thread started
// after it. Call first thing in main.
void BlockTerminationSignals();

// Process-wide settings for a production binary; call first thing in main,
// before any thread starts. Debian builds Abseil without NDEBUG, which
// leaves absl::Mutex deadlock detection on: every Lock of every Mutex
// (gRPC's core locks several per call) then takes one process-wide lock
// and updates a lock-order graph (perf: GraphCycles and the detector's
// lock in intake's profile under load). Binaries turn it off; tests keep
// it, so lock-order mistakes still surface there.
void ConfigureProcess();

// Sends gRPC's and protobuf's own messages (gpr_log, GOOGLE_LOG) through
// log::Write, so every line a service writes is one JSON object: msg
// "grpc" or "protobuf", the library's text as "detail", and its source
// file and line. The services call it right after log::Init; the command
// line client does not (its people read plain text).
void RouteLibraryLogs();

// Waits for SIGINT or SIGTERM (blocked by BlockTerminationSignals) and
// returns its number.
int WaitForTerminationSignal();

}  // namespace aqueduct::server

#endif  // AQUEDUCT_COMMON_SERVER_SERVER_RUNNER_H_
