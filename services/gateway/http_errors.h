#ifndef AQUEDUCT_SERVICES_GATEWAY_HTTP_ERRORS_H_
#define AQUEDUCT_SERVICES_GATEWAY_HTTP_ERRORS_H_

// Failed calls over HTTP: the HTTP status for each gRPC code (the mapping
// of google/rpc/code.proto, which grpc-gateway and Envoy's transcoder use)
// and the body, a google.rpc.Status in JSON with the error details the
// service attached (BadRequest, RetryInfo, ErrorInfo).

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/status.h"

namespace aqueduct::gateway {

int HttpStatusFor(grpc::StatusCode code);

// {"code": 3, "message": "...", "details": [{"@type": ...}]}: the
// service's own google.rpc.Status when it sent one (grpc-status-details-bin),
// else one made of the code and message.
std::string StatusJson(const grpc::Status& status);
// The same for an error the gateway itself answers with.
std::string StatusJson(const absl::Status& status);

// The seconds a RetryInfo in the status asks the caller to wait, rounded
// up (for a Retry-After header); 0 when there is none.
int RetryAfterSeconds(const grpc::Status& status);

}  // namespace aqueduct::gateway

#endif  // AQUEDUCT_SERVICES_GATEWAY_HTTP_ERRORS_H_
