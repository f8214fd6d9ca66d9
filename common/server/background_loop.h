#ifndef AQUEDUCT_COMMON_SERVER_BACKGROUND_LOOP_H_
#define AQUEDUCT_COMMON_SERVER_BACKGROUND_LOOP_H_

#include <cstdint>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace aqueduct::server {

// A service's background work (an outbox worker, a catalog loader, a
// sweeper): `step` runs on a thread of the loop's own, at once, then again
// `tick` after each step ends, or sooner when Wake() is called, until Stop()
// or until `step` returns false (nothing more to do). A step's failures are
// the step's to log and retry at the next tick: the loop never ends on one.
class BackgroundLoop {
 public:
  BackgroundLoop(absl::Duration tick, absl::AnyInvocable<bool()> step);
  // Stop().
  ~BackgroundLoop();
  BackgroundLoop(const BackgroundLoop&) = delete;
  BackgroundLoop& operator=(const BackgroundLoop&) = delete;

  // Runs the next step now (or as soon as the one in progress ends). Cheap
  // and safe from any thread, including a gRPC handler's.
  void Wake();
  // Ends the loop: lets the step in progress finish, then joins. Idempotent.
  void Stop();
  // Steps run so far.
  int64_t steps() const;
  // Whether the loop has ended (stopped, or `step` returned false).
  bool done() const;

 private:
  void Run();

  const absl::Duration tick_;
  absl::AnyInvocable<bool()> step_;
  mutable absl::Mutex mu_;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  int64_t steps_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace aqueduct::server

#endif  // AQUEDUCT_COMMON_SERVER_BACKGROUND_LOOP_H_
