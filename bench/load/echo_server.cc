// The benchmark's ceiling: a bare echo service on the same server bootstrap
// as the services (ServerRunner: thread pool, message limits, the per-RPC
// access log), so the ratio to it is what the service's own work costs.
// Plaintext on loopback, like the services in the benchmark.
//
// --callback serves the same method with gRPC's callback API instead of the
// sync API every Aqueduct service uses: the framework's own ceiling, for
// context (on a machine with slow system calls it is far higher, since the
// sync server hands each call between threads).
//
// --redis=<endpoint> makes each call also store its payload in Redis (a SET
// on one of 4,096 keys) before answering: the framework plus one Redis round
// trip, the least a call that persists can cost. The sync server uses the
// services' blocking pooled client (common/redis/redis_client.h); the
// callback server the non-blocking pipelined one intake's SubmitAnswers
// writes with (common/redis/async_client.h).

#include <atomic>
#include <cstdlib>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/load/echo_keys.h"
#include "common/config/config.h"
#include "common/logging/logging.h"
#include "common/redis/async_client.h"
#include "common/redis/redis_client.h"
#include "common/server/malloc_conf.h"
#include "common/server/server_runner.h"
#include "protos/bench/v1/echo.grpc.pb.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "Address to serve on.");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound port here once listening.");
ABSL_FLAG(bool, callback, false,
          "Serve with gRPC's callback API instead of the sync API.");
ABSL_FLAG(std::string, redis, "",
          "If set (host:port or unix:/path), each call also SETs its payload "
          "in Redis.");

namespace {

constexpr absl::Duration kRedisTimeout = absl::Seconds(1);

std::string NextKey() {
  static std::atomic<uint64_t> n{0};
  return aqueduct::bench::EchoKey(n.fetch_add(1, std::memory_order_relaxed));
}

class EchoService final : public aqueduct::bench::v1::EchoService::Service {
 public:
  explicit EchoService(aqueduct::redis::Client* redis) : redis_(redis) {}

 private:
  grpc::Status Echo(grpc::ServerContext*,
                    const aqueduct::bench::v1::EchoRequest* request,
                    aqueduct::bench::v1::EchoResponse* response) override {
    if (redis_ != nullptr) {
      auto reply = redis_->Command({"SET", NextKey(), request->payload()},
                                   absl::Now() + kRedisTimeout);
      if (!reply.ok())
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "redis did not store the payload");
    }
    response->set_payload(request->payload());
    return grpc::Status::OK;
  }

  aqueduct::redis::Client* redis_;
};

// The same echo, answered on the thread gRPC read the request on, or with
// --redis on the thread that reads Redis's reply.
class CallbackEchoService final
    : public aqueduct::bench::v1::EchoService::CallbackService {
 public:
  explicit CallbackEchoService(aqueduct::redis::AsyncClient* redis)
      : redis_(redis) {}

 private:
  grpc::ServerUnaryReactor* Echo(
      grpc::CallbackServerContext* context,
      const aqueduct::bench::v1::EchoRequest* request,
      aqueduct::bench::v1::EchoResponse* response) override {
    response->set_payload(request->payload());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (redis_ == nullptr) {
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    redis_->Command(
        {"SET", NextKey(), request->payload()}, absl::Now() + kRedisTimeout,
        [reactor](absl::StatusOr<aqueduct::redis::Reply> reply) {
          reactor->Finish(
              reply.ok() ? grpc::Status::OK
                         : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                        "redis did not store the payload"));
        });
    return reactor;
  }

  aqueduct::redis::AsyncClient* redis_;
};

}  // namespace

AQUEDUCT_JEMALLOC_CONF;

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  aqueduct::server::ConfigureProcess();
  aqueduct::server::BlockTerminationSignals();
  aqueduct::log::Init("echo");
  const bool callback = absl::GetFlag(FLAGS_callback);
  std::unique_ptr<aqueduct::redis::Client> redis;
  std::unique_ptr<aqueduct::redis::AsyncClient> pipelined;
  if (!absl::GetFlag(FLAGS_redis).empty()) {
    auto endpoint =
        aqueduct::config::ParseEndpoint(absl::GetFlag(FLAGS_redis), "--redis");
    if (!endpoint.ok()) {
      aqueduct::log::Error(
          "bad configuration",
          {{"error", std::string(endpoint.status().message())}});
      return 2;
    }
    if (callback) {
      pipelined = std::make_unique<aqueduct::redis::AsyncClient>(
          aqueduct::redis::MakeOptions(*endpoint, kRedisTimeout, 1, {}));
    } else {
      aqueduct::server::ServerOptions defaults;
      redis = std::make_unique<aqueduct::redis::Client>(
          aqueduct::redis::MakeOptions(*endpoint, kRedisTimeout,
                                       defaults.max_threads, {}));
    }
  }
  EchoService sync_service(redis.get());
  CallbackEchoService callback_service(pipelined.get());
  grpc::Service* service =
      callback ? static_cast<grpc::Service*>(&callback_service) : &sync_service;
  aqueduct::server::ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.port_file = absl::GetFlag(FLAGS_port_file);
  auto runner =
      aqueduct::server::ServerRunner::Start(options, {service}, nullptr);
  if (!runner.ok()) {
    aqueduct::log::Error("cannot start",
                         {{"error", std::string(runner.status().message())}});
    return 1;
  }
  aqueduct::server::WaitForTerminationSignal();
  (*runner)->Shutdown();
  return 0;
}
