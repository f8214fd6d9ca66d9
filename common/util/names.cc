#include "common/util/names.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status/status_macros.h"
#include "common/util/ids.h"

namespace aqueduct {

std::string ScreeningName::ToString() const {
  return absl::StrCat("users/", user_id, "/screenings/", screening_id);
}

absl::StatusOr<std::string> ParseSimpleName(absl::string_view name,
                                            absl::string_view collection,
                                            absl::string_view field) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": is required"));
  }
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  if (parts.size() != 2 || parts[0] != collection) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected \"", collection, "/{id}\""));
  }
  RETURN_IF_ERROR(ValidateIdSegment(parts[1], field));
  return std::string(parts[1]);
}

absl::StatusOr<std::string> ParseUserName(absl::string_view name,
                                          absl::string_view field) {
  return ParseSimpleName(name, "users", field);
}

absl::StatusOr<ScreeningName> ParseScreeningName(absl::string_view name,
                                                 absl::string_view field) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": is required"));
  }
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  if (parts.size() != 4 || parts[0] != "users" || parts[2] != "screenings") {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected \"users/{user}/screenings/{screening}\""));
  }
  RETURN_IF_ERROR(ValidateIdSegment(parts[1], field));
  RETURN_IF_ERROR(ValidateIdSegment(parts[3], field));
  return ScreeningName{std::string(parts[1]), std::string(parts[3])};
}

absl::Status ValidateStateCode(absl::string_view code,
                               absl::string_view field) {
  if (code.size() != 2 ||
      !absl::ascii_isupper(static_cast<unsigned char>(code[0])) ||
      !absl::ascii_isupper(static_cast<unsigned char>(code[1]))) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected a two-letter US state code such as \"FL\""));
  }
  return absl::OkStatus();
}

const std::vector<std::string>& UsStateCodes() {
  static const auto* codes = new std::vector<std::string>(absl::StrSplit(
      "AL,AK,AZ,AR,CA,CO,CT,DE,DC,FL,GA,HI,ID,IL,IN,IA,KS,KY,LA,ME,MD,MA,MI,"
      "MN,MS,MO,MT,NE,NV,NH,NJ,NM,NY,NC,ND,OH,OK,OR,PA,RI,SC,SD,TN,TX,UT,VT,"
      "VA,WA,WV,WI,WY",
      ','));
  return *codes;
}

std::string InUserNamespace(absl::string_view name, absl::string_view user) {
  constexpr absl::string_view kPrefix = "users/";
  if (!absl::StartsWith(name, kPrefix)) return std::string(name);
  const size_t end = name.find('/', kPrefix.size());
  return absl::StrCat(
      kPrefix, user,
      end == absl::string_view::npos ? absl::string_view() : name.substr(end));
}

}  // namespace aqueduct
