#ifndef AQUEDUCT_TESTS_TESTING_PROCESS_H_
#define AQUEDUCT_TESTS_TESTING_PROCESS_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/redis/redis_client.h"

namespace aqueduct::testing {

// A fresh temporary directory, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A child process started with argv, stdout and stderr to `log_path`.
class Subprocess {
 public:
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv, const std::string& log_path,
      const std::vector<std::string>& extra_env = {},
      const std::string& stdin_path = "");
  ~Subprocess();  // SIGKILL if still running

  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits for exit up to `timeout`; the exit status (as from waitpid), or
  // nullopt on timeout.
  std::optional<int> Wait(absl::Duration timeout);
  bool Running();

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// CPU seconds (user + system) process `pid` has used so far (0 when it is
// gone). For benchmarks that say where the CPU went.
double CpuSeconds(pid_t pid);

// Reads a whole file ("" when missing).
std::string ReadFile(const std::string& path);

// Waits until `path` holds a port number; 0 on timeout.
int WaitForPortFile(const std::string& path, absl::Duration timeout);

// A loopback TCP port that was free a moment ago, for a program that
// cannot pick its own and report it (Prometheus). 0 when none was found.
int FreeLoopbackPort();

// GET http://127.0.0.1:<port><path> over HTTP/1.0; the response body when
// the status is 200, else UNAVAILABLE naming the status line or the error.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path,
                                    absl::Duration timeout);

// One of the project's service binaries, on a loopback port it picks.
struct ServiceProcess {
  std::unique_ptr<Subprocess> process;
  std::string address;  // "127.0.0.1:<port>"
  std::string log;      // <dir>/<name>.log
};
// Starts `binary` (a path under the build directory) with --listen=`listen`
// and --port_file=<dir>/<name>.port ahead of `args`, and waits up to 10 s
// for the port. An error that names the binary and holds its log when it
// did not start or wrote no port.
absl::StatusOr<ServiceProcess> StartService(
    const std::string& dir, const std::string& name, const std::string& binary,
    const std::vector<std::string>& args, const std::vector<std::string>& env,
    const std::string& listen = "127.0.0.1:0");
// Polls the health service over `channel` until it reports SERVING; false
// after `timeout` (health is checked in the background every 500 ms: this
// waits, it does not time the service).
bool WaitServing(const std::shared_ptr<grpc::Channel>& channel,
                 absl::Duration timeout = absl::Seconds(15));

// A real redis-server on a Unix socket (no TCP port, so no collisions), with
// AOF on under its own directory so a restart keeps the data, fsynced on
// every write (appendfsync always) as the project runs Redis everywhere: an
// acknowledged write survives a SIGKILL.
class RedisServer {
 public:
  // With `password`, Redis requires AUTH (requirepass) and ClientOptions()
  // carries it.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(
      const std::string& dir, const std::string& password = "");
  ~RedisServer();

  std::string address() const { return "unix:" + socket_; }
  const std::string& socket() const { return socket_; }
  redis::Options ClientOptions() const;

  absl::Status Stop();     // SIGTERM and wait (AOF is flushed)
  absl::Status Kill();     // SIGKILL and wait: a crash (Restart() after)
  absl::Status Restart();  // start again on the same socket and data
  void Pause();            // SIGSTOP: alive but not answering
  void Resume();           // SIGCONT
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  absl::Status FlushAll();

 private:
  absl::Status Launch();
  std::string dir_;
  std::string socket_;
  std::string password_;
  std::unique_ptr<Subprocess> process_;
};

// Path of a built binary: $AQUEDUCT_BINARY_DIR/<relative>.
std::string BinaryPath(const std::string& relative);
// Path in the source tree: $AQUEDUCT_SOURCE_DIR/<relative>.
std::string SourcePath(const std::string& relative);

// One field of Redis's INFO `section` as text, e.g. ("memory",
// "used_memory") -> "1234567", ("commandstats", "cmdstat_hmget") ->
// "calls=3,usec=...". NOT_FOUND when the section has no such field.
absl::StatusOr<std::string> RedisInfoField(redis::Client& client,
                                           const std::string& section,
                                           const std::string& field);

}  // namespace aqueduct::testing

#endif  // AQUEDUCT_TESTS_TESTING_PROCESS_H_
