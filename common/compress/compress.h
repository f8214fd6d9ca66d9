#ifndef AQUEDUCT_COMMON_COMPRESS_COMPRESS_H_
#define AQUEDUCT_COMMON_COMPRESS_COMPRESS_H_

// Stored values made small before they are sealed: a completed screening's
// full result, answers and record (intake) and a referral case (referral).
// A result is ~1.8 kB, mostly fixed ruleset text (explanations, self-help
// plan texts, rule thresholds) in a few dozen fixed shapes; a dictionary
// trained on such values takes it to well under 0.2 kB.
//
// Layout: 0x00, the dictionary id, the stream. Dictionary 1 (read only):
// raw deflate (zlib) with a list of ruleset texts. Dictionaries 2
// (read only now) and 3 (current): a zstd frame (no checksum: the seal
// authenticates) with a dictionary trained by bench/dictionary/make.sh on
// the values intake and referral store (3: on results of ruleset v2 and
// scoring engine 2). A value that does not start with 0x00 is not
// packed and reads as it is: a serialized protobuf message never starts
// with 0x00 (there is no field 0), so values written before packing
// existed read unchanged.
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

// The dictionary Pack uses.
inline constexpr int kCurrentDictionary = 3;

// `data` packed with the current dictionary.
std::string Pack(absl::string_view data);

// `data` packed with dictionary `id` (1, 2 or 3): for tests that values written
// with an earlier dictionary still read. Unknown ids leave `data` unpacked.
std::string PackWith(int id, absl::string_view data);

// The original bytes of a packed value; a value that is not packed, as it
// is. DATA_LOSS for an unknown dictionary, a damaged stream or one longer
// than kMaxUnpackedBytes.
absl::StatusOr<std::string> Unpack(absl::string_view stored);

// Preset dictionary `id` ("" when there is none). Never changes once values
// are written with it.
absl::string_view Dictionary(int id);

}  // namespace aqueduct::compress

#endif  // AQUEDUCT_COMMON_COMPRESS_COMPRESS_H_
