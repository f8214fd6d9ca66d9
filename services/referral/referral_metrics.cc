#include "services/referral/referral_metrics.h"

#include <set>

#include "absl/synchronization/mutex.h"
#include "common/metrics/metrics.h"

namespace aqueduct::referral::metrics {

void CasesOpened(const std::vector<ReferralStore::CreateOutcome>& outcomes) {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& opened = aqueduct::metrics::CounterFamily(
      "aqueduct_referral_cases_opened_total",
      "Cases opened for clinicians' review, by route and queue priority "
      "(early risk cases included).");
  for (const auto& o : outcomes) {
    if (!o.created) continue;
    // Family::Add finds the existing counter for labels it has seen.
    opened
        .Add({{"route", common::v1::Route_Name(o.referral.current_route())},
              {"priority", v1::Priority_Name(o.referral.priority())}})
        .Increment();
  }
}

void CaseDecided(v1::Decision::Action action) {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& decided = aqueduct::metrics::CounterFamily(
      "aqueduct_referral_decisions_total",
      "Clinicians' decisions on cases, by action (CONFIRM, CHANGE_ROUTE, "
      "WITHDRAW).");
  decided.Add({{"action", v1::Decision::Action_Name(action)}}).Increment();
}

void CaseOverdue(v1::Priority priority) {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& overdue = aqueduct::metrics::CounterFamily(
      "aqueduct_referral_cases_overdue_total",
      "Open cases that passed their review deadline (marked overdue), by "
      "queue priority.");
  overdue.Add({{"priority", v1::Priority_Name(priority)}}).Increment();
}

void QueueDepth(v1::Priority priority, int64_t cases) {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& depth = aqueduct::metrics::GaugeFamily(
      "aqueduct_referral_queue_cases",
      "Cases waiting for a clinician's decision (open or claimed), by queue "
      "priority, as the sweeper last read them.");
  depth.Add({{"priority", v1::Priority_Name(priority)}})
      .Set(static_cast<double>(cases));
}

void QueueDepthByRoute(
    const std::map<std::pair<common::v1::Route, v1::Priority>, int64_t>&
        counts) {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& depth = aqueduct::metrics::GaugeFamily(
      "aqueduct_referral_queue_cases_by_route",
      "Cases waiting for a clinician's decision (open or claimed), by route "
      "and queue priority, as the sweeper last counted them (every 30 s by "
      "default).");
  static absl::Mutex mu;
  static auto* seen =
      new std::set<std::pair<common::v1::Route, v1::Priority>>();
  absl::MutexLock lock(&mu);
  for (const auto& key : *seen) {
    if (counts.find(key) == counts.end()) {
      depth
          .Add({{"route", common::v1::Route_Name(key.first)},
                {"priority", v1::Priority_Name(key.second)}})
          .Set(0);
    }
  }
  for (const auto& [key, cases] : counts) {
    depth
        .Add({{"route", common::v1::Route_Name(key.first)},
              {"priority", v1::Priority_Name(key.second)}})
        .Set(static_cast<double>(cases));
    seen->insert(key);
  }
}

}  // namespace aqueduct::referral::metrics
