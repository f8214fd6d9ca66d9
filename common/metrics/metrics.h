#ifndef AQUEDUCT_COMMON_METRICS_METRICS_H_
#define AQUEDUCT_COMMON_METRICS_METRICS_H_

// Prometheus metrics for the whole process (prometheus-cpp).
//
// Contract for every metric registered here: label values come from a closed
// set the code chooses (a method this binary defines, a status code name, a
// route), never from a request; no answer, free text, token, name or id is
// ever a label or a value. Families are registered once, on first use, and
// live as long as the process; incrementing one is lock-free (counters and
// gauges) or takes the histogram's own lock.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}

namespace aqueduct::metrics {

// Whether this process records metrics (default yes). Off (--nometrics),
// every recording site returns at once, so the benchmark can measure what
// recording costs; set once at start, before any call is served.
bool Enabled();
void SetEnabled(bool enabled);

// The process's one registry, which /metrics serves.
const std::shared_ptr<prometheus::Registry>& Registry();

prometheus::Family<prometheus::Counter>& CounterFamily(const std::string& name,
                                                       const std::string& help);
prometheus::Family<prometheus::Gauge>& GaugeFamily(const std::string& name,
                                                   const std::string& help);
prometheus::Family<prometheus::Histogram>& HistogramFamily(
    const std::string& name, const std::string& help);

// Bucket bounds in seconds for latencies from sub-millisecond (a Redis round
// trip on loopback) to the longest deadline a call may have (30 s).
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

// Serves the registry as Prometheus text on http://<listen>/metrics, in
// plaintext like the health port (operators' network only: it carries
// counts, never data). Port 0 picks a free port, written to `port_file`
// when that is set (tests).
class MetricsServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, const std::string& port_file);
  ~MetricsServer();
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace aqueduct::metrics

#endif  // AQUEDUCT_COMMON_METRICS_METRICS_H_
