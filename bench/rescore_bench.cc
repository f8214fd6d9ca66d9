// Batch re-scoring throughput with Redis reads and writes included: seeds N
// completed screenings into a private redis-server (AOF on, everysec) exactly
// as intake stores them, starts the real scoring and referral binaries, and
// runs the re-scoring job under a ruleset that moves the PHQ-9 depression
// threshold from 10 to T. Redis fsyncs as F says (appendfsync, default
// always as everywhere; everysec to compare with runs measured before that
// default). The seeded PHQ-9 totals run 0..24, each equally
// often, so T = 11 changes 1 screening in 25 (route and band, each getting a
// re-review case); T = 14 changes 4 in 25. Issue 6's target is 100,000/s.
//
//   build-release/bench/rescore_bench [N [T [F]]]  (default 100000 11 always)
//
// With T = "v2" it applies the repository's ruleset v2 instead, to N
// screenings of 2,000 seeded people whose answers follow a severity each
// (a person's level drawn uniformly; each symptom item near it, a few
// declined; item 9 above 0 and ASQ yeses rarer, more so at low levels),
// scored under v1 as intake stored them, and reports, beside the job's
// counts, the v1 -> v2 route changes it found (computed again in-process
// as a cross-check).
// Needs AQUEDUCT_SOURCE_DIR and AQUEDUCT_BINARY_DIR (the build directory).

#include <google/protobuf/text_format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/compress/compress.h"
#include "common/redis/redis_client.h"
#include "common/server/channels.h"
#include "common/server/server_runner.h"
#include "services/intake/redis_session_store.h"
#include "services/scoring/digest.h"
#include "tests/testing/auth.h"
#include "tests/testing/process.h"
#include "tests/testing/screening.h"
#include "tools/rescore/rescore.h"

namespace t = aqueduct::testing;
using namespace aqueduct;  // NOLINT: a benchmark program

namespace {

// The data keys the services and the seeding share.
// The data keys this run seals with: those of the environment when it has
// them (the harness runs this with its own, which the services started here
// inherit), else fresh ones.
const crypto::DataKeys& BenchKeys() {
  static const auto* keys = [] {
    if (getenv("AQUEDUCT_DATA_KEYS") != nullptr) {
      auto from_env = crypto::DataKeys::FromEnvironment();
      if (from_env.ok()) return new crypto::DataKeys(*std::move(from_env));
    }
    return new crypto::DataKeys(crypto::DataKeys::Random());
  }();
  return *keys;
}

std::string StartService(
    t::TempDir& dir, const std::string& name, const std::string& binary,
    std::vector<std::string> args,
    std::vector<std::unique_ptr<t::Subprocess>>& processes) {
  args.push_back("--insecure_plaintext");  // loopback benchmark: the figure is
                                           // the job's, not TLS's
  auto s = t::StartService(dir.path(), name, binary, args,
                           {"AQUEDUCT_DATA_KEYS=" + BenchKeys().ToText()});
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.status().message()).c_str());
    return "";
  }
  processes.push_back(std::move(s->process));
  t::WaitServing(
      grpc::CreateChannel(s->address, grpc::InsecureChannelCredentials()));
  return s->address;
}

// A seeded person's answers (see the top): `level` in [0, 1] drives every
// symptom item; 3 in 100 items declined.
tools::Overrides SeededPerson(std::mt19937& rng,
                              const scoring::CatalogIndex& catalog) {
  std::uniform_real_distribution<double> unit(0, 1);
  const double level = unit(rng);
  static const char* kStates[] = {"FL", "NJ", "NY", "TX"};
  tools::Overrides o = t::AdultContext(kStates[rng() % 4]);
  o["ctx.age"] = std::to_string(18 + static_cast<int>(rng() % 50));
  o["ctx.works_with_clients"] = unit(rng) < 0.5 ? "yes" : "no";
  for (const auto& info : catalog.instruments()) {
    const std::string& ins = info.def->id();
    if (ins == "ctx") continue;
    for (const auto& item : info.def->items()) {
      if (item.kind() == scoring::v1::INTEGER) {
        o[item.id()] = unit(rng) < level * 0.3 ? "2" : "0";
        continue;
      }
      if (item.kind() != scoring::v1::CHOICE || item.options().empty())
        continue;
      if (unit(rng) < 0.03) {
        o[item.id()] = "declined";
        continue;
      }
      const int n = item.options_size();
      int pick = static_cast<int>(
          std::lround(level * (n - 1) + (unit(rng) - 0.5) * 1.5));
      // Risk answers are rarer than other symptoms: item 9 above 0 for about
      // one in ten, ASQ yeses (options no/yes) and ketamine exclusions rarer
      // still, all more likely at higher levels.
      if (item.id() == "phq9.9")
        pick = unit(rng) < level * level * 0.3 ? 1 + static_cast<int>(rng() % 2)
                                               : 0;
      if (ins == "asq")
        pick = unit(rng) < level * (item.id() == "asq.5" ? 0.1 : 0.3) ? 1 : 0;
      if (ins == "ket" && item.id() != "ket.trials")
        pick = unit(rng) < 0.05 ? 1 : 0;
      pick = std::clamp(pick, 0, n - 1);
      // Options run low to high burden except reverse-scored ones and the
      // CBI (Always first), whose options are listed highest value first.
      std::vector<int> values;
      for (const auto& opt : item.options()) values.push_back(opt.value());
      std::sort(values.begin(), values.end());
      int v = values[pick];
      if (item.reverse_scored()) v = values[n - 1 - pick];
      o[item.id()] = std::to_string(v);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  aqueduct::server::ConfigureProcess();
  int64_t n = 100000;
  int threshold = 11;
  const bool repository_v2 = argc > 2 && std::string(argv[2]) == "v2";
  const std::string fsync = argc > 3 ? argv[3] : "always";
  if ((argc > 1 && !absl::SimpleAtoi(argv[1], &n)) ||
      (argc > 2 && !repository_v2 && !absl::SimpleAtoi(argv[2], &threshold)) ||
      (fsync != "always" && fsync != "everysec")) {
    std::fprintf(stderr,
                 "usage: rescore_bench [N [T | v2 [always | everysec]]]\n");
    return 2;
  }
  t::TempDir dir;
  auto redis = t::RedisServer::Start(dir.path());
  if (!redis.ok()) return 1;
  {
    redis::Client admin((*redis)->ClientOptions());
    if (!admin
             .Command({"CONFIG", "SET", "appendfsync", fsync},
                      absl::Now() + absl::Seconds(5))
             .ok())
      return 1;
  }
  const std::string rulesets = dir.path() + "/rulesets";
  mkdir(rulesets.c_str(), 0755);
  const std::string v1 =
      t::ReadFile(t::SourcePath("data/rulesets/v1.textproto"));
  std::ofstream(rulesets + "/v1.textproto") << v1;
  scoring::v1::Ruleset v2;
  google::protobuf::TextFormat::ParseFromString(v1, &v2);
  v2.set_version("v2-bench");
  v2.set_published("2026-11-01");
  for (auto& s : *v2.mutable_signals()) {
    if (s.id() == "depression_signal")
      s.set_when(absl::StrCat("phq9.total >= ", threshold));
  }
  std::string text;
  google::protobuf::TextFormat::PrintToString(v2, &text);
  if (repository_v2)
    text = t::ReadFile(t::SourcePath("data/rulesets/v2.textproto"));
  std::ofstream(rulesets +
                (repository_v2 ? "/v2.textproto" : "/v2-bench.textproto"))
      << text;
  t::TestAuth auth;  // the services check every call's token
  std::vector<std::unique_ptr<t::Subprocess>> processes;
  const std::string scoring_addr = StartService(
      dir, "scoring", "services/scoring/aqueduct-scoring",
      {"--catalog=" + t::SourcePath("data/catalog/catalog.textproto"),
       "--rulesets=" + rulesets, "--auth_keys=" + auth.keys_dir()},
      processes);
  const std::string referral_addr = StartService(
      dir, "referral", "services/referral/aqueduct-referral",
      {"--redis=" + (*redis)->address(), "--auth_keys=" + auth.keys_dir()},
      processes);

  // 25 screening shapes (PHQ-9 0..24, item 9 always 0), scored under v1
  // in-process.
  auto engine = t::LoadRepositoryEngine();
  if (!engine.ok()) return 1;
  std::vector<std::pair<storage::v1::SessionRecord, storage::v1::ResultRecord>>
      shapes;
  std::vector<scoring::v1::ScoreAnswersRequest> requests;
  std::mt19937 rng(2026);
  for (int total = 0; total <= (repository_v2 ? 1999 : 24); ++total) {
    auto o = t::AdultContext("NY");
    int left = total;
    for (int i = 1; i <= 8; ++i) {
      int v = std::min(3, left);
      left -= v;
      o["phq9." + std::to_string(i)] = std::to_string(v);
    }
    if (repository_v2) o = SeededPerson(rng, (*engine)->catalog());
    auto req = t::ScriptedScreening(**engine, o);
    if (!req.ok()) {
      std::fprintf(stderr, "seeding: %s\n",
                   std::string(req.status().message()).c_str());
      return 1;
    }
    req->set_ruleset_version("v1");  // what was stored before v2 existed
    requests.push_back(*req);
    storage::v1::SessionRecord rec;
    rec.set_state(intake::v1::COMPLETED);
    rec.set_catalog_version("2026-11.1");
    for (const auto& a : req->answers().answers())
      (*rec.mutable_answers())[a.item_id()] = a;
    for (const auto& id : req->administered_instruments())
      rec.add_instruments(id);
    storage::v1::ResultRecord result;
    *result.mutable_scoring() = *(*engine)->Score(*req);
    shapes.emplace_back(rec, result);
  }

  redis::Options opts = (*redis)->ClientOptions();
  opts.command_timeout = absl::Seconds(30);
  redis::Client client(opts);
  // Seeds through intake's own store, as a completion stores a screening.
  intake::RedisSessionStore store(&client, &BenchKeys());
  const absl::Time seed_start = absl::Now();
  for (int64_t base = 0; base < n; base += 10000) {
    std::vector<intake::RedisSessionStore::Imported> batch;
    for (int64_t i = base; i < std::min(n, base + 10000); ++i) {
      auto [rec, result] = shapes[(i * 7) % shapes.size()];
      rec.set_screening_id(absl::StrCat("s", i));
      rec.set_user_id(absl::StrCat("u", i % 10000));
      result.set_complete_time_ms(1000 + i);
      batch.push_back({std::move(rec), std::move(result)});
    }
    if (absl::Status s =
            store.ImportCompleted(batch, absl::Now() + absl::Seconds(120));
        !s.ok()) {
      std::fprintf(stderr, "seeding failed: %s\n",
                   std::string(s.message()).c_str());
      return 1;
    }
  }
  const double seed_s = absl::ToDoubleSeconds(absl::Now() - seed_start);
  // Seeding grows the AOF past Redis's auto-rewrite size: rewrite it now
  // and let that finish (a forked child competing for the same two cores),
  // so no rewrite falls into the run and the figure is the job's.
  (void)client.Command({"BGREWRITEAOF"}, absl::Now() + absl::Seconds(5));
  absl::SleepFor(absl::Milliseconds(200));
  for (int i = 0; i < 3000; ++i) {
    auto running =
        t::RedisInfoField(client, "persistence", "aof_rewrite_in_progress");
    auto scheduled =
        t::RedisInfoField(client, "persistence", "aof_rewrite_scheduled");
    if (running.ok() && *running == "0" && scheduled.ok() && *scheduled == "0")
      break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  const std::string used =
      t::RedisInfoField(client, "memory", "used_memory_human").value_or("?");
  int64_t used_before = 0;
  (void)absl::SimpleAtoi(
      t::RedisInfoField(client, "memory", "used_memory").value_or(""),
      &used_before);
  std::printf("seeded %lld screenings in %.1f s (redis used_memory %s)\n",
              static_cast<long long>(n), seed_s, used.c_str());
  std::fflush(stdout);
  // Intake re-scores its completed screenings for the job (the job holds a
  // token and nothing else); its work is part of the figure.
  const std::string intake_addr = StartService(
      dir, "intake", "services/intake/aqueduct-intake",
      {"--redis=" + (*redis)->address(), "--scoring=" + scoring_addr,
       "--referral=" + referral_addr, "--auth_keys=" + auth.keys_dir(),
       "--service_key=" + auth.private_key_file(),
       std::string("--service_key_id=") + t::TestAuth::kKeyId},
      processes);
  auto intake_stub = intake::v1::RescoreService::NewStub(
      server::PeerChannel(intake_addr, nullptr, server::kBatchMaxReceiveBytes));
  tools::RescoreOptions options;
  options.ruleset_version = repository_v2 ? "v2" : "v2-bench";
  options.batch = 1000;
  options.dry_run = getenv("DRY") != nullptr;
  auth::StaticToken batch_token(auth.Token("batch", "rescore"));
  tools::Rescorer job(intake_stub.get(), &batch_token, options);
  std::atomic<bool> stop{false};
  // Where the CPU goes while the job runs: this process (the job), the
  // services (scoring, referral, intake, in start order), and Redis.
  std::vector<pid_t> pids = {getpid()};
  for (const auto& p : processes) pids.push_back(p->pid());
  pids.push_back((*redis)->pid());
  std::vector<double> cpu_before;
  for (pid_t p : pids) cpu_before.push_back(t::CpuSeconds(p));
  auto summary = job.Run(stop);
  std::vector<double> cpu_used;
  for (size_t i = 0; i < pids.size(); ++i)
    cpu_used.push_back(t::CpuSeconds(pids[i]) - cpu_before[i]);
  if (!summary.ok()) {
    std::fprintf(stderr, "rescore failed: %s\n",
                 std::string(summary.status().message()).c_str());
    return 1;
  }
  const auto& c = summary->counts;

  std::printf(
      "rescored %lld in %.2f s: %.0f screenings/s; changed route %lld, "
      "re-review cases %lld, failed %lld\n",
      static_cast<long long>(c.screened()), summary->seconds,
      c.screened() / summary->seconds,
      static_cast<long long>(c.changed_route()),
      static_cast<long long>(c.cases_opened()),
      static_cast<long long>(c.failed()));
  std::printf(
      "CPU during the run (s): job %.2f, scoring %.2f, referral %.2f, intake "
      "%.2f, redis %.2f; per screening %.1f us\n",
      cpu_used[0], cpu_used[1], cpu_used[2], cpu_used[3], cpu_used[4],
      (cpu_used[0] + cpu_used[1] + cpu_used[2] + cpu_used[3] + cpu_used[4]) *
          1e6 / std::max<int64_t>(1, c.screened()));
  if (repository_v2) {
    // The same change computed in-process, per seeded person, weighted by
    // how often each was seeded: the job's counts must agree.
    std::map<std::pair<std::string, std::string>, int64_t> moves, why;
    int64_t changed = 0;
    std::vector<int64_t> seeded(shapes.size(), 0);
    for (int64_t i = 0; i < n; ++i) ++seeded[(i * 7) % shapes.size()];
    for (size_t k = 0; k < requests.size(); ++k) {
      if (seeded[k] == 0) continue;
      auto req = requests[k];
      req.set_ruleset_version("v2");
      auto after = (*engine)->Score(req);
      if (!after.ok()) continue;
      const auto before = shapes[k].second.scoring().routing().primary_route();
      const auto now = after->routing().primary_route();
      if (before != now) {
        changed += seeded[k];
        // Why, in profile terms (the usual reason a route moves).
        why[{scoring::v1::Profile_Name(shapes[k].second.scoring().profile()),
             scoring::v1::Profile_Name(after->profile())}] += seeded[k];
      }
      moves[{common::v1::Route_Name(before), common::v1::Route_Name(now)}] +=
          seeded[k];
    }
    std::printf(
        "in-process check: route changed for %lld of %lld (the job: %lld)\n",
        static_cast<long long>(changed), static_cast<long long>(n),
        static_cast<long long>(c.changed_route()));
    std::printf(
        "band changed %lld, safety flags changed %lld (the job's counts)\n",
        static_cast<long long>(c.changed_band()),
        static_cast<long long>(c.changed_flags()));
    std::printf("route v1 -> v2, screenings:\n");
    for (const auto& [move, count] : moves) {
      std::printf("  %-16s -> %-16s %8lld%s\n", move.first.c_str(),
                  move.second.c_str(), static_cast<long long>(count),
                  move.first == move.second ? "" : "  (changed)");
    }
    std::printf("profile v1 -> v2 where the route changed:\n");
    for (const auto& [move, count] : why) {
      std::printf("  %-18s -> %-18s %8lld\n", move.first.c_str(),
                  move.second.c_str(), static_cast<long long>(count));
    }
  }
  int64_t used_after = 0;
  if (absl::SimpleAtoi(
          t::RedisInfoField(client, "memory", "used_memory").value_or(""),
          &used_after)) {
    std::printf(
        "redis used_memory grew by %.0f B per screening re-scored (outcomes "
        "and re-review cases)\n",
        static_cast<double>(used_after - used_before) /
            std::max<int64_t>(1, c.screened()));
  }
  return 0;
}
