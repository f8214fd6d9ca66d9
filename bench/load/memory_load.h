#ifndef AQUEDUCT_BENCH_LOAD_MEMORY_LOAD_H_
#define AQUEDUCT_BENCH_LOAD_MEMORY_LOAD_H_

// Issue 24 §4's loads: what one process holds under many callers and under
// a flood of requests at its size limit. A flood sends the same bytes
// (shared, so the client holds one copy) to one method from `concurrency`
// callers at once over `connections` connections, closed loop, and counts
// the status codes it got back; peak RSS is read per phase after resetting
// the kernel's high-water mark. Loopback only; stops by itself.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/time/time.h"
#include "bench/load/loadgen.h"

namespace aqueduct::bench {

struct FloodResult {
  LoadResult load;  // OK calls and their latencies; errors counted
  std::map<std::string, int64_t> codes;  // status code name -> calls
  std::string first_error;               // a message, for the table
};

FloodResult Flood(const std::string& address, const std::string& method,
                  const std::string& bearer_token,
                  const std::string& request_bytes, int concurrency,
                  int connections, absl::Duration duration);

// Resets `pid`'s peak resident set (VmHWM) to its current one, so the next
// PeakRssMiB reading is the phase's own. False when the kernel refused.
bool ResetPeakRss(pid_t pid);

// "OK 120, RESOURCE_EXHAUSTED 3" from `codes`.
std::string CodesText(const std::map<std::string, int64_t>& codes);

}  // namespace aqueduct::bench

#endif  // AQUEDUCT_BENCH_LOAD_MEMORY_LOAD_H_
