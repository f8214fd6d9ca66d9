#ifndef AQUEDUCT_TOOLS_RESCORE_RESCORE_H_
#define AQUEDUCT_TOOLS_RESCORE_RESCORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/auth/grpc_auth.h"
#include "protos/common/v1/common.pb.h"
#include "protos/intake/v1/rescore_service.grpc.pb.h"
#include "protos/storage/v1/records.pb.h"

namespace aqueduct::tools {

struct RescoreOptions {
  std::string ruleset_version;  // required: the version to apply
  std::string job;              // checkpoint name; default "rescore-<version>"
  int64_t from_ms = 0;          // completion time range (inclusive)
  int64_t to_ms = std::numeric_limits<int64_t>::max() / 2;
  std::optional<common::v1::Route>
      route;                  // only screenings whose route is this
  bool dry_run = false;       // compute and report, write nothing
  double max_per_second = 0;  // 0 = as fast as possible
  int batch = 1000;           // screenings per page (<= 5000)
};

struct RescoreProgress {
  int64_t done = 0;
  int64_t total =
      0;  // completed screenings in range (an upper bound with filters)
  double per_second = 0;
};

struct RescoreSummary {
  storage::v1::RescoreCheckpoint counts;
  double seconds = 0;
  bool interrupted = false;
  std::vector<std::string>
      sample_changes;  // a few, for the report (no identities)
};

// The batch re-scoring job: has intake re-score its completed screenings
// under one ruleset version through intake's RescoreScreenings stream
// (intake reads them, scoring scores them, intake stores each new outcome
// next to the original, write-once, and opens a re-review case in referral
// for every screening whose route, severity band or safety flags changed),
// and keeps the job's counts and checkpoint. The job holds a batch token
// and nothing else, and talks to intake only. Resumable: a checkpoint (kept
// by intake) after every page, and every write is idempotent, so a killed
// job run again ends in the same state as one clean run.
class Rescorer {
 public:
  // `token` (not owned) gives the batch identity's token for every call.
  Rescorer(intake::v1::RescoreService::StubInterface* intake,
           auth::TokenSource* token, RescoreOptions options)
      : intake_(intake), token_(token), options_(std::move(options)) {}

  // Runs to the end, or until `stop` is set (then every page read is
  // checkpointed and `interrupted` is set).
  absl::StatusOr<RescoreSummary> Run(
      const std::atomic<bool>& stop,
      const std::function<void(const RescoreProgress&)>& progress = {});

 private:
  // One call to intake with the job's token and a 30 s deadline; errors
  // name intake and `what` the job was doing.
  absl::Status CallIntake(
      absl::string_view what,
      const std::function<grpc::Status(grpc::ClientContext*)>& call);
  absl::Status SaveCheckpoint(const std::string& job,
                              const storage::v1::RescoreCheckpoint& cp);

  intake::v1::RescoreService::StubInterface* intake_;
  auth::TokenSource* token_;
  RescoreOptions options_;
};

// Renders the summary as JSON (counts, rate, interrupted).
std::string SummaryJson(const RescoreSummary& summary,
                        const RescoreOptions& options);

}  // namespace aqueduct::tools

#endif  // AQUEDUCT_TOOLS_RESCORE_RESCORE_H_
