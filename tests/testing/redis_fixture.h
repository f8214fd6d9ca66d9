#ifndef AQUEDUCT_TESTS_TESTING_REDIS_FIXTURE_H_
#define AQUEDUCT_TESTS_TESTING_REDIS_FIXTURE_H_

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"

namespace aqueduct::testing {

// Base fixture for tests against a real redis-server: one server per test
// suite (Unix socket, AOF on), emptied before every test. A server that does
// not start fails the tests; it never skips them.
class RedisTest : public ::testing::Test {
 public:
  static void SetUpTestSuite();
  static void TearDownTestSuite();

 protected:
  void SetUp() override;
  static RedisServer& redis() { return *server_; }
  static absl::Time Soon() { return absl::Now() + absl::Seconds(5); }

 private:
  static TempDir* dir_;
  static RedisServer* server_;
};

}  // namespace aqueduct::testing

#endif  // AQUEDUCT_TESTS_TESTING_REDIS_FIXTURE_H_
