// In-process gRPC tests of the server bootstrap: health follows the
// readiness check, the port file is written, shutdown goes NOT_SERVING.

#include "common/server/server_runner.h"

#include <atomic>

#include "absl/time/clock.h"
#include "common/server/health_client.h"
#include "gtest/gtest.h"
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
    return ready ? absl::OkStatus() : absl::UnavailableError("redis at x: down");
  });
  ASSERT_TRUE(runner.ok()) << runner.status();
  const int port = (*runner)->port();
  ASSERT_GT(port, 0);
  EXPECT_EQ(aqueduct::testing::WaitForPortFile(options.port_file, absl::Seconds(1)), port);

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
  EXPECT_FALSE(*CheckHealth(channel, "", Soon())) << "and back when it goes down";

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
  while (!(*runner)->serving() && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_TRUE((*runner)->serving());
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

}  // namespace
}  // namespace aqueduct::server
