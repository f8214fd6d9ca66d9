#ifndef AQUEDUCT_SERVICES_SCORING_PACKED_ANSWERS_H_
#define AQUEDUCT_SERVICES_SCORING_PACKED_ANSWERS_H_

// The packed form of a screening's answers
// (ScoreAnswersRequest.packed_answers): what intake stores for a completed
// screening and what re-scoring sends, a quarter of the size of the same
// answers as Answer messages and read by scoring without allocating. It needs
// no catalog to write or read: item ids are "<instrument id>.<item>" (the
// catalog enforces it), so the answers are grouped under their instrument id
// and each carries only its item part.
//
// Format, version 1 (varint = unsigned LEB128 as in protobuf; zigzag as in
// protobuf's sint32):
//
//   packed  := 0x01 group*
//   group   := varint(len) instrument-id varint(count) answer{count}
//   answer  := varint(len) item-part varint(tag) [code]
//   tag     := zigzag(value) << 3 | kind     kind 0: option_value
//                                            kind 1: integer_value
//            | len(code) << 3 | 2            kind 2: code_value, then its bytes
//            | 3                             kind 3: declined
//            | 4                             kind 4: no value given
//
// A group is an administered instrument: instruments listed in
// administered_instruments without answers are groups with count 0. Ids and
// codes are non-empty. Pack writes groups sorted by instrument id and the
// answers of a group sorted by item part, so equal answer sets pack to equal
// bytes.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "protos/common/v1/common.pb.h"

namespace aqueduct::scoring::packed {

inline constexpr char kFormatVersion = 0x01;

// The value of one answer without its item id (what an Answer's oneof
// holds), as views: no allocation, valid while what it was read from lives.
struct AnswerValue {
  enum class Kind : uint8_t { kNone = 0, kOption, kInteger, kCode, kDeclined };
  Kind kind = Kind::kNone;
  int32_t number = 0;      // kOption, kInteger
  absl::string_view code;  // kCode

  // An Answer's value; `declined: false` is kNone (no value given).
  static AnswerValue Of(const common::v1::Answer& answer);
  // Sets `answer`'s value (its item id is left alone).
  void To(common::v1::Answer* answer) const;
};

// Packs answers and administered instruments. INVALID_ARGUMENT names an item
// id that is not "<instrument>.<item>" (e.g. "answers[3].item_id"), never a
// value.
absl::StatusOr<std::string> Pack(
    const std::vector<const common::v1::Answer*>& answers,
    const std::vector<absl::string_view>& administered);

// Reads a packed form entry by entry without allocating. Every error is
// INVALID_ARGUMENT naming "packed_answers", the byte offset and what is wrong
// (truncated, unknown version or kind, empty id), never an answer's value.
class Reader {
 public:
  struct Entry {
    // True for the start of a group (`instrument` set, `count` answers
    // follow); false for an answer of the current group.
    bool group = false;
    absl::string_view instrument;
    uint32_t count = 0;
    absl::string_view
        item;  // the item part: the item id is instrument + "." + item
    AnswerValue value;
  };

  explicit Reader(absl::string_view packed) : data_(packed) {}
  // The next entry; false at the end or on an error (see status()).
  bool Next(Entry* entry);
  // OK unless Next stopped on an error.
  const absl::Status& status() const { return status_; }

 private:
  bool Fail(absl::string_view what);
  bool ReadVarint(uint64_t* v);
  bool ReadBytes(uint64_t n, absl::string_view* out, absl::string_view what);

  absl::string_view data_;
  size_t pos_ = 0;
  uint32_t left_in_group_ = 0;
  absl::string_view instrument_;
  absl::Status status_;
};

// Reads a packed form back into answers and administered instruments (one
// per group), e.g. to show a completed screening's answers; errors as Reader.
absl::Status Unpack(absl::string_view packed, common::v1::AnswerSet* answers,
                    std::vector<std::string>* administered);

}  // namespace aqueduct::scoring::packed

#endif  // AQUEDUCT_SERVICES_SCORING_PACKED_ANSWERS_H_
