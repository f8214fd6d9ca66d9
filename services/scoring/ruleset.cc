#include "services/scoring/ruleset.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace aqueduct::scoring {
namespace {

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

absl::StatusOr<RulesetIndex::Compiled> CompileRule(
    absl::string_view id, absl::string_view description, absl::string_view when,
    const expr::Schema& schema, bool required = true) {
  if (required && when.empty()) return Invalid(id, "has no condition (when)");
  auto e = expr::Expr::Compile(when, schema);
  if (!e.ok()) return Invalid(id, e.status().message());
  return RulesetIndex::Compiled{std::string(id), std::string(description),
                                std::move(*e)};
}

bool ValidDate(const std::string& d) {
  if (d.size() != 10 || d[4] != '-' || d[7] != '-') return false;
  for (int i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (d[i] < '0' || d[i] > '9') return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const RulesetIndex>> RulesetIndex::Build(
    scoring::v1::Ruleset ruleset, std::shared_ptr<const CatalogIndex> catalog) {
  std::shared_ptr<RulesetIndex> index(new RulesetIndex());
  index->ruleset_ = std::move(ruleset);
  index->catalog_ = std::move(catalog);
  if (absl::Status s = index->Index(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ruleset ", index->ruleset_.version(), ": ", s.message()));
  }
  return std::shared_ptr<const RulesetIndex>(std::move(index));
}

absl::Status RulesetIndex::Index() {
  const auto& rs = ruleset_;
  if (rs.version().empty()) return Invalid("version", "is empty");
  if (!ValidDate(rs.published()))
    return Invalid("published", "expected YYYY-MM-DD");
  if (rs.catalog_version() != catalog_->catalog().version()) {
    return Invalid("catalog_version",
                   absl::StrCat("written for catalog \"", rs.catalog_version(),
                                "\" but catalog \"",
                                catalog_->catalog().version(), "\" is loaded"));
  }
  schema_ = catalog_->schema();
  schema_.set_defer_sets(false);
  for (const auto& set : rs.sets()) {
    if (set.name().empty() || set.values().empty())
      return Invalid("sets", "a set needs a name and values");
    schema_.DeclareSet(set.name(), {set.values().begin(), set.values().end()});
    sets_.emplace_back(
        set.name(),
        std::vector<std::string>(set.values().begin(), set.values().end()));
  }
  for (const auto& name : catalog_->set_names()) {
    if (schema_.FindSet(name) == nullptr) {
      return Invalid("sets", absl::StrCat("the catalog uses set \"", name,
                                          "\", which is not defined"));
    }
  }
  // Flags see answers and scores only.
  for (const auto& f : rs.flags()) {
    if (f.id().empty()) return Invalid("flags", "a flag needs an id");
    if (f.kind() == scoring::v1::SAFETY_FLAG_KIND_UNSPECIFIED)
      return Invalid(f.id(), "kind not set");
    ASSIGN_OR_RETURN(auto c, CompileRule(absl::StrCat("flag.", f.id()),
                                         f.description(), f.when(), schema_));
    flags_.push_back(std::move(c));
  }
  for (const auto& f : rs.flags()) {
    auto slot = schema_.Declare("flag." + f.id(), expr::Type::kBool);
    if (!slot.ok()) return Invalid(f.id(), slot.status().message());
    flag_slots_.push_back(*slot);
  }
  // Signals see flags and the signals before them.
  for (const auto& sig : rs.signals()) {
    if (sig.id().empty()) return Invalid("signals", "a signal needs an id");
    ASSIGN_OR_RETURN(auto c,
                     CompileRule(absl::StrCat("signal.", sig.id()),
                                 sig.description(), sig.when(), schema_));
    signals_.push_back(std::move(c));
    auto slot = schema_.Declare(sig.id(), expr::Type::kBool);
    if (!slot.ok()) return Invalid(sig.id(), slot.status().message());
    signal_slots_.push_back(*slot);
  }
  if (rs.profiles().empty()) return Invalid("profiles", "none defined");
  for (const auto& p : rs.profiles()) {
    if (p.profile() == scoring::v1::PROFILE_UNSPECIFIED ||
        p.profile() == scoring::v1::PROFILE_INCOMPLETE) {
      return Invalid(p.id(),
                     "profile must be OVERLOAD, DEPRESSION, MIXED or LOW");
    }
    ASSIGN_OR_RETURN(auto c,
                     CompileRule(p.id(), p.description(), p.when(), schema_));
    profiles_.push_back(std::move(c));
  }
  auto profile = schema_.Declare("profile", expr::Type::kCode,
                                 {"OVERLOAD", "DEPRESSION", "MIXED", "LOW"});
  if (!profile.ok()) return Invalid("profile", profile.status().message());
  profile_slot_ = *profile;

  if (rs.routes().empty()) return Invalid("routes", "none defined");
  absl::flat_hash_set<std::string> ids;
  for (const auto& r : rs.routes()) {
    if (r.id().empty()) return Invalid("routes", "a route rule needs an id");
    // Results name the route rule that fired by this prefix (digests too).
    if (r.id().rfind("route.", 0) != 0)
      return Invalid(r.id(), "a route rule's id must start with \"route.\"");
    if (!ids.insert(r.id()).second) return Invalid(r.id(), "duplicate rule id");
    if (r.route() == common::v1::ROUTE_UNSPECIFIED)
      return Invalid(r.id(), "route not set");
    if (r.route() == common::v1::UNDER_PHYSICIAN_REVIEW) {
      return Invalid(
          r.id(), "UNDER_PHYSICIAN_REVIEW is what a person sees, not a route");
    }
    if (r.route() != common::v1::SELF_HELP &&
        r.reviewer() == common::v1::REVIEWER_ROLE_UNSPECIFIED) {
      return Invalid(r.id(), "every route but self-help needs a reviewer");
    }
    ASSIGN_OR_RETURN(auto c,
                     CompileRule(r.id(), r.description(), r.when(), schema_));
    routes_.push_back(std::move(c));
  }
  // Later rules may ask which route was chosen (e.g. cautions only on a
  // ketamine review: reference section 9.7).
  std::vector<std::string> route_codes;
  for (int r = common::v1::Route_MIN; r <= common::v1::Route_MAX; ++r) {
    if (common::v1::Route_IsValid(r) && r != common::v1::ROUTE_UNSPECIFIED &&
        r != common::v1::UNDER_PHYSICIAN_REVIEW) {
      route_codes.push_back(
          common::v1::Route_Name(static_cast<common::v1::Route>(r)));
    }
  }
  auto route_slot = schema_.Declare("route", expr::Type::kCode, route_codes);
  if (!route_slot.ok()) return Invalid("route", route_slot.status().message());
  route_slot_ = *route_slot;
  min_answered_.assign(catalog_->instruments().size(), 0);
  for (const auto& rule : rs.instruments()) {
    const std::string where =
        absl::StrCat("instruments[", rule.instrument_id(), "]");
    const int k = catalog_->InstrumentIndex(rule.instrument_id());
    if (k < 0) return Invalid(where, "not a catalog instrument");
    const auto& ins = *catalog_->instruments()[k].def;
    if (ins.scoring() != scoring::v1::MEAN_0_100) {
      return Invalid(where,
                     "min_answered applies to mean-scored instruments only");
    }
    if (rule.min_answered() < 1 || rule.min_answered() > ins.items_size()) {
      return Invalid(where, absl::StrCat("min_answered must be between 1 and ",
                                         ins.items_size()));
    }
    min_answered_[k] = rule.min_answered();
  }
  const auto& d = rs.default_route();
  if (d.route() == common::v1::ROUTE_UNSPECIFIED ||
      d.route() == common::v1::SELF_HELP ||
      d.route() == common::v1::UNDER_PHYSICIAN_REVIEW ||
      d.reviewer() == common::v1::REVIEWER_ROLE_UNSPECIFIED) {
    return Invalid(
        "default_route",
        "must be a reviewed route (an undecided screening is never self-help)");
  }
  for (const auto& f : rs.secondary_flags()) {
    if (f.code().empty() || f.text().empty())
      return Invalid("secondary_flags", "needs a code and a text");
    ASSIGN_OR_RETURN(auto c, CompileRule(absl::StrCat("secondary.", f.code()),
                                         f.text(), f.when(), schema_));
    secondary_flags_.push_back(std::move(c));
  }
  for (const auto& m : rs.modalities()) {
    if (m.modality().empty())
      return Invalid("modalities", "needs a modality id");
    ASSIGN_OR_RETURN(
        auto c, CompileRule(absl::StrCat("modality.", m.modality()), m.reason(),
                            m.when(), schema_));
    modalities_.push_back(std::move(c));
  }
  for (const auto& p : rs.plan()) {
    if (p.item().id().empty() || p.item().title().empty())
      return Invalid("plan", "an item needs an id and a title");
    ASSIGN_OR_RETURN(auto c, CompileRule(absl::StrCat("plan.", p.item().id()),
                                         p.item().title(), p.when(), schema_));
    plan_.push_back(std::move(c));
  }
  if (rs.crisis_when().empty() || rs.crisis_resources().contacts().empty()) {
    return Invalid("crisis_resources",
                   "crisis_when and at least one contact are required");
  }
  auto crisis = expr::Expr::Compile(rs.crisis_when(), schema_);
  if (!crisis.ok()) return Invalid("crisis_when", crisis.status().message());
  crisis_when_ = std::move(*crisis);
  return absl::OkStatus();
}

scoring::v1::RulesetInfo RulesetIndex::Info() const {
  scoring::v1::RulesetInfo info;
  info.set_version(ruleset_.version());
  info.set_description(ruleset_.description());
  info.set_catalog_version(ruleset_.catalog_version());
  info.set_published(ruleset_.published());
  for (const auto& r : ruleset_.routes()) info.add_rule_ids(r.id());
  *info.mutable_sets() = ruleset_.sets();
  *info.mutable_definition() = ruleset_;
  return info;
}

absl::StatusOr<std::vector<std::shared_ptr<const RulesetIndex>>>
RulesetIndex::LoadDir(const std::string& dir,
                      std::shared_ptr<const CatalogIndex> catalog) {
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() &&
        absl::EndsWith(entry.path().string(), ".textproto")) {
      files.push_back(entry.path().string());
    }
  }
  if (ec)
    return absl::NotFoundError(
        absl::StrCat("ruleset directory ", dir, " cannot be read"));
  if (files.empty())
    return absl::NotFoundError(
        absl::StrCat("no *.textproto rulesets in ", dir));
  std::sort(files.begin(), files.end());
  std::vector<std::shared_ptr<const RulesetIndex>> out;
  absl::flat_hash_set<std::string> versions;
  for (const std::string& path : files) {
    scoring::v1::Ruleset ruleset;
    RETURN_IF_ERROR(ReadTextProto(path, &ruleset));
    auto built = Build(std::move(ruleset), catalog);
    if (!built.ok())
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", built.status().message()));
    if (!versions.insert((*built)->version()).second) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ruleset version ",
                                                     (*built)->version(),
                                                     " is defined twice"));
    }
    out.push_back(std::move(*built));
  }
  return out;
}

}  // namespace aqueduct::scoring
