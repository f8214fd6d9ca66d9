// Packed values: real results shrink to under a tenth and come back byte
// for byte; values written before packing, and values packed with the
// earlier dictionary, read unchanged; damage, unknown dictionaries and
// oversized streams are refused; every dictionary is pinned.

#include "common/compress/compress.h"

#include <openssl/evp.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::compress {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;

// Serialized results of a spread of profiles, as intake and referral store
// them.
std::vector<std::string> Results() {
  auto engine = testing::LoadRepositoryEngine();
  EXPECT_THAT(engine, IsOk());
  std::vector<std::string> out;
  if (!engine.ok()) return out;
  for (const char* state : {"NY", "FL"}) {
    for (int total : {0, 7, 12, 20, 24}) {
      for (int variant = 0; variant < 3; ++variant) {
        auto o = testing::AdultContext(state);
        int left = total;
        for (int i = 1; i <= 8; ++i) {
          const int v = std::min(3, left);
          left -= v;
          o["phq9." + std::to_string(i)] = std::to_string(v);
        }
        if (variant == 1) {
          o["phq9.9"] = "2";
          o["asq.1"] = "yes";
          o["asq.5"] = "no";
        }
        if (variant == 2) o["ket.trials"] = "two_or_more";
        auto req = testing::ScriptedScreening(**engine, o);
        EXPECT_THAT(req, IsOk());
        if (!req.ok()) continue;
        auto r = (*engine)->Score(*req);
        EXPECT_THAT(r, IsOk());
        if (r.ok()) out.push_back(r->SerializeAsString());
      }
    }
  }
  return out;
}

TEST(CompressTest, ResultsShrinkAndComeBackExactly) {
  const auto results = Results();
  ASSERT_EQ(results.size(), 30u);
  size_t raw = 0, packed = 0;
  for (const auto& r : results) {
    const std::string p = Pack(r);
    ASSERT_EQ(p[0], '\0');
    ASSERT_EQ(p[1], '\3') << "dictionary 3";
    raw += r.size();
    packed += p.size();
    auto back = Unpack(p);
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(*back, r);
  }
  // Dictionary 1 (deflate, a list of ruleset texts) reached under a third.
  EXPECT_LT(packed * 10, raw)
      << "packed " << packed << " of " << raw << " bytes";
}

// Values packed with dictionary 1 stay readable now that Pack uses a
// later one.
TEST(CompressTest, ValuesPackedWithDictionaryOneStillRead) {
  const auto results = Results();
  ASSERT_FALSE(results.empty());
  for (const auto& r : results) {
    const std::string p = PackWith(1, r);
    ASSERT_EQ(p.substr(0, 2), std::string("\0\1", 2));
    auto back = Unpack(p);
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(*back, r);
  }
  // Bytes the deflate code wrote before dictionary 2 existed: "hello hello
  // hello" under dictionary 1.
  const std::string old = absl::HexStringToBytes("000103e6d79c7c05241200");
  EXPECT_EQ(PackWith(1, "hello hello hello"), old);
  auto back = Unpack(old);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(*back, "hello hello hello");
  EXPECT_EQ(PackWith(9, "plain"), "plain")
      << "an unknown dictionary packs nothing";
}

TEST(CompressTest, UnpackedValuesReadAsTheyAre) {
  for (const std::string& v : {std::string(), std::string("\x0a\x02v1", 4),
                               std::string("plain text")}) {
    auto back = Unpack(v);
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(*back, v);
  }
}

TEST(CompressTest, AnyBytesRoundTrip) {
  std::mt19937 rng(7);
  for (int n = 0; n < 200; ++n) {
    std::string v(rng() % 3000, '\0');
    for (auto& c : v)
      c = static_cast<char>(n % 2 == 0 ? rng() : "abc\0"[rng() % 4]);
    if (n % 5 == 0 && !v.empty()) v[0] = '\0';  // looks packed: must be packed
    auto back = Unpack(Pack(v));
    ASSERT_THAT(back, IsOk()) << n;
    EXPECT_EQ(*back, v) << n;
  }
}

TEST(CompressTest, DamageIsRefused) {
  const std::string r = Results().at(3);
  for (int id : {1, 2}) {
    SCOPED_TRACE(id);
    const std::string p = PackWith(id, r);
    ASSERT_EQ(p[1], static_cast<char>(id));
    EXPECT_THAT(Unpack(p.substr(0, 1)), StatusIs(absl::StatusCode::kDataLoss));
    EXPECT_THAT(Unpack(p.substr(0, 2)), StatusIs(absl::StatusCode::kDataLoss));
    EXPECT_THAT(Unpack(p.substr(0, p.size() / 2)),
                StatusIs(absl::StatusCode::kDataLoss));
    EXPECT_THAT(Unpack(p + "x"), StatusIs(absl::StatusCode::kDataLoss));
    std::string flipped = p;
    flipped[p.size() / 2] ^= 0x5a;
    auto back = Unpack(flipped);
    // A flipped bit inside the stream is refused or reads differently (the
    // seal around every stored value is what detects tampering).
    EXPECT_TRUE(!back.ok() || *back != r);
    std::string other = p;
    other[1] = '\7';
    EXPECT_THAT(Unpack(other), StatusIs(absl::StatusCode::kDataLoss,
                                        "packed value: unknown dictionary 7"));
    // A stream that would unpack past the limit (megabytes of one letter
    // pack to almost nothing) is refused, not unpacked.
    const std::string bomb =
        PackWith(id, std::string(kMaxUnpackedBytes + 1, 'z'));
    EXPECT_LT(bomb.size(), 64u << 10);
    EXPECT_THAT(Unpack(bomb), StatusIs(absl::StatusCode::kDataLoss,
                                       "packed value: longer than allowed"));
  }
}

// The most compressible value allowed (one letter, at the limit) comes
// back: the ratio bound that refuses crafted headers before allocating
// does not refuse what zstd itself writes. Its header alone is refused.
TEST(CompressTest, MostCompressibleValueAtTheLimitRoundTrips) {
  for (int id : {2, 3}) {
    SCOPED_TRACE(id);
    const std::string v(kMaxUnpackedBytes, 'z');
    const std::string p = PackWith(id, v);
    ASSERT_EQ(p[1], static_cast<char>(id));
    auto back = Unpack(p);
    ASSERT_THAT(back, IsOk());
    EXPECT_TRUE(*back == v);
    EXPECT_THAT(Unpack(p.substr(0, 12)),
                StatusIs(absl::StatusCode::kDataLoss, "packed value: damaged"));
  }
}

TEST(CompressTest, ThreadsPackAndUnpackIndependently) {
  const auto results = Results();
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < 300; ++n) {
        const std::string& r = results[(n + t) % results.size()];
        auto back = Unpack(Pack(r));
        if (!back.ok() || *back != r) ++bad[t];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad, std::vector<int>(4, 0));
}

// A dictionary's SHA-256, hex.
std::string DigestOf(int id) {
  const absl::string_view d = Dictionary(id);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(d.data(), d.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    return "digest failed";
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), len));
}

// Values written with a dictionary need exactly its bytes forever
// (bench/dictionary/make.sh made 2 and 3; each file's first lines repeat
// the digest). 3 is the current one.
TEST(CompressTest, DictionariesNeverChange) {
  EXPECT_EQ(DigestOf(1),
            "f8016191f2265bebb73ac388456fc6bc0f13a9d2bbe61bb7a2030d3615335caf");
  EXPECT_EQ(Dictionary(2).size(), 32768u);
  EXPECT_EQ(DigestOf(2),
            "87d008212fd5a119087ad93b2355397a130adf2b0407314c4c28e59db1dd6f14");
  EXPECT_EQ(Dictionary(3).size(), 32768u);
  EXPECT_EQ(DigestOf(3),
            "b497d10f28edc3517f993aadac8e6887f0b96b0b48e0b6883962373b8f25e8b8");
  EXPECT_EQ(Dictionary(4), "");
}

// Values packed with dictionary 2 (before dictionary 3) still read.
TEST(CompressTest, ValuesPackedWithDictionaryTwoStillRead) {
  for (const auto& r : Results()) {
    const std::string p = PackWith(2, r);
    ASSERT_EQ(p[1], '\2');
    auto back = Unpack(p);
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(*back, r);
  }
}

}  // namespace
}  // namespace aqueduct::compress
