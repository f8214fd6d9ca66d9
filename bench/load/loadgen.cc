#include "bench/load/loadgen.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace aqueduct::bench {

double LoadResult::Percentile(double p) const {
  if (latencies_ms.empty()) return 0;
  const size_t i =
      static_cast<size_t>(std::ceil(p / 100.0 * latencies_ms.size()));
  return latencies_ms[std::min(latencies_ms.size() - 1, i == 0 ? 0 : i - 1)];
}

void LoadResult::Add(const LoadResult& other) {
  calls += other.calls;
  errors += other.errors;
  seconds += other.seconds;
  std::vector<double> merged;
  merged.reserve(latencies_ms.size() + other.latencies_ms.size());
  std::merge(latencies_ms.begin(), latencies_ms.end(),
             other.latencies_ms.begin(), other.latencies_ms.end(),
             std::back_inserter(merged));
  latencies_ms = std::move(merged);
}

namespace {

struct Shared {
  absl::Mutex mu;
  int running ABSL_GUARDED_BY(mu) = 0;
  std::vector<double> latencies ABSL_GUARDED_BY(mu);
  int64_t errors ABSL_GUARDED_BY(mu) = 0;
  absl::Time end;
  const StartCall* start = nullptr;
};

void Issue(const std::shared_ptr<Shared>& shared, int slot) {
  const absl::Time started = absl::Now();
  (*shared->start)(slot, [shared, slot, started](bool ok) {
    const absl::Time now = absl::Now();
    {
      absl::MutexLock lock(&shared->mu);
      if (ok) {
        shared->latencies.push_back(absl::ToDoubleMilliseconds(now - started));
      } else {
        ++shared->errors;
      }
      if (now >= shared->end) {
        --shared->running;
        return;
      }
    }
    Issue(shared, slot);
  });
}

// Waits for every call still running, then the figure since `begin`.
LoadResult Collect(Shared& shared, absl::Time begin) {
  LoadResult out;
  {
    absl::MutexLock lock(&shared.mu);
    shared.mu.Await(absl::Condition(
        +[](Shared* s)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->running == 0; },
        &shared));
    out.latencies_ms = std::move(shared.latencies);
    out.errors = shared.errors;
  }
  out.seconds = absl::ToDoubleSeconds(absl::Now() - begin);
  out.calls = static_cast<int64_t>(out.latencies_ms.size());
  std::sort(out.latencies_ms.begin(), out.latencies_ms.end());
  return out;
}

}  // namespace

LoadResult RunClosedLoop(int concurrency, absl::Duration duration,
                         const StartCall& start) {
  auto shared = std::make_shared<Shared>();
  shared->start = &start;
  const absl::Time begin = absl::Now();
  shared->end = begin + duration;
  {
    absl::MutexLock lock(&shared->mu);
    shared->running = concurrency;
  }
  for (int slot = 0; slot < concurrency; ++slot) Issue(shared, slot);
  return Collect(*shared, begin);
}

LoadResult RunOpenLoop(double per_second, absl::Duration duration,
                       const StartCall& start) {
  auto shared = std::make_shared<Shared>();
  const absl::Time begin = absl::Now();
  const absl::Duration every = absl::Seconds(1.0 / std::max(per_second, 1e-3));
  int slot = 0;
  for (absl::Time due = begin; due < begin + duration; due += every, ++slot) {
    absl::SleepFor(due - absl::Now());
    {
      absl::MutexLock lock(&shared->mu);
      ++shared->running;
    }
    start(slot, [shared, due](bool ok) {
      const absl::Time now = absl::Now();
      absl::MutexLock lock(&shared->mu);
      if (ok) {
        shared->latencies.push_back(absl::ToDoubleMilliseconds(now - due));
      } else {
        ++shared->errors;
      }
      --shared->running;
    });
  }
  return Collect(*shared, begin);
}

}  // namespace aqueduct::bench
