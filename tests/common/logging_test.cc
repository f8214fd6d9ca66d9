#include "common/logging/logging.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace aqueduct::log {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Init("testsvc");
    SetSinkForTest(&out_);
  }
  void TearDown() override { SetSinkForTest(nullptr); }
  std::string out_;
};

TEST_F(LoggingTest, WritesOneJsonObjectPerLine) {
  Info("rpc", {{"method", "/a.B/C"}, {"code", 5}, {"latency_ms", 1.5}, {"ok", true}});
  ASSERT_FALSE(out_.empty());
  EXPECT_EQ(out_.back(), '\n');
  EXPECT_EQ(out_.find('\n'), out_.size() - 1) << "exactly one line";
  EXPECT_THAT(out_, HasSubstr("\"severity\":\"INFO\""));
  EXPECT_THAT(out_, HasSubstr("\"service\":\"testsvc\""));
  EXPECT_THAT(out_, HasSubstr("\"msg\":\"rpc\""));
  EXPECT_THAT(out_, HasSubstr("\"method\":\"/a.B/C\""));
  EXPECT_THAT(out_, HasSubstr("\"code\":5"));
  EXPECT_THAT(out_, HasSubstr("\"latency_ms\":1.500"));
  EXPECT_THAT(out_, HasSubstr("\"ok\":true"));
}

TEST_F(LoggingTest, EscapesQuotesNewlinesAndControlCharacters) {
  Warn("a \"b\"\nc\x01", {});
  EXPECT_THAT(out_, HasSubstr(R"("msg":"a \"b\"\nc\u0001")"));
  EXPECT_EQ(out_.find('\n'), out_.size() - 1);
}

TEST_F(LoggingTest, RedactsContentBearingKeysWhateverTheValue) {
  Error("oops", {{"answer", "phq9.9=3"},
                 {"free_text", "I feel"},
                 {"token", "eyJhbGciOi"},
                 {"reason", "because"},
                 {"user_id", "alice"},
                 {"display_name", "Alice"},
                 {"Authorization", "Bearer x"}});
  for (const char* leaked : {"phq9.9=3", "I feel", "eyJhbGciOi", "because",
                             "alice", "Alice", "Bearer"}) {
    EXPECT_THAT(out_, Not(HasSubstr(leaked)));
  }
  EXPECT_THAT(out_, HasSubstr("\"answer\":\"[redacted]\""));
  EXPECT_THAT(out_, HasSubstr("\"token\":\"[redacted]\""));
}

TEST_F(LoggingTest, OperationalKeysAreNotRedacted) {
  for (const char* key : {"method", "code", "latency_ms", "port", "redis", "error"}) {
    EXPECT_FALSE(IsRedactedKey(key)) << key;
  }
}

TEST_F(LoggingTest, RespectsMinimumSeverity) {
  Init("testsvc", Severity::kWarning);
  Info("quiet");
  EXPECT_TRUE(out_.empty());
  Warn("loud");
  EXPECT_THAT(out_, HasSubstr("loud"));
}

}  // namespace
}  // namespace aqueduct::log
