#ifndef AQUEDUCT_COMMON_CRYPTO_DATA_KEYS_H_
#define AQUEDUCT_COMMON_CRYPTO_DATA_KEYS_H_

// PHI at rest: values are sealed with AES-256-GCM (OpenSSL) before they go
// to Redis, each with the id of the key that sealed it, so keys rotate
// without rewriting data; and user ids in Redis key names are replaced by a
// keyed hash (HMAC-SHA256), so a dump does not list who was screened.
//
// Keys come from a file (AQUEDUCT_DATA_KEYS_FILE) or the environment
// (AQUEDUCT_DATA_KEYS), never from the repository. One key per line:
//   <key id> <base64 of 32 random bytes>
// The first data key seals new values; the others still open what they
// sealed (rotate: put the new key first, keep the old ones). The line
//   pseudonym <base64 of 32 random bytes>
// is the pseudonym key; it cannot rotate without re-keying Redis names.
// '#' starts a comment. `openssl rand -base64 32` makes a key.
//
// Sealed value: 0x01 | key id length (1 byte) | key id | 12-byte nonce |
// ciphertext | 16-byte tag. The associated data (where the value lives, e.g.
// the Redis key and field) must match on opening, so a value copied to
// another record does not open there.

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace aqueduct::crypto {

class DataKeys {
 public:
  // Errors name the line and what is wrong, never a key.
  static absl::StatusOr<DataKeys> Parse(absl::string_view text);
  // From AQUEDUCT_DATA_KEYS_FILE, else AQUEDUCT_DATA_KEYS; an error when
  // neither is set (a service never stores PHI in the clear).
  static absl::StatusOr<DataKeys> FromEnvironment();
  // Fresh random keys (tests, benchmarks): data key "k1" and a pseudonym key.
  static DataKeys Random();
  // The file format for Random()-like fresh keys (the run command's first
  // start uses openssl instead; tests use this).
  std::string ToText() const;

  std::string Seal(absl::string_view plaintext,
                   absl::string_view associated) const;
  // DATA_LOSS when the value is not sealed, names an unknown key, or does
  // not authenticate (tampered, or moved from elsewhere).
  absl::StatusOr<std::string> Open(absl::string_view sealed,
                                   absl::string_view associated) const;

  // A stable, unlinkable stand-in for a user id in key names: 26 base32
  // characters of HMAC-SHA256(pseudonym key, user id).
  std::string Pseudonym(absl::string_view user_id) const;

  const std::string& active_key_id() const { return active_; }

 private:
  // Identifies this key set in per-thread cipher caches (copies share it:
  // they hold the same keys).
  uint64_t instance_ = NextInstance();
  static uint64_t NextInstance();

  std::map<std::string, std::string, std::less<>> keys_;  // id -> 32 bytes
  std::string active_;
  std::string pseudonym_key_;

  std::string ComputePseudonym(absl::string_view user_id) const;
};

}  // namespace aqueduct::crypto

#endif  // AQUEDUCT_COMMON_CRYPTO_DATA_KEYS_H_
