#ifndef AQUEDUCT_COMMON_UTIL_NAMES_H_
#define AQUEDUCT_COMMON_UTIL_NAMES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// Resource names shared across the APIs (AIP-122).
namespace aqueduct {

struct ScreeningName {
  std::string user_id;
  std::string screening_id;
  std::string ToString() const;  // "users/{user}/screenings/{screening}"
};

// Parses "users/{user}"; INVALID_ARGUMENT names `field`.
absl::StatusOr<std::string> ParseUserName(absl::string_view name,
                                          absl::string_view field);

// Parses "users/{user}/screenings/{screening}"; INVALID_ARGUMENT names
// `field`.
absl::StatusOr<ScreeningName> ParseScreeningName(absl::string_view name,
                                                 absl::string_view field);

// Parses "<collection>/{id}"; INVALID_ARGUMENT names `field`.
absl::StatusOr<std::string> ParseSimpleName(absl::string_view name,
                                            absl::string_view collection,
                                            absl::string_view field);

// Checks a US state code ("FL"): two upper-case letters. INVALID_ARGUMENT
// names `field`. Empty is left to the caller (it usually means "unknown").
absl::Status ValidateStateCode(absl::string_view code, absl::string_view field);

// The 50 states and DC, as ValidateStateCode spells them.
const std::vector<std::string>& UsStateCodes();

// `name` ("users/{user}" or "users/{user}/...") with its user replaced by
// `user`: a person's calls are looked up in their own namespace only, so
// another person's id answers exactly like a missing one. Anything not
// starting "users/" comes back unchanged (and fails its own validation).
std::string InUserNamespace(absl::string_view name, absl::string_view user);

}  // namespace aqueduct

#endif  // AQUEDUCT_COMMON_UTIL_NAMES_H_
