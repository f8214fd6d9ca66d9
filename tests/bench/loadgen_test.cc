// The closed-loop load generator and how slices of a figure add up
// (bench/load/loadgen.h).

#include "bench/load/loadgen.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace aqueduct::bench {
namespace {

using ::testing::ElementsAre;

TEST(LoadResultTest, AddSumsSlicesAndKeepsLatenciesSorted) {
  LoadResult a;
  a.calls = 2;
  a.errors = 1;
  a.seconds = 1;
  a.latencies_ms = {1, 3};
  LoadResult b;
  b.calls = 3;
  b.seconds = 2;
  b.latencies_ms = {0.5, 2, 4};
  a.Add(b);
  EXPECT_EQ(a.calls, 5);
  EXPECT_EQ(a.errors, 1);
  EXPECT_DOUBLE_EQ(a.seconds, 3);
  EXPECT_THAT(a.latencies_ms, ElementsAre(0.5, 1, 2, 3, 4));
  EXPECT_DOUBLE_EQ(a.per_second(), 5.0 / 3);
  EXPECT_DOUBLE_EQ(a.Percentile(50), 2);
  EXPECT_DOUBLE_EQ(a.Percentile(100), 4);

  LoadResult empty;
  empty.Add(LoadResult{});
  EXPECT_EQ(empty.calls, 0);
  EXPECT_DOUBLE_EQ(empty.per_second(), 0);
  EXPECT_DOUBLE_EQ(empty.Percentile(99), 0);
}

// Calls end on a worker thread, as gRPC's callbacks do; every third fails.
class FakeServer {
 public:
  FakeServer() : worker_([this] { Serve(); }) {}
  ~FakeServer() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    worker_.join();
  }
  void Start(int slot, std::function<void(bool)> done) {
    const int now = in_flight_.fetch_add(1) + 1;
    int seen = max_in_flight_.load();
    while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
    }
    absl::MutexLock lock(&mu_);
    pending_.push_back({slot, std::move(done)});
  }
  int max_in_flight() const { return max_in_flight_.load(); }
  int64_t started(int slot) {
    absl::MutexLock lock(&mu_);
    return started_[slot];
  }

 private:
  void Serve() {
    int64_t n = 0;
    while (true) {
      std::pair<int, std::function<void(bool)>> call;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](FakeServer* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
              return s->stop_ || !s->pending_.empty();
            },
            this));
        if (pending_.empty()) return;
        call = std::move(pending_.front());
        pending_.pop_front();
        ++started_[call.first];
      }
      absl::SleepFor(absl::Microseconds(200));
      in_flight_.fetch_sub(1);
      call.second(++n % 3 != 0);
    }
  }

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::pair<int, std::function<void(bool)>>> pending_
      ABSL_GUARDED_BY(mu_);
  int64_t started_[3] ABSL_GUARDED_BY(mu_) = {0, 0, 0};
  std::atomic<int> in_flight_{0}, max_in_flight_{0};
  std::thread worker_;
};

TEST(RunClosedLoopTest, KeepsEachCallerBusyCountsErrorsAndWaitsForTheLast) {
  FakeServer server;
  const LoadResult r = RunClosedLoop(
      3, absl::Milliseconds(60), [&](int slot, std::function<void(bool)> done) {
        server.Start(slot, std::move(done));
      });
  EXPECT_GT(r.calls, 10);
  EXPECT_GT(r.errors, 5);
  EXPECT_NEAR(
      static_cast<double>(r.errors) / static_cast<double>(r.calls + r.errors),
      1.0 / 3, 0.05);
  EXPECT_EQ(static_cast<int64_t>(r.latencies_ms.size()), r.calls)
      << "a latency per successful call";
  EXPECT_TRUE(std::is_sorted(r.latencies_ms.begin(), r.latencies_ms.end()));
  EXPECT_GE(r.latencies_ms.front(), 0.2)
      << "each call took at least its 200 us";
  EXPECT_GE(r.seconds, 0.06);
  EXPECT_LE(server.max_in_flight(), 3) << "never more calls than callers";
  for (int slot = 0; slot < 3; ++slot)
    EXPECT_GT(server.started(slot), 0) << slot;
}

}  // namespace
}  // namespace aqueduct::bench
