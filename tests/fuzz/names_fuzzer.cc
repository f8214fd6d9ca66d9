// Resource names and ids from callers: every parser of a name a request
// carries. A crash, leak or undefined behaviour is a finding, and so is a
// name that parses into an id the id check refuses.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/util/ids.h"
#include "common/util/names.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  if (auto s = aqueduct::ParseScreeningName(input, "name"); s.ok()) {
    if (!aqueduct::ValidateIdSegment(s->user_id, "x").ok() ||
        !aqueduct::ValidateIdSegment(s->screening_id, "x").ok() ||
        s->ToString() != input)
      std::abort();
  }
  if (auto u = aqueduct::ParseUserName(input, "parent"); u.ok()) {
    if (!aqueduct::ValidateIdSegment(*u, "x").ok()) std::abort();
  }
  (void)aqueduct::ParseSimpleName(input, "referrals", "name");
  (void)aqueduct::ValidateStateCode(input, "state");
  (void)aqueduct::InUserNamespace(input, "u1");
  return 0;
}
