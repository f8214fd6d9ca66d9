// In-process scoring throughput: one full screening (every instrument the
// flow asks, explanations included) per iteration, into a reused result
// message as a batch loop does. Target (issue 3): >= 200,000 full
// screenings per second per core. Run a Release build:
//   cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release
//   cmake --build build-release -j2 --target scoring_bench
//   build-release/bench/scoring_bench

#include <benchmark/benchmark.h>

#include <cstdlib>

#include "tests/testing/screening.h"

namespace {

using aqueduct::scoring::ScoringEngine;
using aqueduct::scoring::v1::ScoreAnswersRequest;
using aqueduct::scoring::v1::ScoringResult;

const ScoringEngine& Engine() {
  static const ScoringEngine* engine = [] {
    auto e = aqueduct::testing::LoadRepositoryEngine();
    if (!e.ok()) {
      std::fprintf(stderr,
                   "cannot load clinical data: %s (set AQUEDUCT_SOURCE_DIR)\n",
                   std::string(e.status().message()).c_str());
      std::exit(2);
    }
    return e->release();
  }();
  return *engine;
}

ScoreAnswersRequest Screening(aqueduct::tools::Overrides extra) {
  auto o = aqueduct::testing::AdultContext("FL");
  o["ctx.works_with_clients"] = "yes";
  for (auto& [k, v] : extra) o[k] = v;
  auto req = aqueduct::testing::ScriptedScreening(Engine(), o);
  if (!req.ok()) std::exit(2);
  return *req;
}

void Run(benchmark::State& state, const ScoreAnswersRequest& request) {
  ScoringResult result;
  for (auto _ : state) {
    auto s = Engine().ScoreInto(request, &result);
    benchmark::DoNotOptimize(s);
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["answers"] = request.answers().answers_size();
  state.counters["rules_explained"] = result.rules_size();
}

// Mixed profile with burnout, moderate depression and a ketamine review in
// FL: the most instruments and rules.
void BM_FullScreeningKetamineReview(benchmark::State& state) {
  static const ScoreAnswersRequest request =
      Screening({{"phq9.1", "2"},
                 {"phq9.2", "2"},
                 {"phq9.3", "2"},
                 {"phq9.4", "3"},
                 {"phq9.5", "1"},
                 {"cbi_personal.1", "75"},
                 {"cbi_personal.2", "75"},
                 {"cbi_personal.3", "75"},
                 {"gad7.1", "2"},
                 {"auditc.1", "2"},
                 {"ket.trials", "two_or_more"},
                 {"ket.high_bp", "yes"}});
  Run(state, request);
}
BENCHMARK(BM_FullScreeningKetamineReview);

void BM_FullScreeningSelfHelp(benchmark::State& state) {
  static const ScoreAnswersRequest request = Screening({{"phq9.4", "1"}});
  Run(state, request);
}
BENCHMARK(BM_FullScreeningSelfHelp);

void BM_FullScreeningCrisis(benchmark::State& state) {
  static const ScoreAnswersRequest request =
      Screening({{"phq9.9", "2"}, {"asq.1", "yes"}, {"asq.5", "no"}});
  Run(state, request);
}
BENCHMARK(BM_FullScreeningCrisis);

}  // namespace

BENCHMARK_MAIN();
