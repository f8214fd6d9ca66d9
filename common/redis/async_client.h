#ifndef AQUEDUCT_COMMON_REDIS_ASYNC_CLIENT_H_
#define AQUEDUCT_COMMON_REDIS_ASYNC_CLIENT_H_

#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/redis/redis_client.h"

struct redisAsyncContext;

namespace aqueduct::redis {

// A non-blocking Redis client: ONE pipelined connection, driven by its own
// I/O thread, for the hot paths whose caller must not block (gRPC callback
// handlers). Commands from any thread are written at once, in the order
// they are given; their replies come back in that order and complete each
// call on the I/O thread.
//
// The same failure contract as the blocking Client (redis_client.h):
//   cannot connect / connection lost / authentication failed / shut down
//                                      -> UNAVAILABLE (names the address)
//   no reply within the command timeout -> UNAVAILABLE ("did not answer");
//                                         the connection is then dropped
//   no reply before the caller's deadline (nearer than the command timeout)
//                                      -> DEADLINE_EXCEEDED; the
//                                         connection is kept
//   protocol error                      -> UNAVAILABLE (connection dropped)
// A dropped connection fails every call still waiting on it, and the next
// call connects again: the client recovers by itself when Redis returns.
// The password (Options::password) is sent with AUTH first on every
// connection and never logged.
//
// Under Sentinel (Options::primary), the primary is asked of the Sentinels
// on the I/O thread, never on a caller's: while it is not known, calls fail
// at once with UNAVAILABLE ("looking up the primary").
//
// Threads: every callback runs exactly once, on the I/O thread or, when the
// call fails before anything is sent, on the calling thread before the call
// returns. Callbacks must not block (hand blocking work to a pool); they
// may issue further commands.
class AsyncClient {
 public:
  // Error replies are kept in place (Reply::Type::kError), as in
  // Client::Pipeline; only a failure of the connection fails the call.
  using PipelineDone =
      absl::AnyInvocable<void(absl::StatusOr<std::vector<Reply>>) &&>;
  // An error reply becomes a status as Client::Command maps it (NOSCRIPT ->
  // NOT_FOUND, LOADING/MASTERDOWN/READONLY -> UNAVAILABLE, else INTERNAL).
  using CommandDone = absl::AnyInvocable<void(absl::StatusOr<Reply>) &&>;
  using ScriptDone = absl::AnyInvocable<void(absl::StatusOr<std::string>) &&>;

  // Options::pool_size is not used (one connection). Connects lazily: a
  // client is made even while Redis is down.
  explicit AsyncClient(Options options);
  // Fails every call still waiting (UNAVAILABLE), then stops the I/O thread.
  ~AsyncClient();
  AsyncClient(const AsyncClient&) = delete;
  AsyncClient& operator=(const AsyncClient&) = delete;

  // Sends the commands back to back; `done` gets one reply per command.
  void Pipeline(std::vector<std::vector<std::string>> commands,
                absl::Time deadline, PipelineDone done);
  void Command(std::vector<std::string> argv, absl::Time deadline,
               CommandDone done);

  // The script's SHA1 as Redis knows it: from the cache shared with the
  // blocking Client, or loaded with SCRIPT LOAD. After a NOSCRIPT reply
  // call Client::ForgetScript (or Forget here) and load again.
  void LoadScript(const Script& script, absl::Time deadline, ScriptDone done);
  static void ForgetScript(const Script& script);

  // "redis at <address>", for messages.
  std::string Describe() const;

 private:
  struct Call;
  using Ready =
      std::vector<std::pair<PipelineDone, absl::StatusOr<std::vector<Reply>>>>;

  // Everything below with "Locked" runs with mu_ held; hiredis is only
  // touched with mu_ held.
  absl::Status ConnectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A finished call's replies, without the WAIT reply when it waited;
  // UNAVAILABLE when fewer replicas than Options::wait_replicas acked.
  absl::StatusOr<std::vector<Reply>> Acknowledged(Call* call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(Call* call, absl::StatusOr<std::vector<Reply>> result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropConnectionLocked(std::string reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SyncInterestLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time NextWakeLocked(absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string LostReasonLocked(const redisAsyncContext* ac) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake();
  void Loop();
  static void RunReady(Ready ready);

  // hiredis callbacks (run inside hiredis calls, so with mu_ held).
  static void OnReply(redisAsyncContext* ac, void* reply, void* privdata);
  static void OnAuthReply(redisAsyncContext* ac, void* reply, void* privdata);
  static void OnConnect(const redisAsyncContext* ac, int status);
  static void AddRead(void* self);
  static void DelRead(void* self);
  static void AddWrite(void* self);
  static void DelWrite(void* self);
  static void Cleanup(void* self);

  const Options options_;
  const std::string describe_;  // Describe(), made once
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread io_thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  redisAsyncContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) =
      0;  // of ctx_, to ignore stale events
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  int registered_ ABSL_GUARDED_BY(mu_) =
      -1;  // epoll mask of fd_; -1: not added
  bool want_read_ ABSL_GUARDED_BY(mu_) = false;
  bool want_write_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool auth_failed_ ABSL_GUARDED_BY(mu_) = false;
  // A reply said READONLY: the connection is dropped once hiredis returns.
  bool readonly_seen_ ABSL_GUARDED_BY(mu_) = false;
  // Under Sentinel, no primary is known: the I/O thread asks the Sentinels
  // (blocking, so never on a caller's thread) and calls fail UNAVAILABLE
  // until it knows.
  bool lookup_wanted_ ABSL_GUARDED_BY(mu_) = false;
  // Where ctx_ connects (under Sentinel: the primary when it connected).
  config::Endpoint endpoint_ ABSL_GUARDED_BY(mu_);
  absl::Time connect_deadline_ ABSL_GUARDED_BY(mu_);
  std::string fail_reason_ ABSL_GUARDED_BY(mu_);  // why ctx_ is being dropped
  // Calls in the order sent; a call leaves when its last reply (or the
  // connection's end) has come back, even if it was already failed.
  std::deque<std::unique_ptr<Call>> inflight_ ABSL_GUARDED_BY(mu_);
  absl::Time wake_at_ ABSL_GUARDED_BY(mu_) =
      absl::InfinitePast();           // when the I/O thread wakes next
  Ready ready_ ABSL_GUARDED_BY(mu_);  // run once mu_ is released
};

}  // namespace aqueduct::redis

#endif  // AQUEDUCT_COMMON_REDIS_ASYNC_CLIENT_H_
