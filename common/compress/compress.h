#ifndef AQUEDUCT_COMMON_COMPRESS_COMPRESS_H_
#define AQUEDUCT_COMMON_COMPRESS_COMPRESS_H_

// Large stored values made small before they are sealed: a completed
// screening's full result (intake) and a referral case (referral) each carry
// ~1.8 kB of a result that is mostly fixed ruleset text (explanations,
// self-help plan texts, rule thresholds). Raw deflate (zlib) with a fixed
// preset dictionary of those texts takes them to ~0.4 kB.
//
// Layout: 0x00, the dictionary id (1), the deflate stream. A value that
// does not start with 0x00 is not packed and reads as it is: a serialized
// protobuf message never starts with 0x00 (there is no field 0), so values
// written before packing existed read unchanged.
//
// Compression happens before sealing (common/crypto), never after: sealed
// bytes do not compress, and compressing inside the seal keeps the length
// the only thing an observer of Redis learns, as before.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace aqueduct::compress {

// Largest value Unpack gives back; anything claiming more is refused as
// damaged (a stored value is a few kB).
inline constexpr size_t kMaxUnpackedBytes = 16 << 20;

// `data` packed with the current dictionary.
std::string Pack(absl::string_view data);

// The original bytes of a packed value; a value that is not packed, as it
// is. DATA_LOSS for an unknown dictionary, a damaged stream or one longer
// than kMaxUnpackedBytes.
absl::StatusOr<std::string> Unpack(absl::string_view stored);

// Preset dictionary `id` ("" when there is none). Never changes once values
// are written with it.
absl::string_view Dictionary(int id);

}  // namespace aqueduct::compress

#endif  // AQUEDUCT_COMMON_COMPRESS_COMPRESS_H_
