#include "common/server/background_loop.h"

#include <utility>

#include "common/logging/logging.h"
#include "common/server/trace.h"

namespace aqueduct::server {

BackgroundLoop::BackgroundLoop(absl::Duration tick,
                               absl::AnyInvocable<bool()> step)
    : tick_(tick), step_(std::move(step)), thread_([this] { Run(); }) {}

BackgroundLoop::~BackgroundLoop() { Stop(); }

void BackgroundLoop::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void BackgroundLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

int64_t BackgroundLoop::steps() const {
  absl::MutexLock lock(&mu_);
  return steps_;
}

bool BackgroundLoop::done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

void BackgroundLoop::Run() {
  while (true) {
    bool more;
    {
      // Each step is a trace of its own: its lines, and the calls it makes
      // to other services (an outbox delivery), share one id.
      log::TraceScope trace(NewTraceId());
      more = step_();
    }
    absl::MutexLock lock(&mu_);
    ++steps_;
    if (!more) break;
    mu_.AwaitWithTimeout(
        absl::Condition(
            +[](BackgroundLoop* loop) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return loop->woken_ || loop->stopping_;  // mu_ is held
            },
            this),
        tick_);
    woken_ = false;
    if (stopping_) break;
  }
  absl::MutexLock lock(&mu_);
  done_ = true;
}

}  // namespace aqueduct::server
