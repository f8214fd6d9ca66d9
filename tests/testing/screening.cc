#include "tests/testing/screening.h"

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/map.h"
#include "services/intake/flow.h"
#include "tests/testing/process.h"

namespace aqueduct::testing {

absl::StatusOr<std::unique_ptr<scoring::ScoringEngine>> LoadRepositoryEngine() {
  return scoring::ScoringEngine::Load(
      SourcePath("data/catalog/catalog.textproto"),
      SourcePath("data/rulesets"));
}

tools::Overrides AdultContext(const std::string& state) {
  return {{"ctx.role", "other"},
          {"ctx.works", "yes"},
          {"ctx.works_with_clients", "no"},
          {"ctx.state", state},
          {"ctx.age", "35"},
          {"ctx.sex", "not_stated"}};
}

absl::StatusOr<scoring::v1::ScoreAnswersRequest> ScriptedScreening(
    const scoring::ScoringEngine& engine, const tools::Overrides& overrides) {
  const auto& rs = engine.newest();
  google::protobuf::Map<std::string, common::v1::Answer> answers;
  for (int page = 0; page < 50; ++page) {
    auto flow = intake::ComputeFlow(engine.catalog(), rs.sets(), answers);
    if (!flow.ok()) return flow.status();
    if (flow->page.empty()) {
      scoring::v1::ScoreAnswersRequest request;
      for (const auto& info : engine.catalog().instruments()) {
        for (const auto& item : info.items) {
          auto it = answers.find(item.def->id());
          if (it != answers.end())
            *request.mutable_answers()->add_answers() = it->second;
        }
      }
      for (const auto& id : flow->instruments)
        request.add_administered_instruments(id);
      return request;
    }
    for (const auto& ask : flow->page) {
      auto answer = tools::ScriptedAnswer(*ask.item, overrides);
      if (!answer.ok()) return answer.status();
      answers[ask.item->id()] = *answer;
    }
  }
  return absl::InternalError("flow did not end after 50 pages");
}

absl::StatusOr<intake::v1::SubmitAnswersResponse> SubmitAndWait(
    intake::IntakeCore& core, const intake::v1::SubmitAnswersRequest& request,
    absl::Time deadline, server::WorkerPool* pool) {
  struct Reply {
    absl::Notification done;
    absl::Mutex mu;
    absl::StatusOr<intake::v1::SubmitAnswersResponse> value =
        absl::InternalError("no reply");
  };
  auto reply =
      std::make_shared<Reply>();  // outlives a reply that comes too late
  core.SubmitAnswersAsync(
      std::make_shared<const intake::v1::SubmitAnswersRequest>(request),
      deadline, pool,
      [reply](absl::StatusOr<intake::v1::SubmitAnswersResponse> r) {
        {
          absl::MutexLock lock(&reply->mu);
          reply->value = std::move(r);
        }
        reply->done.Notify();
      });
  if (!reply->done.WaitForNotificationWithTimeout(absl::Seconds(30)))
    return absl::InternalError("no reply");
  absl::MutexLock lock(&reply->mu);
  return reply->value;
}

}  // namespace aqueduct::testing
