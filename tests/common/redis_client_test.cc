// Integration tests of the Redis client against a real redis-server.

#include "common/redis/redis_client.h"

#include <cstdlib>

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

class RedisClientTest : public aqueduct::testing::RedisTest {
 protected:
  void SetUp() override {
    RedisTest::SetUp();
    client_ = std::make_unique<Client>(redis().ClientOptions());
  }

  std::unique_ptr<Client> client_;
};

TEST_F(RedisClientTest, SetAndGetAreBinarySafe) {
  std::string value("a\0b\r\n%s", 7);
  ASSERT_THAT(client_->Command({"SET", "k", value}, Soon()), IsOk());
  auto got = client_->Command({"GET", "k"}, Soon());
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->type, Reply::Type::kString);
  EXPECT_EQ(got->str, value);
  auto missing = client_->Command({"GET", "nope"}, Soon());
  ASSERT_THAT(missing, IsOk());
  EXPECT_TRUE(missing->is_nil());
}

TEST_F(RedisClientTest, ErrorReplyBecomesInternalWithRedisMessage) {
  ASSERT_THAT(client_->Command({"SET", "s", "x"}, Soon()), IsOk());
  EXPECT_THAT(
      client_->Command({"INCR", "s"}, Soon()),
      StatusIs(absl::StatusCode::kInternal, HasSubstr("not an integer")));
  // The connection is still usable afterwards.
  EXPECT_THAT(client_->Ping(Soon()), IsOk());
}

TEST_F(RedisClientTest, PipelineKeepsEveryReplyInOrder) {
  auto replies = client_->Pipeline(
      {{"SET", "a", "1"}, {"INCR", "a"}, {"HSET", "a", "f", "v"}, {"GET", "a"}},
      Soon());
  ASSERT_THAT(replies, IsOk());
  ASSERT_EQ(replies->size(), 4u);
  EXPECT_EQ((*replies)[0].str, "OK");
  EXPECT_EQ((*replies)[1].integer, 2);
  EXPECT_TRUE((*replies)[2].is_error()) << "WRONGTYPE kept in place";
  EXPECT_EQ((*replies)[3].str, "2");
}

TEST_F(RedisClientTest, EvalReloadsScriptAfterFlush) {
  Script script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  auto first = client_->Eval(script, {"c"}, {"5"}, Soon());
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->integer, 5);
  ASSERT_THAT(client_->Command({"SCRIPT", "FLUSH"}, Soon()), IsOk());
  auto second = client_->Eval(script, {"c"}, {"2"}, Soon());
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->integer, 7);
}

TEST_F(RedisClientTest, ArraysAreCopiedRecursively) {
  ASSERT_THAT(client_->Command({"RPUSH", "l", "x", "y"}, Soon()), IsOk());
  auto r = client_->Command({"LRANGE", "l", "0", "-1"}, Soon());
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->type, Reply::Type::kArray);
  ASSERT_EQ(r->elements.size(), 2u);
  EXPECT_EQ(r->elements[1].str, "y");
}

TEST_F(RedisClientTest, BlockingCommandMayWaitLongerThanTheCommandTimeout) {
  // command timeout is 500 ms in the test options; block for 800 ms.
  auto r = client_->BlockingCommand({"BLPOP", "nothing-here", "0.8"},
                                    absl::Milliseconds(800), Soon());
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->is_nil() || r->elements.empty());
  EXPECT_THAT(
      client_->Command({"BLPOP", "nothing-here", "0.8"}, Soon()),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("did not answer")))
      << "a plain command still times out";
}

TEST_F(RedisClientTest, PassedDeadlineFailsWithoutSending) {
  EXPECT_THAT(client_->Command({"PING"}, absl::Now() - absl::Seconds(1)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_F(RedisClientTest, KeysShareTheOwnersHashTag) {
  EXPECT_EQ(Key("intake", "s1", "session"), "aq:intake:{s1}:session");
  EXPECT_EQ(GlobalKey("referral", "queue"), "aq:referral:queue");
  // Redis Cluster hashes only what is inside the first {...}: every key of
  // one owner carries exactly the owner's id there.
  for (const std::string& k :
       {Key("intake", "s1", "session"), Key("intake", "s1", "req:x")}) {
    size_t open = k.find('{');
    size_t close = k.find('}');
    ASSERT_NE(open, std::string::npos);
    EXPECT_EQ(k.substr(open + 1, close - open - 1), "s1");
  }
}

// A Redis that is alive but does not answer: our command timeout fires and
// the call fails UNAVAILABLE well within the caller's deadline.
TEST_F(RedisClientTest, HungRedisGivesUnavailableWithinCommandTimeout) {
  ASSERT_THAT(client_->Ping(Soon()), IsOk());
  redis().Pause();
  absl::Time start = absl::Now();
  auto r = client_->Command({"PING"}, absl::Now() + absl::Seconds(5));
  absl::Duration took = absl::Now() - start;
  redis().Resume();
  EXPECT_THAT(
      r, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("did not answer")));
  EXPECT_LT(took, absl::Seconds(5))
      << "must not wait for the caller's whole deadline";
  EXPECT_THAT(client_->Ping(Soon()), IsOk())
      << "a broken connection is replaced";
}

TEST_F(RedisClientTest,
       CallerDeadlineShorterThanCommandTimeoutIsDeadlineExceeded) {
  ASSERT_THAT(client_->Ping(Soon()), IsOk());
  redis().Pause();
  auto r = client_->Command({"PING"}, absl::Now() + absl::Milliseconds(100));
  redis().Resume();
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(client_->Ping(Soon()), IsOk());
}

// Stopped Redis: UNAVAILABLE naming the address; back: the same client
// recovers by itself, and AOF kept the data.
TEST_F(RedisClientTest, StoppedRedisGivesUnavailableAndClientRecovers) {
  ASSERT_THAT(client_->Command({"SET", "durable", "yes"}, Soon()), IsOk());
  ASSERT_THAT(redis().Stop(), IsOk());
  auto down = client_->Command({"GET", "durable"}, Soon());
  EXPECT_THAT(down, StatusIs(absl::StatusCode::kUnavailable,
                             HasSubstr(redis().socket())));
  EXPECT_THAT(client_->Ping(Soon()), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(redis().Restart(), IsOk());
  auto back = client_->Command({"GET", "durable"}, Soon());
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->str, "yes");
}

TEST_F(RedisClientTest, ManyThreadsShareTheBoundedPool) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        if (!client_->Command({"INCR", "shared"}, Soon()).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(client_->Command({"GET", "shared"}, Soon())->str, "400");
}

// An ACL user (AUTH <user> <password>): the client signs in as that user,
// so the user's key patterns apply; a wrong password is UNAVAILABLE and
// never echoed.
TEST(RedisClientAclTest, SignsInAsTheAclUserWhoseKeyPatternsApply) {
  aqueduct::testing::TempDir dir;
  auto server = aqueduct::testing::RedisServer::Start(dir.path(), "admin-pass");
  ASSERT_THAT(server, IsOk());
  Client admin((*server)->ClientOptions());
  ASSERT_THAT(admin.Command({"ACL", "SETUSER", "intake", "on", ">intake-pass",
                             "~aq:intake:*", "+@all"},
                            absl::Now() + absl::Seconds(2)),
              IsOk());
  Options as_intake = (*server)->ClientOptions();
  as_intake.user = "intake";
  as_intake.password = "intake-pass";
  Client intake(as_intake);
  const absl::Time soon = absl::Now() + absl::Seconds(5);
  EXPECT_THAT(intake.Command({"SET", "aq:intake:{s}:session", "x"}, soon),
              IsOk());
  auto whoami = intake.Command({"ACL", "WHOAMI"}, soon);
  ASSERT_THAT(whoami, IsOk());
  EXPECT_EQ(whoami->str, "intake");
  EXPECT_THAT(intake.Command({"SET", "aq:referral:{c}:case", "x"}, soon),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("NOPERM")))
      << "another service's keys are out of this user's reach";

  Options wrong = as_intake;
  wrong.password = "admin-pass";  // the default user's, not this user's
  Client refused(wrong);
  auto r = refused.Ping(soon);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable,
                          HasSubstr("authentication failed")));
  EXPECT_THAT(r.message(), Not(HasSubstr("admin-pass")));
}

// AQUEDUCT_REDIS_USER with AQUEDUCT_REDIS_PASSWORD(_FILE), for every
// service and aqueductctl.
TEST(RedisCredentialsTest, FromTheEnvironmentWithClearErrors) {
  unsetenv("AQUEDUCT_REDIS_USER");
  unsetenv("AQUEDUCT_REDIS_PASSWORD_FILE");
  unsetenv("AQUEDUCT_REDIS_PASSWORD");
  auto none = CredentialsFromEnv();
  ASSERT_THAT(none, IsOk());
  EXPECT_TRUE(none->user.empty());
  EXPECT_TRUE(none->password.empty());

  setenv("AQUEDUCT_REDIS_PASSWORD", "pw-only", 1);
  auto password_only = CredentialsFromEnv();
  ASSERT_THAT(password_only, IsOk());
  EXPECT_TRUE(password_only->user.empty());
  EXPECT_EQ(password_only->password, "pw-only");

  setenv("AQUEDUCT_REDIS_USER", "referral", 1);
  auto both = CredentialsFromEnv();
  ASSERT_THAT(both, IsOk());
  EXPECT_EQ(both->user, "referral");
  EXPECT_EQ(both->password, "pw-only");
  const Options options =
      MakeOptions(config::Endpoint{}, absl::Seconds(1), 2, *both);
  EXPECT_EQ(options.user, "referral");
  EXPECT_EQ(options.password, "pw-only");

  for (const char* bad : {"", "two words", "tab\there"}) {
    setenv("AQUEDUCT_REDIS_USER", bad, 1);
    auto refused = CredentialsFromEnv();
    EXPECT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("AQUEDUCT_REDIS_USER")))
        << "user \"" << bad << "\"";
    EXPECT_THAT(refused.status().message(), Not(HasSubstr("pw-only")));
  }

  setenv("AQUEDUCT_REDIS_USER", "referral", 1);
  unsetenv("AQUEDUCT_REDIS_PASSWORD");
  EXPECT_THAT(CredentialsFromEnv(), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("no password")));
  unsetenv("AQUEDUCT_REDIS_USER");
}

// AQUEDUCT_REDIS_SENTINELS and its companions (issue 24 §2): none set is a
// single Redis with no waiting; Sentinels mean a shared primary finder and
// writes waiting for one replica by default; each bad value is refused by
// the variable's name, and no Sentinel answering is UNAVAILABLE naming the
// master. Commands that may write are the ones WAIT follows.
TEST(RedisFailoverTest, FromTheEnvironmentWithClearErrors) {
  for (const char* v :
       {"AQUEDUCT_REDIS_SENTINELS", "AQUEDUCT_REDIS_MASTER",
        "AQUEDUCT_REDIS_SENTINEL_PASSWORD",
        "AQUEDUCT_REDIS_SENTINEL_PASSWORD_FILE", "AQUEDUCT_REDIS_WAIT_REPLICAS",
        "AQUEDUCT_REDIS_WAIT_TIMEOUT_MS"})
    unsetenv(v);
  auto single = FailoverFromEnv({}, absl::Milliseconds(200));
  ASSERT_THAT(single, IsOk());
  EXPECT_EQ(single->primary, nullptr);
  EXPECT_EQ(single->wait_replicas, 0);

  setenv("AQUEDUCT_REDIS_SENTINELS", "127.0.0.1:1, 127.0.0.1:2", 1);
  auto sentinels = FailoverFromEnv({"", "data-pw"}, absl::Milliseconds(200));
  ASSERT_THAT(sentinels, IsOk());
  ASSERT_NE(sentinels->primary, nullptr);
  EXPECT_EQ(sentinels->primary->master_name(), "aqueduct");
  EXPECT_EQ(sentinels->wait_replicas, 1);
  const Options options =
      MakeOptions(config::Endpoint{}, absl::Seconds(1), 2, {}, *sentinels);
  EXPECT_EQ(options.primary, sentinels->primary) << "shared, not copied";
  // Nothing listens on those ports.
  Client client(options);
  EXPECT_THAT(client.Ping(absl::Now() + absl::Seconds(2)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("the primary of aqueduct")));

  struct Bad {
    const char* variable;
    const char* value;
  } bad[] = {{"AQUEDUCT_REDIS_SENTINELS", "nowhere"},
             {"AQUEDUCT_REDIS_MASTER", "two words"},
             {"AQUEDUCT_REDIS_WAIT_REPLICAS", "-1"},
             {"AQUEDUCT_REDIS_WAIT_TIMEOUT_MS", "0"}};
  for (const Bad& b : bad) {
    setenv(b.variable, b.value, 1);
    EXPECT_THAT(
        FailoverFromEnv({}, absl::Milliseconds(200)),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(b.variable)))
        << b.value;
    if (std::string(b.variable) == "AQUEDUCT_REDIS_SENTINELS")
      setenv(b.variable, "127.0.0.1:1", 1);
    else
      unsetenv(b.variable);
  }
  unsetenv("AQUEDUCT_REDIS_SENTINELS");

  EXPECT_TRUE(MayWrite({"SET", "k", "v"}));
  EXPECT_TRUE(MayWrite({"evalsha", "abc", "0"}));
  EXPECT_TRUE(MayWrite({"XADD", "s", "*", "f", "v"}));
  EXPECT_FALSE(MayWrite({"GET", "k"}));
  EXPECT_FALSE(MayWrite({"xread", "BLOCK", "1", "STREAMS", "s", "$"}));
  EXPECT_FALSE(MayWrite({"PING"}));
}

TEST(RedisClientNoServerTest, UnreachableAddressIsUnavailableAndNamed) {
  Options o;
  o.endpoint.is_unix = true;
  o.endpoint.path = "/nonexistent/aqueduct.sock";
  Client client(o);
  EXPECT_THAT(client.Ping(absl::Now() + absl::Seconds(2)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("redis at unix:/nonexistent/aqueduct.sock")));
}

}  // namespace
}  // namespace aqueduct::redis
