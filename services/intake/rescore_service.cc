#include "services/intake/rescore_service.h"

#include <atomic>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/auth/grpc_auth.h"
#include "common/server/callback.h"
#include "common/server/deadlines.h"
#include "common/status/status_util.h"
#include "services/intake/intake_metrics.h"

namespace aqueduct::intake {

template <typename Request, typename Response, typename Call>
grpc::ServerUnaryReactor* RescoreServiceImpl::Serve(
    grpc::CallbackServerContext* context, const char* rpc, Call call,
    const Request* request, Response* response) {
  auto who =
      auth::CheckCall(*authorizer_, *context,
                      absl::StrCat("/aqueduct.intake.v1.RescoreService/", rpc));
  if (!who.ok()) return server::FinishNow(context, ToGrpcStatus(who.status()));
  return server::FinishOnPool(
      context, pool_,
      [call, request, response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(call(*request, deadline), response);
      });
}

grpc::ServerUnaryReactor* RescoreServiceImpl::GetRescoreJob(
    grpc::CallbackServerContext* context,
    const v1::GetRescoreJobRequest* request, v1::RescoreJob* response) {
  return Serve(
      context, "GetRescoreJob",
      [this](const auto& r, absl::Time d) { return source_->GetJob(r, d); },
      request, response);
}

grpc::ServerUnaryReactor* RescoreServiceImpl::SaveRescoreCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::SaveRescoreCheckpointRequest* request, v1::RescoreJob* response) {
  return Serve(
      context, "SaveRescoreCheckpoint",
      [this](const auto& r, absl::Time d) {
        return source_->SaveCheckpoint(r, d);
      },
      request, response);
}

namespace {

// One RescoreScreenings stream. RescoreSource::Run runs on a thread of the
// stream's own and hands each page to Send, which writes it and waits for
// the write to finish (so the job's reading paces intake's). Finish is
// called once, by that thread, as its last use of the reactor; gRPC calls
// OnDone after it.
class RescoreWriter final : public grpc::ServerWriteReactor<v1::RescoredPage> {
 public:
  RescoreWriter(RescoreSource* source, v1::RescoreScreeningsRequest request,
                std::function<void()> on_exit)
      : source_(source),
        request_(std::move(request)),
        on_exit_(std::move(on_exit)) {
    std::thread([this] { Run(); }).detach();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) stop_.store(true);  // the job went away
  }
  void OnCancel() override { stop_.store(true); }
  void OnDone() override { delete this; }

 private:
  void Run() {
    absl::Status s = source_->Run(
        request_, stop_,
        [this](v1::RescoredPage page) { return Send(std::move(page)); });
    std::function<void()> on_exit = std::move(on_exit_);
    if (stop_.load()) {
      Finish(grpc::Status::CANCELLED);
    } else {
      Finish(ToGrpcStatus(s));
    }
    on_exit();  // `this` may be gone already
  }

  bool Send(v1::RescoredPage page) {
    if (stop_.load()) return false;
    metrics::RescoredPage(page);
    page_ = std::move(page);
    {
      absl::MutexLock lock(&mu_);
      writing_ = true;
    }
    StartWrite(&page_);
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](bool* writing) { return !*writing; }, &writing_));
    return !stop_.load();
  }

  RescoreSource* const source_;
  const v1::RescoreScreeningsRequest request_;
  std::function<void()> on_exit_;
  std::atomic<bool> stop_{false};
  v1::RescoredPage page_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<v1::RescoredPage>*
RescoreServiceImpl::RescoreScreenings(
    grpc::CallbackServerContext* context,
    const v1::RescoreScreeningsRequest* request) {
  auto who =
      auth::CheckCall(*authorizer_, *context,
                      "/aqueduct.intake.v1.RescoreService/RescoreScreenings");
  if (!who.ok())
    return new server::RefusedWriter<v1::RescoredPage>(
        ToGrpcStatus(who.status()));
  if (absl::Status bad = source_->Validate(*request); !bad.ok())
    return new server::RefusedWriter<v1::RescoredPage>(ToGrpcStatus(bad));
  {
    absl::MutexLock lock(&mu_);
    if (streams_ >= kMaxStreams) {
      return new server::RefusedWriter<v1::RescoredPage>(grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("intake runs at most ", kMaxStreams,
                       " re-scoring jobs at once: try again when one ends")));
    }
    metrics::RescoreJobs(++streams_);
  }
  return new RescoreWriter(source_, *request, [this] {
    absl::MutexLock lock(&mu_);
    metrics::RescoreJobs(--streams_);
  });
}

RescoreServiceImpl::~RescoreServiceImpl() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* streams) { return *streams == 0; }, &streams_));
}

}  // namespace aqueduct::intake
