#ifndef AQUEDUCT_SERVICES_INTAKE_REDIS_KEYS_H_
#define AQUEDUCT_SERVICES_INTAKE_REDIS_KEYS_H_

// Intake's Redis key names, for RedisSessionStore's files alone (the layout
// is in redis_session_store.h). No other service or tool names these keys.

#include <string>

#include "common/redis/redis_client.h"

namespace aqueduct::intake::redis_keys {

inline constexpr char kService[] = "intake";

inline std::string SessionKey(const std::string& id) {
  return redis::Key(kService, id, "session");
}
inline std::string OpenKey(const std::string& owner) {
  return redis::Key(kService, owner, "open");
}
inline std::string OutboxKey() { return redis::GlobalKey(kService, "outbox"); }
inline std::string RiskOutboxKey() {
  return redis::GlobalKey(kService, "risk-outbox");
}
inline std::string ResultsKey(const std::string& owner) {
  return redis::Key(kService, owner, "results");
}
inline std::string CompletedKey() {
  return redis::GlobalKey(kService, "completed");
}
inline std::string CheckpointKey(const std::string& job) {
  return redis::Key(kService, job, "rescore-checkpoint");
}

}  // namespace aqueduct::intake::redis_keys

#endif  // AQUEDUCT_SERVICES_INTAKE_REDIS_KEYS_H_
