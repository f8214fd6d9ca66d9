// What packing a stored value costs (common/compress): a completed
// screening's result, packed and unpacked with each dictionary, one core
// (Google Benchmark). Intake packs four values per completed screening
// (record, answers, digest, result) and referral one (the case); every read
// of a completed screening unpacks. Run a Release build:
//   build-release/bench/compress_bench
// bytes_per_value is the packed size (the unpacked result is `raw_bytes`).

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "common/compress/compress.h"
#include "tests/testing/screening.h"

namespace {

using aqueduct::compress::PackWith;
using aqueduct::compress::Unpack;

// A mixed profile (burnout, moderate depression, a ketamine review in FL):
// the longest of the scripted results.
const std::string& Result() {
  static const std::string* result = [] {
    auto engine = aqueduct::testing::LoadRepositoryEngine();
    if (!engine.ok()) {
      std::fprintf(stderr,
                   "cannot load clinical data: %s (set AQUEDUCT_SOURCE_DIR)\n",
                   std::string(engine.status().message()).c_str());
      std::exit(2);
    }
    auto o = aqueduct::testing::AdultContext("FL");
    for (const auto& [k, v] :
         std::initializer_list<std::pair<const char*, const char*>>{
             {"phq9.1", "2"},
             {"phq9.2", "2"},
             {"phq9.3", "2"},
             {"phq9.4", "3"},
             {"cbi_personal.1", "75"},
             {"cbi_personal.2", "75"},
             {"gad7.1", "2"},
             {"ket.trials", "two_or_more"}}) {
      o[k] = v;
    }
    auto req = aqueduct::testing::ScriptedScreening(**engine, o);
    if (!req.ok()) std::exit(2);
    auto r = (*engine)->Score(*req);
    if (!r.ok()) std::exit(2);
    return new std::string(r->SerializeAsString());
  }();
  return *result;
}

void BM_Pack(benchmark::State& state) {
  const int id = static_cast<int>(state.range(0));
  const std::string& raw = Result();
  size_t bytes = 0;
  for (auto _ : state) {
    std::string p = PackWith(id, raw);
    bytes = p.size();
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["raw_bytes"] = static_cast<double>(raw.size());
  state.counters["bytes_per_value"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Pack)->Arg(1)->Arg(2)->ArgName("dictionary");

void BM_Unpack(benchmark::State& state) {
  const std::string packed =
      PackWith(static_cast<int>(state.range(0)), Result());
  for (auto _ : state) {
    auto back = Unpack(packed);
    if (!back.ok() || back->size() != Result().size()) {
      state.SkipWithError("unpack failed");
      break;
    }
    benchmark::DoNotOptimize(back);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Unpack)->Arg(1)->Arg(2)->ArgName("dictionary");

}  // namespace

BENCHMARK_MAIN();
