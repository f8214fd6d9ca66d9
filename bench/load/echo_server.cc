// The benchmark's ceiling: a bare echo service on the same server bootstrap
// as the services (ServerRunner: thread pool, message limits, the per-RPC
// access log), so the ratio to it is what the service's own work costs.
// Plaintext on loopback, like the services in the benchmark.
//
// --callback serves the same method with gRPC's callback API instead of the
// sync API every Aqueduct service uses: the framework's own ceiling, for
// context (on a machine with slow system calls it is far higher, since the
// sync server hands each call between threads).

#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/logging/logging.h"
#include "common/server/server_runner.h"
#include "protos/bench/v1/echo.grpc.pb.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "Address to serve on.");
ABSL_FLAG(std::string, port_file, "", "Write the bound port here once listening.");
ABSL_FLAG(bool, callback, false, "Serve with gRPC's callback API instead of the sync API.");

namespace {

class EchoService final : public aqueduct::bench::v1::EchoService::Service {
  grpc::Status Echo(grpc::ServerContext*, const aqueduct::bench::v1::EchoRequest* request,
                    aqueduct::bench::v1::EchoResponse* response) override {
    response->set_payload(request->payload());
    return grpc::Status::OK;
  }
};

// The same echo, answered on the thread gRPC read the request on.
class CallbackEchoService final : public aqueduct::bench::v1::EchoService::CallbackService {
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const aqueduct::bench::v1::EchoRequest* request,
                                 aqueduct::bench::v1::EchoResponse* response) override {
    response->set_payload(request->payload());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  aqueduct::server::ConfigureProcess();
  aqueduct::server::BlockTerminationSignals();
  aqueduct::log::Init("echo");
  EchoService sync_service;
  CallbackEchoService callback_service;
  grpc::Service* service = absl::GetFlag(FLAGS_callback) ? static_cast<grpc::Service*>(&callback_service)
                                                         : &sync_service;
  aqueduct::server::ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.port_file = absl::GetFlag(FLAGS_port_file);
  auto runner = aqueduct::server::ServerRunner::Start(options, {service}, nullptr);
  if (!runner.ok()) {
    aqueduct::log::Error("cannot start", {{"error", std::string(runner.status().message())}});
    return 1;
  }
  aqueduct::server::WaitForTerminationSignal();
  (*runner)->Shutdown();
  return 0;
}
