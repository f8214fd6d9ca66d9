#include "common/logging/logging.h"

#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
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
  Info("rpc",
       {{"method", "/a.B/C"}, {"code", 5}, {"latency_ms", 1.5}, {"ok", true}});
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

// The timestamp each line starts with: exactly what absl::FormatTime gives,
// across second, minute, day and year boundaries and on every thread.
TEST_F(LoggingTest, TimestampIsUtcWithMilliseconds) {
  const absl::Time base =
      absl::FromUnixMillis(1798761599000);  // 2026-12-31T23:59:59Z
  for (int64_t step : {0, 1, 999, 1000, 1001, 61000, 86400000, 123456789}) {
    for (int64_t sign : {1, -1}) {
      const absl::Time t = base + absl::Milliseconds(sign * step);
      EXPECT_EQ(Timestamp(t), absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t,
                                               absl::UTCTimeZone()));
    }
  }
  EXPECT_EQ(Timestamp(absl::FromUnixMillis(1798761599999)),
            "2026-12-31T23:59:59.999Z");
  EXPECT_EQ(Timestamp(absl::FromUnixMillis(1798761600000)),
            "2027-01-01T00:00:00.000Z");
  std::string other;
  std::thread([&] {
    other = Timestamp(absl::FromUnixMillis(1798761600042));
  }).join();
  EXPECT_EQ(other, "2027-01-01T00:00:00.042Z");
  const absl::Time before = absl::Now();
  Info("rpc");
  ASSERT_EQ(out_.rfind("{\"ts\":\"", 0), 0u) << out_;
  absl::Time logged;
  std::string err;
  ASSERT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%E3SZ", out_.substr(7, 24),
                              &logged, &err))
      << err << " in " << out_;
  EXPECT_EQ(out_[7 + 24], '"');
  EXPECT_LE(absl::AbsDuration(logged - before), absl::Seconds(5));
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
  for (const char* key :
       {"method", "code", "latency_ms", "port", "redis", "error"}) {
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
