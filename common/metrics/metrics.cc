#include "common/metrics/metrics.h"

#include <atomic>
#include <cstdio>
#include <exception>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "prometheus/exposer.h"

namespace aqueduct::metrics {

namespace {
std::atomic<bool> enabled{true};
}  // namespace

bool Enabled() { return enabled.load(std::memory_order_relaxed); }
void SetEnabled(bool on) { enabled.store(on, std::memory_order_relaxed); }

const std::shared_ptr<prometheus::Registry>& Registry() {
  static const auto* registry = new std::shared_ptr<prometheus::Registry>(
      std::make_shared<prometheus::Registry>());
  return *registry;
}

prometheus::Family<prometheus::Counter>& CounterFamily(
    const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(*Registry());
}

prometheus::Family<prometheus::Gauge>& GaugeFamily(const std::string& name,
                                                   const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*Registry());
}

prometheus::Family<prometheus::Histogram>& HistogramFamily(
    const std::string& name, const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(
      *Registry());
}

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,   1,      2.5,   5,    10,    30};
  return *buckets;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, const std::string& port_file) {
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  try {
    // One thread: Prometheus scrapes every few seconds, one request at a
    // time per server.
    server->exposer_ = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception&) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen,
                     " for metrics (address in use or not local?)"));
  }
  server->exposer_->RegisterCollectable(Registry());
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  server->port_ = ports.empty() ? 0 : ports.front();
  if (!port_file.empty()) {
    {
      std::ofstream out(port_file + ".tmp");
      out << server->port_ << "\n";
    }
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  return server;
}

MetricsServer::~MetricsServer() = default;

}  // namespace aqueduct::metrics
