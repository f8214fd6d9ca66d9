#include "services/intake/session_cache.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace aqueduct::intake {
namespace {

StoredSession At(int64_t version, const std::string& user = "alice") {
  StoredSession s;
  s.version = version;
  s.record.set_user_id(user);
  (*s.record.mutable_answers())["phq9.1"].set_option_value(
      static_cast<int32_t>(version % 4));
  return s;
}

TEST(SessionCacheTest, TakeGivesTheEntryOnlyAtTheVersionAskedAndOnlyOnce) {
  SessionCache cache(64);
  cache.Put("s1", At(3));
  EXPECT_FALSE(cache.Take("s2", 3).has_value()) << "another screening";
  auto taken = cache.Take("s1", 3);
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(taken->version, 3);
  EXPECT_EQ(taken->record.user_id(), "alice");
  EXPECT_EQ(taken->record.answers().at("phq9.1").option_value(), 3);
  EXPECT_FALSE(cache.Take("s1", 3).has_value())
      << "taken: the writer puts it back after writing";
  EXPECT_EQ(cache.size(), 0u);
}

TEST(SessionCacheTest, AnotherVersionIsAMissAndIsDropped) {
  SessionCache cache(64);
  cache.Put("s1", At(3));
  EXPECT_FALSE(cache.Take("s1", 4).has_value())
      << "the etag names a version this replica did not write";
  EXPECT_FALSE(cache.Take("s1", 3).has_value())
      << "the stale entry went with the miss";
}

TEST(SessionCacheTest, PutReplacesEraseRemoves) {
  SessionCache cache(64);
  cache.Put("s1", At(3));
  cache.Put("s1", At(4));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_TRUE(cache.Take("s1", 4).has_value());
  cache.Put("s1", At(5));
  cache.Erase("s1");
  EXPECT_FALSE(cache.Take("s1", 5).has_value());
}

TEST(SessionCacheTest, HoldsNoMoreThanItsBound) {
  SessionCache cache(32);
  EXPECT_EQ(cache.max_entries(), 32u);
  for (int i = 0; i < 1000; ++i) cache.Put(absl::StrCat("s", i), At(i + 1));
  EXPECT_LE(cache.size(), 32u);
  EXPECT_GE(cache.size(), 16u)
      << "evicts one per put when full, not everything";
  // The newest entry is there (eviction happens before it goes in).
  EXPECT_TRUE(cache.Take("s999", 1000).has_value());
}

TEST(SessionCacheTest, ZeroEntriesKeepsNothing) {
  SessionCache cache(0);
  cache.Put("s1", At(3));
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.Take("s1", 3).has_value());
}

TEST(SessionCacheTest, ConcurrentWritersOfDifferentSessionsKeepTheirOwn) {
  SessionCache cache(4096);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&cache, t] {
      const std::string id = absl::StrCat("s", t);
      cache.Put(id, At(1, id));
      for (int v = 1; v < 500; ++v) {
        auto s = cache.Take(id, v);
        ASSERT_TRUE(s.has_value()) << id << " at " << v;
        ASSERT_EQ(s->record.user_id(), id);
        s->version = v + 1;
        cache.Put(id, *std::move(s));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(cache.size(), 8u);
}

}  // namespace
}  // namespace aqueduct::intake
