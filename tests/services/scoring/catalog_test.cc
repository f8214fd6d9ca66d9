#include "services/scoring/catalog.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::scoring {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;

std::string CatalogPath() {
  return aqueduct::testing::SourcePath("data/catalog/catalog.textproto");
}

TEST(CatalogTest, RepositoryCatalogLoadsAndMatchesTheReference) {
  auto catalog = CatalogIndex::LoadFile(CatalogPath());
  ASSERT_THAT(catalog, IsOk());
  const auto* phq9 = (*catalog)->FindInstrument("phq9");
  ASSERT_NE(phq9, nullptr);
  EXPECT_EQ(phq9->loinc_panel(), "44249-1");
  EXPECT_EQ(phq9->loinc_total(), "44261-6");
  EXPECT_THAT(phq9->copyright(), HasSubstr("No permission required"));
  ASSERT_EQ(phq9->items_size(), 10);
  const char* loinc[] = {"44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
                         "44258-2", "44252-5", "44253-3", "44260-8", "69722-7"};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(phq9->items(i).loinc(), loinc[i]) << i;
  EXPECT_EQ(phq9->items(8).text(),
            "Thoughts that you would be better off dead or of hurting yourself in some way");
  EXPECT_TRUE(phq9->items(9).unscored());
  const auto& opts = phq9->items(0).options();
  ASSERT_EQ(opts.size(), 4);
  EXPECT_EQ(opts[1].text(), "Several days");
  EXPECT_EQ(opts[1].loinc_answer(), "LA6569-3");
  EXPECT_EQ(opts[3].value(), 3);
}

scoring::v1::Catalog MinimalCatalog() {
  scoring::v1::Catalog c;
  c.set_version("t1");
  auto* ins = c.add_instruments();
  ins->set_id("x");
  auto* item = ins->add_items();
  item->set_id("x.1");
  item->set_text("Q");
  item->set_kind(scoring::v1::CHOICE);
  auto* o = item->add_options();
  o->set_value(0);
  o->set_text("No");
  o = item->add_options();
  o->set_value(1);
  o->set_text("Yes");
  auto* b = ins->add_bands();
  b->set_id("low");
  b->set_min(0);
  b->set_max(0);
  b = ins->add_bands();
  b->set_id("high");
  b->set_min(1);
  b->set_max(1);
  return c;
}

TEST(CatalogTest, MinimalCatalogValidates) {
  EXPECT_THAT(CatalogIndex::Build(MinimalCatalog()), IsOk());
}

TEST(CatalogTest, ValidationNamesTheOffendingEntry) {
  auto c = MinimalCatalog();
  *c.mutable_instruments(0)->add_items() = c.instruments(0).items(0);
  EXPECT_THAT(CatalogIndex::Build(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("x.1: duplicate item id")));
  c = MinimalCatalog();
  c.mutable_instruments(0)->mutable_items(0)->clear_options();
  EXPECT_THAT(CatalogIndex::Build(c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.1: no options")));
  c = MinimalCatalog();
  c.mutable_instruments(0)->mutable_bands(1)->set_min(2);
  c.mutable_instruments(0)->mutable_bands(1)->set_max(3);
  EXPECT_THAT(CatalogIndex::Build(c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("band high")));
  c = MinimalCatalog();
  c.mutable_instruments(0)->mutable_items(0)->set_kind(scoring::v1::ANSWER_KIND_UNSPECIFIED);
  EXPECT_THAT(CatalogIndex::Build(c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kind not set")));
  c = MinimalCatalog();
  c.clear_version();
  EXPECT_THAT(CatalogIndex::Build(c), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CatalogTest, UnparsableFileGivesLineAndColumn) {
  aqueduct::testing::TempDir dir;
  std::string path = dir.path() + "/bad.textproto";
  FILE* f = fopen(path.c_str(), "w");
  fputs("version: \"1\"\ninstruments { id: \"x\" nonsense: 1 }\n", f);
  fclose(f);
  EXPECT_THAT(CatalogIndex::LoadFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2")));
  EXPECT_THAT(CatalogIndex::LoadFile(dir.path() + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

TEST(CatalogTest, ValidateAnswerNamesFieldButNotValue) {
  auto catalog = CatalogIndex::Build(MinimalCatalog());
  ASSERT_THAT(catalog, IsOk());
  common::v1::Answer a;
  a.set_item_id("x.1");
  a.set_option_value(1);
  EXPECT_THAT((*catalog)->ValidateAnswer(a, "answers[0]"), IsOk());
  a.set_option_value(7);
  auto s = (*catalog)->ValidateAnswer(a, "answers[0]");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("answers[0].option_value")));
  EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr("7")));
  a.set_code_value("FL");
  EXPECT_THAT((*catalog)->ValidateAnswer(a, "answers[0]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("option_value: is required")));
  a.set_item_id("y.9");
  EXPECT_THAT((*catalog)->ValidateAnswer(a, "answers[0]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("answers[0].item_id")));
  a.Clear();
  a.set_item_id("x.1");
  a.set_declined(true);
  EXPECT_THAT((*catalog)->ValidateAnswer(a, "answers[0]"), IsOk());
}

}  // namespace
}  // namespace aqueduct::scoring
