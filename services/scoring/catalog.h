#ifndef AQUEDUCT_SERVICES_SCORING_CATALOG_H_
#define AQUEDUCT_SERVICES_SCORING_CATALOG_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "protos/common/v1/common.pb.h"
#include "protos/scoring/v1/catalog.pb.h"
#include "protos/scoring/v1/result.pb.h"
#include "services/scoring/expr.h"
#include "services/scoring/packed_answers.h"

namespace aqueduct::scoring {

// Reads a protobuf text-format file into `message`; errors name the file and
// the line and column of the first problem.
absl::Status ReadTextProto(const std::string& path,
                           google::protobuf::Message* message);

// A validated, indexed instrument catalog with every expression compiled.
// Immutable once built, so it is shared freely between threads (intake uses
// it too, for the screening flow and answer validation).
class CatalogIndex {
 public:
  struct ItemInfo {
    const scoring::v1::Item* def = nullptr;
    // The id after "<instrument>.", as in the packed answer form.
    absl::string_view part;
    int slot = -1;
    expr::Expr applies_if;
    // CODE items: each allowed code -> its index in def->codes(), so an
    // answer is checked with one lookup, not a scan (ctx.state has ~50).
    absl::flat_hash_map<absl::string_view, int> codes;
  };
  struct ShortFormInfo {
    const scoring::v1::ShortForm* def = nullptr;
    std::vector<int> item_slots;
    int total_slot = -1;
    int positive_slot = -1;
    // The derived value's name and explanation in a result, built once.
    std::string total_name;
    std::string explanation;
  };
  struct InstrumentInfo {
    const scoring::v1::Instrument* def = nullptr;
    std::vector<ItemInfo> items;
    expr::Expr ask_if;
    expr::Expr applies_if;
    expr::Expr positive_if;
    expr::Expr ends_flow_if;  // empty: never
    int total_slot = -1;      // SUM
    int mean_slot = -1;       // MEAN_0_100
    int band_slot = -1;       // when bands exist
    int positive_slot = -1;   // when positive_if exists
    int complete_slot = -1;
    int mdd_count_slot = -1;           // PHQ9_MDD_COUNT
    int provisional_mdd_slot = -1;     // PHQ9_MDD_COUNT
    std::string mdd_count_name;        // "<id>.mdd_count", built once
    std::string provisional_mdd_name;  // "<id>.provisional_mdd"
    std::vector<ShortFormInfo> short_forms;
    // Indexes into items, sorted by part: the order Pack writes a group's
    // answers in, so ScorePacked finds each next to the one before.
    std::vector<int> by_part;
  };

  // Validates the catalog and compiles its expressions. INVALID_ARGUMENT
  // names the offending entry: duplicate ids, an item id that is not
  // "<instrument id>.<item>", choice items without options,
  // overlapping or gapped bands, an expression naming an unknown item.
  static absl::StatusOr<std::shared_ptr<const CatalogIndex>> Build(
      scoring::v1::Catalog catalog);

  // Reads a catalog from a protobuf text-format file, then Build()s it;
  // errors name the file.
  static absl::StatusOr<std::shared_ptr<const CatalogIndex>> LoadFile(
      const std::string& path);

  const scoring::v1::Catalog& catalog() const { return catalog_; }
  const std::vector<InstrumentInfo>& instruments() const {
    return instruments_;
  }
  const scoring::v1::Item* FindItem(absl::string_view id) const;
  const scoring::v1::Instrument* FindInstrument(absl::string_view id) const;
  // The instrument an item belongs to (nullptr for unknown items).
  const scoring::v1::Instrument* InstrumentOfItem(
      absl::string_view item_id) const;
  // Index into instruments() of an instrument / an item's instrument, or -1.
  int InstrumentIndex(absl::string_view instrument_id) const;
  int ItemInstrumentIndex(absl::string_view item_id) const;
  // The names expressions may use: items, instrument scores, short forms.
  const expr::Schema& schema() const { return schema_; }
  // Set names the catalog's expressions use; every ruleset must define them.
  const std::vector<std::string>& set_names() const { return set_names_; }

  // Checks one answer against its item: known item, value of the right kind
  // and within the item's options/bounds/codes. INVALID_ARGUMENT names
  // `field` (e.g. "answers[3]") but never echoes the value given.
  absl::Status ValidateAnswer(const common::v1::Answer& answer,
                              absl::string_view field) const;

  // Validates `answers` and scores every instrument in catalog order into
  // `result->scores` and `values` (sized to the schema in use, which extends
  // this catalog's). Applicability and ask conditions decide what is absent
  // (not asked because it does not apply: comparisons false) and what is
  // unknown (asked for but missing: never read as a low score). Errors:
  // INVALID_ARGUMENT naming the answer (unknown item, bad value, answered
  // twice, an item that does not apply) or an unknown administered
  // instrument. Answers imply their instrument was administered. With
  // `inapplicable` set, answers to items that do not apply are listed there
  // and ignored instead of failing (intake drops them when an earlier answer
  // changes).
  absl::Status ScoreInstruments(
      const google::protobuf::RepeatedPtrField<common::v1::Answer>& answers,
      const google::protobuf::RepeatedPtrField<std::string>& administered,
      const expr::SetTable& sets, expr::Value* values,
      scoring::v1::ScoringResult* result,
      std::vector<std::string>* inapplicable = nullptr, bool detail = true,
      const std::vector<int>* min_answered = nullptr) const;
  // (Without `detail`, scores carry only what routing and digests use:
  // completeness, total or mean, band id, screen_positive; no labels, LOINC
  // codes, missing item ids or derived values.) `min_answered`, when given,
  // holds per instrument (catalog order) the fewest answered scored items a
  // mean-scored instrument needs, overriding the catalog's (a ruleset's
  // InstrumentRule); 0 keeps the catalog's.
  //
  // Completeness counts scored items only: an unscored item (PHQ-9 item 10,
  // ASQ item 5) missing or declined never makes its instrument incomplete;
  // rules that use it read it as unknown. Instruments with no scoring (the
  // context, the ketamine pre-screen) are complete when every required,
  // applicable item is answered.

  // The same from the packed form (packed_answers.h), which lists the
  // administered instruments itself; errors name "packed_answers" and the
  // item id, never a value.
  absl::Status ScorePacked(
      absl::string_view packed, const expr::SetTable& sets, expr::Value* values,
      scoring::v1::ScoringResult* result, bool detail = true,
      const std::vector<int>* min_answered = nullptr) const;

  // The band a score falls in: the band with the greatest min not above
  // it (bands run from their min up to the next band's min). nullptr below
  // the first band.
  static const scoring::v1::Band* BandFor(
      const scoring::v1::Instrument& instrument, double level);

  // True when the answer's value fits the item (no allocation); see
  // ValidateAnswer for the message.
  static bool ValueFits(const scoring::v1::Item& item,
                        const common::v1::Answer& answer) {
    return ValueFits(item, packed::AnswerValue::Of(answer));
  }
  static bool ValueFits(const scoring::v1::Item& item,
                        const packed::AnswerValue& value);

 private:
  CatalogIndex() = default;
  absl::Status Index();
  // The value an answer gives its item's slot, into *out; false when it does
  // not fit the item (kind, option, range or code). ValueFits's check and
  // the value in one pass, codes by lookup: the scoring loops' check.
  static bool FitValue(const ItemInfo& item, const packed::AnswerValue& value,
                       expr::Value* out);
  // Scores once the answers are in their slots (answer_at: per slot, the
  // answer's position or -1; administered: per instrument). `packed` only
  // changes how errors name an answer.
  absl::Status ScorePlaced(std::vector<int>& answer_at,
                           std::vector<char>& administered, bool packed,
                           const expr::SetTable& sets, expr::Value* values,
                           scoring::v1::ScoringResult* result,
                           std::vector<std::string>* inapplicable, bool detail,
                           const std::vector<int>* min_answered) const;

  scoring::v1::Catalog catalog_;
  std::vector<InstrumentInfo> instruments_;
  absl::flat_hash_map<std::string, std::pair<int, int>>
      items_;  // -> (ins, item)
  absl::flat_hash_map<std::string, int> instrument_index_;
  expr::Schema schema_;
  std::vector<std::string> set_names_;
};

}  // namespace aqueduct::scoring

#endif  // AQUEDUCT_SERVICES_SCORING_CATALOG_H_
