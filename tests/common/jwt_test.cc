// Bearer token verification: every kind of bad token is refused with its
// reason (callers see only UNAUTHENTICATED), good tokens of every role and
// both algorithms pass, and keys rotate by key id.

#include "common/auth/jwt.h"

#include <fstream>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::auth {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1795000000);

class JwtTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ec_ = new KeyPair(*GenerateKeyPair("EC"));
    rsa_ = new KeyPair(*GenerateKeyPair("RSA"));
    other_ = new KeyPair(*GenerateKeyPair("EC"));
  }
  static void TearDownTestSuite() {
    delete ec_;
    delete rsa_;
    delete other_;
  }

  static KeyGrants Everything() {
    return *KeyGrants::Parse(
        "patient clinician physician batch operator service:intake");
  }

  Verifier MakeVerifier() {
    KeySet keys;
    EXPECT_THAT(keys.Add("ec1", ec_->public_pem, Everything()), IsOk());
    EXPECT_THAT(keys.Add("rsa1", rsa_->public_pem, Everything()), IsOk());
    return Verifier(std::move(keys), "https://aqueduct.test", "aqueduct");
  }

  static Claims Good(const std::string& role = "patient") {
    Claims c;
    c.issuer = "https://aqueduct.test";
    c.audience = "aqueduct";
    c.subject = "u1";
    c.role = role;
    if (role == "clinician" || role == "physician") c.states = {"NY", "FL"};
    c.expires = kNow + absl::Minutes(10);
    return c;
  }

  // The reason a token is refused, or "ok".
  std::string Why(const std::string& token) {
    Rejection why;
    auto id = MakeVerifier().Verify(token, kNow, &why);
    if (id.ok()) return "ok";
    EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(id.status().message(), RejectionName(why))
        << "the message is the reason only";
    return std::string(RejectionName(why));
  }

  static KeyPair* ec_;
  static KeyPair* rsa_;
  static KeyPair* other_;
};
KeyPair* JwtTest::ec_ = nullptr;
KeyPair* JwtTest::rsa_ = nullptr;
KeyPair* JwtTest::other_ = nullptr;

std::string B64(const std::string& s) { return absl::WebSafeBase64Escape(s); }

TEST_F(JwtTest, ValidTokensOfEveryRoleAndBothAlgorithmsPass) {
  for (const char* role :
       {"patient", "clinician", "physician", "batch", "operator"}) {
    for (auto [kid, key] : {std::pair{"ec1", ec_}, std::pair{"rsa1", rsa_}}) {
      auto token = Sign(Good(role), key->private_pem, kid);
      ASSERT_THAT(token, IsOk());
      auto id = MakeVerifier().Verify(*token, kNow);
      ASSERT_THAT(id, IsOk()) << role << " " << kid;
      EXPECT_EQ(RoleName(id->role), role);
      EXPECT_EQ(id->subject, "u1");
      EXPECT_EQ(id->key_id, kid);
      if (std::string(role) == "clinician" ||
          std::string(role) == "physician") {
        EXPECT_EQ(id->licensed_states, (std::vector<std::string>{"NY", "FL"}));
      } else {
        EXPECT_TRUE(id->licensed_states.empty());
      }
    }
  }
}

TEST_F(JwtTest, EveryBadTokenKindIsRefusedWithItsReason) {
  auto sign = [&](const Claims& c, const std::string& kid = "ec1",
                  const std::string& alg = "") {
    auto t =
        Sign(c, kid == "rsa1" ? rsa_->private_pem : ec_->private_pem, kid, alg);
    EXPECT_THAT(t, IsOk());
    return *t;
  };
  const std::string good = sign(Good());
  ASSERT_EQ(Why(good), "ok");
  std::vector<std::string> parts = absl::StrSplit(good, '.');

  EXPECT_EQ(Why(""), "missing");
  EXPECT_EQ(Why("not-a-token"), "malformed");
  EXPECT_EQ(Why("a.b"), "malformed");
  EXPECT_EQ(Why(good + ".x"), "malformed");
  EXPECT_EQ(Why("!!!." + parts[1] + "." + parts[2]), "malformed");
  EXPECT_EQ(Why(B64("{not json") + "." + parts[1] + "." + parts[2]),
            "malformed");
  EXPECT_EQ(Why(std::string(9000, 'a') + ".b.c"), "malformed");
  // Padding is not base64url as JWS uses it.
  EXPECT_EQ(Why(parts[0] + "=." + parts[1] + "." + parts[2]), "malformed");

  // alg none, with and without a signature.
  const std::string none_header =
      B64(R"({"alg":"none","typ":"JWT","kid":"ec1"})");
  EXPECT_EQ(Why(none_header + "." + parts[1] + "."), "algorithm");
  EXPECT_EQ(Why(none_header + "." + parts[1] + "." + parts[2]), "algorithm");
  // HS256 "signed" with the public key as the HMAC secret (the classic
  // RS/HS confusion): refused before any HMAC is computed.
  EXPECT_EQ(Why(B64(R"({"alg":"HS256","kid":"rsa1"})") + "." + parts[1] + "." +
                parts[2]),
            "algorithm");
  // An algorithm other than the one the key pins.
  EXPECT_EQ(Why(sign(Good(), "ec1", "RS256")), "algorithm");
  EXPECT_EQ(Why(sign(Good(), "rsa1", "ES256")), "algorithm");
  EXPECT_EQ(Why(B64(R"({"alg":"ES256","kid":"ec1","crit":["exp"]})") + "." +
                parts[1] + "." + parts[2]),
            "malformed");

  // Keys.
  EXPECT_EQ(Why(sign(Good(), "")), "unknown_key");
  auto unknown = Sign(Good(), other_->private_pem, "ec-retired");
  EXPECT_EQ(Why(*unknown), "unknown_key");
  auto wrong_key =
      Sign(Good(), other_->private_pem, "ec1");  // claims to be ec1
  EXPECT_EQ(Why(*wrong_key), "signature");

  // Tampering: change the payload, keep the signature.
  Claims admin = Good();
  admin.role = "operator";
  std::vector<std::string> forged = absl::StrSplit(sign(admin), '.');
  EXPECT_EQ(Why(parts[0] + "." + forged[1] + "." + parts[2]), "signature");
  std::string flipped = parts[2];
  flipped[5] = flipped[5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(Why(parts[0] + "." + parts[1] + "." + flipped), "signature");
  EXPECT_EQ(Why(parts[0] + "." + parts[1] + "." + parts[2].substr(0, 40)),
            "signature");

  // Time.
  Claims c = Good();
  c.expires = kNow - absl::Minutes(2);
  EXPECT_EQ(Why(sign(c)), "expired");
  c.expires = kNow - absl::Seconds(30);  // within the minute's leeway
  EXPECT_EQ(Why(sign(c)), "ok");
  c.expires = absl::InfiniteFuture();  // no exp at all
  EXPECT_EQ(Why(sign(c)), "expired");
  c = Good();
  c.not_before = kNow + absl::Minutes(5);
  EXPECT_EQ(Why(sign(c)), "not_yet_valid");

  // Issuer and audience.
  c = Good();
  c.issuer = "https://evil.test";
  EXPECT_EQ(Why(sign(c)), "issuer");
  c = Good();
  c.audience = "another-service";
  EXPECT_EQ(Why(sign(c)), "audience");
  c.audience = "";
  EXPECT_EQ(Why(sign(c)), "audience");

  // Claims.
  c = Good();
  c.subject = "";
  EXPECT_EQ(Why(sign(c)), "claims");
  c = Good();
  c.role = "admin";
  EXPECT_EQ(Why(sign(c)), "claims");
  c = Good("clinician");
  c.states = {};
  EXPECT_EQ(Why(sign(c)), "claims");
  c.states = {"ny"};
  EXPECT_EQ(Why(sign(c)), "claims");
}

TEST_F(JwtTest, NoMutationOfAValidTokenGetsAnotherIdentityThrough) {
  std::mt19937 rng(5);
  Verifier v = MakeVerifier();
  for (auto [kid, key] : {std::pair{"ec1", ec_}, std::pair{"rsa1", rsa_}}) {
    const std::string good = *Sign(Good("clinician"), key->private_pem, kid);
    const std::string alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=";
    int refused = 0;
    for (int n = 0; n < 1000; ++n) {
      std::string t = good;
      t[rng() % t.size()] = alphabet[rng() % alphabet.size()];
      auto id = v.Verify(t, kNow);
      if (!id.ok()) {
        ++refused;
        EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated);
        continue;
      }
      // Only a change to padding bits of the last base64 character, or none
      // at all, can still verify; then it says exactly what was signed.
      EXPECT_EQ(id->subject, "u1");
      EXPECT_EQ(id->role, Role::kClinician);
      EXPECT_EQ(id->licensed_states, (std::vector<std::string>{"NY", "FL"}));
    }
    EXPECT_GT(refused, 900) << kid;
  }
}

// Verified tokens are remembered (a hash lookup instead of a signature
// check on an app's every call), but the remembered answer never outlives
// the token's own times, never mixes up two tokens, and a changed token is
// checked afresh.
TEST_F(JwtTest, RememberedTokensAreStillCheckedForTimeAndIdentity) {
  Verifier v = MakeVerifier();
  Claims a = Good("clinician");
  a.not_before = kNow + absl::Minutes(5);
  a.expires = kNow + absl::Minutes(10);
  const std::string token_a = *Sign(a, ec_->private_pem, "ec1");
  Claims b = Good();
  b.subject = "u2";
  const std::string token_b = *Sign(b, rsa_->private_pem, "rsa1");

  Rejection why;
  // Refused before nbf (not remembered), accepted inside its window.
  EXPECT_FALSE(v.Verify(token_a, kNow, &why).ok());
  EXPECT_EQ(why, Rejection::kNotYetValid);
  ASSERT_THAT(v.Verify(token_a, kNow + absl::Minutes(6)), IsOk());
  ASSERT_THAT(v.Verify(token_b, kNow + absl::Minutes(6)), IsOk());
  for (int round = 0; round < 2; ++round) {
    auto id_a = v.Verify(token_a, kNow + absl::Minutes(7));
    ASSERT_THAT(id_a, IsOk());
    EXPECT_EQ(id_a->subject, "u1");
    EXPECT_EQ(id_a->role, Role::kClinician);
    EXPECT_EQ(id_a->licensed_states, (std::vector<std::string>{"NY", "FL"}));
    EXPECT_EQ(id_a->key_id, "ec1");
    auto id_b = v.Verify(token_b, kNow + absl::Minutes(7));
    ASSERT_THAT(id_b, IsOk());
    EXPECT_EQ(id_b->subject, "u2");
    EXPECT_EQ(id_b->role, Role::kPatient);
    EXPECT_EQ(id_b->key_id, "rsa1");
  }
  // Once remembered, its times still hold: before nbf and after exp (each
  // beyond the 60 s leeway) it is refused with the same reasons as the
  // first time.
  EXPECT_FALSE(v.Verify(token_a, kNow + absl::Minutes(3), &why).ok());
  EXPECT_EQ(why, Rejection::kNotYetValid);
  EXPECT_FALSE(v.Verify(token_a, kNow + absl::Minutes(12), &why).ok());
  EXPECT_EQ(why, Rejection::kExpired);
  EXPECT_THAT(v.Verify(token_a, kNow + absl::Minutes(10) + absl::Seconds(30)),
              IsOk())
      << "inside the leeway";
  // A remembered token with its signature changed is checked afresh.
  std::string tampered = token_a;
  tampered[tampered.size() - 5] =
      tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(v.Verify(tampered, kNow + absl::Minutes(7), &why).ok());
  EXPECT_EQ(why, Rejection::kSignature);
  // Another verifier (another key set) remembers nothing of this one's.
  KeySet other_keys;
  ASSERT_THAT(other_keys.Add("ec1", other_->public_pem, Everything()), IsOk());
  Verifier w(std::move(other_keys), "https://aqueduct.test", "aqueduct");
  EXPECT_FALSE(w.Verify(token_a, kNow + absl::Minutes(7), &why).ok());
  EXPECT_EQ(why, Rejection::kSignature);
}

TEST_F(JwtTest, AudienceMayBeAList) {
  Claims c = Good();
  c.more_audiences = {"portal", "mobile"};
  auto token = Sign(c, ec_->private_pem, "ec1");
  std::vector<std::string> parts = absl::StrSplit(*token, '.');
  std::string payload;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(parts[1], &payload));
  EXPECT_THAT(payload,
              HasSubstr("\"aud\":[\"portal\",\"mobile\",\"aqueduct\"]"));
  EXPECT_EQ(Why(*token), "ok");
  c.audience = "";
  EXPECT_EQ(Why(*Sign(c, ec_->private_pem, "ec1")), "audience")
      << "a list without ours";
}

TEST_F(JwtTest, KeysRotateByKeyId) {
  aqueduct::testing::TempDir dir;
  std::ofstream(dir.path() + "/2026-10.pem") << ec_->public_pem;
  std::ofstream(dir.path() + "/2026-11.pem") << other_->public_pem;
  std::ofstream(dir.path() + "/2026-10.roles") << "patient\n";
  std::ofstream(dir.path() + "/2026-11.roles") << "patient\n";
  std::ofstream(dir.path() + "/README") << "not a key";
  auto keys = KeySet::LoadDirectory(dir.path());
  ASSERT_THAT(keys, IsOk());
  EXPECT_EQ(keys->size(), 2u);
  Verifier v(std::move(*keys), "https://aqueduct.test", "aqueduct");
  EXPECT_THAT(v.Verify(*Sign(Good(), ec_->private_pem, "2026-10"), kNow),
              IsOk())
      << "old key still valid";
  EXPECT_THAT(v.Verify(*Sign(Good(), other_->private_pem, "2026-11"), kNow),
              IsOk())
      << "new key valid";
  EXPECT_THAT(v.Verify(*Sign(Good(), other_->private_pem, "2026-10"), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated, "signature"));
}

TEST_F(JwtTest, KeySetRefusesWeakOrBrokenKeys) {
  KeySet keys;
  EXPECT_THAT(keys.Add("k", "not a pem", Everything()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("k: not a PEM public key")));
  EXPECT_THAT(keys.Add("k", ec_->private_pem, Everything()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(keys.Add("k", ec_->public_pem, Everything()), IsOk());
  EXPECT_THAT(
      keys.Add("k", rsa_->public_pem, Everything()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate")));
  aqueduct::testing::TempDir empty;
  EXPECT_THAT(KeySet::LoadDirectory(empty.path()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no <key id>.pem public keys")));
  EXPECT_THAT(KeySet::LoadDirectory(empty.path() + "/missing"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cannot read the key directory")));
  aqueduct::testing::TempDir bad;
  std::ofstream(bad.path() + "/broken.pem")
      << "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
  std::ofstream(bad.path() + "/broken.roles") << "patient\n";
  EXPECT_THAT(
      KeySet::LoadDirectory(bad.path()),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("broken.pem: key broken: not a PEM public key")));
}

// A key signs only what its grants name: intake's key its own service
// tokens, the identity provider's people and staff (issue 24: a patient
// token signed with intake's key was accepted).
TEST_F(JwtTest, KeysSignOnlyWhatTheyAreGranted) {
  KeySet keys;
  ASSERT_THAT(
      keys.Add("intake", ec_->public_pem, *KeyGrants::Parse("service:intake")),
      IsOk());
  ASSERT_THAT(
      keys.Add("idp", rsa_->public_pem,
               *KeyGrants::Parse("patient, clinician physician # staff\n"
                                 "batch operator")),
      IsOk());
  Verifier v(std::move(keys), "https://aqueduct.test", "aqueduct");
  auto with = [&](const KeyPair& key, const std::string& kid,
                  const std::string& role, const std::string& subject) {
    Claims c = Good(role);
    c.subject = subject;
    Rejection why = Rejection::kMissing;
    auto id = v.Verify(*Sign(c, key.private_pem, kid), kNow, &why);
    return id.ok() ? std::string("ok") : std::string(RejectionName(why));
  };
  EXPECT_EQ(with(*ec_, "intake", "service", "intake"), "ok");
  EXPECT_EQ(with(*ec_, "intake", "service", "referral"), "key_role");
  for (const char* role :
       {"patient", "clinician", "physician", "batch", "operator"}) {
    EXPECT_EQ(with(*ec_, "intake", role, "u-1"), "key_role") << role;
    EXPECT_EQ(with(*rsa_, "idp", role, "u-1"), "ok") << role;
  }
  EXPECT_EQ(with(*rsa_, "idp", "service", "intake"), "key_role");
  // Refused like any other bad token: one message, nothing more.
  Claims patient = Good("patient");
  EXPECT_THAT(v.Verify(*Sign(patient, ec_->private_pem, "intake"), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated, "key_role"));
}

TEST_F(JwtTest, GrantsAreReadFromTheRolesFileBesideEachKey) {
  EXPECT_THAT(KeyGrants::Parse(""),
              StatusIs(absl::StatusCode::kInvalidArgument, "grants no role"));
  EXPECT_THAT(KeyGrants::Parse("# nothing\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, "grants no role"));
  EXPECT_THAT(KeyGrants::Parse("patient admin"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"admin\": not a role")));
  EXPECT_THAT(KeyGrants::Parse("service"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"service\": not a role")))
      << "the service role only with the subject it may name";
  EXPECT_THAT(KeyGrants::Parse("service:"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("service:intake")));

  aqueduct::testing::TempDir dir;
  std::ofstream(dir.path() + "/idp.pem") << ec_->public_pem;
  EXPECT_THAT(KeySet::LoadDirectory(dir.path()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("idp.roles: cannot read it")))
      << "a key without grants is a start-up error, not a guess";
  std::ofstream(dir.path() + "/idp.roles") << "patient superuser\n";
  EXPECT_THAT(KeySet::LoadDirectory(dir.path()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("idp.roles: \"superuser\": not a role")));
  std::ofstream(dir.path() + "/idp.roles") << "patient\n";
  auto keys = KeySet::LoadDirectory(dir.path());
  ASSERT_THAT(keys, IsOk());
  Verifier v(std::move(*keys), "https://aqueduct.test", "aqueduct");
  EXPECT_THAT(v.Verify(*Sign(Good("patient"), ec_->private_pem, "idp"), kNow),
              IsOk());
  EXPECT_THAT(v.Verify(*Sign(Good("operator"), ec_->private_pem, "idp"), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated, "key_role"));
}

}  // namespace
}  // namespace aqueduct::auth
