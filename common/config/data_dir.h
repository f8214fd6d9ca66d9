#ifndef AQUEDUCT_COMMON_CONFIG_DATA_DIR_H_
#define AQUEDUCT_COMMON_CONFIG_DATA_DIR_H_

#include <string>

namespace aqueduct::config {

// Where the read-only data files (catalog/, rulesets/, texts/) are, for the
// defaults of the flags that name them. The first of:
//   1. $AQUEDUCT_DATA_DIR, when set and not empty;
//   2. the installed copy, found relative to the running binary
//      (<bindir>/../share/aqueduct after `cmake --install`, whatever the
//      prefix), when that directory exists;
//   3. the source tree's data/ (the build-tree default; "data" relative to
//      the working directory in the Bazel build).
// So an installed binary never reads the tree it was built from, and a
// binary run from the build tree needs no setting.
std::string DataDir();

// The same choice, for tests: `env` stands for $AQUEDUCT_DATA_DIR and `exe`
// for the running binary's path.
std::string DataDirFor(const std::string& env, const std::string& exe);

}  // namespace aqueduct::config

#endif  // AQUEDUCT_COMMON_CONFIG_DATA_DIR_H_
