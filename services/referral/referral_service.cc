#include "services/referral/referral_service.h"

#include <grpcpp/support/proto_buffer_reader.h>
#include <grpcpp/support/proto_buffer_writer.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/auth/grpc_auth.h"
#include "common/server/callback.h"
#include "common/server/deadlines.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "common/util/names.h"

namespace aqueduct::referral {
namespace {
constexpr char kService[] = "/aqueduct.referral.v1.ReferralService/";

// How long a catch-up read from Redis waits (it reads what is there).
constexpr absl::Duration kCatchUpBlock = absl::Milliseconds(1);
// Events a watcher takes at a time (its own buffer, at most this many).
constexpr size_t kWatchBatch = 100;

// A message's bytes as gRPC sends them.
grpc::ByteBuffer Serialized(const google::protobuf::MessageLite& message) {
  grpc::ByteBuffer out;
  bool own_buffer = false;
  (void)grpc::GenericSerialize<grpc::ProtoBufferWriter,
                               google::protobuf::MessageLite>(message, &out,
                                                              &own_buffer);
  return out;
}

// Bytes shared by every stream that sends them: the slice holds a reference
// to `bytes`, not a copy.
grpc::ByteBuffer Shared(std::shared_ptr<const std::string> bytes) {
  auto* held = new std::shared_ptr<const std::string>(std::move(bytes));
  grpc::Slice slice(
      const_cast<char*>((*held)->data()), (*held)->size(),
      [](void* p) {
        delete static_cast<std::shared_ptr<const std::string>*>(p);
      },
      held);
  return grpc::ByteBuffer(&slice, 1);
}

// One WatchQueue stream, fed by the process's QueueFeed: a step (on the
// fan-out pool, never blocking) takes the events after the stream's cursor,
// keeps those the caller may see (who the caller is, resolved once when the
// stream starts) and writes them one by one without a thread; when the last
// is written the next step runs. Each event was serialized once by the feed
// for every stream that sends it. With nothing new the stream holds no
// thread: the feed's wake-up schedules the next step. A stream whose cursor
// is older than the feed's window (a portal resuming from an old cursor, or
// one too slow to keep up) catches up from Redis itself, a batch at a time,
// on the catch-up pool; no watcher ever waits for another's read. At most one
// step or write is in progress, so the fields need no lock but what the wake-up
// and OnCancel share (`state_`). Finish is called once, from whichever stage
// ends the stream; gRPC calls OnDone after it, when nothing of this stream is
// running any more.
class QueueWatcher final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  QueueWatcher(ReferralCore* core, QueueFeed* feed, server::WorkerPool* pool,
               server::WorkerPool* catchup_pool, v1::WatchQueueRequest request,
               Actor actor, absl::Duration max_rpc_time)
      : core_(core),
        feed_(feed),
        pool_(pool),
        catchup_pool_(catchup_pool),
        request_(std::move(request)),
        actor_(std::move(actor)),
        max_rpc_time_(max_rpc_time),
        state_(std::make_shared<State>()) {
    state_->watcher = this;
    // Start reads Redis (the starting cursor): a blocking step.
    if (!catchup_pool_->Schedule([this] { Start(); }))
      End(server::BusyStatus());
  }

  void OnWriteDone(bool ok) override {
    server::HappensAfter(this);
    if (!ok) {
      End(grpc::Status::CANCELLED);  // the portal went away
      return;
    }
    if (++next_ < events_.size()) {
      Write(&events_[next_]);
      return;
    }
    if (!pool_->Schedule([this] { Step(); })) End(server::BusyStatus());
  }
  void OnCancel() override {
    absl::MutexLock lock(&state_->mu);
    state_->cancelled = true;
    if (state_->waiting) {  // no step runs: end it here
      state_->waiting = false;
      End(grpc::Status::CANCELLED);
    }
  }
  void OnDone() override {
    server::HappensAfter(this);
    {
      absl::MutexLock lock(&state_->mu);
      state_->watcher = nullptr;  // a late wake-up finds no one
    }
    delete this;
  }

 private:
  // What the feed's wake-up shares with the stream; outlives it.
  struct State {
    absl::Mutex mu;
    QueueWatcher* watcher ABSL_GUARDED_BY(mu) = nullptr;
    bool waiting ABSL_GUARDED_BY(mu) = false;  // a wake-up is registered
    bool cancelled ABSL_GUARDED_BY(mu) = false;
  };

  bool cancelled() {
    absl::MutexLock lock(&state_->mu);
    return state_->cancelled;
  }

  // StartWrite and Finish, telling the TSan build the order gRPC gives
  // them (server::HappensBefore): steps run on the pools' threads.
  void Write(const grpc::ByteBuffer* event) {
    server::HappensBefore(this);
    StartWrite(event);
  }
  void End(grpc::Status status) {
    server::HappensBefore(this);
    Finish(std::move(status));
  }

  // Resolves the caller and the starting cursor and sends the cursor
  // first, so a portal can resume from it even if nothing happens before
  // it disconnects.
  void Start() {
    auto cursor =
        core_->StartWatch(request_, actor_, absl::Now() + max_rpc_time_);
    auto clinician = core_->WatcherOf(actor_);
    if (!cursor.ok() || !clinician.ok()) {
      End(ToGrpcStatus(!cursor.ok() ? cursor.status() : clinician.status()));
      return;
    }
    position_ = *cursor;
    clinician_ = *std::move(clinician);
    v1::QueueEvent watching;
    watching.set_cursor(position_);
    watching.set_kind("watching");
    events_.assign(1, Serialized(watching));
    next_ = 0;
    Write(&events_[0]);  // last: OnWriteDone may run at once
  }

  // Takes the next events the caller may see and writes them; or waits for
  // the feed's wake-up without a thread.
  void Step() {
    std::vector<QueueFeed::Event> got;
    while (true) {
      if (cancelled()) {
        End(grpc::Status::CANCELLED);
        return;
      }
      events_.clear();
      // Once `waiting` is set, OnCancel may finish the stream and gRPC may
      // delete it at any moment, until this step takes `waiting` back
      // below: only these copies are touched in between.
      const std::string position = position_;
      QueueFeed* const feed = feed_;
      server::WorkerPool* const pool = pool_;
      const std::shared_ptr<State> state = state_;
      {
        absl::MutexLock lock(&state->mu);
        state->waiting = true;  // before the feed can call the wake-up
      }
      const QueueFeed::Read read =
          feed->After(position, kWatchBatch, &got, [state, pool] {
            QueueWatcher* w = nullptr;
            {
              absl::MutexLock lock(&state->mu);
              if (state->watcher == nullptr || !state->waiting) return;
              state->waiting = false;
              w = state->watcher;
            }
            if (!pool->Schedule([w] { w->Step(); }))
              w->End(server::BusyStatus());
          });
      if (read == QueueFeed::Read::kNothingYet) return;  // the wake-up steps
      {
        absl::MutexLock lock(&state->mu);
        if (!state->waiting) return;  // OnCancel finished the stream
        state->waiting = false;
      }
      if (read == QueueFeed::Read::kBehind) {
        if (!catchup_pool_->Schedule([this] { CatchUp(); }))
          End(server::BusyStatus());
        return;  // the catch-up goes on from here
      }
      for (auto& e : got) {
        position_ = e.cursor;
        if (e.referral == nullptr) continue;  // the case is gone
        if (ReferralCore::Watches(request_, clinician_, *e.referral))
          events_.push_back(Shared(std::move(e.wire)));
      }
      if (!events_.empty()) break;
    }
    next_ = 0;
    Write(&events_[0]);  // last: OnWriteDone may run at once
  }

  // Behind the feed's window: one batch from Redis, written; or the next
  // step when the batch had nothing for this caller. Finishes the stream
  // when Redis fails (the portal reconnects with its cursor).
  void CatchUp() {
    if (cancelled()) {
      End(grpc::Status::CANCELLED);
      return;
    }
    events_.clear();
    const std::string before = position_;
    absl::Status s = core_->WatchStep(
        request_, actor_, &position_, kCatchUpBlock,
        [this](const v1::QueueEvent& e) {
          events_.push_back(Serialized(e));
          return true;
        },
        absl::Now() + absl::Seconds(5));
    if (!s.ok()) {
      End(ToGrpcStatus(s));
      return;
    }
    // Nothing in Redis between here and the window: go on from its start.
    if (position_ == before) {
      const std::string floor = feed_->floor();
      if (QueueFeed::Older(position_, floor)) position_ = floor;
    }
    if (events_.empty()) {
      if (!pool_->Schedule([this] { Step(); })) End(server::BusyStatus());
      return;
    }
    next_ = 0;
    Write(&events_[0]);  // last: OnWriteDone may run at once
  }

  ReferralCore* const core_;
  QueueFeed* const feed_;
  server::WorkerPool* const pool_;
  server::WorkerPool* const catchup_pool_;
  const v1::WatchQueueRequest request_;
  const Actor actor_;
  const absl::Duration max_rpc_time_;
  const std::shared_ptr<State> state_;
  Clinician clinician_;  // set by Start
  std::string position_;
  std::vector<grpc::ByteBuffer> events_;
  size_t next_ = 0;
};
}  // namespace

absl::StatusOr<Actor> ReferralServiceImpl::Caller(
    const grpc::ServerContextBase& context, const char* rpc) const {
  ASSIGN_OR_RETURN(auto id, auth::CheckCall(*authorizer_, context,
                                            absl::StrCat(kService, rpc)));
  return Actor{id.subject, std::string(auth::RoleName(id.role)),
               id.licensed_states};
}

template <typename Request, typename Response, typename Create>
grpc::ServerUnaryReactor* ReferralServiceImpl::ServeCreate(
    grpc::CallbackServerContext* context, const char* rpc, Create create,
    const grpc::ByteBuffer* body, grpc::ByteBuffer* reply) {
  auto actor = Caller(*context, rpc);  // before the body is read
  if (!actor.ok())
    return server::FinishNow(context, ToGrpcStatus(actor.status()));
  return server::FinishOnPool(
      context, pool_,
      [create, body, reply, actor = *std::move(actor),
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        grpc::ByteBuffer bytes = *body;  // shares the slices
        Request request;
        if (!grpc::SerializationTraits<Request>::Deserialize(&bytes, &request)
                 .ok()) {
          return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
              "request: not a ", Request::descriptor()->name(), " message")));
        }
        absl::StatusOr<Response> result =
            create(std::move(request), actor, deadline);
        if (!result.ok()) return ToGrpcStatus(result.status());
        bool own_buffer = false;
        return grpc::SerializationTraits<Response>::Serialize(*result, reply,
                                                              &own_buffer);
      });
}

grpc::ServerUnaryReactor* ReferralServiceImpl::CreateReferral(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return ServeCreate<v1::CreateReferralRequest, v1::Referral>(
      context, "CreateReferral",
      [this](v1::CreateReferralRequest r, const Actor& a, absl::Time d) {
        return core_->CreateReferral(std::move(r), a, d);
      },
      request, response);
}

grpc::ServerUnaryReactor* ReferralServiceImpl::CreateReferrals(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return ServeCreate<v1::CreateReferralsRequest, v1::CreateReferralsResponse>(
      context, "CreateReferrals",
      [this](v1::CreateReferralsRequest r, const Actor& a, absl::Time d) {
        return core_->CreateReferrals(std::move(r), a, d);
      },
      request, response);
}

template <typename Request, typename Response, typename Call>
grpc::ServerUnaryReactor* ReferralServiceImpl::ServeStaff(
    grpc::CallbackServerContext* context, const char* rpc, Call call,
    const Request* request, Response* response) {
  auto actor = Caller(*context, rpc);
  if (!actor.ok())
    return server::FinishNow(context, ToGrpcStatus(actor.status()));
  return server::FinishOnPool(
      context, pool_,
      [call, request, response, actor = *std::move(actor),
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(call(*request, actor, deadline), response);
      });
}

grpc::ServerUnaryReactor* ReferralServiceImpl::ListQueue(
    grpc::CallbackServerContext* context, const v1::ListQueueRequest* request,
    v1::ListQueueResponse* response) {
  return ServeStaff(
      context, "ListQueue",
      [this](const auto& r, const Actor& a, absl::Time d) {
        return core_->ListQueue(r, a, d);
      },
      request, response);
}

grpc::ServerUnaryReactor* ReferralServiceImpl::ClaimCase(
    grpc::CallbackServerContext* context, const v1::ClaimCaseRequest* request,
    v1::Referral* response) {
  return ServeStaff(
      context, "ClaimCase",
      [this](const auto& r, const Actor& a, absl::Time d) {
        return core_->ClaimCase(r, a, d);
      },
      request, response);
}

grpc::ServerUnaryReactor* ReferralServiceImpl::ReleaseCase(
    grpc::CallbackServerContext* context, const v1::ReleaseCaseRequest* request,
    v1::Referral* response) {
  return ServeStaff(
      context, "ReleaseCase",
      [this](const auto& r, const Actor& a, absl::Time d) {
        return core_->ReleaseCase(r, a, d);
      },
      request, response);
}

grpc::ServerUnaryReactor* ReferralServiceImpl::DecideCase(
    grpc::CallbackServerContext* context, const v1::DecideCaseRequest* request,
    v1::Referral* response) {
  return ServeStaff(
      context, "DecideCase",
      [this](const auto& r, const Actor& a, absl::Time d) {
        return core_->DecideCase(r, a, d);
      },
      request, response);
}

grpc::ServerUnaryReactor* ReferralServiceImpl::GetCase(
    grpc::CallbackServerContext* context, const v1::GetCaseRequest* request,
    v1::Referral* response) {
  return ServeStaff(
      context, "GetCase",
      [this](const auto& r, const Actor& a, absl::Time d) {
        return core_->GetCase(r, a, d);
      },
      request, response);
}

grpc::ServerUnaryReactor* ReferralServiceImpl::ListAuditEvents(
    grpc::CallbackServerContext* context,
    const v1::ListAuditEventsRequest* request,
    v1::ListAuditEventsResponse* response) {
  return ServeStaff(
      context, "ListAuditEvents",
      [this](const auto& r, const Actor& a, absl::Time d) {
        return core_->ListAuditEvents(r, a, d);
      },
      request, response);
}

grpc::ServerUnaryReactor* ReferralServiceImpl::GetMyReferral(
    grpc::CallbackServerContext* context,
    const v1::GetMyReferralRequest* request, v1::MyReferral* response) {
  auto actor = Caller(*context, "GetMyReferral");
  if (!actor.ok())
    return server::FinishNow(context, ToGrpcStatus(actor.status()));
  // A person reads only their own: the screening is looked up in the
  // caller's namespace, so another person's answers like a missing one.
  v1::GetMyReferralRequest own = *request;
  own.set_screening(InUserNamespace(request->screening(), actor->id));
  return server::FinishOnPool(
      context, pool_,
      [this, own = std::move(own), response,
       deadline = server::RpcDeadline(*context, max_rpc_time_)] {
        return ReplyFrom(core_->GetMyReferral(own, deadline), response);
      });
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* ReferralServiceImpl::WatchQueue(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* body) {
  auto caller = Caller(*context, "WatchQueue");
  if (!caller.ok())
    return new server::RefusedWriter<grpc::ByteBuffer>(
        ToGrpcStatus(caller.status()));
  grpc::ByteBuffer bytes = *body;  // shares the slices
  v1::WatchQueueRequest request;
  if (!grpc::SerializationTraits<v1::WatchQueueRequest>::Deserialize(&bytes,
                                                                     &request)
           .ok()) {
    return new server::RefusedWriter<grpc::ByteBuffer>(
        ToGrpcStatus(absl::InvalidArgumentError(
            "request: not a WatchQueueRequest message")));
  }
  return new QueueWatcher(core_, feed_, fanout_pool_, catchup_pool_,
                          std::move(request), *std::move(caller),
                          max_rpc_time_);
}

}  // namespace aqueduct::referral
