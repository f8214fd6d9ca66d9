#ifndef AQUEDUCT_COMMON_REDIS_SENTINEL_H_
#define AQUEDUCT_COMMON_REDIS_SENTINEL_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/config/config.h"

// Redis Sentinel discovery (issue 24 §2): which node is the primary of a
// monitored master, asked of a list of Sentinels. Shared by every client of
// a process that talks to that master (blocking pool, non-blocking client,
// the queue feed's pool), so one failover is learned once.

namespace aqueduct::redis {

class PrimaryFinder {
 public:
  // `password` (and `user`, ACL) authenticate to the Sentinels; empty: no
  // AUTH. `connect_timeout` bounds each Sentinel's connect and answer.
  PrimaryFinder(std::vector<config::Endpoint> sentinels,
                std::string master_name, std::string user, std::string password,
                absl::Duration connect_timeout);

  // The primary as last learned, or asked of the Sentinels in order (the
  // first that answers wins). UNAVAILABLE names the master and the last
  // Sentinel's failure when none knows it; DEADLINE_EXCEEDED when the
  // deadline ran out first.
  absl::StatusOr<config::Endpoint> Primary(absl::Time deadline);
  // The primary as last learned, without asking anyone: for a caller that
  // must not block (the non-blocking client asks Primary on its own I/O
  // thread when this has nothing).
  std::optional<config::Endpoint> Known();

  // `endpoint` failed as the primary (connection lost or refused, or it
  // answered READONLY: it was demoted): the next Primary asks again.
  void Forget(const config::Endpoint& endpoint);

  const std::string& master_name() const { return master_name_; }
  // "the primary of <master> (Sentinels a:1, b:2)", for messages.
  std::string Describe() const;

 private:
  absl::StatusOr<config::Endpoint> Ask(const config::Endpoint& sentinel,
                                       absl::Time deadline) const;

  const std::vector<config::Endpoint> sentinels_;
  const std::string master_name_;
  const std::string user_;
  const std::string password_;
  const absl::Duration connect_timeout_;
  absl::Mutex mu_;
  std::optional<config::Endpoint> primary_ ABSL_GUARDED_BY(mu_);
};

// Whether `command` (its first word) may write: every command not known to
// only read. Writes are the ones followed by WAIT when a client waits for
// replicas.
bool MayWrite(const std::vector<std::string>& command);

bool SameEndpoint(const config::Endpoint& a, const config::Endpoint& b);

}  // namespace aqueduct::redis

#endif  // AQUEDUCT_COMMON_REDIS_SENTINEL_H_
