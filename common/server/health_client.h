#ifndef AQUEDUCT_COMMON_SERVER_HEALTH_CLIENT_H_
#define AQUEDUCT_COMMON_SERVER_HEALTH_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace aqueduct::server {

// Calls grpc.health.v1.Health/Check. Debian ships no generated client for
// health.proto, so the two tiny messages are encoded by hand through the
// generic stub. Returns true for SERVING, false for NOT_SERVING, and the
// call's status (e.g. UNAVAILABLE) when the server cannot be reached.
absl::StatusOr<bool> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                 const std::string& service,
                                 absl::Time deadline);

}  // namespace aqueduct::server

#endif  // AQUEDUCT_COMMON_SERVER_HEALTH_CLIENT_H_
