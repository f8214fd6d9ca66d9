#include "services/scoring/catalog.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/string_view.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace aqueduct::scoring {
namespace {

using scoring::v1::AnswerKind;
using scoring::v1::Instrument;
using scoring::v1::Item;

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("catalog: ", where, ": ", what));
}

absl::Status ValidateBands(const Instrument& ins) {
  if (ins.bands().empty()) return absl::OkStatus();
  std::vector<const scoring::v1::Band*> bands;
  for (const auto& b : ins.bands()) bands.push_back(&b);
  std::sort(bands.begin(), bands.end(),
            [](auto* a, auto* b) { return a->min() < b->min(); });
  for (size_t i = 0; i < bands.size(); ++i) {
    if (bands[i]->id().empty()) return Invalid(ins.id(), "band without id");
    if (bands[i]->max() < bands[i]->min()) {
      return Invalid(absl::StrCat(ins.id(), " band ", bands[i]->id()),
                     "max below min");
    }
    if (i > 0 && bands[i]->min() != bands[i - 1]->max() + 1) {
      return Invalid(absl::StrCat(ins.id(), " band ", bands[i]->id()),
                     "does not start right after the previous band");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const CatalogIndex>> CatalogIndex::Build(
    scoring::v1::Catalog catalog) {
  std::shared_ptr<CatalogIndex> index(new CatalogIndex());
  index->catalog_ = std::move(catalog);
  const auto& cat = index->catalog_;
  if (cat.version().empty()) return Invalid("version", "is empty");
  if (cat.instruments().empty()) return Invalid("instruments", "none defined");
  for (const Instrument& ins : cat.instruments()) {
    if (ins.id().empty()) return Invalid("instrument", "without id");
    if (!index->instruments_.emplace(ins.id(), &ins).second) {
      return Invalid(ins.id(), "duplicate instrument id");
    }
    if (ins.items().empty()) return Invalid(ins.id(), "has no items");
    for (const Item& item : ins.items()) {
      if (item.id().empty()) return Invalid(ins.id(), "item without id");
      if (item.text().empty()) return Invalid(item.id(), "item without text");
      if (!index->items_.emplace(item.id(), &item).second) {
        return Invalid(item.id(), "duplicate item id");
      }
      index->item_instrument_.emplace(item.id(), &ins);
      switch (item.kind()) {
        case scoring::v1::CHOICE: {
          if (item.options().empty()) return Invalid(item.id(), "no options");
          absl::flat_hash_set<int> values;
          for (const auto& o : item.options()) {
            if (!values.insert(o.value()).second) {
              return Invalid(item.id(), "duplicate option value");
            }
            if (o.text().empty()) return Invalid(item.id(), "option without text");
          }
          break;
        }
        case scoring::v1::INTEGER:
          if (item.max_value() < item.min_value()) {
            return Invalid(item.id(), "max_value below min_value");
          }
          break;
        case scoring::v1::CODE:
          if (item.codes().empty()) return Invalid(item.id(), "no codes");
          break;
        default:
          return Invalid(item.id(), "kind not set");
      }
    }
    if (absl::Status s = ValidateBands(ins); !s.ok()) return s;
  }
  return std::shared_ptr<const CatalogIndex>(std::move(index));
}

absl::StatusOr<std::shared_ptr<const CatalogIndex>> CatalogIndex::LoadFile(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("catalog file ", path, " cannot be read"));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  scoring::v1::Catalog catalog;

  // Collect the parser's line/column message instead of printing it.
  class Collector : public google::protobuf::io::ErrorCollector {
   public:
    void AddError(int line, int column, const std::string& message) override {
      if (error.empty()) {
        error = absl::StrCat("line ", line + 1, " column ", column + 1, ": ",
                             message);
      }
    }
    std::string error;
  } collector;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  if (!parser.ParseFromString(buf.str(), &catalog)) {
    return absl::InvalidArgumentError(
        absl::StrCat("catalog file ", path, ": ", collector.error));
  }
  auto built = Build(std::move(catalog));
  if (!built.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", built.status().message()));
  }
  return built;
}

const Item* CatalogIndex::FindItem(absl::string_view id) const {
  auto it = items_.find(id);
  return it == items_.end() ? nullptr : it->second;
}

const Instrument* CatalogIndex::FindInstrument(absl::string_view id) const {
  auto it = instruments_.find(id);
  return it == instruments_.end() ? nullptr : it->second;
}

const Instrument* CatalogIndex::InstrumentOfItem(absl::string_view id) const {
  auto it = item_instrument_.find(id);
  return it == item_instrument_.end() ? nullptr : it->second;
}

absl::Status CatalogIndex::ValidateAnswer(const common::v1::Answer& answer,
                                          absl::string_view field) const {
  if (answer.item_id().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".item_id: is required"));
  }
  const Item* item = FindItem(answer.item_id());
  if (item == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".item_id: \"", answer.item_id(), "\" is not a catalog item"));
  }
  using common::v1::Answer;
  if (answer.value_case() == Answer::kDeclined) {
    if (!answer.declined()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".declined: must be true when set"));
    }
    return absl::OkStatus();
  }
  switch (item->kind()) {
    case scoring::v1::CHOICE: {
      if (answer.value_case() != Answer::kOptionValue) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".option_value: is required for choice item ", item->id()));
      }
      for (const auto& o : item->options()) {
        if (o.value() == answer.option_value()) return absl::OkStatus();
      }
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".option_value: not one of the options of ", item->id()));
    }
    case scoring::v1::INTEGER:
      if (answer.value_case() != Answer::kIntegerValue) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".integer_value: is required for number item ", item->id()));
      }
      if (answer.integer_value() < item->min_value() ||
          answer.integer_value() > item->max_value()) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".integer_value: outside ", item->min_value(), "..",
            item->max_value(), " for ", item->id()));
      }
      return absl::OkStatus();
    case scoring::v1::CODE:
      if (answer.value_case() != Answer::kCodeValue) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".code_value: is required for code item ", item->id()));
      }
      for (const auto& c : item->codes()) {
        if (c == answer.code_value()) return absl::OkStatus();
      }
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".code_value: not an allowed code of ", item->id()));
    default:
      return absl::InternalError(absl::StrCat("item ", item->id(), " has no kind"));
  }
}

}  // namespace aqueduct::scoring
