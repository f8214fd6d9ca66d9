// Scoring's request validation and the packed-answer decoder: the bytes of
// a ScoreAnswersRequest (what intake and batch jobs send, and what intake
// stores as a completed screening's answers) scored by the repository's
// engine, and the same bytes read as a packed answer form. Errors are
// expected; a crash, leak or undefined behaviour is a finding.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "services/scoring/packed_answers.h"
#include "tests/fuzz/fuzz_data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& engine = aqueduct::fuzz::RepositoryEngine();
  aqueduct::scoring::v1::ScoreAnswersRequest request;
  if (request.ParseFromArray(data, static_cast<int>(size))) {
    aqueduct::scoring::v1::ScoringResult result;
    (void)engine.ScoreInto(request, &result);
    aqueduct::scoring::v1::ResultDigest digest;
    bool crisis = false;
    (void)engine.DigestInto(request, &digest, &crisis);
  }
  const absl::string_view packed(reinterpret_cast<const char*>(data), size);
  aqueduct::scoring::packed::Reader reader(packed);
  aqueduct::scoring::packed::Reader::Entry entry;
  while (reader.Next(&entry)) {
  }
  aqueduct::common::v1::AnswerSet answers;
  std::vector<std::string> administered;
  (void)aqueduct::scoring::packed::Unpack(packed, &answers, &administered);
  return 0;
}
