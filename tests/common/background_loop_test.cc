#include "common/server/background_loop.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace aqueduct::server {
namespace {

// Waits up to 5 s for `done`; the loop's own timing is not asserted, only
// what it must do eventually and what it must not do at all.
template <typename F>
bool Eventually(F done) {
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (absl::Now() < end) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return done();
}

TEST(BackgroundLoopTest, RunsAtOnceThenEveryTick) {
  std::atomic<int> runs{0};
  BackgroundLoop loop(absl::Milliseconds(5), [&] {
    ++runs;
    return true;
  });
  EXPECT_TRUE(Eventually([&] { return runs.load() >= 3; }));
  loop.Stop();
  EXPECT_TRUE(loop.done());
  EXPECT_EQ(loop.steps(), runs.load());
}

TEST(BackgroundLoopTest, WakeRunsTheNextStepWithoutWaitingForTheTick) {
  std::atomic<int> runs{0};
  // A tick no test waits for: only Wake can start the second step.
  BackgroundLoop loop(absl::Hours(1), [&] {
    ++runs;
    return true;
  });
  ASSERT_TRUE(Eventually([&] { return runs.load() == 1; }));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(runs.load(), 1) << "nothing runs before the tick unless woken";
  loop.Wake();
  EXPECT_TRUE(Eventually([&] { return runs.load() == 2; }));
}

TEST(BackgroundLoopTest, StepReturningFalseEndsTheLoop) {
  std::atomic<int> runs{0};
  BackgroundLoop loop(absl::Milliseconds(1), [&] { return ++runs < 3; });
  ASSERT_TRUE(Eventually([&] { return loop.done(); }));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(runs.load(), 3);
  loop.Wake();  // harmless once ended
  loop.Stop();
  EXPECT_EQ(runs.load(), 3);
}

TEST(BackgroundLoopTest, StopWaitsForTheStepInProgressAndRunsNoMore) {
  absl::Notification in_step, release;
  std::atomic<int> runs{0};
  auto loop = std::make_unique<BackgroundLoop>(absl::Hours(1), [&] {
    ++runs;
    in_step.Notify();
    release.WaitForNotification();
    return true;
  });
  in_step.WaitForNotification();
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    loop->Stop();
    stopped = true;
  });
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(stopped.load()) << "Stop returned during a step";
  release.Notify();
  stopper.join();
  EXPECT_TRUE(stopped.load());
  EXPECT_EQ(runs.load(), 1);
  loop.reset();  // the destructor after Stop is a no-op
}

}  // namespace
}  // namespace aqueduct::server
