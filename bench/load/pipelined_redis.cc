#include "bench/load/pipelined_redis.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace aqueduct::bench {
namespace {

int ConnectSocket(const config::Endpoint& endpoint, std::string* error) {
  int fd = -1;
  int rc = -1;
  if (endpoint.is_unix) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (endpoint.path.size() >= sizeof(addr.sun_path)) {
      *error = "socket path too long";
      return -1;
    }
    std::memcpy(addr.sun_path, endpoint.path.data(), endpoint.path.size());
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(endpoint.port);
    if (inet_pton(AF_INET, endpoint.host.c_str(), &addr.sin_addr) != 1) {
      *error = "host is not a numeric IPv4 address";
      return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  }
  if (fd < 0 || rc != 0) {
    *error = std::strerror(errno);
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

// One reply from the front of `buf`: consumed bytes (0 = incomplete), or
// npos when the stream is not a reply this client reads.
size_t ParseReply(absl::string_view buf, bool* ok, std::string* reply) {
  const size_t eol = buf.find("\r\n");
  if (eol == absl::string_view::npos) return 0;
  const char type = buf[0];
  const absl::string_view line = buf.substr(1, eol - 1);
  if (type == '$') {
    int64_t len = 0;
    if (!absl::SimpleAtoi(line, &len)) return absl::string_view::npos;
    if (len < 0) {  // nil
      *ok = true;
      reply->clear();
      return eol + 2;
    }
    if (buf.size() < eol + 2 + static_cast<size_t>(len) + 2) return 0;
    *ok = true;
    *reply = std::string(buf.substr(eol + 2, static_cast<size_t>(len)));
    return eol + 2 + static_cast<size_t>(len) + 2;
  }
  if (type != '+' && type != ':' && type != '-') return absl::string_view::npos;
  *ok = type != '-';
  *reply = std::string(line);
  return eol + 2;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PipelinedRedis>> PipelinedRedis::Connect(const config::Endpoint& endpoint) {
  std::string error;
  const int fd = ConnectSocket(endpoint, &error);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("redis at ", endpoint.ToString(), ": ", error));
  return std::unique_ptr<PipelinedRedis>(new PipelinedRedis(fd));
}

PipelinedRedis::PipelinedRedis(int fd) : fd_(fd) { reader_ = std::thread([this] { ReadLoop(); }); }

PipelinedRedis::~PipelinedRedis() {
  shutdown(fd_, SHUT_RDWR);  // the reader sees the end and fails what is pending
  reader_.join();
  close(fd_);
}

void PipelinedRedis::Send(const std::vector<std::string>& argv, Done done) {
  std::string command = absl::StrCat("*", argv.size(), "\r\n");
  for (const std::string& a : argv) absl::StrAppend(&command, "$", a.size(), "\r\n", a, "\r\n");
  {
    absl::MutexLock lock(&mu_);
    if (!failed_) {
      size_t sent = 0;
      while (sent < command.size()) {
        const ssize_t n = send(fd_, command.data() + sent, command.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      if (sent == command.size()) {
        pending_.push_back(std::move(done));
        return;
      }
      // A partly written command leaves the stream unusable.
      failed_ = true;
      shutdown(fd_, SHUT_RDWR);
    }
  }
  done(false, "redis connection failed");
}

void PipelinedRedis::ReadLoop() {
  std::string buf;
  char chunk[16384];
  std::string why = "redis connection closed";
  while (true) {
    const ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t used = 0;
    while (used < buf.size()) {
      bool ok = false;
      std::string reply;
      const size_t consumed = ParseReply(absl::string_view(buf).substr(used), &ok, &reply);
      if (consumed == 0) break;
      if (consumed == absl::string_view::npos) {
        why = "redis protocol error (a reply type this client does not read)";
        shutdown(fd_, SHUT_RDWR);
        break;
      }
      used += consumed;
      Done done;
      {
        absl::MutexLock lock(&mu_);
        if (pending_.empty()) break;  // a reply nobody asked for: ignored
        done = std::move(pending_.front());
        pending_.pop_front();
      }
      done(ok, std::move(reply));
    }
    buf.erase(0, used);
  }
  FailAll(why);
}

void PipelinedRedis::FailAll(const std::string& why) {
  std::deque<Done> pending;
  {
    absl::MutexLock lock(&mu_);
    failed_ = true;
    pending.swap(pending_);
  }
  for (Done& done : pending) done(false, why);
}

}  // namespace aqueduct::bench
