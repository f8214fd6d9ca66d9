#ifndef AQUEDUCT_SERVICES_REFERRAL_REFERRAL_METRICS_H_
#define AQUEDUCT_SERVICES_REFERRAL_REFERRAL_METRICS_H_

// Referral's own Prometheus metrics (common/metrics): cases opened by route
// and priority, and clinicians' decisions by action. Claims, releases and
// every other call are counted by the grpc_server_* metrics. Labels are
// enum names only.

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "protos/referral/v1/referral_service.pb.h"
#include "services/referral/referral_store.h"

namespace aqueduct::referral::metrics {

// Counts the cases `outcomes` created (not the ones that already existed).
void CasesOpened(const std::vector<ReferralStore::CreateOutcome>& outcomes);
void CaseDecided(v1::Decision::Action action);
// An open case passed its review deadline unclaimed and undecided (the
// sweeper marks it overdue once).
void CaseOverdue(v1::Priority priority);
// Cases in the queue (open or claimed, not yet decided) of `priority`, as
// the sweeper read them last.
void QueueDepth(v1::Priority priority, int64_t cases);
// Cases in the queue waiting for a decision by route and priority, from the
// sweeper's periodic count; a pair counted before and absent now reads 0.
void QueueDepthByRoute(
    const std::map<std::pair<common::v1::Route, v1::Priority>, int64_t>&
        counts);

}  // namespace aqueduct::referral::metrics

#endif  // AQUEDUCT_SERVICES_REFERRAL_REFERRAL_METRICS_H_
