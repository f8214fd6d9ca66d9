#include "services/scoring/digest.h"

#include <algorithm>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace aqueduct::scoring {
namespace {

std::string FlagNames(const v1::ResultDigest& d) {
  std::vector<std::string> names;
  for (int f : d.safety_flags()) names.push_back(v1::SafetyFlagKind_Name(f));
  return absl::StrCat("[", absl::StrJoin(names, ", "), "]");
}

std::string RuleOrDefault(const std::string& rule) {
  return rule.empty() ? "default route" : rule;
}
absl::string_view BandOrNone(absl::string_view band) {
  return band.empty() ? "none" : band;
}

// Splits a digest's canonical band string into (instrument, band) pairs.
std::vector<std::pair<absl::string_view, absl::string_view>> Bands(
    const std::string& bands) {
  std::vector<std::pair<absl::string_view, absl::string_view>> out;
  if (bands.empty()) return out;
  for (absl::string_view part : absl::StrSplit(bands, ',')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    out.push_back(kv);
  }
  return out;
}

// Calls `changed(instrument, before, after)` for every instrument whose band
// differs (both lists are ordered by instrument id).
template <typename F>
void ForEachBandChange(const v1::ResultDigest& before,
                       const v1::ResultDigest& after, F changed) {
  const auto a = Bands(before.bands()), b = Bands(after.bands());
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].first < b[j].first)) {
      changed(a[i].first, a[i].second, "");
      ++i;
    } else if (i == a.size() || b[j].first < a[i].first) {
      changed(b[j].first, "", b[j].second);
      ++j;
    } else {
      if (a[i].second != b[j].second)
        changed(a[i].first, a[i].second, b[j].second);
      ++i;
      ++j;
    }
  }
}

bool SameFlags(const v1::ResultDigest& a, const v1::ResultDigest& b) {
  return std::equal(a.safety_flags().begin(), a.safety_flags().end(),
                    b.safety_flags().begin(), b.safety_flags().end());
}

}  // namespace

void DigestInto(const v1::ScoringResult& result, v1::ResultDigest* digest) {
  digest->Clear();
  digest->set_primary_route(result.routing().primary_route());
  for (const auto& rule : result.rules()) {
    if (rule.fired() && rule.rule_id().rfind("route.", 0) == 0) {
      digest->set_route_rule(rule.rule_id());
      break;
    }
  }
  // Scores come in catalog order; the canonical form orders by id.
  absl::InlinedVector<const v1::InstrumentScore*, 16> banded;
  for (const auto& s : result.scores()) {
    if (!s.band().empty()) banded.push_back(&s);
  }
  std::sort(banded.begin(), banded.end(), [](const auto* x, const auto* y) {
    return x->instrument_id() < y->instrument_id();
  });
  std::string* bands = digest->mutable_bands();
  for (const auto* s : banded) {
    if (!bands->empty()) bands->push_back(',');
    absl::StrAppend(bands, s->instrument_id(), "=", s->band());
  }
  for (const auto& f : result.safety_flags())
    digest->add_safety_flags(f.kind());
  auto* flags = digest->mutable_safety_flags();
  std::sort(flags->begin(), flags->end());
  flags->erase(std::unique(flags->begin(), flags->end()), flags->end());
}

v1::ResultDigest DigestOf(const v1::ScoringResult& result) {
  v1::ResultDigest d;
  DigestInto(result, &d);
  return d;
}

bool DigestsDiffer(const v1::ResultDigest& before,
                   const v1::ResultDigest& after) {
  return before.primary_route() != after.primary_route() ||
         before.bands() != after.bands() || !SameFlags(before, after);
}

DigestChanges CompareDigests(const v1::ResultDigest& before,
                             const v1::ResultDigest& after) {
  DigestChanges c;
  if (before.primary_route() != after.primary_route()) {
    c.route = true;
    c.lines.push_back(
        absl::StrCat("route: ", common::v1::Route_Name(before.primary_route()),
                     " -> ", common::v1::Route_Name(after.primary_route()),
                     " (", RuleOrDefault(before.route_rule()), " -> ",
                     RuleOrDefault(after.route_rule()), ")"));
  }
  ForEachBandChange(
      before, after,
      [&](absl::string_view id, absl::string_view b, absl::string_view a) {
        c.band = true;
        c.lines.push_back(
            absl::StrCat(id, " band: ", BandOrNone(b), " -> ", BandOrNone(a)));
      });
  if (!SameFlags(before, after)) {
    c.flags = true;
    c.lines.push_back(absl::StrCat("safety flags: ", FlagNames(before), " -> ",
                                   FlagNames(after)));
  }
  return c;
}

}  // namespace aqueduct::scoring
