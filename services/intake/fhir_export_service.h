#ifndef AQUEDUCT_SERVICES_INTAKE_FHIR_EXPORT_SERVICE_H_
#define AQUEDUCT_SERVICES_INTAKE_FHIR_EXPORT_SERVICE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/authorizer.h"
#include "common/auth/jwt.h"
#include "common/crypto/page_tokens.h"
#include "common/server/worker_pool.h"
#include "protos/intake/v1/fhir_export_service.grpc.pb.h"
#include "services/intake/clinical.h"
#include "services/intake/fhir_export.h"
#include "services/intake/session_store.h"

namespace aqueduct::intake {

// The FHIR export's logic (no gRPC types): reads completed screenings,
// decides who may see which, records each export in the audit before
// answering, and builds the resources (fhir_export.h).
class FhirExporter {
 public:
  static constexpr int kDefaultPageSize = 100;
  static constexpr int kMaxPageSize = 500;

  FhirExporter(SessionStore* store, const CatalogHolder* catalog,
               crypto::PageTokens page_tokens, fhir::ExportOptions options)
      : store_(store),
        catalog_(catalog),
        page_tokens_(std::move(page_tokens)),
        options_(std::move(options)) {}

  absl::StatusOr<v1::FhirPage> Questionnaires() const;
  absl::StatusOr<v1::FhirJson> ExportScreening(
      const v1::ExportScreeningRequest& request, const auth::Identity& caller,
      absl::Time deadline);
  // One page of a bulk export (ExportScreenings sends them until
  // next_page_token is empty).
  absl::StatusOr<v1::FhirPage> ExportPage(
      const v1::ExportScreeningsRequest& request, const auth::Identity& caller,
      absl::Time deadline);

 private:
  // `outcomes`: the screening's re-scoring outcomes by ruleset version.
  fhir::CompletedScreening ForExport(
      const StoredSession& s, const scoring::CatalogIndex& catalog,
      const std::map<std::string, storage::v1::RescoreOutcome>& outcomes) const;

  SessionStore* store_;
  const CatalogHolder* catalog_;
  crypto::PageTokens page_tokens_;
  fhir::ExportOptions options_;
};

// gRPC adapter, on the callback API as every service: the caller checked
// inline, the work on `pool`; a bulk export's stream writes one page at a
// time from the pool, each page read only once the one before was sent.
class FhirExportServiceImpl final
    : public v1::FhirExportService::CallbackService {
 public:
  FhirExportServiceImpl(FhirExporter* exporter,
                        std::shared_ptr<const auth::Authorizer> authorizer,
                        absl::Duration max_rpc_time, server::WorkerPool* pool)
      : exporter_(exporter),
        authorizer_(std::move(authorizer)),
        max_rpc_time_(max_rpc_time),
        pool_(pool) {}

  grpc::ServerUnaryReactor* GetQuestionnaires(
      grpc::CallbackServerContext* context,
      const v1::GetQuestionnairesRequest* request,
      v1::FhirPage* response) override;
  grpc::ServerUnaryReactor* ExportScreening(
      grpc::CallbackServerContext* context,
      const v1::ExportScreeningRequest* request,
      v1::FhirJson* response) override;
  grpc::ServerWriteReactor<v1::FhirPage>* ExportScreenings(
      grpc::CallbackServerContext* context,
      const v1::ExportScreeningsRequest* request) override;

 private:
  FhirExporter* exporter_;
  std::shared_ptr<const auth::Authorizer> authorizer_;
  absl::Duration max_rpc_time_;
  server::WorkerPool* pool_;
};

}  // namespace aqueduct::intake

#endif  // AQUEDUCT_SERVICES_INTAKE_FHIR_EXPORT_SERVICE_H_
