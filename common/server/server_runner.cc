#include "common/server/server_runner.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/server_interceptor.h>
#include <signal.h>

#include <array>
#include <atomic>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging/logging.h"
#include "common/server/callback.h"
#include "common/server/trace.h"

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

// "INVALID_ARGUMENT" for grpc::StatusCode::INVALID_ARGUMENT: gRPC's and
// Abseil's codes are the same numbers with the same names.
std::string StatusCodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// The grpc_server_* metrics of one method (the names and labels of
// go-grpc-prometheus, which Prometheus users' dashboards expect). Label
// values are the method's own name or a placeholder for a path this binary
// does not define (LoggableMethod), and the status code's name.
class MethodMetrics {
 public:
  // The metrics of `path` (an RPC of `type`), made on first use and kept
  // for the process's lifetime.
  static MethodMetrics& For(const std::string& loggable_method,
                            grpc::experimental::ServerRpcInfo::Type type) {
    static absl::Mutex mu;
    static auto* all = new std::map<std::pair<std::string, int>,
                                    std::unique_ptr<MethodMetrics>>();
    const std::pair<std::string, int> key(loggable_method,
                                          static_cast<int>(type));
    {
      // Every call after a method's first only reads: shared.
      absl::ReaderMutexLock lock(&mu);
      if (auto it = all->find(key); it != all->end()) return *it->second;
    }
    absl::MutexLock lock(&mu);
    auto& slot = (*all)[key];
    if (slot == nullptr)
      slot.reset(new MethodMetrics(loggable_method, TypeName(type)));
    return *slot;
  }

  void Started() { started_.Increment(); }
  void Handled(grpc::StatusCode code, double seconds) {
    const int index = static_cast<int>(code);
    if (index >= 0 && index < kCodes) {
      prometheus::Counter* counter = handled_[index].load();
      if (counter == nullptr) {
        // Family::Add returns the same counter for the same labels, so two
        // threads racing here store the same pointer.
        counter =
            &Handled().Add({{"grpc_type", type_},
                            {"grpc_service", service_},
                            {"grpc_method", method_},
                            {"grpc_code", std::string(StatusCodeName(code))}});
        handled_[index].store(counter);
      }
      counter->Increment();
    }
    seconds_.Observe(seconds);
  }

 private:
  static constexpr int kCodes = 17;

  MethodMetrics(const std::string& loggable_method, const char* type)
      : type_(type),
        service_(ServiceOf(loggable_method)),
        method_(MethodOf(loggable_method)),
        started_(Started(type_, service_, method_)),
        seconds_(Seconds(type_, service_, method_)) {
    for (auto& h : handled_) h.store(nullptr);
  }

  static const char* TypeName(grpc::experimental::ServerRpcInfo::Type type) {
    using Type = grpc::experimental::ServerRpcInfo::Type;
    switch (type) {
      case Type::UNARY:
        return "unary";
      case Type::CLIENT_STREAMING:
        return "client_stream";
      case Type::SERVER_STREAMING:
        return "server_stream";
      case Type::BIDI_STREAMING:
        return "bidi_stream";
    }
    return "unknown";
  }
  // "/pkg.Service/Method" -> "pkg.Service" and "Method"; the placeholder
  // for an unknown path -> "unknown" for both.
  static std::string ServiceOf(const std::string& m) {
    const size_t slash = m.rfind('/');
    if (m.empty() || m[0] != '/' || slash == 0 || slash == std::string::npos)
      return "unknown";
    return m.substr(1, slash - 1);
  }
  static std::string MethodOf(const std::string& m) {
    const size_t slash = m.rfind('/');
    if (m.empty() || m[0] != '/' || slash == 0 || slash == std::string::npos)
      return "unknown";
    return m.substr(slash + 1);
  }
  static prometheus::Family<prometheus::Counter>& Handled() {
    static auto& family = metrics::CounterFamily(
        "grpc_server_handled_total",
        "RPCs completed on the server, by status code name.");
    return family;
  }
  static prometheus::Counter& Started(const std::string& type,
                                      const std::string& service,
                                      const std::string& method) {
    static auto& family = metrics::CounterFamily("grpc_server_started_total",
                                                 "RPCs started on the server.");
    return family.Add({{"grpc_type", type},
                       {"grpc_service", service},
                       {"grpc_method", method}});
  }
  static prometheus::Histogram& Seconds(const std::string& type,
                                        const std::string& service,
                                        const std::string& method) {
    static auto& family = metrics::HistogramFamily(
        "grpc_server_handling_seconds",
        "Time from the call's start to its status being sent, in seconds.");
    return family.Add({{"grpc_type", type},
                       {"grpc_service", service},
                       {"grpc_method", method}},
                      metrics::LatencyBuckets());
  }

  const std::string type_, service_, method_;
  prometheus::Counter& started_;
  prometheus::Histogram& seconds_;
  std::array<std::atomic<prometheus::Counter*>, kCodes> handled_;
};

// One line per finished RPC: method, code, latency; and its metrics. The status
// message is not logged: it may name a field, and values must never reach a
// log.
class AccessLogInterceptor : public grpc::experimental::Interceptor {
 public:
  // gRPC creates the interceptor on one thread and may run Intercept on
  // another, ordered by its own (uninstrumented) hand-off: the annotations
  // state that order for the TSan build.
  explicit AccessLogInterceptor(grpc::experimental::ServerRpcInfo* info)
      : context_(info->server_context()),
        method_(LoggableMethod(info->method())),
        metrics_(metrics::Enabled() ? &MethodMetrics::For(method_, info->type())
                                    : nullptr),
        start_(absl::Now()) {
    if (metrics_ != nullptr) metrics_->Started();
    HappensBefore(this);
  }

  ~AccessLogInterceptor() override {
    if (!trace_id_.empty()) UnbindTrace(context_, trace_id_);
  }

  void Intercept(InterceptorBatchMethods* methods) override {
    HappensAfter(this);
    if (GrpcBatchAt(methods,
                    InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      // The call's trace, for the handler (TraceIdOf) and this line. Read
      // on the thread that runs the handler next, as the handler reads the
      // same metadata for its token.
      trace_id_ = TraceIdFromMetadata(*context_);
      BindTrace(context_, trace_id_);
    }
    if (GrpcBatchAt(methods, InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::StatusCode code = GrpcBatchSendCode(methods);
      const absl::Duration latency = absl::Now() - start_;
      if (metrics_ != nullptr)
        metrics_->Handled(code, absl::ToDoubleSeconds(latency));
      // Health probes arrive every few hundred ms; logging them is noise.
      if (method_.rfind("/grpc.health.v1.", 0) != 0) {
        log::TraceScope trace(trace_id_);
        log::Info("rpc", {{"method", method_},
                          {"code", StatusCodeName(code)},
                          {"latency_ms", absl::ToDoubleMilliseconds(latency)}});
      }
    }
    GrpcBatchProceed(methods);
  }

 private:
  const grpc::ServerContextBase* context_;
  std::string method_;
  MethodMetrics* metrics_;  // null when metrics are off
  absl::Time start_;
  std::string trace_id_;  // set once the call's metadata is in
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
  if (!options.metrics && !options.metrics_listen_address.empty()) {
    return absl::InvalidArgumentError(
        "metrics_listen: set while metrics are off (--nometrics); drop one");
  }
  metrics::SetEnabled(options.metrics);
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
  if (!options.metrics_listen_address.empty()) {
    auto metrics_server = metrics::MetricsServer::Start(
        options.metrics_listen_address, options.metrics_port_file);
    if (!metrics_server.ok()) return metrics_server.status();
    runner->metrics_server_ = std::move(*metrics_server);
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

namespace {

void GrpcLogToJson(gpr_log_func_args* args) {
  const log::Severity severity =
      args->severity == GPR_LOG_SEVERITY_ERROR  ? log::Severity::kError
      : args->severity == GPR_LOG_SEVERITY_INFO ? log::Severity::kInfo
                                                : log::Severity::kDebug;
  log::Write(severity, "grpc",
             {{"detail", args->message != nullptr ? args->message : ""},
              {"file", args->file != nullptr ? args->file : ""},
              {"line", args->line}});
}

void ProtobufLogToJson(google::protobuf::LogLevel level, const char* filename,
                       int line, const std::string& message) {
  const log::Severity severity =
      level >= google::protobuf::LOGLEVEL_ERROR     ? log::Severity::kError
      : level == google::protobuf::LOGLEVEL_WARNING ? log::Severity::kWarning
                                                    : log::Severity::kInfo;
  log::Write(severity, "protobuf",
             {{"detail", message},
              {"file", filename != nullptr ? filename : ""},
              {"line", line}});
}

}  // namespace

void RouteLibraryLogs() {
  gpr_set_log_function(&GrpcLogToJson);
  google::protobuf::SetLogHandler(&ProtobufLogToJson);
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
