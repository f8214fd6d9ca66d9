#include "common/crypto/page_tokens.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace aqueduct::crypto {
namespace {

// Where a token belongs, as the seal's associated data.
std::string Binding(absl::string_view rpc, absl::string_view scope) {
  return absl::StrCat("page_token\n", rpc, "\n", scope);
}

// Longest token read: a position is a score and an id or an offset, far
// shorter; anything longer is not ours and is not decoded.
constexpr size_t kMaxTokenBytes = 1024;

}  // namespace

PageTokens::PageTokens()
    : own_keys_(std::make_shared<const DataKeys>(DataKeys::Random())),
      keys_(own_keys_.get()) {}

std::string PageTokens::Make(absl::string_view rpc, absl::string_view scope,
                             absl::string_view position) const {
  return absl::WebSafeBase64Escape(keys_->Seal(position, Binding(rpc, scope)));
}

absl::StatusOr<std::string> PageTokens::Read(absl::string_view rpc,
                                             absl::string_view scope,
                                             absl::string_view token) const {
  std::string sealed;
  if (token.size() <= kMaxTokenBytes &&
      absl::WebSafeBase64Unescape(token, &sealed)) {
    auto position = keys_->Open(sealed, Binding(rpc, scope));
    if (position.ok()) return position;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("page_token: not a next_page_token of ", rpc,
                   " for this request (pass the token unchanged, with the "
                   "same request otherwise)"));
}

}  // namespace aqueduct::crypto
