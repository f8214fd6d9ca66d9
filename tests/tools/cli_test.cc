#include "tools/aqueductctl/cli.h"

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::tools {
namespace {

using ::aqueduct::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Cli TestCli() {
  return Cli("ctl",
             {{"intake", "ADDR", "intake", "127.0.0.1:7100"},
              {"insecure-plaintext", "", "no TLS", "false"},
              {"timeout", "SECONDS", "deadline", "10"}},
             {{"claim",
               "NAME",
               1,
               1,
               "claim a case",
               "",
               {"ctl claim x"},
               {{"lease", "SECONDS", "lease", "0"}}},
              {"queue",
               "",
               0,
               0,
               "the queue",
               "",
               {"ctl queue --all"},
               {{"page-size", "N", "per page", "20"}, {"all", "", "all", ""}},
               /*read=*/true}});
}

TEST(CliTest, VerbNameAndFlagsInAnyOrderWithDefaults) {
  auto inv = TestCli().Parse(
      {"--timeout", "3", "claim", "referrals/abc", "--lease=60", "-o"});
  ASSERT_FALSE(inv.ok()) << "-o is not a flag of claim, and needs a value";
  inv = TestCli().Parse(
      {"--timeout", "3", "claim", "referrals/abc", "--lease=60"});
  ASSERT_THAT(inv, aqueduct::testing::IsOk());
  EXPECT_EQ(inv->verb, "claim");
  EXPECT_THAT(inv->args, ElementsAre("referrals/abc"));
  EXPECT_EQ(*inv->Int("lease"), 60);
  EXPECT_EQ(*inv->Int("timeout"), 3);
  EXPECT_EQ(inv->Str("intake"), "127.0.0.1:7100") << "the default";
  EXPECT_TRUE(inv->Given("lease"));
  EXPECT_FALSE(inv->Given("intake"));
  EXPECT_FALSE(inv->Bool("insecure-plaintext"));
}

TEST(CliTest, OutputFormatAndBooleans) {
  auto inv =
      TestCli().Parse({"queue", "-o", "json", "--all", "--insecure-plaintext"});
  ASSERT_THAT(inv, aqueduct::testing::IsOk());
  EXPECT_EQ(inv->Str("output"), "json");
  EXPECT_TRUE(inv->Bool("all"));
  EXPECT_TRUE(inv->Bool("insecure-plaintext"));
  EXPECT_EQ(TestCli().Parse({"queue", "-ojson"})->Str("output"), "json");
  EXPECT_EQ(TestCli().Parse({"queue"})->Str("output"), "table");
  EXPECT_THAT(TestCli().Parse({"queue", "-o", "yaml"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("table or json, not \"yaml\"")));
}

TEST(CliTest, ErrorsNameWhatIsWrongAndWhereHelpIs) {
  const Cli cli = TestCli();
  EXPECT_THAT(cli.Parse({"claim"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("claim: NAME is required (see 'ctl help "
                                 "claim')")));
  EXPECT_THAT(cli.Parse({"claim", "a", "b"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unexpected argument \"b\"")));
  EXPECT_THAT(cli.Parse({"fly"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown command \"fly\"")));
  EXPECT_THAT(cli.Parse({"queue", "--page_size=3"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("did you mean --page-size?")));
  EXPECT_THAT(cli.Parse({"queue", "--lease=3"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--lease is not a flag of queue")));
  EXPECT_THAT(cli.Parse({"queue", "--page-size"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--page-size: needs a value")));
  auto inv = cli.Parse({"queue", "--page-size=many"});
  ASSERT_THAT(inv, aqueduct::testing::IsOk());
  EXPECT_THAT(inv->Int("page-size"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--page-size: not a whole number")));
}

TEST(CliTest, HelpForAllAndForOneVerb) {
  const Cli cli = TestCli();
  auto inv = cli.Parse({"help", "claim"});
  ASSERT_THAT(inv, aqueduct::testing::IsOk());
  EXPECT_EQ(inv->verb, "help");
  EXPECT_THAT(inv->args, ElementsAre("claim"));
  EXPECT_EQ(cli.Parse({"queue", "--help"})->verb, "help");
  EXPECT_EQ(cli.Parse({})->verb, "help");
  EXPECT_THAT(cli.Usage(), HasSubstr("claim       claim a case"));
  EXPECT_THAT(cli.Usage(), HasSubstr("64 + the gRPC status code"));
  EXPECT_THAT(cli.Usage(), HasSubstr("--intake=ADDR"));
  auto help = cli.Help("queue");
  ASSERT_THAT(help, aqueduct::testing::IsOk());
  EXPECT_THAT(*help, HasSubstr("Usage: ctl queue [flags]"));
  EXPECT_THAT(*help, HasSubstr("--page-size=N"));
  EXPECT_THAT(*help, HasSubstr("-o, --output=FORMAT"));
  EXPECT_THAT(*help, HasSubstr("Examples:\n  ctl queue --all"));
  EXPECT_FALSE(cli.Help("fly").ok());
}

TEST(CliTest, BashCompletionKnowsVerbsAndEachVerbsFlags) {
  const std::string script = TestCli().BashCompletion();
  EXPECT_THAT(script, HasSubstr("complete -F _ctl ctl"));
  EXPECT_THAT(script, HasSubstr("claim) flags=\"--lease\""));
  EXPECT_THAT(script, HasSubstr("queue) flags=\"--page-size --all --output\""));
  EXPECT_THAT(script, HasSubstr("help claim queue"));
}

std::string Jwt(const std::string& payload) {
  return absl::StrCat(absl::WebSafeBase64Escape("{\"alg\":\"RS256\"}"), ".",
                      absl::WebSafeBase64Escape(payload), ".sig");
}

TEST(CliTest, TokenSubjectReadsTheSubClaimWithAJsonParser) {
  EXPECT_EQ(TokenSubject(Jwt(R"({"sub":"me","role":"patient"})")), "me");
  // A "sub" inside another claim's string is not the subject.
  EXPECT_EQ(TokenSubject(Jwt(R"({"note":"\"sub\":\"x\"","sub":"real"})")),
            "real");
  EXPECT_EQ(TokenSubject(Jwt(R"({"sub" : "spaced"})")), "spaced");
  EXPECT_EQ(TokenSubject(Jwt(R"({"role":"patient"})")), "");
  EXPECT_EQ(TokenSubject(Jwt(R"({"sub":7})")), "") << "not a string";
  EXPECT_EQ(TokenSubject("not-a-token"), "");
  EXPECT_EQ(TokenSubject(Jwt("not json")), "");
}

}  // namespace
}  // namespace aqueduct::tools
