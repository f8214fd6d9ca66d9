// Encryption at rest: values round-trip only with their key and their
// place; tampering, moving and unknown keys are refused; keys rotate; user
// pseudonyms are stable, distinct and reveal nothing.

#include "common/crypto/data_keys.h"

#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/page_tokens.h"
#include "common/crypto/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::crypto {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Key(char fill) { return absl::Base64Escape(std::string(32, fill)); }

TEST(DataKeysTest, SealedValuesOpenOnlyInTheirPlace) {
  DataKeys keys = DataKeys::Random();
  const std::string secret = "phq9.9=3; reason: called, safety plan agreed";
  const std::string sealed = keys.Seal(secret, "aq:intake:{s1}:session#d");
  EXPECT_THAT(sealed, Not(HasSubstr("phq9")));
  EXPECT_THAT(sealed, Not(HasSubstr("safety")));
  EXPECT_NE(keys.Seal(secret, "aq:intake:{s1}:session#d"), sealed)
      << "a fresh nonce each time";
  auto opened = keys.Open(sealed, "aq:intake:{s1}:session#d");
  ASSERT_THAT(opened, IsOk());
  EXPECT_EQ(*opened, secret);
  EXPECT_THAT(
      keys.Open(sealed, "aq:intake:{s2}:session#d"),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("does not authenticate")))
      << "moved to another record";
  for (size_t i = 0; i < sealed.size(); i += 7) {
    std::string tampered = sealed;
    tampered[i] ^= 0x20;
    EXPECT_FALSE(keys.Open(tampered, "aq:intake:{s1}:session#d").ok()) << i;
  }
  EXPECT_THAT(
      keys.Open("\x0a\x03raw protobuf", "x"),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not encrypted")));
  EXPECT_THAT(keys.Open(sealed.substr(0, 20), "aq:intake:{s1}:session#d"),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DataKeys::Random().Open(sealed, "aq:intake:{s1}:session#d"),
              StatusIs(absl::StatusCode::kDataLoss))
      << "another deployment's keys";
  EXPECT_THAT(*keys.Open(keys.Seal("", "a"), "a"), "") << "empty values too";
}

TEST(DataKeysTest, NoncesNeverRepeatAcrossValuesOrThreads) {
  DataKeys keys = DataKeys::Random();
  std::set<std::string> nonces;
  std::mutex mu;
  auto seal_many = [&] {
    std::vector<std::string> mine;
    for (int i = 0; i < 5000; ++i)
      mine.push_back(keys.Seal("x", "k").substr(2 + 2, 12));
    std::lock_guard<std::mutex> lock(mu);
    nonces.insert(mine.begin(), mine.end());
  };
  std::thread a(seal_many), b(seal_many);
  seal_many();
  a.join();
  b.join();
  EXPECT_EQ(nonces.size(), 15000u);
  // And another copy of the same keys (another process, in effect) opens them.
  DataKeys copy = keys;
  EXPECT_EQ(*copy.Open(keys.Seal("y", "k"), "k"), "y");
}

TEST(DataKeysTest, KeysRotateByPuttingTheNewOneFirst) {
  auto old_keys = DataKeys::Parse(
      absl::StrCat("2026-10 ", Key('a'), "\npseudonym ", Key('p'), "\n"));
  ASSERT_THAT(old_keys, IsOk());
  const std::string before = old_keys->Seal("stored in October", "k");
  auto rotated = DataKeys::Parse(absl::StrCat("# new first\n2026-11 ", Key('b'),
                                              "\n2026-10 ", Key('a'),
                                              "\npseudonym ", Key('p'), "\n"));
  ASSERT_THAT(rotated, IsOk());
  EXPECT_EQ(rotated->active_key_id(), "2026-11");
  EXPECT_EQ(*rotated->Open(before, "k"), "stored in October")
      << "old values still open";
  const std::string after = rotated->Seal("stored in November", "k");
  EXPECT_EQ(after.substr(2, 7), "2026-11");
  EXPECT_THAT(old_keys->Open(after, "k"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("\"2026-11\", which is not loaded")));
  EXPECT_EQ(rotated->Pseudonym("alice"), old_keys->Pseudonym("alice"))
      << "names do not move";
}

TEST(DataKeysTest, ParseErrorsNameTheLineNeverTheKey) {
  EXPECT_THAT(DataKeys::Parse(""), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("no data key")));
  EXPECT_THAT(DataKeys::Parse(absl::StrCat("k1 ", Key('a'))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no \"pseudonym\" key")));
  EXPECT_THAT(DataKeys::Parse("k1 c2hvcnQ=\npseudonym x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 1: expected")));
  EXPECT_THAT(DataKeys::Parse(absl::StrCat("k1 ", Key('a'), "\nk1 ", Key('b'))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 2: duplicate key id k1")));
  auto keys = DataKeys::Random();
  auto again = DataKeys::Parse(keys.ToText());
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again->Open(keys.Seal("x", "y"), "y"), "x");
}

TEST(DataKeysTest, PseudonymsAreStableDistinctAndOpaque) {
  DataKeys keys = DataKeys::Random();
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string user = absl::StrCat("user-", i);
    const std::string p = keys.Pseudonym(user);
    EXPECT_EQ(p.size(), 26u);
    EXPECT_EQ(p, keys.Pseudonym(user));
    EXPECT_THAT(p, Not(HasSubstr(user)));  // the id itself never shows (ids
                                           // here have a "-", base32 never)
    EXPECT_EQ(p.find_first_not_of("abcdefghijklmnopqrstuvwxyz234567"),
              std::string::npos);
    seen.insert(p);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_NE(keys.Pseudonym("alice"), DataKeys::Random().Pseudonym("alice"))
      << "keyed: no dictionary across deployments";
}

// Pseudonyms are remembered per thread and per key set: a remembered one is
// the one computed afresh (the same keys parsed again, on another thread),
// and another key set never gets this one's.
TEST(DataKeysTest, RememberedPseudonymsAreTheComputedOnes) {
  DataKeys keys = DataKeys::Random();
  auto same = DataKeys::Parse(keys.ToText());
  ASSERT_THAT(same, IsOk());
  std::vector<std::string> first;
  for (int round = 0; round < 3;
       ++round) {  // 1,500 ids: past the per-thread bound too
    for (int i = 0; i < 1500; ++i) {
      const std::string user = absl::StrCat("u", i);
      const std::string p = keys.Pseudonym(user);
      if (round == 0) {
        first.push_back(p);
      } else {
        ASSERT_EQ(p, first[i]) << user;
      }
    }
  }
  std::vector<std::string> elsewhere(first.size());
  std::thread([&] {
    for (size_t i = 0; i < first.size(); ++i)
      elsewhere[i] = same->Pseudonym(absl::StrCat("u", i));
  }).join();
  EXPECT_EQ(elsewhere, first);
  DataKeys other = DataKeys::Random();
  EXPECT_NE(other.Pseudonym("u1"), first[1]);
  EXPECT_EQ(keys.Pseudonym("u1"), first[1]);
}

// The hash behind token cache keys and request tags: the standard vectors
// (FIPS 180-2), the same on every thread.
TEST(Sha256Test, StandardVectorsOnEveryThread) {
  auto hex = [](const std::string& s) { return absl::BytesToHexString(s); };
  EXPECT_EQ(hex(Sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(
      hex(Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::vector<std::string> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i)
        got[t] = Sha256(absl::StrCat("abc", i % 2 == 0 ? "" : "x"));
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(hex(g), hex(Sha256("abcx")));
}

// Page tokens: what a token holds comes back only to the RPC and list it was
// made for, under the same keys; anything else is INVALID_ARGUMENT naming
// page_token.
TEST(PageTokensTest, OpenOnlyWhereTheyWereMadeAndUnchanged) {
  const DataKeys keys = DataKeys::Random();
  const PageTokens tokens(&keys);
  const std::string token = tokens.Make("ListMyResults", "u1", "1700/s9");
  auto opened = [](const absl::StatusOr<std::string>& read) {
    return read.ok() ? *read : "error: " + read.status().ToString();
  };
  EXPECT_EQ(opened(tokens.Read("ListMyResults", "u1", token)), "1700/s9");
  EXPECT_EQ(token.find("1700"), std::string::npos) << "opaque";
  auto refused = [](const absl::StatusOr<std::string>& read) {
    return !read.ok() &&
           read.status().code() == absl::StatusCode::kInvalidArgument &&
           absl::StrContains(read.status().message(),
                             "page_token: not a next_page_token of");
  };
  EXPECT_TRUE(refused(tokens.Read("ListMyResults", "u2", token)))
      << "another person's list";
  EXPECT_TRUE(refused(tokens.Read("ListQueue", "u1", token))) << "another RPC";
  std::string changed = token;
  changed[changed.size() / 2] = changed[changed.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_TRUE(refused(tokens.Read("ListMyResults", "u1", changed)));
  EXPECT_TRUE(refused(tokens.Read("ListMyResults", "u1", "bmFuL3g=")))
      << "made up";
  EXPECT_TRUE(refused(tokens.Read("ListMyResults", "u1", "%%%")));
  EXPECT_TRUE(
      refused(tokens.Read("ListMyResults", "u1", std::string(100000, 'A'))))
      << "long ones are not decoded";
  const DataKeys other = DataKeys::Random();
  EXPECT_TRUE(refused(PageTokens(&other).Read("ListMyResults", "u1", token)))
      << "other keys";
  // The same keys elsewhere (another replica) open it; a process's own
  // random keys open only its own.
  const DataKeys copy = *DataKeys::Parse(keys.ToText());
  EXPECT_EQ(opened(PageTokens(&copy).Read("ListMyResults", "u1", token)),
            "1700/s9");
  const PageTokens random;
  EXPECT_TRUE(refused(random.Read("ListMyResults", "u1", token)));
  EXPECT_EQ(opened(random.Read("X", "", random.Make("X", "", "p"))), "p");
}

}  // namespace
}  // namespace aqueduct::crypto
