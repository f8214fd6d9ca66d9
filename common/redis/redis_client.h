#ifndef AQUEDUCT_COMMON_REDIS_REDIS_CLIENT_H_
#define AQUEDUCT_COMMON_REDIS_REDIS_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/config/config.h"

// The Redis client: the only code in Aqueduct that touches hiredis. Replies
// are copied into owned `Reply` values at once; no hiredis type appears in
// this header.
//
// Failures map to absl::Status the same way everywhere:
//   connect refused / I/O error / connection closed / pool exhausted
//                                      -> UNAVAILABLE (names the address)
//   our command timeout fired           -> UNAVAILABLE ("did not answer")
//   the caller's deadline ran out       -> DEADLINE_EXCEEDED
//   protocol error / error reply        -> INTERNAL
// A connection that saw any error is closed and replaced, never reused.

namespace aqueduct::redis {

// An owned copy of one Redis reply.
struct Reply {
  enum class Type { kNil, kString, kStatus, kInteger, kArray, kError };
  Type type = Type::kNil;
  std::string str;              // kString, kStatus, kError
  int64_t integer = 0;          // kInteger
  std::vector<Reply> elements;  // kArray

  bool is_nil() const { return type == Type::kNil; }
  bool is_error() const { return type == Type::kError; }
};

class PrimaryFinder;

struct Options {
  // The Redis to use; unused when `primary` is set.
  config::Endpoint endpoint;
  // Redis under Sentinel (issue 24 §2): the primary is asked of the
  // Sentinels, and asked again after a connection to it is lost or it
  // answers READONLY (a failover demoted it). Shared by every client of
  // the process.
  std::shared_ptr<PrimaryFinder> primary;
  // Replicas a write must reach before it is acknowledged: WAIT follows
  // every pipeline with a command that may write, and fewer acknowledgements
  // than this within `wait_timeout` fail the call UNAVAILABLE (written on
  // the primary, not yet on a replica; a retry is safe, every write here
  // being idempotent). 0: no waiting.
  int wait_replicas = 0;
  absl::Duration wait_timeout = absl::Milliseconds(500);
  absl::Duration connect_timeout = absl::Milliseconds(500);
  absl::Duration command_timeout = absl::Milliseconds(1000);
  // Connections kept open at most; callers beyond it wait for a free one.
  int pool_size = 8;
  // Optional AUTH: password alone, or user + password (ACL).
  std::string user;
  std::string password;
};

// What a client authenticates with: a password alone (Redis's `default`
// user, or `requirepass`), or an ACL user and its password.
struct Credentials {
  std::string user;      // empty: the default user
  std::string password;  // empty: no AUTH at all
};
// The services' and tools' credentials from the environment: the password
// from AQUEDUCT_REDIS_PASSWORD_FILE or AQUEDUCT_REDIS_PASSWORD
// (config::SecretFromEnv), the ACL user's name, if any, from
// AQUEDUCT_REDIS_USER. INVALID_ARGUMENT names the variable that is wrong: a
// user without a password (it would be ignored), or a name Redis cannot
// have (empty, or with spaces or control characters). Never
// echoes the password.
absl::StatusOr<Credentials> CredentialsFromEnv();

// Redis under Sentinel, from the environment: AQUEDUCT_REDIS_SENTINELS
// ("host:port,host:port,..."; unset: no Sentinel, the --redis address is
// the primary), AQUEDUCT_REDIS_MASTER (the monitored master's name,
// default "aqueduct"), the Sentinels' password from
// AQUEDUCT_REDIS_SENTINEL_PASSWORD_FILE or AQUEDUCT_REDIS_SENTINEL_PASSWORD
// (default: the data nodes' password, `data`), and the replicas a write
// waits for, AQUEDUCT_REDIS_WAIT_REPLICAS (default 1 with Sentinels, else
// 0) within AQUEDUCT_REDIS_WAIT_TIMEOUT_MS (default 500). INVALID_ARGUMENT
// names the variable that is wrong.
struct Failover {
  std::shared_ptr<PrimaryFinder> primary;  // null: no Sentinels
  int wait_replicas = 0;
  absl::Duration wait_timeout = absl::Milliseconds(500);
};
absl::StatusOr<Failover> FailoverFromEnv(const Credentials& data,
                                         absl::Duration connect_timeout);

// Options for a service's client: `pool_size` connections (one per serving
// thread), the credentials if any (never logged), and where the primary is
// under Sentinel (`failover`, shared by the process's clients).
Options MakeOptions(const config::Endpoint& endpoint,
                    absl::Duration command_timeout, int pool_size,
                    Credentials credentials, const Failover& failover = {});

// A Lua script run with EVALSHA, loaded on first use and again after a
// NOSCRIPT reply (Redis restarted or SCRIPT FLUSH).
class Script {
 public:
  explicit Script(std::string source) : source_(std::move(source)) {}
  const std::string& source() const { return source_; }

 private:
  friend class Client;
  friend class AsyncClient;
  std::string source_;
  mutable absl::Mutex mu_;
  mutable std::string sha_ ABSL_GUARDED_BY(mu_);
};

class Connection;

// Thread-safe client over a bounded pool of connections. Connections are
// made lazily, so creating a client never fails because Redis is down.
class Client {
 public:
  explicit Client(Options options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Runs one command given as argv (binary-safe; never a format string).
  // An error reply becomes a status (ErrorOf): UNAVAILABLE when a retry can
  // succeed, else INTERNAL with Redis's message. An idle pooled connection
  // whose peer has gone is replaced before use.
  absl::StatusOr<Reply> Command(const std::vector<std::string>& argv,
                                absl::Time deadline = absl::InfiniteFuture());

  // For commands that wait on the server (XREAD BLOCK, BLPOP...): the
  // command timeout is extended by `block`, still capped by the deadline.
  absl::StatusOr<Reply> BlockingCommand(const std::vector<std::string>& argv,
                                        absl::Duration block,
                                        absl::Time deadline);

  // Sends all commands, then reads all replies, on one connection. Error
  // replies are returned in place (Reply::Type::kError); only I/O failures
  // fail the whole call.
  absl::StatusOr<std::vector<Reply>> Pipeline(
      const std::vector<std::vector<std::string>>& commands,
      absl::Time deadline = absl::InfiniteFuture());

  // Runs a Lua script atomically. Keys must share one hash tag.
  absl::StatusOr<Reply> Eval(const Script& script,
                             const std::vector<std::string>& keys,
                             const std::vector<std::string>& args,
                             absl::Time deadline = absl::InfiniteFuture());

  // The script's SHA1 as Redis knows it, loading it when needed (for
  // EVALSHA inside a Pipeline). After a NOSCRIPT reply call Forget() and
  // load again.
  absl::StatusOr<std::string> LoadScript(const Script& script,
                                         absl::Time deadline);
  void ForgetScript(const Script& script);

  // PING with the given deadline: OK only when Redis answers PONG.
  absl::Status Ping(absl::Time deadline);

  // "redis at <address>", for messages.
  std::string Describe() const;

  // The status for an error reply found in a Pipeline's replies, as
  // Command gives it: UNAVAILABLE for what a caller can retry (LOADING,
  // READONLY, MASTERDOWN, BUSY, OOM...), INTERNAL for the rest.
  absl::Status ErrorOf(const Reply& reply) const;

 private:
  absl::StatusOr<std::unique_ptr<Connection>> Acquire(absl::Time deadline);
  void Release(std::unique_ptr<Connection> conn);
  absl::StatusOr<std::vector<Reply>> Run(
      const std::vector<std::vector<std::string>>& commands,
      absl::Time deadline, absl::Duration extra_wait = absl::ZeroDuration());

  const Options options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

// ErrorOf without a client at hand: the same codes, the message naming
// "redis".
absl::Status ErrorReplyStatus(const Reply& reply);

// Key helpers. Every key is "aq:<service>:{<tag>}:<rest>": the braces make
// Redis Cluster hash only <tag>, so all keys of one owner (a session, a
// referral) sit in one slot and multi-key Lua/MULTI stays legal.
std::string Key(absl::string_view service, absl::string_view tag,
                absl::string_view rest);
// A key with no owner tag (global indexes such as the clinician queue).
std::string GlobalKey(absl::string_view service, absl::string_view rest);

}  // namespace aqueduct::redis

#endif  // AQUEDUCT_COMMON_REDIS_REDIS_CLIENT_H_
