#ifndef AQUEDUCT_TOOLS_AQUEDUCTCTL_SCRIPTED_ANSWERS_H_
#define AQUEDUCT_TOOLS_AQUEDUCTCTL_SCRIPTED_ANSWERS_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "protos/common/v1/common.pb.h"
#include "protos/scoring/v1/catalog.pb.h"

namespace aqueduct::tools {

// Answers for scripted screenings (the CLI's demo, tests, benchmarks):
// `overrides` maps item ids to a value given as text: an option value or
// option code for choice items, a number for number items, a code for code
// items, or "declined". Items without an override get the lowest-burden
// option (the reverse of a reverse-scored item's), 0 for numbers, and the
// first code.
using Overrides = absl::flat_hash_map<std::string, std::string>;

// INVALID_ARGUMENT when an override does not fit the item.
absl::StatusOr<common::v1::Answer> ScriptedAnswer(const scoring::v1::Item& item,
                                                  const Overrides& overrides);

// Parses "item=value,item=value"; INVALID_ARGUMENT names the bad pair.
absl::StatusOr<Overrides> ParseOverrides(const std::string& text);

}  // namespace aqueduct::tools

#endif  // AQUEDUCT_TOOLS_AQUEDUCTCTL_SCRIPTED_ANSWERS_H_
