#ifndef AQUEDUCT_SERVICES_INTAKE_INTAKE_METRICS_H_
#define AQUEDUCT_SERVICES_INTAKE_INTAKE_METRICS_H_

// Intake's own Prometheus metrics (common/metrics): screenings started and
// completed (by route), early risk cases delivered to referral, what the
// outboxes hold, and re-scoring progress. Every call is also counted by the
// grpc_server_* metrics. Labels are enum names only.

#include <cstdint>

#include "protos/common/v1/common.pb.h"
#include "protos/intake/v1/intake_service.pb.h"
#include "protos/intake/v1/rescore_service.pb.h"

namespace aqueduct::intake::metrics {

void ScreeningStarted();
// A completion committed now (not a retry of one), its route and whether
// its result reached referral at once.
void ScreeningCompleted(common::v1::Route route, v1::HandoffState handoff);
// A person abandoned a screening (AbandonScreening); `early_risk_route` is
// the crisis route of its early risk case, ROUTE_UNSPECIFIED when none. A
// screening left to expire is not counted (Redis drops it unseen).
void ScreeningAbandoned(common::v1::Route early_risk_route);
// An early risk case referral now holds (an unfinished screening that
// raised a safety flag, reference §10).
void EarlyRiskCaseDelivered();
// What the outboxes hold, read from Redis by the hand-off worker, and when
// each one's oldest entry was first queued (Unix ms, 0 when not known).
void OutboxEntries(int64_t handoffs, int64_t risk_cases,
                   int64_t oldest_handoff_ms, int64_t oldest_risk_ms,
                   int64_t now_ms);
// Re-scoring progress: a page of a re-scoring job sent to its caller
// (RescoreService), and the jobs running now.
void RescoredPage(const v1::RescoredPage& page);
void RescoreJobs(int running);

}  // namespace aqueduct::intake::metrics

#endif  // AQUEDUCT_SERVICES_INTAKE_INTAKE_METRICS_H_
