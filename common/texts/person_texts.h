#ifndef AQUEDUCT_COMMON_TEXTS_PERSON_TEXTS_H_
#define AQUEDUCT_COMMON_TEXTS_PERSON_TEXTS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protos/common/v1/person_texts.pb.h"

namespace aqueduct::texts {

// The person-facing texts (protos/common/v1/person_texts.proto), loaded
// from data and checked once: a service asks only for keys it declared
// required, so Message never meets a missing one.
class PersonTexts {
 public:
  // Reads `path` (protobuf text format) and checks that the version, the
  // disclaimer and every key in `required` are there and not empty; the
  // error names the file and what is missing.
  static absl::StatusOr<std::shared_ptr<const PersonTexts>> Load(
      const std::string& path, const std::vector<std::string>& required);
  // texts/person_texts.textproto under config::DataDir() (the installed
  // copy, or the repository's), or AQUEDUCT_PERSON_TEXTS when set: the
  // services' default.
  static std::string DefaultPath();

  // The disclaimer, a space, and the message under `key` (one of the
  // required keys).
  std::string Message(const std::string& key) const;
  const std::string& version() const { return texts_.version(); }

 private:
  explicit PersonTexts(common::v1::PersonTexts texts)
      : texts_(std::move(texts)) {}
  common::v1::PersonTexts texts_;
};

}  // namespace aqueduct::texts

#endif  // AQUEDUCT_COMMON_TEXTS_PERSON_TEXTS_H_
