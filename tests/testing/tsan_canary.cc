// Checks the ThreadSanitizer build itself (scripts/test.sh runs it after
// the TSan ctest): a build that cannot see a race, or that reports one
// where every access is guarded, would make a clean TSan run meaningless.
//
//   tsan_canary guarded     two threads update a counter under an
//                           absl::Mutex, wait on an absl::CondVar and hand
//                           over through an absl::Notification: must be
//                           silent (tsan_absl_sync.cc at work)
//   tsan_canary unguarded   the same counter without the lock: the
//                           sanitizer must report a data race
//
// Exit status: 0 when the program ran; the sanitizer's own exit code
// (TSAN_OPTIONS exitcode, 66 by default) when it reported.

#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

int counter = 0;  // the shared state; guarded by `mu` in "guarded" mode
absl::Mutex mu;
absl::CondVar turn;
int handed = 0;  // written before the notification, read after it

void Guarded() {
  absl::Notification ready;
  std::thread other([&] {
    for (int i = 0; i < 1000; ++i) {
      absl::MutexLock lock(&mu);
      ++counter;
      turn.Signal();
    }
    handed = 1;
    ready.Notify();
  });
  for (int i = 0; i < 1000; ++i) {
    absl::MutexLock lock(&mu);
    ++counter;
  }
  {
    absl::MutexLock lock(&mu);
    while (counter < 2000) turn.Wait(&mu);
  }
  ready.WaitForNotification();
  const int seen = handed;
  other.join();
  std::printf("guarded: counter %d, handed %d\n", counter, seen);
}

void Unguarded() {
  std::thread other([] {
    for (int i = 0; i < 1000; ++i) ++counter;
  });
  for (int i = 0; i < 1000; ++i) ++counter;
  other.join();
  std::printf("unguarded: counter %d\n", counter);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "guarded") == 0) {
    Guarded();
    return 0;
  }
  if (argc == 2 && std::strcmp(argv[1], "unguarded") == 0) {
    Unguarded();
    return 0;
  }
  std::fprintf(stderr, "usage: tsan_canary guarded|unguarded\n");
  return 2;
}
