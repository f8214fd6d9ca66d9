// Writes samples of the values intake and referral pack before sealing
// (common/compress), one file each, for training a compression dictionary:
//   r-<n>  a completed screening's result record (intake field r)
//   a-<n>  its answers in the form scoring takes (intake field a)
//   d-<n>  its session record without the answers (intake field d)
//   c-<n>  the referral case made from it (referral field d)
// Screenings are random walks of the real flow over the repository's
// catalog and ruleset (every item answered with a random valid value, some
// declined), so the samples have the shapes and texts real values have;
// ids and times are random, as real ones are. Usage (make.sh runs it):
//   dictionary_samples <out dir> <seed> <screenings>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "protos/referral/v1/referral_service.pb.h"
#include "protos/storage/v1/records.pb.h"
#include "services/intake/redis_session_store.h"
#include "tests/testing/screening.h"

namespace {

using namespace aqueduct;

std::string RandomId(std::mt19937_64& rng, size_t n) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  std::string s(n, 'a');
  for (auto& c : s) c = kAlphabet[rng() % 32];
  return s;
}

void Write(const std::string& dir, const std::string& name,
           const std::string& bytes) {
  std::ofstream out(absl::StrCat(dir, "/", name), std::ios::binary);
  out << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr,
                 "usage: dictionary_samples <out dir> <seed> <screenings>\n");
    return 2;
  }
  const std::string dir = argv[1];
  std::mt19937_64 rng(std::strtoull(argv[2], nullptr, 10));
  const int n = std::atoi(argv[3]);
  auto engine = testing::LoadRepositoryEngine();
  if (!engine.ok()) {
    std::fprintf(stderr,
                 "cannot load clinical data: %s (set AQUEDUCT_SOURCE_DIR)\n",
                 std::string(engine.status().message()).c_str());
    return 2;
  }
  static const char* kStates[] = {"NY", "FL", "CA", "TX",
                                  "NJ", "WA", "IL", "MA"};
  int written = 0;
  for (int i = 0; i < n; ++i) {
    auto o = testing::AdultContext(kStates[rng() % 8]);
    o["ctx.age"] = std::to_string(18 + rng() % 60);
    // A person's level of distress, so answers hang together as real ones do.
    const int level = static_cast<int>(rng() % 4);
    for (const auto& instrument :
         (*engine)->catalog().catalog().instruments()) {
      for (const auto& item : instrument.items()) {
        if (item.id() == "ctx.state" || item.id() == "ctx.age") continue;
        if (rng() % 40 == 0) {
          o[item.id()] = "declined";
          continue;
        }
        switch (item.kind()) {
          case scoring::v1::CHOICE: {
            if (item.options().empty()) break;
            const int k = item.options_size();
            const int pick = std::min(
                k - 1,
                static_cast<int>((rng() % k + level * k / 4) / 2 + rng() % 2));
            o[item.id()] = std::to_string(item.options(pick).value());
            break;
          }
          case scoring::v1::INTEGER:
            o[item.id()] = std::to_string(
                item.min_value() +
                static_cast<int>(rng() %
                                 (item.max_value() - item.min_value() + 1)));
            break;
          case scoring::v1::CODE:
            if (!item.codes().empty())
              o[item.id()] = item.codes(rng() % item.codes_size());
            break;
          default:
            break;
        }
      }
    }
    if (rng() % 3 == 0)
      o["phq9.9"] = "0";  // most people screened are not at risk
    auto request = testing::ScriptedScreening(**engine, o);
    if (!request.ok()) continue;  // a combination the flow refuses: skip it
    auto scored = (*engine)->Score(*request);
    if (!scored.ok()) continue;

    const int64_t now_ms =
        1790000000000 + static_cast<int64_t>(rng() % 100000000000);
    const std::string user = RandomId(rng, 26), screening = RandomId(rng, 26);

    storage::v1::ResultRecord result;
    result.set_complete_time_ms(now_ms);
    *result.mutable_scoring() = *scored;

    storage::v1::SessionRecord record;
    record.set_screening_id(screening);
    record.set_user_id(user);
    record.set_state(intake::v1::COMPLETED);
    record.set_consent_version("c1");
    record.set_locale("en-US");
    record.set_catalog_version(scored->catalog_version());
    static const char* kRoles[] = {"therapist_counsellor", "other_clinician",
                                   "other_health_worker", "unpaid_caregiver",
                                   "other"};
    record.mutable_context()->set_role(kRoles[rng() % 5]);
    record.mutable_context()->set_works(rng() % 8 != 0);
    record.mutable_context()->set_works_with_clients(rng() % 2 == 0);
    record.mutable_context()->set_location_state(o["ctx.state"]);
    record.set_create_time_ms(now_ms - 60000 -
                              static_cast<int64_t>(rng() % 600000));
    record.set_update_time_ms(now_ms);
    record.set_complete_time_ms(now_ms);
    for (const auto& id : request->administered_instruments())
      record.add_instruments(id);
    record.set_complete_request_id(RandomId(rng, 16));
    record.set_handoff(intake::v1::DELIVERED);
    storage::v1::SessionRecord with_answers = record;
    for (const auto& a : request->answers().answers())
      (*with_answers.mutable_answers())[a.item_id()] = a;

    referral::v1::Referral c;
    const std::string case_id =
        absl::StrCat(screening, "-", scored->ruleset_version());
    const auto route = scored->routing().primary_route();
    c.set_name(absl::StrCat("referrals/", case_id));
    c.set_screening(absl::StrCat("users/", user, "/screenings/", screening));
    c.set_proposed_route(route);
    c.set_current_route(route);
    c.set_required_reviewer(scored->routing().required_reviewer());
    c.set_priority(route == common::v1::CRISIS_ACUTE ||
                           route == common::v1::CRISIS_URGENT
                       ? referral::v1::URGENT
                   : route == common::v1::SELF_HELP ? referral::v1::LOW
                                                    : referral::v1::ROUTINE);
    c.set_state(route == common::v1::SELF_HELP
                    ? referral::v1::DELIVERED_SELF_HELP
                    : referral::v1::OPEN);
    c.set_location_state(o["ctx.state"]);
    c.set_ruleset_version(scored->ruleset_version());
    c.set_create_time_ms(now_ms);
    *c.mutable_result() = *scored;

    Write(dir, absl::StrCat("r-", i), result.SerializeAsString());
    Write(dir, absl::StrCat("a-", i),
          intake::RedisSessionStore::PackAnswers(with_answers));
    Write(dir, absl::StrCat("d-", i), record.SerializeAsString());
    Write(dir, absl::StrCat("c-", i), c.SerializeAsString());
    ++written;
  }
  std::printf("%d screenings sampled into %s\n", written, dir.c_str());
  return written > 0 ? 0 : 1;
}
