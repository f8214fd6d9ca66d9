#ifndef AQUEDUCT_COMMON_SERVER_TRACE_H_
#define AQUEDUCT_COMMON_SERVER_TRACE_H_
// W3C Trace Context (https://www.w3.org/TR/trace-context/) for logs an
// operator can follow across services: a caller's `traceparent` metadata
// names the trace a call belongs to; every log line written for the call
// carries its trace id (log::TraceScope), and the calls a service makes on
// its behalf carry the same trace on to the next service.
//
// Only the trace id is used: Aqueduct records no spans. A caller that sends
// no traceparent, or one that does not parse, starts a new trace.

#include <grpcpp/client_context.h>
#include <grpcpp/server_context.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace aqueduct::server {

// The metadata key (gRPC metadata keys are lowercase).
inline constexpr char kTraceparentKey[] = "traceparent";

struct TraceParent {
  std::string trace_id;   // 32 lowercase hex digits, not all zero
  std::string parent_id;  // 16 lowercase hex digits, not all zero
  uint8_t flags = 0;      // bit 0: sampled
};

// A traceparent header value as the W3C specification defines it
// ("00-<trace-id>-<parent-id>-<flags>", lowercase hex); nullopt for
// anything else, including the all-zero ids and version ff. A version above
// 00 is read by its first four fields, as the specification asks.
std::optional<TraceParent> ParseTraceparent(absl::string_view value);
// "00-<trace_id>-<span_id>-<flags>".
std::string FormatTraceparent(absl::string_view trace_id,
                              absl::string_view span_id, uint8_t flags);
// Fresh random ids (never all zero).
std::string NewTraceId();
std::string NewSpanId();

// The trace a server call belongs to: its caller's traceparent, or a new
// trace when it sent none (or one that does not parse).
std::string TraceIdFromMetadata(const grpc::ServerContextBase& context);

// The trace id of a call in progress, as the access log interceptor found
// it when the call's metadata arrived (so the handler's lines and the
// interceptor's "rpc" line agree); "" for a call the interceptor did not
// see (a server built without ServerRunner).
std::string TraceIdOf(const grpc::ServerContextBase& context);
// The interceptor's side of TraceIdOf: binds `trace_id` to the call's
// context until Unbind, which removes it only if it is still this call's
// (gRPC may reuse the context for a later call).
void BindTrace(const grpc::ServerContextBase* context,
               const std::string& trace_id);
void UnbindTrace(const grpc::ServerContextBase* context,
                 const std::string& trace_id);

// Adds a traceparent to an outgoing call continuing this thread's trace
// (log::CurrentTraceId) with a new span; does nothing outside a trace.
void PropagateTrace(grpc::ClientContext& context);

}  // namespace aqueduct::server

#endif  // AQUEDUCT_COMMON_SERVER_TRACE_H_
