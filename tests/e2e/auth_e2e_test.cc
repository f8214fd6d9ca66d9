// Authentication and authorisation over real gRPC against the three real
// binaries: every RPC x every caller, patient A against patient B's
// screening, result and referral, and no token in any log line.

#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/authorizer.h"
#include "common/redis/redis_client.h"
#include "common/server/health_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protos/intake/v1/intake_service.grpc.pb.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "protos/scoring/v1/scoring_service.grpc.pb.h"
#include "tests/testing/auth.h"
#include "tests/testing/process.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct {
namespace {

namespace t = ::aqueduct::testing;
using ::testing::HasSubstr;
using ::testing::Not;

class AuthE2eTest : public ::testing::Test {
 protected:
  using Service = t::ServiceProcess;

  void SetUp() override {
    auto redis = t::RedisServer::Start(dir_.path());
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = std::move(*redis);
    scoring_ =
        Start("scoring", "services/scoring/aqueduct-scoring",
              {"--catalog=" + t::SourcePath("data/catalog/catalog.textproto"),
               "--rulesets=" + t::SourcePath("data/rulesets")});
    referral_ = Start("referral", "services/referral/aqueduct-referral",
                      {"--redis=" + redis_->address()});
    intake_ =
        Start("intake", "services/intake/aqueduct-intake",
              {"--redis=" + redis_->address(), "--scoring=" + scoring_.address,
               "--referral=" + referral_.address,
               "--service_key=" + auth_.private_key_file(),
               std::string("--service_key_id=") + t::TestAuth::kKeyId});
    for (Service* s : {&scoring_, &referral_, &intake_})
      ASSERT_TRUE(WaitServing(s->address)) << t::ReadFile(s->log);
    intake_stub_ = intake::v1::IntakeService::NewStub(Channel(intake_.address));
    scoring_stub_ =
        scoring::v1::ScoringService::NewStub(Channel(scoring_.address));
    referral_stub_ =
        referral::v1::ReferralService::NewStub(Channel(referral_.address));
  }

  // With `auth`, the service trusts its keys instead of auth_'s.
  Service Start(const std::string& name, const std::string& binary,
                std::vector<std::string> args,
                std::vector<std::string> env = {},
                const t::TestAuth* auth = nullptr) {
    args.insert(args.begin(),
                {"--auth_keys=" + (auth ? auth : &auth_)->keys_dir(),
                 "--insecure_plaintext"});
    env.push_back(t::DataKeysEnv());
    auto s = t::StartService(dir_.path(), name, binary, args, env);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : Service{};
  }
  static std::shared_ptr<grpc::Channel> Channel(const std::string& addr) {
    return grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  }
  bool WaitServing(const std::string& address) {
    return t::WaitServing(Channel(address));
  }

  // A call context for `caller`: "" (no token), "bad" (a token signed by
  // another key), "<role>" or "<role>:<subject>".
  std::unique_ptr<grpc::ClientContext> As(const std::string& caller,
                                          absl::Duration d = absl::Seconds(5)) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(absl::ToChronoTime(absl::Now() + d));
    if (caller.empty()) return c;
    if (caller == "bad") {
      c->AddMetadata("authorization",
                     auth::BearerValue(other_key_.Token("operator", "ops")));
      return c;
    }
    const size_t colon = caller.find(':');
    const std::string role = caller.substr(0, colon);
    const std::string subject =
        colon == std::string::npos ? "someone" : caller.substr(colon + 1);
    const std::string token = auth_.Token(role, subject);
    tokens_used_.insert(token);
    c->AddMetadata("authorization", auth::BearerValue(token));
    return c;
  }

  // Takes a whole screening as `user` over gRPC; returns its name.
  std::string CompleteScreening(const std::string& user,
                                const std::vector<int>& phq9) {
    intake::v1::StartScreeningRequest start;
    start.set_parent("users/" + user);
    start.set_consent_version("c1");
    intake::v1::Screening s;
    EXPECT_TRUE(
        intake_stub_->StartScreening(As("patient:" + user).get(), start, &s)
            .ok());
    tools::Overrides o = t::AdultContext("NY");
    for (size_t i = 0; i < phq9.size(); ++i)
      o["phq9." + std::to_string(i + 1)] = std::to_string(phq9[i]);
    std::string etag = s.etag();
    for (int page = 0; page < 20; ++page) {
      intake::v1::GetNextItemsRequest next_req;
      next_req.set_name(s.name());
      intake::v1::NextItems next;
      EXPECT_TRUE(
          intake_stub_
              ->GetNextItems(As("patient:" + user).get(), next_req, &next)
              .ok());
      if (next.items().empty()) break;
      intake::v1::SubmitAnswersRequest submit;
      submit.set_name(s.name());
      submit.set_etag(next.etag());
      submit.set_request_id(absl::StrCat("p", page));
      for (const auto& ask : next.items())
        *submit.add_answers() = *tools::ScriptedAnswer(ask.item(), o);
      intake::v1::SubmitAnswersResponse submitted;
      EXPECT_TRUE(
          intake_stub_
              ->SubmitAnswers(As("patient:" + user).get(), submit, &submitted)
              .ok());
      etag = submitted.screening().etag();
    }
    intake::v1::CompleteScreeningRequest complete;
    complete.set_name(s.name());
    complete.set_etag(etag);
    complete.set_request_id("c");
    intake::v1::CompleteScreeningResponse done;
    grpc::Status st = intake_stub_->CompleteScreening(
        As("patient:" + user, absl::Seconds(10)).get(), complete, &done);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return s.name();
  }

  t::TempDir dir_;
  t::TestAuth auth_;
  t::TestAuth
      other_key_;  // same issuer and audience, a key the services do not trust
  std::unique_ptr<t::RedisServer> redis_;
  Service scoring_, referral_, intake_;
  std::unique_ptr<intake::v1::IntakeService::Stub> intake_stub_;
  std::unique_ptr<scoring::v1::ScoringService::Stub> scoring_stub_;
  std::unique_ptr<referral::v1::ReferralService::Stub> referral_stub_;
  std::set<std::string> tokens_used_;

  // A unary call with `bytes` as the request, whatever the method path:
  // for bodies and paths no generated stub would send.
  static grpc::Status RawUnary(const std::string& address,
                               grpc::ClientContext* ctx,
                               const std::string& method,
                               const std::string& bytes) {
    grpc::GenericStub stub(Channel(address));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), response;
    grpc::CompletionQueue cq;
    auto rpc = stub.PrepareUnaryCall(ctx, method, request, &cq);
    rpc->StartCall();
    grpc::Status status;
    rpc->Finish(&response, &status, reinterpret_cast<void*>(1));
    void* tag;
    bool ok;
    EXPECT_TRUE(cq.Next(&tag, &ok));
    return status;
  }
};

// Every RPC of every service, called with an empty request by every kind of
// caller, each cell's exact code: UNAUTHENTICATED without a valid token,
// PERMISSION_DENIED for a role that may not call, and for one that may, the
// handler's own answer to an empty request.
TEST_F(AuthE2eTest, EveryRpcByEveryCaller) {
  using Call = std::function<grpc::Status(grpc::ClientContext*)>;
  namespace iv = intake::v1;
  namespace sv = scoring::v1;
  namespace rv = referral::v1;
  auto unary = [](auto method) {
    return [method](grpc::ClientContext* ctx) { return method(ctx); };
  };
  const std::map<std::string, Call> calls = {
      {"aqueduct.intake.v1.IntakeService/StartScreening", unary([&](auto* c) {
         iv::Screening r;
         return intake_stub_->StartScreening(c, {}, &r);
       })},
      {"aqueduct.intake.v1.IntakeService/GetScreening", unary([&](auto* c) {
         iv::Screening r;
         return intake_stub_->GetScreening(c, {}, &r);
       })},
      {"aqueduct.intake.v1.IntakeService/GetNextItems", unary([&](auto* c) {
         iv::NextItems r;
         return intake_stub_->GetNextItems(c, {}, &r);
       })},
      {"aqueduct.intake.v1.IntakeService/SubmitAnswers", unary([&](auto* c) {
         iv::SubmitAnswersResponse r;
         return intake_stub_->SubmitAnswers(c, {}, &r);
       })},
      {"aqueduct.intake.v1.IntakeService/CompleteScreening",
       unary([&](auto* c) {
         iv::CompleteScreeningResponse r;
         return intake_stub_->CompleteScreening(c, {}, &r);
       })},
      {"aqueduct.intake.v1.IntakeService/AbandonScreening", unary([&](auto* c) {
         iv::Screening r;
         return intake_stub_->AbandonScreening(c, {}, &r);
       })},
      {"aqueduct.intake.v1.IntakeService/ListMyResults", unary([&](auto* c) {
         iv::ListMyResultsResponse r;
         return intake_stub_->ListMyResults(c, {}, &r);
       })},
      {"aqueduct.intake.v1.IntakeService/GetMyResult", unary([&](auto* c) {
         iv::ScreeningResult r;
         return intake_stub_->GetMyResult(c, {}, &r);
       })},
      {"aqueduct.scoring.v1.ScoringService/ScoreAnswers", unary([&](auto* c) {
         sv::ScoringResult r;
         return scoring_stub_->ScoreAnswers(c, {}, &r);
       })},
      {"aqueduct.scoring.v1.ScoringService/ScoreBatch",
       [&](grpc::ClientContext* c) {
         auto stream = scoring_stub_->ScoreBatch(c);
         stream->WritesDone();
         return stream->Finish();
       }},
      {"aqueduct.scoring.v1.ScoringService/Rescore",
       [&](grpc::ClientContext* c) {
         auto stream = scoring_stub_->Rescore(c);
         stream->WritesDone();
         return stream->Finish();
       }},
      {"aqueduct.scoring.v1.ScoringService/DescribeCatalog",
       unary([&](auto* c) {
         sv::Catalog r;
         return scoring_stub_->DescribeCatalog(c, {}, &r);
       })},
      {"aqueduct.scoring.v1.ScoringService/ListRulesets", unary([&](auto* c) {
         sv::ListRulesetsResponse r;
         return scoring_stub_->ListRulesets(c, {}, &r);
       })},
      {"aqueduct.referral.v1.ReferralService/CreateReferral",
       unary([&](auto* c) {
         rv::Referral r;
         return referral_stub_->CreateReferral(c, {}, &r);
       })},
      {"aqueduct.referral.v1.ReferralService/CreateReferrals",
       unary([&](auto* c) {
         rv::CreateReferralsResponse r;
         return referral_stub_->CreateReferrals(c, {}, &r);
       })},
      {"aqueduct.referral.v1.ReferralService/ListQueue", unary([&](auto* c) {
         rv::ListQueueResponse r;
         return referral_stub_->ListQueue(c, {}, &r);
       })},
      {"aqueduct.referral.v1.ReferralService/ClaimCase", unary([&](auto* c) {
         rv::Referral r;
         return referral_stub_->ClaimCase(c, {}, &r);
       })},
      {"aqueduct.referral.v1.ReferralService/ReleaseCase", unary([&](auto* c) {
         rv::Referral r;
         return referral_stub_->ReleaseCase(c, {}, &r);
       })},
      {"aqueduct.referral.v1.ReferralService/DecideCase", unary([&](auto* c) {
         rv::Referral r;
         return referral_stub_->DecideCase(c, {}, &r);
       })},
      {"aqueduct.referral.v1.ReferralService/GetCase", unary([&](auto* c) {
         rv::Referral r;
         return referral_stub_->GetCase(c, {}, &r);
       })},
      {"aqueduct.referral.v1.ReferralService/ListAuditEvents",
       unary([&](auto* c) {
         rv::ListAuditEventsResponse r;
         return referral_stub_->ListAuditEvents(c, {}, &r);
       })},
      {"aqueduct.referral.v1.ReferralService/WatchQueue",
       [&](grpc::ClientContext* c) {
         auto reader = referral_stub_->WatchQueue(c, rv::WatchQueueRequest());
         rv::QueueEvent e;
         if (reader->Read(&e))
           c->TryCancel();  // got past the check: the watch started
         return reader->Finish();
       }},
      {"aqueduct.referral.v1.ReferralService/GetMyReferral",
       unary([&](auto* c) {
         rv::MyReferral r;
         return referral_stub_->GetMyReferral(c, {}, &r);
       })},
  };
  // The table covers every method the protos define.
  int methods = 0;
  for (auto [file, name] :
       {std::pair{iv::StartScreeningRequest::descriptor()->file(),
                  "IntakeService"},
        std::pair{sv::ScoreAnswersRequest::descriptor()->file(),
                  "ScoringService"},
        std::pair{rv::CreateReferralRequest::descriptor()->file(),
                  "ReferralService"}}) {
    const auto* service = file->FindServiceByName(name);
    ASSERT_NE(service, nullptr);
    for (int i = 0; i < service->method_count(); ++i) {
      ++methods;
      EXPECT_TRUE(calls.count(
          absl::StrCat(service->full_name(), "/", service->method(i)->name())))
          << service->method(i)->full_name();
    }
  }
  EXPECT_EQ(methods, static_cast<int>(calls.size()));

  const std::vector<std::string> callers = {
      "",      "bad",      "patient",        "clinician",       "physician",
      "batch", "operator", "service:intake", "service:referral"};
  // What an allowed caller gets past the checks with an empty request: the
  // handler's own answer (INVALID_ARGUMENT for a missing name, OK where an
  // empty request is a valid one, CANCELLED for the watch this test ends).
  const std::map<std::string, grpc::StatusCode> past_the_checks = {
      {"aqueduct.intake.v1.IntakeService/StartScreening",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.intake.v1.IntakeService/GetScreening",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.intake.v1.IntakeService/GetNextItems",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.intake.v1.IntakeService/SubmitAnswers",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.intake.v1.IntakeService/CompleteScreening",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.intake.v1.IntakeService/AbandonScreening",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.intake.v1.IntakeService/ListMyResults",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.intake.v1.IntakeService/GetMyResult",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.scoring.v1.ScoringService/ScoreAnswers", grpc::StatusCode::OK},
      {"aqueduct.scoring.v1.ScoringService/ScoreBatch", grpc::StatusCode::OK},
      {"aqueduct.scoring.v1.ScoringService/Rescore", grpc::StatusCode::OK},
      {"aqueduct.scoring.v1.ScoringService/DescribeCatalog",
       grpc::StatusCode::OK},
      {"aqueduct.scoring.v1.ScoringService/ListRulesets", grpc::StatusCode::OK},
      {"aqueduct.referral.v1.ReferralService/CreateReferral",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.referral.v1.ReferralService/CreateReferrals",
       grpc::StatusCode::OK},
      {"aqueduct.referral.v1.ReferralService/ListQueue", grpc::StatusCode::OK},
      {"aqueduct.referral.v1.ReferralService/ClaimCase",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.referral.v1.ReferralService/ReleaseCase",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.referral.v1.ReferralService/DecideCase",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.referral.v1.ReferralService/GetCase",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.referral.v1.ReferralService/ListAuditEvents",
       grpc::StatusCode::INVALID_ARGUMENT},
      {"aqueduct.referral.v1.ReferralService/WatchQueue",
       grpc::StatusCode::CANCELLED},
      {"aqueduct.referral.v1.ReferralService/GetMyReferral",
       grpc::StatusCode::INVALID_ARGUMENT},
  };
  int allowed = 0;
  for (const auto& [method, call] : calls) {
    const auth::Access& access = auth::Policy().at("/" + method);
    for (const auto& caller : callers) {
      auto ctx = As(caller, absl::Seconds(3));
      const grpc::StatusCode code = call(ctx.get()).error_code();
      if (caller.empty() || caller == "bad") {
        EXPECT_EQ(code, grpc::StatusCode::UNAUTHENTICATED)
            << caller << " -> " << method;
        continue;
      }
      const std::string role = caller.substr(0, caller.find(':'));
      auth::Role r;
      ASSERT_TRUE(auth::ParseRole(role, &r));
      bool may = std::find(access.roles.begin(), access.roles.end(), r) !=
                 access.roles.end();
      if (may && r == auth::Role::kService) {
        may = std::find(access.services.begin(), access.services.end(),
                        caller.substr(caller.find(':') + 1)) !=
              access.services.end();
      }
      if (may) {
        ++allowed;
        EXPECT_EQ(code, past_the_checks.at(method))
            << caller << " -> " << method;
      } else {
        EXPECT_EQ(code, grpc::StatusCode::PERMISSION_DENIED)
            << caller << " -> " << method;
      }
    }
  }
  EXPECT_EQ(allowed, 38);  // as authorizer_test counts them
}

// Referral's two creates read their request themselves (streamed unary
// handlers, so the results move into the case), and so does WatchQueue
// (its events go out as bytes serialized once for every portal): bytes
// that are not the message get INVALID_ARGUMENT naming it, after the caller
// is checked, and a well-formed create still works over the wire.
TEST_F(AuthE2eTest, CreatesRefuseABodyThatIsNotTheirMessage) {
  auto call = [&](const std::string& caller, const std::string& method,
                  const std::string& bytes) {
    return RawUnary(referral_.address, As(caller).get(),
                    "/aqueduct.referral.v1.ReferralService/" + method, bytes);
  };
  const std::string garbage(
      "\xff\xff\xff\xff", 4);  // field 0x1fffffff... with no end: not a message
  grpc::Status one = call("service:intake", "CreateReferral", garbage);
  EXPECT_EQ(one.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << one.error_message();
  EXPECT_THAT(one.error_message(),
              HasSubstr("request: not a CreateReferralRequest message"));
  grpc::Status many = call("service:intake", "CreateReferrals", garbage);
  EXPECT_EQ(many.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << many.error_message();
  EXPECT_THAT(many.error_message(),
              HasSubstr("request: not a CreateReferralsRequest message"));
  grpc::Status watch = call("physician", "WatchQueue", garbage);
  EXPECT_EQ(watch.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << watch.error_message();
  EXPECT_THAT(watch.error_message(),
              HasSubstr("request: not a WatchQueueRequest message"));
  // The caller is checked first: no token is UNAUTHENTICATED whatever the body.
  EXPECT_EQ(call("", "CreateReferral", garbage).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("", "WatchQueue", garbage).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // A well-formed batch over the wire: each case holds both results whole.
  auto engine = t::LoadRepositoryEngine();
  ASSERT_THAT(engine, t::IsOk());
  tools::Overrides o = t::AdultContext("NY");
  for (int i = 1; i <= 9; ++i)
    o["phq9." + std::to_string(i)] = i <= 5 ? "2" : "0";
  auto answers = t::ScriptedScreening(**engine, o);
  ASSERT_THAT(answers, t::IsOk());
  auto result = (*engine)->Score(*answers);
  ASSERT_THAT(result, t::IsOk());
  referral::v1::CreateReferralsRequest batch;
  batch.set_view(referral::v1::REFERRAL_VIEW_FULL);
  for (int k = 0; k < 2; ++k) {
    auto* req = batch.add_requests();
    req->set_request_id(absl::StrCat("wire-", k));
    req->set_screening(absl::StrCat("users/u", k, "/screenings/s", k));
    *req->mutable_result() = *result;
    req->mutable_result()->set_ruleset_version("v9");
    *req->mutable_previous_result() = *result;
    req->add_changes("a change");
  }
  referral::v1::CreateReferralsResponse created;
  grpc::Status s = referral_stub_->CreateReferrals(As("service:intake").get(),
                                                   batch, &created);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(created.referrals_size(), 2);
  for (const auto& r : created.referrals()) {
    EXPECT_EQ(r.result().scores_size(), result->scores_size());
    EXPECT_EQ(r.result().ruleset_version(), "v9");
    EXPECT_EQ(r.previous_result().SerializeAsString(),
              result->SerializeAsString());
    EXPECT_THAT(r.changes(), ::testing::ElementsAre("a change"));
  }
}

// Patient A's screening, result and referral, tried by patient B: every read
// and write answers exactly as for a screening that does not exist, and A's
// data is untouched.
TEST_F(AuthE2eTest, PatientBCannotReachPatientAsScreeningResultOrReferral) {
  const std::string a_name = CompleteScreening(
      "alice", {2, 2, 2, 2, 1, 1, 1, 0, 0, 2});  // therapy: a referral
  const std::string missing = "users/alice/screenings/doesnotexist";
  // What B gets for A's screening must equal what B gets for a missing one.
  auto same_as_missing =
      [&](const std::function<grpc::Status(const std::string&)>& call,
          const char* what) {
        const grpc::Status real = call(a_name), none = call(missing);
        EXPECT_EQ(real.error_code(), grpc::StatusCode::NOT_FOUND) << what;
        EXPECT_EQ(real.error_code(), none.error_code()) << what;
        EXPECT_EQ(real.error_message(), none.error_message()) << what;
      };
  same_as_missing(
      [&](const std::string& n) {
        intake::v1::GetScreeningRequest r;
        r.set_name(n);
        intake::v1::Screening out;
        return intake_stub_->GetScreening(As("patient:bob").get(), r, &out);
      },
      "GetScreening");
  same_as_missing(
      [&](const std::string& n) {
        intake::v1::GetNextItemsRequest r;
        r.set_name(n);
        intake::v1::NextItems out;
        return intake_stub_->GetNextItems(As("patient:bob").get(), r, &out);
      },
      "GetNextItems");
  same_as_missing(
      [&](const std::string& n) {
        intake::v1::SubmitAnswersRequest r;
        r.set_name(n);
        r.set_etag("1");
        r.set_request_id("x1");
        auto* a = r.add_answers();
        a->set_item_id("phq9.1");
        a->set_option_value(0);
        intake::v1::SubmitAnswersResponse out;
        return intake_stub_->SubmitAnswers(As("patient:bob").get(), r, &out);
      },
      "SubmitAnswers");
  same_as_missing(
      [&](const std::string& n) {
        intake::v1::CompleteScreeningRequest r;
        r.set_name(n);
        r.set_etag("1");
        r.set_request_id("x2");
        intake::v1::CompleteScreeningResponse out;
        return intake_stub_->CompleteScreening(As("patient:bob").get(), r,
                                               &out);
      },
      "CompleteScreening");
  same_as_missing(
      [&](const std::string& n) {
        intake::v1::AbandonScreeningRequest r;
        r.set_name(n);
        intake::v1::Screening out;
        return intake_stub_->AbandonScreening(As("patient:bob").get(), r, &out);
      },
      "AbandonScreening");
  same_as_missing(
      [&](const std::string& n) {
        intake::v1::GetMyResultRequest r;
        r.set_name(n);
        intake::v1::ScreeningResult out;
        return intake_stub_->GetMyResult(As("patient:bob").get(), r, &out);
      },
      "GetMyResult");
  same_as_missing(
      [&](const std::string& n) {
        referral::v1::GetMyReferralRequest r;
        r.set_screening(n);
        referral::v1::MyReferral out;
        return referral_stub_->GetMyReferral(As("patient:bob").get(), r, &out);
      },
      "GetMyReferral");
  // Listing or starting under A's id: refused the same way for any other id.
  for (const std::string parent : {"users/alice", "users/nobody-at-all"}) {
    intake::v1::ListMyResultsRequest list;
    list.set_parent(parent);
    intake::v1::ListMyResultsResponse results;
    EXPECT_EQ(
        intake_stub_->ListMyResults(As("patient:bob").get(), list, &results)
            .error_code(),
        grpc::StatusCode::PERMISSION_DENIED)
        << parent;
    intake::v1::StartScreeningRequest start;
    start.set_parent(parent);
    start.set_consent_version("c1");
    intake::v1::Screening s;
    EXPECT_EQ(intake_stub_->StartScreening(As("patient:bob").get(), start, &s)
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED)
        << parent;
  }
  // A still sees her completed screening, result and referral.
  intake::v1::GetMyResultRequest mine;
  mine.set_name(a_name);
  intake::v1::ScreeningResult result;
  ASSERT_TRUE(
      intake_stub_->GetMyResult(As("patient:alice").get(), mine, &result).ok());
  EXPECT_EQ(result.name(), a_name);
  referral::v1::GetMyReferralRequest my_ref;
  my_ref.set_screening(a_name);
  referral::v1::MyReferral view;
  EXPECT_TRUE(
      referral_stub_->GetMyReferral(As("patient:alice").get(), my_ref, &view)
          .ok());
  intake::v1::ListMyResultsRequest list;
  list.set_parent("users/alice");
  intake::v1::ListMyResultsResponse results;
  ASSERT_TRUE(
      intake_stub_->ListMyResults(As("patient:alice").get(), list, &results)
          .ok());
  EXPECT_EQ(results.results_size(), 1);
}

// After a person's screening and a clinician's decision with a written
// reason, nothing in Redis (keys, values, the append-only file on disk) holds
// the person's id, an answer's item id, the free-text reason or any result
// text; the run's logs hold none of them either, nor any token.
TEST_F(AuthE2eTest, RedisAndLogsHoldNoAnswersReasonsOrIds) {
  const std::string user = "vivian-7f3k2p9q";
  const std::string reason = "spoke-by-phone-safety-plan-zq81";
  const std::string name = CompleteScreening(
      user, {2, 2, 2, 2, 1, 1, 1, 0, 0, 2});  // therapy: reviewed
  referral::v1::ListQueueResponse queue;
  ASSERT_TRUE(
      referral_stub_->ListQueue(As("physician:dr-dump").get(), {}, &queue)
          .ok());
  ASSERT_EQ(queue.cases_size(), 1);
  referral::v1::ClaimCaseRequest claim;
  claim.set_name(queue.cases(0).name());
  claim.set_request_id("claim-1");
  referral::v1::Referral held;
  ASSERT_TRUE(
      referral_stub_->ClaimCase(As("physician:dr-dump").get(), claim, &held)
          .ok());
  referral::v1::DecideCaseRequest decide;
  decide.set_name(held.name());
  decide.set_request_id("decide-1");
  decide.set_etag(held.etag());
  decide.mutable_decision()->set_action(referral::v1::Decision::CONFIRM);
  decide.mutable_decision()->set_reason(reason);
  referral::v1::Referral decided;
  grpc::Status st = referral_stub_->DecideCase(As("physician:dr-dump").get(),
                                               decide, &decided);
  ASSERT_TRUE(st.ok()) << st.error_message();

  // Plaintext that would betray the person: their id, item ids of answers
  // (every answer and score carries one), the reason, result wording.
  const std::vector<std::string> secrets = {user,    reason,     "phq9.",
                                            "gad7.", "Moderate", "therapy"};
  redis::Client client(redis_->ClientOptions());
  std::string everything;
  std::string cursor = "0";
  int keys = 0;
  do {
    auto r = client.Command({"SCAN", cursor, "COUNT", "1000"},
                            absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(r.ok());
    cursor = r->elements[0].str;
    for (const auto& k : r->elements[1].elements) {
      ++keys;
      everything += k.str + "\n";
      auto type =
          client.Command({"TYPE", k.str}, absl::Now() + absl::Seconds(5));
      ASSERT_TRUE(type.ok());
      std::vector<std::string> read;
      if (type->str == "hash") read = {"HGETALL", k.str};
      if (type->str == "list") read = {"LRANGE", k.str, "0", "-1"};
      if (type->str == "zset")
        read = {"ZRANGE", k.str, "0", "-1", "WITHSCORES"};
      if (type->str == "set") read = {"SMEMBERS", k.str};
      if (type->str == "string") read = {"GET", k.str};
      if (type->str == "stream") read = {"XRANGE", k.str, "-", "+"};
      ASSERT_FALSE(read.empty()) << type->str;
      auto v = client.Command(read, absl::Now() + absl::Seconds(5));
      ASSERT_TRUE(v.ok());
      std::function<void(const redis::Reply&)> add =
          [&](const redis::Reply& x) {
            everything += x.str + "\n";
            for (const auto& e : x.elements) add(e);
          };
      add(*v);
    }
  } while (cursor != "0");
  EXPECT_GE(keys, 8) << "the run stored sessions, indexes and a referral case";
  // And the append-only file on disk (no compression there).
  // (appendfsync always: every acknowledged write is on disk already.)
  const std::string aof_dir = dir_.path() + "/appendonlydir";
  std::string aof;
  for (const auto& entry : std::filesystem::directory_iterator(aof_dir))
    aof += t::ReadFile(entry.path().string());
  EXPECT_GT(aof.size(), 1000u);
  for (const auto& secret : secrets) {
    EXPECT_THAT(everything, Not(HasSubstr(secret))) << secret;
    EXPECT_THAT(aof, Not(HasSubstr(secret))) << secret << " in the AOF";
  }
  for (Service* s : {&scoring_, &referral_, &intake_}) {
    const std::string log = t::ReadFile(s->log);
    for (const auto& secret : secrets)
      EXPECT_THAT(log, Not(HasSubstr(secret))) << s->log;
    EXPECT_THAT(log, Not(HasSubstr("eyJ"))) << "no token";
  }
}

// The logs of all that carry no token and no one's id.
TEST_F(AuthE2eTest, LogsCarryNoTokens) {
  CompleteScreening("carol-secret-id", {1, 1, 1, 1, 1, 1, 1, 1, 0, 1});
  scoring::v1::Catalog catalog;
  (void)scoring_stub_->DescribeCatalog(As("bad").get(), {}, &catalog);
  (void)scoring_stub_->DescribeCatalog(As("patient:carol-secret-id").get(), {},
                                       &catalog);
  ASSERT_FALSE(tokens_used_.empty());
  for (Service* s : {&scoring_, &referral_, &intake_}) {
    const std::string log = t::ReadFile(s->log);
    EXPECT_THAT(log, Not(HasSubstr("eyJ")))
        << s->log << ": a JWT (base64 of '{\"')";
    EXPECT_THAT(log, Not(HasSubstr("carol-secret-id"))) << s->log;
    for (const auto& token : tokens_used_)
      EXPECT_THAT(log, Not(HasSubstr(token.substr(token.rfind('.') + 1))));
  }
  EXPECT_THAT(t::ReadFile(scoring_.log),
              HasSubstr("call refused: credentials"));
  EXPECT_THAT(t::ReadFile(scoring_.log), HasSubstr("\"why\":\"signature\""))
      << "the other key signs under the same key id: its signature does not "
         "verify";
}

// A caller without a token chooses the method path it sends: an unknown
// one is answered UNIMPLEMENTED and its text never reaches the log, while a
// real method is still logged by name.
TEST_F(AuthE2eTest, LogsNameOnlyTheServicesOwnMethods) {
  auto call = [&](const std::string& method) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    return RawUnary(intake_.address, &ctx, method, "");  // an empty message
  };
  EXPECT_EQ(call("/aqueduct.intake.v1.IntakeService/WROTE-THIS-INTO-LOGS")
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(call("/attacker.Chosen-Text/Method").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(call("/aqueduct.intake.v1.IntakeService/GetScreening").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  absl::SleepFor(absl::Milliseconds(200));  // the log lines are written
  const std::string log = t::ReadFile(intake_.log);
  EXPECT_THAT(log, Not(HasSubstr("WROTE-THIS-INTO-LOGS")));
  EXPECT_THAT(log, Not(HasSubstr("Chosen-Text")));
  EXPECT_THAT(log, HasSubstr("not a method of this service"));
  EXPECT_THAT(log, HasSubstr("/aqueduct.intake.v1.IntakeService/GetScreening"));
}

// Bytes that are not the request message, on the methods gRPC parses for
// the service (all unary ones but referral's creates): refused, never
// served, and nothing is written. gRPC's callback API answers them before
// any service code runs (README, "Failure behaviour", says with what).
TEST_F(AuthE2eTest, UndecodableRequestsAreRefusedBeforeTheService) {
  const std::string garbage("\xff\xff\xff\xff", 4);
  // A string field holding a byte that is not UTF-8: field 1 (parent) of
  // StartScreeningRequest, 2 (page_token) of ListQueueRequest, 2
  // (ruleset_version) of ScoreAnswersRequest.
  auto bad_string = [](char field) {
    return std::string(1, static_cast<char>(field << 3 | 2)) + "\x01\xff";
  };
  for (const bool utf8 : {false, true}) {
    grpc::Status s =
        RawUnary(intake_.address, As("patient:u-raw").get(),
                 "/aqueduct.intake.v1.IntakeService/StartScreening",
                 utf8 ? bad_string(1) : garbage);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED)
        << s.error_message();
    s = RawUnary(referral_.address, As("clinician").get(),
                 "/aqueduct.referral.v1.ReferralService/ListQueue",
                 utf8 ? bad_string(2) : garbage);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED)
        << s.error_message();
    s = RawUnary(scoring_.address, As("service:intake").get(),
                 "/aqueduct.scoring.v1.ScoringService/ScoreAnswers",
                 utf8 ? bad_string(2) : garbage);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED)
        << s.error_message();
  }
  redis::Client admin(redis_->ClientOptions());
  auto keys =
      admin.Command({"KEYS", "aq:intake:*"}, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(keys.ok());
  EXPECT_TRUE(keys->elements.empty()) << "no screening was started";
}

// Keys as deployed: the identity provider's key signs people and staff,
// intake's key only intake's service tokens. Each key's token of a role it
// is not granted is UNAUTHENTICATED, like any bad token, and a screening
// still completes with intake calling scoring and referral on its own key.
TEST_F(AuthE2eTest, EachKeySignsOnlyTheRolesItIsGranted) {
  t::TestAuth split(t::TestAuth::Keys::kSplit);
  Service scoring =
      Start("scoring-split", "services/scoring/aqueduct-scoring",
            {"--catalog=" + t::SourcePath("data/catalog/catalog.textproto"),
             "--rulesets=" + t::SourcePath("data/rulesets")},
            {}, &split);
  Service referral =
      Start("referral-split", "services/referral/aqueduct-referral",
            {"--redis=" + redis_->address()}, {}, &split);
  Service intake =
      Start("intake-split", "services/intake/aqueduct-intake",
            {"--redis=" + redis_->address(), "--scoring=" + scoring.address,
             "--referral=" + referral.address,
             "--service_key=" + split.private_key_file(),
             "--service_key_id=" + split.service_key_id()},
            {}, &split);
  for (Service* s : {&scoring, &referral, &intake})
    ASSERT_TRUE(WaitServing(s->address)) << t::ReadFile(s->log);
  auto intake_stub =
      intake::v1::IntakeService::NewStub(Channel(intake.address));
  auto scoring_stub =
      scoring::v1::ScoringService::NewStub(Channel(scoring.address));
  auto referral_stub =
      referral::v1::ReferralService::NewStub(Channel(referral.address));
  auto with = [](const std::string& token) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    c->AddMetadata("authorization", auth::BearerValue(token));
    return c;
  };

  // The attack: intake's key minting a person's and a clinician's token.
  intake::v1::StartScreeningRequest start;
  start.set_parent("users/u-forged");
  start.set_consent_version("c1");
  intake::v1::Screening forged;
  EXPECT_EQ(
      intake_stub
          ->StartScreening(
              with(split.TokenSignedBy("intake", "patient", "u-forged")).get(),
              start, &forged)
          .error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  referral::v1::ListQueueRequest queue;
  referral::v1::ListQueueResponse listed;
  EXPECT_EQ(referral_stub
                ->ListQueue(
                    with(split.TokenSignedBy("intake", "clinician", "c-forged"))
                        .get(),
                    queue, &listed)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // And the identity provider's key minting intake's service token.
  scoring::v1::DescribeCatalogRequest describe;
  scoring::v1::Catalog catalog;
  EXPECT_EQ(scoring_stub
                ->DescribeCatalog(
                    with(split.TokenSignedBy("idp", "service", "intake")).get(),
                    describe, &catalog)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // Each key's own roles still work.
  EXPECT_TRUE(
      scoring_stub
          ->DescribeCatalog(
              with(split.TokenSignedBy("intake", "service", "intake")).get(),
              describe, &catalog)
          .ok());
  EXPECT_TRUE(referral_stub
                  ->ListQueue(with(split.Token("clinician", "c-1")).get(),
                              queue, &listed)
                  .ok());
  // A whole screening: the person's token from the identity provider's key,
  // intake's calls to scoring and referral on its own.
  start.set_parent("users/u-real");
  intake::v1::Screening screening;
  ASSERT_TRUE(intake_stub
                  ->StartScreening(with(split.Token("patient", "u-real")).get(),
                                   start, &screening)
                  .ok());
  tools::Overrides o = t::AdultContext("NY");
  for (int i = 1; i <= 9; ++i) o["phq9." + std::to_string(i)] = "2";
  std::string etag = screening.etag();
  for (int page = 0; page < 20; ++page) {
    intake::v1::GetNextItemsRequest next_req;
    next_req.set_name(screening.name());
    intake::v1::NextItems next;
    ASSERT_TRUE(intake_stub
                    ->GetNextItems(with(split.Token("patient", "u-real")).get(),
                                   next_req, &next)
                    .ok());
    if (next.items().empty()) break;
    intake::v1::SubmitAnswersRequest submit;
    submit.set_name(screening.name());
    submit.set_etag(next.etag());
    submit.set_request_id(absl::StrCat("p", page));
    for (const auto& ask : next.items())
      *submit.add_answers() = *tools::ScriptedAnswer(ask.item(), o);
    intake::v1::SubmitAnswersResponse submitted;
    ASSERT_TRUE(
        intake_stub
            ->SubmitAnswers(with(split.Token("patient", "u-real")).get(),
                            submit, &submitted)
            .ok());
    etag = submitted.screening().etag();
  }
  intake::v1::CompleteScreeningRequest complete;
  complete.set_name(screening.name());
  complete.set_etag(etag);
  complete.set_request_id("c");
  intake::v1::CompleteScreeningResponse done;
  const grpc::Status completed = intake_stub->CompleteScreening(
      with(split.Token("patient", "u-real")).get(), complete, &done);
  ASSERT_TRUE(completed.ok()) << completed.error_message();
  EXPECT_TRUE(done.has_result()) << "scored by scoring on intake's own key";
  EXPECT_FALSE(done.case_name().empty()) << "handed off on intake's own key";
  absl::SleepFor(absl::Milliseconds(200));  // the log lines are written
  EXPECT_THAT(t::ReadFile(intake.log), HasSubstr("key_role"));
  EXPECT_THAT(t::ReadFile(scoring.log), HasSubstr("key_role"));
}

// Redis with a password (the run command starts its Redis with one): a
// service given it in a file (AQUEDUCT_REDIS_PASSWORD_FILE, so it is in no
// command line) serves; given a wrong one it stays NOT_SERVING and says
// why, without the password.
TEST_F(AuthE2eTest, RedisPasswordComesFromAFile) {
  t::TempDir locked_dir;
  auto locked = t::RedisServer::Start(locked_dir.path(), "s3cret-redis-pw");
  ASSERT_TRUE(locked.ok()) << locked.status();
  for (const std::string password : {"s3cret-redis-pw", "wrong-guess-pw"}) {
    const std::string file = locked_dir.path() + "/pw-" + password;
    std::ofstream(file) << password << "\n";
    Service referral =
        Start("referral-" + password, "services/referral/aqueduct-referral",
              {"--redis=" + (*locked)->address()},
              {"AQUEDUCT_REDIS_PASSWORD_FILE=" + file});
    ASSERT_TRUE(referral.process != nullptr);
    const std::string& addr = referral.address;
    const std::string& log = referral.log;
    if (password == "s3cret-redis-pw") {
      EXPECT_TRUE(WaitServing(addr)) << t::ReadFile(log);
    } else {
      absl::SleepFor(absl::Seconds(1));
      auto h = server::CheckHealth(Channel(addr), "",
                                   absl::Now() + absl::Seconds(1));
      ASSERT_TRUE(h.ok());
      EXPECT_FALSE(*h) << "NOT_SERVING with the wrong password";
      EXPECT_THAT(t::ReadFile(log), HasSubstr("authentication failed"));
    }
    EXPECT_THAT(t::ReadFile(log), Not(HasSubstr(password)));
  }
}

// A Redis with ACL users (AQUEDUCT_REDIS_USER, the password in a file):
// intake and referral each sign in as a user that reaches only its own
// service's keys, and a whole screening is completed and handed off.
TEST_F(AuthE2eTest, EachServiceCanSignInAsAnAclUserReachingOnlyItsOwnKeys) {
  t::TempDir acl_dir;
  auto locked = t::RedisServer::Start(acl_dir.path(), "admin-redis-pw");
  ASSERT_TRUE(locked.ok()) << locked.status();
  redis::Client admin((*locked)->ClientOptions());
  // Each command's own deadline: starting two services and taking a
  // screening can outlast any one fixed deadline (under ThreadSanitizer).
  auto soon = [] { return absl::Now() + absl::Seconds(5); };
  std::map<std::string, std::vector<std::string>> env;
  for (const std::string service : {"intake", "referral"}) {
    const std::string password = service + "-redis-pw";
    ASSERT_TRUE(admin
                    .Command({"ACL", "SETUSER", service, "on", ">" + password,
                              "~aq:" + service + ":*", "+@all"},
                             soon())
                    .ok());
    const std::string file = acl_dir.path() + "/" + service + "-pw";
    std::ofstream(file) << password << "\n";
    env[service] = {"AQUEDUCT_REDIS_USER=" + service,
                    "AQUEDUCT_REDIS_PASSWORD_FILE=" + file};
  }
  referral_ = Start("referral-acl", "services/referral/aqueduct-referral",
                    {"--redis=" + (*locked)->address()}, env["referral"]);
  intake_ =
      Start("intake-acl", "services/intake/aqueduct-intake",
            {"--redis=" + (*locked)->address(), "--scoring=" + scoring_.address,
             "--referral=" + referral_.address,
             "--service_key=" + auth_.private_key_file(),
             std::string("--service_key_id=") + t::TestAuth::kKeyId},
            env["intake"]);
  for (Service* s : {&referral_, &intake_})
    ASSERT_TRUE(WaitServing(s->address)) << t::ReadFile(s->log);
  intake_stub_ = intake::v1::IntakeService::NewStub(Channel(intake_.address));

  CompleteScreening("acl-person", {2, 2, 2, 2, 2, 1, 1, 1, 0});
  auto outbox = admin.Command({"ZCARD", "aq:intake:outbox"}, soon());
  ASSERT_TRUE(outbox.ok()) << outbox.status();
  EXPECT_EQ(outbox->integer, 0) << "handed off: out of the outbox";
  auto cases = admin.Command({"KEYS", "aq:referral:*"}, soon());
  ASSERT_TRUE(cases.ok());
  EXPECT_FALSE(cases->elements.empty())
      << "referral stored the case as its own user";
  auto sessions = admin.Command({"KEYS", "aq:intake:*"}, soon());
  ASSERT_TRUE(sessions.ok());
  EXPECT_FALSE(sessions->elements.empty());
  // Each user is refused the other's keys (Redis's own check of the ACL).
  auto crossed = admin.Command(
      {"ACL", "DRYRUN", "intake", "GET", "aq:referral:{x}:case"}, soon());
  ASSERT_TRUE(crossed.ok());
  EXPECT_THAT(crossed->str, HasSubstr("no permissions"));
  for (const Service* s : {&referral_, &intake_}) {
    EXPECT_THAT(t::ReadFile(s->log), Not(HasSubstr("-redis-pw")));
    EXPECT_THAT(t::ReadFile(s->log), Not(HasSubstr("authentication failed")));
  }
}

}  // namespace
}  // namespace aqueduct
