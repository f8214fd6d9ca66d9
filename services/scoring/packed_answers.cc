#include "services/scoring/packed_answers.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"

namespace aqueduct::scoring::packed {
namespace {

enum : uint32_t {
  kOptionKind = 0,
  kIntegerKind = 1,
  kCodeKind = 2,
  kDeclinedKind = 3,
  kNoneKind = 4
};

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

uint64_t ZigZag(int32_t v) {
  return (static_cast<uint32_t>(v) << 1) ^ static_cast<uint32_t>(v >> 31);
}

int32_t UnZigZag(uint32_t v) {
  return static_cast<int32_t>((v >> 1) ^ (~(v & 1) + 1));
}

void PutString(absl::string_view s, std::string* out) {
  PutVarint(s.size(), out);
  out->append(s.data(), s.size());
}

}  // namespace

AnswerValue AnswerValue::Of(const common::v1::Answer& answer) {
  using common::v1::Answer;
  AnswerValue v;
  switch (answer.value_case()) {
    case Answer::kOptionValue:
      v.kind = Kind::kOption;
      v.number = answer.option_value();
      break;
    case Answer::kIntegerValue:
      v.kind = Kind::kInteger;
      v.number = answer.integer_value();
      break;
    case Answer::kCodeValue:
      v.kind = Kind::kCode;
      v.code = answer.code_value();
      break;
    case Answer::kDeclined:
      v.kind = answer.declined() ? Kind::kDeclined : Kind::kNone;
      break;
    default:
      break;
  }
  return v;
}

void AnswerValue::To(common::v1::Answer* answer) const {
  switch (kind) {
    case Kind::kOption:
      answer->set_option_value(number);
      break;
    case Kind::kInteger:
      answer->set_integer_value(number);
      break;
    case Kind::kCode:
      answer->set_code_value(std::string(code));
      break;
    case Kind::kDeclined:
      answer->set_declined(true);
      break;
    case Kind::kNone:
      answer->clear_value();
      break;
  }
}

absl::StatusOr<std::string> Pack(
    const std::vector<const common::v1::Answer*>& answers,
    const std::vector<absl::string_view>& administered) {
  // instrument id -> (item part, answer)
  std::map<absl::string_view,
           std::vector<std::pair<absl::string_view, const common::v1::Answer*>>>
      groups;
  for (size_t i = 0; i < answers.size(); ++i) {
    const absl::string_view id = answers[i]->item_id();
    const size_t dot = id.find('.');
    if (dot == absl::string_view::npos || dot == 0 || dot + 1 == id.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("answers[", i, "].item_id: \"", id,
                       "\" is not of the form <instrument>.<item>"));
    }
    groups[id.substr(0, dot)].emplace_back(id.substr(dot + 1), answers[i]);
  }
  for (size_t i = 0; i < administered.size(); ++i) {
    if (administered[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("administered_instruments[", i, "]: is empty"));
    }
    groups[administered[i]];
  }
  std::string out(1, kFormatVersion);
  out.reserve(16 * answers.size() + 8 * groups.size() + 1);
  for (auto& [instrument, items] : groups) {
    std::sort(items.begin(), items.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    PutString(instrument, &out);
    PutVarint(items.size(), &out);
    for (const auto& [item, answer] : items) {
      PutString(item, &out);
      const AnswerValue v = AnswerValue::Of(*answer);
      switch (v.kind) {
        case AnswerValue::Kind::kOption:
          PutVarint(ZigZag(v.number) << 3 | kOptionKind, &out);
          break;
        case AnswerValue::Kind::kInteger:
          PutVarint(ZigZag(v.number) << 3 | kIntegerKind, &out);
          break;
        case AnswerValue::Kind::kCode:
          PutVarint(static_cast<uint64_t>(v.code.size()) << 3 | kCodeKind,
                    &out);
          out.append(v.code.data(), v.code.size());
          break;
        case AnswerValue::Kind::kDeclined:
          PutVarint(kDeclinedKind, &out);
          break;
        case AnswerValue::Kind::kNone:
          PutVarint(kNoneKind, &out);
          break;
      }
    }
  }
  return out;
}

bool Reader::Fail(absl::string_view what) {
  status_ = absl::InvalidArgumentError(
      absl::StrCat("packed_answers: byte ", pos_, ": ", what));
  data_ = absl::string_view();
  return false;
}

bool Reader::ReadVarint(uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= data_.size()) return Fail("truncated");
    const uint8_t b = static_cast<uint8_t>(data_[pos_++]);
    result |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return Fail("varint longer than 10 bytes");
}

bool Reader::ReadBytes(uint64_t n, absl::string_view* out,
                       absl::string_view what) {
  if (n == 0) return Fail(absl::StrCat(what, " is empty"));
  if (n > data_.size() - pos_)
    return Fail(absl::StrCat(what, " runs past the end"));
  *out = data_.substr(pos_, n);
  pos_ += n;
  return true;
}

bool Reader::Next(Entry* e) {
  if (!status_.ok()) return false;
  if (pos_ == 0) {
    if (data_.empty())
      return Fail("empty (a packed form starts with its version byte)");
    if (data_[0] != kFormatVersion) {
      return Fail(absl::StrCat("format version ",
                               static_cast<int>(static_cast<uint8_t>(data_[0])),
                               " is not known (this build reads version 1)"));
    }
    pos_ = 1;
  }
  uint64_t v = 0;
  if (left_in_group_ == 0) {
    if (pos_ == data_.size()) return false;
    if (!ReadVarint(&v) || !ReadBytes(v, &e->instrument, "instrument id"))
      return false;
    uint64_t count = 0;
    if (!ReadVarint(&count)) return false;
    // Each answer takes at least three bytes: a bound that also stops a
    // forged count from looping.
    if (count > (data_.size() - pos_) / 3)
      return Fail("answer count runs past the end");
    instrument_ = e->instrument;
    e->group = true;
    e->count = static_cast<uint32_t>(count);
    left_in_group_ = e->count;
    return true;
  }
  e->group = false;
  e->instrument = instrument_;
  if (!ReadVarint(&v) || !ReadBytes(v, &e->item, "item id")) return false;
  uint64_t tag = 0;
  if (!ReadVarint(&tag)) return false;
  const uint32_t kind = static_cast<uint32_t>(tag & 7);
  const uint64_t value = tag >> 3;
  e->value = AnswerValue();
  switch (kind) {
    case kOptionKind:
    case kIntegerKind:
      if (value > 0xffffffffULL) return Fail("value outside 32 bits");
      e->value.kind = kind == kOptionKind ? AnswerValue::Kind::kOption
                                          : AnswerValue::Kind::kInteger;
      e->value.number = UnZigZag(static_cast<uint32_t>(value));
      break;
    case kCodeKind:
      e->value.kind = AnswerValue::Kind::kCode;
      if (!ReadBytes(value, &e->value.code, "code")) return false;
      break;
    case kDeclinedKind:
    case kNoneKind:
      if (value != 0)
        return Fail(absl::StrCat("answer kind ", kind, " carries no value"));
      e->value.kind = kind == kDeclinedKind ? AnswerValue::Kind::kDeclined
                                            : AnswerValue::Kind::kNone;
      break;
    default:
      return Fail(absl::StrCat("answer kind ", kind, " is not defined"));
  }
  --left_in_group_;
  return true;
}

absl::Status Unpack(absl::string_view packed, common::v1::AnswerSet* answers,
                    std::vector<std::string>* administered) {
  Reader reader(packed);
  Reader::Entry e;
  while (reader.Next(&e)) {
    if (e.group) {
      administered->emplace_back(e.instrument);
      continue;
    }
    common::v1::Answer* a = answers->add_answers();
    a->set_item_id(absl::StrCat(e.instrument, ".", e.item));
    e.value.To(a);
  }
  return reader.status();
}

}  // namespace aqueduct::scoring::packed
