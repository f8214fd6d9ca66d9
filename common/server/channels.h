#ifndef AQUEDUCT_COMMON_SERVER_CHANNELS_H_
#define AQUEDUCT_COMMON_SERVER_CHANNELS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace aqueduct::server {

// A channel to a peer service. gRPC's default reconnect backoff grows to
// 120 s, so a peer that restarts could stay "down" for two minutes after it
// is back; between services on one network, retry every 0.5-2 s instead.
// `max_receive_bytes` caps a response (gRPC's default is 4 MiB); batch
// clients raise it: a Rescore response where all 5000 screenings changed
// carries 5000 full results.
// `credentials` unset = plaintext (tests, development).
std::shared_ptr<grpc::Channel> PeerChannel(
    const std::string& address,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr,
    int max_receive_bytes = 4 << 20);

// What batch clients (re-scoring) accept per response.
inline constexpr int kBatchMaxReceiveBytes = 64 << 20;

}  // namespace aqueduct::server

#endif  // AQUEDUCT_COMMON_SERVER_CHANNELS_H_
