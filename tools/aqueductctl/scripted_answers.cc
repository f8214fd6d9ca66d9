#include "tools/aqueductctl/scripted_answers.h"

#include <algorithm>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace aqueduct::tools {

absl::StatusOr<common::v1::Answer> ScriptedAnswer(const scoring::v1::Item& item,
                                                  const Overrides& overrides) {
  common::v1::Answer a;
  a.set_item_id(item.id());
  auto it = overrides.find(item.id());
  if (it != overrides.end() && it->second == "declined") {
    a.set_declined(true);
    return a;
  }
  switch (item.kind()) {
    case scoring::v1::CHOICE: {
      if (it == overrides.end()) {
        auto lowest = std::min_element(
            item.options().begin(), item.options().end(),
            [](const auto& x, const auto& y) { return x.value() < y.value(); });
        auto highest = std::max_element(
            item.options().begin(), item.options().end(),
            [](const auto& x, const auto& y) { return x.value() < y.value(); });
        a.set_option_value(item.reverse_scored() ? highest->value()
                                                 : lowest->value());
        return a;
      }
      int v = 0;
      for (const auto& o : item.options()) {
        if (o.code() == it->second ||
            (absl::SimpleAtoi(it->second, &v) && v == o.value())) {
          a.set_option_value(o.value());
          return a;
        }
      }
      return absl::InvalidArgumentError(absl::StrCat(
          item.id(), "=", it->second, ": not an option of ", item.id()));
    }
    case scoring::v1::INTEGER: {
      int v = std::max(0, item.min_value());
      if (it != overrides.end() && !absl::SimpleAtoi(it->second, &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(item.id(), "=", it->second, ": not a number"));
      }
      a.set_integer_value(v);
      return a;
    }
    case scoring::v1::CODE:
      a.set_code_value(it != overrides.end() ? it->second : item.codes(0));
      return a;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(item.id(), ": unknown answer kind"));
  }
}

absl::StatusOr<Overrides> ParseOverrides(const std::string& text) {
  Overrides out;
  for (absl::string_view pair : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty() || kv[1].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", pair, "\": expected item=value"));
    }
    out[kv[0]] = kv[1];
  }
  return out;
}

}  // namespace aqueduct::tools
