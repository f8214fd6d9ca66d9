#ifndef AQUEDUCT_TESTS_FUZZ_FUZZ_DATA_H_
#define AQUEDUCT_TESTS_FUZZ_FUZZ_DATA_H_

// What the fuzz targets share: the repository's catalog and rulesets (the
// data every real input is checked against), found through
// AQUEDUCT_SOURCE_DIR or the source path the build recorded.

#include <cstdlib>
#include <memory>
#include <string>

#include "services/scoring/scoring_engine.h"

namespace aqueduct::fuzz {

inline std::string SourceDir() {
  const char* env = std::getenv("AQUEDUCT_SOURCE_DIR");
  return env != nullptr ? env : AQUEDUCT_FUZZ_SOURCE_DIR;
}

// The repository's engine, loaded once; aborts when it cannot be (the
// target would fuzz nothing).
inline const scoring::ScoringEngine& RepositoryEngine() {
  static const scoring::ScoringEngine* engine = [] {
    auto loaded = scoring::ScoringEngine::Load(
        SourceDir() + "/data/catalog/catalog.textproto",
        SourceDir() + "/data/rulesets");
    if (!loaded.ok()) std::abort();
    return loaded->release();
  }();
  return *engine;
}

}  // namespace aqueduct::fuzz

#endif  // AQUEDUCT_TESTS_FUZZ_FUZZ_DATA_H_
