#include "common/auth/jwt.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/sha256.h"

namespace aqueduct::auth {

namespace {

constexpr size_t kMaxTokenBytes = 8192;
// Verified tokens remembered per Verifier (a few MB at most).
constexpr size_t kVerifiedCacheEntries = 16384;

enum class Alg { kES256, kRS256 };

absl::string_view AlgName(Alg a) {
  return a == Alg::kES256 ? "ES256" : "RS256";
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct SigDeleter {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
using SigPtr = std::unique_ptr<ECDSA_SIG, SigDeleter>;

// The algorithm a key pins, or an error naming what is wrong with it.
absl::StatusOr<Alg> AlgOfKey(EVP_PKEY* pkey) {
  switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_EC: {
      char group[64] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &len) != 1 ||
          absl::string_view(group, len) != "prime256v1") {
        return absl::InvalidArgumentError("an EC key must be on P-256 (ES256)");
      }
      return Alg::kES256;
    }
    case EVP_PKEY_RSA:
      if (EVP_PKEY_get_bits(pkey) < 2048)
        return absl::InvalidArgumentError(
            "an RSA key must have at least 2048 bits");
      return Alg::kRS256;
    default:
      return absl::InvalidArgumentError(
          "only P-256 EC (ES256) and RSA (RS256) keys are accepted");
  }
}

// Strict base64url without padding (RFC 7515 section 2).
bool DecodeB64Url(absl::string_view in, std::string* out) {
  for (char c : in) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_')
      return false;
  }
  if (in.size() % 4 == 1) return false;
  return absl::WebSafeBase64Unescape(in, out);
}

bool ParseJsonObject(const std::string& json, google::protobuf::Struct* out) {
  google::protobuf::util::JsonParseOptions options;
  return google::protobuf::util::JsonStringToMessage(json, out, options).ok();
}

const google::protobuf::Value* Field(const google::protobuf::Struct& s,
                                     const char* name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? nullptr : &it->second;
}

bool StringField(const google::protobuf::Struct& s, const char* name,
                 std::string* out) {
  const auto* v = Field(s, name);
  if (v == nullptr || v->kind_case() != google::protobuf::Value::kStringValue)
    return false;
  *out = v->string_value();
  return true;
}

bool IsStateCode(const std::string& s) {
  return s.size() == 2 &&
         absl::ascii_isupper(static_cast<unsigned char>(s[0])) &&
         absl::ascii_isupper(static_cast<unsigned char>(s[1]));
}

// JWS ES256 signatures are R || S (32 bytes each); OpenSSL wants DER.
bool RawToDer(absl::string_view raw, std::string* der) {
  if (raw.size() != 64) return false;
  SigPtr sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32,
                        nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32,
                        32, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr ||
      ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return false;
  der->resize(static_cast<size_t>(len));
  unsigned char* p = reinterpret_cast<unsigned char*>(der->data());
  return i2d_ECDSA_SIG(sig.get(), &p) == len;
}

bool DerToRaw(absl::string_view der, std::string* raw) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  SigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (sig == nullptr) return false;
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  raw->assign(64, '\0');
  unsigned char* out = reinterpret_cast<unsigned char*>(raw->data());
  return BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
}

absl::Status Reject(Rejection r, Rejection* why) {
  if (why != nullptr) *why = r;
  return absl::UnauthenticatedError(RejectionName(r));
}

}  // namespace

struct KeySet::Key {
  PkeyPtr pkey;
  Alg alg;
  KeyGrants grants;
};

KeySet::KeySet() = default;
KeySet::~KeySet() = default;
KeySet::KeySet(KeySet&&) noexcept = default;
KeySet& KeySet::operator=(KeySet&&) noexcept = default;

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kPatient:
      return "patient";
    case Role::kClinician:
      return "clinician";
    case Role::kPhysician:
      return "physician";
    case Role::kBatch:
      return "batch";
    case Role::kOperator:
      return "operator";
    case Role::kService:
      return "service";
  }
  return "?";
}

bool ParseRole(absl::string_view name, Role* role) {
  for (Role r : {Role::kPatient, Role::kClinician, Role::kPhysician,
                 Role::kBatch, Role::kOperator, Role::kService}) {
    if (name == RoleName(r)) {
      *role = r;
      return true;
    }
  }
  return false;
}

absl::string_view RejectionName(Rejection r) {
  switch (r) {
    case Rejection::kMissing:
      return "missing";
    case Rejection::kMalformed:
      return "malformed";
    case Rejection::kAlgorithm:
      return "algorithm";
    case Rejection::kUnknownKey:
      return "unknown_key";
    case Rejection::kSignature:
      return "signature";
    case Rejection::kExpired:
      return "expired";
    case Rejection::kNotYetValid:
      return "not_yet_valid";
    case Rejection::kIssuer:
      return "issuer";
    case Rejection::kAudience:
      return "audience";
    case Rejection::kClaims:
      return "claims";
    case Rejection::kKeyRole:
      return "key_role";
  }
  return "?";
}

absl::StatusOr<KeyGrants> KeyGrants::Parse(absl::string_view text) {
  KeyGrants grants;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = line.substr(0, line.find('#'));
    for (absl::string_view word :
         absl::StrSplit(line, absl::ByAnyChar(" \t\r,"), absl::SkipEmpty())) {
      Role role;
      if (absl::ConsumePrefix(&word, "service:")) {
        if (word.empty() || word.size() > 128) {
          return absl::InvalidArgumentError(
              "service: needs the subject it may name, e.g. service:intake");
        }
        grants.services.emplace(word);
      } else if (ParseRole(word, &role) && role != Role::kService) {
        grants.roles.insert(role);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "\"", absl::CHexEscape(word.substr(0, 64)),
            "\": not a role (patient, clinician, physician, batch, operator, "
            "or service:<subject>)"));
      }
    }
  }
  if (grants.roles.empty() && grants.services.empty())
    return absl::InvalidArgumentError("grants no role");
  return grants;
}

bool KeyGrants::Allows(Role role, absl::string_view subject) const {
  if (role == Role::kService) return services.count(subject) > 0;
  return roles.count(role) > 0;
}

absl::Status KeySet::Add(const std::string& key_id, absl::string_view pem,
                         KeyGrants grants) {
  if (key_id.empty()) return absl::InvalidArgumentError("key id: is empty");
  if (keys_.count(key_id) > 0)
    return absl::InvalidArgumentError(
        absl::StrCat("key ", key_id, ": duplicate key id"));
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr pkey(bio == nullptr
                   ? nullptr
                   : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("key ", key_id, ": not a PEM public key"));
  }
  auto alg = AlgOfKey(pkey.get());
  if (!alg.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("key ", key_id, ": ", alg.status().message()));
  auto key = std::make_unique<Key>();
  key->pkey = std::move(pkey);
  key->alg = *alg;
  key->grants = std::move(grants);
  keys_.emplace(key_id, std::move(key));
  return absl::OkStatus();
}

absl::StatusOr<KeySet> KeySet::LoadDirectory(const std::string& dir) {
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".pem") files.push_back(entry.path());
  }
  if (ec)
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": cannot read the key directory: ", ec.message()));
  std::sort(files.begin(), files.end());
  KeySet keys;
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream text;
    text << in.rdbuf();
    std::filesystem::path roles_file = f;
    roles_file.replace_extension(".roles");
    std::ifstream roles_in(roles_file);
    if (!roles_in) {
      return absl::InvalidArgumentError(absl::StrCat(
          roles_file.string(),
          ": cannot read it; every key needs one saying which roles it may "
          "sign, e.g. \"patient clinician physician batch operator\" for "
          "an identity provider's key, \"service:intake\" for intake's"));
    }
    std::stringstream roles_text;
    roles_text << roles_in.rdbuf();
    auto grants = KeyGrants::Parse(roles_text.str());
    if (!grants.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(roles_file.string(), ": ", grants.status().message()));
    }
    if (absl::Status s =
            keys.Add(f.stem().string(), text.str(), *std::move(grants));
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(f.string(), ": ", s.message()));
    }
  }
  if (keys.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": no <key id>.pem public keys (tokens could not be verified)"));
  }
  return keys;
}

size_t KeySet::size() const { return keys_.size(); }

const KeySet::Key* KeySet::Find(absl::string_view key_id) const {
  auto it = keys_.find(key_id);
  return it == keys_.end() ? nullptr : it->second.get();
}

struct Verifier::Cache {
  struct Entry {
    Identity identity;
    absl::Time expires;
    absl::Time not_before;
  };
  absl::Mutex mu;
  absl::flat_hash_map<std::string, Entry> entries ABSL_GUARDED_BY(mu);
};

Verifier::Verifier(KeySet keys, std::string issuer, std::string audience,
                   absl::Duration leeway)
    : keys_(std::move(keys)),
      issuer_(std::move(issuer)),
      audience_(std::move(audience)),
      leeway_(leeway),
      cache_(std::make_shared<Cache>()) {}

absl::StatusOr<Identity> Verifier::Verify(absl::string_view token,
                                          absl::Time now,
                                          Rejection* why) const {
  if (token.empty()) return Reject(Rejection::kMissing, why);
  if (token.size() > kMaxTokenBytes) return Reject(Rejection::kMalformed, why);
  // A token seen before skips the signature and the JSON: only its times
  // are checked again. Keyed by its SHA-256, so the cache holds no token.
  std::string digest = crypto::Sha256(token);
  {
    absl::MutexLock lock(&cache_->mu);
    auto it = cache_->entries.find(digest);
    if (it != cache_->entries.end()) {
      if (now > it->second.expires + leeway_)
        return Reject(Rejection::kExpired, why);
      if (now + leeway_ < it->second.not_before)
        return Reject(Rejection::kNotYetValid, why);
      return it->second.identity;
    }
  }
  Cache::Entry entry;
  auto id = VerifyFull(token, now, why, &entry.expires, &entry.not_before);
  if (!id.ok()) return id;
  entry.identity = *id;
  absl::MutexLock lock(&cache_->mu);
  // Bounded: a full cache starts over (a few thousand signatures checked
  // again) rather than tracking ages.
  if (cache_->entries.size() >= kVerifiedCacheEntries) cache_->entries.clear();
  cache_->entries.emplace(std::move(digest), std::move(entry));
  return id;
}

absl::StatusOr<Identity> Verifier::VerifyFull(absl::string_view token,
                                              absl::Time now, Rejection* why,
                                              absl::Time* expires,
                                              absl::Time* not_before) const {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty())
    return Reject(Rejection::kMalformed, why);
  std::string header_json, payload_json, signature;
  google::protobuf::Struct header;
  if (!DecodeB64Url(parts[0], &header_json) ||
      !ParseJsonObject(header_json, &header)) {
    return Reject(Rejection::kMalformed, why);
  }
  std::string alg, kid;
  if (!StringField(header, "alg", &alg))
    return Reject(Rejection::kMalformed, why);
  if (alg != "ES256" && alg != "RS256")
    return Reject(Rejection::kAlgorithm, why);  // none, HS*, others
  if (Field(header, "crit") != nullptr)
    return Reject(Rejection::kMalformed, why);  // no extensions understood
  if (!StringField(header, "kid", &kid))
    return Reject(Rejection::kUnknownKey, why);
  const KeySet::Key* key = keys_.Find(kid);
  if (key == nullptr) return Reject(Rejection::kUnknownKey, why);
  if (alg != AlgName(key->alg))
    return Reject(Rejection::kAlgorithm, why);  // the key pins the algorithm

  // The signature, over the first two parts exactly as sent.
  if (!DecodeB64Url(parts[2], &signature) || signature.empty())
    return Reject(Rejection::kSignature, why);
  std::string der;
  if (key->alg == Alg::kES256) {
    if (!RawToDer(signature, &der)) return Reject(Rejection::kSignature, why);
  } else {
    der = signature;
  }
  const absl::string_view signed_part =
      token.substr(0, parts[0].size() + 1 + parts[1].size());
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                           key->pkey.get()) != 1 ||
      EVP_DigestVerify(
          ctx.get(), reinterpret_cast<const unsigned char*>(der.data()),
          der.size(),
          reinterpret_cast<const unsigned char*>(signed_part.data()),
          signed_part.size()) != 1) {
    return Reject(Rejection::kSignature, why);
  }

  // Claims, only once the signature holds.
  google::protobuf::Struct claims;
  if (!DecodeB64Url(parts[1], &payload_json) ||
      !ParseJsonObject(payload_json, &claims)) {
    return Reject(Rejection::kMalformed, why);
  }
  std::string iss;
  if (!StringField(claims, "iss", &iss) || iss != issuer_)
    return Reject(Rejection::kIssuer, why);
  const auto* aud = Field(claims, "aud");
  bool audience_ok = false;
  if (aud != nullptr &&
      aud->kind_case() == google::protobuf::Value::kStringValue) {
    audience_ok = aud->string_value() == audience_;
  } else if (aud != nullptr &&
             aud->kind_case() == google::protobuf::Value::kListValue) {
    for (const auto& v : aud->list_value().values()) {
      audience_ok = audience_ok ||
                    (v.kind_case() == google::protobuf::Value::kStringValue &&
                     v.string_value() == audience_);
    }
  }
  if (!audience_ok) return Reject(Rejection::kAudience, why);
  const auto* exp = Field(claims, "exp");
  if (exp == nullptr ||
      exp->kind_case() != google::protobuf::Value::kNumberValue ||
      now > absl::FromUnixSeconds(static_cast<int64_t>(exp->number_value())) +
                leeway_) {
    return Reject(Rejection::kExpired, why);
  }
  *expires = absl::FromUnixSeconds(static_cast<int64_t>(exp->number_value()));
  *not_before = absl::InfinitePast();
  if (const auto* nbf = Field(claims, "nbf"); nbf != nullptr) {
    if (nbf->kind_case() != google::protobuf::Value::kNumberValue ||
        now + leeway_ <
            absl::FromUnixSeconds(static_cast<int64_t>(nbf->number_value()))) {
      return Reject(Rejection::kNotYetValid, why);
    }
    *not_before =
        absl::FromUnixSeconds(static_cast<int64_t>(nbf->number_value()));
  }
  Identity id;
  id.key_id = kid;
  std::string role;
  if (!StringField(claims, "sub", &id.subject) || id.subject.empty() ||
      id.subject.size() > 128 || !StringField(claims, "role", &role) ||
      !ParseRole(role, &id.role)) {
    return Reject(Rejection::kClaims, why);
  }
  if (!key->grants.Allows(id.role, id.subject))
    return Reject(Rejection::kKeyRole, why);
  if (id.role == Role::kClinician || id.role == Role::kPhysician) {
    const auto* states = Field(claims, "states");
    if (states == nullptr ||
        states->kind_case() != google::protobuf::Value::kListValue ||
        states->list_value().values().empty()) {
      return Reject(Rejection::kClaims, why);
    }
    for (const auto& v : states->list_value().values()) {
      if (v.kind_case() != google::protobuf::Value::kStringValue ||
          !IsStateCode(v.string_value())) {
        return Reject(Rejection::kClaims, why);
      }
      id.licensed_states.push_back(v.string_value());
    }
  }
  return id;
}

absl::StatusOr<std::string> Sign(const Claims& claims,
                                 absl::string_view private_key_pem,
                                 const std::string& key_id,
                                 const std::string& alg_override) {
  BioPtr bio(BIO_new_mem_buf(private_key_pem.data(),
                             static_cast<int>(private_key_pem.size())));
  PkeyPtr pkey(bio == nullptr ? nullptr
                              : PEM_read_bio_PrivateKey(bio.get(), nullptr,
                                                        nullptr, nullptr));
  if (pkey == nullptr)
    return absl::InvalidArgumentError("signing key: not a PEM private key");
  auto alg = AlgOfKey(pkey.get());
  if (!alg.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("signing key: ", alg.status().message()));

  google::protobuf::Struct header, payload;
  (*header.mutable_fields())["alg"].set_string_value(
      alg_override.empty() ? std::string(AlgName(*alg)) : alg_override);
  (*header.mutable_fields())["typ"].set_string_value("JWT");
  if (!key_id.empty())
    (*header.mutable_fields())["kid"].set_string_value(key_id);
  auto& f = *payload.mutable_fields();
  if (!claims.issuer.empty()) f["iss"].set_string_value(claims.issuer);
  if (!claims.more_audiences.empty()) {
    auto* list = f["aud"].mutable_list_value();
    for (const auto& a : claims.more_audiences)
      list->add_values()->set_string_value(a);
    if (!claims.audience.empty())
      list->add_values()->set_string_value(claims.audience);
  } else if (!claims.audience.empty()) {
    f["aud"].set_string_value(claims.audience);
  }
  if (!claims.subject.empty()) f["sub"].set_string_value(claims.subject);
  if (!claims.role.empty()) f["role"].set_string_value(claims.role);
  if (!claims.states.empty()) {
    for (const auto& s : claims.states)
      f["states"].mutable_list_value()->add_values()->set_string_value(s);
  }
  if (claims.expires != absl::InfiniteFuture())
    f["exp"].set_number_value(
        static_cast<double>(absl::ToUnixSeconds(claims.expires)));
  if (claims.not_before != absl::InfinitePast()) {
    f["nbf"].set_number_value(
        static_cast<double>(absl::ToUnixSeconds(claims.not_before)));
  }
  std::string header_json, payload_json;
  if (!google::protobuf::util::MessageToJsonString(header, &header_json).ok() ||
      !google::protobuf::util::MessageToJsonString(payload, &payload_json)
           .ok()) {
    return absl::InternalError("token: cannot write JSON");
  }
  const std::string signing_input =
      absl::StrCat(absl::WebSafeBase64Escape(header_json), ".",
                   absl::WebSafeBase64Escape(payload_json));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                         pkey.get()) != 1 ||
      EVP_DigestSign(
          ctx.get(), nullptr, &len,
          reinterpret_cast<const unsigned char*>(signing_input.data()),
          signing_input.size()) != 1) {
    return absl::InternalError("token: signing failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(
          ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
          reinterpret_cast<const unsigned char*>(signing_input.data()),
          signing_input.size()) != 1) {
    return absl::InternalError("token: signing failed");
  }
  sig.resize(len);
  if (*alg == Alg::kES256) {
    std::string raw;
    if (!DerToRaw(sig, &raw))
      return absl::InternalError("token: signing failed");
    sig = std::move(raw);
  }
  return absl::StrCat(signing_input, ".", absl::WebSafeBase64Escape(sig));
}

absl::StatusOr<KeyPair> GenerateKeyPair(const std::string& type) {
  PkeyPtr pkey;
  if (type == "EC") {
    pkey.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  } else if (type == "RSA") {
    pkey.reset(
        EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("key type \"", type, "\": use EC or RSA"));
  }
  if (pkey == nullptr) return absl::InternalError("key generation failed");
  KeyPair out;
  for (bool priv : {true, false}) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    const int ok =
        priv ? PEM_write_bio_PrivateKey(bio.get(), pkey.get(), nullptr, nullptr,
                                        0, nullptr, nullptr)
             : PEM_write_bio_PUBKEY(bio.get(), pkey.get());
    if (ok != 1) return absl::InternalError("key export failed");
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    (priv ? out.private_pem : out.public_pem)
        .assign(data, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace aqueduct::auth
