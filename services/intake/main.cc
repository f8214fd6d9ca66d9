// The intake service binary: reads flags once and serves until
// SIGTERM/SIGINT. Starts even when Redis or scoring is down: health stays
// NOT_SERVING, the log names what is missing and where, and it keeps
// retrying (the catalog from scoring every second until it loads).

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/auth_flags.h"
#include "common/config/config.h"
#include "common/crypto/data_keys.h"
#include "common/logging/logging.h"
#include "common/redis/async_client.h"
#include "common/redis/redis_client.h"
#include "common/server/channels.h"
#include "common/server/malloc_conf.h"
#include "common/server/server_runner.h"
#include "common/server/tls.h"
#include "common/server/worker_pool.h"
#include "common/texts/person_texts.h"
#include "services/intake/background.h"
#include "services/intake/fhir_export_service.h"
#include "services/intake/intake_service.h"
#include "services/intake/redis_session_store.h"
#include "services/intake/rescore_service.h"

using aqueduct::config::EnvOr;
using aqueduct::config::EnvOrInt;

ABSL_FLAG(bool, migrate, false,
          "Upgrade data written by older builds of intake to the layout this "
          "build reads (RedisSessionStore::MigrateOlderLayouts), then exit "
          "without serving. Idempotent; run once before serving with a new "
          "build.");
ABSL_FLAG(std::string, person_texts,
          EnvOr("AQUEDUCT_PERSON_TEXTS",
                aqueduct::texts::PersonTexts::DefaultPath()),
          "What a person reads (protobuf text format, "
          "data/texts/person_texts.textproto). Env AQUEDUCT_PERSON_TEXTS.");
ABSL_FLAG(std::string, fhir_base,
          EnvOr("AQUEDUCT_FHIR_BASE", "https://aqueduct.example/fhir"),
          "Base of the FHIR export's canonical URLs (Questionnaires) and of "
          "its code systems: your organisation's. Env AQUEDUCT_FHIR_BASE.");
ABSL_FLAG(std::string, fhir_patient_prefix,
          EnvOr("AQUEDUCT_FHIR_PATIENT_PREFIX", "Patient/"),
          "What the FHIR export puts before the person's pseudonym in "
          "subject.reference (the EHR maps it to its Patient). Env "
          "AQUEDUCT_FHIR_PATIENT_PREFIX.");
ABSL_FLAG(std::string, listen,
          EnvOr("AQUEDUCT_INTAKE_LISTEN", "127.0.0.1:7100"),
          "Address to serve on. Env AQUEDUCT_INTAKE_LISTEN.");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound port here once listening.");
ABSL_FLAG(std::string, redis, EnvOr("AQUEDUCT_REDIS", "127.0.0.1:6390"),
          "Redis address, host:port or unix:/path. Env AQUEDUCT_REDIS.");
ABSL_FLAG(std::string, scoring,
          EnvOr("AQUEDUCT_SCORING_ADDR", "127.0.0.1:7101"),
          "Scoring service address. Env AQUEDUCT_SCORING_ADDR.");
ABSL_FLAG(std::string, referral,
          EnvOr("AQUEDUCT_REFERRAL_ADDR", "127.0.0.1:7102"),
          "Referral service address. Env AQUEDUCT_REFERRAL_ADDR.");
ABSL_FLAG(int64_t, redis_timeout_ms,
          EnvOrInt("AQUEDUCT_REDIS_TIMEOUT_MS", 1000),
          "Per-command Redis timeout. Env AQUEDUCT_REDIS_TIMEOUT_MS.");
ABSL_FLAG(
    int64_t, peer_timeout_ms, EnvOrInt("AQUEDUCT_PEER_TIMEOUT_MS", 3000),
    "Per-call timeout to scoring and referral. Env AQUEDUCT_PEER_TIMEOUT_MS.");
ABSL_FLAG(int64_t, max_rpc_ms, EnvOrInt("AQUEDUCT_MAX_RPC_MS", 10000),
          "Server-side cap on any call's duration. Env AQUEDUCT_MAX_RPC_MS.");
ABSL_FLAG(int64_t, session_ttl_hours,
          EnvOrInt("AQUEDUCT_SESSION_TTL_HOURS", 72),
          "Idle hours before an in-progress screening expires. Env "
          "AQUEDUCT_SESSION_TTL_HOURS.");
ABSL_FLAG(
    int32_t, max_open_sessions, EnvOrInt("AQUEDUCT_MAX_OPEN_SESSIONS", 3),
    "Open screenings a user may have at once. Env AQUEDUCT_MAX_OPEN_SESSIONS.");
ABSL_FLAG(int64_t, handoff_retry_ms,
          EnvOrInt("AQUEDUCT_HANDOFF_RETRY_MS", 5000),
          "Delay before the outbox retries a hand-off to referral. Env "
          "AQUEDUCT_HANDOFF_RETRY_MS.");
ABSL_FLAG(
    int64_t, session_ttl_seconds, EnvOrInt("AQUEDUCT_SESSION_TTL_SECONDS", 0),
    "Idle seconds before an in-progress screening expires; overrides "
    "--session_ttl_hours when set (tests). Env AQUEDUCT_SESSION_TTL_SECONDS.");
ABSL_FLAG(int32_t, threads, EnvOrInt("AQUEDUCT_THREADS", 64),
          "Threads for the calls' blocking work (Redis round trips, calls to "
          "scoring and referral), and Redis connections at most; the usual "
          "page needs none. Env AQUEDUCT_THREADS.");
ABSL_FLAG(int32_t, queue, EnvOrInt("AQUEDUCT_QUEUE", 1024),
          "Calls that may wait for one of those threads; beyond it they are "
          "answered UNAVAILABLE at once. Env AQUEDUCT_QUEUE.");
ABSL_FLAG(int32_t, start_limit_per_hour,
          EnvOrInt("AQUEDUCT_START_LIMIT_PER_HOUR", 20),
          "Screenings a person may start per hour (0 = no limit). Env "
          "AQUEDUCT_START_LIMIT_PER_HOUR.");
ABSL_FLAG(int32_t, submit_limit_per_minute,
          EnvOrInt("AQUEDUCT_SUBMIT_LIMIT_PER_MINUTE", 60),
          "Answer submissions a person may make per minute (0 = no limit). Env "
          "AQUEDUCT_SUBMIT_LIMIT_PER_MINUTE.");
ABSL_FLAG(int32_t, session_cache_entries,
          EnvOrInt("AQUEDUCT_SESSION_CACHE_ENTRIES", 4096),
          "In-progress sessions kept in memory as this replica wrote them, so "
          "the next page "
          "skips one Redis read (0 = none; never a source of truth: writes are "
          "version-checked "
          "in Redis). Env AQUEDUCT_SESSION_CACHE_ENTRIES.");

ABSL_FLAG(std::string, service_key, EnvOr("AQUEDUCT_SERVICE_KEY", ""),
          "PEM private key intake signs its own short-lived tokens with (role "
          "service, subject "
          "intake) when it calls scoring and referral; its public key must be "
          "in their --auth_keys "
          "(required). Env AQUEDUCT_SERVICE_KEY.");
ABSL_FLAG(std::string, service_key_id,
          EnvOr("AQUEDUCT_SERVICE_KEY_ID", "intake"),
          "Key id (kid) of --service_key, the file name of its public key in "
          "--auth_keys. Env "
          "AQUEDUCT_SERVICE_KEY_ID.");

AQUEDUCT_JEMALLOC_CONF;

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Aqueduct intake service");
  absl::ParseCommandLine(argc, argv);
  aqueduct::server::ConfigureProcess();
  aqueduct::server::BlockTerminationSignals();
  namespace log = aqueduct::log;
  namespace config = aqueduct::config;
  log::Init("intake");
  aqueduct::server::RouteLibraryLogs();

  auto endpoint = config::ParseEndpoint(absl::GetFlag(FLAGS_redis), "--redis");
  auto scoring_ep =
      config::ParseEndpoint(absl::GetFlag(FLAGS_scoring), "--scoring");
  auto referral_ep =
      config::ParseEndpoint(absl::GetFlag(FLAGS_referral), "--referral");
  auto redis_timeout = config::PositiveMillis(
      absl::GetFlag(FLAGS_redis_timeout_ms), "--redis_timeout_ms");
  auto peer_timeout = config::PositiveMillis(
      absl::GetFlag(FLAGS_peer_timeout_ms), "--peer_timeout_ms");
  auto max_rpc =
      config::PositiveMillis(absl::GetFlag(FLAGS_max_rpc_ms), "--max_rpc_ms");
  auto ttl_hours = absl::GetFlag(FLAGS_session_ttl_hours);
  if (absl::Status bad = config::FirstError(
          {endpoint.status(), scoring_ep.status(), referral_ep.status(),
           redis_timeout.status(), peer_timeout.status(), max_rpc.status(),
           ttl_hours > 0 ? absl::OkStatus()
                         : absl::InvalidArgumentError(
                               "--session_ttl_hours: must be positive")});
      !bad.ok()) {
    log::Error("bad configuration", {{"error", std::string(bad.message())}});
    return 2;
  }

  // TLS for callers; mutual TLS to scoring and referral with intake's own
  // certificate (the same --tls_cert), unless the development plaintext
  // flag says otherwise.
  auto checks = aqueduct::auth::CallerChecksFromFlags();
  if (!checks.ok()) {
    log::Error("bad configuration",
               {{"error", std::string(checks.status().message())}});
    return 2;
  }
  auto peer_credentials = aqueduct::server::ChannelCredentialsFor(checks->tls);
  if (!peer_credentials.ok()) {
    log::Error("bad configuration",
               {{"error", std::string(peer_credentials.status().message())}});
    return 2;
  }
  const aqueduct::auth::VerifierConfig auth_config =
      aqueduct::auth::VerifierConfigFromFlags();
  if (absl::GetFlag(FLAGS_service_key).empty()) {
    log::Error(
        "bad configuration",
        {{"error",
          std::string(
              "--service_key: is required (intake's own signing key)")}});
    return 2;
  }
  aqueduct::auth::Claims own;
  own.issuer = auth_config.issuer;
  own.audience = auth_config.audience;
  own.subject = "intake";
  own.role = "service";
  auto own_token = aqueduct::auth::MintingTokenSource::FromFile(
      absl::GetFlag(FLAGS_service_key), absl::GetFlag(FLAGS_service_key_id),
      own);
  if (!own_token.ok()) {
    log::Error("bad configuration",
               {{"error", absl::StrCat("--service_key: ",
                                       own_token.status().message())}});
    return 2;
  }

  if (absl::GetFlag(FLAGS_threads) < 1 || absl::GetFlag(FLAGS_queue) < 1) {
    log::Error(
        "bad configuration",
        {{"error", std::string("--threads and --queue must be positive")}});
    return 2;
  }
  auto redis_credentials = aqueduct::redis::CredentialsFromEnv();
  if (!redis_credentials.ok()) {
    log::Error("bad configuration",
               {{"error", std::string(redis_credentials.status().message())}});
    return 2;
  }
  // Under Sentinel, the primary and the replicas a write waits for; shared
  // by every Redis client of the process.
  auto redis_failover = aqueduct::redis::FailoverFromEnv(
      *redis_credentials, aqueduct::redis::Options().connect_timeout);
  if (!redis_failover.ok()) {
    log::Error("bad configuration",
               {{"error", std::string(redis_failover.status().message())}});
    return 2;
  }
  aqueduct::redis::Client redis(aqueduct::redis::MakeOptions(
      *endpoint, *redis_timeout, absl::GetFlag(FLAGS_threads),
      *redis_credentials, *redis_failover));
  // PHI at rest: sealed with the data keys (a file or the environment).
  auto data_keys = aqueduct::crypto::DataKeys::FromEnvironment();
  if (!data_keys.ok()) {
    log::Error("bad configuration",
               {{"error", std::string(data_keys.status().message())}});
    return 2;
  }
  // SubmitAnswers writes over one non-blocking pipelined connection (the
  // same address, timeout and credentials): a page write holds no thread.
  aqueduct::redis::AsyncClient redis_async(aqueduct::redis::MakeOptions(
      *endpoint, *redis_timeout, 1, *redis_credentials, *redis_failover));
  aqueduct::intake::RedisSessionStore store(&redis, &*data_keys,
                                            absl::Hours(24), &redis_async);
  if (absl::GetFlag(FLAGS_migrate)) {
    // The one-shot upgrade of data older builds wrote; then exit.
    auto report = store.MigrateOlderLayouts(absl::Now() + absl::Hours(1));
    if (!report.ok()) {
      log::Error("migration failed (run it again: it is idempotent)",
                 {{"error", std::string(report.status().message())}});
      return 1;
    }
    log::Info("migration done", {{"index_members", report->index_members},
                                 {"sessions", report->sessions}});
    return 0;
  }

  const std::string scoring_addr = scoring_ep->ToString();
  const std::string referral_addr = referral_ep->ToString();
  aqueduct::intake::GrpcScoringPeer scoring(
      aqueduct::server::PeerChannel(scoring_addr, *peer_credentials,
                                    aqueduct::server::kBatchMaxReceiveBytes),
      scoring_addr, *peer_timeout, own_token->get());
  aqueduct::intake::GrpcReferralPeer referral(
      aqueduct::server::PeerChannel(referral_addr, *peer_credentials),
      referral_addr, *peer_timeout, own_token->get());

  aqueduct::intake::CatalogHolder catalog;
  aqueduct::intake::IntakeConfig intake_config;
  {
    auto texts = aqueduct::texts::PersonTexts::Load(
        absl::GetFlag(FLAGS_person_texts), aqueduct::intake::IntakeTextKeys());
    if (!texts.ok()) {
      log::Error("bad configuration",
                 {{"error", std::string(texts.status().message())}});
      return 2;
    }
    log::Info("person texts loaded", {{"version", (*texts)->version()}});
    intake_config.person_texts = *std::move(texts);
  }
  intake_config.session_ttl =
      absl::GetFlag(FLAGS_session_ttl_seconds) > 0
          ? absl::Seconds(absl::GetFlag(FLAGS_session_ttl_seconds))
          : absl::Hours(ttl_hours);
  intake_config.max_open_sessions = absl::GetFlag(FLAGS_max_open_sessions);
  intake_config.handoff_retry =
      absl::Milliseconds(absl::GetFlag(FLAGS_handoff_retry_ms));
  intake_config.start_limit_per_hour =
      absl::GetFlag(FLAGS_start_limit_per_hour);
  intake_config.submit_limit_per_minute =
      absl::GetFlag(FLAGS_submit_limit_per_minute);
  if (intake_config.max_open_sessions < 1 ||
      intake_config.handoff_retry <= absl::ZeroDuration()) {
    log::Error(
        "bad configuration",
        {{"error",
          std::string(
              "--max_open_sessions and --handoff_retry_ms must be positive")}});
    return 2;
  }
  if (absl::GetFlag(FLAGS_session_cache_entries) < 0) {
    log::Error(
        "bad configuration",
        {{"error", std::string("--session_cache_entries must be 0 or more")}});
    return 2;
  }
  intake_config.page_token_keys = &*data_keys;
  intake_config.session_cache_entries =
      static_cast<size_t>(absl::GetFlag(FLAGS_session_cache_entries));
  aqueduct::intake::IntakeCore core(&store, &scoring, &referral, &catalog,
                                    &aqueduct::RealClock(), intake_config);
  aqueduct::server::WorkerPool pool(
      absl::GetFlag(FLAGS_threads),
      static_cast<size_t>(absl::GetFlag(FLAGS_queue)));
  aqueduct::intake::IntakeServiceImpl service(&core, checks->authorizer,
                                              *max_rpc, &pool);
  aqueduct::intake::RescoreSource rescore_source(&store, &scoring, &referral,
                                                 &*data_keys);
  aqueduct::intake::RescoreServiceImpl rescore_service(
      &rescore_source, checks->authorizer, *max_rpc, &pool);
  aqueduct::intake::fhir::ExportOptions fhir_options;
  fhir_options.base = absl::GetFlag(FLAGS_fhir_base);
  fhir_options.patient_prefix = absl::GetFlag(FLAGS_fhir_patient_prefix);
  aqueduct::intake::FhirExporter fhir_exporter(
      &store, &catalog, aqueduct::crypto::PageTokens(&*data_keys),
      fhir_options);
  aqueduct::intake::FhirExportServiceImpl fhir_service(
      &fhir_exporter, checks->authorizer, *max_rpc, &pool);

  // The catalog in the background, retried until scoring answers; the
  // outbox worker, woken at once by a page that raises an early risk case.
  aqueduct::intake::CatalogLoader catalog_loader(&catalog, &scoring,
                                                 absl::Seconds(1));
  aqueduct::intake::HandoffWorker outbox(
      &core, &catalog, std::min(absl::Seconds(1), intake_config.handoff_retry));
  core.set_on_early_risk([&outbox] { outbox.Wake(); });

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
      aqueduct::intake::IntakeServiceImpl::kMaxRequestBytes;
  auto runner = aqueduct::server::ServerRunner::Start(
      options, {&service, &rescore_service, &fhir_service},
      [&]() -> absl::Status {
        if (catalog.Get() == nullptr) {
          return absl::UnavailableError(
              absl::StrCat("catalog not loaded yet from ", scoring.Describe()));
        }
        return redis.Ping(absl::Now() + absl::Milliseconds(500));
      });
  if (!runner.ok()) {
    log::Error("cannot start",
               {{"error", std::string(runner.status().message())}});
    return 1;
  }
  log::Info("intake listening", {{"port", (*runner)->port()},
                                 {"redis", endpoint->ToString()},
                                 {"scoring", scoring_addr},
                                 {"referral", referral_addr}});
  int sig = aqueduct::server::WaitForTerminationSignal();
  log::Info("signal received", {{"signal", sig}});
  (*runner)->Shutdown();
  return 0;
}
