// FHIR R4 export (protos/intake/v1/fhir_export_service.proto): who may
// export what, the audit record, and the gRPC adapter.

#include "services/intake/fhir_export_service.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/auth/grpc_auth.h"
#include "common/logging/logging.h"
#include "common/server/callback.h"
#include "common/server/deadlines.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "common/util/names.h"

namespace aqueduct::intake {
namespace {

constexpr char kService[] = "/aqueduct.intake.v1.FhirExportService/";

// The state the person gave (the context item), "" when none.
std::string StateOf(const storage::v1::SessionRecord& record) {
  auto it = record.answers().find("ctx.state");
  return it == record.answers().end() ? std::string() : it->second.code_value();
}

// May `caller` see this completed screening? The person their own;
// clinicians and physicians when licensed in the person's state; the batch
// identity and operators any.
bool MaySee(const auth::Identity& caller,
            const storage::v1::SessionRecord& record) {
  switch (caller.role) {
    case auth::Role::kPatient:
      return caller.subject == record.user_id();
    case auth::Role::kClinician:
    case auth::Role::kPhysician: {
      const std::string state = StateOf(record);
      return !state.empty() && std::find(caller.licensed_states.begin(),
                                         caller.licensed_states.end(),
                                         state) != caller.licensed_states.end();
    }
    case auth::Role::kBatch:
    case auth::Role::kOperator:
      return true;
    default:
      return false;
  }
}

}  // namespace

fhir::CompletedScreening FhirExporter::ForExport(
    const StoredSession& s, const scoring::CatalogIndex& catalog,
    const std::map<std::string, storage::v1::RescoreOutcome>& outcomes) const {
  fhir::CompletedScreening out;
  out.id = s.record.screening_id();
  out.subject = store_->OwnerOf(s.record.user_id());
  out.authored_ms = s.result->complete_time_ms();
  scoring::v1::ScoreAnswersRequest answers = AnswersSoFar(s.record, catalog);
  *out.answers.mutable_answers() =
      std::move(*answers.mutable_answers()->mutable_answers());
  for (const auto& id : s.record.instruments()) out.administered.push_back(id);
  out.result = s.result->scoring();
  for (const auto& [version, outcome] : outcomes) {
    if (version == out.result.ruleset_version()) continue;
    if (outcome.has_changed_result()) {
      out.rescored.push_back(outcome.changed_result());
      continue;
    }
    // Unchanged in care terms: the same scores, bands, flags and route
    // (what the export carries) under the new version. The engine that
    // re-scored it is not recorded, so no engine tag.
    scoring::v1::ScoringResult same = out.result;
    same.set_ruleset_version(version);
    same.clear_engine_version();
    out.rescored.push_back(std::move(same));
  }
  return out;
}

absl::StatusOr<v1::FhirPage> FhirExporter::Questionnaires() const {
  const auto clinical = catalog_->Get();
  if (clinical == nullptr)
    return absl::UnavailableError("catalog not loaded yet");
  v1::FhirPage out;
  for (const auto& in : clinical->catalog->catalog().instruments()) {
    v1::FhirResource* r = out.add_resources();
    r->set_resource_type("Questionnaire");
    r->set_json(fhir::ToJson(fhir::Questionnaire(in, options_)));
  }
  return out;
}

absl::StatusOr<v1::FhirJson> FhirExporter::ExportScreening(
    const v1::ExportScreeningRequest& request, const auth::Identity& caller,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto name, ParseScreeningName(request.name(), "name"));
  const std::string type =
      request.bundle_type().empty() ? "collection" : request.bundle_type();
  if (type != "collection" && type != "transaction") {
    return absl::InvalidArgumentError(
        "bundle_type: must be \"collection\" or \"transaction\"");
  }
  const auto clinical = catalog_->Get();
  if (clinical == nullptr)
    return absl::UnavailableError("catalog not loaded yet");
  ASSIGN_OR_RETURN(auto read, store_->Get(name.screening_id, "", deadline));
  // One answer for "missing", "not completed" and "not yours".
  if (!read.session.has_value() ||
      read.session->record.user_id() != name.user_id ||
      read.session->record.state() != v1::COMPLETED ||
      !read.session->result.has_value() ||
      !MaySee(caller, read.session->record)) {
    return absl::NotFoundError("name: no completed screening you may export");
  }
  ASSIGN_OR_RETURN(auto outcomes,
                   store_->ReadOutcomes({name.screening_id}, deadline));
  storage::v1::ExportAuditEvent event;
  event.set_time_ms(absl::ToUnixMillis(absl::Now()));
  event.set_actor(caller.subject);
  event.set_actor_role(std::string(auth::RoleName(caller.role)));
  event.add_screening_ids(name.screening_id);
  event.set_kind("screening");
  RETURN_IF_ERROR(store_->RecordExport(event, deadline));
  log::Info("fhir export", {{"kind", "screening"},
                            {"actor_role", event.actor_role()},
                            {"screenings", 1}});
  v1::FhirJson out;
  out.set_json(fhir::ToJson(fhir::Bundle(
      fhir::ScreeningResources(
          clinical->catalog->catalog(),
          ForExport(*read.session, *clinical->catalog, outcomes[0]), options_),
      type, options_)));
  return out;
}

absl::StatusOr<v1::FhirPage> FhirExporter::ExportPage(
    const v1::ExportScreeningsRequest& request, const auth::Identity& caller,
    absl::Time deadline) {
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size: 1-", kMaxPageSize, " (0 = ", kDefaultPageSize, ")"));
  }
  const int page_size =
      request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  const int64_t to_ms = request.to_time_ms() == 0
                            ? absl::ToUnixMillis(absl::Now())
                            : request.to_time_ms();
  if (request.from_time_ms() < 0 || to_ms < request.from_time_ms()) {
    return absl::InvalidArgumentError(
        "to_time_ms: must not be before from_time_ms");
  }
  int64_t after_ms = request.from_time_ms() - 1;
  std::string after_member;
  if (!request.page_token().empty()) {
    const std::string range =
        absl::StrCat(request.from_time_ms(), "-", request.to_time_ms());
    ASSIGN_OR_RETURN(
        std::string raw,
        page_tokens_.Read("ExportScreenings", range, request.page_token()));
    std::vector<std::string> parts =
        absl::StrSplit(raw, absl::MaxSplits('/', 1));
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &after_ms)) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    after_member = parts[1];
  }
  const auto clinical = catalog_->Get();
  if (clinical == nullptr)
    return absl::UnavailableError("catalog not loaded yet");
  ASSIGN_OR_RETURN(auto entries, store_->ScanCompleted(
                                     request.from_time_ms(), to_ms, after_ms,
                                     after_member, page_size, deadline));
  std::vector<std::string> ids;
  for (const auto& e : entries) ids.push_back(e.screening_id);
  ASSIGN_OR_RETURN(auto sessions, store_->GetMany(ids, deadline));
  ASSIGN_OR_RETURN(auto outcomes, store_->ReadOutcomes(ids, deadline));
  v1::FhirPage page;
  storage::v1::ExportAuditEvent event;
  std::vector<std::vector<google::protobuf::Value>> per_screening;
  for (size_t i = 0; i < sessions.size(); ++i) {
    const auto& s = sessions[i];
    if (!s.has_value() || s->record.state() != v1::COMPLETED ||
        !s->result.has_value() || !MaySee(caller, s->record)) {
      continue;  // indexed before a completion that did not commit
    }
    event.add_screening_ids(s->record.screening_id());
    per_screening.push_back(fhir::ScreeningResources(
        clinical->catalog->catalog(),
        ForExport(*s, *clinical->catalog, outcomes[i]), options_));
  }
  if (event.screening_ids_size() > 0) {
    event.set_time_ms(absl::ToUnixMillis(absl::Now()));
    event.set_actor(caller.subject);
    event.set_actor_role(std::string(auth::RoleName(caller.role)));
    event.set_kind("range");
    RETURN_IF_ERROR(store_->RecordExport(event, deadline));
    log::Info("fhir export", {{"kind", "range"},
                              {"actor_role", event.actor_role()},
                              {"screenings", event.screening_ids_size()}});
  }
  for (const auto& resources : per_screening) {
    for (const auto& r : resources) {
      v1::FhirResource* out = page.add_resources();
      out->set_resource_type(
          r.struct_value().fields().at("resourceType").string_value());
      out->set_json(fhir::ToJson(r));
    }
  }
  page.set_screenings(event.screening_ids_size());
  if (static_cast<int>(entries.size()) == page_size) {
    const auto& last = entries.back();
    page.set_next_page_token(page_tokens_.Make(
        "ExportScreenings",
        absl::StrCat(request.from_time_ms(), "-", request.to_time_ms()),
        absl::StrCat(last.time_ms, "/", last.member)));
  }
  return page;
}

grpc::ServerUnaryReactor* FhirExportServiceImpl::GetQuestionnaires(
    grpc::CallbackServerContext* context, const v1::GetQuestionnairesRequest*,
    v1::FhirPage* response) {
  auto who = auth::CheckCall(*authorizer_, *context,
                             absl::StrCat(kService, "GetQuestionnaires"));
  if (!who.ok()) return server::FinishNow(context, ToGrpcStatus(who.status()));
  return server::FinishNow(context,
                           ReplyFrom(exporter_->Questionnaires(), response));
}

grpc::ServerUnaryReactor* FhirExportServiceImpl::ExportScreening(
    grpc::CallbackServerContext* context,
    const v1::ExportScreeningRequest* request, v1::FhirJson* response) {
  auto who = auth::CheckCall(*authorizer_, *context,
                             absl::StrCat(kService, "ExportScreening"));
  if (!who.ok()) return server::FinishNow(context, ToGrpcStatus(who.status()));
  return server::FinishOnPool(
      context, pool_,
      [this, request, response, caller = *std::move(who),
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(exporter_->ExportScreening(*request, caller, deadline),
                         response);
      });
}

namespace {

// One ExportScreenings stream: each page is read and built on the pool,
// then written; the next is read only once the write is done, so a slow
// reader holds no more than one page. Exactly one step is pending at a
// time (a pool task or a write), so Finish is called once, by whichever
// step ends the stream.
class ExportWriter final : public grpc::ServerWriteReactor<v1::FhirPage> {
 public:
  ExportWriter(FhirExporter* exporter, v1::ExportScreeningsRequest request,
               auth::Identity caller, server::WorkerPool* pool,
               absl::Duration per_page)
      : exporter_(exporter),
        request_(std::move(request)),
        caller_(std::move(caller)),
        pool_(pool),
        per_page_(per_page) {
    NextPage();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::CANCELLED);
    } else if (last_) {
      Finish(grpc::Status::OK);
    } else {
      NextPage();
    }
  }
  void OnDone() override { delete this; }

 private:
  void NextPage() {
    if (!pool_->Schedule([this] {
          auto page =
              exporter_->ExportPage(request_, caller_, absl::Now() + per_page_);
          if (!page.ok()) {
            Finish(ToGrpcStatus(page.status()));
            return;
          }
          page_ = *std::move(page);
          last_ = page_.next_page_token().empty();
          request_.set_page_token(page_.next_page_token());
          StartWrite(&page_);
        })) {
      Finish(server::BusyStatus());
    }
  }

  FhirExporter* const exporter_;
  v1::ExportScreeningsRequest request_;
  const auth::Identity caller_;
  server::WorkerPool* const pool_;
  const absl::Duration per_page_;
  v1::FhirPage page_;
  bool last_ = false;
};

}  // namespace

grpc::ServerWriteReactor<v1::FhirPage>* FhirExportServiceImpl::ExportScreenings(
    grpc::CallbackServerContext* context,
    const v1::ExportScreeningsRequest* request) {
  auto who = auth::CheckCall(*authorizer_, *context,
                             absl::StrCat(kService, "ExportScreenings"));
  if (!who.ok())
    return new server::RefusedWriter<v1::FhirPage>(ToGrpcStatus(who.status()));
  return new ExportWriter(exporter_, *request, *std::move(who), pool_,
                          max_rpc_time_);
}

}  // namespace aqueduct::intake
