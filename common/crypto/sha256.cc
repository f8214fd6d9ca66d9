#include "common/crypto/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace aqueduct::crypto {
namespace {

const EVP_MD* Algorithm() {
  static const EVP_MD* md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  return md;
}

struct Context {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Context() { EVP_MD_CTX_free(ctx); }
};

}  // namespace

std::string Sha256(absl::string_view data) {
  thread_local Context c;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (c.ctx == nullptr ||
      EVP_DigestInit_ex2(c.ctx, Algorithm(), nullptr) != 1 ||
      EVP_DigestUpdate(c.ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(c.ctx, md, &len) != 1) {
    // Only an OpenSSL that cannot hash at all gets here; nothing sensible
    // can go on without it.
    std::abort();
  }
  return std::string(reinterpret_cast<const char*>(md), len);
}

}  // namespace aqueduct::crypto
