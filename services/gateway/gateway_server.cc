#include "services/gateway/gateway_server.h"

#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <deque>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/logging/logging.h"
#include "common/metrics/metrics.h"
#include "common/status/status_util.h"
#include "common/util/names.h"
#include "google/protobuf/dynamic_message.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "services/gateway/http_errors.h"
#include "services/gateway/queue_relay.h"

namespace aqueduct::gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
namespace pb = google::protobuf;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

namespace {

constexpr char kWatchQueue[] =
    "/aqueduct.referral.v1.ReferralService/WatchQueue";

std::string Str(beast::string_view s) {
  return std::string(s.data(), s.size());
}

// A client address's token bucket.
struct Bucket {
  double tokens = 0;
  absl::Time refilled;
};

struct StaticFile {
  std::string body;
  std::string content_type;
};

// Requests by RPC (a method name the protos define, "static" for the
// console and documents, "none" when no route matched) and HTTP status (a
// closed set): never a path, a user or a token.
void Record(const std::string& rpc, int status, absl::Duration took) {
  if (!metrics::Enabled()) return;
  static auto& requests =
      metrics::CounterFamily("aqueduct_gateway_requests_total",
                             "HTTP requests answered, by RPC and HTTP status");
  static auto& latency = metrics::HistogramFamily(
      "aqueduct_gateway_request_seconds",
      "Time from a request read to its answer, by RPC");
  requests.Add({{"rpc", rpc}, {"status", std::to_string(status)}}).Increment();
  latency.Add({{"rpc", rpc}}, metrics::LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(took));
}

void SetStreams(int n) {
  if (!metrics::Enabled()) return;
  static auto& streams = metrics::GaugeFamily(
      "aqueduct_gateway_queue_streams",
      "Portals' open queue event streams (Server-Sent Events)");
  streams.Add({}).Set(n);
}

// A portal's stream closed because it fell more than max_stream_backlog
// behind: many of these mean portals on slow links, or a gateway short of
// CPU.
void CountDropped() {
  if (!metrics::Enabled()) return;
  static auto& dropped = metrics::CounterFamily(
      "aqueduct_gateway_queue_streams_dropped_total",
      "Queue streams closed because their portal fell too far behind (it "
      "resumes with Last-Event-ID)");
  dropped.Add({}).Increment();
}

}  // namespace

absl::Duration RequestTimeout(absl::string_view header, absl::Duration cap) {
  header = absl::StripAsciiWhitespace(header);
  if (header.size() < 2) return cap;
  int64_t n;
  if (!absl::SimpleAtoi(header.substr(0, header.size() - 1), &n) || n <= 0)
    return cap;
  absl::Duration d;
  switch (header.back()) {
    case 'H':
      d = absl::Hours(n);
      break;
    case 'M':
      d = absl::Minutes(n);
      break;
    case 'S':
      d = absl::Seconds(n);
      break;
    case 'm':
      d = absl::Milliseconds(n);
      break;
    case 'u':
      d = absl::Microseconds(n);
      break;
    case 'n':
      d = absl::Nanoseconds(n);
      break;
    default:
      return cap;
  }
  return std::min(d, cap);
}

QueueRelay::Options RelayOptions(const GatewayConfig& config) {
  QueueRelay::Options options;
  options.max_replay_bytes =
      std::min(options.max_replay_bytes, config.max_stream_backlog / 2);
  return options;
}

class Gateway::Impl {
 public:
  Impl(GatewayConfig config, HttpRules rules,
       std::shared_ptr<const auth::Authorizer> authorizer, Upstreams upstreams)
      : config_(std::move(config)),
        rules_(std::move(rules)),
        authorizer_(std::move(authorizer)),
        upstreams_(std::move(upstreams)),
        work_(net::make_work_guard(ioc_)),
        acceptor_(ioc_),
        ssl_(ssl::context::tls_server) {
    for (const auto& [service, channel] : upstreams_.channels)
      stubs_[service] = std::make_unique<grpc::GenericStub>(channel);
  }

  absl::Status Init();
  void Run() {
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void Shutdown();
  int port() const { return port_; }

  // What a session asks of the gateway; all on the I/O thread.
  void Handle(Request req, const std::string& peer,
              std::function<void(Response)> reply,
              std::function<bool(const Request&, const auth::Identity&,
                                 referral::v1::WatchQueueRequest)>
                  open_stream);
  bool Allow(const std::string& peer);
  bool CorsOrigin(const std::string& origin) const {
    return std::find(config_.cors_origins.begin(), config_.cors_origins.end(),
                     origin) != config_.cors_origins.end();
  }
  void Decorate(const Request& req, Response& res, bool api) const;
  Response Error(const Request& req, const grpc::Status& status) const;
  bool CheckStillValid(const std::string& authorization) const {
    return authorizer_->Check(authorization, kWatchQueue, absl::Now()).ok();
  }

  // Declared before the I/O context: handlers it still holds when it is
  // destroyed (sessions) may touch them.
  const GatewayConfig config_;
  const HttpRules rules_;
  const std::shared_ptr<const auth::Authorizer> authorizer_;
  const Upstreams upstreams_;
  absl::flat_hash_map<std::string, std::unique_ptr<grpc::GenericStub>> stubs_;
  int port_ = 0;
  int connections_ = 0;
  int streams_ = 0;
  absl::flat_hash_map<std::string, Bucket> buckets_;
  absl::flat_hash_map<std::string, StaticFile> files_;
  std::unique_ptr<QueueRelay> relay_;
  bool stopped_ = false;  // on the I/O thread
  std::atomic<bool> shut_{false};
  // Calls to the services not yet completed: their callbacks use this
  // object, so Shutdown waits for them.
  std::atomic<int> inflight_{0};
  net::io_context ioc_{1};
  net::executor_work_guard<net::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  ssl::context ssl_;
  std::thread thread_;

 private:
  void Accept();
  void CallUnary(const Request& req, const Resolved& resolved,
                 absl::string_view query, std::function<void(Response)> reply);
};

namespace {

// A chunk of the chunked transfer coding: its size line; the data and
// "\r\n" follow.
std::string ChunkHead(size_t size) {
  return absl::StrCat(absl::Hex(size), "\r\n");
}

// A whole chunk, for a stream's own small writes (the keep-alive).
std::string Chunk(const std::string& data) {
  return absl::StrCat(ChunkHead(data.size()), data, "\r\n");
}

constexpr char kCrlf[] = "\r\n";

}  // namespace

// One client connection: requests in turn (HTTP/1.1 keep-alive), or, once a
// request opens the queue stream, that stream until either side ends it.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>>,
                public QueueSubscriber {
 public:
  Session(Stream stream, Gateway::Impl* gw, std::string peer)
      : stream_(std::move(stream)),
        gw_(gw),
        peer_(std::move(peer)),
        timer_(gw->ioc_) {
    ++gw_->connections_;
  }
  ~Session() override { --gw_->connections_; }

  void Run();  // per stream type: the TLS handshake first, or not

  // QueueSubscriber.
  const auth::Identity& identity() const override { return identity_; }
  const referral::v1::WatchQueueRequest& filters() const override {
    return filters_;
  }
  void Send(SseFramePtr frame) override {
    Pending p;
    p.head = ChunkHead(frame->size());
    p.frame = std::move(frame);
    Queue(std::move(p));
  }

  void Read() {
    parser_.emplace();
    parser_->body_limit(gw_->config_.max_body_bytes);
    parser_->header_limit(
        static_cast<std::uint32_t>(gw_->config_.max_header_bytes));
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::seconds(absl::ToInt64Seconds(gw_->config_.idle_timeout)));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
          self->OnRead(ec);
        });
  }

 private:
  void OnRead(beast::error_code ec) {
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      Request none;
      Write(gw_->Error(none,
                       ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
                           ec == http::error::body_limit ? "body" : "headers",
                           ": larger than this gateway accepts (",
                           ec == http::error::body_limit
                               ? gw_->config_.max_body_bytes
                               : gw_->config_.max_header_bytes,
                           " bytes)")))),
            /*close=*/true, 413);
      return;
    }
    if (ec) {
      Close();
      return;
    }
    Request req = parser_->release();
    const bool keep_alive = req.keep_alive();
    auto self = this->shared_from_this();
    gw_->Handle(
        std::move(req), peer_,
        [self, keep_alive](Response res) {
          self->Write(std::move(res), !keep_alive || self->gw_->stopped_);
        },
        [self](const Request& r, const auth::Identity& id,
               referral::v1::WatchQueueRequest filters) {
          return self->OpenStream(r, id, std::move(filters));
        });
  }

  void Write(Response res, bool close, int status_override = 0) {
    if (status_override != 0) res.result(status_override);
    res.keep_alive(!close);
    res.prepare_payload();
    auto sp = std::make_shared<Response>(std::move(res));
    http::async_write(stream_, *sp,
                      [self = this->shared_from_this(), sp, close](
                          beast::error_code ec, std::size_t) {
                        if (ec || close) {
                          self->Close();
                        } else {
                          self->Read();
                        }
                      });
  }

  // The queue stream: response head, then frames until the client goes,
  // its token lapses, it falls too far behind, or the gateway stops.
  bool OpenStream(const Request& req, const auth::Identity& id,
                  referral::v1::WatchQueueRequest filters) {
    if (gw_->streams_ >= gw_->config_.max_streams) return false;
    SetStreams(++gw_->streams_);
    streaming_ = true;
    identity_ = id;
    filters_ = std::move(filters);
    authorization_ = Str(req[http::field::authorization]);
    keep_ = this->shared_from_this();
    Response head{http::status::ok, 11};
    head.set(http::field::content_type, "text/event-stream; charset=utf-8");
    head.set(http::field::cache_control, "no-store");
    head.set(http::field::transfer_encoding, "chunked");
    gw_->Decorate(req, head, /*api=*/true);
    std::ostringstream raw;
    raw << "HTTP/1.1 200 OK\r\n";
    for (const auto& field : head)
      raw << field.name_string() << ": " << field.value() << "\r\n";
    raw << "\r\n";
    Queue(raw.str());
    beast::get_lowest_layer(stream_).expires_never();
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().set_option(
        net::socket_base::send_buffer_size(gw_->config_.stream_send_buffer),
        ignored);
    std::string last = Str(req["Last-Event-ID"]);
    if (last.empty()) last = filters_.cursor();
    gw_->relay_->Subscribe(this, last);
    Drain();
    Heartbeat();
    return true;
  }

  // Reads whatever the client sends on a stream, to learn when it leaves.
  void Drain() {
    stream_.async_read_some(
        net::buffer(drain_),
        [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
          if (ec) {
            self->Close();
          } else if (!self->closed_) {
            self->Drain();
          }
        });
  }

  void Heartbeat() {
    timer_.expires_after(
        std::chrono::seconds(absl::ToInt64Seconds(gw_->config_.heartbeat)));
    timer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (ec || self->closed_) return;
      if (!self->gw_->CheckStillValid(self->authorization_)) {
        self->Send(SharedSseFrame("", "error",
                                  StatusJson(absl::UnauthenticatedError(
                                      "the token expired: sign in again"))));
        self->EndStream();
        return;
      }
      self->Queue(Chunk(": keep-alive\n\n"));
      self->Heartbeat();
    });
  }

  void EndStream() {
    if (ending_) return;
    ending_ = true;
    Queue("0\r\n\r\n");  // the last chunk; closed once written
  }

  // What a stream has yet to write: bytes of its own (the response head, a
  // keep-alive, the last chunk), or a chunk around a shared event frame.
  struct Pending {
    std::string head;
    SseFramePtr frame;  // then "\r\n"
    size_t size() const {
      return head.size() + (frame ? frame->size() + 2 : 0);
    }
  };

  void Queue(std::string bytes) {
    Pending p;
    p.head = std::move(bytes);
    Queue(std::move(p));
  }

  void Queue(Pending p) {
    if (closed_ || dropping_) return;
    if (streaming_ && backlog_ + p.size() > gw_->config_.max_stream_backlog) {
      // Too slow to keep up: it reconnects with Last-Event-ID. Closed from
      // the I/O loop, not here: this may run inside the relay's delivery
      // loop, which Close (Unsubscribe) must not change under it.
      dropping_ = true;
      CountDropped();
      net::post(stream_.get_executor(),
                [self = this->shared_from_this()] { self->Close(); });
      return;
    }
    backlog_ += p.size();
    out_.push_back(std::move(p));
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (out_.empty()) {
      writing_ = false;
      if (ending_) Close();
      return;
    }
    writing_ = true;
    // The buffers written are out_.front()'s: it stays there, untouched,
    // until this handler runs (Close leaves out_ alone while a write is
    // pending).
    const Pending& p = out_.front();
    const std::array<net::const_buffer, 3> buffers = {
        net::buffer(p.head),
        p.frame ? net::buffer(*p.frame) : net::const_buffer(),
        net::buffer(kCrlf, p.frame ? 2 : 0)};
    net::async_write(
        stream_, buffers,
        [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
          self->writing_ = false;
          self->backlog_ -= self->out_.front().size();
          self->out_.pop_front();
          if (ec || self->closed_) {
            self->Close();
            return;
          }
          self->WriteNext();
        });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    if (streaming_) {
      gw_->relay_->Unsubscribe(this);
      SetStreams(--gw_->streams_);
    }
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(
        tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).close();
    if (!writing_) out_.clear();  // else the write's handler still reads it
    keep_.reset();                // the last reference may be this one
  }

  Stream stream_;
  Gateway::Impl* const gw_;
  const std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  net::steady_timer timer_;
  // The queue stream.
  bool streaming_ = false;
  bool writing_ = false;
  bool ending_ = false;
  bool closed_ = false;
  bool dropping_ = false;  // too far behind: closing
  size_t backlog_ = 0;
  std::deque<Pending> out_;
  std::array<char, 512> drain_;
  auth::Identity identity_;
  referral::v1::WatchQueueRequest filters_;
  std::string authorization_;
  std::shared_ptr<Session> keep_;  // held while streaming (the relay's
                                   // pointer is not an owner)
};

template <>
void Session<beast::tcp_stream>::Run() {
  Read();
}

template <>
void Session<beast::ssl_stream<beast::tcp_stream>>::Run() {
  beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(10));
  stream_.async_handshake(ssl::stream_base::server,
                          [self = shared_from_this()](beast::error_code ec) {
                            if (ec) {
                              self->Close();
                              return;
                            }
                            self->Read();
                          });
}

absl::Status Gateway::Impl::Init() {
  // Static files, read once.
  if (!config_.console_dir.empty()) {
    for (const auto& [name, type] :
         std::vector<std::pair<std::string, std::string>>{
             {"index.html", "text/html; charset=utf-8"},
             {"app.js", "text/javascript; charset=utf-8"},
             {"app.css", "text/css; charset=utf-8"}}) {
      std::ifstream in(config_.console_dir + "/" + name, std::ios::binary);
      if (!in) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--console_dir: cannot read ", config_.console_dir, "/", name));
      }
      std::stringstream body;
      body << in.rdbuf();
      files_["/console/" + (name == "index.html" ? "" : name)] = {body.str(),
                                                                  type};
    }
  }
  if (!config_.openapi_file.empty()) {
    std::ifstream in(config_.openapi_file, std::ios::binary);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("--openapi: cannot read ", config_.openapi_file));
    }
    std::stringstream body;
    body << in.rdbuf();
    files_["/openapi.json"] = {body.str(), "application/json"};
  }
  if (!config_.insecure_plaintext) {
    if (config_.cert_file.empty() || config_.key_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_cert and --tls_key: are required (or --insecure_plaintext "
          "for development)");
    }
    beast::error_code ec;
    ssl_.set_options(ssl::context::default_workarounds |
                     ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ssl_.use_certificate_chain_file(config_.cert_file, ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_cert: cannot use ", config_.cert_file, ": ", ec.message()));
    }
    ssl_.use_private_key_file(config_.key_file, ssl::context::pem, ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_key: cannot use ", config_.key_file, ": ", ec.message()));
    }
  }
  // The listener.
  const size_t colon = config_.listen.rfind(':');
  int port;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(config_.listen.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen: not host:port: ", config_.listen));
  }
  beast::error_code ec;
  auto address = net::ip::make_address(config_.listen.substr(0, colon), ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen: not an IP address: ", config_.listen));
  }
  tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "--listen: cannot listen on ", config_.listen, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  if (!config_.port_file.empty()) {
    std::ofstream(config_.port_file) << port_ << "\n";
  }
  // The queue stream, relayed.
  relay_ = std::make_unique<QueueRelay>(
      upstreams_.referral, upstreams_.own_token,
      [this](std::function<void()> f) { net::post(ioc_, std::move(f)); },
      [this](absl::Duration d, std::function<void()> f) {
        auto timer = std::make_shared<net::steady_timer>(
            ioc_, std::chrono::milliseconds(absl::ToInt64Milliseconds(d)));
        timer->async_wait([timer, f = std::move(f)](beast::error_code ec) {
          if (!ec) f();
        });
      },
      RelayOptions(config_));
  relay_->Start();
  Accept();
  return absl::OkStatus();
}

void Gateway::Impl::Accept() {
  acceptor_.async_accept(
      net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
        if (ec) {
          if (!stopped_) Accept();
          return;
        }
        if (connections_ >= config_.max_connections) {
          beast::error_code ignored;
          socket.close(ignored);
          Accept();
          return;
        }
        beast::error_code peer_ec;
        const auto remote = socket.remote_endpoint(peer_ec);
        std::string peer = peer_ec ? "?" : remote.address().to_string();
        if (config_.insecure_plaintext) {
          std::make_shared<Session<beast::tcp_stream>>(
              beast::tcp_stream(std::move(socket)), this, std::move(peer))
              ->Run();
        } else {
          std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
              beast::ssl_stream<beast::tcp_stream>(std::move(socket), ssl_),
              this, std::move(peer))
              ->Run();
        }
        Accept();
      });
}

void Gateway::Impl::Shutdown() {
  if (shut_.exchange(true)) return;
  net::post(ioc_, [this] {
    stopped_ = true;
    beast::error_code ignored;
    acceptor_.close(ignored);
  });
  if (relay_ != nullptr) relay_->Stop();
  // Every call has a deadline (at most --max_rpc_ms): wait for their
  // callbacks, which use this object.
  const absl::Time end = absl::Now() + config_.max_rpc + absl::Seconds(1);
  while (inflight_.load() > 0 && absl::Now() < end)
    absl::SleepFor(absl::Milliseconds(10));
  work_.reset();
  // Open streams end with the I/O thread.
  ioc_.stop();
  if (thread_.joinable()) thread_.join();
}

bool Gateway::Impl::Allow(const std::string& peer) {
  const absl::Time now = absl::Now();
  if (buckets_.size() > 100000) buckets_.clear();  // bounded memory
  auto [it, fresh] = buckets_.try_emplace(peer);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = config_.rate_burst;
  } else {
    b.tokens = std::min(config_.rate_burst,
                        b.tokens + absl::ToDoubleSeconds(now - b.refilled) *
                                       config_.rate_per_second);
  }
  b.refilled = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void Gateway::Impl::Decorate(const Request& req, Response& res,
                             bool api) const {
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
  if (!config_.insecure_plaintext) {
    res.set(http::field::strict_transport_security, "max-age=31536000");
  }
  if (api) res.set(http::field::cache_control, "no-store");
  const std::string origin = Str(req[http::field::origin]);
  if (!origin.empty() && CorsOrigin(origin)) {
    res.set(http::field::access_control_allow_origin, origin);
    res.set(http::field::vary, "Origin");
    res.set(http::field::access_control_expose_headers, "ETag, Retry-After");
  }
}

Response Gateway::Impl::Error(const Request& req,
                              const grpc::Status& status) const {
  Response res{static_cast<http::status>(HttpStatusFor(status.error_code())),
               11};
  res.set(http::field::content_type, "application/json");
  const int retry = RetryAfterSeconds(status);
  if (retry > 0) res.set(http::field::retry_after, std::to_string(retry));
  res.body() = StatusJson(status);
  Decorate(req, res, /*api=*/true);
  return res;
}

void Gateway::Impl::Handle(
    Request req, const std::string& peer, std::function<void(Response)> reply,
    std::function<bool(const Request&, const auth::Identity&,
                       referral::v1::WatchQueueRequest)>
        open_stream) {
  // Every answer is counted, by the RPC it resolved to.
  auto rpc = std::make_shared<std::string>("none");
  reply = [reply = std::move(reply), rpc, started = absl::Now()](Response res) {
    Record(*rpc, res.result_int(), absl::Now() - started);
    reply(std::move(res));
  };
  const std::string target = Str(req.target());
  const size_t q = target.find('?');
  const std::string path = target.substr(0, q);
  const std::string query = q == std::string::npos ? "" : target.substr(q + 1);
  const std::string method = Str(req.method_string());

  if (!Allow(peer)) {
    reply(Error(
        req,
        ToGrpcStatus(WithRetryDelay(
            absl::ResourceExhaustedError("too many requests from this address"),
            absl::Seconds(1)))));
    return;
  }
  // CORS preflight.
  if (req.method() == http::verb::options) {
    if (!CorsOrigin(Str(req[http::field::origin]))) {
      reply(Error(req, ToGrpcStatus(absl::PermissionDeniedError(
                           "origin: not one this gateway serves"))));
      return;
    }
    Response res{http::status::no_content, 11};
    Decorate(req, res, true);
    res.set(http::field::access_control_allow_methods,
            "GET, POST, PUT, PATCH, DELETE");
    res.set(http::field::access_control_allow_headers,
            "Authorization, Content-Type, Grpc-Timeout, If-Match, "
            "Last-Event-ID");
    res.set(http::field::access_control_max_age, "600");
    reply(std::move(res));
    return;
  }
  // Static files and probes.
  if (req.method() == http::verb::get && !absl::StartsWith(path, "/v1/")) {
    if (path == "/" || path == "/console") {
      Response res{http::status::found, 11};
      res.set(http::field::location, "/console/");
      Decorate(req, res, false);
      reply(std::move(res));
      return;
    }
    if (path == "/healthz") {
      Response res{http::status::ok, 11};
      res.set(http::field::content_type, "application/json");
      res.body() = absl::StrCat(
          "{\"status\":\"SERVING\",\"queueStream\":\"",
          relay_->connected() ? "following" : "reconnecting", "\"}");
      Decorate(req, res, true);
      reply(std::move(res));
      return;
    }
    auto it = files_.find(path);
    if (it != files_.end()) {
      *rpc = "static";
      Response res{http::status::ok, 11};
      res.set(http::field::content_type, it->second.content_type);
      res.set(http::field::cache_control, "no-cache");
      res.set("Content-Security-Policy",
              "default-src 'self'; script-src 'self'; style-src 'self'; "
              "connect-src 'self'; img-src 'self' data:; "
              "frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
      res.body() = it->second.body;
      Decorate(req, res, false);
      reply(std::move(res));
      return;
    }
  }
  std::vector<std::string> allowed;
  auto resolved = rules_.Resolve(method, path, &allowed);
  if (!resolved.ok()) {
    Response res = Error(req, ToGrpcStatus(resolved.status()));
    if (resolved.status().code() == absl::StatusCode::kUnimplemented) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, absl::StrJoin(allowed, ", "));
    }
    reply(std::move(res));
    return;
  }
  const std::string full_name = resolved->rule->full_name();
  *rpc = resolved->rule->method->name();
  // The caller, checked here with the services' own policy.
  auth::Rejection why = auth::Rejection::kMissing;
  auto identity = authorizer_->Check(Str(req[http::field::authorization]),
                                     full_name, absl::Now(), &why);
  if (!identity.ok()) {
    log::Info(
        "gateway: call refused",
        {{"rpc", resolved->rule->method->name()},
         {"code",
          std::string(absl::StatusCodeToString(identity.status().code()))},
         {"reason",
          identity.status().code() == absl::StatusCode::kUnauthenticated
              ? std::string(auth::RejectionName(why))
              : std::string("policy")}});
    reply(Error(req, ToGrpcStatus(identity.status())));
    return;
  }
  if (identity->role == auth::Role::kService) {
    reply(Error(req, ToGrpcStatus(absl::PermissionDeniedError(
                         "service identities do not call through the HTTP "
                         "gateway"))));
    return;
  }
  if (resolved->rule->server_streaming()) {
    if (full_name != kWatchQueue) {
      reply(Error(req, ToGrpcStatus(absl::UnimplementedError(
                           "this stream is not served over HTTP"))));
      return;
    }
    referral::v1::WatchQueueRequest filters;
    if (absl::Status s = BuildRequest(*resolved, query, req.body(), &filters);
        !s.ok()) {
      reply(Error(req, ToGrpcStatus(s)));
      return;
    }
    for (int i = 0; i < filters.location_states_size(); ++i) {
      if (absl::Status s =
              ValidateStateCode(filters.location_states(i),
                                absl::StrCat("location_states[", i, "]"));
          !s.ok()) {
        reply(Error(req, ToGrpcStatus(s)));
        return;
      }
    }
    if (!open_stream(req, *identity, std::move(filters))) {
      reply(Error(req, ToGrpcStatus(WithRetryDelay(
                           absl::UnavailableError(
                               "this gateway holds as many queue streams as "
                               "it may: try again shortly"),
                           absl::Seconds(5)))));
    }
    return;
  }
  CallUnary(req, *resolved, query, std::move(reply));
}

void Gateway::Impl::CallUnary(const Request& req, const Resolved& resolved,
                              absl::string_view query,
                              std::function<void(Response)> reply) {
  const pb::MethodDescriptor* method = resolved.rule->method;
  auto stub = stubs_.find(method->service()->full_name());
  if (stub == stubs_.end()) {
    reply(Error(req, ToGrpcStatus(absl::UnimplementedError(
                         "this gateway does not reach that service"))));
    return;
  }
  std::unique_ptr<pb::Message> request(pb::MessageFactory::generated_factory()
                                           ->GetPrototype(method->input_type())
                                           ->New());
  if (absl::Status s = BuildRequest(resolved, query, req.body(), request.get());
      !s.ok()) {
    reply(Error(req, ToGrpcStatus(s)));
    return;
  }
  // If-Match names the etag a write expects, as the body's etag would.
  const pb::FieldDescriptor* etag_field =
      method->input_type()->FindFieldByName("etag");
  const std::string if_match = Str(req[http::field::if_match]);
  if (etag_field != nullptr &&
      etag_field->type() == pb::FieldDescriptor::TYPE_STRING &&
      !if_match.empty() &&
      request->GetReflection()->GetString(*request, etag_field).empty()) {
    request->GetReflection()->SetString(
        request.get(), etag_field,
        std::string(
            absl::StripSuffix(absl::StripPrefix(if_match, "\""), "\"")));
  }
  struct Call {
    grpc::ClientContext context;
    grpc::ByteBuffer request;
    grpc::ByteBuffer response;
  };
  auto call = std::make_shared<Call>();
  const std::string bytes = request->SerializeAsString();
  grpc::Slice slice(bytes);
  call->request = grpc::ByteBuffer(&slice, 1);
  call->context.set_deadline(absl::ToChronoTime(
      absl::Now() + RequestTimeout(Str(req["Grpc-Timeout"]), config_.max_rpc)));
  call->context.AddMetadata("authorization",
                            Str(req[http::field::authorization]));
  const std::string traceparent = Str(req["traceparent"]);
  if (!traceparent.empty() && traceparent.size() <= 64)
    call->context.AddMetadata("traceparent", traceparent);
  const absl::Time started = absl::Now();
  inflight_.fetch_add(1);
  auto shared_req = std::make_shared<Request>();
  shared_req->set(http::field::origin, Str(req[http::field::origin]));
  stub->second->UnaryCall(
      &call->context, resolved.rule->full_name(), grpc::StubOptions(),
      &call->request, &call->response,
      [this, call, method, shared_req, started,
       reply = std::move(reply)](grpc::Status status) mutable {
        // On a gRPC thread: decode here, answer on the I/O thread.
        Response res;
        if (status.ok()) {
          std::unique_ptr<pb::Message> out(
              pb::MessageFactory::generated_factory()
                  ->GetPrototype(method->output_type())
                  ->New());
          std::vector<grpc::Slice> slices;
          std::string wire;
          if (call->response.Dump(&slices).ok()) {
            for (const auto& s : slices)
              wire.append(reinterpret_cast<const char*>(s.begin()), s.size());
          }
          if (!out->ParseFromString(wire)) {
            status = grpc::Status(grpc::StatusCode::INTERNAL,
                                  "the service's reply did not decode");
          } else {
            res = Response{http::status::ok, 11};
            res.set(http::field::content_type, "application/json");
            res.body() = ToJson(*out);
            const pb::FieldDescriptor* etag =
                method->output_type()->FindFieldByName("etag");
            if (etag != nullptr &&
                etag->type() == pb::FieldDescriptor::TYPE_STRING) {
              const std::string value =
                  out->GetReflection()->GetString(*out, etag);
              if (!value.empty())
                res.set(http::field::etag, absl::StrCat("\"", value, "\""));
            }
            Decorate(*shared_req, res, true);
          }
        }
        if (!status.ok()) {
          res = Error(*shared_req, status);
          if (HttpStatusFor(status.error_code()) >= 500) {
            log::Warn(
                "gateway: call failed",
                {{"rpc", method->name()},
                 {"code", static_cast<int>(status.error_code())},
                 {"ms", absl::ToInt64Milliseconds(absl::Now() - started)}});
          }
        }
        net::post(ioc_,
                  [reply = std::move(reply), res = std::move(res)]() mutable {
                    reply(std::move(res));
                  });
        inflight_.fetch_sub(1);  // last: Shutdown may destroy this now
      });
}

Gateway::Gateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Gateway::~Gateway() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Gateway>> Gateway::Start(
    GatewayConfig config, HttpRules rules,
    std::shared_ptr<const auth::Authorizer> authorizer, Upstreams upstreams) {
  auto impl =
      std::make_unique<Impl>(std::move(config), std::move(rules),
                             std::move(authorizer), std::move(upstreams));
  if (absl::Status s = impl->Init(); !s.ok()) return s;
  impl->Run();
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

int Gateway::port() const { return impl_->port(); }

void Gateway::Shutdown() {
  if (impl_ != nullptr) impl_->Shutdown();
}

}  // namespace aqueduct::gateway
