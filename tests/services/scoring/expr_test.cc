// The rule expression language: parsing, load-time checks, and Kleene
// three-valued evaluation.

#include "services/scoring/expr.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::scoring::expr {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;

class ExprTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = *schema_.Declare("q.1", Type::kItemNumber, {"no", "yes"});
    b_ = *schema_.Declare("q.2", Type::kItemNumber);
    total_ = *schema_.Declare("q.total", Type::kNumber);
    state_ = *schema_.Declare("ctx.state", Type::kItemCode, {"FL", "NJ", "NY"});
    flag_ = *schema_.Declare("flag.x", Type::kBool);
    schema_.DeclareSet("covered", {"FL", "NJ"});
    values_.assign(schema_.size(), Value::Unknown());
    sets_ = {{"covered", {"FL", "NJ"}}};
  }
  Truth Eval(absl::string_view text) {
    auto e = Expr::Compile(text, schema_);
    EXPECT_THAT(e, IsOk()) << text;
    return e.ok() ? e->Eval(values_.data(), sets_) : Truth::kUnknown;
  }
  Schema schema_;
  std::vector<Value> values_;
  SetTable sets_;
  int a_, b_, total_, state_, flag_;
};

TEST_F(ExprTest, ComparesNumbersAndCodes) {
  values_[total_] = Value::Number(10);
  EXPECT_EQ(Eval("q.total >= 10"), Truth::kTrue);
  EXPECT_EQ(Eval("q.total > 10"), Truth::kFalse);
  EXPECT_EQ(Eval("q.total < 10.5"), Truth::kTrue);
  EXPECT_EQ(Eval("q.total != 10"), Truth::kFalse);
  values_[a_] = Value::Number(1, "yes");
  EXPECT_EQ(Eval("q.1 == yes"), Truth::kTrue);
  EXPECT_EQ(Eval("q.1 == 1"), Truth::kTrue);
  EXPECT_EQ(Eval("q.1 != no"), Truth::kTrue);
  values_[state_] = Value::Code("FL");
  EXPECT_EQ(Eval("ctx.state == FL"), Truth::kTrue);
  EXPECT_EQ(Eval("ctx.state in covered"), Truth::kTrue);
  values_[state_] = Value::Code("NY");
  EXPECT_EQ(Eval("ctx.state in covered"), Truth::kFalse);
}

TEST_F(ExprTest, MissingIsUnknownNeverLow) {
  // q.total unknown: "below 10" is not true.
  EXPECT_EQ(Eval("q.total < 10"), Truth::kUnknown);
  EXPECT_EQ(Eval("!(q.total >= 10)"), Truth::kUnknown);
  EXPECT_EQ(Eval("ctx.state in covered"), Truth::kUnknown);
}

TEST_F(ExprTest, AbsentComparesFalse) {
  values_[total_] = Value::Absent();
  EXPECT_EQ(Eval("q.total >= 10"), Truth::kFalse);
  EXPECT_EQ(Eval("q.total < 10"), Truth::kFalse);
  values_[flag_] = Value::Absent();
  EXPECT_EQ(Eval("flag.x"), Truth::kFalse);
}

TEST_F(ExprTest, KleeneLogic) {
  values_[flag_] = Value::Bool(true);
  EXPECT_EQ(Eval("flag.x || q.total > 3"), Truth::kTrue) << "true || unknown";
  EXPECT_EQ(Eval("q.total > 3 || flag.x"), Truth::kTrue);
  EXPECT_EQ(Eval("flag.x && q.total > 3"), Truth::kUnknown);
  values_[flag_] = Value::Bool(false);
  EXPECT_EQ(Eval("flag.x && q.total > 3"), Truth::kFalse) << "false && unknown";
  EXPECT_EQ(Eval("flag.x || q.total > 3"), Truth::kUnknown);
  EXPECT_EQ(Eval("!flag.x"), Truth::kTrue);
  EXPECT_EQ(Eval("!(flag.x || !flag.x)"), Truth::kFalse);
  EXPECT_EQ(Eval(""), Truth::kTrue) << "an empty condition always holds";
}

TEST_F(ExprTest, AnsweredAndDeclined) {
  EXPECT_EQ(Eval("answered(q.1)"), Truth::kFalse);
  EXPECT_EQ(Eval("declined(q.1)"), Truth::kFalse);
  values_[a_] = Value::Declined();
  EXPECT_EQ(Eval("answered(q.1)"), Truth::kFalse);
  EXPECT_EQ(Eval("declined(q.1)"), Truth::kTrue);
  EXPECT_EQ(Eval("q.1 == yes"), Truth::kUnknown) << "a refusal is not a no";
  values_[a_] = Value::Number(0, "no");
  EXPECT_EQ(Eval("answered(q.1)"), Truth::kTrue);
}

TEST_F(ExprTest, PrecedenceAndParentheses) {
  values_[total_] = Value::Number(5);
  values_[b_] = Value::Number(2);
  values_[flag_] = Value::Bool(false);
  EXPECT_EQ(Eval("q.total >= 10 || q.2 >= 2 && q.total >= 5"), Truth::kTrue);
  EXPECT_EQ(Eval("(q.total >= 10 || q.2 >= 2) && flag.x"), Truth::kFalse);
}

TEST_F(ExprTest, LoadTimeChecksNameTheProblem) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"q.totl >= 10", "unknown name \"q.totl\""},
      {"q.total >= FL", "is a number"},
      {"ctx.state == 3", "holds codes"},
      {"ctx.state == TX", "\"TX\" is not a code of \"ctx.state\""},
      {"ctx.state in nowhere", "unknown set \"nowhere\""},
      {"q.1 >= yes", "codes compare only with == or !="},
      {"flag.x >= 1", "is true/false"},
      {"q.total", "is not true/false"},
      {"answered(q.total)", "needs an item"},
      {"(flag.x", "missing ')'"},
      {"flag.x &&", "expected a name"},
      {"flag.x flag.x", "unexpected text"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(
        Expr::Compile(c.text, schema_),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.text;
  }
}

// Found by the rules fuzzer: nesting is by recursion, so a long run of
// '(' or '!' exhausted the stack. Deep nesting is refused with a message;
// nesting up to the limit still compiles.
TEST_F(ExprTest, NestingDeeperThanTheLimitIsRefusedNotACrash) {
  for (const char* open : {"(", "!"}) {
    SCOPED_TRACE(open);
    std::string deep;
    for (int i = 0; i < 100000; ++i) deep += open;
    EXPECT_THAT(Expr::Compile(deep + "flag.x", schema_),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("nested more than 64 deep")));
  }
  std::string ok;
  for (int i = 0; i < 64; ++i) ok += "(";
  ok += "flag.x";
  for (int i = 0; i < 64; ++i) ok += ")";
  EXPECT_THAT(Expr::Compile(ok, schema_), IsOk());
  EXPECT_THAT(Expr::Compile(std::string(64, '!') + "flag.x", schema_), IsOk());
}

TEST_F(ExprTest, RecordsInputsForExplanations) {
  auto e = Expr::Compile(
      "q.total >= 10 || (q.2 >= 2 && q.total >= 5) || flag.x", schema_);
  ASSERT_THAT(e, IsOk());
  EXPECT_THAT(e->slots(), ::testing::ElementsAre(total_, b_, flag_));
  EXPECT_EQ(e->text(), "q.total >= 10 || (q.2 >= 2 && q.total >= 5) || flag.x");
}

TEST(RenderTest, ReadableValues) {
  EXPECT_EQ(Render(Value::Number(2, "yes")), "2 (yes)");
  EXPECT_EQ(Render(Value::Number(66.6667)), "66.67");
  EXPECT_EQ(Render(Value::Number(12)), "12");
  EXPECT_EQ(Render(Value::Code("FL")), "FL");
  EXPECT_EQ(Render(Value::Unknown()), "missing");
  EXPECT_EQ(Render(Value::Absent()), "not asked");
  EXPECT_EQ(Render(Value::Declined()), "declined");
  EXPECT_EQ(Render(Value::Bool(true)), "true");
}

}  // namespace
}  // namespace aqueduct::scoring::expr
