#ifndef AQUEDUCT_COMMON_REDIS_INTERNAL_H_
#define AQUEDUCT_COMMON_REDIS_INTERNAL_H_

// Shared by the blocking and the asynchronous client; not for use outside
// common/redis (the only code that touches hiredis).

#include <hiredis/hiredis.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/redis/redis_client.h"

namespace aqueduct::redis::internal {

// An owned copy of a hiredis reply (arrays recursively).
Reply CopyReply(const redisReply* r);

// Metrics of one round trip to Redis (a command or a pipeline), from the
// client `kind` ("sync" or "async"): its latency, and its failure by status
// code name when it got no reply (UNAVAILABLE, DEADLINE_EXCEEDED). Error
// replies (a wrong type, a script error) are answers, not failures.
void RecordRoundTrip(const char* kind, absl::Duration latency,
                     const absl::Status& status);

// The status for an error reply to a single command: NOSCRIPT -> NOT_FOUND
// (the script is loaded again), LOADING / MASTERDOWN / READONLY / BUSY /
// TRYAGAIN / OOM / CLUSTERDOWN / NOREPLICAS -> UNAVAILABLE (retry later),
// anything else -> INTERNAL with Redis's message.
absl::Status ErrorReplyStatus(const std::string& describe,
                              const std::string& error);

// AUTH as hiredis takes a command (pointers into `options`, which must
// outlive it): the password alone, or user + password (ACL). Empty when
// there is no password.
struct Argv {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
};
Argv AuthCommand(const Options& options);
// Appends `command` to `out` in Redis's wire format (RESP: an array of bulk
// strings), for hiredis's *FormattedCommand calls. hiredis's own formatting
// (redisFormatSdsCommandArgv) builds each length with sdscatfmt, which
// showed in profiles of the re-scoring job; this is one reserve and plain
// appends, and a pipeline is formatted into one buffer.
void AppendCommand(const std::vector<std::string>& command, std::string* out);

// WAIT for Options::wait_replicas within Options::wait_timeout, sent after
// a pipeline that may write; and the status its reply means: OK, or
// UNAVAILABLE (written on the primary, not yet on enough replicas; a retry
// is safe).
std::vector<std::string> WaitCommand(const Options& options);
absl::Status Replicated(const std::string& describe, const Options& options,
                        const Reply& wait_reply);

// hiredis writes with plain write(2): a Redis that closed the connection
// would kill the process with SIGPIPE instead of giving an error. Ignored
// process-wide, once (gRPC does the same for itself).
void IgnoreSigpipe();

}  // namespace aqueduct::redis::internal

#endif  // AQUEDUCT_COMMON_REDIS_INTERNAL_H_
