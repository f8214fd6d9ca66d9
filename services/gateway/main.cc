// The HTTP/JSON gateway binary: browsers and web apps in front, intake and
// referral over gRPC behind (gateway_server.h). Reads flags once and serves
// until SIGTERM/SIGINT. Starts while the services are down: calls answer
// 503 until they are back, and the queue stream reconnects by itself.

#include <memory>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/auth/auth_flags.h"
#include "common/config/config.h"
#include "common/config/data_dir.h"
#include "common/logging/logging.h"
#include "common/metrics/metrics.h"
#include "common/server/channels.h"
#include "common/server/server_runner.h"
#include "common/server/tls.h"
#include "services/gateway/gateway_server.h"

using aqueduct::config::EnvOr;
using aqueduct::config::EnvOrInt;

ABSL_FLAG(std::string, listen,
          EnvOr("AQUEDUCT_GATEWAY_LISTEN", "127.0.0.1:7180"),
          "HTTP address to serve on (IP:port). Env AQUEDUCT_GATEWAY_LISTEN.");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound port here once listening.");
ABSL_FLAG(std::string, intake, EnvOr("AQUEDUCT_INTAKE_ADDR", "127.0.0.1:7100"),
          "Intake's gRPC address. Env AQUEDUCT_INTAKE_ADDR.");
ABSL_FLAG(std::string, referral,
          EnvOr("AQUEDUCT_REFERRAL_ADDR", "127.0.0.1:7102"),
          "Referral's gRPC address. Env AQUEDUCT_REFERRAL_ADDR.");
ABSL_FLAG(std::string, scoring,
          EnvOr("AQUEDUCT_SCORING_ADDR", "127.0.0.1:7101"),
          "Scoring's gRPC address (the rulesets' wording, GET /v1/rulesets). "
          "Env AQUEDUCT_SCORING_ADDR.");
ABSL_FLAG(std::string, cors_origins, EnvOr("AQUEDUCT_CORS_ORIGINS", ""),
          "Comma-separated origins (https://portal.example.org) whose pages "
          "may call the API from a browser; empty: none (the console served "
          "here needs none). Env AQUEDUCT_CORS_ORIGINS.");
ABSL_FLAG(std::string, console_dir, "",
          "The clinician console's files; default <data dir>/console.");
ABSL_FLAG(std::string, openapi, "",
          "The OpenAPI document served at /openapi.json; default <data "
          "dir>/openapi/aqueduct.swagger.json.");
ABSL_FLAG(int64_t, max_rpc_ms, EnvOrInt("AQUEDUCT_MAX_RPC_MS", 10000),
          "Cap on any call's deadline (a Grpc-Timeout header asks for less). "
          "Env AQUEDUCT_MAX_RPC_MS.");
ABSL_FLAG(int64_t, max_body_bytes,
          EnvOrInt("AQUEDUCT_GATEWAY_MAX_BODY_BYTES", 64 << 10),
          "Largest request body accepted (413 beyond). Env "
          "AQUEDUCT_GATEWAY_MAX_BODY_BYTES.");
ABSL_FLAG(double, rate_per_second, 20,
          "Requests per second per client address (429 beyond the burst).");
ABSL_FLAG(double, rate_burst, 60, "Requests a client address may burst.");
ABSL_FLAG(int32_t, max_streams, EnvOrInt("AQUEDUCT_GATEWAY_MAX_STREAMS", 10000),
          "Open queue streams at most (503 beyond). Env "
          "AQUEDUCT_GATEWAY_MAX_STREAMS.");
ABSL_FLAG(int64_t, max_stream_backlog,
          EnvOrInt("AQUEDUCT_GATEWAY_MAX_STREAM_BACKLOG", 1 << 20),
          "Bytes a queue stream may fall behind its portal before the "
          "gateway closes it (the portal resumes with Last-Event-ID). Env "
          "AQUEDUCT_GATEWAY_MAX_STREAM_BACKLOG.");
ABSL_FLAG(std::string, service_key, EnvOr("AQUEDUCT_SERVICE_KEY", ""),
          "The gateway's own signing key (PEM), for its one queue stream "
          "(service identity \"gateway\"). Env AQUEDUCT_SERVICE_KEY.");
ABSL_FLAG(std::string, service_key_id,
          EnvOr("AQUEDUCT_SERVICE_KEY_ID", "gateway"),
          "Key id (kid) of --service_key. Env AQUEDUCT_SERVICE_KEY_ID.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Aqueduct HTTP/JSON gateway");
  absl::ParseCommandLine(argc, argv);
  aqueduct::server::ConfigureProcess();
  aqueduct::server::BlockTerminationSignals();
  namespace log = aqueduct::log;
  namespace gw = aqueduct::gateway;
  log::Init("gateway");
  aqueduct::server::RouteLibraryLogs();
  auto fail = [](absl::string_view what) {
    log::Error("bad configuration", {{"error", std::string(what)}});
    return 2;
  };

  auto checks = aqueduct::auth::CallerChecksFromFlags();
  if (!checks.ok()) return fail(checks.status().message());
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  if (!checks->tls.insecure_plaintext) {
    auto c = aqueduct::server::ChannelCredentialsFor(checks->tls);
    if (!c.ok()) return fail(c.status().message());
    channel_credentials = *c;
  }
  if (absl::GetFlag(FLAGS_service_key).empty())
    return fail("--service_key: is required (the gateway's own signing key)");
  const aqueduct::auth::VerifierConfig auth_config =
      aqueduct::auth::VerifierConfigFromFlags();
  aqueduct::auth::Claims own;
  own.issuer = auth_config.issuer;
  own.audience = auth_config.audience;
  own.subject = aqueduct::auth::kGatewayService;
  own.role = "service";
  auto own_token = aqueduct::auth::MintingTokenSource::FromFile(
      absl::GetFlag(FLAGS_service_key), absl::GetFlag(FLAGS_service_key_id),
      own);
  if (!own_token.ok())
    return fail(absl::StrCat("--service_key: ", own_token.status().message()));

  gw::GatewayConfig config;
  config.listen = absl::GetFlag(FLAGS_listen);
  config.port_file = absl::GetFlag(FLAGS_port_file);
  config.cert_file = checks->tls.cert_file;
  config.key_file = checks->tls.key_file;
  config.insecure_plaintext = checks->tls.insecure_plaintext;
  for (absl::string_view origin : absl::StrSplit(
           absl::GetFlag(FLAGS_cors_origins), ',', absl::SkipWhitespace())) {
    config.cors_origins.emplace_back(absl::StripAsciiWhitespace(origin));
  }
  auto max_rpc = aqueduct::config::PositiveMillis(
      absl::GetFlag(FLAGS_max_rpc_ms), "--max_rpc_ms");
  if (!max_rpc.ok()) return fail(max_rpc.status().message());
  config.max_rpc = *max_rpc;
  if (absl::GetFlag(FLAGS_max_body_bytes) < 1024)
    return fail("--max_body_bytes: must be at least 1024");
  config.max_body_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_body_bytes));
  if (absl::GetFlag(FLAGS_rate_per_second) <= 0 ||
      absl::GetFlag(FLAGS_rate_burst) < 1)
    return fail("--rate_per_second and --rate_burst: must be positive");
  config.rate_per_second = absl::GetFlag(FLAGS_rate_per_second);
  config.rate_burst = absl::GetFlag(FLAGS_rate_burst);
  if (absl::GetFlag(FLAGS_max_streams) < 1)
    return fail("--max_streams: must be positive");
  config.max_streams = absl::GetFlag(FLAGS_max_streams);
  if (absl::GetFlag(FLAGS_max_stream_backlog) < 4096)
    return fail("--max_stream_backlog: must be at least 4096");
  config.max_stream_backlog =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_stream_backlog));
  const std::string data = aqueduct::config::DataDir();
  config.console_dir = absl::GetFlag(FLAGS_console_dir).empty()
                           ? data + "/console"
                           : absl::GetFlag(FLAGS_console_dir);
  config.openapi_file = absl::GetFlag(FLAGS_openapi).empty()
                            ? data + "/openapi/aqueduct.swagger.json"
                            : absl::GetFlag(FLAGS_openapi);

  auto rules = gw::HttpRules::ForServices(
      {gw::IntakeServiceDescriptor(), gw::FhirExportServiceDescriptor(),
       gw::ReferralServiceDescriptor(), gw::ScoringServiceDescriptor()});
  if (!rules.ok()) return fail(rules.status().message());
  gw::Upstreams upstreams;
  auto intake = aqueduct::server::PeerChannel(absl::GetFlag(FLAGS_intake),
                                              channel_credentials);
  auto referral = aqueduct::server::PeerChannel(absl::GetFlag(FLAGS_referral),
                                                channel_credentials);
  auto scoring = aqueduct::server::PeerChannel(absl::GetFlag(FLAGS_scoring),
                                               channel_credentials);
  upstreams.channels[gw::IntakeServiceDescriptor()->full_name()] = intake;
  upstreams.channels[gw::FhirExportServiceDescriptor()->full_name()] = intake;
  upstreams.channels[gw::ReferralServiceDescriptor()->full_name()] = referral;
  upstreams.channels[gw::ScoringServiceDescriptor()->full_name()] = scoring;
  upstreams.referral = referral;
  upstreams.own_token =
      std::shared_ptr<aqueduct::auth::TokenSource>(std::move(*own_token));

  aqueduct::metrics::SetEnabled(aqueduct::server::MetricsFromFlags());
  std::unique_ptr<aqueduct::metrics::MetricsServer> metrics_server;
  const std::string metrics_listen = aqueduct::server::MetricsListenFromFlags();
  if (!metrics_listen.empty()) {
    if (!aqueduct::metrics::Enabled())
      return fail("--metrics_listen: set while metrics are off (--nometrics)");
    auto m = aqueduct::metrics::MetricsServer::Start(
        metrics_listen, aqueduct::server::MetricsPortFileFromFlags());
    if (!m.ok()) return fail(m.status().message());
    metrics_server = *std::move(m);
  }
  auto gateway = gw::Gateway::Start(config, *std::move(rules),
                                    checks->authorizer, std::move(upstreams));
  if (!gateway.ok()) {
    log::Error("cannot start",
               {{"error", std::string(gateway.status().message())}});
    return 1;
  }
  log::Info("gateway listening",
            {{"port", (*gateway)->port()},
             {"tls", !config.insecure_plaintext},
             {"cors_origins", static_cast<int>(config.cors_origins.size())}});
  int sig = aqueduct::server::WaitForTerminationSignal();
  log::Info("signal received", {{"signal", sig}});
  (*gateway)->Shutdown();
  return 0;
}
