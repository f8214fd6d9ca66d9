// End to end over HTTP: the gateway binary in front of the three real
// service binaries and a real redis-server on loopback, called as a portal
// or a web app would, with JSON and Server-Sent Events written from the
// HTTP mapping alone. The clinician console in a real browser is
// tests/gateway/console.cjs, run from here.

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/server/health_client.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "protos/intake/v1/intake_service.pb.h"
#include "protos/referral/v1/referral_service.pb.h"
#include "tests/testing/auth.h"
#include "tests/testing/process.h"
#include "tests/testing/screening.h"
#include "tools/aqueductctl/scripted_answers.h"

namespace aqueduct {
namespace {

namespace t = ::aqueduct::testing;
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using ::testing::HasSubstr;
using ::testing::Not;

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
};

// One HTTP/1.1 request on its own connection.
HttpReply Call(int port, http::verb verb, const std::string& target,
               const std::map<std::string, std::string>& headers = {},
               const std::string& body = "") {
  HttpReply out;
  try {
    net::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.expires_after(std::chrono::seconds(15));
    stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"),
                                 static_cast<unsigned short>(port)));
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.set(k, v);
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(16 << 20);
    http::read(stream, buffer, parser);
    auto res = parser.release();
    out.status = res.result_int();
    for (const auto& f : res)
      out.headers[std::string(f.name_string())] = std::string(f.value());
    out.body = res.body();
  } catch (const std::exception& e) {
    out.status = -1;
    out.body = e.what();
  }
  return out;
}

// Connects `socket` to the gateway on `port` with a receive buffer of
// `receive_buffer` bytes (set before the connection, so the window is
// sized by it) and sends the queue stream request for `target`.
void OpenQueueStream(tcp::socket& socket, int port, const std::string& target,
                     const std::map<std::string, std::string>& headers,
                     int receive_buffer) {
  socket.open(tcp::v4());
  socket.set_option(net::socket_base::receive_buffer_size(receive_buffer));
  socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"),
                               static_cast<unsigned short>(port)));
  std::string raw = absl::StrCat("GET ", target,
                                 " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 "Accept: text/event-stream\r\n");
  for (const auto& [k, v] : headers) absl::StrAppend(&raw, k, ": ", v, "\r\n");
  raw += "\r\n";
  net::write(socket, net::buffer(raw));
}

// A Server-Sent Events stream read in the background.
class SseStream {
 public:
  SseStream(int port, const std::string& target,
            std::map<std::string, std::string> headers)
      : stream_(ioc_) {
    // A receive buffer the kernel does not shrink to a slow reader's pace:
    // under a sanitizer this reader is slow, and a gateway that finds it
    // far behind drops it, as it should, which is not what most tests are
    // about.
    OpenQueueStream(stream_.socket(), port, target, headers, 4 << 20);
    reader_ = std::thread([this] {
      char buf[65536];
      beast::error_code ec;
      while (true) {
        const size_t n = stream_.socket().read_some(net::buffer(buf), ec);
        if (ec) break;
        absl::MutexLock lock(&mu_);
        text_.append(buf, n);
      }
      absl::MutexLock lock(&mu_);
      ended_ = true;
    });
  }
  ~SseStream() {
    // Shutdown ends the reader's blocking read; the socket is closed only
    // once the reader is gone (closing it under the read is a race).
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    reader_.join();
    stream_.socket().close(ec);
  }
  // Waits until the text received holds `what`.
  bool WaitFor(const std::string& what,
               absl::Duration timeout = absl::Seconds(10)) {
    struct Args {
      const std::string* text;
      const std::string* what;
    } args{&text_, &what};
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(
        absl::Condition(
            +[](Args* a) { return absl::StrContains(*a->text, *a->what); },
            &args),
        timeout);
  }
  std::string text() {
    absl::MutexLock lock(&mu_);
    return text_;
  }
  bool ended() {
    absl::MutexLock lock(&mu_);
    return ended_;
  }
  // The id of the last frame received ("" when none).
  std::string LastId() {
    const std::string all = text();
    const size_t at = all.rfind("\nid: ");
    const size_t first = all.find("id: ");
    size_t start = at != std::string::npos      ? at + 5
                   : first != std::string::npos ? first + 4
                                                : std::string::npos;
    if (start == std::string::npos) return "";
    return all.substr(start, all.find('\n', start) - start);
  }

 private:
  net::io_context ioc_;
  beast::tcp_stream stream_;
  std::thread reader_;
  absl::Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

// A portal that opens the queue stream and then reads nothing, with the
// smallest receive buffer the kernel allows, until ReadToEnd.
class StalledPortal {
 public:
  StalledPortal(int port, const std::string& target,
                const std::map<std::string, std::string>& headers)
      : socket_(ioc_) {
    OpenQueueStream(socket_, port, target, headers, 1024);
  }
  // Reads what the gateway sent until it closed the connection (true) or
  // nothing came for `quiet` (false); `text` gets what was read.
  bool ReadToEnd(std::string& text, absl::Duration quiet) {
    const timeval tv = absl::ToTimeval(quiet);
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv,
                 sizeof tv);
    char buf[65536];
    while (true) {
      const ssize_t n = ::recv(socket_.native_handle(), buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
      text.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  net::io_context ioc_;
  tcp::socket socket_;
};

// The ids of the complete frames in an SSE text, in order.
std::vector<std::string> FrameIds(const std::string& text) {
  std::vector<std::string> ids;
  size_t at = 0;
  while ((at = text.find("id: ", at)) != std::string::npos) {
    const size_t line_end = text.find('\n', at);
    const size_t frame_end = text.find("\n\n", at);
    if (line_end == std::string::npos || frame_end == std::string::npos) break;
    if (at == 0 || text[at - 1] == '\n')
      ids.push_back(text.substr(at + 4, line_end - at - 4));
    at = line_end;
  }
  return ids;
}

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(m, &out).ok());
  return out;
}
template <typename M>
M FromJson(const std::string& json) {
  M m;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto s = google::protobuf::util::JsonStringToMessage(json, &m, options);
  EXPECT_TRUE(s.ok()) << s.message() << "\n" << json;
  return m;
}

class GatewayE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto redis = t::RedisServer::Start(dir_.path());
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = std::move(*redis);
    scoring_ = StartService(
        "scoring", "services/scoring/aqueduct-scoring",
        {"--catalog=" + t::SourcePath("data/catalog/catalog.textproto"),
         "--rulesets=" + t::SourcePath("data/rulesets")});
    referral_ = StartService("referral", "services/referral/aqueduct-referral",
                             {"--redis=" + redis_->address()});
    intake_ = StartService(
        "intake", "services/intake/aqueduct-intake",
        {"--redis=" + redis_->address(), "--scoring=" + scoring_.address,
         "--referral=" + referral_.address, "--handoff_retry_ms=300",
         "--service_key=" + Auth().private_key_file(),
         std::string("--service_key_id=") + t::TestAuth::kKeyId});
    for (auto* s : {&scoring_, &referral_, &intake_}) {
      ASSERT_TRUE(WaitServing(s->address)) << t::ReadFile(s->log);
    }
    StartGateway();
  }

  void StartGateway(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "--intake=" + intake_.address,
        "--referral=" + referral_.address,
        "--scoring=" + scoring_.address,
        "--auth_keys=" + Auth().keys_dir(),
        "--insecure_plaintext",
        "--service_key=" + Auth().private_key_file(),
        std::string("--service_key_id=") + t::TestAuth::kKeyId,
        "--console_dir=" + t::SourcePath("data/console"),
        "--openapi=" + t::SourcePath("data/openapi/aqueduct.swagger.json"),
        "--cors_origins=https://portal.example.org",
        "--rate_per_second=1000",
        "--rate_burst=1000",
        "--metrics_listen=127.0.0.1:0",
        "--metrics_port_file=" + dir_.path() + "/gateway.metrics_port"};
    for (auto& a : extra) args.push_back(a);
    auto g = t::StartService(dir_.path(), "gateway",
                             "services/gateway/aqueduct-gateway", args, {});
    ASSERT_TRUE(g.ok()) << g.status();
    gateway_ = std::move(*g);
    ASSERT_TRUE(absl::SimpleAtoi(
        gateway_.address.substr(gateway_.address.rfind(':') + 1), &port_));
    // Ready when the queue stream is followed.
    const absl::Time end = absl::Now() + absl::Seconds(15);
    while (absl::Now() < end &&
           !absl::StrContains(Call(port_, http::verb::get, "/healthz").body,
                              "following")) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  t::ServiceProcess StartService(const std::string& name,
                                 const std::string& binary,
                                 std::vector<std::string> args) {
    args.push_back("--auth_keys=" + Auth().keys_dir());
    args.push_back("--insecure_plaintext");
    auto s =
        t::StartService(dir_.path(), name, binary, args, {t::DataKeysEnv()});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : t::ServiceProcess{};
  }

  static bool WaitServing(const std::string& address) {
    auto channel =
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    const absl::Time end = absl::Now() + absl::Seconds(15);
    while (absl::Now() < end) {
      auto h = server::CheckHealth(channel, "", absl::Now() + absl::Seconds(1));
      if (h.ok() && *h) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  static t::TestAuth& Auth() {
    static auto* auth = new t::TestAuth();
    return *auth;
  }
  static std::map<std::string, std::string> Patient(const std::string& user) {
    return {{"Authorization", "Bearer " + Auth().Token("patient", user)}};
  }
  static std::map<std::string, std::string> Clinician(
      const std::string& who, const std::string& role,
      const std::vector<std::string>& states) {
    return {{"Authorization", "Bearer " + Auth().Token(role, who, states)}};
  }

  // A whole screening over HTTP as a web app would take it: the items each
  // page asks, answered from `overrides` (PHQ-9 item 9 > 0: crisis).
  // Returns the completion reply's JSON.
  std::string Screen(const std::string& user, const tools::Overrides& extra,
                     const std::string& state = "NJ") {
    tools::Overrides overrides = t::AdultContext(state);
    for (const auto& [k, v] : extra) overrides[k] = v;
    HttpReply started =
        Call(port_, http::verb::post, "/v1/users/" + user + "/screenings",
             Patient(user), R"({"requestId":"start-1","consentVersion":"c1"})");
    EXPECT_EQ(started.status, 200) << started.body;
    auto screening = FromJson<intake::v1::Screening>(started.body);
    const std::string path = "/v1/" + screening.name();
    std::string etag = screening.etag();
    for (int page = 0; page < 30; ++page) {
      HttpReply next =
          Call(port_, http::verb::get, path + ":nextItems", Patient(user));
      EXPECT_EQ(next.status, 200) << next.body;
      auto items = FromJson<intake::v1::NextItems>(next.body);
      if (items.items().empty()) break;
      intake::v1::SubmitAnswersRequest submit;
      submit.set_request_id("page-" + std::to_string(page));
      for (const auto& ask : items.items()) {
        auto a = tools::ScriptedAnswer(ask.item(), overrides);
        EXPECT_TRUE(a.ok()) << a.status();
        if (a.ok()) *submit.add_answers() = *a;
      }
      // The etag as an HTTP precondition, not in the body.
      auto headers = Patient(user);
      headers["If-Match"] = "\"" + items.etag() + "\"";
      HttpReply submitted =
          Call(port_, http::verb::post, path + ":submitAnswers", headers,
               Json(submit));
      EXPECT_EQ(submitted.status, 200) << submitted.body;
      etag = FromJson<intake::v1::SubmitAnswersResponse>(submitted.body)
                 .screening()
                 .etag();
    }
    HttpReply done = Call(
        port_, http::verb::post, path + ":complete", Patient(user),
        absl::StrCat(R"({"requestId":"complete-1","etag":")", etag, "\"}"));
    EXPECT_EQ(done.status, 200) << done.body;
    return done.body;
  }

  t::TempDir dir_;
  std::unique_ptr<t::RedisServer> redis_;
  t::ServiceProcess scoring_, referral_, intake_, gateway_;
  int port_ = 0;
};

const tools::Overrides kCrisis = {{"phq9.1", "1"},
                                  {"phq9.2", "1"},
                                  {"phq9.4", "1"},
                                  {"phq9.9", "1"},
                                  {"phq9.10", "1"}};

TEST_F(GatewayE2eTest, AScreeningTakenOverHttpRoutesAsOverGrpc) {
  const std::string done = Screen("web1", kCrisis);
  // The reply is a CompleteScreeningResponse in canonical JSON.
  FromJson<intake::v1::CompleteScreeningResponse>(done);
  // Crisis resources at once, from the score itself.
  EXPECT_THAT(done, HasSubstr("988"));
  // The same call again (same request id): the same reply, nothing twice.
  HttpReply screens =
      Call(port_, http::verb::get, "/v1/users/web1/results", Patient("web1"));
  ASSERT_EQ(screens.status, 200) << screens.body;
  auto results = FromJson<intake::v1::ListMyResultsResponse>(screens.body);
  ASSERT_EQ(results.results_size(), 1);
  const std::string name = results.results(0).name();
  HttpReply one =
      Call(port_, http::verb::get, "/v1/" + name + "/result", Patient("web1"));
  EXPECT_EQ(one.status, 200) << one.body;
  // The person's own referral, in plain language.
  HttpReply mine = Call(port_, http::verb::get, "/v1/" + name + "/referral",
                        Patient("web1"));
  EXPECT_EQ(mine.status, 200) << mine.body;
  EXPECT_THAT(mine.body, HasSubstr("\"pendingReview\":true"));
  // The person's own screening as a FHIR R4 Bundle.
  HttpReply fhir =
      Call(port_, http::verb::get, "/v1/" + name + ":fhir", Patient("web1"));
  EXPECT_EQ(fhir.status, 200) << fhir.body;
  EXPECT_THAT(fhir.body, HasSubstr("resourceType"));
  // The rules' wording, for a clinician's portal (from scoring).
  HttpReply rulesets = Call(port_, http::verb::get, "/v1/rulesets",
                            Clinician("cl-nj", "clinician", {"NJ"}));
  EXPECT_EQ(rulesets.status, 200) << rulesets.body.substr(0, 300);
  EXPECT_THAT(rulesets.body, HasSubstr("PHQ-9 item 9 above 0"));
  // Another person's: NOT_FOUND, as over gRPC.
  HttpReply theirs =
      Call(port_, http::verb::get, "/v1/" + name + "/result", Patient("web2"));
  EXPECT_EQ(theirs.status, 404) << theirs.body;
  EXPECT_THAT(theirs.body, HasSubstr("\"code\":5"));
}

TEST_F(GatewayE2eTest, ErrorsAreGoogleRpcStatusWithTheirHttpCodes) {
  // No token.
  HttpReply none = Call(port_, http::verb::get, "/v1/referrals");
  EXPECT_EQ(none.status, 401);
  EXPECT_THAT(none.body, HasSubstr("\"code\":16"));
  // A person may not read the queue.
  HttpReply patient =
      Call(port_, http::verb::get, "/v1/referrals", Patient("web1"));
  EXPECT_EQ(patient.status, 403);
  EXPECT_THAT(patient.body, HasSubstr("\"code\":7"));
  // The gateway's own service identity is not for HTTP callers.
  HttpReply service =
      Call(port_, http::verb::get, "/v1/referrals",
           {{"Authorization", "Bearer " + Auth().Token("service", "gateway")}});
  EXPECT_EQ(service.status, 403) << service.body;
  // Bad JSON and unknown fields name what is wrong; nothing is started.
  HttpReply bad = Call(port_, http::verb::post, "/v1/users/web1/screenings",
                       Patient("web1"), R"({"consentVersion": )");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("body: "));
  HttpReply unknown = Call(port_, http::verb::post, "/v1/users/web1/screenings",
                           Patient("web1"), R"({"consentVersoin":"c1"})");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_THAT(unknown.body, HasSubstr("consentVersoin"));
  // The service's own validation, with its BadRequest detail.
  HttpReply missing = Call(port_, http::verb::post, "/v1/users/web1/screenings",
                           Patient("web1"), R"({"requestId":"r1"})");
  EXPECT_EQ(missing.status, 400);
  EXPECT_THAT(missing.body, HasSubstr("google.rpc.BadRequest"));
  EXPECT_THAT(missing.body, HasSubstr("consent_version"));
  HttpReply listed =
      Call(port_, http::verb::get, "/v1/users/web1/results", Patient("web1"));
  EXPECT_EQ(listed.status, 200);
  EXPECT_THAT(listed.body, Not(HasSubstr("users/web1/screenings/")));
  // Unknown query parameters and bad enum values.
  auto nj = Clinician("cl-nj", "clinician", {"NJ"});
  HttpReply query =
      Call(port_, http::verb::get, "/v1/referrals?routes=NOT_A_ROUTE", nj);
  EXPECT_EQ(query.status, 400);
  EXPECT_THAT(query.body, HasSubstr("query parameter routes"));
  HttpReply filtered =
      Call(port_, http::verb::get,
           "/v1/referrals?routes=CRISIS_URGENT&routes=THERAPY&pageSize=5", nj);
  EXPECT_EQ(filtered.status, 200) << filtered.body;
  // Method and path.
  HttpReply wrong_method =
      Call(port_, http::verb::delete_, "/v1/referrals", nj);
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.headers["Allow"], "GET");
  HttpReply nowhere = Call(port_, http::verb::get, "/v1/nothing/here", nj);
  EXPECT_EQ(nowhere.status, 404);
  EXPECT_THAT(nowhere.body, HasSubstr("\"code\":5"));
  // Too large a body: refused before any service sees it.
  HttpReply huge = Call(port_, http::verb::post, "/v1/users/web1/screenings",
                        Patient("web1"), std::string(200 << 10, ' ') + "{}");
  EXPECT_EQ(huge.status, 413);
  // A stale etag: 409 with the current etag in an ErrorInfo.
  HttpReply started =
      Call(port_, http::verb::post, "/v1/users/web3/screenings",
           Patient("web3"), R"({"requestId":"s1","consentVersion":"c1"})");
  ASSERT_EQ(started.status, 200) << started.body;
  auto screening = FromJson<intake::v1::Screening>(started.body);
  EXPECT_EQ(started.headers["ETag"], "\"" + screening.etag() + "\"");
  // The first page, answered once with its etag, then again with the same
  // (now stale) etag.
  HttpReply next =
      Call(port_, http::verb::get, "/v1/" + screening.name() + ":nextItems",
           Patient("web3"));
  ASSERT_EQ(next.status, 200) << next.body;
  auto items = FromJson<intake::v1::NextItems>(next.body);
  ASSERT_GT(items.items_size(), 0);
  intake::v1::SubmitAnswersRequest page;
  page.set_etag(items.etag());
  for (const auto& ask : items.items()) {
    auto a = tools::ScriptedAnswer(ask.item(), t::AdultContext("NJ"));
    ASSERT_TRUE(a.ok()) << a.status();
    *page.add_answers() = *a;
  }
  page.set_request_id("p1");
  HttpReply first = Call(port_, http::verb::post,
                         "/v1/" + screening.name() + ":submitAnswers",
                         Patient("web3"), Json(page));
  ASSERT_EQ(first.status, 200) << first.body;
  page.set_request_id("p2");
  HttpReply stale = Call(port_, http::verb::post,
                         "/v1/" + screening.name() + ":submitAnswers",
                         Patient("web3"), Json(page));
  EXPECT_EQ(stale.status, 409) << stale.body;
  EXPECT_THAT(stale.body, HasSubstr("ETAG_MISMATCH")) << stale.body;
  // A start retried with the same request id: the same screening.
  HttpReply again =
      Call(port_, http::verb::post, "/v1/users/web3/screenings",
           Patient("web3"), R"({"requestId":"s1","consentVersion":"c1"})");
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(FromJson<intake::v1::Screening>(again.body).name(),
            screening.name());
  // Counted by RPC and status, never by path or person.
  const int metrics_port = t::WaitForPortFile(
      dir_.path() + "/gateway.metrics_port", absl::Seconds(5));
  ASSERT_GT(metrics_port, 0);
  const std::string metrics =
      Call(metrics_port, http::verb::get, "/metrics").body;
  EXPECT_THAT(
      metrics,
      HasSubstr(
          "aqueduct_gateway_requests_total{rpc=\"ListQueue\",status=\"403\"}"));
  EXPECT_THAT(metrics, HasSubstr("aqueduct_gateway_requests_total{rpc="
                                 "\"SubmitAnswers\",status=\"409\"}"));
  EXPECT_THAT(metrics, HasSubstr("aqueduct_gateway_queue_stream_up 1"));
  EXPECT_THAT(metrics, Not(HasSubstr("web3")));
  // Nothing a request held reached the gateway's log.
  const std::string log = t::ReadFile(gateway_.log);
  EXPECT_THAT(log, Not(HasSubstr("web3")));
  EXPECT_THAT(log, Not(HasSubstr("Bearer")));
  EXPECT_THAT(log, Not(HasSubstr("consentVersoin")));
}

TEST_F(GatewayE2eTest, CorsOnlyForConfiguredOrigins) {
  HttpReply ok = Call(port_, http::verb::options, "/v1/referrals",
                      {{"Origin", "https://portal.example.org"},
                       {"Access-Control-Request-Method", "GET"}});
  EXPECT_EQ(ok.status, 204);
  EXPECT_EQ(ok.headers["Access-Control-Allow-Origin"],
            "https://portal.example.org");
  EXPECT_THAT(ok.headers["Access-Control-Allow-Headers"],
              HasSubstr("Authorization"));
  HttpReply other = Call(port_, http::verb::options, "/v1/referrals",
                         {{"Origin", "https://evil.example.com"},
                          {"Access-Control-Request-Method", "GET"}});
  EXPECT_EQ(other.status, 403);
  EXPECT_EQ(other.headers.count("Access-Control-Allow-Origin"), 0u);
  auto headers = Clinician("cl-nj", "clinician", {"NJ"});
  headers["Origin"] = "https://evil.example.com";
  HttpReply get = Call(port_, http::verb::get, "/v1/referrals", headers);
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.headers.count("Access-Control-Allow-Origin"), 0u);
}

TEST_F(GatewayE2eTest, QueueStreamReachesOnlyThoseWhoMaySeeTheCase) {
  auto nj = Clinician("cl-nj", "clinician", {"NJ"});
  auto ca = Clinician("cl-ca", "clinician", {"CA"});
  SseStream nj_stream(port_, "/v1/referrals:watch", nj);
  SseStream ca_stream(port_, "/v1/referrals:watch", ca);
  SseStream urgent_only(port_, "/v1/referrals:watch?routes=THERAPY", nj);
  ASSERT_TRUE(nj_stream.WaitFor("event: watching"));
  ASSERT_TRUE(ca_stream.WaitFor("event: watching"));
  ASSERT_TRUE(urgent_only.WaitFor("event: watching"));
  EXPECT_THAT(nj_stream.text(), HasSubstr("text/event-stream"));
  Screen("web4", kCrisis, "NJ");
  ASSERT_TRUE(nj_stream.WaitFor("event: queue")) << nj_stream.text();
  EXPECT_THAT(nj_stream.text(), HasSubstr("\"kind\":\"created\""));
  EXPECT_THAT(nj_stream.text(), HasSubstr("users/web4/screenings/"));
  // The audience is the gateway's business.
  EXPECT_THAT(nj_stream.text(), Not(HasSubstr("audience")));
  // A clinician licensed elsewhere, and a filter for other routes: nothing.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_THAT(ca_stream.text(), Not(HasSubstr("event: queue")));
  EXPECT_THAT(urgent_only.text(), Not(HasSubstr("event: queue")));
  const std::string last = nj_stream.LastId();
  ASSERT_FALSE(last.empty());

  // Reconnecting with Last-Event-ID: exactly what was missed.
  Screen("web5", kCrisis, "NJ");
  auto resume = nj;
  resume["Last-Event-ID"] = last;
  SseStream resumed(port_, "/v1/referrals:watch", resume);
  ASSERT_TRUE(resumed.WaitFor("users/web5/screenings/")) << resumed.text();
  EXPECT_THAT(resumed.text(), Not(HasSubstr("users/web4/screenings/")));
  // A position the gateway cannot resume from: reset (read the queue
  // again). The window's own overflow is QueueRelayTest's.
  auto old = nj;
  old["Last-Event-ID"] = "not-a-cursor";
  SseStream reset(port_, "/v1/referrals:watch", old);
  EXPECT_TRUE(reset.WaitFor("event: reset")) << reset.text();
  // Patients may not watch; a bad filter is named.
  HttpReply patient =
      Call(port_, http::verb::get, "/v1/referrals:watch", Patient("web4"));
  EXPECT_EQ(patient.status, 403);
  HttpReply bad_state =
      Call(port_, http::verb::get, "/v1/referrals:watch?locationStates=nj", nj);
  EXPECT_EQ(bad_state.status, 400);
  EXPECT_THAT(bad_state.body, HasSubstr("location_states[0]"));
}

TEST_F(GatewayE2eTest, ReferralRestartLosesNoEventOnTheStream) {
  auto nj = Clinician("cl-nj", "clinician", {"NJ"});
  SseStream stream(port_, "/v1/referrals:watch", nj);
  ASSERT_TRUE(stream.WaitFor("event: watching"));
  // Referral goes away; a screening completed meanwhile is handed off when
  // it is back, and the relay resumes from its cursor.
  const std::string listen = referral_.address;
  referral_.process->Signal(SIGTERM);
  referral_.process->Wait(absl::Seconds(10));
  // While referral is down, calls to it are UNAVAILABLE, within deadline.
  HttpReply down =
      Call(port_, http::verb::get, "/v1/referrals",
           {{"Authorization", nj["Authorization"]}, {"Grpc-Timeout", "2S"}});
  EXPECT_EQ(down.status, 503) << down.body;
  EXPECT_THAT(down.body, HasSubstr("\"code\":14"));
  Screen("web6", kCrisis, "NJ");
  auto again = t::StartService(
      dir_.path(), "referral2", "services/referral/aqueduct-referral",
      {"--redis=" + redis_->address(), "--auth_keys=" + Auth().keys_dir(),
       "--insecure_plaintext"},
      {t::DataKeysEnv()}, listen);
  ASSERT_TRUE(again.ok()) << again.status();
  referral_ = std::move(*again);
  EXPECT_TRUE(stream.WaitFor("users/web6/screenings/", absl::Seconds(20)))
      << stream.text();
}

TEST_F(GatewayE2eTest,
       ASlowPortalIsDroppedWhileOthersGetEveryEventAndItRejoins) {
  gateway_.process->Signal(SIGTERM);
  gateway_.process->Wait(absl::Seconds(10));
  // 128 KiB: the stalled portal overflows it, while the reading one keeps
  // ~19 events of slack for the moments the gateway takes in several
  // events before its writes complete (a slower build, a busy machine).
  StartGateway({"--max_stream_backlog=131072"});
  auto nj = Clinician("cl-nj", "clinician", {"NJ"});
  SseStream keeping_up(port_, "/v1/referrals:watch", nj);
  StalledPortal stalled(port_, "/v1/referrals:watch", nj);
  ASSERT_TRUE(keeping_up.WaitFor("event: watching"));
  Screen("web7", kCrisis, "NJ");
  HttpReply queue = Call(port_, http::verb::get, "/v1/referrals", nj);
  ASSERT_EQ(queue.status, 200) << queue.body;
  auto cases = FromJson<referral::v1::ListQueueResponse>(queue.body);
  ASSERT_FALSE(cases.cases().empty());
  const std::string path = "/v1/" + cases.cases(0).name();
  // Each claim and release is an event with the whole case (several KiB):
  // in all more than twice what the stalled portal's socket buffers
  // (~260 KiB) and its backlog hold.
  constexpr int kRounds = 80;
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_EQ(Call(port_, http::verb::post, path + ":claim", nj,
                   absl::StrCat(R"({"requestId":"c)", i, "\"}"))
                  .status,
              200);
    ASSERT_EQ(Call(port_, http::verb::post, path + ":release", nj,
                   absl::StrCat(R"({"requestId":"r)", i, "\"}"))
                  .status,
              200);
  }
  // The portal that reads got every event, the last release included.
  auto count = [&] { return FrameIds(keeping_up.text()).size(); };
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (count() < 2 * kRounds && absl::Now() < end)
    absl::SleepFor(absl::Milliseconds(50));
  ASSERT_FALSE(keeping_up.ended()) << "the portal that reads was dropped";
  ASSERT_GE(count(), 2u * kRounds) << keeping_up.text().size();
  const std::vector<std::string> all = FrameIds(keeping_up.text());

  // The stalled one was closed by the gateway, part of the way.
  std::string got;
  ASSERT_TRUE(stalled.ReadToEnd(got, absl::Seconds(5)))
      << "the gateway kept a portal " << keeping_up.text().size()
      << " bytes behind; it read " << got.size();
  const std::vector<std::string> before = FrameIds(got);
  ASSERT_LT(before.size(), all.size());
  ASSERT_FALSE(before.empty());
  ASSERT_EQ(before,
            std::vector<std::string>(all.begin(), all.begin() + before.size()));
  const int metrics_port = t::WaitForPortFile(
      dir_.path() + "/gateway.metrics_port", absl::Seconds(5));
  ASSERT_GT(metrics_port, 0);
  const std::string metrics =
      Call(metrics_port, http::verb::get, "/metrics").body;
  EXPECT_THAT(metrics,
              HasSubstr("aqueduct_gateway_queue_streams_dropped_total 1"));

  // Reconnecting from the last frame it had: what it missed is more than
  // this gateway replays to a stream that may lag 128 KiB (half of that),
  // so it is told to read the queue again, and then follows live events
  // (a replay larger than the backlog would drop it at every reconnect).
  auto resume = nj;
  resume["Last-Event-ID"] = before.back();
  SseStream resumed(port_, "/v1/referrals:watch", resume);
  ASSERT_TRUE(resumed.WaitFor("event: reset")) << resumed.text();
  ASSERT_EQ(Call(port_, http::verb::post, path + ":claim", nj,
                 R"({"requestId":"after"})")
                .status,
            200);
  ASSERT_TRUE(resumed.WaitFor("\"kind\":\"claimed\"")) << resumed.text();
  EXPECT_FALSE(resumed.ended());
}

TEST_F(GatewayE2eTest, OpenApiDocumentAndConsoleAreServed) {
  HttpReply doc = Call(port_, http::verb::get, "/openapi.json");
  EXPECT_EQ(doc.status, 200);
  EXPECT_THAT(doc.body, HasSubstr("/v1/{name=referrals/*}:decide"));
  HttpReply console = Call(port_, http::verb::get, "/console/");
  EXPECT_EQ(console.status, 200);
  EXPECT_THAT(console.headers["Content-Security-Policy"],
              HasSubstr("default-src 'self'"));
  HttpReply root = Call(port_, http::verb::get, "/");
  EXPECT_EQ(root.status, 302);
  EXPECT_EQ(root.headers["Location"], "/console/");
}

// The reference console in Debian's headless Chromium (tests/gateway/
// console.cjs): a crisis screening taken through intake appears in the
// open console, a physician claims (and sees the lease expire) and
// decides, the audit trail shows it, and a clinician licensed elsewhere
// never sees the case.
TEST_F(GatewayE2eTest, ConsoleInARealBrowser) {
#ifdef AQUEDUCT_SANITIZED
  GTEST_SKIP() << "the browser test runs in the plain build (Chromium is "
                  "not what the sanitizers check)";
#endif
  const char* source = std::getenv("AQUEDUCT_SOURCE_DIR");
  const char* binary = std::getenv("AQUEDUCT_BINARY_DIR");
  ASSERT_NE(source, nullptr);
  ASSERT_NE(binary, nullptr);
  const std::string chromium = "/usr/bin/chromium";
  ASSERT_EQ(access(chromium.c_str(), X_OK), 0)
      << chromium << " is missing: scripts/setup.sh installs Debian's chromium";
  // The browser driver, from tests/npm (installed into the build tree).
  const std::string npm_log = dir_.path() + "/npm.log";
  const std::string modules_file = dir_.path() + "/node_path";
  ASSERT_EQ(std::system(absl::StrCat(source, "/tests/npm/install.sh ", binary,
                                     " >", modules_file, " 2>", npm_log)
                            .c_str()),
            0)
      << t::ReadFile(npm_log);
  std::string node_path = t::ReadFile(modules_file);
  while (!node_path.empty() && node_path.back() == '\n') node_path.pop_back();
  const std::string handshake = dir_.path() + "/handshake";
  ASSERT_EQ(mkdir(handshake.c_str(), 0700), 0);
  const std::string shots = std::string(binary) + "/console-screenshots";
  mkdir(shots.c_str(), 0755);
  const std::string log = dir_.path() + "/console.log";
  auto node = t::Subprocess::Start(
      {"/usr/bin/env", "node",
       std::string(source) + "/tests/gateway/console.cjs"},
      log,
      {"NODE_PATH=" + node_path,
       "GATEWAY_URL=http://127.0.0.1:" + std::to_string(port_),
       "TOKEN_DR_NJ=" + Auth().Token("physician", "dr-nj", {"NJ"}),
       "TOKEN_CL_CA=" + Auth().Token("clinician", "cl-ca", {"CA"}),
       "HANDSHAKE_DIR=" + handshake, "SCREENSHOT_DIR=" + shots,
       "CHROMIUM=" + chromium});
  ASSERT_TRUE(node.ok()) << node.status();
  const absl::Time end = absl::Now() + absl::Seconds(90);
  while (access((handshake + "/ready").c_str(), F_OK) != 0 &&
         absl::Now() < end && (*node)->Running()) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(access((handshake + "/ready").c_str(), F_OK), 0)
      << t::ReadFile(log);
  Screen("browser1", kCrisis, "NJ");
  std::ofstream(handshake + "/screened") << "screened\n";
  auto status = (*node)->Wait(absl::Seconds(120));
  ASSERT_TRUE(status.has_value()) << "still running\n" << t::ReadFile(log);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << t::ReadFile(log);
  EXPECT_THAT(t::ReadFile(log), HasSubstr("console test passed"));
}

}  // namespace
}  // namespace aqueduct
