// The referral service binary: reads flags once and serves until
// SIGTERM/SIGINT. Starts even when Redis is down: health stays NOT_SERVING
// and names the Redis address until it answers.

#include <algorithm>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/auth/auth_flags.h"
#include "common/config/config.h"
#include "common/crypto/data_keys.h"
#include "common/logging/logging.h"
#include "common/redis/redis_client.h"
#include "common/server/malloc_conf.h"
#include "common/server/server_runner.h"
#include "common/server/tls.h"
#include "common/server/worker_pool.h"
#include "common/texts/person_texts.h"
#include "common/util/names.h"
#include "services/referral/redis_referral_store.h"
#include "services/referral/referral_service.h"
#include "services/referral/sweeper.h"

using aqueduct::config::EnvOr;
using aqueduct::config::EnvOrInt;

ABSL_FLAG(bool, migrate, false,
          "Upgrade data written by older builds of referral to the layout "
          "this build reads (RedisReferralStore::MigrateOlderLayouts), then "
          "exit without serving. Idempotent; run once before serving with a "
          "new build.");
ABSL_FLAG(std::string, person_texts,
          EnvOr("AQUEDUCT_PERSON_TEXTS",
                aqueduct::texts::PersonTexts::DefaultPath()),
          "What a person reads (protobuf text format, "
          "data/texts/person_texts.textproto). Env AQUEDUCT_PERSON_TEXTS.");
ABSL_FLAG(std::string, listen,
          EnvOr("AQUEDUCT_REFERRAL_LISTEN", "127.0.0.1:7102"),
          "Address to serve on. Env AQUEDUCT_REFERRAL_LISTEN.");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound port here once listening.");
ABSL_FLAG(std::string, redis, EnvOr("AQUEDUCT_REDIS", "127.0.0.1:6390"),
          "Redis address, host:port or unix:/path. Env AQUEDUCT_REDIS.");
ABSL_FLAG(int64_t, redis_timeout_ms,
          EnvOrInt("AQUEDUCT_REDIS_TIMEOUT_MS", 1000),
          "Per-command Redis timeout. Env AQUEDUCT_REDIS_TIMEOUT_MS.");
ABSL_FLAG(int64_t, max_rpc_ms, EnvOrInt("AQUEDUCT_MAX_RPC_MS", 10000),
          "Server-side cap on any call's duration. Env AQUEDUCT_MAX_RPC_MS.");
ABSL_FLAG(int32_t, threads, EnvOrInt("AQUEDUCT_THREADS", 64),
          "Threads for the calls' blocking work (Redis round trips), and Redis "
          "connections at most. Env AQUEDUCT_THREADS.");
ABSL_FLAG(int32_t, queue, EnvOrInt("AQUEDUCT_QUEUE", 1024),
          "Calls that may wait for one of those threads; beyond it they are "
          "answered UNAVAILABLE at once. Env AQUEDUCT_QUEUE.");
ABSL_FLAG(int32_t, fanout_threads, EnvOrInt("AQUEDUCT_FANOUT_THREADS", 1),
          "Threads, at a lower priority, that send each queue event the "
          "process's one reader fetched to every WatchQueue stream that sees "
          "it; a waiting portal holds none. Env AQUEDUCT_FANOUT_THREADS.");
ABSL_FLAG(int32_t, watch_threads, EnvOrInt("AQUEDUCT_WATCH_THREADS", 4),
          "Threads for catch-up reads from Redis, for portals resuming from a "
          "cursor older than what the reader keeps. Env "
          "AQUEDUCT_WATCH_THREADS.");
ABSL_FLAG(int64_t, overdue_after_ms,
          EnvOrInt("AQUEDUCT_OVERDUE_AFTER_MS", 15 * 60 * 1000),
          "Urgent cases not claimed within this time are marked overdue. Env "
          "AQUEDUCT_OVERDUE_AFTER_MS.");
ABSL_FLAG(
    int64_t, default_lease_ms,
    EnvOrInt("AQUEDUCT_DEFAULT_LEASE_MS", 10 * 60 * 1000),
    "Claim lease when the request gives none. Env AQUEDUCT_DEFAULT_LEASE_MS.");
ABSL_FLAG(std::string, unlocated_case_states,
          EnvOr("AQUEDUCT_UNLOCATED_CASE_STATES", ""),
          "Cases with no location state (the person did not say) are seen "
          "only by clinicians licensed in one of these comma-separated states "
          "(e.g. your triage team's, \"NY\"); empty: only by clinicians "
          "licensed in all 50 states and DC. Never by every clinician. Env "
          "AQUEDUCT_UNLOCATED_CASE_STATES.");
ABSL_FLAG(int64_t, sweep_interval_ms,
          EnvOrInt("AQUEDUCT_SWEEP_INTERVAL_MS", 1000),
          "How often expired leases and overdue cases are swept. Env "
          "AQUEDUCT_SWEEP_INTERVAL_MS.");
ABSL_FLAG(int64_t, route_count_interval_ms,
          EnvOrInt("AQUEDUCT_ROUTE_COUNT_INTERVAL_MS", 30 * 1000),
          "How often the sweeper counts the queue by route for the metric "
          "aqueduct_referral_queue_cases_by_route (it reads every queued "
          "case, up to 20,000). Env AQUEDUCT_ROUTE_COUNT_INTERVAL_MS.");

AQUEDUCT_JEMALLOC_CONF;

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Aqueduct referral service");
  absl::ParseCommandLine(argc, argv);
  aqueduct::server::ConfigureProcess();
  aqueduct::server::BlockTerminationSignals();
  namespace log = aqueduct::log;
  log::Init("referral");
  aqueduct::server::RouteLibraryLogs();

  auto endpoint =
      aqueduct::config::ParseEndpoint(absl::GetFlag(FLAGS_redis), "--redis");
  auto redis_timeout = aqueduct::config::PositiveMillis(
      absl::GetFlag(FLAGS_redis_timeout_ms), "--redis_timeout_ms");
  auto max_rpc = aqueduct::config::PositiveMillis(
      absl::GetFlag(FLAGS_max_rpc_ms), "--max_rpc_ms");
  if (absl::Status bad = aqueduct::config::FirstError(
          {endpoint.status(), redis_timeout.status(), max_rpc.status()});
      !bad.ok()) {
    log::Error("bad configuration", {{"error", std::string(bad.message())}});
    return 2;
  }

  if (absl::GetFlag(FLAGS_threads) < 1 || absl::GetFlag(FLAGS_queue) < 1 ||
      absl::GetFlag(FLAGS_watch_threads) < 1 ||
      absl::GetFlag(FLAGS_fanout_threads) < 1) {
    log::Error("bad configuration",
               {{"error", std::string("--threads, --watch_threads, "
                                      "--fanout_threads and --queue must be "
                                      "positive")}});
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
  const aqueduct::redis::Options redis_options = aqueduct::redis::MakeOptions(
      *endpoint, *redis_timeout, absl::GetFlag(FLAGS_threads),
      *redis_credentials, *redis_failover);
  aqueduct::redis::Client redis(redis_options);
  // The queue feed blocks on Redis for up to 500 ms a read, and portals
  // resuming from an old cursor read a batch each: their own pool.
  aqueduct::redis::Options watch_options = redis_options;
  watch_options.pool_size =
      absl::GetFlag(FLAGS_watch_threads) + 1;  // + the feed
  aqueduct::redis::Client watch_redis(watch_options);
  // PHI at rest: sealed with the data keys (a file or the environment).
  auto data_keys = aqueduct::crypto::DataKeys::FromEnvironment();
  if (!data_keys.ok()) {
    log::Error("bad configuration",
               {{"error", std::string(data_keys.status().message())}});
    return 2;
  }
  aqueduct::referral::RedisReferralStore store(&redis, &*data_keys,
                                               &watch_redis);
  if (absl::GetFlag(FLAGS_migrate)) {
    // The one-shot upgrade of data older builds wrote; then exit.
    auto report = store.MigrateOlderLayouts(absl::Now() + absl::Hours(1));
    if (!report.ok()) {
      log::Error("migration failed (run it again: it is idempotent)",
                 {{"error", std::string(report.status().message())}});
      return 1;
    }
    log::Info("migration done", {{"audit_trails", report->audit_trails},
                                 {"screening_sets", report->screening_sets}});
    return 0;
  }
  // Who calls, and their role and licensed states, come from their tokens.
  // TLS (mutual for services) unless the development plaintext flag says
  // otherwise; service identities are then bound to their certificates.
  auto checks = aqueduct::auth::CallerChecksFromFlags();
  if (!checks.ok()) {
    log::Error("bad configuration",
               {{"error", std::string(checks.status().message())}});
    return 2;
  }
  aqueduct::referral::ReferralConfig config;
  {
    auto texts = aqueduct::texts::PersonTexts::Load(
        absl::GetFlag(FLAGS_person_texts),
        aqueduct::referral::ReferralTextKeys());
    if (!texts.ok()) {
      log::Error("bad configuration",
                 {{"error", std::string(texts.status().message())}});
      return 2;
    }
    log::Info("person texts loaded", {{"version", (*texts)->version()}});
    config.person_texts = *std::move(texts);
  }
  for (absl::string_view state :
       absl::StrSplit(absl::GetFlag(FLAGS_unlocated_case_states), ',',
                      absl::SkipWhitespace())) {
    state = absl::StripAsciiWhitespace(state);
    if (absl::Status s =
            aqueduct::ValidateStateCode(state, "--unlocated_case_states");
        !s.ok()) {
      log::Error("bad configuration", {{"error", std::string(s.message())}});
      return 2;
    }
    config.unlocated_case_states.emplace_back(state);
  }
  config.overdue_after =
      absl::Milliseconds(absl::GetFlag(FLAGS_overdue_after_ms));
  config.page_token_keys = &*data_keys;
  config.default_lease =
      absl::Milliseconds(absl::GetFlag(FLAGS_default_lease_ms));
  config.route_count_interval =
      absl::Milliseconds(absl::GetFlag(FLAGS_route_count_interval_ms));
  aqueduct::referral::ReferralCore core(&store, &aqueduct::RealClock(), config);
  aqueduct::server::WorkerPool pool(
      absl::GetFlag(FLAGS_threads),
      static_cast<size_t>(absl::GetFlag(FLAGS_queue)));
  // A new event wakes every waiting portal at once: each queues a step on
  // the fan-out pool, whose queue holds one per portal up to this many (a
  // closure each); beyond it a portal is answered UNAVAILABLE and resumes
  // from its cursor. Its threads run at a lower priority, and by default
  // there is one: fanning an event out to thousands of portals takes at
  // most one core, and yields it to the calls clinicians and intake's
  // crisis hand-offs wait on (issue 24 §3). Catch-up reads from Redis block,
  // so they have a pool of their own.
  constexpr size_t kMaxWatchSteps = 20000;
  constexpr int kFanoutNice = 10;
  aqueduct::server::WorkerPool fanout_pool(
      absl::GetFlag(FLAGS_fanout_threads),
      std::max(kMaxWatchSteps, static_cast<size_t>(absl::GetFlag(FLAGS_queue))),
      kFanoutNice);
  aqueduct::server::WorkerPool catchup_pool(
      absl::GetFlag(FLAGS_watch_threads),
      static_cast<size_t>(absl::GetFlag(FLAGS_queue)));
  // One reader of the queue's events for every watching portal.
  aqueduct::referral::QueueFeed feed(&store, &core);
  feed.Start();
  aqueduct::referral::ReferralServiceImpl service(&core, checks->authorizer,
                                                  *max_rpc, &pool, &fanout_pool,
                                                  &catchup_pool, &feed);

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
      aqueduct::referral::ReferralServiceImpl::kMaxRequestBytes;
  auto runner = aqueduct::server::ServerRunner::Start(
      options, {&service},
      [&redis] { return redis.Ping(absl::Now() + absl::Milliseconds(500)); });
  if (!runner.ok()) {
    log::Error("cannot start",
               {{"error", std::string(runner.status().message())}});
    return 1;
  }
  log::Info("referral listening",
            {{"port", (*runner)->port()}, {"redis", endpoint->ToString()}});
  // The sweeper: expired leases back to the queue, overdue urgent cases.
  aqueduct::referral::Sweeper sweeper(
      &core, absl::Milliseconds(std::max<int64_t>(
                 50, absl::GetFlag(FLAGS_sweep_interval_ms))));
  int sig = aqueduct::server::WaitForTerminationSignal();
  log::Info("signal received", {{"signal", sig}});
  (*runner)->Shutdown();
  return 0;
}
