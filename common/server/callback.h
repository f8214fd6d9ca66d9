#ifndef AQUEDUCT_COMMON_SERVER_CALLBACK_H_
#define AQUEDUCT_COMMON_SERVER_CALLBACK_H_

#include <google/protobuf/arena.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/message_allocator.h>
#include <grpcpp/support/server_callback.h>

#include <utility>

#include "common/logging/logging.h"
#include "common/server/trace.h"
#include "common/server/worker_pool.h"
#include "common/status/status_util.h"

#if defined(AQUEDUCT_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace aqueduct::server {

// gRPC orders a reactor's operations: what a thread did before
// StartWrite/StartRead/Finish happens before the matching
// OnWriteDone/OnReadDone/OnDone, on whichever thread that runs. Debian's
// gRPC is not built with ThreadSanitizer, which therefore cannot see that
// order; a reactor that starts operations from its own threads (a worker
// pool) calls HappensBefore(this) before starting one and HappensAfter(this)
// first thing in the callback, so the TSan build (AQUEDUCT_TSAN) checks
// its fields against every other thread. Both are empty in other builds.
inline void HappensBefore(const void* object) {
#if defined(AQUEDUCT_TSAN)
  __tsan_release(const_cast<void*>(object));
#else
  (void)object;
#endif
}
inline void HappensAfter(const void* object) {
#if defined(AQUEDUCT_TSAN)
  __tsan_acquire(const_cast<void*>(object));
#else
  (void)object;
#endif
}

// The answer when the pool's queue is full: the caller retries later (gRPC
// clients and the apps treat UNAVAILABLE as "try again"; the RetryInfo
// says after a second).
inline grpc::Status BusyStatus() {
  return ToGrpcStatus(WithRetryDelay(
      absl::UnavailableError("the service is busy: try again shortly"),
      absl::Seconds(1)));
}

// Serves a unary call on gRPC's callback API whose work blocks (Redis round
// trips, calls to peers): `work` runs on `pool`, never on one of gRPC's
// threads, in the call's trace (log::TraceScope), and its status finishes
// the call. `work` fills the response the
// handler was given, which lives until the call finishes. A full pool
// answers UNAVAILABLE at once instead of queueing without bound.
//
// Every service uses this one shape, so a handler reads: check the caller
// inline (cheap, no I/O), then hand the rest to the pool.
template <typename Work>
grpc::ServerUnaryReactor* FinishOnPool(grpc::CallbackServerContext* context,
                                       WorkerPool* pool, Work work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // The work's log lines and the calls it makes carry the call's trace.
  if (!pool->Schedule([reactor, work = std::move(work),
                       trace = TraceIdOf(*context)]() mutable {
        log::TraceScope scope(std::move(trace));
        reactor->Finish(work());
      })) {
    reactor->Finish(BusyStatus());
  }
  return reactor;
}

// A unary call answered at once (a refusal, or work that never blocks).
inline grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                           grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

// A server-streaming call answered at once with `status` and no message (a
// refusal before the stream starts: no token, wrong role, a bad request,
// too many streams). Deletes itself when gRPC is done with it.
template <typename Response>
class RefusedWriter final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit RefusedWriter(grpc::Status status) {
    this->Finish(std::move(status));
  }
  void OnDone() override { delete this; }
};

// A call's request and response on a protobuf arena of the call's own,
// freed in one go when the call ends: for callback methods whose messages
// hold thousands of small parts (pages of a batch job), which would
// otherwise be allocated and destroyed one by one. Set with the generated
// SetMessageAllocatorFor_<Method>; the handler then fills the response it is
// given in place (moving a heap message into it would copy).
template <typename Request, typename Response>
class ArenaMessageAllocator final
    : public grpc::MessageAllocator<Request, Response> {
 public:
  grpc::MessageHolder<Request, Response>* AllocateMessages() override {
    return new Holder();
  }

 private:
  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    Holder() : arena_(Options()) {
      this->set_request(
          google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(
          google::protobuf::Arena::CreateMessage<Response>(&arena_));
    }
    void Release() override { delete this; }

   private:
    static google::protobuf::ArenaOptions Options() {
      google::protobuf::ArenaOptions o;
      o.start_block_size = 64 << 10;
      o.max_block_size = 1 << 20;
      return o;
    }
    google::protobuf::Arena arena_;
  };
};

}  // namespace aqueduct::server

#endif  // AQUEDUCT_COMMON_SERVER_CALLBACK_H_
