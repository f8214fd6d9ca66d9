#include "common/texts/person_texts.h"

#include <google/protobuf/text_format.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/config/data_dir.h"

namespace aqueduct::texts {

absl::StatusOr<std::shared_ptr<const PersonTexts>> PersonTexts::Load(
    const std::string& path, const std::vector<std::string>& required) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("person texts: cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  common::v1::PersonTexts texts;
  if (!google::protobuf::TextFormat::ParseFromString(text.str(), &texts)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "person texts: ", path, " is not a PersonTexts in text format"));
  }
  if (texts.version().empty() || texts.disclaimer().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "person texts: ", path, " needs a version and a disclaimer"));
  }
  for (const auto& key : required) {
    auto it = texts.messages().find(key);
    if (it == texts.messages().end() || it->second.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "person texts: ", path, " has no message \"", key, "\""));
    }
  }
  return std::shared_ptr<const PersonTexts>(new PersonTexts(std::move(texts)));
}

std::string PersonTexts::DefaultPath() {
  if (const char* env = std::getenv("AQUEDUCT_PERSON_TEXTS");
      env != nullptr && *env != '\0') {
    return env;
  }
  return config::DataDir() + "/texts/person_texts.textproto";
}

std::string PersonTexts::Message(const std::string& key) const {
  auto it = texts_.messages().find(key);
  return absl::StrCat(texts_.disclaimer(), " ",
                      it == texts_.messages().end() ? "" : it->second);
}

}  // namespace aqueduct::texts
