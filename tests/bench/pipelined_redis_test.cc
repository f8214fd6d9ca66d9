// The benchmark's pipelined Redis connection (bench/load/pipelined_redis.h)
// against a real redis-server: replies reach the command that asked, from
// many threads at once; errors, nil and binary values come through; a
// Redis that goes away fails every command at once instead of hanging.

#include "bench/load/pipelined_redis.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/redis_fixture.h"

namespace aqueduct::bench {
namespace {

using ::testing::HasSubstr;

config::Endpoint EndpointOf(const testing::RedisServer& server) {
  config::Endpoint e;
  e.is_unix = true;
  e.path = server.socket();
  return e;
}

// The reply of one command, waited for.
struct Result {
  absl::Notification done;
  bool ok = false;
  std::string reply;
};
void Ask(PipelinedRedis& redis, const std::vector<std::string>& argv, Result* r) {
  redis.Send(argv, [r](bool ok, std::string reply) {
    r->ok = ok;
    r->reply = std::move(reply);
    r->done.Notify();
  });
}

class PipelinedRedisTest : public testing::RedisTest {};

TEST_F(PipelinedRedisTest, EachReplyReachesTheCommandThatAskedFromManyThreads) {
  auto client = PipelinedRedis::Connect(EndpointOf(redis()));
  ASSERT_TRUE(client.ok()) << client.status();
  constexpr int kThreads = 4, kPerThread = 500;
  absl::BlockingCounter left(kThreads * kPerThread * 2);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string key = absl::StrCat("k", t, ":", i), value = absl::StrCat("v", t, ":", i, "\r\n$3");
        (*client)->Send({"SET", key, value}, [&](bool ok, std::string reply) {
          if (!ok || reply != "OK") wrong.fetch_add(1);
          left.DecrementCount();
        });
        (*client)->Send({"GET", key}, [&, value](bool ok, std::string reply) {
          if (!ok || reply != value) wrong.fetch_add(1);
          left.DecrementCount();
        });
      }
    });
  }
  for (auto& th : threads) th.join();
  left.Wait();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(PipelinedRedisTest, ErrorsIntegersAndNilArePassedOn) {
  auto client = PipelinedRedis::Connect(EndpointOf(redis()));
  ASSERT_TRUE(client.ok()) << client.status();
  Result set, incr_bad, incr, missing;
  Ask(**client, {"SET", "text", "not a number"}, &set);
  Ask(**client, {"INCR", "text"}, &incr_bad);
  Ask(**client, {"INCR", "counter"}, &incr);
  Ask(**client, {"GET", "no such key"}, &missing);
  for (Result* r : {&set, &incr_bad, &incr, &missing}) {
    ASSERT_TRUE(r->done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  }
  EXPECT_TRUE(set.ok);
  EXPECT_FALSE(incr_bad.ok);
  EXPECT_THAT(incr_bad.reply, HasSubstr("not an integer"));
  EXPECT_TRUE(incr.ok);
  EXPECT_EQ(incr.reply, "1");
  EXPECT_TRUE(missing.ok);
  EXPECT_EQ(missing.reply, "");
}

TEST(PipelinedRedisFailureTest, ARedisThatGoesAwayFailsEveryCommandAtOnce) {
  testing::TempDir dir;
  auto server = testing::RedisServer::Start(dir.path());
  ASSERT_TRUE(server.ok()) << server.status();
  auto redis = PipelinedRedis::Connect(EndpointOf(**server));
  ASSERT_TRUE(redis.ok()) << redis.status();
  Result before;
  Ask(**redis, {"SET", "a", "1"}, &before);
  ASSERT_TRUE(before.done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_TRUE(before.ok);

  (*server)->Pause();  // alive, not answering: the command waits
  Result pending;
  Ask(**redis, {"SET", "b", "2"}, &pending);
  EXPECT_FALSE(pending.done.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  (*server)->Resume();
  ASSERT_TRUE((*server)->Stop().ok());
  ASSERT_TRUE(pending.done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  // Stopped after it resumed: the paused command was answered or failed,
  // never lost; what is sent afterwards fails at once.
  Result after;
  Ask(**redis, {"SET", "c", "3"}, &after);
  ASSERT_TRUE(after.done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_FALSE(after.ok);
  EXPECT_THAT(after.reply, HasSubstr("redis connection"));
}

TEST(PipelinedRedisFailureTest, NothingListeningIsUnavailableNamingTheAddress) {
  testing::TempDir dir;
  config::Endpoint e;
  e.is_unix = true;
  e.path = dir.path() + "/nobody.sock";
  auto redis = PipelinedRedis::Connect(e);
  ASSERT_FALSE(redis.ok());
  EXPECT_EQ(redis.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(redis.status().message()), HasSubstr("nobody.sock"));
}

}  // namespace
}  // namespace aqueduct::bench
