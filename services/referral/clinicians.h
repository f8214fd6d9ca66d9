#ifndef AQUEDUCT_SERVICES_REFERRAL_CLINICIANS_H_
#define AQUEDUCT_SERVICES_REFERRAL_CLINICIANS_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace aqueduct::referral {

// A clinician who may act on cases.
struct Clinician {
  std::string id;
  std::string role;  // "clinician" or "physician"
  std::vector<std::string> licensed_states;

  bool physician() const { return role == "physician"; }
  bool LicensedIn(const std::string& state) const;
};

// Identities, roles and licensed states from configuration (until the
// security work takes them from signed tokens). One per line:
//   <id> <clinician|physician> <STATE>[,<STATE>...]
// Blank lines and lines starting with '#' are ignored.
class ClinicianDirectory {
 public:
  static absl::StatusOr<ClinicianDirectory> Parse(const std::string& text);
  static absl::StatusOr<ClinicianDirectory> LoadFile(const std::string& path);

  // nullptr for an unknown id.
  const Clinician* Find(const std::string& id) const;
  size_t size() const { return clinicians_.size(); }

 private:
  absl::flat_hash_map<std::string, Clinician> clinicians_;
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_CLINICIANS_H_
