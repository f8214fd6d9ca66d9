#include "common/server/server_runner.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/server_interceptor.h>
#include <signal.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging/logging.h"
#include "common/server/callback.h"

namespace aqueduct::server {
namespace {

// The method's name as logged: a method this binary defines (its services'
// protos, or gRPC's health and reflection), else a placeholder. A caller
// chooses the path it sends, so an unknown one is text from outside and
// never reaches a log.
std::string LoggableMethod(const char* path) {
  if (path == nullptr) return "(none)";
  const absl::string_view p(path);
  if (absl::StartsWith(p, "/grpc.health.v1.Health/") ||
      absl::StartsWith(p, "/grpc.reflection.")) {
    return std::string(p);
  }
  // "/pkg.Service/Method" is the descriptor "pkg.Service.Method".
  const size_t slash = p.rfind('/');
  if (p.size() > 1 && p[0] == '/' && slash != 0 &&
      slash != absl::string_view::npos) {
    const std::string full =
        absl::StrCat(p.substr(1, slash - 1), ".", p.substr(slash + 1));
    if (google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
            full) != nullptr) {
      return std::string(p);
    }
  }
  return "(not a method of this service)";
}

// gRPC's batch object is filled on one of gRPC's threads and read on the
// one that runs the interceptor, ordered by gRPC's completion queue, which
// ThreadSanitizer cannot see (Debian's gRPC is not instrumented). Every
// access to it goes through these three functions, so tests/tsan.supp can
// name exactly them and nothing else of the interceptor's.
using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::InterceptorBatchMethods;
[[gnu::noinline]] bool GrpcBatchAt(InterceptorBatchMethods* methods,
                                   InterceptionHookPoints point) {
  return methods->QueryInterceptionHookPoint(point);
}
[[gnu::noinline]] grpc::StatusCode GrpcBatchSendCode(
    InterceptorBatchMethods* methods) {
  return methods->GetSendStatus().error_code();
}
[[gnu::noinline]] void GrpcBatchProceed(InterceptorBatchMethods* methods) {
  methods->Proceed();
}

// One line per finished RPC: method, code, latency. The status message is
// not logged: it may name a field, and values must never reach a log.
class AccessLogInterceptor : public grpc::experimental::Interceptor {
 public:
  // gRPC creates the interceptor on one thread and may run Intercept on
  // another, ordered by its own (uninstrumented) hand-off: the annotations
  // state that order for the TSan build.
  explicit AccessLogInterceptor(grpc::experimental::ServerRpcInfo* info)
      : method_(LoggableMethod(info->method())), start_(absl::Now()) {
    HappensBefore(this);
  }

  void Intercept(InterceptorBatchMethods* methods) override {
    HappensAfter(this);
    if (GrpcBatchAt(methods, InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::StatusCode code = GrpcBatchSendCode(methods);
      // Health probes arrive every few hundred ms; logging them is noise.
      if (method_.rfind("/grpc.health.v1.", 0) != 0) {
        log::Info("rpc", {{"method", method_},
                          {"code", static_cast<int>(code)},
                          {"latency_ms",
                           absl::ToDoubleMilliseconds(absl::Now() - start_)}});
      }
    }
    GrpcBatchProceed(methods);
  }

 private:
  std::string method_;
  absl::Time start_;
};

class AccessLogFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new AccessLogInterceptor(info);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<ServerRunner>> ServerRunner::Start(
    const ServerOptions& options, std::vector<grpc::Service*> services,
    ReadinessCheck readiness) {
  std::unique_ptr<ServerRunner> runner(new ServerRunner());
  runner->options_ = options;
  runner->readiness_ = std::move(readiness);

  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection)
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address,
                           options.credentials != nullptr
                               ? options.credentials
                               : grpc::InsecureServerCredentials(),
                           &runner->port_);
  for (grpc::Service* s : services) builder.RegisterService(s);
  grpc::ResourceQuota quota("aqueduct");
  quota.SetMaxThreads(options.max_threads);
  if (options.memory_quota_bytes > 0)
    quota.Resize(static_cast<size_t>(options.memory_quota_bytes));
  builder.SetResourceQuota(quota);
  // The sync server's threads wait for calls as "pollers". gRPC's defaults
  // (1 to 2 pollers) make every thread above two exit after its call and a
  // new one start for the next: under load that is a thread created and
  // destroyed per call (stack mmap/munmap, TLB shootdowns), and calls
  // refused with "Server Threadpool Exhausted" while exiting threads still
  // hold the quota. Threads stay instead, up to the quota.
  builder.SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, options.min_pollers);
  builder.SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, options.max_threads);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // gRPC sets SO_REUSEPORT by default, which lets a second server bind a
  // busy port and silently split its traffic; a busy port must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Mobile clients behind NATs send keepalive pings; accept them every 20 s
  // without data instead of the 5-minute default that would GOAWAY them.
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      20 * 1000 /*20 s*/);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(std::make_unique<AccessLogFactory>());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));

  runner->server_ = builder.BuildAndStart();
  if (runner->server_ == nullptr || runner->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address,
                     " (address in use or not local?)"));
  }
  if (!options.health_listen_address.empty()) {
    grpc::ServerBuilder health_builder;
    int health_port = 0;
    health_builder.AddListeningPort(options.health_listen_address,
                                    grpc::InsecureServerCredentials(),
                                    &health_port);
    health_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    runner->health_server_ = health_builder.BuildAndStart();
    if (runner->health_server_ == nullptr || health_port == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options.health_listen_address,
                       " for health checks (address in use or not local?)"));
    }
    runner->health_server_->GetHealthCheckService()->SetServingStatus(false);
    if (!options.health_port_file.empty()) {
      std::ofstream out(options.health_port_file + ".tmp");
      out << health_port << "\n";
      out.close();
      std::rename((options.health_port_file + ".tmp").c_str(),
                  options.health_port_file.c_str());
    }
  }
  // Health starts NOT_SERVING until the first readiness check passes.
  runner->server_->GetHealthCheckService()->SetServingStatus(false);
  if (!options.port_file.empty()) {
    std::ofstream out(options.port_file + ".tmp");
    out << runner->port_ << "\n";
    out.close();
    std::rename((options.port_file + ".tmp").c_str(),
                options.port_file.c_str());
  }
  runner->CheckNow();
  runner->health_thread_ = std::thread([r = runner.get()] { r->HealthLoop(); });
  return runner;
}

ServerRunner::~ServerRunner() { Shutdown(); }

bool ServerRunner::serving() const {
  absl::MutexLock lock(&mu_);
  return serving_;
}

void ServerRunner::SetServing(bool serving, const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  if (known_ && serving == serving_) return;
  known_ = true;
  serving_ = serving;
  server_->GetHealthCheckService()->SetServingStatus(serving);
  if (health_server_ != nullptr)
    health_server_->GetHealthCheckService()->SetServingStatus(serving);
  if (serving) {
    log::Info("health: SERVING");
  } else {
    log::Warn("health: NOT_SERVING", {{"cause", std::string(why.message())}});
  }
}

void ServerRunner::CheckNow() {
  absl::Status s = readiness_ ? readiness_() : absl::OkStatus();
  SetServing(s.ok(), s);
}

void ServerRunner::HealthLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.health_interval)) {
    CheckNow();
  }
}

void ServerRunner::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    if (server_ == nullptr) return;  // never started
    // Tell load balancers first, so new calls go elsewhere while we drain.
    server_->GetHealthCheckService()->Shutdown();
    if (health_server_ != nullptr)
      health_server_->GetHealthCheckService()->Shutdown();
  }
  stop_.Notify();
  if (health_thread_.joinable()) health_thread_.join();
  log::Info("shutting down: draining in-flight calls",
            {{"grace_ms", absl::ToInt64Milliseconds(options_.shutdown_grace)}});
  server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.shutdown_grace));
  server_->Wait();
  if (health_server_ != nullptr) {
    health_server_->Shutdown(absl::ToChronoTime(absl::Now()));
    health_server_->Wait();
  }
  log::Info("stopped");
}

void ConfigureProcess() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace aqueduct::server
