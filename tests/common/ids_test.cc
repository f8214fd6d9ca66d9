#include "common/util/ids.h"

#include "absl/container/flat_hash_set.h"
#include "common/util/names.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;

TEST(NewIdTest, IsUrlSafeAndValidAsAResourceId) {
  for (int i = 0; i < 100; ++i) {
    std::string id = NewId();
    EXPECT_EQ(id.size(), 26u);
    EXPECT_THAT(ValidateIdSegment(id, "id"), IsOk());
  }
}

TEST(NewIdTest, DoesNotRepeat) {
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < 10000; ++i) EXPECT_TRUE(seen.insert(NewId()).second);
}

TEST(ValidateTest, IdSegments) {
  EXPECT_THAT(
      ValidateIdSegment("", "parent"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parent")));
  EXPECT_THAT(ValidateIdSegment("Bob", "parent"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateIdSegment("a/b", "parent"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateIdSegment(std::string(65, 'a'), "p"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateIdSegment("user-1_a", "p"), IsOk());
}

TEST(ValidateTest, RequestIds) {
  EXPECT_THAT(
      ValidateRequestId("", "request_id"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
  EXPECT_THAT(ValidateRequestId("has space", "request_id"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateRequestId(std::string(65, 'x'), "request_id"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateRequestId("6f1c0b9e-7d4e-4a52-9c1f-1b2c3d4e5f60", "r"),
              IsOk());
}

TEST(NamesTest, InUserNamespaceReplacesOnlyTheUser) {
  EXPECT_EQ(InUserNamespace("users/bob/screenings/s1", "alice"),
            "users/alice/screenings/s1");
  EXPECT_EQ(InUserNamespace("users/bob", "alice"), "users/alice");
  EXPECT_EQ(InUserNamespace("users//screenings/s1", "alice"),
            "users/alice/screenings/s1");
  EXPECT_EQ(InUserNamespace("referrals/r1", "alice"), "referrals/r1")
      << "not a user name: unchanged";
  EXPECT_EQ(InUserNamespace("", "alice"), "");
}

TEST(NamesTest, ParsesScreeningNames) {
  auto n = ParseScreeningName("users/alice/screenings/s1", "name");
  ASSERT_THAT(n, IsOk());
  EXPECT_EQ(n->user_id, "alice");
  EXPECT_EQ(n->screening_id, "s1");
  EXPECT_EQ(n->ToString(), "users/alice/screenings/s1");
  for (const char* bad :
       {"", "users/alice", "users/alice/screenings/", "patients/a/screenings/b",
        "users/a/screenings/b/c", "users/A/screenings/b"}) {
    EXPECT_THAT(ParseScreeningName(bad, "name"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")))
        << bad;
  }
}

TEST(NamesTest, ParsesUserNames) {
  EXPECT_EQ(*ParseUserName("users/bob", "parent"), "bob");
  EXPECT_THAT(
      ParseUserName("bob", "parent"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parent")));
}

}  // namespace
}  // namespace aqueduct
