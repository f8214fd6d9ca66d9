#include "common/redis/async_client.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/redis/internal.h"
#include "common/redis/sentinel.h"
#include "common/status/status_macros.h"

namespace aqueduct::redis {

// One Pipeline call: its commands' replies arrive in order, each through
// its own hiredis callback, all pointing here.
struct AsyncClient::Call {
  PipelineDone done;
  std::vector<Reply> replies;
  size_t expected = 0;     // commands sent
  size_t outstanding = 0;  // hiredis callbacks still to run
  // When to stop waiting, and whether that is the caller's deadline
  // (DEADLINE_EXCEEDED) rather than the command timeout (UNAVAILABLE).
  absl::Time give_up;
  bool callers_deadline = false;
  // Sent + the command timeout: a reply still missing then means the
  // connection is stuck, whether or not the caller has given up already.
  absl::Time timeout_at;
  bool finished = false;  // `done` has been queued to run
  bool waits = false;     // the last command is WAIT (Options::wait_replicas)
  absl::Time sent;        // for the round trip's metrics
};

namespace {

// The reply to a caller who gets one Reply: an error reply mapped to a
// status as the blocking client maps it.
absl::StatusOr<Reply> Single(const std::string& describe,
                             absl::StatusOr<std::vector<Reply>> replies) {
  if (!replies.ok()) return replies.status();
  Reply& r = replies->front();
  if (r.is_error()) return internal::ErrorReplyStatus(describe, r.str);
  return std::move(r);
}

}  // namespace

AsyncClient::AsyncClient(Options options)
    : options_(std::move(options)),
      describe_(options_.primary != nullptr
                    ? absl::StrCat("redis: ", options_.primary->Describe())
                    : absl::StrCat("redis at ", options_.endpoint.ToString())) {
  internal::IgnoreSigpipe();
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // generation 0: the wake-up descriptor
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  io_thread_ = std::thread([this] { Loop(); });
}

AsyncClient::~AsyncClient() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  io_thread_.join();
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    if (ctx_ != nullptr) DropConnectionLocked("client shut down");
    ready.swap(ready_);
  }
  RunReady(std::move(ready));
  close(wake_fd_);
  close(epoll_fd_);
}

std::string AsyncClient::Describe() const { return describe_; }

void AsyncClient::Wake() {
  const uint64_t one = 1;
  // A full counter (never in practice) still wakes the thread.
  (void)!write(wake_fd_, &one, sizeof(one));
}

void AsyncClient::RunReady(Ready ready) {
  for (auto& [done, result] : ready) std::move(done)(std::move(result));
}

// --- hiredis event hooks: record what hiredis waits for; SyncInterest
// tells epoll once per locked section (no system call when unchanged).
void AsyncClient::AddRead(void* self) {
  static_cast<AsyncClient*>(self)->want_read_ = true;
}
void AsyncClient::DelRead(void* self) {
  static_cast<AsyncClient*>(self)->want_read_ = false;
}
void AsyncClient::AddWrite(void* self) {
  static_cast<AsyncClient*>(self)->want_write_ = true;
}
void AsyncClient::DelWrite(void* self) {
  static_cast<AsyncClient*>(self)->want_write_ = false;
}
// hiredis is about to free the context (error, or redisAsyncFree): forget
// it before its descriptor is closed. May run more than once.
void AsyncClient::Cleanup(void* self_ptr) {
  auto* self = static_cast<AsyncClient*>(self_ptr);
  if (self->fd_ >= 0 && self->registered_ >= 0) {
    epoll_ctl(self->epoll_fd_, EPOLL_CTL_DEL, self->fd_, nullptr);
  }
  self->fd_ = -1;
  self->registered_ = -1;
  self->want_read_ = self->want_write_ = false;
  self->connected_ = false;
  self->ctx_ = nullptr;
}

void AsyncClient::SyncInterestLocked() {
  if (fd_ < 0) return;
  const int mask = (want_read_ ? static_cast<int>(EPOLLIN) : 0) |
                   (want_write_ ? static_cast<int>(EPOLLOUT) : 0);
  if (mask == registered_) return;
  epoll_event ev{};
  ev.events = static_cast<uint32_t>(mask);
  ev.data.u64 = generation_;
  epoll_ctl(epoll_fd_, registered_ < 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd_,
            &ev);
  registered_ = mask;
}

void AsyncClient::OnConnect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<AsyncClient*>(ac->data);
  if (status == REDIS_OK) {
    self->connected_ = true;
  } else {
    self->fail_reason_ = absl::StrCat("cannot connect: ", ac->errstr);
  }
}

void AsyncClient::OnAuthReply(redisAsyncContext* ac, void* reply,
                              void* /*privdata*/) {
  auto* self = static_cast<AsyncClient*>(ac->data);
  auto* r = static_cast<redisReply*>(reply);
  if (r != nullptr && r->type == REDIS_REPLY_ERROR) {
    // Never echo the password or Redis's reply text. The commands sent
    // behind it fail the same way (their NOAUTH replies are not passed on).
    self->auth_failed_ = true;  // dropped once hiredis returns
    self->fail_reason_ = "authentication failed";
  }
}

void AsyncClient::OnReply(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* self = static_cast<AsyncClient*>(ac->data);
  auto* call = static_cast<Call*>(privdata);
  auto* r = static_cast<redisReply*>(reply);
  if (!call->finished) {
    if (r == nullptr || self->auth_failed_) {
      self->FinishLocked(
          call, absl::UnavailableError(absl::StrCat(
                    self->Describe(), ": ", self->LostReasonLocked(ac))));
    } else {
      call->replies.push_back(internal::CopyReply(r));
      const Reply& last = call->replies.back();
      if (last.is_error() && absl::StartsWith(last.str, "READONLY")) {
        // A demoted primary: dropped once hiredis returns, and the
        // Sentinels asked again on the next connect.
        self->readonly_seen_ = true;
      }
      if (call->replies.size() == call->expected)
        self->FinishLocked(call, self->Acknowledged(call));
    }
  }
  if (--call->outstanding == 0) {
    // Replies come back in the order sent, so the call done is the oldest.
    auto& q = self->inflight_;
    auto it = std::find_if(q.begin(), q.end(),
                           [call](const auto& c) { return c.get() == call; });
    if (it != q.end()) q.erase(it);
  }
}

std::string AsyncClient::LostReasonLocked(const redisAsyncContext* ac) const {
  if (!fail_reason_.empty()) return fail_reason_;
  if (ac != nullptr && ac->errstr != nullptr && ac->errstr[0] != '\0') {
    return absl::StrCat("connection lost: ", ac->errstr);
  }
  return "connection closed";
}

void AsyncClient::FinishLocked(Call* call,
                               absl::StatusOr<std::vector<Reply>> result) {
  call->finished = true;
  internal::RecordRoundTrip("async", absl::Now() - call->sent, result.status());
  ready_.emplace_back(std::move(call->done), std::move(result));
}

absl::StatusOr<std::vector<Reply>> AsyncClient::Acknowledged(Call* call) {
  if (!call->waits) return std::move(call->replies);
  const Reply acked = std::move(call->replies.back());
  call->replies.pop_back();
  RETURN_IF_ERROR(internal::Replicated(Describe(), options_, acked));
  return std::move(call->replies);
}

void AsyncClient::DropConnectionLocked(std::string reason) {
  if (ctx_ == nullptr) return;
  if (options_.primary != nullptr) options_.primary->Forget(endpoint_);
  fail_reason_ = std::move(reason);
  // Runs every pending hiredis callback with no reply (each waiting call
  // fails with fail_reason_), then Cleanup; the descriptor is closed.
  redisAsyncFree(ctx_);
  ctx_ = nullptr;  // Cleanup did this already; kept for clarity
}

absl::Status AsyncClient::ConnectLocked() {
  config::Endpoint ep = options_.endpoint;
  if (options_.primary != nullptr) {
    // Asking the Sentinels blocks (up to the connect timeout per
    // Sentinel): the I/O thread does it; this caller is answered at once.
    std::optional<config::Endpoint> known = options_.primary->Known();
    if (!known.has_value()) {
      if (!lookup_wanted_) {
        lookup_wanted_ = true;
        Wake();
      }
      return absl::UnavailableError(
          absl::StrCat(Describe(), ": looking up the primary; try again"));
    }
    ep = *std::move(known);
  }
  endpoint_ = ep;
  fail_reason_.clear();
  auth_failed_ = false;
  readonly_seen_ = false;
  redisAsyncContext* ac = ep.is_unix
                              ? redisAsyncConnectUnix(ep.path.c_str())
                              : redisAsyncConnect(ep.host.c_str(), ep.port);
  if (ac == nullptr) {
    return absl::UnavailableError(
        absl::StrCat(Describe(), ": cannot allocate a connection"));
  }
  if (ac->err != 0) {
    std::string why = ac->errstr;
    redisAsyncFree(ac);
    return absl::UnavailableError(
        absl::StrCat(Describe(), ": cannot connect: ", why));
  }
  if (!ep.is_unix) redisEnableKeepAlive(&ac->c);
  ac->data = this;
  ac->ev.data = this;
  ac->ev.addRead = &AsyncClient::AddRead;
  ac->ev.delRead = &AsyncClient::DelRead;
  ac->ev.addWrite = &AsyncClient::AddWrite;
  ac->ev.delWrite = &AsyncClient::DelWrite;
  ac->ev.cleanup = &AsyncClient::Cleanup;
  redisAsyncSetConnectCallback(ac, &AsyncClient::OnConnect);
  ctx_ = ac;
  fd_ = ac->c.fd;
  registered_ = -1;
  connected_ = false;
  want_read_ = false;
  want_write_ = true;  // a non-blocking connect completes when writable
  ++generation_;
  connect_deadline_ = absl::Now() + options_.connect_timeout;
  if (internal::Argv auth = internal::AuthCommand(options_);
      !auth.argv.empty()) {
    redisAsyncCommandArgv(ac, &AsyncClient::OnAuthReply, nullptr,
                          static_cast<int>(auth.argv.size()), auth.argv.data(),
                          auth.lens.data());
  }
  return absl::OkStatus();
}

void AsyncClient::Pipeline(std::vector<std::vector<std::string>> commands,
                           absl::Time deadline, PipelineDone done) {
  if (commands.empty()) {
    std::move(done)(std::vector<Reply>{});
    return;
  }
  const absl::Time now = absl::Now();
  if (now >= deadline) {
    std::move(done)(absl::DeadlineExceededError(
        absl::StrCat(Describe(), ": deadline passed before sending")));
    return;
  }
  Ready ready;
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      ready.emplace_back(std::move(done),
                         absl::UnavailableError(
                             absl::StrCat(Describe(), ": client shut down")));
    } else if (absl::Status connected =
                   ctx_ != nullptr ? absl::OkStatus() : ConnectLocked();
               !connected.ok()) {
      ready.emplace_back(std::move(done), std::move(connected));
    } else {
      auto call = std::make_unique<Call>();
      Call* c = call.get();
      c->done = std::move(done);
      c->waits = options_.wait_replicas > 0 &&
                 std::any_of(commands.begin(), commands.end(),
                             [](const auto& cmd) { return MayWrite(cmd); });
      if (c->waits) {
        commands.push_back(internal::WaitCommand(options_));
      }
      c->expected = commands.size();
      const absl::Time timeout_at = now + options_.command_timeout;
      c->callers_deadline = deadline < timeout_at;
      c->give_up = std::min(deadline, timeout_at);
      c->timeout_at = timeout_at;
      c->sent = now;
      inflight_.push_back(std::move(call));
      std::string wire;
      for (const auto& command : commands) {
        wire.clear();
        internal::AppendCommand(command, &wire);
        if (redisAsyncFormattedCommand(ctx_, &AsyncClient::OnReply, c,
                                       wire.data(), wire.size()) != REDIS_OK) {
          break;  // the context is disconnecting: failed below
        }
        ++c->outstanding;
      }
      if (c->outstanding < c->expected) {
        FinishLocked(c, absl::UnavailableError(absl::StrCat(
                            Describe(), ": ", LostReasonLocked(ctx_))));
        if (c->outstanding == 0) inflight_.pop_back();
      }
      const absl::Time give_up = c->give_up;  // `c` may be gone below
      // Write now, on this thread, rather than wake the I/O thread: one
      // system call when the socket takes it all (the usual case). A new
      // connection is left to the I/O thread, which sees it complete.
      if (ctx_ != nullptr && connected_) redisAsyncHandleWrite(ctx_);
      SyncInterestLocked();
      if (give_up < wake_at_) {
        wake_at_ = give_up;
        wake = true;  // its timer is sooner than the I/O thread's
      }
      ready.swap(ready_);
    }
  }
  if (wake) Wake();
  RunReady(std::move(ready));
}

void AsyncClient::Command(std::vector<std::string> argv, absl::Time deadline,
                          CommandDone done) {
  std::vector<std::vector<std::string>> commands;
  commands.push_back(std::move(argv));
  Pipeline(std::move(commands), deadline,
           [this, done = std::move(done)](
               absl::StatusOr<std::vector<Reply>> replies) mutable {
             std::move(done)(Single(describe_, std::move(replies)));
           });
}

void AsyncClient::LoadScript(const Script& script, absl::Time deadline,
                             ScriptDone done) {
  {
    absl::MutexLock lock(&script.mu_);
    if (!script.sha_.empty()) {
      std::string sha = script.sha_;
      std::move(done)(std::move(sha));
      return;
    }
  }
  Command(
      {"SCRIPT", "LOAD", script.source()}, deadline,
      [&script, done = std::move(done)](absl::StatusOr<Reply> loaded) mutable {
        if (!loaded.ok()) {
          std::move(done)(loaded.status());
          return;
        }
        {
          absl::MutexLock lock(&script.mu_);
          script.sha_ = loaded->str;
        }
        std::move(done)(std::move(loaded->str));
      });
}

void AsyncClient::ForgetScript(const Script& script) {
  absl::MutexLock lock(&script.mu_);
  script.sha_.clear();
}

void AsyncClient::ExpireLocked(absl::Time now) {
  bool stuck = false;
  for (auto& call : inflight_) {
    if (now >= call->timeout_at)
      stuck = true;  // failed below with the connection
    if (call->finished || now < call->give_up || !call->callers_deadline)
      continue;
    // Only this caller gives up; the connection may yet answer (the reply,
    // when it comes, is dropped).
    FinishLocked(call.get(),
                 absl::DeadlineExceededError(absl::StrCat(
                     Describe(), ": no reply before the call's deadline")));
  }
  if (ctx_ != nullptr && !connected_ && now >= connect_deadline_) {
    DropConnectionLocked(
        absl::StrCat("cannot connect within ",
                     absl::FormatDuration(options_.connect_timeout)));
  } else if (stuck) {
    DropConnectionLocked(
        absl::StrCat("did not answer within ",
                     absl::FormatDuration(options_.command_timeout)));
  }
  // A connection that is gone leaves no call behind (hiredis ran every
  // callback); a call whose commands were never sent never gets here.
}

absl::Time AsyncClient::NextWakeLocked(absl::Time now) const {
  // At most this long asleep, so a call whose timer is further out than
  // wake_at_ needs no wake-up (Pipeline writes the eventfd only when its
  // timer is sooner).
  absl::Time next = now + absl::Milliseconds(100);
  for (const auto& call : inflight_) {
    next = std::min(next, call->timeout_at);
    if (!call->finished) next = std::min(next, call->give_up);
  }
  if (ctx_ != nullptr && !connected_) next = std::min(next, connect_deadline_);
  return next;
}

void AsyncClient::Loop() {
  constexpr int kMaxEvents = 8;
  epoll_event events[kMaxEvents];
  for (;;) {
    int timeout_ms = 0;
    bool look_up = false;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      look_up = std::exchange(lookup_wanted_, false);
      const absl::Time now = absl::Now();
      wake_at_ = NextWakeLocked(now);
      timeout_ms = static_cast<int>(
          std::max<int64_t>(0, absl::ToInt64Milliseconds(absl::Ceil(
                                   wake_at_ - now, absl::Milliseconds(1)))));
    }
    if (look_up) {
      // Learned for every client sharing the finder; a failure is asked
      // again by the next call. No call waits on this: there is no
      // connection without a primary. Then round again for the timers.
      (void)options_.primary->Primary(absl::Now() + options_.connect_timeout);
      continue;
    }
    const int n = epoll_wait(epoll_fd_, events, kMaxEvents, timeout_ms);
    Ready ready;
    {
      absl::MutexLock lock(&mu_);
      for (int i = 0; i < n; ++i) {
        const uint64_t gen = events[i].data.u64;
        if (gen == 0) {
          uint64_t count = 0;
          (void)!read(wake_fd_, &count, sizeof(count));
          continue;
        }
        if (ctx_ == nullptr || gen != generation_)
          continue;  // a connection since dropped
        const uint32_t e = events[i].events;
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) redisAsyncHandleRead(ctx_);
        if (ctx_ != nullptr && (e & EPOLLOUT)) redisAsyncHandleWrite(ctx_);
        if (ctx_ != nullptr && auth_failed_)
          DropConnectionLocked("authentication failed");
        if (ctx_ != nullptr && readonly_seen_)
          DropConnectionLocked("the primary was demoted (READONLY)");
      }
      ExpireLocked(absl::Now());
      SyncInterestLocked();
      ready.swap(ready_);
    }
    RunReady(std::move(ready));
  }
}

}  // namespace aqueduct::redis
