#include "common/redis/redis_client.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/logging/logging.h"
#include "common/metrics/metrics.h"
#include "common/redis/internal.h"
#include "common/redis/sentinel.h"
#include "common/status/status_macros.h"

namespace aqueduct::redis {
namespace {

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

struct ContextDeleter {
  void operator()(redisContext* c) const {
    if (c != nullptr) redisFree(c);
  }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;

timeval TimevalOf(absl::Duration d) {
  if (d < absl::Milliseconds(1)) d = absl::Milliseconds(1);
  return absl::ToTimeval(d);
}

}  // namespace

namespace internal {

void RecordRoundTrip(const char* kind, absl::Duration latency,
                     const absl::Status& status) {
  if (!metrics::Enabled()) return;
  static auto& seconds = metrics::HistogramFamily(
      "aqueduct_redis_round_trip_seconds",
      "Round trips to Redis (a command or a pipeline), from sending to the "
      "last reply, in seconds.");
  static auto& failures = metrics::CounterFamily(
      "aqueduct_redis_failures_total",
      "Round trips to Redis that got no reply, by status code name.");
  struct Kind {
    prometheus::Histogram* seconds;
    prometheus::Counter* unavailable;
    prometheus::Counter* deadline;
  };
  // Two fixed kinds, made once.
  static const Kind sync = {
      &seconds.Add({{"client", "sync"}}, metrics::LatencyBuckets()),
      &failures.Add({{"client", "sync"}, {"code", "UNAVAILABLE"}}),
      &failures.Add({{"client", "sync"}, {"code", "DEADLINE_EXCEEDED"}})};
  static const Kind async = {
      &seconds.Add({{"client", "async"}}, metrics::LatencyBuckets()),
      &failures.Add({{"client", "async"}, {"code", "UNAVAILABLE"}}),
      &failures.Add({{"client", "async"}, {"code", "DEADLINE_EXCEEDED"}})};
  const Kind& k = kind[0] == 'a' ? async : sync;
  k.seconds->Observe(absl::ToDoubleSeconds(latency));
  if (status.code() == absl::StatusCode::kDeadlineExceeded) {
    k.deadline->Increment();
  } else if (!status.ok()) {
    k.unavailable->Increment();
  }
}

Reply CopyReply(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) {
        out.elements.push_back(CopyReply(r->element[i]));
      }
      break;
    case REDIS_REPLY_NIL:
    default:
      out.type = Reply::Type::kNil;
      break;
  }
  return out;
}

absl::Status ErrorReplyStatus(const std::string& describe,
                              const std::string& error) {
  if (absl::StartsWith(error, "NOSCRIPT")) {
    return absl::NotFoundError(error);  // the script is loaded again
  }
  for (const char* retryable :
       {"LOADING", "MASTERDOWN", "READONLY", "BUSY", "TRYAGAIN", "OOM",
        "CLUSTERDOWN", "NOREPLICAS"}) {
    // Redis is starting up, failing over, running a long script or out of
    // memory: the same call can succeed later.
    if (absl::StartsWith(error, retryable))
      return absl::UnavailableError(absl::StrCat(describe, ": ", error));
  }
  return absl::InternalError(absl::StrCat(describe, ": ", error));
}

Argv AuthCommand(const Options& options) {
  Argv auth;
  if (options.password.empty()) return auth;
  auth.argv = {"AUTH"};
  auth.lens = {4};
  if (!options.user.empty()) {
    auth.argv.push_back(options.user.c_str());
    auth.lens.push_back(options.user.size());
  }
  auth.argv.push_back(options.password.c_str());
  auth.lens.push_back(options.password.size());
  return auth;
}

void AppendCommand(const std::vector<std::string>& command, std::string* out) {
  size_t need = 16;
  for (const auto& a : command) need += a.size() + 16;
  out->reserve(out->size() + need);
  absl::StrAppend(out, "*", command.size(), "\r\n");
  for (const auto& a : command)
    absl::StrAppend(out, "$", a.size(), "\r\n", a, "\r\n");
}

std::vector<std::string> WaitCommand(const Options& options) {
  return {"WAIT", absl::StrCat(options.wait_replicas),
          absl::StrCat(absl::ToInt64Milliseconds(options.wait_timeout))};
}

absl::Status Replicated(const std::string& describe, const Options& options,
                        const Reply& wait_reply) {
  if (wait_reply.type == Reply::Type::kInteger &&
      wait_reply.integer >= options.wait_replicas)
    return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      describe, ": written, but no replica acknowledged it within ",
      absl::FormatDuration(options.wait_timeout),
      "; retry (every write here is idempotent)"));
}

void IgnoreSigpipe() {
  static const bool ignored = [] {
    signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)ignored;
}

}  // namespace internal

using internal::CopyReply;

// One hiredis context; used by one thread at a time (hiredis contexts are
// not thread-safe). `broken` is set on any error so it is never reused.
class Connection {
 public:
  Connection(ContextPtr ctx, config::Endpoint endpoint)
      : ctx_(std::move(ctx)), endpoint_(std::move(endpoint)) {}
  redisContext* get() { return ctx_.get(); }
  // Where it is connected (under Sentinel: the primary when it was made).
  const config::Endpoint& endpoint() const { return endpoint_; }
  bool broken() const { return broken_ || ctx_->err != 0; }
  void mark_broken() { broken_ = true; }
  // Sets the socket's send and receive timeouts, unless they are already
  // `timeout`: two setsockopt calls saved per round trip in the usual case
  // (the command timeout, the call's deadline being further away).
  void SetTimeout(absl::Duration timeout) {
    if (timeout == timeout_) return;
    redisSetTimeout(ctx_.get(), TimevalOf(timeout));
    timeout_ = timeout;
  }

 private:
  ContextPtr ctx_;
  const config::Endpoint endpoint_;
  bool broken_ = false;
  absl::Duration timeout_ = absl::ZeroDuration();  // none set yet
};

Client::Client(Options options) : options_(std::move(options)) {
  internal::IgnoreSigpipe();
}
Client::~Client() = default;

std::string Client::Describe() const {
  if (options_.primary != nullptr)
    return absl::StrCat("redis: ", options_.primary->Describe());
  return absl::StrCat("redis at ", options_.endpoint.ToString());
}

absl::Status Client::ErrorOf(const Reply& reply) const {
  return internal::ErrorReplyStatus(Describe(), reply.str);
}

absl::Status ErrorReplyStatus(const Reply& reply) {
  return internal::ErrorReplyStatus("redis", reply.str);
}

namespace {

// Whether an idle pooled connection's peer is gone (Redis restarted or
// closed it while it sat in the pool): the socket reads as at its end, or
// has bytes no command asked for. One non-blocking peek, no round trip.
bool PeerGone(redisContext* c) {
  char byte;
  const ssize_t n = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;  // orderly close
  if (n > 0) return true;   // stray bytes: out of step with its replies
  return errno != EAGAIN && errno != EWOULDBLOCK;  // reset, or worse
}

}  // namespace

absl::StatusOr<std::unique_ptr<Connection>> Client::Acquire(
    absl::Time deadline) {
  std::vector<std::unique_ptr<Connection>> stale;  // closed outside the lock
  // Under Sentinel, where the primary is now (asked only after a failure).
  config::Endpoint ep = options_.endpoint;
  if (options_.primary != nullptr) {
    ASSIGN_OR_RETURN(ep, options_.primary->Primary(deadline));
  }
  {
    absl::MutexLock lock(&mu_);
    auto can_proceed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < options_.pool_size;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&can_proceed), deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat(Describe(), ": all ", options_.pool_size,
                       " connections busy until the deadline"));
    }
    while (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      if (!PeerGone(conn->get()) && SameEndpoint(conn->endpoint(), ep))
        return conn;
      // Replaced by a new connection in the same slot (below), so the
      // first call after a Redis restart (or a failover, which moved the
      // primary) does not fail on it.
      stale.push_back(std::move(conn));
      --open_;
    }
    ++open_;  // reserve a slot; released below on failure
  }

  absl::Duration budget =
      std::min(options_.connect_timeout, deadline - absl::Now());
  auto fail = [&](absl::Status s) {
    if (options_.primary != nullptr) options_.primary->Forget(ep);
    absl::MutexLock lock(&mu_);
    --open_;
    return s;
  };
  if (budget <= absl::ZeroDuration()) {
    return fail(absl::DeadlineExceededError(
        absl::StrCat(Describe(), ": deadline passed before connecting")));
  }
  timeval tv = TimevalOf(budget);
  ContextPtr ctx(ep.is_unix
                     ? redisConnectUnixWithTimeout(ep.path.c_str(), tv)
                     : redisConnectWithTimeout(ep.host.c_str(), ep.port, tv));
  if (ctx == nullptr) {
    return fail(absl::UnavailableError(
        absl::StrCat(Describe(), ": cannot allocate a connection")));
  }
  if (ctx->err != 0) {
    return fail(absl::UnavailableError(
        absl::StrCat(Describe(), ": cannot connect: ", ctx->errstr)));
  }
  if (!ep.is_unix) redisEnableKeepAlive(ctx.get());
  auto conn = std::make_unique<Connection>(std::move(ctx), ep);
  if (internal::Argv auth = internal::AuthCommand(options_);
      !auth.argv.empty()) {
    redisSetTimeout(conn->get(), tv);
    ReplyPtr r(static_cast<redisReply*>(
        redisCommandArgv(conn->get(), static_cast<int>(auth.argv.size()),
                         auth.argv.data(), auth.lens.data())));
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      // Never echo the password or Redis's reply text beyond its code.
      return fail(absl::UnavailableError(
          absl::StrCat(Describe(), ": authentication failed")));
    }
  }
  return conn;
}

void Client::Release(std::unique_ptr<Connection> conn) {
  absl::MutexLock lock(&mu_);
  if (conn == nullptr || conn->broken()) {
    --open_;
    return;
  }
  idle_.push_back(std::move(conn));
}

absl::StatusOr<std::vector<Reply>> Client::Run(
    const std::vector<std::vector<std::string>>& commands, absl::Time deadline,
    absl::Duration extra_wait) {
  if (absl::Now() >= deadline) {
    return absl::DeadlineExceededError(
        absl::StrCat(Describe(), ": deadline passed before sending"));
  }
  ASSIGN_OR_RETURN(auto conn_or, Acquire(deadline));
  std::unique_ptr<Connection> conn = std::move(conn_or);

  absl::Duration remaining = deadline - absl::Now();
  const absl::Duration command_timeout = options_.command_timeout + extra_wait;
  const bool capped_by_deadline = remaining < command_timeout;
  absl::Duration timeout = std::min(command_timeout, remaining);
  if (timeout <= absl::ZeroDuration()) {
    Release(std::move(conn));
    return absl::DeadlineExceededError(
        absl::StrCat(Describe(), ": deadline passed before sending"));
  }
  redisContext* c = conn->get();
  conn->SetTimeout(timeout);

  const absl::Time sent = absl::Now();
  std::string wire;
  bool writes = false;
  for (const auto& command : commands) {
    internal::AppendCommand(command, &wire);
    writes = writes || MayWrite(command);
  }
  // Acknowledged only once on a replica too (Options::wait_replicas).
  const bool wait = writes && options_.wait_replicas > 0;
  if (wait) {
    internal::AppendCommand(internal::WaitCommand(options_), &wire);
  }
  redisAppendFormattedCommand(c, wire.data(), wire.size());

  std::vector<Reply> replies;
  const size_t expected = commands.size() + (wait ? 1 : 0);
  replies.reserve(expected);
  absl::Status failure;
  for (size_t i = 0; i < expected; ++i) {
    void* raw = nullptr;
    errno = 0;
    int rc = redisGetReply(c, &raw);
    ReplyPtr reply(static_cast<redisReply*>(raw));
    if (rc != REDIS_OK || reply == nullptr) {
      const int saved_errno = errno;
      conn->mark_broken();
      const bool timed_out =
          c->err == REDIS_ERR_IO &&
          (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK ||
           saved_errno == ETIMEDOUT);
      if (timed_out && capped_by_deadline) {
        failure = absl::DeadlineExceededError(
            absl::StrCat(Describe(), ": no reply before the call's deadline"));
      } else if (timed_out) {
        failure = absl::UnavailableError(
            absl::StrCat(Describe(), ": did not answer within ",
                         absl::FormatDuration(options_.command_timeout)));
      } else if (c->err == REDIS_ERR_PROTOCOL) {
        // A torn reply (the server died mid-write): the connection is
        // dropped, and the call can be retried on a new one.
        failure = absl::UnavailableError(
            absl::StrCat(Describe(), ": protocol error: ", c->errstr));
      } else {
        failure = absl::UnavailableError(
            absl::StrCat(Describe(), ": connection lost: ", c->errstr));
      }
      break;
    }
    replies.push_back(CopyReply(reply.get()));
  }
  internal::RecordRoundTrip("sync", absl::Now() - sent, failure);
  if (!failure.ok() && options_.primary != nullptr)
    options_.primary->Forget(conn->endpoint());
  // A demoted primary answers writes READONLY: the failover moved the
  // primary, so ask the Sentinels again and drop this connection.
  for (const Reply& r : replies) {
    if (r.is_error() && absl::StartsWith(r.str, "READONLY")) {
      conn->mark_broken();
      if (options_.primary != nullptr)
        options_.primary->Forget(conn->endpoint());
      break;
    }
  }
  Release(std::move(conn));
  if (!failure.ok()) return failure;
  if (wait) {
    const Reply acked = std::move(replies.back());
    replies.pop_back();
    RETURN_IF_ERROR(internal::Replicated(Describe(), options_, acked));
  }
  return replies;
}

absl::StatusOr<Reply> Client::BlockingCommand(
    const std::vector<std::string>& argv, absl::Duration block,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto replies, Run({argv}, deadline, block));
  Reply& r = replies[0];
  if (r.is_error()) return ErrorOf(r);
  return std::move(r);
}

absl::StatusOr<Reply> Client::Command(const std::vector<std::string>& argv,
                                      absl::Time deadline) {
  ASSIGN_OR_RETURN(auto replies, Run({argv}, deadline));
  Reply& r = replies[0];
  if (r.is_error()) return internal::ErrorReplyStatus(Describe(), r.str);
  return std::move(r);
}

absl::StatusOr<std::vector<Reply>> Client::Pipeline(
    const std::vector<std::vector<std::string>>& commands,
    absl::Time deadline) {
  if (commands.empty()) return std::vector<Reply>{};
  return Run(commands, deadline);
}

absl::StatusOr<Reply> Client::Eval(const Script& script,
                                   const std::vector<std::string>& keys,
                                   const std::vector<std::string>& args,
                                   absl::Time deadline) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string sha;
    {
      absl::MutexLock lock(&script.mu_);
      sha = script.sha_;
    }
    if (sha.empty()) {
      ASSIGN_OR_RETURN(auto loaded,
                       Command({"SCRIPT", "LOAD", script.source()}, deadline));
      sha = loaded.str;
      absl::MutexLock lock(&script.mu_);
      script.sha_ = sha;
    }
    std::vector<std::string> argv = {"EVALSHA", sha,
                                     std::to_string(keys.size())};
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = Command(argv, deadline);
    if (r.ok() || r.status().code() != absl::StatusCode::kNotFound) return r;
    absl::MutexLock lock(&script.mu_);  // NOSCRIPT: Redis lost its cache
    script.sha_.clear();
  }
  return absl::UnavailableError(
      absl::StrCat(Describe(), ": script cache keeps being flushed"));
}

absl::StatusOr<std::string> Client::LoadScript(const Script& script,
                                               absl::Time deadline) {
  {
    absl::MutexLock lock(&script.mu_);
    if (!script.sha_.empty()) return script.sha_;
  }
  ASSIGN_OR_RETURN(auto loaded,
                   Command({"SCRIPT", "LOAD", script.source()}, deadline));
  absl::MutexLock lock(&script.mu_);
  script.sha_ = loaded.str;
  return script.sha_;
}

void Client::ForgetScript(const Script& script) {
  absl::MutexLock lock(&script.mu_);
  script.sha_.clear();
}

absl::Status Client::Ping(absl::Time deadline) {
  ASSIGN_OR_RETURN(auto r, Command({"PING"}, deadline));
  if (r.str != "PONG") {
    return absl::UnavailableError(
        absl::StrCat(Describe(), ": unexpected PING reply"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Credentials> CredentialsFromEnv() {
  Credentials out;
  auto password = config::SecretFromEnv("AQUEDUCT_REDIS_PASSWORD");
  if (!password.ok()) return password.status();
  out.password = *std::move(password);
  const char* user = std::getenv("AQUEDUCT_REDIS_USER");
  if (user == nullptr) return out;
  out.user = user;
  if (out.user.empty()) {
    return absl::InvalidArgumentError(
        "AQUEDUCT_REDIS_USER: empty (unset it to use the default user)");
  }
  for (const unsigned char c : out.user) {
    if (c <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError(
          "AQUEDUCT_REDIS_USER: a Redis user name has no spaces or control "
          "characters");
    }
  }
  if (out.password.empty()) {
    return absl::InvalidArgumentError(
        "AQUEDUCT_REDIS_USER is set but no password is "
        "(AQUEDUCT_REDIS_PASSWORD_FILE or "
        "AQUEDUCT_REDIS_PASSWORD): an ACL user signs in with its password");
  }
  return out;
}

absl::StatusOr<Failover> FailoverFromEnv(const Credentials& data,
                                         absl::Duration connect_timeout) {
  Failover out;
  const std::string list = config::EnvOr("AQUEDUCT_REDIS_SENTINELS", "");
  std::vector<config::Endpoint> sentinels;
  for (absl::string_view one :
       absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    ASSIGN_OR_RETURN(auto ep,
                     config::ParseEndpoint(absl::StripAsciiWhitespace(one),
                                           "AQUEDUCT_REDIS_SENTINELS"));
    sentinels.push_back(std::move(ep));
  }
  const int64_t wait = config::EnvOrInt("AQUEDUCT_REDIS_WAIT_REPLICAS",
                                        sentinels.empty() ? 0 : 1);
  const int64_t wait_ms =
      config::EnvOrInt("AQUEDUCT_REDIS_WAIT_TIMEOUT_MS", 500);
  if (wait < 0 || wait > 16) {
    return absl::InvalidArgumentError(
        "AQUEDUCT_REDIS_WAIT_REPLICAS: must be 0..16");
  }
  if (wait_ms < 1) {
    return absl::InvalidArgumentError(
        "AQUEDUCT_REDIS_WAIT_TIMEOUT_MS: must be positive");
  }
  out.wait_replicas = static_cast<int>(wait);
  out.wait_timeout = absl::Milliseconds(wait_ms);
  if (sentinels.empty()) return out;
  const std::string master = config::EnvOr("AQUEDUCT_REDIS_MASTER", "aqueduct");
  for (const unsigned char c : master) {
    if (c <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError(
          "AQUEDUCT_REDIS_MASTER: a master name has no spaces or control "
          "characters");
    }
  }
  ASSIGN_OR_RETURN(std::string password,
                   config::SecretFromEnv("AQUEDUCT_REDIS_SENTINEL_PASSWORD"));
  // Without a Sentinel password of their own, Sentinels take the data
  // nodes' (the default user's: Sentinel ACL users are not supported here).
  out.primary = std::make_shared<PrimaryFinder>(
      std::move(sentinels), master, "",
      password.empty() ? data.password : password, connect_timeout);
  return out;
}

Options MakeOptions(const config::Endpoint& endpoint,
                    absl::Duration command_timeout, int pool_size,
                    Credentials credentials, const Failover& failover) {
  Options o;
  o.endpoint = endpoint;
  o.primary = failover.primary;
  o.wait_replicas = failover.wait_replicas;
  o.wait_timeout = failover.wait_timeout;
  o.command_timeout = command_timeout;
  o.pool_size = pool_size;
  o.user = std::move(credentials.user);
  o.password = std::move(credentials.password);
  return o;
}

std::string Key(absl::string_view service, absl::string_view tag,
                absl::string_view rest) {
  return absl::StrCat("aq:", service, ":{", tag, "}:", rest);
}

std::string GlobalKey(absl::string_view service, absl::string_view rest) {
  return absl::StrCat("aq:", service, ":", rest);
}

}  // namespace aqueduct::redis
