#include "common/texts/person_texts.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/intake/person_view.h"
#include "services/referral/referral_core.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::texts {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The repository's file has every message intake and referral show.
TEST(PersonTextsTest, TheRepositoryTextsHaveEveryKeyTheServicesUse) {
  const std::string path =
      aqueduct::testing::SourcePath("data/texts/person_texts.textproto");
  auto intake = PersonTexts::Load(path, intake::IntakeTextKeys());
  ASSERT_THAT(intake, IsOk());
  EXPECT_THAT(PersonTexts::Load(path, referral::ReferralTextKeys()), IsOk());
  EXPECT_FALSE((*intake)->version().empty());
  EXPECT_THAT((*intake)->Message("route.crisis"),
              StartsWith("This is a screening, not a diagnosis. "));
  EXPECT_THAT((*intake)->Message("route.crisis"), HasSubstr("crisis"));
}

TEST(PersonTextsTest, AMissingMessageOrFileIsAnErrorNamingIt) {
  aqueduct::testing::TempDir dir;
  const std::string path = dir.path() + "/texts.textproto";
  std::ofstream(path) << "version: \"t1\" disclaimer: \"D.\"\n"
                         "messages { key: \"a\" value: \"A.\" }\n"
                         "messages { key: \"empty\" value: \"\" }\n";
  auto texts = PersonTexts::Load(path, {"a"});
  ASSERT_THAT(texts, IsOk());
  EXPECT_EQ((*texts)->Message("a"), "D. A.");
  EXPECT_THAT(PersonTexts::Load(path, {"a", "b"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has no message \"b\"")));
  EXPECT_THAT(PersonTexts::Load(path, {"empty"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has no message \"empty\"")));
  EXPECT_THAT(PersonTexts::Load(dir.path() + "/absent", {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent")));
  std::ofstream(path) << "disclaimer: \"D.\"\n";
  EXPECT_THAT(PersonTexts::Load(path, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs a version")));
  std::ofstream(path) << "not { a textproto";
  EXPECT_THAT(PersonTexts::Load(path, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a PersonTexts")));
}

// What the person sees comes from the data: another file, other words.
TEST(PersonTextsTest, ThePersonsRouteMessageComesFromTheTexts) {
  aqueduct::testing::TempDir dir;
  const std::string path = dir.path() + "/texts.textproto";
  std::string file = "version: \"t2\" disclaimer: \"Not a diagnosis.\"\n";
  for (const auto& key : intake::IntakeTextKeys())
    file +=
        "messages { key: \"" + key + "\" value: \"text of " + key + "\" }\n";
  std::ofstream(path) << file;
  auto texts = PersonTexts::Load(path, intake::IntakeTextKeys());
  ASSERT_THAT(texts, IsOk());
  scoring::v1::ScoringResult result;
  result.mutable_routing()->set_primary_route(common::v1::KETAMINE_REVIEW);
  auto route = intake::PersonRouteOf(result, **texts);
  EXPECT_EQ(route.message(), "Not a diagnosis. text of route.physician_review");
  EXPECT_EQ(route.route(), common::v1::UNDER_PHYSICIAN_REVIEW);
  result.mutable_routing()->set_primary_route(common::v1::CRISIS_URGENT);
  EXPECT_EQ(intake::PersonRouteOf(result, **texts).message(),
            "Not a diagnosis. text of route.crisis");
}

}  // namespace
}  // namespace aqueduct::texts
