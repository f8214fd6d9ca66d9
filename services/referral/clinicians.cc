#include "services/referral/clinicians.h"

#include <algorithm>

namespace aqueduct::referral {

bool Clinician::LicensedIn(const std::string& state) const {
  return std::find(licensed_states.begin(), licensed_states.end(), state) !=
         licensed_states.end();
}

}  // namespace aqueduct::referral
