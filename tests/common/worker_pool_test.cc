// The pool for blocking work handed off by callback-API handlers.

#include "common/server/worker_pool.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace aqueduct::server {
namespace {

TEST(WorkerPoolTest, RunsEveryScheduledItemOnItsThreads) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(3, 1000);
    for (int i = 0; i < 500; ++i) ASSERT_TRUE(pool.Schedule([&] { ++ran; }));
  }  // the destructor runs what is queued
  EXPECT_EQ(ran.load(), 500);
}

TEST(WorkerPoolTest, AFullQueueRefusesAtOnceAndDropsTheWork) {
  absl::Notification release;
  absl::Notification started;
  std::atomic<int> ran{0};
  WorkerPool pool(1, 2);
  ASSERT_TRUE(pool.Schedule([&] {
    started.Notify();
    release.WaitForNotification();
    ++ran;
  }));
  started.WaitForNotification();  // the one thread is busy
  EXPECT_TRUE(pool.Schedule([&] { ++ran; }));
  EXPECT_TRUE(pool.Schedule([&] { ++ran; }));
  EXPECT_EQ(pool.queued(), 2u);
  EXPECT_FALSE(pool.Schedule([&] { ran += 100; }))
      << "the third waiting item is over the bound";
  release.Notify();
  while (pool.queued() > 0) absl::SleepFor(absl::Milliseconds(1));
  absl::Notification last;
  EXPECT_TRUE(pool.Schedule([&] {
    ++ran;
    last.Notify();
  })) << "room again once the queue drains";
  ASSERT_TRUE(last.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(ran.load(), 4) << "the refused item never ran";
}

}  // namespace
}  // namespace aqueduct::server
