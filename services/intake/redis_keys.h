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
// When each outbox entry was first queued (member as in the outbox, score
// ms): the outboxes' own scores are when an entry is next due, which a
// retry moves. Read for the oldest entry's age (a metric) only.
inline std::string OutboxSinceKey() {
  return redis::GlobalKey(kService, "outbox-since");
}
inline std::string RiskOutboxSinceKey() {
  return redis::GlobalKey(kService, "risk-outbox-since");
}
inline std::string ExportAuditKey() {
  return redis::GlobalKey(kService, "export-audit");
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
