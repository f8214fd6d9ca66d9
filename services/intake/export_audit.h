#ifndef AQUEDUCT_SERVICES_INTAKE_EXPORT_AUDIT_H_
#define AQUEDUCT_SERVICES_INTAKE_EXPORT_AUDIT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/storage/v1/records.pb.h"

namespace aqueduct::intake {

// The record of every FHIR export (part of SessionStore): the one place raw
// answers leave sealed storage, so each export is kept, sealed, before its
// resources are sent.
class ExportAudit {
 public:
  virtual ~ExportAudit() = default;
  // Appends one event; an export whose event cannot be recorded is refused.
  virtual absl::Status RecordExport(const storage::v1::ExportAuditEvent& event,
                                    absl::Time deadline) = 0;
  // The most recent events, newest first (operators' review, tests).
  virtual absl::StatusOr<std::vector<storage::v1::ExportAuditEvent>>
  RecentExports(int limit, absl::Time deadline) = 0;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_EXPORT_AUDIT_H_
