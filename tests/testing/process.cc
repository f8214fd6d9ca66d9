#include "tests/testing/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/server/health_client.h"

extern char** environ;

namespace aqueduct::testing {

TempDir::TempDir() {
  // Unix socket paths are limited to 107 bytes (sun_path); Bazel's
  // TEST_TMPDIR is often deeper than that, so use it only when short.
  const char* base = std::getenv("TEST_TMPDIR");
  std::string root =
      (base != nullptr && std::strlen(base) < 60) ? base : "/tmp";
  std::string tmpl = absl::StrCat(root, "/aq-XXXXXX");
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* made = mkdtemp(buf.data());
  path_ = made != nullptr ? made : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const std::vector<std::string>& argv, const std::string& log_path,
    const std::vector<std::string>& extra_env, const std::string& stdin_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(
      &actions, 0, stdin_path.empty() ? "/dev/null" : stdin_path.c_str(),
      O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // The child must not inherit blocked SIGTERM/SIGINT from a test that
  // blocked them.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  for (const auto& e : extra_env) env_storage.push_back(e);
  std::vector<char*> env;
  for (auto& e : env_storage) env.push_back(e.data());
  env.push_back(nullptr);

  pid_t pid = -1;
  int rc =
      posix_spawnp(&pid, args[0], &actions, &attr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", argv[0], ": ", strerror(rc)));
  }
  auto p = std::unique_ptr<Subprocess>(new Subprocess());
  p->pid_ = pid;
  return p;
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGCONT);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void Subprocess::Signal(int sig) {
  if (pid_ > 0 && !reaped_) kill(pid_, sig);
}

bool Subprocess::Running() {
  if (reaped_) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) reaped_ = true;
  return !reaped_;
}

std::optional<int> Subprocess::Wait(absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      return status;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return std::nullopt;
}

double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(in, line);
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 > line.size()) return 0;
  // Fields after the command name (which is in parentheses): utime is the
  // 12th, stime the 13th of what follows ") ".
  std::vector<std::string> f = absl::StrSplit(line.substr(paren + 2), ' ');
  if (f.size() < 13) return 0;
  double ticks = 0;
  for (int i : {11, 12}) {
    int64_t v = 0;
    if (absl::SimpleAtoi(f[i], &v)) ticks += static_cast<double>(v);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WaitServing(const std::shared_ptr<grpc::Channel>& channel,
                 absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    auto h = server::CheckHealth(channel, "", absl::Now() + absl::Seconds(1));
    if (h.ok() && *h) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

absl::StatusOr<std::string> HttpGet(int port, const std::string& path,
                                    absl::Duration timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::UnavailableError("socket() failed");
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(absl::ToInt64Seconds(timeout));
  tv.tv_usec =
      static_cast<suseconds_t>(absl::ToInt64Microseconds(timeout) % 1000000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to 127.0.0.1:", port));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (write(fd, request.data(), request.size()) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("cannot send the request");
  }
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0)
    response.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t head_end = response.find("\r\n\r\n");
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (head_end == std::string::npos || !absl::StrContains(status_line, " 200"))
    return absl::UnavailableError(absl::StrCat(
        "GET ", path, ": ", status_line.empty() ? "no response" : status_line));
  return response.substr(head_end + 4);
}

int WaitForPortFile(const std::string& path, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    int port = 0;
    std::string text(absl::StripAsciiWhitespace(ReadFile(path)));
    if (absl::SimpleAtoi(text, &port) && port > 0) return port;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return 0;
}

absl::StatusOr<ServiceProcess> StartService(
    const std::string& dir, const std::string& name, const std::string& binary,
    const std::vector<std::string>& args, const std::vector<std::string>& env,
    const std::string& listen) {
  ServiceProcess s;
  s.log = dir + "/" + name + ".log";
  const std::string port_file = dir + "/" + name + ".port";
  std::remove(
      port_file
          .c_str());  // a restart under the same name waits for its own port
  std::vector<std::string> argv = {BinaryPath(binary), "--listen=" + listen,
                                   "--port_file=" + port_file};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Subprocess::Start(argv, s.log, env);
  if (!p.ok())
    return absl::InternalError(
        absl::StrCat(binary, ": ", p.status().message()));
  s.process = std::move(*p);
  const int port = WaitForPortFile(port_file, absl::Seconds(10));
  if (port == 0)
    return absl::DeadlineExceededError(
        absl::StrCat(binary, " wrote no port:\n", ReadFile(s.log)));
  s.address = absl::StrCat("127.0.0.1:", port);
  return s;
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(
    const std::string& dir, const std::string& password) {
  auto server = std::unique_ptr<RedisServer>(new RedisServer());
  server->dir_ = dir;
  server->password_ = password;
  server->socket_ = absl::StrCat(dir, "/redis.sock");
  if (absl::Status s = server->Launch(); !s.ok()) return s;
  return server;
}

absl::Status RedisServer::Launch() {
  std::vector<std::string> argv = {
      "redis-server", "--port", "0",
      "--unixsocket", socket_,  "--unixsocketperm",
      "700",          "--dir",  dir_,
      "--appendonly", "yes",    "--appendfsync",
      "always",       "--save", "",
      "--daemonize",  "no",     "--hash-max-listpack-value",
      "2048"};
  if (!password_.empty()) argv.insert(argv.end(), {"--requirepass", password_});
  auto p = Subprocess::Start(argv, absl::StrCat(dir_, "/redis.log"));
  if (!p.ok()) return p.status();
  process_ = std::move(*p);
  redis::Client client(ClientOptions());
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (absl::Now() < end) {
    if (client.Ping(absl::Now() + absl::Milliseconds(200)).ok())
      return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::UnavailableError(absl::StrCat("redis-server did not answer on ",
                                             socket_, "; see ", dir_,
                                             "/redis.log"));
}

RedisServer::~RedisServer() = default;

redis::Options RedisServer::ClientOptions() const {
  redis::Options o;
  o.endpoint.is_unix = true;
  o.endpoint.path = socket_;
  o.connect_timeout = absl::Milliseconds(300);
  o.command_timeout = absl::Milliseconds(500);
  o.pool_size = 4;
  o.password = password_;
  return o;
}

absl::Status RedisServer::Stop() {
  if (process_ == nullptr) return absl::OkStatus();
  process_->Signal(SIGCONT);
  process_->Signal(SIGTERM);
  if (!process_->Wait(absl::Seconds(10)).has_value()) {
    return absl::DeadlineExceededError("redis-server did not stop");
  }
  process_.reset();
  return absl::OkStatus();
}

absl::Status RedisServer::Kill() {
  if (process_ == nullptr) return absl::OkStatus();
  process_->Signal(SIGKILL);
  if (!process_->Wait(absl::Seconds(10)).has_value()) {
    return absl::DeadlineExceededError("redis-server did not die");
  }
  process_.reset();
  return absl::OkStatus();
}

absl::Status RedisServer::Restart() {
  if (absl::Status s = Stop(); !s.ok()) return s;
  return Launch();
}

void RedisServer::Pause() { process_->Signal(SIGSTOP); }
void RedisServer::Resume() { process_->Signal(SIGCONT); }

absl::Status RedisServer::FlushAll() {
  redis::Client client(ClientOptions());
  return client.Command({"FLUSHALL"}, absl::Now() + absl::Seconds(5)).status();
}

absl::StatusOr<std::string> RedisInfoField(redis::Client& client,
                                           const std::string& section,
                                           const std::string& field) {
  auto info = client.Command({"INFO", section}, absl::Now() + absl::Seconds(5));
  if (!info.ok()) return info.status();
  // Fields are "<name>:<value>\r\n" lines, each after a line break.
  const std::string key = absl::StrCat("\n", field, ":");
  const size_t at = info->str.find(key);
  if (at == std::string::npos) {
    return absl::NotFoundError(
        absl::StrCat("redis INFO ", section, " has no ", field));
  }
  const size_t begin = at + key.size();
  return info->str.substr(begin, info->str.find('\r', begin) - begin);
}

std::string BinaryPath(const std::string& relative) {
  const char* dir = std::getenv("AQUEDUCT_BINARY_DIR");
  return absl::StrCat(dir != nullptr ? dir : ".", "/", relative);
}

std::string SourcePath(const std::string& relative) {
  const char* dir = std::getenv("AQUEDUCT_SOURCE_DIR");
  return absl::StrCat(dir != nullptr ? dir : ".", "/", relative);
}

}  // namespace aqueduct::testing
