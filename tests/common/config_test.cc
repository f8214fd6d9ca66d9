#include "common/config/config.h"

#include <cstdlib>
#include <filesystem>

#include "common/config/data_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::config {
namespace {

using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ParseEndpointTest, HostAndPort) {
  auto ep = ParseEndpoint("127.0.0.1:6390", "--redis");
  ASSERT_TRUE(ep.ok());
  EXPECT_FALSE(ep->is_unix);
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 6390);
  EXPECT_EQ(ep->ToString(), "127.0.0.1:6390");
}

TEST(ParseEndpointTest, BracketedIpv6) {
  auto ep = ParseEndpoint("[::1]:7000", "--x");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->ToString(), "[::1]:7000");
}

TEST(ParseEndpointTest, UnixSocket) {
  auto ep = ParseEndpoint("unix:/run/redis.sock", "--redis");
  ASSERT_TRUE(ep.ok());
  EXPECT_TRUE(ep->is_unix);
  EXPECT_EQ(ep->path, "/run/redis.sock");
  EXPECT_EQ(ep->ToString(), "unix:/run/redis.sock");
}

TEST(ParseEndpointTest, ErrorsNameTheFlag) {
  EXPECT_THAT(
      ParseEndpoint("", "--redis"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--redis")));
  EXPECT_THAT(
      ParseEndpoint("localhost", "--redis"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no port")));
  EXPECT_THAT(
      ParseEndpoint("h:99999", "--scoring"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--scoring")));
  EXPECT_THAT(
      ParseEndpoint("h:abc", "--x"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a port")));
  EXPECT_THAT(
      ParseEndpoint("unix:relative.sock", "--x"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute")));
  EXPECT_THAT(ParseEndpoint(":80", "--x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(EnvTest, EnvOrFallsBackWhenUnsetOrEmpty) {
  unsetenv("AQ_TEST_VAR");
  EXPECT_EQ(EnvOr("AQ_TEST_VAR", "dflt"), "dflt");
  setenv("AQ_TEST_VAR", "", 1);
  EXPECT_EQ(EnvOr("AQ_TEST_VAR", "dflt"), "dflt");
  setenv("AQ_TEST_VAR", "set", 1);
  EXPECT_EQ(EnvOr("AQ_TEST_VAR", "dflt"), "set");
  setenv("AQ_TEST_INT", "42", 1);
  EXPECT_EQ(EnvOrInt("AQ_TEST_INT", 7), 42);
  setenv("AQ_TEST_INT", "x", 1);
  EXPECT_EQ(EnvOrInt("AQ_TEST_INT", 7), 7);
}

TEST(PositiveMillisTest, RejectsZeroAndNegative) {
  EXPECT_EQ(*PositiveMillis(250, "--t"), absl::Milliseconds(250));
  EXPECT_THAT(PositiveMillis(0, "--t"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--t")));
  EXPECT_THAT(PositiveMillis(-5, "--t"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(DataDirTest, EnvironmentWins) {
  EXPECT_EQ(DataDirFor("/srv/aqueduct-data", "/usr/bin/aqueduct-scoring"),
            "/srv/aqueduct-data");
}

TEST(DataDirTest, InstalledCopyBesideTheBinaryThenTheSourceTree) {
  testing::TempDir prefix;
  const std::string exe = prefix.path() + "/bin/aqueduct-scoring";
  // Nothing installed: the build's own default (the source tree's data/).
  const std::string source = DataDirFor("", exe);
  EXPECT_NE(source.find("data"), std::string::npos) << source;
  EXPECT_EQ(source.find(prefix.path()), std::string::npos) << source;

  std::filesystem::create_directories(prefix.path() + "/bin");
  std::filesystem::create_directories(prefix.path() + "/share/aqueduct");
  const std::string installed = DataDirFor("", exe);
  EXPECT_TRUE(
      std::filesystem::equivalent(installed, prefix.path() + "/share/aqueduct"))
      << installed;
}

}  // namespace
}  // namespace aqueduct::config

namespace aqueduct::config {
namespace {

TEST(FirstErrorTest, ReturnsTheFirstFailingCheck) {
  EXPECT_TRUE(FirstError({absl::OkStatus(), absl::OkStatus()}).ok());
  absl::Status s =
      FirstError({absl::OkStatus(), absl::InvalidArgumentError("--redis: bad"),
                  absl::InvalidArgumentError("--listen: bad")});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "--redis: bad");
}

}  // namespace
}  // namespace aqueduct::config
