// The packed answer form: round trips, canonical bytes, and every way a
// malformed form is refused (never a crash, never a value in a message).

#include "services/scoring/packed_answers.h"

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace aqueduct::scoring::packed {
namespace {

using ::aqueduct::testing::IsOk;
using ::aqueduct::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

common::v1::Answer Option(const std::string& id, int v) {
  common::v1::Answer a;
  a.set_item_id(id);
  a.set_option_value(v);
  return a;
}

std::vector<const common::v1::Answer*> Pointers(
    const std::vector<common::v1::Answer>& answers) {
  std::vector<const common::v1::Answer*> out;
  for (const auto& a : answers) out.push_back(&a);
  return out;
}

std::string Sorted(const common::v1::AnswerSet& set) {
  std::vector<std::string> parts;
  for (const auto& a : set.answers()) parts.push_back(a.SerializeAsString());
  std::sort(parts.begin(), parts.end());
  std::string out;
  for (const auto& p : parts) out += p + "|";
  return out;
}

// Random answers of every kind, including negative and large numbers, codes,
// declined and no value.
std::vector<common::v1::Answer> RandomAnswers(std::mt19937& rng) {
  std::vector<common::v1::Answer> out;
  std::set<std::string> used;
  const std::vector<std::string> instruments = {"phq9",     "gad7", "ctx",
                                                "cbi_work", "ket",  "a"};
  const int n = static_cast<int>(rng() % 40);
  for (int i = 0; i < n; ++i) {
    std::string id =
        instruments[rng() % instruments.size()] + "." +
        (rng() % 4 == 0 ? std::string("word") + std::to_string(rng() % 5)
                        : std::to_string(1 + rng() % 12));
    if (!used.insert(id).second) continue;
    common::v1::Answer a;
    a.set_item_id(id);
    switch (rng() % 5) {
      case 0:
        a.set_option_value(static_cast<int32_t>(rng() % 101));
        break;
      case 1:
        a.set_integer_value(
            static_cast<int32_t>(rng()));  // the whole int32 range
        break;
      case 2:
        a.set_code_value(
            std::string(1 + rng() % 3, static_cast<char>('A' + rng() % 26)));
        break;
      case 3:
        a.set_declined(true);
        break;
      default:
        break;  // no value given
    }
    out.push_back(a);
  }
  return out;
}

TEST(PackedAnswersTest, RoundTripsEveryKindOfAnswer) {
  std::mt19937 rng(7);
  for (int n = 0; n < 500; ++n) {
    const auto answers = RandomAnswers(rng);
    std::vector<absl::string_view> administered;
    if (n % 3 == 0)
      administered = {"asq", "phq9"};  // one without answers, one with
    auto packed = Pack(Pointers(answers), administered);
    ASSERT_THAT(packed, IsOk());
    common::v1::AnswerSet back;
    std::vector<std::string> groups;
    ASSERT_THAT(Unpack(*packed, &back, &groups), IsOk());
    common::v1::AnswerSet original;
    for (const auto& a : answers) *original.add_answers() = a;
    EXPECT_EQ(Sorted(back), Sorted(original));
    // One group per instrument answered or administered, each once, sorted.
    std::set<std::string> expected(administered.begin(), administered.end());
    for (const auto& a : answers)
      expected.insert(a.item_id().substr(0, a.item_id().find('.')));
    EXPECT_EQ(groups,
              std::vector<std::string>(expected.begin(), expected.end()));
  }
}

TEST(PackedAnswersTest, SameAnswersInAnyOrderPackToTheSameBytes) {
  std::mt19937 rng(11);
  for (int n = 0; n < 100; ++n) {
    auto answers = RandomAnswers(rng);
    auto a = Pack(Pointers(answers), {"gad7", "asq"});
    std::shuffle(answers.begin(), answers.end(), rng);
    auto b = Pack(Pointers(answers), {"asq", "gad7", "asq"});
    ASSERT_THAT(a, IsOk());
    ASSERT_THAT(b, IsOk());
    EXPECT_EQ(*a, *b);
  }
}

TEST(PackedAnswersTest, SmallerThanTheAnswerMessages) {
  std::vector<common::v1::Answer> answers;
  common::v1::AnswerSet set;
  for (int i = 1; i <= 9; ++i)
    answers.push_back(Option("phq9." + std::to_string(i), i % 4));
  for (int i = 1; i <= 7; ++i)
    answers.push_back(Option("cbi_work." + std::to_string(i), 75));
  for (const auto& a : answers) *set.add_answers() = a;
  auto packed = Pack(Pointers(answers), {});
  ASSERT_THAT(packed, IsOk());
  // phq9: 1+4+1 + 9*(2+1); cbi_work: 1+8+1 + 7*(2+2); the version byte.
  EXPECT_EQ(packed->size(), 1u + 33 + 38);
  EXPECT_LT(packed->size() * 3, set.ByteSizeLong());
}

TEST(PackedAnswersTest, PackRefusesItemIdsWithoutAnInstrument) {
  for (const char* id : {"phq9", ".1", "phq9.", ""}) {
    std::vector<common::v1::Answer> answers = {Option("gad7.1", 0),
                                               Option(id, 1)};
    EXPECT_THAT(Pack(Pointers(answers), {}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("answers[1].item_id")))
        << id;
  }
  std::vector<common::v1::Answer> none;
  EXPECT_THAT(Pack(Pointers(none), {""}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("administered_instruments[0]: is empty")));
}

absl::Status UnpackStatus(const std::string& bytes) {
  common::v1::AnswerSet answers;
  std::vector<std::string> administered;
  return Unpack(bytes, &answers, &administered);
}

TEST(PackedAnswersTest, MalformedFormsNameTheByteAndTheProblem) {
  const std::string v = std::string(1, kFormatVersion);
  struct Case {
    std::string bytes;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"", "byte 0: empty"},
      {std::string("\x02", 1), "byte 0: format version 2 is not known"},
      {v + "\x04phq", "byte 2: instrument id runs past the end"},
      {v + std::string("\x00", 1), "byte 2: instrument id is empty"},
      {v + "\x04phq9", "byte 6: truncated"},
      {v + "\x04phq9\x05"
           "\x01"
           "1"
           "\x00",
       "answer count runs past the end"},
      {v + "\x04phq9\x01"
           "\x02"
           "10",
       "byte 10: truncated"},
      {v + "\x04phq9\x01" + std::string("\x00\x00\x00", 3),
       "byte 8: item id is empty"},
      {v + "\x04phq9\x01"
           "\x01"
           "1"
           "\x05",
       "answer kind 5 is not defined"},
      {v + "\x04phq9\x01"
           "\x01"
           "1"
           "\x0b",
       "answer kind 3 carries no value"},
      {v + "\x04phq9\x01"
           "\x01"
           "1"
           "\x1a"
           "FL",
       "code runs past the end"},
      {v + "\x04phq9\x01"
           "\x01"
           "1"
           "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
       "varint longer than 10 bytes"},
      {v + "\x04phq9\x01"
           "\x01"
           "1"
           "\x80\x80\x80\x80\x80\x01",
       "value outside 32 bits"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(UnpackStatus(c.bytes),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("packed_answers: byte ")))
        << c.message;
    EXPECT_THAT(std::string(UnpackStatus(c.bytes).message()),
                HasSubstr(c.message));
  }
}

TEST(PackedAnswersTest,
     EveryTruncationAndCorruptionIsRefusedOrReadWithoutCrashing) {
  std::mt19937 rng(3);
  std::vector<common::v1::Answer> answers = {Option("phq9.1", 2),
                                             Option("phq9.9", 1)};
  common::v1::Answer state;
  state.set_item_id("ctx.state");
  state.set_code_value("FL");
  answers.push_back(state);
  auto packed = Pack(Pointers(answers), {"asq"});
  ASSERT_THAT(packed, IsOk());
  ASSERT_THAT(UnpackStatus(*packed), IsOk());
  // Every strict prefix ends inside an entry or before the first group ends.
  for (size_t n = 0; n < packed->size(); ++n) {
    const std::string prefix = packed->substr(0, n);
    common::v1::AnswerSet back;
    std::vector<std::string> groups;
    const absl::Status s = Unpack(prefix, &back, &groups);
    if (s.ok()) {
      // Only a cut between groups reads, and then as fewer groups.
      EXPECT_LT(back.answers_size() + groups.size(), 3u + 3u) << n;
    } else {
      EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr("packed_answers: byte ")))
          << n;
    }
  }
  // Random corruption: an error or some answers, never a crash or a value
  // in the message (the sanitizer build runs this too).
  for (int n = 0; n < 2000; ++n) {
    std::string bytes = *packed;
    bytes[rng() % bytes.size()] = static_cast<char>(rng());
    const absl::Status s = UnpackStatus(bytes);
    if (!s.ok()) {
      EXPECT_THAT(s.message(), Not(HasSubstr("FL")));
    }
  }
}

}  // namespace
}  // namespace aqueduct::scoring::packed
