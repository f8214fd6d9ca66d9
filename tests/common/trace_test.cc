// W3C traceparent parsing and formatting, trace ids on log lines, and
// gRPC's and protobuf's own messages routed through the JSON logger.

#include "common/server/trace.h"

#include <google/protobuf/stubs/logging.h>
#include <grpc/grpc.h>
#include <grpc/support/log.h>

#include <string>

#include "absl/strings/str_split.h"
#include "common/logging/logging.h"
#include "common/server/server_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace aqueduct::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kValid[] =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceparentTest, ParsesTheSpecificationsExample) {
  auto p = ParseTraceparent(kValid);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(p->parent_id, "00f067aa0ba902b7");
  EXPECT_EQ(p->flags, 1);
  EXPECT_EQ(FormatTraceparent(p->trace_id, p->parent_id, p->flags), kValid);
}

TEST(TraceparentTest, RefusesWhatTheSpecificationRefuses) {
  for (const char* bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  // no flags
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero
                                                                       // id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // ff
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // 00+
           "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
       }) {
    EXPECT_FALSE(ParseTraceparent(bad).has_value()) << bad;
  }
  // A later version is read by its first four fields.
  auto later = ParseTraceparent(
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-next");
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST(TraceparentTest, NewIdsAreValidAndDiffer) {
  const std::string a = NewTraceId(), b = NewTraceId();
  EXPECT_NE(a, b);
  EXPECT_TRUE(
      ParseTraceparent(FormatTraceparent(a, NewSpanId(), 0)).has_value());
}

TEST(TraceScopeTest, LinesCarryTheTraceIdOnlyInsideTheScope) {
  std::string sink;
  log::SetSinkForTest(&sink);
  log::Info("before");
  {
    log::TraceScope outer("4bf92f3577b34da6a3ce929d0e0e4736");
    log::Info("inside");
    {
      log::TraceScope inner("0af7651916cd43dd8448eb211c80319c");
      log::Info("nested");
    }
    log::Info("inside again");
  }
  log::Info("after");
  log::SetSinkForTest(nullptr);
  std::vector<std::string> lines =
      absl::StrSplit(sink, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_THAT(lines[0], Not(HasSubstr("trace_id")));
  EXPECT_THAT(lines[1],
              HasSubstr("\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""));
  EXPECT_THAT(lines[2],
              HasSubstr("\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\""));
  EXPECT_THAT(lines[3],
              HasSubstr("\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""));
  EXPECT_THAT(lines[4], Not(HasSubstr("trace_id")));
}

TEST(LibraryLogsTest, GrpcAndProtobufMessagesBecomeJsonLines) {
  std::string sink;
  log::SetSinkForTest(&sink);
  grpc_init();  // as in a service: gRPC reads its verbosity (ERROR) here
  RouteLibraryLogs();
  gpr_log(GPR_ERROR, "a gRPC complaint %d", 42);
  GOOGLE_LOG(ERROR) << "a protobuf complaint";
  log::SetSinkForTest(nullptr);
  grpc_shutdown();
  std::vector<std::string> lines =
      absl::StrSplit(sink, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << sink;
  EXPECT_EQ(lines[0].front(), '{');
  EXPECT_THAT(lines[0], HasSubstr("\"severity\":\"ERROR\""));
  EXPECT_THAT(lines[0], HasSubstr("\"msg\":\"grpc\""));
  EXPECT_THAT(lines[0], HasSubstr("\"detail\":\"a gRPC complaint 42\""));
  EXPECT_THAT(lines[1], HasSubstr("\"msg\":\"protobuf\""));
  EXPECT_THAT(lines[1], HasSubstr("\"detail\":\"a protobuf complaint\""));
  EXPECT_THAT(lines[1], HasSubstr("trace_test.cc"));
}

}  // namespace
}  // namespace aqueduct::server
