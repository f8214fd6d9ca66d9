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
  // The HTTP gateway's one queue stream (role service, subject "gateway"),
  // which it relays to many portals: sees every event, each with its
  // Audience, and applies that rule to each portal itself. For WatchQueue
  // only (ReferralCore::WatcherOf); never an actor on a case.
  bool relay = false;

  bool physician() const { return role == "physician"; }
  bool LicensedIn(const std::string& state) const;
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_CLINICIANS_H_
