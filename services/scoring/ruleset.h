#ifndef AQUEDUCT_SERVICES_SCORING_RULESET_H_
#define AQUEDUCT_SERVICES_SCORING_RULESET_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protos/scoring/v1/ruleset.pb.h"
#include "protos/scoring/v1/scoring_service.pb.h"
#include "services/scoring/catalog.h"
#include "services/scoring/expr.h"

namespace aqueduct::scoring {

// A validated ruleset with every expression compiled against its catalog.
// Names are declared in evaluation order (flags, then signals one by one,
// then the profile), so a rule can only use what is known before it runs.
class RulesetIndex {
 public:
  struct Compiled {
    // The rule's id as results and ListRulesets name it: "flag.<id>",
    // "signal.<id>", the profile and route rule ids, "secondary.<code>",
    // "modality.<id>", "plan.<id>".
    std::string id;
    std::string description;
    expr::Expr when;
  };

  // Validates `ruleset` against `catalog`: the catalog version it names is
  // the one loaded, every name and code in its expressions exists, every set
  // the catalog uses is defined, routes and the default route are complete.
  // INVALID_ARGUMENT names the rule and the problem.
  static absl::StatusOr<std::shared_ptr<const RulesetIndex>> Build(
      scoring::v1::Ruleset ruleset,
      std::shared_ptr<const CatalogIndex> catalog);

  // Reads every *.textproto in `dir` (sorted by name); errors name the file.
  static absl::StatusOr<std::vector<std::shared_ptr<const RulesetIndex>>>
  LoadDir(const std::string& dir, std::shared_ptr<const CatalogIndex> catalog);

  const scoring::v1::Ruleset& ruleset() const { return ruleset_; }
  const std::string& version() const { return ruleset_.version(); }
  const CatalogIndex& catalog() const { return *catalog_; }
  const expr::Schema& schema() const { return schema_; }
  const expr::SetTable& sets() const { return sets_; }

  const std::vector<Compiled>& flags() const { return flags_; }
  const std::vector<int>& flag_slots() const { return flag_slots_; }
  const std::vector<Compiled>& signals() const { return signals_; }
  const std::vector<int>& signal_slots() const { return signal_slots_; }
  const std::vector<Compiled>& profiles() const { return profiles_; }
  int profile_slot() const { return profile_slot_; }
  const std::vector<Compiled>& routes() const { return routes_; }
  const std::vector<Compiled>& secondary_flags() const {
    return secondary_flags_;
  }
  const std::vector<Compiled>& modalities() const { return modalities_; }
  const std::vector<Compiled>& plan() const { return plan_; }
  const expr::Expr& crisis_when() const { return crisis_when_; }
  // The name `route` (set once routing is decided).
  int route_slot() const { return route_slot_; }
  // Per catalog instrument: the fewest answered items a mean-scored one
  // needs under this ruleset (0 = the catalog's own).
  const std::vector<int>& min_answered() const { return min_answered_; }

  scoring::v1::RulesetInfo Info() const;

 private:
  RulesetIndex() = default;
  absl::Status Index();

  scoring::v1::Ruleset ruleset_;
  std::shared_ptr<const CatalogIndex> catalog_;
  expr::Schema schema_;
  expr::SetTable sets_;
  std::vector<Compiled> flags_, signals_, profiles_, routes_, secondary_flags_,
      modalities_, plan_;
  std::vector<int> flag_slots_, signal_slots_;
  int profile_slot_ = -1;
  int route_slot_ = -1;
  std::vector<int> min_answered_;
  expr::Expr crisis_when_;
};

}  // namespace aqueduct::scoring

#endif  // AQUEDUCT_SERVICES_SCORING_RULESET_H_
