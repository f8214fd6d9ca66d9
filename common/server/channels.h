#ifndef AQUEDUCT_COMMON_SERVER_CHANNELS_H_
#define AQUEDUCT_COMMON_SERVER_CHANNELS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace aqueduct::server {

// A channel to a peer service. gRPC's default reconnect backoff grows to
// 120 s, so a peer that restarts could stay "down" for two minutes after it
// is back; between services on one network, retry every 0.5-2 s instead.
std::shared_ptr<grpc::Channel> PeerChannel(const std::string& address);

}  // namespace aqueduct::server

#endif  // AQUEDUCT_COMMON_SERVER_CHANNELS_H_
