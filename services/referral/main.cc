// The referral service binary: reads flags once and serves until
// SIGTERM/SIGINT. Starts even when Redis is down: health stays NOT_SERVING
// and names the Redis address until it answers.

#include <memory>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/clock.h"
#include "common/config/config.h"
#include "common/logging/logging.h"
#include "common/redis/redis_client.h"
#include "common/server/server_runner.h"
#include "services/referral/redis_referral_store.h"
#include "services/referral/referral_service.h"

using aqueduct::config::EnvOr;
using aqueduct::config::EnvOrInt;

ABSL_FLAG(std::string, listen, EnvOr("AQUEDUCT_REFERRAL_LISTEN", "127.0.0.1:7102"),
          "Address to serve on. Env AQUEDUCT_REFERRAL_LISTEN.");
ABSL_FLAG(std::string, port_file, "", "Write the bound port here once listening.");
ABSL_FLAG(std::string, redis, EnvOr("AQUEDUCT_REDIS", "127.0.0.1:6390"),
          "Redis address, host:port or unix:/path. Env AQUEDUCT_REDIS.");
ABSL_FLAG(int64_t, redis_timeout_ms, EnvOrInt("AQUEDUCT_REDIS_TIMEOUT_MS", 1000),
          "Per-command Redis timeout. Env AQUEDUCT_REDIS_TIMEOUT_MS.");
ABSL_FLAG(int64_t, max_rpc_ms, EnvOrInt("AQUEDUCT_MAX_RPC_MS", 10000),
          "Server-side cap on any call's duration. Env AQUEDUCT_MAX_RPC_MS.");
ABSL_FLAG(int32_t, threads, 32, "Maximum threads serving calls.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Aqueduct referral service");
  absl::ParseCommandLine(argc, argv);
  aqueduct::server::BlockTerminationSignals();
  namespace log = aqueduct::log;
  log::Init("referral");

  auto endpoint = aqueduct::config::ParseEndpoint(absl::GetFlag(FLAGS_redis), "--redis");
  auto redis_timeout = aqueduct::config::PositiveMillis(
      absl::GetFlag(FLAGS_redis_timeout_ms), "--redis_timeout_ms");
  auto max_rpc = aqueduct::config::PositiveMillis(absl::GetFlag(FLAGS_max_rpc_ms), "--max_rpc_ms");
  for (const absl::Status& s : {endpoint.status(), redis_timeout.status(), max_rpc.status()}) {
    if (!s.ok()) {
      log::Error("bad configuration", {{"error", std::string(s.message())}});
      return 2;
    }
  }

  aqueduct::redis::Options redis_options;
  redis_options.endpoint = *endpoint;
  redis_options.command_timeout = *redis_timeout;
  redis_options.pool_size = absl::GetFlag(FLAGS_threads);
  redis_options.password = EnvOr("AQUEDUCT_REDIS_PASSWORD", "");
  aqueduct::redis::Client redis(redis_options);
  aqueduct::referral::RedisReferralStore store(&redis);
  aqueduct::referral::ReferralCore core(&store, &aqueduct::RealClock());
  aqueduct::referral::ReferralServiceImpl service(&core, *max_rpc);

  aqueduct::server::ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.port_file = absl::GetFlag(FLAGS_port_file);
  options.max_threads = absl::GetFlag(FLAGS_threads);
  auto runner = aqueduct::server::ServerRunner::Start(
      options, {&service},
      [&redis] { return redis.Ping(absl::Now() + absl::Milliseconds(500)); });
  if (!runner.ok()) {
    log::Error("cannot start", {{"error", std::string(runner.status().message())}});
    return 1;
  }
  log::Info("referral listening", {{"port", (*runner)->port()},
                                   {"redis", endpoint->ToString()}});
  int sig = aqueduct::server::WaitForTerminationSignal();
  log::Info("signal received", {{"signal", sig}});
  (*runner)->Shutdown();
  return 0;
}
