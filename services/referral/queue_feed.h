#ifndef AQUEDUCT_SERVICES_REFERRAL_QUEUE_FEED_H_
#define AQUEDUCT_SERVICES_REFERRAL_QUEUE_FEED_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "protos/referral/v1/referral_service.pb.h"
#include "services/referral/referral_core.h"
#include "services/referral/referral_store.h"

namespace aqueduct::referral {

// One reader of the queue's event stream per referral process, fanned out
// to every WatchQueue stream (issue 24 §3). A thread reads the Redis stream
// (XREAD BLOCK) and each event's case once, and keeps the newest events in
// a bounded window; watchers take what is after their cursor from the
// window without touching Redis and without a thread while they wait (a
// wake-up is registered instead). The feed never waits for a watcher: a
// watcher whose cursor has fallen out of the window (it was slow, or came
// back with an old cursor) is told so and catches up from Redis on its own.
class QueueFeed {
 public:
  struct Event {
    std::string cursor;
    std::string kind;
    std::string id;
    // The case as it was read after the event, as watchers see it
    // (ReferralCore::FeedEvent); null when it is gone.
    std::shared_ptr<const v1::Referral> referral;
    // The QueueEvent every watcher that sees it is sent, serialized once
    // for all of them; null when the case is gone.
    std::shared_ptr<const std::string> wire;
  };
  enum class Read {
    kEvents,      // `out` holds events after the cursor
    kNothingYet,  // none yet: `wake` will be called once when there are
    kBehind,      // the cursor is older than the window: read from Redis
  };

  // `core` makes each event as watchers see it; `window`: events kept (each
  // holds its case twice, as a message and serialized, a few kB).
  QueueFeed(ReferralStore* store, const ReferralCore* core,
            size_t window = 2048);
  ~QueueFeed();  // stops the reader
  QueueFeed(const QueueFeed&) = delete;
  QueueFeed& operator=(const QueueFeed&) = delete;

  // Starts the reader at the stream's newest event (retrying while Redis
  // is down).
  void Start();

  // Events strictly after `cursor` (a stream id), at most `max`. With
  // kNothingYet, `wake` is kept and called once (on the reader's thread,
  // so it must only schedule work) when an event after the cursor arrives
  // or the feed stops; it is dropped otherwise.
  Read After(const std::string& cursor, size_t max, std::vector<Event>* out,
             std::function<void()> wake);

  // Compares stream ids ("<ms>-<seq>"); false when either is malformed.
  static bool Older(const std::string& a, const std::string& b);

  // Watchers waiting for a wake-up (for tests and metrics).
  size_t waiting();
  // The oldest cursor the window answers from ("" before the reader has
  // started): a watcher that caught up from Redis and found nothing more
  // goes on from here.
  std::string floor();

 private:
  void Run();

  ReferralStore* const store_;
  const ReferralCore* const core_;
  const size_t window_;
  absl::Notification stop_;
  std::thread reader_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  // Every event after `floor_` is in `events_` (oldest first); `floor_` is
  // empty until the reader has resolved where it starts.
  std::string floor_ ABSL_GUARDED_BY(mu_);
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace aqueduct::referral

#endif  // AQUEDUCT_SERVICES_REFERRAL_QUEUE_FEED_H_
