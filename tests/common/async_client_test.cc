// Integration tests of the non-blocking Redis client against a real
// redis-server: replies reach the right caller, errors map as in the
// blocking client, a hung or stopped Redis gives UNAVAILABLE within the
// command timeout, and the client recovers by itself.

#include "common/redis/async_client.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/redis/sentinel.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/redis_fixture.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::redis {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

// Waits for one callback's result (the test fails rather than hangs if it
// never comes).
template <class T>
class Result {
 public:
  absl::AnyInvocable<void(T) &&> Callback() {
    return [this](T value) {
      {
        absl::MutexLock lock(&mu_);
        ++calls_;
        value_.emplace(std::move(value));
      }
      done_.Notify();
    };
  }
  T Get() {
    EXPECT_TRUE(done_.WaitForNotificationWithTimeout(absl::Seconds(10)))
        << "no callback";
    absl::MutexLock lock(&mu_);
    EXPECT_EQ(calls_, 1) << "callback must run exactly once";
    if (!value_.has_value()) return T(absl::InternalError("no callback"));
    return std::move(*value_);
  }

 private:
  absl::Notification done_;
  absl::Mutex mu_;
  int calls_ = 0;
  std::optional<T> value_;
};

using CommandResult = Result<absl::StatusOr<Reply>>;
using PipelineResult = Result<absl::StatusOr<std::vector<Reply>>>;

absl::StatusOr<Reply> Call(AsyncClient& client, std::vector<std::string> argv,
                           absl::Time deadline = absl::Now() +
                                                 absl::Seconds(5)) {
  CommandResult result;
  client.Command(std::move(argv), deadline, result.Callback());
  return result.Get();
}

class AsyncClientTest : public aqueduct::testing::RedisTest {
 protected:
  void SetUp() override {
    RedisTest::SetUp();
    client_ = std::make_unique<AsyncClient>(redis().ClientOptions());
  }

  std::unique_ptr<AsyncClient> client_;
};

TEST_F(AsyncClientTest, SetAndGetAreBinarySafe) {
  std::string value("a\0b\r\n%s", 7);
  ASSERT_THAT(Call(*client_, {"SET", "k", value}), IsOk());
  auto got = Call(*client_, {"GET", "k"});
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->type, Reply::Type::kString);
  EXPECT_EQ(got->str, value);
  auto missing = Call(*client_, {"GET", "nope"});
  ASSERT_THAT(missing, IsOk());
  EXPECT_TRUE(missing->is_nil());
}

TEST_F(AsyncClientTest, ErrorReplyBecomesInternalAndTheConnectionStaysUsable) {
  ASSERT_THAT(Call(*client_, {"SET", "s", "x"}), IsOk());
  EXPECT_THAT(
      Call(*client_, {"INCR", "s"}),
      StatusIs(absl::StatusCode::kInternal, HasSubstr("not an integer")));
  auto pong = Call(*client_, {"PING"});
  ASSERT_THAT(pong, IsOk());
  EXPECT_EQ(pong->str, "PONG");
}

TEST_F(AsyncClientTest, PipelineKeepsEveryReplyInOrderWithErrorsInPlace) {
  PipelineResult result;
  client_->Pipeline({{"SET", "a", "1"},
                     {"INCR", "a"},
                     {"HSET", "a", "f", "v"},
                     {"GET", "a"},
                     {"RPUSH", "l", "x", "y"},
                     {"LRANGE", "l", "0", "-1"}},
                    absl::Now() + absl::Seconds(5), result.Callback());
  auto replies = result.Get();
  ASSERT_THAT(replies, IsOk());
  ASSERT_EQ(replies->size(), 6u);
  EXPECT_EQ((*replies)[0].str, "OK");
  EXPECT_EQ((*replies)[1].integer, 2);
  EXPECT_TRUE((*replies)[2].is_error()) << "WRONGTYPE kept in place";
  EXPECT_EQ((*replies)[3].str, "2");
  ASSERT_EQ((*replies)[5].type, Reply::Type::kArray);
  ASSERT_EQ((*replies)[5].elements.size(), 2u);
  EXPECT_EQ((*replies)[5].elements[1].str, "y");
}

// Several threads pipelining at once on the one connection: every reply
// reaches the call that sent its command. Each thread counts its own key
// up, so a reply delivered to the wrong call shows as a wrong number.
TEST_F(AsyncClientTest, RepliesReachTheirCallersFromManyThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::atomic<int> wrong{0};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = absl::StrCat("counter-", t);
      std::vector<std::unique_ptr<PipelineResult>> results;
      for (int i = 1; i <= kPerThread; ++i) {
        results.push_back(std::make_unique<PipelineResult>());
        client_->Pipeline({{"INCR", key}, {"GET", key}},
                          absl::Now() + absl::Seconds(10),
                          results.back()->Callback());
      }
      for (int i = 1; i <= kPerThread; ++i) {
        auto replies = results[i - 1]->Get();
        if (!replies.ok() || replies->size() != 2 ||
            (*replies)[0].integer != i ||
            (*replies)[1].str != absl::StrCat(i)) {
          ++wrong;
        }
        ++done;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(done.load(), kThreads * kPerThread);
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(AsyncClientTest, ScriptsLoadOnceAndNoscriptIsNotFound) {
  Script script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  Result<absl::StatusOr<std::string>> loaded;
  client_->LoadScript(script, absl::Now() + absl::Seconds(5),
                      loaded.Callback());
  auto sha = loaded.Get();
  ASSERT_THAT(sha, IsOk());
  EXPECT_EQ(sha->size(), 40u);
  auto first = Call(*client_, {"EVALSHA", *sha, "1", "c", "5"});
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->integer, 5);

  ASSERT_THAT(Call(*client_, {"SCRIPT", "FLUSH"}), IsOk());
  EXPECT_THAT(Call(*client_, {"EVALSHA", *sha, "1", "c", "2"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("NOSCRIPT")));
  AsyncClient::ForgetScript(script);
  Result<absl::StatusOr<std::string>> again;
  client_->LoadScript(script, absl::Now() + absl::Seconds(5), again.Callback());
  ASSERT_THAT(again.Get(), IsOk());
  auto second = Call(*client_, {"EVALSHA", *sha, "1", "c", "2"});
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->integer, 7);
}

TEST_F(AsyncClientTest, PassedDeadlineFailsWithoutSending) {
  EXPECT_THAT(
      Call(*client_, {"SET", "late", "1"}, absl::Now() - absl::Seconds(1)),
      StatusIs(absl::StatusCode::kDeadlineExceeded));
  auto got = Call(*client_, {"GET", "late"});
  ASSERT_THAT(got, IsOk());
  EXPECT_TRUE(got->is_nil()) << "nothing was sent";
}

// A Redis that is alive but does not answer: the command timeout (500 ms
// in the test options) fires, every waiting call fails UNAVAILABLE, and
// once Redis answers again the client reconnects by itself.
TEST_F(AsyncClientTest,
       HungRedisGivesUnavailableWithinCommandTimeoutThenRecovers) {
  ASSERT_THAT(Call(*client_, {"PING"}), IsOk());
  redis().Pause();
  const absl::Time start = absl::Now();
  CommandResult a, b;
  client_->Command({"PING"}, absl::Now() + absl::Seconds(5), a.Callback());
  client_->Command({"SET", "x", "1"}, absl::Now() + absl::Seconds(5),
                   b.Callback());
  auto ra = a.Get();
  auto rb = b.Get();
  const absl::Duration took = absl::Now() - start;
  redis().Resume();
  EXPECT_THAT(ra, StatusIs(absl::StatusCode::kUnavailable,
                           HasSubstr("did not answer")));
  EXPECT_THAT(rb, StatusIs(absl::StatusCode::kUnavailable,
                           HasSubstr(redis().socket())));
  EXPECT_LT(took, absl::Seconds(3))
      << "must not wait for the caller's whole deadline";
  EXPECT_THAT(Call(*client_, {"PING"}), IsOk())
      << "a dropped connection is replaced";
}

TEST_F(AsyncClientTest,
       CallerDeadlineShorterThanCommandTimeoutIsDeadlineExceeded) {
  ASSERT_THAT(Call(*client_, {"PING"}), IsOk());
  redis().Pause();
  auto r = Call(*client_, {"PING"}, absl::Now() + absl::Milliseconds(100));
  redis().Resume();
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(Call(*client_, {"PING"}), IsOk());
}

// Stopped Redis: UNAVAILABLE naming the address, for a call in flight and
// for new ones; back: the same client recovers by itself and AOF kept the
// data.
TEST_F(AsyncClientTest, StoppedRedisGivesUnavailableAndClientRecovers) {
  ASSERT_THAT(Call(*client_, {"SET", "durable", "yes"}), IsOk());
  ASSERT_THAT(redis().Stop(), IsOk());
  EXPECT_THAT(
      Call(*client_, {"GET", "durable"}),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr(redis().socket())));
  EXPECT_THAT(Call(*client_, {"PING"}),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(redis().Restart(), IsOk());
  auto back = Call(*client_, {"GET", "durable"});
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->str, "yes");
}

TEST_F(AsyncClientTest, ShuttingDownFailsCallsStillWaiting) {
  ASSERT_THAT(Call(*client_, {"PING"}), IsOk());
  redis().Pause();
  CommandResult waiting;
  client_->Command({"PING"}, absl::Now() + absl::Seconds(5),
                   waiting.Callback());
  client_.reset();
  redis().Resume();
  EXPECT_THAT(waiting.Get(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shut down")));
}

// Under Sentinel, asking the Sentinels blocks (up to the connect timeout
// each); a caller of the non-blocking client (a gRPC callback thread) must
// not wait for it. Here the only "Sentinel" is a Redis that does not answer
// (SIGSTOP): every call is answered on the caller's thread before Command
// returns, UNAVAILABLE, while the I/O thread waits for the Sentinel.
TEST_F(AsyncClientTest, SentinelLookupNeverBlocksTheCaller) {
  Options o = redis().ClientOptions();
  o.connect_timeout = absl::Seconds(2);
  o.primary =
      std::make_shared<PrimaryFinder>(std::vector<config::Endpoint>{o.endpoint},
                                      "aqueduct", "", "", o.connect_timeout);
  redis().Pause();
  {
    AsyncClient client(o);
    for (int i = 0; i < 3; ++i) {
      bool answered = false;
      absl::Status status;
      client.Command({"PING"}, absl::Now() + absl::Seconds(5),
                     [&](absl::StatusOr<Reply> r) {
                       answered = true;
                       status = r.status();
                     });
      EXPECT_TRUE(answered) << "call " << i << " waited for the Sentinel";
      EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable,
                                   HasSubstr("looking up the primary")));
    }
  }  // joins the I/O thread once its lookup gives up
  redis().Resume();
}

TEST(AsyncClientNoServerTest, UnreachableAddressIsUnavailableAndNamed) {
  Options o;
  o.endpoint.is_unix = true;
  o.endpoint.path = "/nonexistent/aqueduct.sock";
  AsyncClient client(o);
  EXPECT_THAT(Call(client, {"PING"}),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("redis at unix:/nonexistent/aqueduct.sock")));
}

// A TCP address where nothing listens: refused, UNAVAILABLE, named.
TEST(AsyncClientNoServerTest, RefusedTcpConnectionIsUnavailable) {
  Options o;
  o.endpoint.host = "127.0.0.1";
  o.endpoint.port = 1;  // nothing listens on tcpmux here
  AsyncClient client(o);
  EXPECT_THAT(Call(client, {"PING"}),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("redis at 127.0.0.1:1")));
}

TEST(AsyncClientAuthTest, PasswordIsSentFirstAndAWrongOneIsUnavailable) {
  aqueduct::testing::TempDir dir;
  auto server =
      aqueduct::testing::RedisServer::Start(dir.path(), "s3cret-pass");
  ASSERT_THAT(server, IsOk());
  AsyncClient good((*server)->ClientOptions());
  auto pong = Call(good, {"PING"});
  ASSERT_THAT(pong, IsOk());
  EXPECT_EQ(pong->str, "PONG");

  Options wrong = (*server)->ClientOptions();
  wrong.password = "not-the-password";
  AsyncClient bad(wrong);
  auto refused = Call(bad, {"PING"});
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable,
                                HasSubstr("authentication failed")));
  EXPECT_THAT(refused.status().message(), Not(HasSubstr("not-the-password")));

  Options none = (*server)->ClientOptions();
  none.password.clear();
  AsyncClient anonymous(none);
  EXPECT_THAT(Call(anonymous, {"PING"}),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("NOAUTH")));
}

TEST(AsyncClientAuthTest, SignsInAsAnAclUser) {
  aqueduct::testing::TempDir dir;
  auto server = aqueduct::testing::RedisServer::Start(dir.path(), "admin-pass");
  ASSERT_THAT(server, IsOk());
  AsyncClient admin((*server)->ClientOptions());
  ASSERT_THAT(Call(admin, {"ACL", "SETUSER", "intake", "on", ">intake-pass",
                           "~aq:intake:*", "+@all"}),
              IsOk());
  Options as_intake = (*server)->ClientOptions();
  as_intake.user = "intake";
  as_intake.password = "intake-pass";
  AsyncClient intake(as_intake);
  auto whoami = Call(intake, {"ACL", "WHOAMI"});
  ASSERT_THAT(whoami, IsOk());
  EXPECT_EQ(whoami->str, "intake");
  EXPECT_THAT(Call(intake, {"SET", "aq:referral:{c}:case", "x"}),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("NOPERM")));
  Options wrong = as_intake;
  wrong.password = "admin-pass";
  AsyncClient refused(wrong);
  EXPECT_THAT(Call(refused, {"PING"}),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("authentication failed")));
}

}  // namespace
}  // namespace aqueduct::redis
