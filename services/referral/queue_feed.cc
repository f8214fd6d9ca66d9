#include "services/referral/queue_feed.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace aqueduct::referral {
namespace {

// How long the reader waits on Redis per read, and after a failure.
constexpr absl::Duration kBlock = absl::Milliseconds(500);
constexpr absl::Duration kRetry = absl::Milliseconds(500);
constexpr int kBatch = 100;

bool ParseId(const std::string& id, uint64_t* ms, uint64_t* seq) {
  std::pair<std::string, std::string> parts =
      absl::StrSplit(id, absl::MaxSplits('-', 1));
  return absl::SimpleAtoi(parts.first, ms) &&
         absl::SimpleAtoi(parts.second, seq);
}

}  // namespace

bool QueueFeed::Older(const std::string& a, const std::string& b) {
  uint64_t a_ms, a_seq, b_ms, b_seq;
  if (!ParseId(a, &a_ms, &a_seq) || !ParseId(b, &b_ms, &b_seq)) return false;
  return a_ms < b_ms || (a_ms == b_ms && a_seq < b_seq);
}

QueueFeed::QueueFeed(ReferralStore* store, const ReferralCore* core,
                     size_t window)
    : store_(store), core_(core), window_(std::max<size_t>(window, 1)) {}

QueueFeed::~QueueFeed() {
  stop_.Notify();
  if (reader_.joinable()) reader_.join();
  std::vector<std::function<void()>> waiters;
  {
    absl::MutexLock lock(&mu_);
    waiters.swap(waiters_);
  }
  for (auto& wake : waiters) wake();
}

void QueueFeed::Start() {
  absl::MutexLock lock(&mu_);
  if (started_) return;
  started_ = true;
  reader_ = std::thread([this] { Run(); });
}

size_t QueueFeed::waiting() {
  absl::MutexLock lock(&mu_);
  return waiters_.size();
}

std::string QueueFeed::floor() {
  absl::MutexLock lock(&mu_);
  return floor_;
}

QueueFeed::Read QueueFeed::After(const std::string& cursor, size_t max,
                                 std::vector<Event>* out,
                                 std::function<void()> wake) {
  out->clear();
  absl::MutexLock lock(&mu_);
  if (!floor_.empty() && Older(cursor, floor_)) return Read::kBehind;
  if (!floor_.empty()) {
    // Most watchers are at or near the newest event: look from the back.
    size_t first = events_.size();
    while (first > 0 && Older(cursor, events_[first - 1].cursor)) --first;
    for (size_t i = first; i < events_.size() && out->size() < max; ++i)
      out->push_back(events_[i]);
    if (!out->empty()) return Read::kEvents;
  }
  if (wake) waiters_.push_back(std::move(wake));
  return Read::kNothingYet;
}

void QueueFeed::Run() {
  std::string position;
  while (!stop_.HasBeenNotified()) {
    if (position.empty()) {
      auto latest = store_->LatestCursor(absl::Now() + absl::Seconds(5));
      if (!latest.ok()) {
        stop_.WaitForNotificationWithTimeout(kRetry);
        continue;
      }
      position = *latest;
      std::vector<std::function<void()>> waiters;
      {
        absl::MutexLock lock(&mu_);
        floor_ = position;
        waiters.swap(waiters_);
      }
      for (auto& wake : waiters) wake();  // they ask again
      continue;
    }
    auto read = store_->ReadEvents(position, kBatch, kBlock,
                                   absl::Now() + kBlock + absl::Seconds(5));
    if (!read.ok()) {
      stop_.WaitForNotificationWithTimeout(kRetry);
      continue;
    }
    if (read->empty()) continue;
    // Each case once for every watcher; a case that cannot be read now is
    // read again from its event on (nothing after it is published first).
    std::vector<Event> fresh;
    for (auto& e : *read) {
      auto loaded = store_->Get(e.id, absl::Now() + absl::Seconds(5));
      if (!loaded.ok()) break;
      Event event{e.cursor, e.kind, std::move(e.id), nullptr, nullptr};
      if (loaded->has_value()) {
        v1::QueueEvent seen = core_->FeedEvent(
            std::move(e.cursor), std::move(e.kind), *std::move(*loaded));
        event.wire =
            std::make_shared<const std::string>(seen.SerializeAsString());
        event.referral = std::make_shared<const v1::Referral>(
            std::move(*seen.mutable_referral()));
      }
      fresh.push_back(std::move(event));
    }
    if (fresh.empty()) {
      stop_.WaitForNotificationWithTimeout(kRetry);
      continue;
    }
    position = fresh.back().cursor;
    std::vector<std::function<void()>> waiters;
    {
      absl::MutexLock lock(&mu_);
      for (auto& e : fresh) events_.push_back(std::move(e));
      while (events_.size() > window_) {
        floor_ = events_.front().cursor;
        events_.pop_front();
      }
      waiters.swap(waiters_);
    }
    for (auto& wake : waiters) wake();
  }
}

}  // namespace aqueduct::referral
