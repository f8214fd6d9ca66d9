#ifndef AQUEDUCT_SERVICES_REFERRAL_CLINICIANS_H_
#define AQUEDUCT_SERVICES_REFERRAL_CLINICIANS_H_

#include <string>
#include <vector>

namespace aqueduct::referral {

// A clinician who may act on cases: who their verified token says they are.
struct Clinician {
  std::string id;
  std::string role;  // "clinician" or "physician"
  std::vector<std::string> licensed_states;
  // Whether cases with no location state are this clinician's to see
  // (ReferralConfig::unlocated_case_states).
  bool sees_unlocated = false;

  bool physician() const { return role == "physician"; }
  bool LicensedIn(const std::string& state) const;
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_CLINICIANS_H_
