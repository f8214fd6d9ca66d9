#ifndef AQUEDUCT_COMMON_CRYPTO_PAGE_TOKENS_H_
#define AQUEDUCT_COMMON_CRYPTO_PAGE_TOKENS_H_

// Page tokens: what a list RPC returns as next_page_token and takes back as
// page_token. Opaque to callers and integrity-protected: the position in
// the list (a Redis score and member, an offset) is sealed with the
// service's data keys (AES-256-GCM) and bound to the RPC and to the list it
// belongs to (e.g. the person whose results it pages), so a token a caller
// made up, changed, or took from another RPC or list is INVALID_ARGUMENT
// before anything reads it, and never reaches Redis. Sealing with the data
// keys (not a key of the process) keeps a token valid on every replica and
// across a key rotation while the old key is kept.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/crypto/data_keys.h"

namespace aqueduct::crypto {

class PageTokens {
 public:
  // Seals with `keys`, which must outlive this.
  explicit PageTokens(const DataKeys* keys) : keys_(keys) {}
  // With random keys of its own (tests): its tokens open only here.
  PageTokens();

  // The token for `position` in the list `scope` of `rpc`.
  std::string Make(absl::string_view rpc, absl::string_view scope,
                   absl::string_view position) const;
  // The position a token holds, or INVALID_ARGUMENT naming page_token when
  // it is not a next_page_token of `rpc` for the list `scope`.
  absl::StatusOr<std::string> Read(absl::string_view rpc,
                                   absl::string_view scope,
                                   absl::string_view token) const;

 private:
  std::shared_ptr<const DataKeys> own_keys_;
  const DataKeys* keys_;
};

}  // namespace aqueduct::crypto

#endif  // AQUEDUCT_COMMON_CRYPTO_PAGE_TOKENS_H_
