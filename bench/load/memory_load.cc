#include "bench/load/memory_load.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace aqueduct::bench {

FloodResult Flood(const std::string& address, const std::string& method,
                  const std::string& bearer_token,
                  const std::string& request_bytes, int concurrency,
                  int connections, absl::Duration duration) {
  // Each call's callback holds its channel: the last callbacks are still
  // unwinding in gRPC's threads when the loop returns.
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (int c = 0; c < std::max(1, connections); ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxSendMessageSize(-1);
    args.SetMaxReceiveMessageSize(-1);
    channels.push_back(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args));
    stubs.push_back(std::make_unique<grpc::GenericStub>(channels.back()));
  }
  grpc::Slice slice(request_bytes);
  const grpc::ByteBuffer request(&slice, 1);
  absl::Mutex mu;
  FloodResult out;
  struct Call {
    grpc::ClientContext ctx;
    grpc::ByteBuffer request, response;
  };
  out.load = RunClosedLoop(
      concurrency, duration, [&](int slot, std::function<void(bool)> done) {
        auto* call = new Call;
        call->request = request;  // shares the slice
        call->ctx.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
        call->ctx.AddMetadata("authorization", bearer_token);
        const size_t c = static_cast<size_t>(slot) % stubs.size();
        stubs[c]->UnaryCall(
            &call->ctx, method, grpc::StubOptions(), &call->request,
            &call->response,
            [call, done, &mu, &out, channel = channels[c]](grpc::Status s) {
              {
                absl::MutexLock lock(&mu);
                ++out.codes[std::string(absl::StatusCodeToString(
                    static_cast<absl::StatusCode>(s.error_code())))];
                if (!s.ok() && out.first_error.empty())
                  out.first_error = s.error_message().substr(0, 200);
              }
              delete call;
              done(s.ok());
            });
      });
  return out;
}

bool ResetPeakRss(pid_t pid) {
  std::ofstream clear(absl::StrCat("/proc/", pid, "/clear_refs"));
  clear << "5";
  clear.close();
  return !clear.fail();
}

std::string CodesText(const std::map<std::string, int64_t>& codes) {
  std::string out;
  for (const auto& [code, n] : codes)
    absl::StrAppend(&out, out.empty() ? "" : ", ", code, " ", n);
  return out;
}

}  // namespace aqueduct::bench
