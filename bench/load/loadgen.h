#ifndef AQUEDUCT_BENCH_LOAD_LOADGEN_H_
#define AQUEDUCT_BENCH_LOAD_LOADGEN_H_

// A closed-loop load generator over gRPC's callback API: `concurrency`
// callers, each starting its next call the moment the previous one ends,
// for a fixed time; latencies of every call kept for percentiles. Stops by
// itself; targets whatever the caller's start function calls (loopback only
// in this project's benchmarks).

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/time/time.h"

namespace aqueduct::bench {

struct LoadResult {
  int64_t calls = 0;   // completed successfully
  int64_t errors = 0;  // completed with an error
  double seconds = 0;
  std::vector<double> latencies_ms;  // successful calls, sorted

  double per_second() const { return seconds > 0 ? calls / seconds : 0; }
  // Adds another run of the same load (one slice of a figure measured in
  // slices): calls, errors and seconds add up, latencies stay sorted.
  void Add(const LoadResult& other);
  // p in [0, 100]; 0 when there were no calls.
  double Percentile(double p) const;
};

// Starts one call for `slot`; must call `done(ok)` exactly once when it ends
// (from any thread).
using StartCall =
    std::function<void(int slot, std::function<void(bool ok)> done)>;

LoadResult RunClosedLoop(int concurrency, absl::Duration duration,
                         const StartCall& start);

// Open loop: a call every 1/`per_second` for `duration`, whether or not the
// earlier ones have ended (as independent clinicians' refreshes arrive);
// each latency counts from when its call was due, so a server that falls
// behind shows it. Waits for the last call. `slot` counts the calls.
LoadResult RunOpenLoop(double per_second, absl::Duration duration,
                       const StartCall& start);

}  // namespace aqueduct::bench

#endif  // AQUEDUCT_BENCH_LOAD_LOADGEN_H_
