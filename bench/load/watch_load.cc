#include "bench/load/watch_load.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/auth/authorizer.h"
#include "protos/intake/v1/intake_service.grpc.pb.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "tests/testing/process.h"
#include "tests/testing/screening.h"
#include "tools/aqueductctl/scripted_answers.h"

namespace aqueduct::bench {
namespace {

using referral::v1::QueueEvent;
using referral::v1::ReferralService;

// Portals get every state a screened person is from here; clinicians
// listing the queue get one.
const std::vector<std::string> kAllStates = {"NY", "NJ", "FL", "TX", "CA"};

// One crisis hand-off is due this often: each is an event every watching
// portal is sent.
constexpr absl::Duration kCrisisEvery = absl::Milliseconds(250);

// One portal's WatchQueue stream, reading every event; `on_event` (when
// set) sees each one as it arrives, on gRPC's thread.
class Portal final : public grpc::ClientReadReactor<QueueEvent> {
 public:
  using OnEvent = std::function<void(const QueueEvent&)>;
  Portal(ReferralService::Stub* stub, const std::string& token,
         OnEvent on_event)
      : on_event_(std::move(on_event)) {
    ctx_.AddMetadata("authorization", token);
    stub->async()->WatchQueue(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (event_.kind() == "watching") {
      absl::MutexLock lock(&mu_);
      watching_ = true;
    }
    if (on_event_) on_event_(event_);
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
    status_ = s;
  }
  bool watching() {
    absl::MutexLock lock(&mu_);
    return watching_ && !done_;
  }
  void Cancel() { ctx_.TryCancel(); }
  bool WaitDone(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&done_), d);
  }

 private:
  const OnEvent on_event_;
  grpc::ClientContext ctx_;
  referral::v1::WatchQueueRequest request_;
  QueueEvent event_;
  absl::Mutex mu_;
  bool watching_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// When each screening's case first reached the measuring portal.
class Arrivals {
 public:
  void Note(const QueueEvent& e) {
    if (e.referral().screening().empty()) return;
    absl::MutexLock lock(&mu_);
    arrived_.try_emplace(e.referral().screening(), absl::Now());
  }
  // An SSE frame from the gateway: its event's JSON names the screening.
  void NoteFrame(absl::string_view frame) {
    static constexpr absl::string_view kKey = "\"screening\":\"";
    const size_t at = frame.find(kKey);
    if (at == absl::string_view::npos) return;
    absl::string_view rest = frame.substr(at + kKey.size());
    const size_t end = rest.find('"');
    if (end == absl::string_view::npos || end == 0) return;
    absl::MutexLock lock(&mu_);
    arrived_.try_emplace(std::string(rest.substr(0, end)), absl::Now());
  }
  // The arrival of `screening`'s case, or nullopt after `within`.
  std::optional<absl::Time> Await(const std::string& screening,
                                  absl::Duration within) {
    absl::MutexLock lock(&mu_);
    auto here = [&] { return arrived_.contains(screening); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&here), within))
      return std::nullopt;
    return arrived_.at(screening);
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> arrived_ ABSL_GUARDED_BY(mu_);
};

// A loopback TCP connection to 127.0.0.1:`port`; -1 when it failed.
int ConnectLoopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The gateway's queue stream request, as a portal sends it.
std::string WatchRequest(const std::string& authorization) {
  return absl::StrCat(
      "GET /v1/referrals:watch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Accept: text/event-stream\r\nAuthorization: ",
      authorization, "\r\n\r\n");
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// One portal on the gateway's SSE stream, read by its own thread with
// blocking reads; `on_frame` sees each complete frame (text up to a blank
// line; chunk sizes of the chunked encoding may precede it).
class SsePortal {
 public:
  SsePortal(int port, const std::string& authorization,
            std::function<void(absl::string_view)> on_frame)
      : fd_(ConnectLoopback(port)) {
    if (fd_ < 0 || !SendAll(fd_, WatchRequest(authorization))) return;
    reader_ = std::thread([this, on_frame = std::move(on_frame)] {
      std::string text;
      char buf[16384];
      while (true) {
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) break;
        text.append(buf, static_cast<size_t>(n));
        if (!open_.load() && absl::StartsWith(text, "HTTP/1.1 200"))
          open_ = true;
        size_t end;
        while ((end = text.find("\n\n")) != std::string::npos) {
          on_frame(absl::string_view(text).substr(0, end));
          text.erase(0, end + 2);
        }
      }
      open_ = false;
    });
  }
  ~SsePortal() {
    // Shutdown ends the blocking read; the descriptor is closed only once
    // the reader is gone.
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    if (reader_.joinable()) reader_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  bool open() const { return open_.load(); }

 private:
  const int fd_;
  std::atomic<bool> open_{false};
  std::thread reader_;
};

std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  ctx->AddMetadata("authorization", token);
  return ctx;
}

// A crisis page's hand-off latencies: to the measuring gRPC portal, and
// (gateway phase) to the measuring SSE portal.
struct HandOff {
  double ms = 0;
  std::optional<double> sse_ms;
};

// One person's screening up to the page that carries a suicide-risk answer
// (PHQ-9 item 9, "nearly every day"); returns that page's hand-off latency
// (until `arrivals`, and `sse_arrivals` when set, have the case), or an
// error.
absl::StatusOr<HandOff> CrisisHandOff(intake::v1::IntakeService::Stub& intake,
                                      const std::string& user,
                                      const std::string& token,
                                      Arrivals& arrivals,
                                      Arrivals* sse_arrivals) {
  tools::Overrides answers = testing::AdultContext("NY");
  answers["phq9.9"] = "3";
  auto fail = [](const grpc::Status& s) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        s.error_message());
  };
  intake::v1::StartScreeningRequest start;
  start.set_parent("users/" + user);
  start.set_consent_version("c1");
  intake::v1::Screening screening;
  grpc::Status s =
      intake.StartScreening(Context(token).get(), start, &screening);
  if (!s.ok()) return fail(s);
  intake::v1::GetNextItemsRequest next_req;
  next_req.set_name(screening.name());
  intake::v1::NextItems next;
  s = intake.GetNextItems(Context(token).get(), next_req, &next);
  if (!s.ok()) return fail(s);
  for (int page = 0; page < 30 && !next.items().empty(); ++page) {
    intake::v1::SubmitAnswersRequest submit;
    submit.set_name(screening.name());
    submit.set_etag(next.etag());
    submit.set_request_id(absl::StrCat("p", page));
    bool crisis = false;
    for (const auto& ask : next.items()) {
      auto a = tools::ScriptedAnswer(ask.item(), answers);
      if (!a.ok()) continue;
      crisis |= ask.item().id() == "phq9.9";
      *submit.add_answers() = *a;
    }
    intake::v1::SubmitAnswersResponse submitted;
    const absl::Time sent = absl::Now();
    s = intake.SubmitAnswers(Context(token).get(), submit, &submitted);
    if (!s.ok()) return fail(s);
    if (crisis) {
      auto arrived = arrivals.Await(screening.name(), absl::Seconds(10));
      if (!arrived)
        return absl::DeadlineExceededError(
            "the early risk case reached no watching portal within 10 s");
      HandOff handoff{absl::ToDoubleMilliseconds(*arrived - sent), {}};
      if (sse_arrivals != nullptr) {
        auto on_sse = sse_arrivals->Await(screening.name(), absl::Seconds(10));
        if (!on_sse)
          return absl::DeadlineExceededError(
              "the early risk case reached no portal on the gateway within "
              "10 s");
        handoff.sse_ms = absl::ToDoubleMilliseconds(*on_sse - sent);
      }
      return handoff;
    }
    next.Swap(submitted.mutable_next());
  }
  return absl::NotFoundError("the flow never asked PHQ-9 item 9");
}

// A process's thread count and current resident set, from /proc.
void ReadProcess(pid_t pid, int64_t& threads, double& rss_mib) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view v = line;
    int64_t n = 0;
    if (absl::ConsumePrefix(&v, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &n))
      threads = n;
    if (absl::ConsumePrefix(&v, "VmRSS:") &&
        absl::SimpleAtoi(
            absl::StripSuffix(absl::StripAsciiWhitespace(v), " kB"), &n))
      rss_mib = n / 1024.0;
  }
}

// ListQueue closed loop for `duration` while one person after another
// submits a crisis page; the phase's figures.
WatchPhase RunPhase(const std::string& phase_name,
                    intake::v1::IntakeService::Stub& intake,
                    ReferralService::Stub& referral,
                    const testing::TestAuth& auth, Arrivals& arrivals,
                    Arrivals* sse_arrivals, pid_t referral_pid,
                    pid_t gateway_pid, double list_per_second,
                    absl::Duration duration) {
  WatchPhase phase;
  const double cpu_before = testing::CpuSeconds(referral_pid);
  const double gateway_cpu_before =
      gateway_pid > 0 ? testing::CpuSeconds(gateway_pid) : 0;
  absl::Mutex error_mu;
  auto note = [&](const std::string& what) {
    absl::MutexLock lock(&error_mu);
    if (phase.first_error.empty()) phase.first_error = what;
  };
  std::atomic<bool> stop{false};
  std::thread crisis([&] {
    const absl::Time began = absl::Now();
    for (int i = 0; !stop.load(); ++i) {
      absl::SleepFor(began + i * kCrisisEvery - absl::Now());
      const std::string user = absl::StrCat("crisis-", phase_name, "-", i);
      auto handoff = CrisisHandOff(
          intake, user, auth::BearerValue(auth.Token("patient", user)),
          arrivals, sse_arrivals);
      if (handoff.ok()) {
        ++phase.handoff.calls;
        phase.handoff.latencies_ms.push_back(handoff->ms);
        if (handoff->sse_ms) {
          ++phase.handoff_sse.calls;
          phase.handoff_sse.latencies_ms.push_back(*handoff->sse_ms);
        }
      } else {
        ++phase.handoff.errors;
        note(absl::StrCat("crisis hand-off: ", handoff.status().ToString()));
      }
    }
    phase.handoff.seconds = absl::ToDoubleSeconds(absl::Now() - began);
    phase.handoff_sse.seconds = phase.handoff.seconds;
    for (LoadResult* r : {&phase.handoff, &phase.handoff_sse})
      std::sort(r->latencies_ms.begin(), r->latencies_ms.end());
  });
  const std::string clinician =
      auth::BearerValue(auth.Token("clinician", "bench-clinician", {"NY"}));
  struct ListCall {
    grpc::ClientContext ctx;
    referral::v1::ListQueueRequest req;
    referral::v1::ListQueueResponse resp;
  };
  phase.list_queue = RunOpenLoop(
      list_per_second, duration, [&](int, std::function<void(bool)> done) {
        auto* call = new ListCall;
        call->ctx.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
        call->ctx.AddMetadata("authorization", clinician);
        call->req.set_page_size(50);
        referral.async()->ListQueue(
            &call->ctx, &call->req, &call->resp,
            [call, done, &note](grpc::Status s) {
              if (!s.ok())
                note(absl::StrCat("ListQueue: ", s.error_code(), " ",
                                  s.error_message()));
              done(s.ok());
              delete call;
            });
      });
  ReadProcess(referral_pid, phase.referral_threads, phase.referral_rss_mib);
  int64_t gateway_threads = 0;
  if (gateway_pid > 0)
    ReadProcess(gateway_pid, gateway_threads, phase.gateway_rss_mib);
  stop = true;
  crisis.join();
  phase.referral_cpu_seconds = testing::CpuSeconds(referral_pid) - cpu_before;
  if (gateway_pid > 0)
    phase.gateway_cpu_seconds =
        testing::CpuSeconds(gateway_pid) - gateway_cpu_before;
  return phase;
}

// Separate connections to referral, as portals from many places have
// (gRPC would otherwise share one between these channels).
std::vector<std::unique_ptr<ReferralService::Stub>> Connections(
    const std::string& address, int n) {
  std::vector<std::unique_ptr<ReferralService::Stub>> stubs;
  for (int c = 0; c < n; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(ReferralService::NewStub(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args)));
  }
  return stubs;
}

int Watching(std::vector<std::unique_ptr<Portal>>& portals) {
  return static_cast<int>(std::count_if(portals.begin(), portals.end(),
                                        [](auto& p) { return p->watching(); }));
}

std::atomic<bool> portals_stop{false};

// Sets the nice value of every thread of `pid` (setpriority on a process
// id moves its main thread only).
void Renice(pid_t pid, int nice) {
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/task"), ec)) {
    int tid = 0;
    if (absl::SimpleAtoi(task.path().filename().string(), &tid))
      (void)setpriority(PRIO_PROCESS, static_cast<id_t>(tid), nice);
  }
}

// Writes `watching` to `ready_file` when it changed since `written`.
void WriteReady(const std::string& ready_file, int watching, int& written) {
  if (watching == written) return;
  const std::string tmp = ready_file + ".tmp";
  std::ofstream(tmp) << watching << "\n";
  std::rename(tmp.c_str(), ready_file.c_str());
  written = watching;
}

int GrpcPortals(const std::string& referral_address, int watchers,
                const std::string& ready_file, const char* token) {
  auto stubs = Connections(referral_address, 16);
  std::vector<std::unique_ptr<Portal>> portals;
  for (int i = 0; i < watchers; ++i)
    portals.push_back(std::make_unique<Portal>(stubs[i % stubs.size()].get(),
                                               token, nullptr));
  int written = -1;
  while (!portals_stop) {
    WriteReady(ready_file, Watching(portals), written);
    absl::SleepFor(absl::Milliseconds(50));
  }
  for (auto& p : portals) p->Cancel();
  for (auto& p : portals) p->WaitDone(absl::Seconds(30));
  return 0;
}

// `watchers` connections to the gateway, each a queue stream, read and
// discarded by one epoll loop; a stream counts once its status line says
// 200 and until the gateway closes it.
int SsePortals(int port, int watchers, const std::string& ready_file,
               const char* token) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return 3;
  struct Stream {
    int fd = -1;
    bool open = false;
    bool ended = false;
  };
  std::vector<Stream> streams(static_cast<size_t>(watchers));
  const std::string request = WatchRequest(token);
  for (size_t i = 0; i < streams.size(); ++i) {
    Stream& st = streams[i];
    st.fd = ConnectLoopback(port);
    if (st.fd < 0 || !SendAll(st.fd, request)) {
      st.ended = true;
      continue;
    }
    (void)::fcntl(st.fd, F_SETFL, ::fcntl(st.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    (void)::epoll_ctl(ep, EPOLL_CTL_ADD, st.fd, &ev);
  }
  int written = -1;
  int watching = 0;
  std::vector<epoll_event> ready(256);
  char buf[65536];
  while (!portals_stop) {
    const int n =
        ::epoll_wait(ep, ready.data(), static_cast<int>(ready.size()), 50);
    for (int k = 0; k < n; ++k) {
      Stream& st = streams[ready[k].data.u64];
      while (!st.ended) {
        const ssize_t got = ::recv(st.fd, buf, sizeof buf, 0);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (got <= 0) {
          st.ended = true;
          if (st.open) --watching;
          (void)::epoll_ctl(ep, EPOLL_CTL_DEL, st.fd, nullptr);
          break;
        }
        if (!st.open &&
            absl::StartsWith(absl::string_view(buf, static_cast<size_t>(got)),
                             "HTTP/1.1 200")) {
          st.open = true;
          ++watching;
        }
      }
    }
    WriteReady(ready_file, watching, written);
  }
  for (Stream& st : streams)
    if (st.fd >= 0) ::close(st.fd);
  ::close(ep);
  return 0;
}

}  // namespace

int PortalsMain(const std::string& address, int watchers,
                const std::string& ready_file) {
  const char* token = std::getenv("AQUEDUCT_BENCH_PORTAL_TOKEN");
  if (token == nullptr) return 2;
  // The portals stand for other machines: on this one they take only the
  // CPU the measured processes leave (threads made later inherit it).
  (void)setpriority(PRIO_PROCESS, 0, 19);
  std::signal(SIGTERM, [](int) { portals_stop = true; });
  absl::string_view http = address;
  if (absl::ConsumePrefix(&http, "http://127.0.0.1:")) {
    int port = 0;
    if (!absl::SimpleAtoi(http, &port)) return 2;
    return SsePortals(port, watchers, ready_file, token);
  }
  return GrpcPortals(address, watchers, ready_file, token);
}

WatchFigure MeasureWatchers(const std::string& self, const std::string& dir,
                            const std::string& intake_address,
                            const std::string& referral_address,
                            pid_t referral_pid, const GatewayUnderTest& gateway,
                            const testing::TestAuth& auth, int watchers,
                            double list_per_second, absl::Duration duration) {
  WatchFigure figure;
  auto intake = intake::v1::IntakeService::NewStub(
      grpc::CreateChannel(intake_address, grpc::InsecureChannelCredentials()));
  auto referral = Connections(referral_address, 1);
  const std::string physician =
      auth::BearerValue(auth.Token("physician", "bench-portal", kAllStates));
  // The measuring portal watches in both phases, in this process.
  Arrivals arrivals;
  std::vector<std::unique_ptr<Portal>> measuring;
  measuring.push_back(std::make_unique<Portal>(
      referral[0].get(), physician,
      [&arrivals](const QueueEvent& e) { arrivals.Note(e); }));
  for (int i = 0; i < 200 && Watching(measuring) == 0; ++i)
    absl::SleepFor(absl::Milliseconds(50));

  figure.quiet = RunPhase("quiet", *intake, *referral[0], auth, arrivals,
                          nullptr, referral_pid, -1, list_per_second, duration);

  const std::string ready = dir + "/portals.ready";
  auto count = [&ready] {
    int n = 0;
    return absl::SimpleAtoi(
               absl::StripAsciiWhitespace(testing::ReadFile(ready)), &n)
               ? n
               : 0;
  };
  auto portals = testing::Subprocess::Start(
      {self, "--portals_of=" + referral_address,
       absl::StrCat("--watchers=", watchers), "--portals_ready=" + ready},
      dir + "/portals.log", {"AQUEDUCT_BENCH_PORTAL_TOKEN=" + physician});
  if (!portals.ok()) {
    figure.watched.first_error = portals.status().ToString();
    return figure;
  }
  for (int i = 0; i < 1200 && count() < watchers; ++i)
    absl::SleepFor(absl::Milliseconds(50));
  figure.watched =
      RunPhase("watched", *intake, *referral[0], auth, arrivals, nullptr,
               referral_pid, -1, list_per_second, duration);
  // Streams that ended during the phase (cut off, or refused) show here.
  figure.watchers_open = count();
  (*portals)->Signal(SIGTERM);
  (*portals)->Wait(absl::Seconds(60));

  if (gateway.http_port > 0) {
    // The same portals through the gateway: referral holds its one stream.
    Arrivals sse_arrivals;
    SsePortal sse_measuring(
        gateway.http_port, physician,
        [&sse_arrivals](absl::string_view f) { sse_arrivals.NoteFrame(f); });
    std::remove(ready.c_str());
    auto sse = testing::Subprocess::Start(
        {self,
         absl::StrCat("--portals_of=http://127.0.0.1:", gateway.http_port),
         absl::StrCat("--watchers=", watchers), "--portals_ready=" + ready},
        dir + "/sse-portals.log", {"AQUEDUCT_BENCH_PORTAL_TOKEN=" + physician});
    if (!sse.ok()) {
      figure.gateway.first_error = sse.status().ToString();
    } else {
      for (int i = 0; i < 1200 && (count() < watchers || !sse_measuring.open());
           ++i)
        absl::SleepFor(absl::Milliseconds(50));
      figure.gateway = RunPhase("gateway", *intake, *referral[0], auth,
                                arrivals, &sse_arrivals, referral_pid,
                                gateway.pid, list_per_second, duration);
      // Again with the gateway's threads at nice 19, as the portals: a
      // gateway on nodes of its own takes no core from referral.
      Renice(gateway.pid, 19);
      figure.gateway_apart = RunPhase(
          "gateway-apart", *intake, *referral[0], auth, arrivals, &sse_arrivals,
          referral_pid, gateway.pid, list_per_second, duration);
      Renice(gateway.pid, 0);
      figure.sse_watchers_open = count();
      (*sse)->Signal(SIGTERM);
      (*sse)->Wait(absl::Seconds(60));
    }
    // The unwatched phase again, last: the queue has grown since the
    // first one, and this shows what that alone changed.
    figure.quiet_after =
        RunPhase("quiet-after", *intake, *referral[0], auth, arrivals, nullptr,
                 referral_pid, -1, list_per_second, duration);
  }
  measuring[0]->Cancel();
  measuring[0]->WaitDone(absl::Seconds(30));
  return figure;
}

}  // namespace aqueduct::bench
