#ifndef AQUEDUCT_SERVICES_INTAKE_FLOW_H_
#define AQUEDUCT_SERVICES_INTAKE_FLOW_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/map.h"
#include "protos/common/v1/common.pb.h"
#include "services/scoring/catalog.h"

namespace aqueduct::intake {

// Where a screening stands, from the catalog's data alone: which
// instruments apply given the answers so far (ask_if / applies_if), which
// items to ask next, what is still required, and which stored answers no
// longer apply because an earlier answer changed.
struct Flow {
  struct Ask {
    const scoring::CatalogIndex::InstrumentInfo* instrument;
    const scoring::v1::Item* item;
  };
  std::vector<Ask> page;                 // the next items, one instrument
  std::vector<std::string> instruments;  // instruments this screening asks
  std::vector<std::string>
      missing_required;                   // required, applicable, unanswered
  std::vector<std::string> inapplicable;  // stored answers that no longer apply
  int answered = 0;   // applicable items answered (declining counts)
  int remaining = 0;  // applicable items not yet answered
};

// `sets` are the default ruleset's named sets (e.g. the states the ketamine
// service covers), which catalog ask_if expressions use.
absl::StatusOr<Flow> ComputeFlow(
    const scoring::CatalogIndex& catalog, const scoring::expr::SetTable& sets,
    const google::protobuf::Map<std::string, common::v1::Answer>& answers);

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_FLOW_H_
