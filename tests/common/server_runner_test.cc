// In-process gRPC tests of the server bootstrap: health follows the
// readiness check, the port file is written, shutdown goes NOT_SERVING.

#include "common/server/server_runner.h"

#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/server/health_client.h"
#include "gtest/gtest.h"
#include "protos/bench/v1/echo.grpc.pb.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::server {
namespace {

using ::aqueduct::testing::StatusIs;

absl::Time Soon() { return absl::Now() + absl::Seconds(5); }

TEST(ServerRunnerTest, HealthFollowsReadinessCheck) {
  std::atomic<bool> ready{false};
  aqueduct::testing::TempDir dir;
  ServerOptions options;
  options.port_file = dir.path() + "/port";
  options.health_interval = absl::Milliseconds(50);
  auto runner = ServerRunner::Start(options, {}, [&ready]() -> absl::Status {
    return ready ? absl::OkStatus()
                 : absl::UnavailableError("redis at x: down");
  });
  ASSERT_TRUE(runner.ok()) << runner.status();
  const int port = (*runner)->port();
  ASSERT_GT(port, 0);
  EXPECT_EQ(
      aqueduct::testing::WaitForPortFile(options.port_file, absl::Seconds(1)),
      port);

  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                     grpc::InsecureChannelCredentials());
  auto health = CheckHealth(channel, "", Soon());
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_FALSE(*health) << "NOT_SERVING while the dependency is down";

  ready = true;
  (*runner)->CheckNow();
  EXPECT_TRUE((*runner)->serving());
  EXPECT_TRUE(*CheckHealth(channel, "", Soon()));

  ready = false;
  (*runner)->CheckNow();
  EXPECT_FALSE(*CheckHealth(channel, "", Soon()))
      << "and back when it goes down";

  (*runner)->Shutdown();
  EXPECT_THAT(CheckHealth(channel, "", absl::Now() + absl::Milliseconds(500)),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(ServerRunnerTest, BackgroundLoopPicksUpRecovery) {
  std::atomic<bool> ready{false};
  ServerOptions options;
  options.health_interval = absl::Milliseconds(20);
  auto runner = ServerRunner::Start(options, {}, [&ready]() -> absl::Status {
    return ready ? absl::OkStatus() : absl::UnavailableError("down");
  });
  ASSERT_TRUE(runner.ok());
  ready = true;
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (!(*runner)->serving() && absl::Now() < end)
    absl::SleepFor(absl::Milliseconds(10));
  EXPECT_TRUE((*runner)->serving());
}

// Server reflection (grpc.reflection.v1alpha) lists the registered
// services, so tools can call them without local protos. The request is
// encoded by hand: ServerReflectionRequest { list_services = 7: "" }.
TEST(ServerRunnerTest, ReflectionListsRegisteredServices) {
  ServerOptions options;
  auto runner = ServerRunner::Start(options, {}, nullptr);
  ASSERT_TRUE(runner.ok());
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*runner)->port()),
                          grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(Soon()));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  const char request_bytes[] = {0x3a, 0x00};
  grpc::Slice slice(request_bytes, sizeof(request_bytes));
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_NE(bytes.find("grpc.health.v1.Health"), std::string::npos);
  EXPECT_NE(bytes.find("grpc.reflection.v1alpha.ServerReflection"),
            std::string::npos);
  call->WritesDone(reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

// A handler that takes a while, to have a call in flight during shutdown.
class SlowReferral final : public referral::v1::ReferralService::Service {
 public:
  grpc::Status ListQueue(grpc::ServerContext*,
                         const referral::v1::ListQueueRequest*,
                         referral::v1::ListQueueResponse* response) override {
    started.Notify();
    absl::SleepFor(absl::Milliseconds(500));
    response->set_next_page_token("finished");
    return grpc::Status::OK;
  }
  absl::Notification started;
};

TEST(ServerRunnerTest, ShutdownLetsInFlightCallsFinishAndRefusesNewOnes) {
  SlowReferral slow;
  ServerOptions options;
  options.shutdown_grace = absl::Seconds(5);
  auto runner = ServerRunner::Start(options, {&slow}, nullptr);
  ASSERT_TRUE(runner.ok());
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*runner)->port()),
                          grpc::InsecureChannelCredentials());
  auto stub = referral::v1::ReferralService::NewStub(channel);
  grpc::Status in_flight;
  referral::v1::ListQueueResponse response;
  std::thread caller([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(Soon()));
    in_flight =
        stub->ListQueue(&ctx, referral::v1::ListQueueRequest(), &response);
  });
  slow.started.WaitForNotification();
  (*runner)->Shutdown();  // returns once drained
  caller.join();
  EXPECT_TRUE(in_flight.ok()) << in_flight.error_message();
  EXPECT_EQ(response.next_page_token(), "finished");
  grpc::ClientContext late;
  late.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(500)));
  referral::v1::ListQueueResponse ignored;
  EXPECT_FALSE(
      stub->ListQueue(&late, referral::v1::ListQueueRequest(), &ignored).ok());
}

// Many calls held open at once (watching portals, a burst at shift change)
// are all served: none refused with "Server Threadpool Exhausted", which the
// old 32-thread pool did beyond 32 and gRPC's default of two idle pollers
// did even below it. Each handler waits until all are inside at once.
class GatheringEcho final : public bench::v1::EchoService::Service {
 public:
  explicit GatheringEcho(int expected) : expected_(expected) {}
  grpc::Status Echo(grpc::ServerContext*, const bench::v1::EchoRequest* request,
                    bench::v1::EchoResponse* response) override {
    absl::MutexLock lock(&mu_);
    ++inside_;
    max_inside_ = std::max(max_inside_, inside_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](GatheringEcho* self) {
                               return self->max_inside_ >= self->expected_;
                             },
                             this),
                         absl::Seconds(10));
    --inside_;
    response->set_payload(request->payload());
    return grpc::Status::OK;
  }
  int max_inside() {
    absl::MutexLock lock(&mu_);
    return max_inside_;
  }

 private:
  const int expected_;
  absl::Mutex mu_;
  int inside_ ABSL_GUARDED_BY(mu_) = 0;
  int max_inside_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(ServerRunnerTest, ServesAHundredCallsAtOnce) {
  constexpr int kCalls = 100;
  GatheringEcho echo(kCalls);
  auto runner = ServerRunner::Start(ServerOptions(), {&echo}, nullptr);
  ASSERT_TRUE(runner.ok());
  auto stub = bench::v1::EchoService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*runner)->port()),
                          grpc::InsecureChannelCredentials()));
  std::vector<grpc::Status> statuses(kCalls);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&, i] {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
      bench::v1::EchoRequest req;
      req.set_payload(std::to_string(i));
      bench::v1::EchoResponse resp;
      statuses[i] = stub->Echo(&ctx, req, &resp);
      if (statuses[i].ok() && resp.payload() != req.payload())
        statuses[i] = grpc::Status(grpc::StatusCode::DATA_LOSS, "payload");
    });
  }
  for (auto& t : callers) t.join();
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_TRUE(statuses[i].ok())
        << "call " << i << ": " << statuses[i].error_code() << " "
        << statuses[i].error_message();
  }
  EXPECT_EQ(echo.max_inside(), kCalls)
      << "all calls were inside their handlers at the same time";
  (*runner)->Shutdown();
}

// A plaintext health-only listener (for probes that cannot speak TLS)
// reports the same status and serves nothing else.
TEST(ServerRunnerTest, HealthOnlyListenerMirrorsHealthAndServesNothingElse) {
  aqueduct::testing::TempDir dir;
  std::atomic<bool> ready{false};
  SlowReferral slow;
  ServerOptions options;
  options.health_listen_address = "127.0.0.1:0";
  options.health_port_file = dir.path() + "/health.port";
  auto runner =
      ServerRunner::Start(options, {&slow}, [&ready]() -> absl::Status {
        return ready ? absl::OkStatus()
                     : absl::UnavailableError("redis at test: down");
      });
  ASSERT_TRUE(runner.ok()) << runner.status();
  const int port = aqueduct::testing::WaitForPortFile(options.health_port_file,
                                                      absl::Seconds(5));
  ASSERT_GT(port, 0);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  EXPECT_FALSE(*CheckHealth(channel, "", Soon()));
  ready = true;
  (*runner)->CheckNow();
  EXPECT_TRUE(*CheckHealth(channel, "", Soon()));
  auto stub = referral::v1::ReferralService::NewStub(channel);
  grpc::ClientContext ctx;
  referral::v1::Referral out;
  EXPECT_EQ(stub->GetCase(&ctx, {}, &out).error_code(),
            grpc::StatusCode::UNIMPLEMENTED)
      << "the application is not on the health port";
}

TEST(ServerRunnerTest, BusyPortIsAClearError) {
  ServerOptions first;
  auto a = ServerRunner::Start(first, {}, nullptr);
  ASSERT_TRUE(a.ok());
  ServerOptions second;
  second.listen_address = "127.0.0.1:" + std::to_string((*a)->port());
  auto b = ServerRunner::Start(second, {}, nullptr);
  EXPECT_THAT(b, StatusIs(absl::StatusCode::kUnavailable,
                          ::testing::HasSubstr(second.listen_address)));
}

// The sum of every series of counter `name` in the process's registry.
double CounterSum(const std::string& name) {
  double sum = 0;
  for (const auto& family : metrics::Registry()->Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) sum += m.counter.value;
  }
  return sum;
}

TEST(ServerRunnerTest, NoMetricsRecordsNothingAndRefusesAMetricsPort) {
  ServerOptions off;
  off.metrics = false;
  off.metrics_listen_address = "127.0.0.1:0";
  EXPECT_THAT(ServerRunner::Start(off, {}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("metrics_listen")));
  off.metrics_listen_address.clear();
  for (bool on : {false, true}) {
    ServerOptions options;
    options.metrics = on;
    auto runner = ServerRunner::Start(options, {}, nullptr);
    ASSERT_TRUE(runner.ok()) << runner.status();
    EXPECT_EQ(metrics::Enabled(), on);
    const double before = CounterSum("grpc_server_started_total");
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*runner)->port()),
                            grpc::InsecureChannelCredentials());
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(CheckHealth(channel, "", Soon()).ok());
    const double after = CounterSum("grpc_server_started_total");
    if (on) {
      EXPECT_EQ(after - before, 3) << "each call counted";
    } else {
      EXPECT_EQ(after, before) << "--nometrics: nothing recorded";
    }
  }
  EXPECT_TRUE(metrics::Enabled()) << "left on for the tests after this one";
}

}  // namespace
}  // namespace aqueduct::server
