#ifndef AQUEDUCT_SERVICES_INTAKE_REDIS_SESSION_STORE_H_
#define AQUEDUCT_SERVICES_INTAKE_REDIS_SESSION_STORE_H_

#include "common/redis/redis_client.h"
#include "services/intake/session_store.h"

namespace aqueduct::intake {

// Keys (all of one session under one hash tag, so one Lua script updates
// them atomically and they sit in one Redis Cluster slot):
//   aq:intake:{<screening>}:session     hash v = version, d = SessionRecord,
//                                        r = ResultRecord (once completed)
//   aq:intake:{<screening>}:req:<id>    stored reply of a request id (24 h)
//   aq:intake:{<user>}:start:<id>       screening id bound to a start request
//   aq:intake:{<user>}:screenings       zset of the user's screenings
class RedisSessionStore : public SessionStore {
 public:
  explicit RedisSessionStore(redis::Client* client,
                             absl::Duration reply_ttl = absl::Hours(24))
      : client_(client), reply_ttl_(reply_ttl) {}

  absl::StatusOr<std::string> ClaimStartRequest(const std::string& user_id,
                                                const std::string& request_id,
                                                const std::string& proposed_id,
                                                absl::Time deadline) override;
  absl::StatusOr<Read> Get(const std::string& screening_id,
                           const std::string& request_id,
                           absl::Time deadline) override;
  absl::StatusOr<WriteOutcome> Write(const std::string& screening_id,
                                     const WriteRequest& request,
                                     absl::Time deadline) override;
  absl::Status IndexForUser(const std::string& user_id,
                            const std::string& screening_id,
                            int64_t create_time_ms,
                            absl::Time deadline) override;

 private:
  redis::Client* client_;
  absl::Duration reply_ttl_;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_REDIS_SESSION_STORE_H_
