// Transport security end to end: the three binaries with certificates from a
// private CA made here with openssl (as the run command does). Callers need
// TLS; a service identity is only accepted with that service's client
// certificate (mutual TLS); a certificate from another CA is refused.

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/authorizer.h"
#include "common/server/health_client.h"
#include "common/server/tls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protos/intake/v1/intake_service.grpc.pb.h"
#include "protos/referral/v1/referral_service.grpc.pb.h"
#include "tests/testing/auth.h"
#include "tests/testing/process.h"
#include "tests/testing/screening.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct {
namespace {

namespace t = ::aqueduct::testing;
using ::testing::HasSubstr;

// Runs a shell command; true when it exits 0.
bool Sh(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

class TlsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tls_ = dir_.path() + "/tls";
    ASSERT_TRUE(Sh("mkdir -p " + tls_));
    ASSERT_TRUE(MakeCa("ca"));
    ASSERT_TRUE(MakeCa("other-ca"));
    for (const char* name : {"intake", "scoring", "referral", "mallory"})
      ASSERT_TRUE(MakeCert("ca", name));
    ASSERT_TRUE(MakeCert("other-ca", "intake", "forged-intake"));

    auto redis = t::RedisServer::Start(dir_.path());
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = std::move(*redis);
    scoring_ =
        Start("scoring",
              {"--catalog=" + t::SourcePath("data/catalog/catalog.textproto"),
               "--rulesets=" + t::SourcePath("data/rulesets")});
    referral_ = Start("referral", {"--redis=" + redis_->address()});
    intake_ = Start("intake",
                    {"--redis=" + redis_->address(),
                     "--scoring=127.0.0.1:" + Port(scoring_),
                     "--referral=127.0.0.1:" + Port(referral_),
                     "--service_key=" + auth_.private_key_file(),
                     std::string("--service_key_id=") + t::TestAuth::kKeyId});
    for (const auto& addr : {scoring_, referral_, intake_}) {
      ASSERT_TRUE(WaitServing(addr))
          << addr << "\n"
          << t::ReadFile(dir_.path() + "/intake.log");
    }
  }

  bool MakeCa(const std::string& ca) {
    return Sh(absl::StrCat("openssl genpkey -algorithm EC -pkeyopt "
                           "ec_paramgen_curve:P-256 -out ",
                           tls_, "/", ca, "-key.pem")) &&
           Sh(absl::StrCat(
               "openssl req -x509 -new -key ", tls_, "/", ca,
               "-key.pem -subj '/CN=", ca,
               "' -days 2 -addext basicConstraints=critical,CA:TRUE -addext "
               "keyUsage=critical,keyCertSign -out ",
               tls_, "/", ca, ".pem"));
  }
  // A certificate with common name `cn`, signed by `ca`, saved as `file`.
  bool MakeCert(const std::string& ca, const std::string& cn,
                const std::string& file = "") {
    const std::string f = absl::StrCat(tls_, "/", file.empty() ? cn : file);
    std::ofstream(f + ".ext") << "subjectAltName=DNS:localhost,IP:127.0.0."
                                 "1\nextendedKeyUsage=serverAuth,clientAuth\n";
    return Sh(absl::StrCat("openssl genpkey -algorithm EC -pkeyopt "
                           "ec_paramgen_curve:P-256 -out ",
                           f, "-key.pem")) &&
           Sh(absl::StrCat("openssl req -new -key ", f,
                           "-key.pem -subj '/CN=", cn, "' -out ", f, ".csr")) &&
           Sh(absl::StrCat("openssl x509 -req -in ", f, ".csr -CA ", tls_, "/",
                           ca, ".pem -CAkey ", tls_, "/", ca,
                           "-key.pem -CAcreateserial -days 2 -extfile ", f,
                           ".ext -out ", f, ".pem"));
  }

  std::string Start(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(),
                {"--auth_keys=" + auth_.keys_dir(),
                 absl::StrCat("--tls_cert=", tls_, "/", name, ".pem"),
                 absl::StrCat("--tls_key=", tls_, "/", name, "-key.pem"),
                 absl::StrCat("--tls_ca=", tls_, "/ca.pem")});
    auto s = t::StartService(
        dir_.path(), name, absl::StrCat("services/", name, "/aqueduct-", name),
        args, {t::DataKeysEnv()});
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return "";
    processes_.push_back(std::move(s->process));
    // An IP literal (the certificates name 127.0.0.1 too): no DNS resolver.
    return s->address;
  }
  static std::string Port(const std::string& addr) {
    return addr.substr(addr.rfind(':') + 1);
  }

  // A channel trusting `ca`, presenting `client` ("" = no client cert).
  std::shared_ptr<grpc::Channel> Tls(const std::string& addr,
                                     const std::string& client = "",
                                     const std::string& ca = "ca") {
    server::TlsConfig c;
    c.ca_file = absl::StrCat(tls_, "/", ca, ".pem");
    if (!client.empty()) {
      c.cert_file = absl::StrCat(tls_, "/", client, ".pem");
      c.key_file = absl::StrCat(tls_, "/", client, "-key.pem");
    }
    auto creds = server::ChannelCredentialsFor(c);
    EXPECT_TRUE(creds.ok()) << creds.status();
    return grpc::CreateChannel(addr, *creds);
  }
  bool WaitServing(const std::string& addr) {
    return t::WaitServing(Tls(addr));
  }
  std::unique_ptr<grpc::ClientContext> As(const std::string& role,
                                          const std::string& subject) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    auth_.Attach(*c, role, subject);
    return c;
  }
  // CreateReferral with an empty request as intake's service identity over
  // `channel`: past the checks it is INVALID_ARGUMENT.
  grpc::StatusCode CreateAsIntake(
      const std::shared_ptr<grpc::Channel>& channel) {
    auto stub = referral::v1::ReferralService::NewStub(channel);
    referral::v1::Referral out;
    return stub->CreateReferral(As("service", "intake").get(), {}, &out)
        .error_code();
  }

  t::TempDir dir_;
  t::TestAuth auth_;
  std::string tls_;
  std::unique_ptr<t::RedisServer> redis_;
  std::vector<std::unique_ptr<t::Subprocess>> processes_;
  std::string scoring_, referral_, intake_;
};

TEST_F(TlsE2eTest, CallersNeedTlsAndServicesTheirOwnCertificate) {
  // Plaintext: no connection at all.
  auto plain = referral::v1::ReferralService::NewStub(
      grpc::CreateChannel(referral_, grpc::InsecureChannelCredentials()));
  referral::v1::ListQueueResponse queue;
  EXPECT_EQ(
      plain->ListQueue(As("physician", "dr").get(), {}, &queue).error_code(),
      grpc::StatusCode::UNAVAILABLE);
  // TLS without a client certificate: a clinician's portal works.
  auto portal = referral::v1::ReferralService::NewStub(Tls(referral_));
  EXPECT_TRUE(portal->ListQueue(As("physician", "dr").get(), {}, &queue).ok());
  // A service token is not enough: the service must present its own
  // certificate.
  EXPECT_EQ(CreateAsIntake(Tls(referral_)), grpc::StatusCode::PERMISSION_DENIED)
      << "no client certificate";
  EXPECT_EQ(CreateAsIntake(Tls(referral_, "mallory")),
            grpc::StatusCode::PERMISSION_DENIED)
      << "our CA, another name";
  EXPECT_EQ(CreateAsIntake(Tls(referral_, "forged-intake")),
            grpc::StatusCode::UNAVAILABLE)
      << "the right name from another CA: the handshake fails";
  EXPECT_EQ(CreateAsIntake(Tls(referral_, "intake")),
            grpc::StatusCode::INVALID_ARGUMENT)
      << "intake's own certificate: past every check, the empty request is "
         "refused";
  EXPECT_THAT(t::ReadFile(dir_.path() + "/referral.log"),
              HasSubstr("service without its certificate"));
  // A server certificate from another CA is not trusted by clients either.
  EXPECT_EQ(
      portal->ListQueue(As("physician", "dr").get(), {}, &queue).error_code(),
      grpc::StatusCode::OK);
  auto distrustful =
      referral::v1::ReferralService::NewStub(Tls(referral_, "", "other-ca"));
  EXPECT_EQ(distrustful->ListQueue(As("physician", "dr").get(), {}, &queue)
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsE2eTest,
       AScreeningCompletesOverTlsWithIntakeCallingThePeersOverMutualTls) {
  auto intake = intake::v1::IntakeService::NewStub(Tls(intake_));
  auto ctx = [&] { return As("patient", "tess"); };
  intake::v1::StartScreeningRequest start;
  start.set_parent("users/tess");
  start.set_consent_version("c1");
  intake::v1::Screening s;
  ASSERT_TRUE(intake->StartScreening(ctx().get(), start, &s).ok());
  tools::Overrides o = t::AdultContext("NY");
  o["phq9.9"] = "1";  // a crisis: crisis resources, an urgent case
  std::string etag = s.etag();
  for (int page = 0; page < 20; ++page) {
    intake::v1::GetNextItemsRequest next_req;
    next_req.set_name(s.name());
    intake::v1::NextItems next;
    ASSERT_TRUE(intake->GetNextItems(ctx().get(), next_req, &next).ok());
    if (next.items().empty()) break;
    intake::v1::SubmitAnswersRequest submit;
    submit.set_name(s.name());
    submit.set_etag(next.etag());
    submit.set_request_id(absl::StrCat("p", page));
    for (const auto& ask : next.items())
      *submit.add_answers() = *tools::ScriptedAnswer(ask.item(), o);
    intake::v1::SubmitAnswersResponse submitted;
    ASSERT_TRUE(intake->SubmitAnswers(ctx().get(), submit, &submitted).ok());
    etag = submitted.screening().etag();
  }
  intake::v1::CompleteScreeningRequest complete;
  complete.set_name(s.name());
  complete.set_etag(etag);
  complete.set_request_id("c");
  intake::v1::CompleteScreeningResponse done;
  grpc::Status st = intake->CompleteScreening(ctx().get(), complete, &done);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(done.has_crisis_resources());
  EXPECT_EQ(done.handoff(), intake::v1::DELIVERED)
      << "intake reached referral over mutual TLS";
}

TEST_F(TlsE2eTest, AServiceWithoutCertificatesDoesNotStart) {
  const std::string log = dir_.path() + "/no-tls.log";
  auto p = t::Subprocess::Start(
      {t::BinaryPath("services/scoring/aqueduct-scoring"),
       "--listen=127.0.0.1:0", "--auth_keys=" + auth_.keys_dir()},
      log);
  ASSERT_TRUE(p.ok());
  auto status = (*p)->Wait(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_THAT(
      t::ReadFile(log),
      HasSubstr(
          "--tls_cert: is required (or --insecure_plaintext for development)"));
}

}  // namespace
}  // namespace aqueduct
