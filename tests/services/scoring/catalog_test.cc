// The repository catalog against the clinical reference, and catalog
// validation.

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

class RepositoryCatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = CatalogIndex::LoadFile(CatalogPath());
    ASSERT_THAT(c, IsOk());
    catalog_ = *c;
  }
  const v1::Instrument& Ins(const std::string& id) {
    const auto* ins = catalog_->FindInstrument(id);
    EXPECT_NE(ins, nullptr) << id;
    static v1::Instrument none;
    return ins != nullptr ? *ins : none;
  }
  std::shared_ptr<const CatalogIndex> catalog_;
};

TEST_F(RepositoryCatalogTest, InstrumentsInAskingOrder) {
  std::vector<std::string> ids;
  for (const auto& ins : catalog_->catalog().instruments())
    ids.push_back(ins.id());
  EXPECT_THAT(ids, ::testing::ElementsAre("ctx", "phq9", "gad7", "cbi_personal",
                                          "cbi_work", "cbi_client", "auditc",
                                          "drug", "asq", "ket"));
}

TEST_F(RepositoryCatalogTest, Phq9MatchesTheReference) {
  const auto& phq9 = Ins("phq9");
  EXPECT_EQ(phq9.loinc_panel(), "44249-1");
  EXPECT_EQ(phq9.loinc_total(), "44261-6");
  EXPECT_THAT(phq9.copyright(),
              HasSubstr("No permission required to reproduce, translate, "
                        "display or distribute"));
  ASSERT_EQ(phq9.items_size(), 10);
  const char* loinc[] = {"44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
                         "44258-2", "44252-5", "44253-3", "44260-8", "69722-7"};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(phq9.items(i).loinc(), loinc[i]) << i;
  EXPECT_EQ(phq9.items(8).text(),
            "Thoughts that you would be better off dead or of hurting yourself "
            "in some way");
  EXPECT_TRUE(phq9.items(9).unscored());
  const char* answers[] = {"LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"};
  for (int v = 0; v < 4; ++v) {
    EXPECT_EQ(phq9.items(0).options(v).value(), v);
    EXPECT_EQ(phq9.items(0).options(v).loinc_answer(), answers[v]);
  }
  EXPECT_EQ(phq9.short_forms(0).id(), "phq2");
  EXPECT_EQ(phq9.short_forms(0).loinc_total(), "55758-7");
}

TEST_F(RepositoryCatalogTest, Gad7MatchesTheReference) {
  const auto& gad7 = Ins("gad7");
  EXPECT_EQ(gad7.loinc_panel(), "69737-5");
  EXPECT_EQ(gad7.loinc_total(), "70274-6");
  const char* loinc[] = {"69725-0", "68509-9", "69733-4", "69734-2",
                         "69735-9", "69689-8", "69736-7"};
  ASSERT_EQ(gad7.items_size(), 7);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(gad7.items(i).loinc(), loinc[i]) << i;
  EXPECT_EQ(gad7.items(6).text(),
            "Feeling afraid as if something awful might happen");
}

TEST_F(RepositoryCatalogTest, CbiSubscalesApplicabilityAndReverseItem) {
  EXPECT_EQ(Ins("cbi_personal").items_size(), 6);
  EXPECT_EQ(Ins("cbi_work").items_size(), 7);
  EXPECT_EQ(Ins("cbi_client").items_size(), 6);
  EXPECT_TRUE(Ins("cbi_personal").applies_if().empty());
  EXPECT_EQ(Ins("cbi_work").applies_if(), "ctx.works == yes");
  EXPECT_THAT(Ins("cbi_client").applies_if(),
              HasSubstr("ctx.works_with_clients == yes"));
  int reversed = 0;
  for (const char* id : {"cbi_personal", "cbi_work", "cbi_client"}) {
    for (const auto& item : Ins(id).items()) {
      reversed += item.reverse_scored();
      EXPECT_TRUE(item.loinc().empty()) << "CBI has no LOINC codes";
      EXPECT_FALSE(item.local_code().empty()) << item.id();
      ASSERT_EQ(item.options_size(), 5);
      EXPECT_EQ(item.options(0).value(), 100);
      EXPECT_EQ(item.options(4).value(), 0);
    }
  }
  EXPECT_EQ(reversed, 1);
  EXPECT_TRUE(Ins("cbi_work").items(6).reverse_scored());
  EXPECT_EQ(
      Ins("cbi_work").items(6).text(),
      "Do you have enough energy for family and friends during leisure time?");
  EXPECT_THAT(Ins("cbi_personal").citation(), HasSubstr("Kristensen"));
}

TEST_F(RepositoryCatalogTest, AuditCDrugAndAsq) {
  const auto& audit = Ins("auditc");
  EXPECT_EQ(audit.loinc_panel(), "72109-2");
  EXPECT_EQ(audit.loinc_total(), "75626-2");
  EXPECT_EQ(audit.items(0).loinc(), "68518-0")
      << "not the US Core example's 68517-2";
  EXPECT_EQ(audit.items(1).loinc(), "68519-8");
  EXPECT_EQ(audit.items(2).loinc(), "68520-6");
  EXPECT_EQ(audit.items(1).options(4).text(), "10 or more");
  EXPECT_EQ(Ins("drug").items(0).kind(), v1::INTEGER);
  const auto& asq = Ins("asq");
  EXPECT_EQ(asq.ask_if(), "phq9.9 > 0 || declined(phq9.9)");
  EXPECT_TRUE(asq.asked_first());
  EXPECT_EQ(asq.ends_flow_if(), "asq.5 == yes");
  ASSERT_EQ(asq.items_size(), 5);
  EXPECT_EQ(asq.items(4).text(),
            "Are you having thoughts of killing yourself right now?");
  EXPECT_THAT(asq.items(4).applies_if(), HasSubstr("asq.1 == yes"));
}

TEST_F(RepositoryCatalogTest, ContextAndKetamineModule) {
  std::vector<std::string> ctx;
  for (const auto& item : Ins("ctx").items()) ctx.push_back(item.id());
  EXPECT_THAT(ctx, ::testing::ElementsAre("ctx.role", "ctx.works",
                                          "ctx.works_with_clients", "ctx.state",
                                          "ctx.age", "ctx.sex"));
  std::vector<std::string> roles;
  for (const auto& o : Ins("ctx").items(0).options()) roles.push_back(o.code());
  EXPECT_THAT(roles, ::testing::ElementsAre(
                         "therapist_counsellor", "other_clinician",
                         "other_health_worker", "unpaid_caregiver", "other"));
  const auto& ket = Ins("ket");
  EXPECT_THAT(ket.ask_if(), HasSubstr("phq9.total >= 10"));
  EXPECT_THAT(ket.ask_if(), HasSubstr("ctx.age >= 18"));
  EXPECT_THAT(ket.ask_if(), HasSubstr("ketamine_states"));
  std::vector<std::string> items;
  for (const auto& item : ket.items()) items.push_back(item.id());
  EXPECT_THAT(items,
              ::testing::ElementsAre(
                  "ket.trials", "ket.vascular", "ket.ich", "ket.psychosis",
                  "ket.pregnant", "ket.hypersensitivity", "ket.high_bp",
                  "ket.sud", "ket.bipolar", "ket.breastfeeding"));
  EXPECT_THAT(catalog_->set_names(), ::testing::ElementsAre("ketamine_states"));
}

TEST_F(RepositoryCatalogTest, EveryItemHasACode) {
  for (const auto& ins : catalog_->catalog().instruments()) {
    for (const auto& item : ins.items()) {
      EXPECT_TRUE(!item.loinc().empty() || !item.local_code().empty())
          << item.id();
    }
  }
}

struct BandEdge {
  const char* instrument;
  double level;
  const char* band;
};
class BandEdgeTest : public RepositoryCatalogTest,
                     public ::testing::WithParamInterface<BandEdge> {};

TEST_P(BandEdgeTest, LevelFallsInTheBand) {
  const auto* band =
      CatalogIndex::BandFor(Ins(GetParam().instrument), GetParam().level);
  ASSERT_NE(band, nullptr);
  EXPECT_EQ(band->id(), GetParam().band);
}

INSTANTIATE_TEST_SUITE_P(
    CbiEdges, BandEdgeTest,
    ::testing::Values(BandEdge{"cbi_personal", 0, "low"},
                      BandEdge{"cbi_personal", 49.9, "low"},
                      BandEdge{"cbi_personal", 50, "moderate"},
                      BandEdge{"cbi_work", 74.9, "moderate"},
                      BandEdge{"cbi_work", 75, "high"},
                      BandEdge{"cbi_client", 99.9, "high"},
                      BandEdge{"cbi_client", 100, "severe"}),
    [](const auto& info) {
      std::string name =
          std::string(info.param.instrument) + "_" +
          std::to_string(static_cast<int>(info.param.level * 10));
      return name;
    });

v1::Catalog MinimalCatalog() {
  v1::Catalog c;
  c.set_version("t1");
  auto* ins = c.add_instruments();
  ins->set_id("x");
  ins->set_scoring(v1::SUM);
  auto* item = ins->add_items();
  item->set_id("x.1");
  item->set_text("Q");
  item->set_kind(v1::CHOICE);
  for (int v : {0, 1}) {
    auto* o = item->add_options();
    o->set_value(v);
    o->set_text(v ? "Yes" : "No");
    o->set_code(v ? "yes" : "no");
  }
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

TEST(CatalogValidationTest, MinimalCatalogValidates) {
  EXPECT_THAT(CatalogIndex::Build(MinimalCatalog()), IsOk());
}

TEST(CatalogValidationTest, ErrorsNameTheEntryAndTheProblem) {
  auto c = MinimalCatalog();
  *c.mutable_instruments(0)->add_items() = c.instruments(0).items(0);
  EXPECT_THAT(CatalogIndex::Build(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("x.1: duplicate item id")));
  c = MinimalCatalog();
  c.mutable_instruments(0)->mutable_items(0)->clear_options();
  EXPECT_THAT(CatalogIndex::Build(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("x.1: no options")));
  c = MinimalCatalog();
  c.mutable_instruments(0)->mutable_bands(0)->set_max(1);
  EXPECT_THAT(CatalogIndex::Build(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("band \"low\": overlaps band \"high\"")));
  c = MinimalCatalog();
  c.mutable_instruments(0)->mutable_bands(1)->set_min(2);
  c.mutable_instruments(0)->mutable_bands(1)->set_max(3);
  EXPECT_THAT(CatalogIndex::Build(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("leaves a gap before band \"high\"")));
  c = MinimalCatalog();
  c.mutable_instruments(0)->mutable_items(0)->set_kind(
      v1::ANSWER_KIND_UNSPECIFIED);
  EXPECT_THAT(
      CatalogIndex::Build(c),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kind not set")));
  c = MinimalCatalog();
  c.mutable_instruments(0)->set_positive_if("y.total >= 1");
  EXPECT_THAT(
      CatalogIndex::Build(c),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("x positive_if: column 1: unknown name \"y.total\"")));
  c = MinimalCatalog();
  c.mutable_instruments(0)->mutable_items(0)->set_applies_if("x.1 == maybe");
  EXPECT_THAT(CatalogIndex::Build(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"maybe\" is not a code of \"x.1\"")));
  c = MinimalCatalog();
  c.clear_version();
  EXPECT_THAT(
      CatalogIndex::Build(c),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version")));
  // Item ids are "<instrument>.<item>" (the packed answer form relies on it).
  for (const char* id : {"y.1", "x1", "x.", "xx.1"}) {
    c = MinimalCatalog();
    c.mutable_instruments(0)->mutable_items(0)->set_id(id);
    EXPECT_THAT(CatalogIndex::Build(c),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("item id must be \"x.<item>\"")))
        << id;
  }
  c = MinimalCatalog();
  c.mutable_instruments(0)->set_id("x.y");
  c.mutable_instruments(0)->mutable_items(0)->set_id("x.y.1");
  EXPECT_THAT(CatalogIndex::Build(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("x.y: instrument id contains '.'")));
}

TEST(CatalogValidationTest, UnparsableFileNamesFileLineAndColumn) {
  aqueduct::testing::TempDir dir;
  std::string path = dir.path() + "/bad.textproto";
  FILE* f = fopen(path.c_str(), "w");
  fputs("version: \"1\"\ninstruments { id: \"x\" nonsense: 1 }\n", f);
  fclose(f);
  EXPECT_THAT(CatalogIndex::LoadFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr(path), HasSubstr("line 2"))));
  EXPECT_THAT(CatalogIndex::LoadFile(dir.path() + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

TEST(CatalogValidationTest, ValidateAnswerNamesFieldButNotValue) {
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
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("option_value: is required")));
  a.set_item_id("y.9");
  EXPECT_THAT((*catalog)->ValidateAnswer(a, "answers[0]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("answers[0].item_id")));
  a.Clear();
  a.set_item_id("x.1");
  EXPECT_THAT((*catalog)->ValidateAnswer(a, "answers[0]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no value given")));
  a.set_declined(true);
  EXPECT_THAT((*catalog)->ValidateAnswer(a, "answers[0]"), IsOk());
}

}  // namespace
}  // namespace aqueduct::scoring
