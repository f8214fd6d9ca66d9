#include "services/gateway/queue_relay.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/auth/authorizer.h"
#include "common/logging/logging.h"
#include "common/metrics/metrics.h"
#include "prometheus/gauge.h"
#include "services/gateway/http_rules.h"

namespace aqueduct::gateway {

namespace v1 = referral::v1;

bool Sees(const auth::Identity& identity, const v1::Audience& audience) {
  if (identity.role != auth::Role::kClinician &&
      identity.role != auth::Role::kPhysician) {
    return false;
  }
  if (audience.physicians_only() && identity.role != auth::Role::kPhysician) {
    return false;
  }
  if (audience.states().empty()) return false;
  auto licensed = [&identity](const std::string& state) {
    return std::find(identity.licensed_states.begin(),
                     identity.licensed_states.end(),
                     state) != identity.licensed_states.end();
  };
  return audience.every_state()
             ? std::all_of(audience.states().begin(), audience.states().end(),
                           licensed)
             : std::any_of(audience.states().begin(), audience.states().end(),
                           licensed);
}

bool Wants(const v1::WatchQueueRequest& filters, const v1::Referral& r) {
  if (!filters.routes().empty() &&
      std::find(filters.routes().begin(), filters.routes().end(),
                r.current_route()) == filters.routes().end()) {
    return false;
  }
  return filters.location_states().empty() ||
         std::find(filters.location_states().begin(),
                   filters.location_states().end(),
                   r.location_state()) != filters.location_states().end();
}

namespace {

bool ParseCursor(const std::string& c, std::pair<uint64_t, uint64_t>* out) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(c, absl::MaxSplits('-', 1));
  return absl::SimpleAtoi(parts.first, &out->first) &&
         absl::SimpleAtoi(parts.second, &out->second);
}

void SetUp(bool up) {
  if (!metrics::Enabled()) return;
  static auto& gauge = metrics::GaugeFamily(
      "aqueduct_gateway_queue_stream_up",
      "1 while the gateway follows referral's queue stream (portals' live "
      "updates flow), 0 while it reconnects");
  gauge.Add({}).Set(up ? 1 : 0);
}

}  // namespace

bool CursorBefore(const std::string& a, const std::string& b) {
  std::pair<uint64_t, uint64_t> x, y;
  if (!ParseCursor(a, &x)) return true;
  if (!ParseCursor(b, &y)) return false;
  return x < y;
}

std::string SseFrame(const std::string& id, const std::string& event,
                     const std::string& data) {
  std::string frame;
  if (!id.empty()) absl::StrAppend(&frame, "id: ", id, "\n");
  // JSON from ToJson has no newline; a data line must not hold one.
  absl::StrAppend(&frame, "event: ", event, "\ndata: ", data, "\n\n");
  return frame;
}

SseFramePtr SharedSseFrame(const std::string& id, const std::string& event,
                           const std::string& data) {
  return std::make_shared<const std::string>(SseFrame(id, event, data));
}

// The upstream WatchQueue stream. When gRPC is done with it, OnDone posts
// it to the relay on the I/O thread, which deletes it there: the relay may
// still be cancelling it (Stop) on that thread until then.
class QueueRelay::Upstream final
    : public grpc::ClientReadReactor<v1::QueueEvent> {
 public:
  Upstream(QueueRelay* relay, const std::string& cursor,
           const std::string& token)
      : relay_(relay), post_(relay->post_) {
    request_.set_cursor(cursor);
    context_.AddMetadata("authorization", auth::BearerValue(token));
    stub_ = v1::ReferralService::NewStub(relay->channel_);
  }
  void Begin() {
    stub_->async()->WatchQueue(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    got_events_ = true;
    QueueRelay* relay = relay_;
    post_([relay, e = std::move(event_)]() mutable {
      relay->OnEvent(std::move(e));
    });
    event_.Clear();
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& status) override {
    QueueRelay* relay = relay_;
    Upstream* self = this;
    const bool got = got_events_;
    post_([relay, self, status, got] {
      relay->OnUpstreamDone(self, status, got);
    });
  }

 private:
  QueueRelay* const relay_;
  const std::function<void(std::function<void()>)> post_;
  std::unique_ptr<v1::ReferralService::Stub> stub_;
  grpc::ClientContext context_;
  v1::WatchQueueRequest request_;
  v1::QueueEvent event_;
  bool got_events_ = false;
};

QueueRelay::QueueRelay(
    std::shared_ptr<grpc::Channel> referral,
    std::shared_ptr<auth::TokenSource> token,
    std::function<void(std::function<void()>)> post,
    std::function<void(absl::Duration, std::function<void()>)> post_after,
    Options options)
    : channel_(std::move(referral)),
      token_(std::move(token)),
      post_(std::move(post)),
      post_after_(std::move(post_after)),
      options_(options),
      backoff_(options.min_backoff) {}

QueueRelay::~QueueRelay() = default;

void QueueRelay::Start() {
  post_([this] { Open(); });
}

void QueueRelay::Stop() {
  post_([this] {
    stopping_ = true;
    if (live_ != nullptr) {
      live_->Cancel();  // OnUpstreamDone notifies
    } else if (!ended_.HasBeenNotified()) {
      ended_.Notify();
    }
  });
  // The upstream stream's last callback posts to the I/O thread: wait for
  // it, so nothing is posted after the gateway is gone.
  ended_.WaitForNotificationWithTimeout(absl::Seconds(5));
}

void QueueRelay::Open() {
  if (stopping_ || live_ != nullptr) return;
  auto token = token_->Token();
  if (!token.ok()) {
    log::Error("gateway: cannot mint its own token",
               {{"error", std::string(token.status().message())}});
    post_after_(options_.max_backoff, [this] { Open(); });
    return;
  }
  live_ = new Upstream(this, cursor_, *token);
  live_->Begin();
}

void QueueRelay::OnUpstreamDone(Upstream* done, const grpc::Status& status,
                                bool got_events) {
  delete done;
  live_ = nullptr;
  if (connected_) {
    log::Warn("gateway: queue stream ended; resuming from its cursor",
              {{"code", static_cast<int>(status.error_code())}});
  }
  connected_ = false;
  SetUp(false);
  if (stopping_) {
    if (!ended_.HasBeenNotified()) ended_.Notify();
    return;
  }
  backoff_ = got_events ? options_.min_backoff
                        : std::min(backoff_ * 2, options_.max_backoff);
  post_after_(backoff_, [this] { Open(); });
}

void QueueRelay::OnEvent(v1::QueueEvent event) {
  if (!connected_) {
    connected_ = true;
    SetUp(true);
    log::Info("gateway: following the queue");
  }
  if (event.kind() == "watching" || !event.has_referral()) {
    if (!event.cursor().empty()) {
      // The window is complete from the first position upstream reports.
      if (floor_.empty()) floor_ = event.cursor();
      if (cursor_.empty() || CursorBefore(cursor_, event.cursor()))
        cursor_ = event.cursor();
    }
    return;
  }
  Kept kept;
  kept.cursor = event.cursor();
  kept.audience = std::move(*event.mutable_audience());
  event.clear_audience();  // the gateway's business, not the portal's
  kept.frame = SharedSseFrame(kept.cursor, "queue", ToJson(event));
  kept.referral = std::move(*event.mutable_referral());
  cursor_ = kept.cursor;
  if (floor_.empty()) floor_ = kept.cursor;
  for (QueueSubscriber* s : subscribers_) Deliver(s, kept);
  window_.push_back(std::move(kept));
  while (window_.size() > options_.window) {
    floor_ = window_.front().cursor;
    window_.pop_front();
  }
}

void QueueRelay::Deliver(QueueSubscriber* s, const Kept& e) {
  if (Sees(s->identity(), e.audience) && Wants(s->filters(), e.referral))
    s->Send(e.frame);
}

void QueueRelay::Subscribe(QueueSubscriber* subscriber,
                           const std::string& last_event_id) {
  subscriber->Send(SharedSseFrame(
      "", "watching",
      absl::StrCat("{\"connected\":", connected_ ? "true" : "false", "}")));
  if (!last_event_id.empty()) {
    // Resumable when nothing after it can have left the window.
    const bool resumable =
        !floor_.empty() && !CursorBefore(last_event_id, floor_);
    std::vector<const Kept*> missed;
    size_t bytes = 0;
    if (resumable) {
      for (const Kept& e : window_) {
        if (CursorBefore(last_event_id, e.cursor) &&
            Sees(subscriber->identity(), e.audience) &&
            Wants(subscriber->filters(), e.referral)) {
          missed.push_back(&e);
          bytes += e.frame->size();
        }
      }
    }
    if (resumable && bytes <= options_.max_replay_bytes) {
      for (const Kept* e : missed) subscriber->Send(e->frame);
    } else {
      subscriber->Send(SharedSseFrame(
          cursor_, "reset",
          "{\"reason\":\"the stream cannot resume from that position: read "
          "the queue again (GET /v1/referrals), then follow this stream\"}"));
    }
  }
  subscribers_.push_back(subscriber);
}

void QueueRelay::Unsubscribe(QueueSubscriber* subscriber) {
  subscribers_.erase(
      std::remove(subscribers_.begin(), subscribers_.end(), subscriber),
      subscribers_.end());
}

}  // namespace aqueduct::gateway
