#ifndef AQUEDUCT_COMMON_SERVER_MALLOC_CONF_H_
#define AQUEDUCT_COMMON_SERVER_MALLOC_CONF_H_

// jemalloc's settings for the service binaries (issue 24 §4: bounded
// memory). Each binary's main.cc defines jemalloc's `malloc_conf` symbol
// from it (jemalloc reads it when it starts; a binary on glibc's malloc
// ignores it), and the MALLOC_CONF environment variable still overrides it:
// - narenas:2: one arena per core here instead of four, so the memory a
//   burst of calls touched is shared out again, not held per arena;
// - tcache_max:4096: each of the many threads caches only small blocks;
// - dirty_decay_ms:1000, muzzy_decay_ms:0, background_thread:true: freed
//   pages go back to the system within a second, also when the process is
//   idle after a burst (the background thread purges; without it purging
//   waits for the next allocation).
namespace aqueduct::server {
inline constexpr char kMallocConf[] =
    "narenas:2,tcache_max:4096,dirty_decay_ms:1000,muzzy_decay_ms:0,"
    "background_thread:true";
}  // namespace aqueduct::server

// Defines jemalloc's configuration symbol; used once, in a main.cc.
#define AQUEDUCT_JEMALLOC_CONF                               \
  extern "C" {                                               \
  const char* malloc_conf = ::aqueduct::server::kMallocConf; \
  }                                                          \
  static_assert(true)

#endif  // AQUEDUCT_COMMON_SERVER_MALLOC_CONF_H_
