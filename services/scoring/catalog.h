#ifndef AQUEDUCT_SERVICES_SCORING_CATALOG_H_
#define AQUEDUCT_SERVICES_SCORING_CATALOG_H_

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protos/common/v1/common.pb.h"
#include "protos/scoring/v1/catalog.pb.h"

namespace aqueduct::scoring {

// A validated, indexed instrument catalog. Immutable once built, so it is
// shared freely between threads.
class CatalogIndex {
 public:
  // Validates the catalog (unique ids, every CHOICE item has options with
  // unique values, bands cover each instrument's range without gaps or
  // overlaps) and indexes it. INVALID_ARGUMENT names the offending entry.
  static absl::StatusOr<std::shared_ptr<const CatalogIndex>> Build(
      scoring::v1::Catalog catalog);

  // Reads a catalog from a protobuf text-format file, then Build()s it.
  static absl::StatusOr<std::shared_ptr<const CatalogIndex>> LoadFile(
      const std::string& path);

  const scoring::v1::Catalog& catalog() const { return catalog_; }
  const scoring::v1::Item* FindItem(absl::string_view id) const;
  const scoring::v1::Instrument* FindInstrument(absl::string_view id) const;
  // The instrument an item belongs to (nullptr for unknown items).
  const scoring::v1::Instrument* InstrumentOfItem(absl::string_view item_id) const;

  // Checks one answer against its item: known item, value of the right kind
  // and within the item's options/bounds/codes. INVALID_ARGUMENT names
  // `field` (e.g. "answers[3]") but never echoes the value given.
  absl::Status ValidateAnswer(const common::v1::Answer& answer,
                              absl::string_view field) const;

 private:
  CatalogIndex() = default;
  scoring::v1::Catalog catalog_;
  absl::flat_hash_map<std::string, const scoring::v1::Item*> items_;
  absl::flat_hash_map<std::string, const scoring::v1::Instrument*> instruments_;
  absl::flat_hash_map<std::string, const scoring::v1::Instrument*> item_instrument_;
};

}  // namespace aqueduct::scoring

#endif  // AQUEDUCT_SERVICES_SCORING_CATALOG_H_
