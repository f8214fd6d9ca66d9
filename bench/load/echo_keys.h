#ifndef AQUEDUCT_BENCH_LOAD_ECHO_KEYS_H_
#define AQUEDUCT_BENCH_LOAD_ECHO_KEYS_H_

// The keys the echo server's --redis rows write (echo_server.cc), which
// aqueduct_bench deletes before the memory rows.

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace aqueduct::bench {

inline constexpr uint64_t kEchoKeys = 4096;

inline std::string EchoKey(uint64_t n) {
  return absl::StrCat("aq:bench:echo:", n % kEchoKeys);
}

}  // namespace aqueduct::bench

#endif  // AQUEDUCT_BENCH_LOAD_ECHO_KEYS_H_
