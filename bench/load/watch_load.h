#ifndef AQUEDUCT_BENCH_LOAD_WATCH_LOAD_H_
#define AQUEDUCT_BENCH_LOAD_WATCH_LOAD_H_

// Issue 24 §3's figure: what thousands of open WatchQueue streams cost the
// calls that must not wait for them. The same two loads run with no portal
// watching and with `watchers` portals watching one referral process (each
// its own stream, spread over several client connections, reading every
// event): clinicians' ListQueue at a steady rate (open loop: latency counts
// from when a call was due), far below what saturates the machine, as a
// clinic's portals refresh; and crisis hand-offs, four a second:
// a person's page carrying a suicide-risk answer is submitted to
// intake, and the hand-off's latency is from that call's start until the
// early risk case reaches a watching clinician's stream (intake's outbox
// worker delivers it to referral, referral's one queue reader fans it out).
// With a gateway, a third phase puts the same number of portals on the
// HTTP gateway's server-sent-event stream instead (issue 27's relay:
// referral holds one stream for them all), with the gateway at normal
// priority on the same cores, then at nice 19 (standing for a gateway on
// nodes of its own, as the portals stand for other machines); last, the
// unwatched phase again. Loopback only; stops by itself.

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "bench/load/loadgen.h"
#include "tests/testing/auth.h"

namespace aqueduct::bench {

struct WatchPhase {
  LoadResult list_queue;  // ListQueue calls, open loop
  LoadResult handoff;     // crisis page submitted -> case on a watcher
  // The gateway phase only: the same page until the case is on a portal's
  // SSE stream through the gateway.
  LoadResult handoff_sse;
  int64_t referral_threads = -1;
  double referral_rss_mib = -1;     // VmRSS (not the peak) during the phase
  double referral_cpu_seconds = 0;  // referral's CPU over the phase
  double gateway_cpu_seconds = 0;   // the gateway's CPU (gateway phase)
  double gateway_rss_mib = -1;      // the gateway's VmRSS (gateway phase)
  std::string first_error;          // empty when every call succeeded
};

// A running gateway (aqueduct-gateway, plaintext HTTP on loopback) in
// front of the measured referral; http_port 0: no gateway phase.
struct GatewayUnderTest {
  int http_port = 0;
  pid_t pid = -1;
};

struct WatchFigure {
  WatchPhase quiet;           // no portal watching
  WatchPhase watched;         // `watchers` portals watching
  WatchPhase gateway;         // `watchers` portals watching through the gateway
  WatchPhase gateway_apart;   // the same, the gateway's threads at nice 19
  WatchPhase quiet_after;     // no portal again, after the gateway phases
  int watchers_open = 0;      // streams that reached "watching"
  int sse_watchers_open = 0;  // SSE streams open (status 200) at the end
};

// Runs the two phases (quiet, then watched) of `duration` each against
// running intake and referral processes that trust `auth`'s keys. The
// watching portals are a child process (`self`, this binary, run with
// PortalsMain's flags), as portals are other machines: reading their
// thousands of streams must not delay the measuring client's own calls.
// `dir` holds the child's log.
WatchFigure MeasureWatchers(const std::string& self, const std::string& dir,
                            const std::string& intake_address,
                            const std::string& referral_address,
                            pid_t referral_pid, const GatewayUnderTest& gateway,
                            const testing::TestAuth& auth, int watchers,
                            double list_per_second, absl::Duration duration);

// The child: `watchers` portals on `address`, each with the bearer token
// in $AQUEDUCT_BENCH_PORTAL_TOKEN, reading every event; writes how many are
// watching to `ready_file` as that changes, until SIGTERM. `address` is
// referral's gRPC address (WatchQueue streams), or "http://127.0.0.1:<port>"
// for a gateway (GET /v1/referrals:watch, one connection each, all read by
// one epoll loop). Returns the exit code.
int PortalsMain(const std::string& address, int watchers,
                const std::string& ready_file);

}  // namespace aqueduct::bench

#endif  // AQUEDUCT_BENCH_LOAD_WATCH_LOAD_H_
