#ifndef AQUEDUCT_COMMON_SERVER_DEADLINES_H_
#define AQUEDUCT_COMMON_SERVER_DEADLINES_H_

#include <grpcpp/client_context.h>
#include <grpcpp/server_context.h>

#include "absl/time/time.h"

namespace aqueduct::server {

// The deadline to work under for an incoming call: the caller's deadline,
// capped at `cap` from now so a call without a deadline cannot hold a thread
// and a Redis connection forever.
absl::Time RpcDeadline(const grpc::ServerContextBase& context,
                       absl::Duration cap);

// Sets an outgoing call's deadline: the remaining budget of the incoming
// call, capped at `per_call` from now (propagates the caller's budget).
void SetOutgoingDeadline(grpc::ClientContext& context, absl::Time budget,
                         absl::Duration per_call);

}  // namespace aqueduct::server

#endif  // AQUEDUCT_COMMON_SERVER_DEADLINES_H_
