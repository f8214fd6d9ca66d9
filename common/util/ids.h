#ifndef AQUEDUCT_COMMON_UTIL_IDS_H_
#define AQUEDUCT_COMMON_UTIL_IDS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace aqueduct {

// A new random id: 26 lower-case base32 characters (128 bits), URL-safe, as
// AIP-122 asks of resource ids.
std::string NewId();

// Checks a resource id segment: 1..64 of [a-z0-9-_]. INVALID_ARGUMENT names
// `field` otherwise.
absl::Status ValidateIdSegment(absl::string_view id, absl::string_view field);

// Checks an idempotency key: 1..64 printable ASCII without spaces.
absl::Status ValidateRequestId(absl::string_view id, absl::string_view field);

// Source of time, injected so tests can control it.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  int64_t NowMillis() const { return absl::ToUnixMillis(Now()); }
};

// The real clock.
const Clock& RealClock();

}  // namespace aqueduct

#endif  // AQUEDUCT_COMMON_UTIL_IDS_H_
