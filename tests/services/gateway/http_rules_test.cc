// The gateway's HTTP mapping (templates, request building, error mapping)
// and the relay's audience rule, with no server.

#include "services/gateway/http_rules.h"

#include "common/status/status_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protos/intake/v1/intake_service.pb.h"
#include "protos/referral/v1/referral_service.pb.h"
#include "services/gateway/gateway_server.h"
#include "services/gateway/http_errors.h"
#include "services/gateway/queue_relay.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::gateway {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

using Bindings = std::vector<std::pair<std::string, std::string>>;

TEST(PathTemplateTest, MatchesVariablesVerbsAndNothingElse) {
  auto t = PathTemplate::Parse("/v1/{name=users/*/screenings/*}:complete");
  ASSERT_THAT(t, IsOk());
  Bindings b;
  EXPECT_TRUE(t->Match("/v1/users/u1/screenings/s1:complete", &b));
  EXPECT_THAT(b, ElementsAre(Pair("name", "users/u1/screenings/s1")));
  EXPECT_FALSE(t->Match("/v1/users/u1/screenings/s1", &b));
  EXPECT_FALSE(t->Match("/v1/users/u1/screenings/s1:abandon", &b));
  EXPECT_FALSE(t->Match("/v1/users/u1/screenings:complete", &b));
  EXPECT_FALSE(t->Match("/v1/users/u1/other/s1:complete", &b));
  // An escaped slash never splits or joins a segment.
  EXPECT_FALSE(t->Match("/v1/users/u1%2Fx/screenings/s1:complete", &b));
  EXPECT_TRUE(t->Match("/v1/users/u%31/screenings/s1:complete", &b));
  EXPECT_THAT(b, ElementsAre(Pair("name", "users/u1/screenings/s1")));

  auto plain = PathTemplate::Parse("/v1/{name=referrals/*}");
  ASSERT_THAT(plain, IsOk());
  EXPECT_TRUE(plain->Match("/v1/referrals/r1", &b));
  EXPECT_FALSE(plain->Match("/v1/referrals/r1:claim", &b));  // another rule's
  auto rest = PathTemplate::Parse("/v1/{path=files/**}");
  ASSERT_THAT(rest, IsOk());
  EXPECT_TRUE(rest->Match("/v1/files/a/b/c", &b));
  EXPECT_THAT(b, ElementsAre(Pair("path", "files/a/b/c")));

  for (const char* bad : {"v1/x", "/v1/{name", "/v1/{=x}", "/v1/**/x",
                          "/v1/x:", "/v1/{name=a}b"}) {
    EXPECT_THAT(PathTemplate::Parse(bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
}

TEST(HttpRulesTest, EveryAnnotatedRpcResolves) {
  auto rules = HttpRules::ForServices(
      {IntakeServiceDescriptor(), FhirExportServiceDescriptor(),
       ReferralServiceDescriptor(), ScoringServiceDescriptor()});
  ASSERT_THAT(rules, IsOk());
  EXPECT_EQ(rules->rules().size(), 19u);
  struct Case {
    const char* method;
    const char* path;
    const char* rpc;
  };
  for (const Case& c : std::vector<Case>{
           {"POST", "/v1/users/u1/screenings", "StartScreening"},
           {"GET", "/v1/users/u1/screenings/s1", "GetScreening"},
           {"GET", "/v1/users/u1/screenings/s1:nextItems", "GetNextItems"},
           {"POST", "/v1/users/u1/screenings/s1:submitAnswers",
            "SubmitAnswers"},
           {"POST", "/v1/users/u1/screenings/s1:complete", "CompleteScreening"},
           {"GET", "/v1/users/u1/screenings/s1/result", "GetMyResult"},
           {"GET", "/v1/users/u1/screenings/s1/referral", "GetMyReferral"},
           {"GET", "/v1/users/u1/results", "ListMyResults"},
           {"GET", "/v1/referrals", "ListQueue"},
           {"GET", "/v1/referrals:watch", "WatchQueue"},
           {"GET", "/v1/referrals/r1", "GetCase"},
           {"POST", "/v1/referrals/r1:claim", "ClaimCase"},
           {"POST", "/v1/referrals/r1:decide", "DecideCase"},
           {"GET", "/v1/referrals/r1/auditEvents", "ListAuditEvents"},
           {"GET", "/v1/rulesets", "ListRulesets"},
           {"GET", "/v1/fhir/questionnaires", "GetQuestionnaires"},
           {"GET", "/v1/users/u1/screenings/s1:fhir", "ExportScreening"},
       }) {
    auto r = rules->Resolve(c.method, c.path, nullptr);
    ASSERT_THAT(r, IsOk()) << c.path;
    EXPECT_EQ(r->rule->method->name(), c.rpc) << c.path;
  }
  std::vector<std::string> allowed;
  EXPECT_THAT(rules->Resolve("DELETE", "/v1/referrals/r1:claim", &allowed),
              StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_THAT(allowed, ElementsAre("POST"));
  EXPECT_THAT(rules->Resolve("GET", "/v1/elsewhere", nullptr),
              StatusIs(absl::StatusCode::kNotFound));
  // Service-only RPCs have no HTTP mapping.
  for (const auto& rule : rules->rules()) {
    EXPECT_NE(rule->method->name(), "CreateReferral");
    EXPECT_NE(rule->method->name(), "ScoreAnswers");
    EXPECT_NE(rule->method->name(), "ExportScreenings");
  }
}

TEST(HttpRulesTest, RequestsAreBuiltFromBodyQueryAndPath) {
  auto rules = HttpRules::ForServices(
      {IntakeServiceDescriptor(), FhirExportServiceDescriptor(),
       ReferralServiceDescriptor(), ScoringServiceDescriptor()});
  ASSERT_THAT(rules, IsOk());
  auto submit = rules->Resolve(
      "POST", "/v1/users/u1/screenings/s1:submitAnswers", nullptr);
  ASSERT_THAT(submit, IsOk());
  intake::v1::SubmitAnswersRequest req;
  // The path names the resource, whatever the body says.
  ASSERT_THAT(
      BuildRequest(*submit, "",
                   R"({"name":"users/other/screenings/x","requestId":"r1",
                       "answers":[{"itemId":"phq9.1","optionValue":2}]})",
                   &req),
      IsOk());
  EXPECT_EQ(req.name(), "users/u1/screenings/s1");
  EXPECT_EQ(req.request_id(), "r1");
  ASSERT_EQ(req.answers_size(), 1);
  EXPECT_EQ(req.answers(0).option_value(), 2);
  EXPECT_THAT(BuildRequest(*submit, "", R"({"answerz":[]})", &req),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("body")));
  EXPECT_THAT(
      BuildRequest(*submit, "etag=x", "{}", &req),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("query string")));

  auto list = rules->Resolve("GET", "/v1/referrals", nullptr);
  ASSERT_THAT(list, IsOk());
  referral::v1::ListQueueRequest q;
  ASSERT_THAT(BuildRequest(*list,
                           "routes=THERAPY&routes=4&pageSize=5&"
                           "location_states=NJ&includeClaimed=true&"
                           "pageToken=a%2Bb+c",
                           "", &q),
              IsOk());
  EXPECT_THAT(q.routes(),
              ElementsAre(common::v1::THERAPY, common::v1::CRISIS_URGENT));
  EXPECT_EQ(q.page_size(), 5);
  EXPECT_THAT(q.location_states(), ElementsAre("NJ"));
  EXPECT_TRUE(q.include_claimed());
  EXPECT_EQ(q.page_token(), "a+b c");
  for (const char* bad : {"pageSize=many", "routes=NOPE", "nope=1",
                          "includeClaimed=maybe", "pageToken=%zz"}) {
    referral::v1::ListQueueRequest r;
    EXPECT_THAT(BuildRequest(*list, bad, "", &r),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  EXPECT_THAT(
      BuildRequest(*list, "", "{}", &q),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("takes no body")));
  auto get = rules->Resolve("GET", "/v1/referrals/r1", nullptr);
  ASSERT_THAT(get, IsOk());
  referral::v1::GetCaseRequest g;
  EXPECT_THAT(BuildRequest(*get, "name=referrals/r2", "", &g),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("the path already sets it")));
}

TEST(HttpErrorsTest, CodesMapToTheirHttpStatusAndDetailsSurvive) {
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::INVALID_ARGUMENT), 400);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::UNAUTHENTICATED), 401);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::PERMISSION_DENIED), 403);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::NOT_FOUND), 404);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::ABORTED), 409);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::RESOURCE_EXHAUSTED), 429);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::UNAVAILABLE), 503);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::DEADLINE_EXCEEDED), 504);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::INTERNAL), 500);
  const absl::Status bad =
      absl::InvalidArgumentError("answers[2].item_id: not an item");
  const std::string json = StatusJson(bad);
  EXPECT_THAT(json, HasSubstr("\"code\":3"));
  EXPECT_THAT(json, HasSubstr("type.googleapis.com/google.rpc.BadRequest"));
  EXPECT_THAT(json, HasSubstr("answers[2].item_id"));
  const grpc::Status retry = ToGrpcStatus(
      WithRetryDelay(absl::UnavailableError("busy"), absl::Milliseconds(1500)));
  EXPECT_EQ(RetryAfterSeconds(retry), 2);
  EXPECT_EQ(RequestTimeout("5S", absl::Seconds(10)), absl::Seconds(5));
  EXPECT_EQ(RequestTimeout("500m", absl::Seconds(10)), absl::Milliseconds(500));
  EXPECT_EQ(RequestTimeout("1H", absl::Seconds(10)), absl::Seconds(10));
  EXPECT_EQ(RequestTimeout("soon", absl::Seconds(10)), absl::Seconds(10));
}

TEST(QueueRelayTest, AResumeFitsWithinWhatAStreamMayLag) {
  GatewayConfig config;  // 1 MiB backlog: the relay's own bound holds
  EXPECT_EQ(RelayOptions(config).max_replay_bytes, 512u << 10);
  config.max_stream_backlog = 16 << 10;  // a replay over 8 KiB is a reset
  EXPECT_EQ(RelayOptions(config).max_replay_bytes, 8u << 10);
}

TEST(QueueRelayTest, TheAudienceRuleIsTheServices) {
  auth::Identity nj{"cl-nj", auth::Role::kClinician, {"NJ"}, "k"};
  auth::Identity dr_nj{"dr-nj", auth::Role::kPhysician, {"NJ"}, "k"};
  auth::Identity patient{"p", auth::Role::kPatient, {"NJ"}, "k"};
  referral::v1::Audience in_nj;
  in_nj.add_states("NJ");
  EXPECT_TRUE(Sees(nj, in_nj));
  EXPECT_FALSE(Sees(patient, in_nj));
  referral::v1::Audience ketamine = in_nj;
  ketamine.set_physicians_only(true);
  EXPECT_FALSE(Sees(nj, ketamine));
  EXPECT_TRUE(Sees(dr_nj, ketamine));
  referral::v1::Audience everywhere;
  everywhere.add_states("NJ");
  everywhere.add_states("NY");
  everywhere.set_every_state(true);
  EXPECT_FALSE(Sees(nj, everywhere));
  nj.licensed_states = {"NY", "NJ"};
  EXPECT_TRUE(Sees(nj, everywhere));
  EXPECT_FALSE(Sees(nj, referral::v1::Audience()));  // nobody

  referral::v1::WatchQueueRequest filters;
  referral::v1::Referral r;
  r.set_current_route(common::v1::THERAPY);
  r.set_location_state("NJ");
  EXPECT_TRUE(Wants(filters, r));
  filters.add_routes(common::v1::CRISIS_URGENT);
  EXPECT_FALSE(Wants(filters, r));
  filters.add_routes(common::v1::THERAPY);
  filters.add_location_states("NY");
  EXPECT_FALSE(Wants(filters, r));

  EXPECT_TRUE(CursorBefore("1700000000000-0", "1700000000000-1"));
  EXPECT_TRUE(CursorBefore("999-5", "1000-0"));
  EXPECT_FALSE(CursorBefore("1000-0", "999-5"));
  EXPECT_TRUE(CursorBefore("garbage", "1-0"));
  EXPECT_EQ(SseFrame("1-0", "queue", "{}"),
            "id: 1-0\nevent: queue\ndata: {}\n\n");
}

// The relay's window: resumes exactly, resets when it cannot.
class Recorder : public QueueSubscriber {
 public:
  explicit Recorder(auth::Identity id) : id_(std::move(id)) {}
  const auth::Identity& identity() const override { return id_; }
  const referral::v1::WatchQueueRequest& filters() const override {
    return filters_;
  }
  void Send(SseFramePtr frame) override { frames.push_back(*frame); }
  std::vector<std::string> frames;

 private:
  auth::Identity id_;
  referral::v1::WatchQueueRequest filters_;
};

TEST(QueueRelayTest, WindowResumesExactlyAndResetsWhenItCannot) {
  QueueRelay::Options options;
  options.window = 3;
  QueueRelay relay(
      nullptr, nullptr, [](std::function<void()> f) { f(); },
      [](absl::Duration, std::function<void()>) {}, options);
  auto event = [](const std::string& cursor, const std::string& state) {
    referral::v1::QueueEvent e;
    e.set_cursor(cursor);
    e.set_kind("created");
    e.mutable_referral()->set_name("referrals/" + cursor);
    e.mutable_referral()->set_location_state(state);
    e.mutable_audience()->add_states(state);
    return e;
  };
  referral::v1::QueueEvent watching;
  watching.set_kind("watching");
  watching.set_cursor("10-0");
  relay.OnEvent(watching);
  Recorder nj({"cl-nj", auth::Role::kClinician, {"NJ"}, "k"});
  relay.Subscribe(&nj, "");
  relay.OnEvent(event("11-0", "NJ"));
  relay.OnEvent(event("12-0", "CA"));
  relay.OnEvent(event("13-0", "NJ"));
  ASSERT_EQ(nj.frames.size(), 3u);  // watching, 11, 13
  EXPECT_THAT(nj.frames[1], HasSubstr("id: 11-0\n"));
  EXPECT_THAT(nj.frames[2], HasSubstr("id: 13-0\n"));
  EXPECT_THAT(nj.frames[2], ::testing::Not(HasSubstr("audience")));
  relay.Unsubscribe(&nj);

  Recorder back({"cl-nj", auth::Role::kClinician, {"NJ"}, "k"});
  relay.Subscribe(&back, "11-0");
  ASSERT_EQ(back.frames.size(), 2u);  // watching, 13 (12 is CA's)
  EXPECT_THAT(back.frames[1], HasSubstr("id: 13-0\n"));
  relay.Unsubscribe(&back);
  // Two more events push 11-0 out of a window of three.
  relay.OnEvent(event("14-0", "NJ"));
  relay.OnEvent(event("15-0", "NJ"));
  Recorder late({"cl-nj", auth::Role::kClinician, {"NJ"}, "k"});
  relay.Subscribe(&late, "11-0");
  ASSERT_EQ(late.frames.size(), 2u);
  EXPECT_THAT(late.frames[1], HasSubstr("event: reset"));
  EXPECT_THAT(late.frames[1], HasSubstr("id: 15-0\n"));
  Recorder recent({"cl-nj", auth::Role::kClinician, {"NJ"}, "k"});
  relay.Subscribe(&recent, "13-0");
  ASSERT_EQ(recent.frames.size(), 3u);  // watching, 14, 15
  relay.Unsubscribe(&late);
  relay.Unsubscribe(&recent);
}

TEST(QueueRelayTest, TooMuchToReplayIsAReset) {
  auto event = [](const std::string& cursor) {
    referral::v1::QueueEvent e;
    e.set_cursor(cursor);
    e.set_kind("created");
    e.mutable_referral()->set_name("referrals/" + cursor);
    e.mutable_referral()->set_location_state("NJ");
    return e;
  };
  // Room for one frame and a half.
  const size_t frame = SseFrame("13-0", "queue", ToJson(event("13-0"))).size();
  QueueRelay::Options options;
  options.max_replay_bytes = frame + frame / 2;
  QueueRelay relay(
      nullptr, nullptr, [](std::function<void()> f) { f(); },
      [](absl::Duration, std::function<void()>) {}, options);
  referral::v1::QueueEvent watching;
  watching.set_kind("watching");
  watching.set_cursor("10-0");
  relay.OnEvent(watching);
  for (const char* cursor : {"11-0", "12-0", "13-0"}) {
    referral::v1::QueueEvent e = event(cursor);
    e.mutable_audience()->add_states("NJ");
    relay.OnEvent(e);
  }
  Recorder one({"cl-nj", auth::Role::kClinician, {"NJ"}, "k"});
  relay.Subscribe(&one, "12-0");  // one frame missed: replayed
  ASSERT_EQ(one.frames.size(), 2u);
  EXPECT_THAT(one.frames[1], HasSubstr("id: 13-0\n"));
  Recorder many({"cl-nj", auth::Role::kClinician, {"NJ"}, "k"});
  relay.Subscribe(&many, "10-0");  // three: too much, reset
  ASSERT_EQ(many.frames.size(), 2u);
  EXPECT_THAT(many.frames[1], HasSubstr("event: reset"));
  relay.Unsubscribe(&one);
  relay.Unsubscribe(&many);
}

}  // namespace
}  // namespace aqueduct::gateway
