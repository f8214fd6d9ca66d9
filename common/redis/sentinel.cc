#include "common/redis/sentinel.h"

#include <hiredis/hiredis.h>

#include <memory>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/redis/internal.h"

namespace aqueduct::redis {
namespace {

struct ContextDeleter {
  void operator()(redisContext* c) const {
    if (c != nullptr) redisFree(c);
  }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};

// One command on a fresh connection; the reply, or why there is none.
absl::StatusOr<Reply> Run(redisContext* c, std::vector<std::string> argv) {
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  std::unique_ptr<redisReply, ReplyDeleter> r(
      static_cast<redisReply*>(redisCommandArgv(
          c, static_cast<int>(args.size()), args.data(), lens.data())));
  if (r == nullptr)
    return absl::UnavailableError(absl::StrCat("no answer: ", c->errstr));
  return internal::CopyReply(r.get());
}

}  // namespace

bool SameEndpoint(const config::Endpoint& a, const config::Endpoint& b) {
  return a.is_unix == b.is_unix && a.host == b.host && a.port == b.port &&
         a.path == b.path;
}

PrimaryFinder::PrimaryFinder(std::vector<config::Endpoint> sentinels,
                             std::string master_name, std::string user,
                             std::string password,
                             absl::Duration connect_timeout)
    : sentinels_(std::move(sentinels)),
      master_name_(std::move(master_name)),
      user_(std::move(user)),
      password_(std::move(password)),
      connect_timeout_(connect_timeout) {
  internal::IgnoreSigpipe();
}

std::string PrimaryFinder::Describe() const {
  std::vector<std::string> list;
  for (const auto& s : sentinels_) list.push_back(s.ToString());
  return absl::StrCat("the primary of ", master_name_, " (Sentinels ",
                      absl::StrJoin(list, ", "), ")");
}

absl::StatusOr<config::Endpoint> PrimaryFinder::Ask(
    const config::Endpoint& sentinel, absl::Time deadline) const {
  const absl::Duration budget =
      std::min(connect_timeout_, deadline - absl::Now());
  if (budget <= absl::ZeroDuration())
    return absl::DeadlineExceededError("deadline passed");
  const timeval tv = absl::ToTimeval(budget);
  std::unique_ptr<redisContext, ContextDeleter> c(
      sentinel.is_unix
          ? redisConnectUnixWithTimeout(sentinel.path.c_str(), tv)
          : redisConnectWithTimeout(sentinel.host.c_str(), sentinel.port, tv));
  if (c == nullptr) return absl::UnavailableError("cannot allocate");
  if (c->err != 0)
    return absl::UnavailableError(absl::StrCat("cannot connect: ", c->errstr));
  redisSetTimeout(c.get(), tv);
  if (!password_.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!user_.empty()) auth.push_back(user_);
    auth.push_back(password_);
    auto r = Run(c.get(), std::move(auth));
    // Never the password, nor Redis's text beyond that it refused.
    if (!r.ok() || r->is_error())
      return absl::UnavailableError("authentication failed");
  }
  auto r = Run(c.get(), {"SENTINEL", "get-master-addr-by-name", master_name_});
  if (!r.ok()) return r.status();
  if (r->is_nil())
    return absl::UnavailableError(
        absl::StrCat("does not monitor a master named ", master_name_));
  int port = 0;
  if (r->type != Reply::Type::kArray || r->elements.size() != 2 ||
      !absl::SimpleAtoi(r->elements[1].str, &port) || port <= 0 ||
      port > 65535) {
    return absl::UnavailableError("answered something other than an address");
  }
  config::Endpoint primary;
  primary.host = r->elements[0].str;
  primary.port = static_cast<uint16_t>(port);
  return primary;
}

absl::StatusOr<config::Endpoint> PrimaryFinder::Primary(absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    if (primary_.has_value()) return *primary_;
  }
  std::string last;
  for (const auto& sentinel : sentinels_) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(Describe(), ": deadline passed while asking"));
    }
    auto found = Ask(sentinel, deadline);
    if (found.ok()) {
      absl::MutexLock lock(&mu_);
      primary_ = *found;
      return *found;
    }
    last = absl::StrCat("Sentinel ", sentinel.ToString(), " ",
                        found.status().message());
  }
  return absl::UnavailableError(
      absl::StrCat(Describe(), ": no Sentinel answered (last: ", last, ")"));
}

std::optional<config::Endpoint> PrimaryFinder::Known() {
  absl::MutexLock lock(&mu_);
  return primary_;
}

void PrimaryFinder::Forget(const config::Endpoint& endpoint) {
  absl::MutexLock lock(&mu_);
  if (primary_.has_value() && SameEndpoint(*primary_, endpoint))
    primary_.reset();
}

bool MayWrite(const std::vector<std::string>& command) {
  static const auto* reads =
      new absl::flat_hash_set<std::string>{"GET",
                                           "MGET",
                                           "STRLEN",
                                           "EXISTS",
                                           "TYPE",
                                           "TTL",
                                           "PTTL",
                                           "HGET",
                                           "HMGET",
                                           "HGETALL",
                                           "HEXISTS",
                                           "HLEN",
                                           "HKEYS",
                                           "HVALS",
                                           "HSCAN",
                                           "ZRANGE",
                                           "ZREVRANGE",
                                           "ZRANGEBYSCORE",
                                           "ZREVRANGEBYSCORE",
                                           "ZSCORE",
                                           "ZMSCORE",
                                           "ZCARD",
                                           "ZCOUNT",
                                           "ZRANK",
                                           "ZREVRANK",
                                           "ZSCAN",
                                           "SMEMBERS",
                                           "SISMEMBER",
                                           "SMISMEMBER",
                                           "SCARD",
                                           "SSCAN",
                                           "LRANGE",
                                           "LLEN",
                                           "LINDEX",
                                           "XRANGE",
                                           "XREVRANGE",
                                           "XREAD",
                                           "XLEN",
                                           "XINFO",
                                           "SCAN",
                                           "KEYS",
                                           "PING",
                                           "INFO",
                                           "MEMORY",
                                           "ROLE",
                                           "WAIT",
                                           "SCRIPT",
                                           "EVALSHA_RO",
                                           "EVAL_RO",
                                           "DBSIZE",
                                           "TIME",
                                           "ECHO",
                                           "OBJECT",
                                           "CONFIG",
                                           "CLIENT",
                                           "SENTINEL",
                                           "AUTH",
                                           "HELLO",
                                           "SELECT"};
  if (command.empty()) return false;
  return !reads->contains(absl::AsciiStrToUpper(command[0]));
}

}  // namespace aqueduct::redis
