#include "services/scoring/catalog.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"

namespace aqueduct::scoring {
namespace {

bool HasValue(const expr::Value& v) {
  return v.kind == expr::Value::Kind::kNumber ||
         v.kind == expr::Value::Kind::kCode;
}

using scoring::v1::Instrument;
using scoring::v1::Item;

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

// Bands: sorted by min, a band covers [min, next band's min), the last one
// [min, max]. Integer (SUM) scales must have no gaps: max + 1 == next min.
absl::Status ValidateBands(const Instrument& ins) {
  if (ins.bands().empty()) return absl::OkStatus();
  std::vector<const scoring::v1::Band*> bands;
  for (const auto& b : ins.bands()) bands.push_back(&b);
  std::sort(bands.begin(), bands.end(),
            [](auto* a, auto* b) { return a->min() < b->min(); });
  absl::flat_hash_set<std::string> ids;
  for (size_t i = 0; i < bands.size(); ++i) {
    const auto& b = *bands[i];
    const std::string where = absl::StrCat(ins.id(), " band \"", b.id(), "\"");
    if (b.id().empty()) return Invalid(ins.id(), "band without id");
    if (!ids.insert(b.id()).second) return Invalid(where, "duplicate band id");
    if (b.max() < b.min()) return Invalid(where, "max below min");
    if (i + 1 < bands.size()) {
      const auto& next = *bands[i + 1];
      if (b.max() >= next.min()) {
        return Invalid(where,
                       absl::StrCat("overlaps band \"", next.id(), "\""));
      }
      if (ins.scoring() == scoring::v1::SUM && b.max() + 1 != next.min()) {
        return Invalid(where, absl::StrCat("leaves a gap before band \"",
                                           next.id(), "\""));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateItem(const Item& item) {
  if (item.id().empty()) return Invalid("item", "without id");
  if (item.text().empty()) return Invalid(item.id(), "item without text");
  switch (item.kind()) {
    case scoring::v1::CHOICE: {
      if (item.options().empty()) return Invalid(item.id(), "no options");
      absl::flat_hash_set<int> values;
      absl::flat_hash_set<std::string> codes;
      for (const auto& o : item.options()) {
        if (!values.insert(o.value()).second)
          return Invalid(item.id(), "duplicate option value");
        if (o.text().empty()) return Invalid(item.id(), "option without text");
        if (!o.code().empty() && !codes.insert(o.code()).second) {
          return Invalid(item.id(), "duplicate option code");
        }
      }
      return absl::OkStatus();
    }
    case scoring::v1::INTEGER:
      if (item.max_value() < item.min_value())
        return Invalid(item.id(), "max_value below min_value");
      return absl::OkStatus();
    case scoring::v1::CODE:
      if (item.codes().empty()) return Invalid(item.id(), "no codes");
      return absl::OkStatus();
    default:
      return Invalid(item.id(), "kind not set");
  }
}

absl::StatusOr<expr::Expr> CompileIn(absl::string_view text,
                                     const expr::Schema& schema,
                                     absl::string_view where) {
  auto e = expr::Expr::Compile(text, schema);
  if (!e.ok()) return Invalid(where, e.status().message());
  return e;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const CatalogIndex>> CatalogIndex::Build(
    scoring::v1::Catalog catalog) {
  std::shared_ptr<CatalogIndex> index(new CatalogIndex());
  index->catalog_ = std::move(catalog);
  if (absl::Status s = index->Index(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("catalog: ", s.message()));
  }
  return std::shared_ptr<const CatalogIndex>(std::move(index));
}

absl::Status CatalogIndex::Index() {
  const auto& cat = catalog_;
  if (cat.version().empty()) return Invalid("version", "is empty");
  if (cat.instruments().empty()) return Invalid("instruments", "none defined");
  schema_.set_defer_sets(true);  // sets come from each ruleset

  // Pass 1: validate and declare every name, so expressions may refer to
  // any instrument (evaluation order decides what is known when).
  for (int i = 0; i < cat.instruments_size(); ++i) {
    const Instrument& ins = cat.instruments(i);
    if (ins.id().empty()) return Invalid("instrument", "without id");
    if (absl::StrContains(ins.id(), '.'))
      return Invalid(ins.id(), "instrument id contains '.'");
    if (!instrument_index_.emplace(ins.id(), i).second) {
      return Invalid(ins.id(), "duplicate instrument id");
    }
    if (ins.items().empty()) return Invalid(ins.id(), "has no items");
    InstrumentInfo info;
    info.def = &ins;
    for (int j = 0; j < ins.items_size(); ++j) {
      const Item& item = ins.items(j);
      RETURN_IF_ERROR(ValidateItem(item));
      // Item ids are "<instrument id>.<item>": answers are grouped under
      // their instrument by that prefix (packed_answers.h).
      if (!absl::StartsWith(item.id(), ins.id() + ".") ||
          item.id().size() == ins.id().size() + 1) {
        return Invalid(item.id(), absl::StrCat("item id must be \"", ins.id(),
                                               ".<item>\""));
      }
      if (!items_.emplace(item.id(), std::make_pair(i, j)).second) {
        return Invalid(item.id(), "duplicate item id");
      }
      std::vector<std::string> codes;
      if (item.kind() == scoring::v1::CHOICE) {
        for (const auto& o : item.options()) {
          if (!o.code().empty()) codes.push_back(o.code());
        }
      } else if (item.kind() == scoring::v1::CODE) {
        codes.assign(item.codes().begin(), item.codes().end());
      }
      auto slot = schema_.Declare(item.id(),
                                  item.kind() == scoring::v1::CODE
                                      ? expr::Type::kItemCode
                                      : expr::Type::kItemNumber,
                                  std::move(codes));
      if (!slot.ok()) return Invalid(item.id(), slot.status().message());
      info.items.push_back(
          ItemInfo{&item,
                   absl::string_view(item.id()).substr(ins.id().size() + 1),
                   *slot,
                   {}});
      if (item.kind() == scoring::v1::CODE) {
        for (int c = 0; c < item.codes_size(); ++c)
          info.items.back().codes.try_emplace(item.codes(c), c);
      }
    }
    info.by_part.resize(info.items.size());
    for (size_t j = 0; j < info.items.size(); ++j)
      info.by_part[j] = static_cast<int>(j);
    std::sort(info.by_part.begin(), info.by_part.end(), [&info](int a, int b) {
      return info.items[a].part < info.items[b].part;
    });
    RETURN_IF_ERROR(ValidateBands(ins));
    auto declare =
        [&](const std::string& name, expr::Type type,
            std::vector<std::string> codes = {}) -> absl::StatusOr<int> {
      auto slot = schema_.Declare(name, type, std::move(codes));
      if (!slot.ok()) return Invalid(ins.id(), slot.status().message());
      return slot;
    };
    switch (ins.scoring()) {
      case scoring::v1::SUM: {
        ASSIGN_OR_RETURN(auto s,
                         declare(ins.id() + ".total", expr::Type::kNumber));
        info.total_slot = s;
        break;
      }
      case scoring::v1::MEAN_0_100: {
        ASSIGN_OR_RETURN(auto s,
                         declare(ins.id() + ".mean", expr::Type::kNumber));
        info.mean_slot = s;
        for (const Item& item : ins.items()) {
          if (item.kind() != scoring::v1::CHOICE)
            return Invalid(item.id(), "MEAN_0_100 needs choice items");
          for (const auto& o : item.options()) {
            if (o.value() < 0 || o.value() > 100)
              return Invalid(item.id(), "option value outside 0-100");
          }
        }
        if (ins.min_answered() < 0 || ins.min_answered() > ins.items_size()) {
          return Invalid(ins.id(), "min_answered outside 0..number of items");
        }
        break;
      }
      default:
        if (!ins.bands().empty() || !ins.positive_if().empty()) {
          return Invalid(ins.id(),
                         "bands or positive_if need a scoring method");
        }
    }
    if (!ins.bands().empty()) {
      std::vector<std::string> ids;
      for (const auto& b : ins.bands()) ids.push_back(b.id());
      ASSIGN_OR_RETURN(auto s,
                       declare(ins.id() + ".band", expr::Type::kCode, ids));
      info.band_slot = s;
    }
    if (!ins.positive_if().empty()) {
      ASSIGN_OR_RETURN(auto s,
                       declare(ins.id() + ".positive", expr::Type::kBool));
      info.positive_slot = s;
    }
    ASSIGN_OR_RETURN(auto complete,
                     declare(ins.id() + ".complete", expr::Type::kBool));
    info.complete_slot = complete;
    for (int extra : ins.extras()) {
      if (extra == scoring::v1::PHQ9_MDD_COUNT) {
        if (ins.items_size() < 9)
          return Invalid(ins.id(), "PHQ9_MDD_COUNT needs the 9 PHQ-9 items");
        auto c = declare(ins.id() + ".mdd_count", expr::Type::kNumber);
        auto p = declare(ins.id() + ".provisional_mdd", expr::Type::kBool);
        if (!c.ok()) return c.status();
        if (!p.ok()) return p.status();
        info.mdd_count_slot = *c;
        info.provisional_mdd_slot = *p;
        info.mdd_count_name = ins.id() + ".mdd_count";
        info.provisional_mdd_name = ins.id() + ".provisional_mdd";
      }
    }
    instruments_.push_back(std::move(info));
  }
  // Short forms (after all items are declared: they name items).
  for (InstrumentInfo& info : instruments_) {
    for (const auto& sf : info.def->short_forms()) {
      const std::string where =
          absl::StrCat(info.def->id(), " short form ", sf.id());
      if (sf.id().empty() || sf.item_ids().empty())
        return Invalid(where, "needs an id and items");
      ShortFormInfo sfi;
      sfi.def = &sf;
      for (const auto& item_id : sf.item_ids()) {
        int slot = -1;
        const auto* e = schema_.Find(item_id, &slot);
        if (e == nullptr || e->type != expr::Type::kItemNumber) {
          return Invalid(
              where, absl::StrCat("\"", item_id, "\" is not a choice item"));
        }
        sfi.item_slots.push_back(slot);
      }
      auto t = schema_.Declare(sf.id() + ".total", expr::Type::kNumber);
      auto p = schema_.Declare(sf.id() + ".positive", expr::Type::kBool);
      if (!t.ok()) return Invalid(where, t.status().message());
      if (!p.ok()) return Invalid(where, p.status().message());
      sfi.total_slot = *t;
      sfi.positive_slot = *p;
      sfi.total_name = sf.id() + ".total";
      sfi.explanation = absl::StrCat(
          sf.title(), ": sum of ", absl::StrJoin(sf.item_ids(), " + "),
          "; positive at ", sf.positive_min(), " or more.");
      info.short_forms.push_back(std::move(sfi));
    }
  }
  // Pass 2: compile every expression against the complete schema.
  absl::flat_hash_set<std::string> sets;
  auto note_sets = [&](const expr::Expr& e) {
    for (const auto& s : e.sets()) {
      if (sets.insert(s).second) set_names_.push_back(s);
    }
  };
  for (InstrumentInfo& info : instruments_) {
    const Instrument& ins = *info.def;
    auto ask =
        CompileIn(ins.ask_if(), schema_, absl::StrCat(ins.id(), " ask_if"));
    auto applies = CompileIn(ins.applies_if(), schema_,
                             absl::StrCat(ins.id(), " applies_if"));
    auto positive = CompileIn(ins.positive_if(), schema_,
                              absl::StrCat(ins.id(), " positive_if"));
    if (!ask.ok()) return ask.status();
    if (!applies.ok()) return applies.status();
    if (!positive.ok()) return positive.status();
    ASSIGN_OR_RETURN(auto ends,
                     CompileIn(ins.ends_flow_if(), schema_,
                               absl::StrCat(ins.id(), " ends_flow_if")));
    if (ins.asked_first() && ins.ask_if().empty()) {
      return Invalid(ins.id(),
                     "asked_first needs an ask_if (it moves the instrument up "
                     "once that holds)");
    }
    info.ends_flow_if = std::move(ends);
    note_sets(info.ends_flow_if);
    info.ask_if = std::move(*ask);
    info.applies_if = std::move(*applies);
    info.positive_if = std::move(*positive);
    note_sets(info.ask_if);
    note_sets(info.applies_if);
    note_sets(info.positive_if);
    for (ItemInfo& item : info.items) {
      ASSIGN_OR_RETURN(auto a,
                       CompileIn(item.def->applies_if(), schema_,
                                 absl::StrCat(item.def->id(), " applies_if")));
      item.applies_if = std::move(a);
      note_sets(item.applies_if);
    }
  }
  return absl::OkStatus();
}

absl::Status ReadTextProto(const std::string& path,
                           google::protobuf::Message* message) {
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat("file ", path, " cannot be read"));
  std::stringstream buf;
  buf << in.rdbuf();
  class Collector : public google::protobuf::io::ErrorCollector {
   public:
    void AddError(int line, int column, const std::string& message) override {
      if (error.empty())
        error = absl::StrCat("line ", line + 1, " column ", column + 1, ": ",
                             message);
    }
    std::string error;
  } collector;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  if (!parser.ParseFromString(buf.str(), message)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", collector.error));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const CatalogIndex>> CatalogIndex::LoadFile(
    const std::string& path) {
  scoring::v1::Catalog catalog;
  if (absl::Status s = ReadTextProto(path, &catalog); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("catalog ", s.message()));
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
  if (it == items_.end()) return nullptr;
  return instruments_[it->second.first].items[it->second.second].def;
}

const Instrument* CatalogIndex::FindInstrument(absl::string_view id) const {
  int i = InstrumentIndex(id);
  return i < 0 ? nullptr : instruments_[i].def;
}

int CatalogIndex::InstrumentIndex(absl::string_view id) const {
  auto it = instrument_index_.find(id);
  return it == instrument_index_.end() ? -1 : it->second;
}

int CatalogIndex::ItemInstrumentIndex(absl::string_view item_id) const {
  auto it = items_.find(item_id);
  return it == items_.end() ? -1 : it->second.first;
}

const Instrument* CatalogIndex::InstrumentOfItem(absl::string_view id) const {
  int i = ItemInstrumentIndex(id);
  return i < 0 ? nullptr : instruments_[i].def;
}

namespace {

// The value an answer gives `item`'s slot, into *out; false when it does not
// fit the item (kind, option, range or code). `find_code` gives a code's
// index in item.codes(), or -1.
template <typename FindCode>
bool FitValueWith(const Item& item, const packed::AnswerValue& value,
                  expr::Value* out, const FindCode& find_code) {
  using Kind = packed::AnswerValue::Kind;
  switch (value.kind) {
    case Kind::kDeclined:
      *out = expr::Value::Declined();
      return true;
    case Kind::kOption:
      if (item.kind() != scoring::v1::CHOICE) return false;
      for (const auto& o : item.options()) {
        if (o.value() == value.number) {
          *out = expr::Value::Number(o.value(), o.code());
          return true;
        }
      }
      return false;
    case Kind::kInteger:
      if (item.kind() != scoring::v1::INTEGER ||
          value.number < item.min_value() || value.number > item.max_value()) {
        return false;
      }
      *out = expr::Value::Number(value.number);
      return true;
    case Kind::kCode: {
      if (item.kind() != scoring::v1::CODE) return false;
      const int c = find_code(value.code);
      if (c < 0) return false;
      // The catalog's copy of the code: results must not keep references
      // into the request.
      *out = expr::Value::Code(item.codes(c));
      return true;
    }
    case Kind::kNone:
      return false;
  }
  return false;
}

}  // namespace

bool CatalogIndex::ValueFits(const Item& item,
                             const packed::AnswerValue& value) {
  expr::Value unused;
  return FitValueWith(item, value, &unused, [&item](absl::string_view code) {
    for (int c = 0; c < item.codes_size(); ++c) {
      if (item.codes(c) == code) return c;
    }
    return -1;
  });
}

bool CatalogIndex::FitValue(const ItemInfo& info,
                            const packed::AnswerValue& value,
                            expr::Value* out) {
  return FitValueWith(*info.def, value, out, [&info](absl::string_view code) {
    auto it = info.codes.find(code);
    return it == info.codes.end() ? -1 : it->second;
  });
}

absl::Status CatalogIndex::ValidateAnswer(const common::v1::Answer& answer,
                                          absl::string_view field) const {
  if (answer.item_id().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".item_id: is required"));
  }
  const Item* item = FindItem(answer.item_id());
  if (item == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".item_id: \"", answer.item_id(), "\" is not a catalog item"));
  }
  using common::v1::Answer;
  switch (answer.value_case()) {
    case Answer::VALUE_NOT_SET:
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": no value given for ", item->id()));
    case Answer::kDeclined:
      if (!answer.declined()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".declined: must be true when set"));
      }
      return absl::OkStatus();
    default:
      break;
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
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".integer_value: outside ", item->min_value(),
                         "..", item->max_value(), " for ", item->id()));
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
      return absl::InternalError(
          absl::StrCat("item ", item->id(), " has no kind"));
  }
}

const scoring::v1::Band* CatalogIndex::BandFor(
    const scoring::v1::Instrument& instrument, double level) {
  const scoring::v1::Band* band = nullptr;
  for (const auto& b : instrument.bands()) {
    if (level >= b.min() && (band == nullptr || b.min() > band->min()))
      band = &b;
  }
  return band;
}

namespace {
struct Placement {
  std::vector<int> answer_at;  // per slot: position of the answer, or -1
  std::vector<char> administered;
};
}  // namespace

absl::Status CatalogIndex::ScoreInstruments(
    const google::protobuf::RepeatedPtrField<common::v1::Answer>& answers,
    const google::protobuf::RepeatedPtrField<std::string>& administered,
    const expr::SetTable& sets, expr::Value* values,
    scoring::v1::ScoringResult* result, std::vector<std::string>* inapplicable,
    bool detail, const std::vector<int>* min_answered) const {
  using common::v1::Answer;
  thread_local Placement scratch;
  scratch.answer_at.assign(schema_.size(), -1);
  scratch.administered.assign(instruments_.size(), 0);

  // Answers: validate and place each in its item's slot.
  for (int i = 0; i < answers.size(); ++i) {
    const Answer& a = answers[i];
    // One lookup per answer, and no message built unless something is wrong
    // (this loop runs ~50 times per screening scored).
    auto found = items_.find(a.item_id());
    expr::Value value;
    if (found == items_.end() ||
        !FitValue(instruments_[found->second.first].items[found->second.second],
                  packed::AnswerValue::Of(a), &value)) {
      return ValidateAnswer(a, absl::StrCat("answers.answers[", i, "]"));
    }
    const ItemInfo& info_item =
        instruments_[found->second.first].items[found->second.second];
    const int slot = info_item.slot;
    if (scratch.answer_at[slot] >= 0) {
      return absl::InvalidArgumentError(absl::StrCat("answers.answers[", i,
                                                     "].item_id: ", a.item_id(),
                                                     " is answered twice"));
    }
    scratch.answer_at[slot] = i;
    values[slot] = value;
    scratch.administered[found->second.first] = 1;
  }
  for (int i = 0; i < administered.size(); ++i) {
    int k = InstrumentIndex(administered[i]);
    if (k < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("administered_instruments[", i, "]: \"", administered[i],
                       "\" is not a catalog instrument"));
    }
    scratch.administered[k] = 1;
  }
  return ScorePlaced(scratch.answer_at, scratch.administered, false, sets,
                     values, result, inapplicable, detail, min_answered);
}

absl::Status CatalogIndex::ScorePacked(
    absl::string_view packed_answers, const expr::SetTable& sets,
    expr::Value* values, scoring::v1::ScoringResult* result, bool detail,
    const std::vector<int>* min_answered) const {
  thread_local Placement scratch;
  scratch.answer_at.assign(schema_.size(), -1);
  scratch.administered.assign(instruments_.size(), 0);
  packed::Reader reader(packed_answers);
  packed::Reader::Entry e;
  const InstrumentInfo* ins = nullptr;
  size_t cursor = 0;  // into by_part: Pack sorts a group's answers, so the next
                      // is usually here
  int position = 0;
  while (reader.Next(&e)) {
    if (e.group) {
      const int k = InstrumentIndex(e.instrument);
      if (k < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("packed_answers: \"", e.instrument,
                         "\" is not a catalog instrument"));
      }
      if (scratch.administered[k]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "packed_answers: instrument ", e.instrument, " appears twice"));
      }
      scratch.administered[k] = 1;
      ins = &instruments_[k];
      cursor = 0;
      continue;
    }
    const size_t n = ins->items.size();
    const ItemInfo* item = nullptr;
    for (size_t step = 0; step < n; ++step) {
      const size_t at = (cursor + step) % n;
      const ItemInfo& candidate = ins->items[ins->by_part[at]];
      if (candidate.part == e.item) {
        item = &candidate;
        cursor = (at + 1) % n;
        break;
      }
    }
    expr::Value value;
    if (item == nullptr || !FitValue(*item, e.value, &value)) {
      // Rebuild the answer only to name what is wrong.
      common::v1::Answer a;
      a.set_item_id(absl::StrCat(e.instrument, ".", e.item));
      e.value.To(&a);
      return ValidateAnswer(a,
                            absl::StrCat("packed_answers[", a.item_id(), "]"));
    }
    if (scratch.answer_at[item->slot] >= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "packed_answers: ", item->def->id(), " is answered twice"));
    }
    scratch.answer_at[item->slot] = position++;
    values[item->slot] = value;
  }
  if (!reader.status().ok()) return reader.status();
  return ScorePlaced(scratch.answer_at, scratch.administered, true, sets,
                     values, result, nullptr, detail, min_answered);
}

absl::Status CatalogIndex::ScorePlaced(
    std::vector<int>& answer_at, std::vector<char>& administered, bool packed,
    const expr::SetTable& sets, expr::Value* values,
    scoring::v1::ScoringResult* result, std::vector<std::string>* inapplicable,
    bool detail, const std::vector<int>* min_answered) const {
  using expr::Truth;
  using expr::Value;
  using scoring::v1::InstrumentScore;
  // How an error names an answer.
  auto where = [packed](int at) {
    return packed ? std::string("packed_answers: ")
                  : absl::StrCat("answers.answers[", at, "].item_id: ");
  };

  // Instruments, in catalog order (each may depend on the ones before).
  for (size_t k = 0; k < instruments_.size(); ++k) {
    const InstrumentInfo& info = instruments_[k];
    const scoring::v1::Instrument& ins = *info.def;
    const Truth applies = info.applies_if.Eval(values, sets);
    const Truth asked = info.ask_if.Eval(values, sets);
    if (applies == Truth::kFalse) {
      for (const auto& item : info.items) {
        if (answer_at[item.slot] >= 0 && inapplicable != nullptr) {
          inapplicable->push_back(item.def->id());
          answer_at[item.slot] = -1;
          values[item.slot] = Value::Absent();
          continue;
        }
        if (answer_at[item.slot] >= 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              where(answer_at[item.slot]), item.def->id(), " does not apply: ",
              ins.applies_note().empty() ? "its condition does not hold"
                                         : ins.applies_note()));
        }
      }
      administered[k] = 0;  // an instrument that does not apply is not scored
    }
    InstrumentScore* score = result->add_scores();
    score->set_instrument_id(ins.id());
    if (detail) score->set_loinc_total(ins.loinc_total());
    auto set_scores = [&](Value v) {
      for (int slot :
           {info.total_slot, info.mean_slot, info.band_slot, info.positive_slot,
            info.mdd_count_slot, info.provisional_mdd_slot}) {
        if (slot >= 0) values[slot] = v;
      }
      for (const auto& sf : info.short_forms) {
        values[sf.total_slot] = v;
        values[sf.positive_slot] = v;
      }
      values[info.complete_slot] = Value::Bool(false);
    };
    if (!administered[k]) {
      score->set_completeness(scoring::v1::NOT_ADMINISTERED);
      // Not asked because it does not apply: absent (comparisons false).
      // Asked-for but missing: unknown (never read as a low score).
      const bool expected = applies != Truth::kFalse && asked != Truth::kFalse;
      const Value fill = expected ? Value::Unknown() : Value::Absent();
      for (const auto& item : info.items) values[item.slot] = fill;
      set_scores(fill);
      continue;
    }
    // Items that do not apply are absent; answering one is an error.
    double sum = 0;
    int scored_answered = 0;
    int missing = 0;
    for (const auto& item : info.items) {
      const Truth item_applies = item.applies_if.Eval(values, sets);
      const int at = answer_at[item.slot];
      if (item_applies == Truth::kFalse) {
        if (at >= 0 && inapplicable != nullptr) {
          inapplicable->push_back(item.def->id());
        } else if (at >= 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              where(at), item.def->id(), " does not apply: ",
              item.def->applies_note().empty() ? "its condition does not hold"
                                               : item.def->applies_note()));
        }
        values[item.slot] = Value::Absent();
        continue;
      }
      const Value& v = values[item.slot];
      const bool scored_scale =
          ins.scoring() != scoring::v1::SCORING_METHOD_UNSPECIFIED;
      const bool scored = scored_scale && !item.def->unscored();
      if (!HasValue(v)) {
        // Completeness counts scored items only (reference section 9.3); an
        // instrument with no scoring needs its required items.
        if (scored || (!scored_scale && item.def->required())) {
          ++missing;
          if (detail) score->add_missing_item_ids(item.def->id());
        }
        continue;
      }
      if (!scored) continue;
      ++scored_answered;
      sum += item.def->reverse_scored() ? 100.0 - v.number : v.number;
    }
    bool complete = missing == 0;
    double level = sum;
    if (ins.scoring() == scoring::v1::MEAN_0_100) {
      // The mean of the answered items once enough are answered; with every
      // item needed (the catalog's v1 choice) this is "none missing".
      int need = ins.min_answered() > 0 ? ins.min_answered() : ins.items_size();
      if (min_answered != nullptr && (*min_answered)[k] > 0)
        need = (*min_answered)[k];
      complete = scored_answered >= need && scored_answered > 0;
      level = scored_answered > 0 ? sum / scored_answered : 0;
    }
    score->set_completeness(complete ? scoring::v1::COMPLETE
                                     : scoring::v1::INCOMPLETE);
    set_scores(Value::Unknown());
    values[info.complete_slot] = Value::Bool(complete);
    if (complete) {
      if (ins.scoring() == scoring::v1::SUM) {
        score->set_total(static_cast<int32_t>(sum));
        values[info.total_slot] = Value::Number(sum);
      } else if (ins.scoring() == scoring::v1::MEAN_0_100) {
        score->set_mean(level);
        values[info.mean_slot] = Value::Number(level);
      }
      if (info.band_slot >= 0) {
        const scoring::v1::Band* band = BandFor(ins, level);
        if (band != nullptr) {
          score->set_band(band->id());
          if (detail) score->set_band_label(band->label());
          values[info.band_slot] = Value::Code(band->id());
        }
      }
      if (info.mdd_count_slot >= 0) {
        // Kroenke 2001: items 1-8 count at >= 2 ("more than half the days"),
        // item 9 at >= 1; provisional major depressive syndrome: >= 5
        // symptoms, one of them item 1 or 2.
        int count = 0;
        bool core = false;
        for (int i = 0; i < 9; ++i) {
          const double v = values[info.items[i].slot].number;
          if (i == 8 ? v >= 1 : v >= 2) {
            ++count;
            core = core || i < 2;
          }
        }
        values[info.mdd_count_slot] = Value::Number(count);
        values[info.provisional_mdd_slot] = Value::Bool(count >= 5 && core);
        if (detail) {
          scoring::v1::DerivedValue* c = score->add_derived();
          c->set_name(info.mdd_count_name);
          c->set_value(count);
          c->set_explanation(
              "Items 1-8 scored 2 or more, plus item 9 scored 1 or more "
              "(Kroenke 2001).");
          scoring::v1::DerivedValue* p = score->add_derived();
          p->set_name(info.provisional_mdd_name);
          p->set_value(count >= 5 && core ? 1 : 0);
          p->set_explanation(
              "1 when at least 5 symptoms count and one of them is item 1 or "
              "2.");
        }
      }
    }
    for (const auto& sf : info.short_forms) {
      double sf_sum = 0;
      bool sf_complete = true;
      for (int slot : sf.item_slots) {
        if (values[slot].kind != Value::Kind::kNumber) {
          sf_complete = false;
          break;
        }
        sf_sum += values[slot].number;
      }
      if (!sf_complete) continue;
      const bool positive = sf_sum >= sf.def->positive_min();
      values[sf.total_slot] = Value::Number(sf_sum);
      values[sf.positive_slot] = Value::Bool(positive);
      if (!detail) continue;
      scoring::v1::DerivedValue* d = score->add_derived();
      d->set_name(sf.total_name);
      d->set_value(sf_sum);
      d->set_explanation(sf.explanation);
    }
    if (info.positive_slot >= 0) {
      const Truth positive = info.positive_if.Eval(values, sets);
      values[info.positive_slot] = Value::FromTruth(positive);
      score->set_screen_positive(positive == Truth::kTrue);
    }
  }

  return absl::OkStatus();
}

}  // namespace aqueduct::scoring
