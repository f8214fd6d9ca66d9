#ifndef AQUEDUCT_BENCH_LOAD_PIPELINED_REDIS_H_
#define AQUEDUCT_BENCH_LOAD_PIPELINED_REDIS_H_

// A benchmark-only Redis connection that never blocks its callers: every
// command is written at once on one shared connection, and one reader thread
// takes the replies in order and calls each command's callback. It exists to
// measure what gRPC's callback API plus a non-blocking Redis round trip cost
// on this machine (the echo server's --callback --redis row), against the
// sync API plus the blocking pooled client (common/redis) the services use.
//
// Deliberately small: commands are written whole under a lock (a blocking
// write to a local socket), replies may be simple strings, errors, integers
// or bulk strings (no arrays), no AUTH, no deadlines (a Redis that stops
// answering leaves commands waiting until the caller's own deadline), no
// reconnect: once the connection fails, every pending and later command
// fails at once. A service would need all of these.

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/config/config.h"

namespace aqueduct::bench {

class PipelinedRedis {
 public:
  // ok: the command got a reply that is not an error. reply: the reply's
  // text (the value of a bulk string, the line otherwise), or why it failed.
  using Done = std::function<void(bool ok, std::string reply)>;

  // Connects (Unix socket or numeric IPv4 "host:port") and starts the reader.
  static absl::StatusOr<std::unique_ptr<PipelinedRedis>> Connect(const config::Endpoint& endpoint);
  ~PipelinedRedis();
  PipelinedRedis(const PipelinedRedis&) = delete;
  PipelinedRedis& operator=(const PipelinedRedis&) = delete;

  // Sends the command; `done` runs on the reader thread when its reply comes,
  // or at once (on this thread) when the connection has failed.
  void Send(const std::vector<std::string>& argv, Done done);

 private:
  explicit PipelinedRedis(int fd);
  void ReadLoop();
  void FailAll(const std::string& why);

  const int fd_;
  absl::Mutex mu_;
  std::deque<Done> pending_ ABSL_GUARDED_BY(mu_);
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reader_;
};

}  // namespace aqueduct::bench

#endif  // AQUEDUCT_BENCH_LOAD_PIPELINED_REDIS_H_
