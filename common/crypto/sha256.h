#ifndef AQUEDUCT_COMMON_CRYPTO_SHA256_H_
#define AQUEDUCT_COMMON_CRYPTO_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace aqueduct::crypto {

// SHA-256 of `data` (32 raw bytes). On hot paths (a token's cache key, a
// request id's tag on every page) OpenSSL 3's one-shot EVP_Digest fetches
// the algorithm and allocates a context per call; this fetches once and
// keeps a context per thread.
std::string Sha256(absl::string_view data);

}  // namespace aqueduct::crypto

#endif  // AQUEDUCT_COMMON_CRYPTO_SHA256_H_
