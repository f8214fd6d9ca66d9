#include "common/config/data_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

// Both come from the build: the install's data directory relative to its
// binary directory (GNUInstallDirs), and the source tree's data/.
#ifndef AQUEDUCT_DATA_RELDIR
#define AQUEDUCT_DATA_RELDIR "../share/aqueduct"
#endif
#ifndef AQUEDUCT_SOURCE_DATA_DIR
#define AQUEDUCT_SOURCE_DATA_DIR "data"
#endif

namespace aqueduct::config {
namespace {

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string SelfExe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

}  // namespace

std::string DataDirFor(const std::string& env, const std::string& exe) {
  if (!env.empty()) return env;
  const size_t slash = exe.rfind('/');
  if (slash != std::string::npos) {
    const std::string installed =
        exe.substr(0, slash) + "/" + AQUEDUCT_DATA_RELDIR;
    if (IsDirectory(installed)) return installed;
  }
  return AQUEDUCT_SOURCE_DATA_DIR;
}

std::string DataDir() {
  const char* env = std::getenv("AQUEDUCT_DATA_DIR");
  return DataDirFor(env == nullptr ? "" : env, SelfExe());
}

}  // namespace aqueduct::config
