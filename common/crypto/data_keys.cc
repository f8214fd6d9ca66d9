#include "common/crypto/data_keys.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace aqueduct::crypto {
namespace {

constexpr char kVersion = 0x01;
constexpr size_t kKeyBytes = 32, kNonceBytes = 12, kTagBytes = 16;

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter>;

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()),
                 static_cast<int>(n)) != 1)
    std::abort();
  return out;
}

const unsigned char* U(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Per thread: cipher contexts with the key schedule already done, one per
// (key set, key id, direction), so sealing does not redo it per value.
struct CachedCtx {
  uint64_t instance;
  std::string key_id;
  bool encrypt;
  CtxPtr ctx;
};
EVP_CIPHER_CTX* CachedContext(uint64_t instance, const std::string& key_id,
                              const std::string& key, bool encrypt) {
  thread_local std::vector<CachedCtx> cache;
  for (auto& c : cache) {
    if (c.instance == instance && c.encrypt == encrypt && c.key_id == key_id)
      return c.ctx.get();
  }
  if (cache.size() >= 16) cache.erase(cache.begin());
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  const bool ok =
      ctx != nullptr &&
      (encrypt ? EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                                    nullptr, nullptr)
               : EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                                    nullptr, nullptr)) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes,
                          nullptr) == 1 &&
      (encrypt
           ? EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, U(key), nullptr)
           : EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, U(key),
                                nullptr)) == 1;
  if (!ok) std::abort();
  cache.push_back(CachedCtx{instance, key_id, encrypt, std::move(ctx)});
  return cache.back().ctx.get();
}

// GCM nonces: 8 random bytes per thread (fresh when the thread first seals
// and whenever its counter wraps) and a 4-byte counter: never repeated
// under one key, without a random draw per value.
std::string NextNonce() {
  thread_local std::string prefix;
  thread_local uint32_t counter = 0;
  if (prefix.empty() || counter == 0xffffffffu) {
    prefix = RandomBytes(8);
    counter = 0;
  }
  ++counter;
  std::string nonce = prefix;
  for (int i = 3; i >= 0; --i)
    nonce.push_back(static_cast<char>((counter >> (8 * i)) & 0xff));
  return nonce;
}

}  // namespace

uint64_t DataKeys::NextInstance() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

absl::StatusOr<DataKeys> DataKeys::Parse(absl::string_view text) {
  DataKeys keys;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    std::string key;
    if (parts.size() != 2 || !absl::Base64Unescape(parts[1], &key) ||
        key.size() != kKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("data keys line ", line_no,
                       ": expected \"<key id> <base64 of 32 bytes>\""));
    }
    if (parts[0].size() > 64)
      return absl::InvalidArgumentError(
          absl::StrCat("data keys line ", line_no, ": key id too long"));
    if (parts[0] == "pseudonym") {
      keys.pseudonym_key_ = key;
      continue;
    }
    if (!keys.keys_.emplace(parts[0], key).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data keys line ", line_no, ": duplicate key id ", parts[0]));
    }
    if (keys.active_.empty()) keys.active_ = parts[0];
  }
  if (keys.active_.empty())
    return absl::InvalidArgumentError("data keys: no data key");
  if (keys.pseudonym_key_.empty())
    return absl::InvalidArgumentError("data keys: no \"pseudonym\" key");
  return keys;
}

absl::StatusOr<DataKeys> DataKeys::FromEnvironment() {
  const char* file = std::getenv("AQUEDUCT_DATA_KEYS_FILE");
  if (file != nullptr && *file != '\0') {
    std::ifstream in(file);
    if (!in)
      return absl::InvalidArgumentError(
          absl::StrCat("AQUEDUCT_DATA_KEYS_FILE: cannot read ", file));
    std::stringstream text;
    text << in.rdbuf();
    auto keys = Parse(text.str());
    if (!keys.ok())
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": ", keys.status().message()));
    return keys;
  }
  const char* inline_keys = std::getenv("AQUEDUCT_DATA_KEYS");
  if (inline_keys != nullptr && *inline_keys != '\0') return Parse(inline_keys);
  return absl::InvalidArgumentError(
      "AQUEDUCT_DATA_KEYS_FILE (or AQUEDUCT_DATA_KEYS): required, the keys "
      "that encrypt stored answers and results");
}

DataKeys DataKeys::Random() {
  DataKeys keys;
  keys.active_ = "k1";
  keys.keys_["k1"] = RandomBytes(kKeyBytes);
  keys.pseudonym_key_ = RandomBytes(kKeyBytes);
  return keys;
}

std::string DataKeys::ToText() const {
  std::string out =
      absl::StrCat(active_, " ", absl::Base64Escape(keys_.at(active_)), "\n");
  for (const auto& [id, key] : keys_) {
    if (id != active_)
      absl::StrAppend(&out, id, " ", absl::Base64Escape(key), "\n");
  }
  absl::StrAppend(&out, "pseudonym ", absl::Base64Escape(pseudonym_key_), "\n");
  return out;
}

std::string DataKeys::Seal(absl::string_view plaintext,
                           absl::string_view associated) const {
  const std::string& key = keys_.at(active_);
  const std::string nonce = NextNonce();
  std::string out;
  out.reserve(2 + active_.size() + kNonceBytes + plaintext.size() + kTagBytes);
  out.push_back(kVersion);
  out.push_back(static_cast<char>(active_.size()));
  out.append(active_);
  out.append(nonce);
  const size_t body = out.size();
  out.resize(body + plaintext.size() + kTagBytes);
  unsigned char* dst = reinterpret_cast<unsigned char*>(out.data()) + body;
  EVP_CIPHER_CTX* ctx =
      CachedContext(instance_, active_, key, /*encrypt=*/true);
  int len = 0, total = 0;
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, U(nonce)) != 1 ||
      EVP_EncryptUpdate(ctx, nullptr, &len, U(associated),
                        static_cast<int>(associated.size())) != 1 ||
      EVP_EncryptUpdate(ctx, dst, &len, U(plaintext),
                        static_cast<int>(plaintext.size())) != 1) {
    std::abort();  // only on OpenSSL failure: never store in the clear
  }
  total = len;
  if (EVP_EncryptFinal_ex(ctx, dst + total, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes,
                          dst + plaintext.size()) != 1) {
    std::abort();
  }
  return out;
}

absl::StatusOr<std::string> DataKeys::Open(absl::string_view sealed,
                                           absl::string_view associated) const {
  if (sealed.size() < 2 || sealed[0] != kVersion)
    return absl::DataLossError("stored value is not encrypted");
  const size_t id_len = static_cast<unsigned char>(sealed[1]);
  if (sealed.size() < 2 + id_len + kNonceBytes + kTagBytes)
    return absl::DataLossError("stored value is truncated");
  const absl::string_view id = sealed.substr(2, id_len);
  auto it = keys_.find(id);
  if (it == keys_.end()) {
    return absl::DataLossError(absl::StrCat("stored value sealed with key \"",
                                            id, "\", which is not loaded"));
  }
  const absl::string_view nonce = sealed.substr(2 + id_len, kNonceBytes);
  const absl::string_view body = sealed.substr(2 + id_len + kNonceBytes);
  const absl::string_view cipher = body.substr(0, body.size() - kTagBytes);
  std::string tag(body.substr(body.size() - kTagBytes));
  std::string out(cipher.size(), '\0');
  EVP_CIPHER_CTX* ctx =
      CachedContext(instance_, it->first, it->second, /*encrypt=*/false);
  int len = 0;
  bool ok =
      EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, U(nonce)) == 1 &&
      EVP_DecryptUpdate(ctx, nullptr, &len, U(associated),
                        static_cast<int>(associated.size())) == 1 &&
      EVP_DecryptUpdate(ctx, reinterpret_cast<unsigned char*>(out.data()), &len,
                        U(cipher), static_cast<int>(cipher.size())) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) ==
          1;
  int final_len = 0;
  ok = ok && EVP_DecryptFinal_ex(
                 ctx, reinterpret_cast<unsigned char*>(out.data()) + len,
                 &final_len) == 1;
  if (!ok)
    return absl::DataLossError(
        "stored value does not authenticate (tampered, or not from here)");
  return out;
}

std::string DataKeys::Pseudonym(absl::string_view user_id) const {
  // Every call of a person's request needs their pseudonym, often more than
  // once; an HMAC through OpenSSL 3's one-shot API costs a few microseconds.
  // Each thread remembers the last few hundred (per key set).
  thread_local absl::flat_hash_map<std::pair<uint64_t, std::string>,
                                   std::string>
      cache;
  const auto cache_key = std::make_pair(instance_, std::string(user_id));
  if (auto it = cache.find(cache_key); it != cache.end()) return it->second;
  std::string out = ComputePseudonym(user_id);
  if (cache.size() >= 512) cache.clear();
  cache.emplace(cache_key, out);
  return out;
}

std::string DataKeys::ComputePseudonym(absl::string_view user_id) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), pseudonym_key_.data(),
       static_cast<int>(pseudonym_key_.size()), U(user_id), user_id.size(), mac,
       &mac_len);
  // Base32 (RFC 4648 alphabet, lower case) of the first 130 bits.
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned int i = 0; i < mac_len && out.size() < 26; ++i) {
    buffer = (buffer << 8) | mac[i];
    bits += 8;
    while (bits >= 5 && out.size() < 26) {
      out.push_back(kAlphabet[(buffer >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  return out;
}

}  // namespace aqueduct::crypto
