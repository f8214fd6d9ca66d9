#ifndef AQUEDUCT_SERVICES_INTAKE_COMPLETED_SCREENINGS_H_
#define AQUEDUCT_SERVICES_INTAKE_COMPLETED_SCREENINGS_H_

#include <google/protobuf/arena.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/scoring/v1/result.pb.h"
#include "protos/storage/v1/records.pb.h"

namespace aqueduct::intake {

// Every completed screening, for batch re-scoring: the index by completion
// time, what re-scoring reads of each, the outcomes stored next to the
// originals, and the jobs' checkpoints (part of SessionStore).
class CompletedScreenings {
 public:
  virtual ~CompletedScreenings() = default;

  // Every completed screening by completion time (for batch re-scoring;
  // WriteRequest::index_completion writes it), in the layout this build
  // writes (RedisSessionStore::MigrateOlderLayouts rewrites older data).
  struct CompletedEntry {
    std::string screening_id;
    int64_t time_ms = 0;
    std::string member;  // the index position: the screening id
  };
  // How many completed screenings fall in [from_ms, to_ms].
  virtual absl::StatusOr<int64_t> CountCompleted(int64_t from_ms, int64_t to_ms,
                                                 absl::Time deadline) = 0;
  // Up to `limit` entries with from_ms <= time <= to_ms strictly after
  // (after_ms, after_member), oldest first.
  virtual absl::StatusOr<std::vector<CompletedEntry>> ScanCompleted(
      int64_t from_ms, int64_t to_ms, int64_t after_ms,
      const std::string& after_member, int limit, absl::Time deadline) = 0;

  // What re-scoring needs of many completed screenings, in one round trip:
  // the answers as stored (a serialized ScoreAnswersRequest, forwarded to
  // scoring as is), the digest of the original result, and the outcome
  // already stored under `ruleset_version`, if any. `completed` is false for
  // ids that are missing or not completed. The messages live on `arena`
  // (a page's: re-scoring reads thousands a second, and freeing them one by
  // one cost more than reading them).
  struct ForRescore {
    bool completed = false;
    std::string packed_request;
    scoring::v1::ResultDigest* before = nullptr;     // set when completed
    storage::v1::RescoreOutcome* outcome = nullptr;  // null: none stored
  };
  virtual absl::StatusOr<std::vector<ForRescore>> ReadForRescore(
      const std::vector<std::string>& screening_ids,
      const std::string& ruleset_version, absl::Time deadline,
      google::protobuf::Arena* arena) = 0;
  // Every re-scoring outcome stored beside each screening's original
  // result, by ruleset version (empty where none or missing), for exports.
  virtual absl::StatusOr<
      std::vector<std::map<std::string, storage::v1::RescoreOutcome>>>
  ReadOutcomes(const std::vector<std::string>& screening_ids,
               absl::Time deadline) = 0;
  // Stores re-scoring outcomes next to the original result, write-once per
  // ruleset version (the original and earlier outcomes are never rewritten).
  virtual absl::Status PutOutcomes(
      const std::vector<
          std::pair<std::string, const storage::v1::RescoreOutcome*>>& outcomes,
      const std::string& ruleset_version, absl::Time deadline) = 0;

  virtual absl::StatusOr<std::optional<storage::v1::RescoreCheckpoint>>
  GetCheckpoint(const std::string& job, absl::Time deadline) = 0;
  virtual absl::Status PutCheckpoint(
      const std::string& job, const storage::v1::RescoreCheckpoint& checkpoint,
      absl::Time deadline) = 0;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_COMPLETED_SCREENINGS_H_
