#ifndef AQUEDUCT_SERVICES_INTAKE_SESSION_STORE_H_
#define AQUEDUCT_SERVICES_INTAKE_SESSION_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/scoring/v1/result.pb.h"
#include "protos/storage/v1/records.pb.h"
#include "services/intake/completed_screenings.h"
#include "services/intake/export_audit.h"
#include "services/intake/outboxes.h"
#include "services/intake/rate_limits.h"
#include "services/intake/results_index.h"

namespace aqueduct::intake {

struct StoredSession {
  storage::v1::SessionRecord record;
  int64_t version = 0;
  std::optional<storage::v1::ResultRecord> result;
};

// Storage of screening sessions. All state lives here, so any replica can
// continue any session (intake's SessionCache only spares a read; every
// write is checked against the version stored here). The sessions are
// declared here; what else intake stores has an interface of its own by
// kind (rate limits, each person's results index, the outboxes, the
// completed screenings re-scoring walks), which a user of one kind alone
// takes instead of the whole store. A session's write touches several
// kinds in one round trip (WriteRequest), so one store holds them all.
class SessionStore : public RateLimits,
                     public ResultsIndex,
                     public Outboxes,
                     public CompletedScreenings,
                     public ExportAudit {
 public:
  virtual ~SessionStore() = default;

  // Binds a start request id of a user to a screening id, once: returns
  // `proposed_id` the first time, the bound id on every retry.
  virtual absl::StatusOr<std::string> ClaimStartRequest(
      const std::string& user_id, const std::string& request_id,
      const std::string& proposed_id, absl::Time deadline) = 0;

  // Whether a request id was applied to a session already: no, as its
  // latest write (the session is as that write left it), or earlier.
  enum class Applied { kNo, kLatest, kEarlier };
  struct Read {
    std::optional<StoredSession> session;  // nullopt: no such session
    Applied applied = Applied::kNo;        // of `request_id`
  };
  // The session and, when `request_id` is not empty, whether it was applied
  // already, in one round trip.
  virtual absl::StatusOr<Read> Get(const std::string& screening_id,
                                   const std::string& request_id,
                                   absl::Time deadline) = 0;

  struct WriteRequest {
    int64_t expected_version = 0;  // 0 = create (fails if it exists)
    storage::v1::SessionRecord record;
    std::optional<storage::v1::ResultRecord>
        result;              // stored once, never rewritten
    std::string request_id;  // required: a retry is never applied twice
    // When > 0, also moves the user's open-session slot for this screening
    // to expire then (in the same round trip).
    int64_t touch_open_slot_until_ms = 0;
    // Also removes the screening from the hand-off outbox (referral has its
    // result), in the same round trip, whatever the write's outcome.
    bool remove_handoff = false;
    // Also frees the user's open-session slot for this screening, in the
    // same round trip, whatever the write's outcome: for writes to a
    // screening already completed (the hand-off's), which holds none.
    bool release_open_slot = false;
    // A completion's indexes, sent ahead of the write in the same round
    // trip (Redis runs them in order): the screening into its user's
    // completed screenings (newest first) and into every completed
    // screening (what batch re-scoring walks), both at `complete_time_ms`,
    // and into the hand-off outbox due at `handoff_due_ms`. Whatever the
    // write's outcome they stay: a crash, a conflict or a retry leaves
    // entries whose screening is not completed, which readers skip and the
    // outbox worker finds nothing to hand off for, never a completed result
    // that referral does not learn about. Idempotent. A completion that
    // loses a race to another can so put the screening back in the outbox
    // after the winner's hand-off took it out (the worker drops an entry
    // whose screening is delivered) and move its index entries to its own
    // time, a few ms off the winner's (readers do not take a screening's
    // own entry for another one, and page through the index by its own
    // times).
    struct CompletionIndex {
      int64_t complete_time_ms = 0;
      int64_t handoff_due_ms = 0;
    };
    std::optional<CompletionIndex> index_completion;
    // When set, also queues an early risk case at this crisis route
    // (CRISIS_URGENT or CRISIS_ACUTE) in the risk outbox, due at once,
    // ahead of the write in the same round trip: a crash right after the
    // page is acknowledged loses nothing, and an entry whose write did not
    // commit finds nothing owed and is dropped.
    std::optional<common::v1::Route> queue_early_risk;
    absl::Duration ttl = absl::ZeroDuration();  // zero = keep forever
  };
  struct WriteOutcome {
    // kLatest / kApplied: the request id was applied already, as the
    // latest write / earlier (nothing written now).
    enum class Kind {
      kWritten,
      kLatest,
      kApplied,
      kConflict,
      kMissing,
      kExists
    };
    Kind kind = Kind::kWritten;
    int64_t version =
        0;  // new version (kWritten) or current (kConflict, kExists)
  };
  // Atomically: applied-already check, version check, write, TTL.
  virtual absl::StatusOr<WriteOutcome> Write(const std::string& screening_id,
                                             const WriteRequest& request,
                                             absl::Time deadline) = 0;

  // The same two without blocking the calling thread, for handlers on
  // gRPC's callback API: `done` runs once, on the store's I/O thread (or on
  // this one when nothing could be sent). `request` is read before the call
  // returns. A store with no non-blocking path runs the blocking call here.
  using WriteDone = absl::AnyInvocable<void(absl::StatusOr<WriteOutcome>) &&>;
  virtual void WriteAsync(const std::string& screening_id,
                          const WriteRequest& request, absl::Time deadline,
                          WriteDone done) {
    std::move(done)(Write(screening_id, request, deadline));
  }
  // How the store names a user in key names and global indexes: a keyed
  // pseudonym, so a dump of the store does not list who was screened.
  // Methods taking a user id pseudonymise it themselves; index entries
  // (HandoffEntry, CompletedEntry) carry the pseudonym as `owner`.
  virtual std::string OwnerOf(const std::string& user_id) const = 0;

  // Without a version change (a page's etag stays valid): `keep` makes an
  // unfinished session never expire (an early risk case is still owed);
  // otherwise it expires after `ttl` as any idle one does. A completed
  // session is never given an expiry.
  virtual absl::Status KeepSession(const std::string& screening_id, bool keep,
                                   absl::Duration ttl, absl::Time deadline) = 0;

  // Many sessions in one round trip (nullopt where missing), as Get reads them.
  virtual absl::StatusOr<std::vector<std::optional<StoredSession>>> GetMany(
      const std::vector<std::string>& screening_ids, absl::Time deadline) = 0;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_SESSION_STORE_H_
