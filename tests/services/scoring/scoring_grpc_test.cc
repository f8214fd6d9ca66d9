// The scoring service over in-process gRPC (real server on 127.0.0.1:0).

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/server/channels.h"
#include "common/server/server_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/scoring/digest.h"
#include "services/scoring/scoring_service.h"
#include "tests/testing/auth.h"
#include "tests/testing/process.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::scoring {
namespace {

using ::aqueduct::testing::GrpcIs;
using ::testing::HasSubstr;

class ScoringGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto engine = aqueduct::testing::LoadRepositoryEngine();
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    service_ = std::make_unique<ScoringServiceImpl>(engine_, auth_.authorizer(),
                                                    &batch_pool_);
    server::ServerOptions options;
    options.max_receive_message_bytes =
        ScoringServiceImpl::kMaxRequestBytes;  // as main.cc sets it
    auto runner =
        server::ServerRunner::Start(options, {service_.get()}, nullptr);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
    // As the re-scoring job connects: a batch channel.
    stub_ = v1::ScoringService::NewStub(
        server::PeerChannel("127.0.0.1:" + std::to_string(runner_->port()),
                            nullptr, server::kBatchMaxReceiveBytes));
  }
  // A call as `role` (the scoring RPCs' callers: intake's service identity
  // by default; batch jobs for the streams).
  std::unique_ptr<grpc::ClientContext> Ctx(
      const std::string& role = "service",
      const std::string& subject = "intake") {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(10));
    if (!role.empty()) auth_.Attach(*c, role, subject);
    return c;
  }
  v1::ScoreAnswersRequest Screening(tools::Overrides o) {
    auto all = aqueduct::testing::AdultContext();
    for (auto& [k, v] : o) all[k] = v;
    auto req = aqueduct::testing::ScriptedScreening(*engine_, all);
    EXPECT_TRUE(req.ok());
    return *req;
  }
  aqueduct::testing::TestAuth auth_;
  std::shared_ptr<const ScoringEngine> engine_;
  server::WorkerPool batch_pool_{2, 64};  // as main.cc's defaults
  std::unique_ptr<ScoringServiceImpl> service_;
  std::unique_ptr<server::ServerRunner> runner_;
  std::unique_ptr<v1::ScoringService::Stub> stub_;
};

TEST_F(ScoringGrpcTest, ScoresAFullScreening) {
  v1::ScoringResult result;
  ASSERT_TRUE(
      stub_->ScoreAnswers(Ctx().get(), Screening({{"phq9.9", "2"}}), &result)
          .ok());
  EXPECT_EQ(result.ruleset_version(), "v2") << "the newest is the default";
  EXPECT_EQ(result.engine_version(), ScoringEngine::kEngineVersion);
  EXPECT_EQ(result.routing().primary_route(), common::v1::CRISIS_URGENT);
  EXPECT_TRUE(result.has_crisis_resources());
}

TEST_F(ScoringGrpcTest, BadAnswerIsInvalidArgumentNamingIt) {
  v1::ScoreAnswersRequest req;
  auto* a = req.mutable_answers()->add_answers();
  a->set_item_id("phq9.1");
  a->set_option_value(9);
  v1::ScoringResult result;
  grpc::Status s = stub_->ScoreAnswers(Ctx().get(), req, &result);
  EXPECT_THAT(s, GrpcIs(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(s.error_message(), HasSubstr("answers.answers[0].option_value"));
}

TEST_F(ScoringGrpcTest, UnknownRulesetIsNotFound) {
  v1::ScoreAnswersRequest req;
  req.set_ruleset_version("v7");
  v1::ScoringResult result;
  EXPECT_THAT(stub_->ScoreAnswers(Ctx().get(), req, &result),
              GrpcIs(grpc::StatusCode::NOT_FOUND));
}

TEST_F(ScoringGrpcTest, DescribesCatalogAndRulesets) {
  v1::Catalog catalog;
  ASSERT_TRUE(
      stub_
          ->DescribeCatalog(Ctx().get(), v1::DescribeCatalogRequest(), &catalog)
          .ok());
  EXPECT_EQ(catalog.version(), "2026-11.1");
  EXPECT_EQ(catalog.instruments_size(), 10);
  v1::DescribeCatalogRequest old;
  old.set_version("1999");
  EXPECT_THAT(stub_->DescribeCatalog(Ctx().get(), old, &catalog),
              GrpcIs(grpc::StatusCode::NOT_FOUND));
  v1::ListRulesetsResponse rulesets;
  ASSERT_TRUE(
      stub_->ListRulesets(Ctx().get(), v1::ListRulesetsRequest(), &rulesets)
          .ok());
  ASSERT_EQ(rulesets.rulesets_size(), 2);
  EXPECT_EQ(rulesets.rulesets(0).version(), "v2") << "newest first";
  EXPECT_EQ(rulesets.rulesets(1).version(), "v1");
  EXPECT_EQ(rulesets.rulesets(0).rule_ids(0), "route.crisis_acute");
  EXPECT_EQ(rulesets.rulesets(0).sets(0).name(), "ketamine_states");
}

TEST_F(ScoringGrpcTest, BatchStreamAnswersEveryItemAndSurvivesBadOnes) {
  auto ctx = Ctx("batch", "rescore");
  auto stream = stub_->ScoreBatch(ctx.get());
  const int kItems = 200;
  std::vector<v1::ScoreBatchRequest> requests;
  int want_errors = 0, want_crisis = 0;
  for (int i = 0; i < kItems; ++i) {
    v1::ScoreBatchRequest r;
    r.set_correlation_id("s" + std::to_string(i));
    *r.mutable_request() = Screening({{"phq9.9", i % 3 == 0 ? "1" : "0"}});
    const bool broken = i % 50 == 7 || i == 11;
    if (i % 50 == 7)
      r.mutable_request()->mutable_answers()->mutable_answers(0)->set_item_id(
          "nope.1");
    if (i == 11) r.clear_correlation_id();
    want_errors += broken;
    want_crisis += !broken && i % 3 == 0;
    requests.push_back(std::move(r));
  }
  // Writer and reader run together, as a batch job would.
  std::thread writer([&] {
    for (const auto& r : requests) ASSERT_TRUE(stream->Write(r));
    stream->WritesDone();
  });
  int ok = 0, errors = 0, crisis = 0;
  v1::ScoreBatchResponse response;
  std::vector<std::string> order;
  while (stream->Read(&response)) {
    order.push_back(response.correlation_id());
    if (response.has_error()) {
      ++errors;
      EXPECT_EQ(response.error().code(),
                static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
      EXPECT_THAT(
          response.error().message(),
          ::testing::AnyOf(HasSubstr("nope.1"), HasSubstr("correlation_id")));
    } else {
      ++ok;
      crisis += response.result().routing().primary_route() ==
                common::v1::CRISIS_URGENT;
    }
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(ok + errors, kItems);
  EXPECT_EQ(errors, want_errors);
  EXPECT_EQ(want_errors, 5);
  EXPECT_EQ(crisis, want_crisis);
  ASSERT_EQ(order.size(), static_cast<size_t>(kItems));
  EXPECT_EQ(order[0], "s0");
  EXPECT_EQ(order[199], "s199") << "responses keep request order";
}

// Sends `messages` as raw bytes on the bidi stream `method` (what no
// generated stub would send), then reads every response; the status ends it.
grpc::Status RawStream(grpc::ClientContext* ctx,
                       std::shared_ptr<grpc::Channel> channel,
                       const std::string& method,
                       const std::vector<std::string>& messages,
                       int* responses) {
  grpc::GenericStub stub(std::move(channel));
  grpc::CompletionQueue cq;
  void* tag;
  bool ok = false;
  auto call = stub.PrepareCall(ctx, method, &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  EXPECT_TRUE(cq.Next(&tag, &ok) && ok);
  for (const auto& m : messages) {
    grpc::Slice slice(m);
    grpc::ByteBuffer bytes(&slice, 1);
    call->Write(bytes, reinterpret_cast<void*>(2));
    if (!cq.Next(&tag, &ok) || !ok) break;  // the server ended the stream
  }
  call->WritesDone(reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  *responses = 0;
  grpc::ByteBuffer response;
  while (true) {
    call->Read(&response, reinterpret_cast<void*>(4));
    if (!cq.Next(&tag, &ok) || !ok) break;
    ++*responses;
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  cq.Next(&tag, &ok);
  return status;
}

// A message that does not parse ends a stream with INVALID_ARGUMENT naming
// it, after the ones before it were answered; gRPC's own parsing took it
// for the end of the stream, which ended OK with the rest silently lost
// (issue 24).
TEST_F(ScoringGrpcTest, StreamsRefuseAMessageThatDoesNotParse) {
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(runner_->port()),
                          grpc::InsecureChannelCredentials());
  v1::ScoreBatchRequest good;
  good.set_correlation_id("s0");
  *good.mutable_request() = Screening({});
  const std::string garbage("\xff\xff\xff\xff", 4);
  // correlation_id (field 1) holding a byte that is not UTF-8.
  const std::string not_utf8("\x0a\x01\xff", 3);
  int responses = -1;
  for (const std::string& bad : {garbage, not_utf8}) {
    auto ctx = Ctx("batch", "rescore");
    grpc::Status s = RawStream(
        ctx.get(), channel, "/aqueduct.scoring.v1.ScoringService/ScoreBatch",
        {good.SerializeAsString(), bad, good.SerializeAsString()}, &responses);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << s.error_message();
    EXPECT_THAT(s.error_message(),
                HasSubstr("message 1 of the stream: not a ScoreBatchRequest"));
    EXPECT_EQ(responses, 1) << "the message before it was answered";
  }
  auto ctx = Ctx("service", "intake");
  grpc::Status s = RawStream(ctx.get(), channel,
                             "/aqueduct.scoring.v1.ScoringService/Rescore",
                             {garbage}, &responses);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << s.error_message();
  EXPECT_THAT(s.error_message(),
              HasSubstr("message 0 of the stream: not a RescoreRequest"));
  EXPECT_EQ(responses, 0);
  // The caller is still checked first.
  auto anonymous = Ctx("");
  EXPECT_EQ(RawStream(anonymous.get(), channel,
                      "/aqueduct.scoring.v1.ScoringService/ScoreBatch",
                      {garbage}, &responses)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ScoringGrpcTest, RescoreReturnsFullResultsOnlyWhereTheDigestChanged) {
  auto ctx = Ctx("service", "intake");
  auto stream = stub_->Rescore(ctx.get());
  const auto calm = Screening({});
  const auto risk = Screening({{"phq9.9", "2"}});
  auto calm_result = engine_->Score(calm);
  ASSERT_TRUE(calm_result.ok());
  v1::RescoreRequest req;
  req.set_ruleset_version("v1");
  auto add = [&](const std::string& id, const v1::ScoreAnswersRequest& answers,
                 const v1::ResultDigest& before) {
    auto* item = req.add_items();
    item->set_correlation_id(id);
    item->set_packed_request(answers.SerializeAsString());
    *item->mutable_before() = before;
  };
  add("same", calm,
      DigestOf(*calm_result));  // stored digest matches: unchanged
  add("moved", risk,
      DigestOf(*calm_result));  // stored as calm, now a crisis: changed
  add("garbage", calm, DigestOf(*calm_result));
  req.mutable_items(2)->set_packed_request("\xff\xff not a message");
  add("", calm, DigestOf(*calm_result));
  auto bad_item = calm;
  bad_item.mutable_answers()->mutable_answers(0)->set_item_id("nope.1");
  add("bad-item", bad_item, DigestOf(*calm_result));
  ASSERT_TRUE(stream->Write(req));
  v1::RescoreResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_EQ(resp.items_size(), 5);
  EXPECT_EQ(resp.items(0).correlation_id(), "same");
  EXPECT_FALSE(resp.items(0).changed());
  EXPECT_FALSE(resp.items(0).has_result())
      << "unchanged items carry the digest only";
  EXPECT_EQ(resp.items(0).after().SerializeAsString(),
            DigestOf(*calm_result).SerializeAsString());
  EXPECT_TRUE(resp.items(1).changed());
  EXPECT_EQ(resp.items(1).after().primary_route(), common::v1::CRISIS_URGENT);
  EXPECT_EQ(resp.items(1).result().routing().primary_route(),
            common::v1::CRISIS_URGENT);
  EXPECT_TRUE(resp.items(1).result().has_crisis_resources());
  EXPECT_EQ(resp.items(2).error().code(),
            static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(resp.items(2).error().message(), HasSubstr("packed_request"));
  EXPECT_THAT(resp.items(3).error().message(), HasSubstr("correlation_id"));
  EXPECT_THAT(resp.items(4).error().message(), HasSubstr("nope.1"));
  EXPECT_FALSE(resp.items(4).has_after());
  // The stream goes on after per-item errors.
  v1::RescoreRequest again;
  again.set_ruleset_version("v1");
  *again.add_items() = req.items(0);
  ASSERT_TRUE(stream->Write(again));
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_EQ(resp.items_size(), 1);
  EXPECT_FALSE(resp.items(0).changed());
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// The largest batch in the largest stored form (5000 screenings stored as a
// plain answer list, the earlier layout) fits the request limit, and a
// response where half of them changed (2500 full results, over gRPC's
// default 4 MiB) reaches the job.
TEST_F(ScoringGrpcTest, AFullBatchInTheLargestFormFitsBothWays) {
  auto ctx = Ctx("service", "intake");
  auto stream = stub_->Rescore(ctx.get());
  const auto calm = Screening({});
  const auto risk = Screening({{"phq9.9", "2"}});
  auto calm_result = engine_->Score(calm);
  ASSERT_TRUE(calm_result.ok());
  const v1::ResultDigest before = DigestOf(*calm_result);
  v1::RescoreRequest req;
  req.set_ruleset_version("v1");
  for (int i = 0; i < 5000; ++i) {
    auto* item = req.add_items();
    item->set_correlation_id(absl::StrCat("users/u", i, "/screenings/s", i));
    item->set_packed_request((i % 2 ? risk : calm).SerializeAsString());
    *item->mutable_before() = before;
  }
  ASSERT_GT(req.ByteSizeLong(), 1u << 20) << "over the general 1 MiB limit";
  ASSERT_TRUE(stream->Write(req));
  v1::RescoreResponse resp;
  ASSERT_TRUE(stream->Read(&resp)) << stream->Finish().error_message();
  EXPECT_GT(resp.ByteSizeLong(), 4u << 20)
      << "over gRPC's default receive limit";
  ASSERT_EQ(resp.items_size(), 5000);
  int changed = 0;
  for (const auto& item : resp.items())
    changed += item.changed() && item.has_result();
  EXPECT_EQ(changed, 2500);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ScoringGrpcTest, RescoreRejectsAnUnknownVersionAndOversizedBatches) {
  {
    auto ctx = Ctx("service", "intake");
    auto stream = stub_->Rescore(ctx.get());
    v1::RescoreRequest req;
    req.set_ruleset_version("v7");
    req.add_items()->set_correlation_id("a");
    stream->Write(req);
    v1::RescoreResponse resp;
    EXPECT_FALSE(stream->Read(&resp));
    grpc::Status s = stream->Finish();
    EXPECT_THAT(s, GrpcIs(grpc::StatusCode::NOT_FOUND));
    EXPECT_THAT(s.error_message(), HasSubstr("v7"));
  }
  {
    auto ctx = Ctx("service", "intake");
    auto stream = stub_->Rescore(ctx.get());
    v1::RescoreRequest req;
    req.set_ruleset_version("v1");
    for (int i = 0; i < 5001; ++i) req.add_items()->set_correlation_id("x");
    stream->Write(req);
    v1::RescoreResponse resp;
    EXPECT_FALSE(stream->Read(&resp));
    grpc::Status s = stream->Finish();
    EXPECT_THAT(s, GrpcIs(grpc::StatusCode::INVALID_ARGUMENT));
    EXPECT_THAT(s.error_message(), HasSubstr("at most 5000"));
  }
  {
    auto ctx = Ctx("service", "intake");
    auto stream = stub_->Rescore(ctx.get());
    v1::RescoreRequest req;  // no version
    stream->Write(req);
    v1::RescoreResponse resp;
    EXPECT_FALSE(stream->Read(&resp));
    EXPECT_THAT(stream->Finish(), GrpcIs(grpc::StatusCode::INVALID_ARGUMENT));
  }
}

// The check runs before anything else, for unary calls and streams alike:
// no token is UNAUTHENTICATED, a role that may not call is
// PERMISSION_DENIED (the full matrix is in authorizer_test and the
// end-to-end auth test).
TEST_F(ScoringGrpcTest, CallsWithoutTheRightTokenAreRefused) {
  v1::ScoringResult result;
  EXPECT_THAT(stub_->ScoreAnswers(Ctx("").get(), Screening({}), &result),
              GrpcIs(grpc::StatusCode::UNAUTHENTICATED));
  EXPECT_THAT(
      stub_->ScoreAnswers(Ctx("patient", "u1").get(), Screening({}), &result),
      GrpcIs(grpc::StatusCode::PERMISSION_DENIED));
  EXPECT_THAT(stub_->ScoreAnswers(Ctx("service", "referral").get(),
                                  Screening({}), &result),
              GrpcIs(grpc::StatusCode::PERMISSION_DENIED));
  v1::Catalog catalog;
  EXPECT_THAT(stub_->DescribeCatalog(Ctx("patient", "u1").get(),
                                     v1::DescribeCatalogRequest(), &catalog),
              GrpcIs(grpc::StatusCode::PERMISSION_DENIED));
  EXPECT_TRUE(stub_
                  ->DescribeCatalog(Ctx("operator", "ops1").get(),
                                    v1::DescribeCatalogRequest(), &catalog)
                  .ok());
  // Rescore is intake's (it re-scores for batch jobs): the batch role
  // itself, another service and a clinician are refused.
  for (const auto& [role, subject] :
       std::vector<std::pair<std::string, std::string>>{
           {"", "intake"},
           {"batch", "rescore"},
           {"service", "referral"},
           {"clinician", "intake"}}) {
    auto ctx = Ctx(role, subject);
    auto stream = stub_->Rescore(ctx.get());
    v1::RescoreResponse response;
    EXPECT_FALSE(stream->Read(&response));
    EXPECT_THAT(stream->Finish(),
                GrpcIs(role.empty() ? grpc::StatusCode::UNAUTHENTICATED
                                    : grpc::StatusCode::PERMISSION_DENIED))
        << role;
  }
}

}  // namespace
}  // namespace aqueduct::scoring
