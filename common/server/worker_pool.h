#ifndef AQUEDUCT_COMMON_SERVER_WORKER_POOL_H_
#define AQUEDUCT_COMMON_SERVER_WORKER_POOL_H_

#include <cstddef>
#include <deque>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace aqueduct::server {

// Threads for blocking work handed off by handlers on gRPC's callback API,
// which must never block (on gRPC 1.51 a blocked callback thread starves
// the server: grpc/grpc#36609). The queue is bounded: when it is full,
// Schedule refuses at once, so the caller can answer UNAVAILABLE instead of
// letting work wait without limit behind a slow dependency.
class WorkerPool {
 public:
  // `nice` > 0 runs the threads at that lower priority (Linux: per-thread
  // nice; no privilege needed to lower it): work that must yield the CPU to
  // the calls a person or clinician waits on, e.g. fanning one event out to
  // thousands of watching portals.
  WorkerPool(int threads, size_t max_queued, int nice = 0);
  // Runs the work already queued, then stops the threads.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // False (and `work` is dropped, not run) when max_queued items are
  // already waiting or the pool is stopping.
  bool Schedule(absl::AnyInvocable<void() &&> work);

  size_t queued() const;

 private:
  void Run();

  const size_t max_queued_;
  mutable absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace aqueduct::server

#endif  // AQUEDUCT_COMMON_SERVER_WORKER_POOL_H_
