#ifndef AQUEDUCT_SERVICES_INTAKE_RESCORE_SOURCE_H_
#define AQUEDUCT_SERVICES_INTAKE_RESCORE_SOURCE_H_

#include <atomic>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/crypto/page_tokens.h"
#include "protos/intake/v1/rescore_service.pb.h"
#include "services/intake/peers.h"
#include "services/intake/session_store.h"

namespace aqueduct::intake {

// The use case "serve a batch re-scoring job": intake's completed
// screenings re-scored in pages under a new ruleset (read from intake's own
// store, scored by scoring's Rescore stream, outcomes stored next to the
// originals, a re-review case opened in referral wherever care changed),
// and the job's checkpoint. The RescoreService RPCs
// (protos/intake/v1/rescore_service.proto) are a thin adapter over this.
// Arguments are checked here; INVALID_ARGUMENT names the field.
class RescoreSource {
 public:
  static constexpr int kMaxPageSize = 5000;  // scoring's limit per message

  // Page tokens are sealed with `page_token_keys` (the data keys, so a job
  // resumes on any replica); null: a random key of this process (tests).
  RescoreSource(SessionStore* store, ScoringPeer* scoring,
                ReferralPeer* referral,
                const crypto::DataKeys* page_token_keys = nullptr)
      : store_(store),
        scoring_(scoring),
        referral_(referral),
        page_tokens_(page_token_keys != nullptr
                         ? crypto::PageTokens(page_token_keys)
                         : crypto::PageTokens()) {}

  absl::StatusOr<v1::RescoreJob> GetJob(const v1::GetRescoreJobRequest& request,
                                        absl::Time deadline);
  absl::StatusOr<v1::RescoreJob> SaveCheckpoint(
      const v1::SaveRescoreCheckpointRequest& request, absl::Time deadline);

  // Checks a RescoreScreenings request (before a stream starts).
  absl::Status Validate(const v1::RescoreScreeningsRequest& request) const;

  // Runs a RescoreScreenings request to its last page, handing each page to
  // `send` in order; stops early (OK) when `send` returns false or `stop`
  // is set, and with the error when Redis or scoring fails. Three stages
  // overlap, each at most four pages ahead of the next: a reader thread
  // reads pages and writes them to scoring, a storer thread reads scoring's
  // answers and stores the outcomes, and the calling thread opens the
  // changed screenings' re-review cases and sends the page.
  absl::Status Run(const v1::RescoreScreeningsRequest& request,
                   const std::atomic<bool>& stop,
                   const std::function<bool(v1::RescoredPage)>& send);

 private:
  // Opens re-review cases in referral; how many are open.
  absl::StatusOr<int64_t> OpenCases(referral::v1::CreateReferralsRequest cases);

  // The page token's position: after (time_ms, member) in the index.
  std::string PageToken(int64_t time_ms, const std::string& member) const;
  absl::Status ParsePageToken(const std::string& token, int64_t* time_ms,
                              std::string* member) const;

  SessionStore* store_;
  ScoringPeer* scoring_;
  ReferralPeer* referral_;
  crypto::PageTokens page_tokens_;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_RESCORE_SOURCE_H_
