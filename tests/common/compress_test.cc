// Packed values: real results shrink to under a third and come back byte
// for byte; values written before packing read unchanged; damage, unknown
// dictionaries and oversized streams are refused; the dictionary is pinned.

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
    ASSERT_EQ(p[1], '\1') << "dictionary 1";
    raw += r.size();
    packed += p.size();
    auto back = Unpack(p);
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(*back, r);
  }
  EXPECT_LT(packed * 3, raw) << "packed " << packed << " of " << raw << " bytes";
}

TEST(CompressTest, UnpackedValuesReadAsTheyAre) {
  for (const std::string v : {std::string(), std::string("\x0a\x02v1", 4), std::string("plain text")}) {
    auto back = Unpack(v);
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(*back, v);
  }
}

TEST(CompressTest, AnyBytesRoundTrip) {
  std::mt19937 rng(7);
  for (int n = 0; n < 200; ++n) {
    std::string v(rng() % 3000, '\0');
    for (auto& c : v) c = static_cast<char>(n % 2 == 0 ? rng() : "abc\0"[rng() % 4]);
    if (n % 5 == 0 && !v.empty()) v[0] = '\0';  // looks packed: must be packed
    auto back = Unpack(Pack(v));
    ASSERT_THAT(back, IsOk()) << n;
    EXPECT_EQ(*back, v) << n;
  }
}

TEST(CompressTest, DamageIsRefused) {
  const std::string r = Results().at(3);
  const std::string p = Pack(r);
  EXPECT_THAT(Unpack(p.substr(0, 1)), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(Unpack(p.substr(0, p.size() / 2)), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(Unpack(p + "x"), StatusIs(absl::StatusCode::kDataLoss));
  std::string other = p;
  other[1] = '\7';
  EXPECT_THAT(Unpack(other), StatusIs(absl::StatusCode::kDataLoss, "packed value: unknown dictionary 7"));
  // A stream that would unpack past the limit (a few kB of zeros deflate to
  // almost nothing) stops at the limit.
  const std::string bomb = Pack(std::string(kMaxUnpackedBytes + 1, 'z'));
  EXPECT_LT(bomb.size(), 64u << 10);
  EXPECT_THAT(Unpack(bomb), StatusIs(absl::StatusCode::kDataLoss, "packed value: longer than allowed"));
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

// Values written with dictionary 1 need exactly these bytes forever.
TEST(CompressTest, DictionaryOneNeverChanges) {
  const absl::string_view d = Dictionary(1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  ASSERT_EQ(EVP_Digest(d.data(), d.size(), md, &len, EVP_sha256(), nullptr), 1);
  EXPECT_EQ(absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), len)),
            "f8016191f2265bebb73ac388456fc6bc0f13a9d2bbe61bb7a2030d3615335caf");
  EXPECT_EQ(Dictionary(2), "");
}

}  // namespace
}  // namespace aqueduct::compress
