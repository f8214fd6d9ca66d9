#ifndef AQUEDUCT_SERVICES_INTAKE_RESULTS_INDEX_H_
#define AQUEDUCT_SERVICES_INTAKE_RESULTS_INDEX_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/scoring/v1/result.pb.h"
#include "protos/storage/v1/records.pb.h"

namespace aqueduct::intake {

// Each person's completed screenings, newest first (part of SessionStore).
class ResultsIndex {
 public:
  virtual ~ResultsIndex() = default;

  // The user's completed screenings
  // (SessionStore::WriteRequest::index_completion), newest first.
  struct IndexEntry {
    std::string screening_id;
    int64_t time_ms = 0;
  };
  // Up to `limit` result entries strictly older than (`before_ms`,
  // `before_id`) in (time desc, id desc) order; from the newest when
  // `before_id` is empty.
  virtual absl::StatusOr<std::vector<IndexEntry>> ListResults(
      const std::string& user_id, int64_t before_ms,
      const std::string& before_id, int limit, absl::Time deadline) = 0;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_RESULTS_INDEX_H_
