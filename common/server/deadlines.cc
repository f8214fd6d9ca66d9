#include "common/server/deadlines.h"

#include <grpc/support/time.h>

#include <algorithm>

#include "absl/time/clock.h"

namespace aqueduct::server {

absl::Time RpcDeadline(const grpc::ServerContextBase& context,
                       absl::Duration cap) {
  const absl::Time capped = absl::Now() + cap;
  gpr_timespec raw =
      gpr_convert_clock_type(context.raw_deadline(), GPR_CLOCK_REALTIME);
  if (gpr_time_cmp(raw, gpr_inf_future(GPR_CLOCK_REALTIME)) == 0) return capped;
  absl::Time caller =
      absl::FromUnixNanos(raw.tv_sec * int64_t{1000000000} + raw.tv_nsec);
  return std::min(caller, capped);
}

void SetOutgoingDeadline(grpc::ClientContext& context, absl::Time budget,
                         absl::Duration per_call) {
  absl::Time deadline = std::min(budget, absl::Now() + per_call);
  context.set_deadline(absl::ToChronoTime(deadline));
}

}  // namespace aqueduct::server
