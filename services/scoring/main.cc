// The scoring service binary: reads flags once, loads and validates the
// catalog (a catalog that does not validate stops the service with the
// reason), and serves until SIGTERM/SIGINT.

#include <cstdlib>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/auth/auth_flags.h"
#include "common/config/config.h"
#include "common/config/data_dir.h"
#include "common/logging/logging.h"
#include "common/server/malloc_conf.h"
#include "common/server/server_runner.h"
#include "common/server/tls.h"
#include "services/scoring/scoring_service.h"

using aqueduct::config::EnvOr;
using aqueduct::config::EnvOrInt;

ABSL_FLAG(std::string, listen,
          EnvOr("AQUEDUCT_SCORING_LISTEN", "127.0.0.1:7101"),
          "Address to serve on (host:port; port 0 picks a free one). Env "
          "AQUEDUCT_SCORING_LISTEN.");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound port to this file once listening.");
ABSL_FLAG(
    std::string, catalog,
    EnvOr("AQUEDUCT_CATALOG",
          aqueduct::config::DataDir() + "/catalog/catalog.textproto"),
    "Instrument catalog file (protobuf text format). Env AQUEDUCT_CATALOG.");
ABSL_FLAG(
    std::string, rulesets,
    EnvOr("AQUEDUCT_RULESETS", aqueduct::config::DataDir() + "/rulesets"),
    "Directory of ruleset files (*.textproto); all are loaded, the newest is "
    "the default. Env AQUEDUCT_RULESETS.");

ABSL_FLAG(int32_t, batch_threads, EnvOrInt("AQUEDUCT_BATCH_THREADS", 2),
          "Threads scoring re-scoring messages (up to 5000 screenings each); "
          "calls scoring one screening run inline. Env "
          "AQUEDUCT_BATCH_THREADS.");
ABSL_FLAG(int32_t, batch_queue, EnvOrInt("AQUEDUCT_BATCH_QUEUE", 64),
          "Re-scoring messages that may wait for one of those threads; beyond "
          "it the stream ends UNAVAILABLE. Env AQUEDUCT_BATCH_QUEUE.");

AQUEDUCT_JEMALLOC_CONF;

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Aqueduct scoring service");
  absl::ParseCommandLine(argc, argv);
  aqueduct::server::ConfigureProcess();
  aqueduct::server::BlockTerminationSignals();
  namespace log = aqueduct::log;
  log::Init("scoring");
  aqueduct::server::RouteLibraryLogs();

  // Never run half-loaded: any file that does not validate stops start-up.
  auto loaded = aqueduct::scoring::ScoringEngine::Load(
      absl::GetFlag(FLAGS_catalog), absl::GetFlag(FLAGS_rulesets));
  if (!loaded.ok()) {
    log::Error("clinical data does not load; fix the file and restart",
               {{"error", std::string(loaded.status().message())}});
    return 2;
  }
  std::shared_ptr<const aqueduct::scoring::ScoringEngine> engine =
      std::move(*loaded);
  // TLS (mutual for services) unless the development plaintext flag says
  // otherwise; service identities are then bound to their certificates.
  auto checks = aqueduct::auth::CallerChecksFromFlags();
  if (!checks.ok()) {
    log::Error("bad configuration",
               {{"error", std::string(checks.status().message())}});
    return 2;
  }
  if (absl::GetFlag(FLAGS_batch_threads) < 1 ||
      absl::GetFlag(FLAGS_batch_queue) < 1) {
    log::Error("bad configuration",
               {{"error", std::string("--batch_threads and --batch_queue must "
                                      "be positive")}});
    return 2;
  }
  aqueduct::server::WorkerPool batch_pool(
      absl::GetFlag(FLAGS_batch_threads),
      static_cast<size_t>(absl::GetFlag(FLAGS_batch_queue)));
  aqueduct::scoring::ScoringServiceImpl service(engine, checks->authorizer,
                                                &batch_pool);

  aqueduct::server::ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.port_file = absl::GetFlag(FLAGS_port_file);
  options.credentials = checks->credentials;
  options.health_listen_address = aqueduct::server::HealthListenFromFlags();
  options.metrics_listen_address = aqueduct::server::MetricsListenFromFlags();
  options.metrics = aqueduct::server::MetricsFromFlags();
  options.metrics_port_file = aqueduct::server::MetricsPortFileFromFlags();
  options.memory_quota_bytes = aqueduct::server::MemoryQuotaFromFlags();
  options.max_receive_message_bytes =
      aqueduct::scoring::ScoringServiceImpl::kMaxRequestBytes;
  auto runner =
      aqueduct::server::ServerRunner::Start(options, {&service}, nullptr);
  if (!runner.ok()) {
    log::Error("cannot start",
               {{"error", std::string(runner.status().message())}});
    return 1;
  }
  log::Info(
      "scoring listening",
      {{"port", (*runner)->port()},
       {"catalog_version", engine->catalog().catalog().version()},
       {"default_ruleset", engine->newest().version()},
       {"rulesets", static_cast<int>(engine->Rulesets().rulesets_size())}});
  int sig = aqueduct::server::WaitForTerminationSignal();
  log::Info("signal received", {{"signal", sig}});
  (*runner)->Shutdown();
  return 0;
}
