#ifndef AQUEDUCT_SERVICES_GATEWAY_QUEUE_RELAY_H_
#define AQUEDUCT_SERVICES_GATEWAY_QUEUE_RELAY_H_

// One WatchQueue stream per gateway process, relayed to every portal's
// Server-Sent Events stream (issue 24 §3: hundreds of portals cost referral
// one stream, not one each). The gateway watches with its own service
// identity (subject "gateway"), which sees every case; each event carries
// its case's Audience, the rule referral applies to a clinician's own
// stream, and the relay applies it to each portal with the identity its
// token verified to, then the portal's own filters.
//
// The relay keeps the latest events (a window) so that a portal that
// reconnects with Last-Event-ID gets exactly what it missed; a cursor older
// than the window gets a "reset" event (reload the queue with ListQueue,
// then follow the stream). The upstream stream resumes from its last cursor
// whenever it ends, so a referral restart loses no event.
//
// Threading: everything but the upstream reactor runs on the gateway's one
// I/O thread; the reactor hands each event there (`post`).

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/auth/grpc_auth.h"
#include "common/auth/jwt.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"

namespace aqueduct::gateway {

// Whether a clinician with `identity` may see a case with `audience` (the
// service's CanAct rule, as QueueEvent.audience states it).
bool Sees(const auth::Identity& identity,
          const referral::v1::Audience& audience);
// Whether a portal's filters (a WatchQueueRequest's routes and
// location_states) keep a case.
bool Wants(const referral::v1::WatchQueueRequest& filters,
           const referral::v1::Referral& referral);
// Redis stream ids ("<ms>-<seq>"): true when `a` is before `b`. Anything
// else compares as before every id.
bool CursorBefore(const std::string& a, const std::string& b);

// A portal's open stream, as the relay sees it.
// One formatted Server-Sent Events frame. An event's frame is made once
// and shared by every portal it goes to, and by the window: a portal that
// lags holds references, not copies.
using SseFramePtr = std::shared_ptr<const std::string>;

class QueueSubscriber {
 public:
  virtual ~QueueSubscriber() = default;
  virtual const auth::Identity& identity() const = 0;
  virtual const referral::v1::WatchQueueRequest& filters() const = 0;
  // One frame to send; the subscriber may keep it until it is written.
  virtual void Send(SseFramePtr frame) = 0;
};

// The SSE frame for an event: "id: <cursor>\nevent: <name>\ndata: <json>\n\n".
std::string SseFrame(const std::string& id, const std::string& event,
                     const std::string& data);
// The same, shared.
SseFramePtr SharedSseFrame(const std::string& id, const std::string& event,
                           const std::string& data);

class QueueRelay {
 public:
  struct Options {
    size_t window = 4096;  // events kept for resuming portals
    // A resume that would send more than this gets "reset" instead (the
    // portal reads the queue afresh): a stream may lag only so far behind
    // before the gateway drops it (GatewayConfig::max_stream_backlog).
    size_t max_replay_bytes = 512 << 10;
    absl::Duration min_backoff = absl::Milliseconds(250);
    absl::Duration max_backoff = absl::Seconds(5);
  };
  // `post` runs a function on the I/O thread; `post_after` does so after a
  // delay. `token` is the gateway's own identity.
  QueueRelay(
      std::shared_ptr<grpc::Channel> referral,
      std::shared_ptr<auth::TokenSource> token,
      std::function<void(std::function<void()>)> post,
      std::function<void(absl::Duration, std::function<void()>)> post_after,
      Options options);
  ~QueueRelay();

  // Opens the upstream stream (and reopens it whenever it ends).
  void Start();
  // Stops reopening and cancels the upstream stream; waits for it to end.
  void Stop();

  // Adds a portal's stream, resuming after `last_event_id` ("" = from now):
  // sends "watching", then what it missed from the window, or "reset" when
  // its cursor is older than the window or what it missed is too much to
  // replay (Options::max_replay_bytes).
  void Subscribe(QueueSubscriber* subscriber, const std::string& last_event_id);
  void Unsubscribe(QueueSubscriber* subscriber);

  bool connected() const { return connected_; }
  size_t subscribers() const { return subscribers_.size(); }

  // An event from upstream, on the I/O thread (public for the tests).
  void OnEvent(referral::v1::QueueEvent event);

 private:
  class Upstream;
  struct Kept {
    std::string cursor;
    referral::v1::Audience audience;
    referral::v1::Referral referral;
    SseFramePtr frame;  // the SSE frame every portal that sees it is sent
  };
  void Deliver(QueueSubscriber* s, const Kept& e);
  void Open();
  void OnUpstreamDone(Upstream* done, const grpc::Status& status,
                      bool got_events);

  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<auth::TokenSource> token_;
  std::function<void(std::function<void()>)> post_;
  std::function<void(absl::Duration, std::function<void()>)> post_after_;
  const Options options_;
  std::deque<Kept> window_;
  std::vector<QueueSubscriber*> subscribers_;
  std::string cursor_;  // the newest position upstream reported
  // The window holds every event after this position (empty: not yet
  // known): a portal's Last-Event-ID at or after it can be resumed.
  std::string floor_;
  bool connected_ = false;
  bool stopping_ = false;
  absl::Duration backoff_;
  // The open upstream stream. Deleted on the I/O thread, by OnUpstreamDone
  // (never in gRPC's OnDone), so Stop may cancel it until then.
  Upstream* live_ = nullptr;
  absl::Notification ended_;  // after Stop: no upstream stream is left
};

}  // namespace aqueduct::gateway

#endif  // AQUEDUCT_SERVICES_GATEWAY_QUEUE_RELAY_H_
