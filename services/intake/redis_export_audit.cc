// RedisSessionStore's export audit (ExportAudit): a capped stream of sealed
// events, bound to the stream's key so an entry cannot be moved elsewhere.

#include "common/status/status_macros.h"
#include "services/intake/redis_keys.h"
#include "services/intake/redis_session_store.h"

namespace aqueduct::intake {

using redis_keys::ExportAuditKey;

absl::Status RedisSessionStore::RecordExport(
    const storage::v1::ExportAuditEvent& event, absl::Time deadline) {
  const std::string sealed =
      keys_->Seal(event.SerializeAsString(), ExportAuditKey());
  ASSIGN_OR_RETURN(auto reply,
                   client_->Command({"XADD", ExportAuditKey(), "MAXLEN", "~",
                                     "1000000", "*", "e", sealed},
                                    deadline));
  if (reply.is_error()) return client_->ErrorOf(reply);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<storage::v1::ExportAuditEvent>>
RedisSessionStore::RecentExports(int limit, absl::Time deadline) {
  ASSIGN_OR_RETURN(auto reply,
                   client_->Command({"XREVRANGE", ExportAuditKey(), "+", "-",
                                     "COUNT", std::to_string(limit)},
                                    deadline));
  if (reply.is_error()) return client_->ErrorOf(reply);
  std::vector<storage::v1::ExportAuditEvent> out;
  for (const auto& entry : reply.elements) {
    // [id, [field, value, ...]]
    if (entry.elements.size() != 2) continue;
    const auto& fields = entry.elements[1].elements;
    for (size_t i = 0; i + 1 < fields.size(); i += 2) {
      if (fields[i].str != "e") continue;
      ASSIGN_OR_RETURN(std::string plain,
                       keys_->Open(fields[i + 1].str, ExportAuditKey()));
      storage::v1::ExportAuditEvent event;
      if (!event.ParseFromString(plain))
        return absl::InternalError("export audit: an entry does not parse");
      out.push_back(std::move(event));
    }
  }
  return out;
}

}  // namespace aqueduct::intake
