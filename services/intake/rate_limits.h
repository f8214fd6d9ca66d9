#ifndef AQUEDUCT_SERVICES_INTAKE_RATE_LIMITS_H_
#define AQUEDUCT_SERVICES_INTAKE_RATE_LIMITS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/scoring/v1/result.pb.h"
#include "protos/storage/v1/records.pb.h"

namespace aqueduct::intake {

// What intake stores to limit a person: calls counted per fixed window, and
// the open screenings each person holds (part of SessionStore).
class RateLimits {
 public:
  virtual ~RateLimits() = default;

  // Counts one more `what` (e.g. "start") for the user in fixed window
  // number `window` and returns the count so far in it; the counter
  // expires after `ttl`. Per-user rate limits (OWASP API4).
  virtual absl::StatusOr<int64_t> CountInWindow(const std::string& user_id,
                                                const std::string& what,
                                                int64_t window,
                                                absl::Duration ttl,
                                                absl::Time deadline) = 0;

  // Without blocking the calling thread, for handlers on gRPC's callback
  // API (as SessionStore::WriteAsync): `done` runs once, on the store's I/O
  // thread (or on this one when nothing could be sent).
  using CountDone = absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&>;
  virtual void CountInWindowAsync(const std::string& user_id,
                                  const std::string& what, int64_t window,
                                  absl::Duration ttl, absl::Time deadline,
                                  CountDone done) {
    std::move(done)(CountInWindow(user_id, what, window, ttl, deadline));
  }

  // Open-session accounting per user: reserves a slot for `screening_id`
  // (true), or false when the user already has `limit` open screenings.
  // Expired entries are pruned first; reserving again for the same id is a
  // no-op that succeeds.
  virtual absl::StatusOr<bool> ReserveOpenSlot(const std::string& user_id,
                                               const std::string& screening_id,
                                               int64_t expire_time_ms,
                                               int limit, int64_t now_ms,
                                               absl::Time deadline) = 0;
  // (Activity moves an open screening's expiry with its write:
  // WriteRequest::touch_open_slot_until_ms.)
  // Frees the slot (completed or abandoned).
  virtual absl::Status ReleaseOpenSlot(const std::string& user_id,
                                       const std::string& screening_id,
                                       absl::Time deadline) = 0;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_RATE_LIMITS_H_
