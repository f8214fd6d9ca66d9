#include "services/referral/clinicians.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/util/ids.h"
#include "common/util/names.h"

namespace aqueduct::referral {

bool Clinician::LicensedIn(const std::string& state) const {
  return std::find(licensed_states.begin(), licensed_states.end(), state) != licensed_states.end();
}

absl::StatusOr<ClinicianDirectory> ClinicianDirectory::Parse(const std::string& text) {
  ClinicianDirectory dir;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> parts = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const std::string where = absl::StrCat("line ", line_no);
    if (parts.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": expected \"<id> <clinician|physician> <STATE>[,...]\""));
    }
    Clinician c;
    c.id = parts[0];
    c.role = parts[1];
    if (absl::Status s = ValidateIdSegment(c.id, where); !s.ok()) return s;
    if (c.role != "clinician" && c.role != "physician") {
      return absl::InvalidArgumentError(absl::StrCat(where, ": role must be clinician or physician"));
    }
    for (absl::string_view st : absl::StrSplit(parts[2], ',', absl::SkipEmpty())) {
      if (absl::Status s = ValidateStateCode(st, where); !s.ok()) return s;
      c.licensed_states.emplace_back(st);
    }
    if (!dir.clinicians_.emplace(c.id, c).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": clinician ", c.id, " listed twice"));
    }
  }
  return dir;
}

absl::StatusOr<ClinicianDirectory> ClinicianDirectory::LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("clinician file ", path, " cannot be read"));
  std::stringstream buf;
  buf << in.rdbuf();
  auto dir = Parse(buf.str());
  if (!dir.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", dir.status().message()));
  return dir;
}

const Clinician* ClinicianDirectory::Find(const std::string& id) const {
  auto it = clinicians_.find(id);
  return it == clinicians_.end() ? nullptr : &it->second;
}

}  // namespace aqueduct::referral
