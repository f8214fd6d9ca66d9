#include "tests/testing/redis_fixture.h"

#include "tests/testing/status_matchers.h"

namespace aqueduct::testing {

TempDir* RedisTest::dir_ = nullptr;
RedisServer* RedisTest::server_ = nullptr;

void RedisTest::SetUpTestSuite() {
  dir_ = new TempDir();
  auto server = RedisServer::Start(dir_->path());
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = server->release();
}

void RedisTest::TearDownTestSuite() {
  delete server_;
  server_ = nullptr;
  delete dir_;
  dir_ = nullptr;
}

void RedisTest::SetUp() {
  ASSERT_NE(server_, nullptr) << "redis-server did not start";
  ASSERT_THAT(server_->FlushAll(), IsOk());
}

}  // namespace aqueduct::testing
