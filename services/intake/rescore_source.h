#ifndef AQUEDUCT_SERVICES_INTAKE_RESCORE_SOURCE_H_
#define AQUEDUCT_SERVICES_INTAKE_RESCORE_SOURCE_H_

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/intake/v1/rescore_service.pb.h"
#include "services/intake/session_store.h"

namespace aqueduct::intake {

// The use case "serve a batch re-scoring job": intake's completed
// screenings read in pages, the outcomes under a new ruleset stored next to
// them, and the job's checkpoint, all through intake's own store (the
// RescoreService RPCs, protos/intake/v1/rescore_service.proto, are a thin
// adapter over this). Arguments are checked here; INVALID_ARGUMENT names
// the field.
class RescoreSource {
 public:
  static constexpr int kMaxPageSize = 5000;  // scoring's limit per message
  static constexpr int kMaxPerCall = 1000;   // outcomes or contexts a call

  explicit RescoreSource(SessionStore* store) : store_(store) {}

  absl::StatusOr<v1::RescoreJob> GetJob(const v1::GetRescoreJobRequest& request,
                                        absl::Time deadline);
  absl::StatusOr<v1::RescoreJob> SaveCheckpoint(
      const v1::SaveRescoreCheckpointRequest& request, absl::Time deadline);
  // Fills `response` in place (the service's is on the call's arena).
  absl::Status ListCompleted(const v1::ListCompletedScreeningsRequest& request,
                             absl::Time deadline,
                             v1::ListCompletedScreeningsResponse* response);
  absl::StatusOr<v1::StoreRescoreOutcomesResponse> StoreOutcomes(
      const v1::StoreRescoreOutcomesRequest& request, absl::Time deadline);
  absl::StatusOr<v1::GetReviewContextsResponse> GetReviewContexts(
      const v1::GetReviewContextsRequest& request, absl::Time deadline);

 private:
  SessionStore* store_;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_RESCORE_SOURCE_H_
