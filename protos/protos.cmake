# Included from the top-level CMakeLists.txt (not add_subdirectory) because
# protobuf_generate resolves paths against the current source directory, and
# generated headers must keep their repository path: "protos/.../x.pb.h".
# All API and storage protos, generated with Debian's protoc and
# grpc_cpp_plugin into <build>/protos/..., included as "protos/.../x.pb.h".
set(AQUEDUCT_PROTOS
  common/v1/common.proto
  common/v1/person_texts.proto
  scoring/v1/catalog.proto
  scoring/v1/result.proto
  scoring/v1/ruleset.proto
  scoring/v1/scoring_service.proto
  intake/v1/intake_service.proto
  intake/v1/rescore_service.proto
  intake/v1/fhir_export_service.proto
  referral/v1/referral_service.proto
  storage/v1/records.proto
  bench/v1/echo.proto
)
list(TRANSFORM AQUEDUCT_PROTOS PREPEND protos/)

# google.rpc.Status and its error details (BadRequest, RetryInfo,
# ErrorInfo: AIP-193), as googleapis publishes them and Debian's
# golang-github-gogo-googleapis-dev installs them (scripts/setup.sh; the
# copy in golang-github-grpc-ecosystem-grpc-gateway-dev predates
# ErrorInfo). These files import only protobuf's own types. Included as
# "google/rpc/status.pb.h".
set(AQUEDUCT_GOOGLEAPIS_DIR /usr/share/gocode/src/github.com/gogo/googleapis)
if(NOT EXISTS ${AQUEDUCT_GOOGLEAPIS_DIR}/google/rpc/error_details.proto)
  message(FATAL_ERROR "google/rpc/error_details.proto is not under "
    "${AQUEDUCT_GOOGLEAPIS_DIR}: run scripts/setup.sh (it installs "
    "golang-github-gogo-googleapis-dev)")
endif()
set(_googleapis_out ${PROJECT_BINARY_DIR}/googleapis)
set(_googleapis_generated)
foreach(_name status error_details)
  list(APPEND _googleapis_generated
    ${_googleapis_out}/google/rpc/${_name}.pb.cc
    ${_googleapis_out}/google/rpc/${_name}.pb.h)
endforeach()
# protoc by hand: protobuf_generate places outputs for sources outside the
# source tree by the source tree's path.
add_custom_command(OUTPUT ${_googleapis_generated}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${_googleapis_out}
  COMMAND $<TARGET_FILE:protobuf::protoc> -I${AQUEDUCT_GOOGLEAPIS_DIR}
    --cpp_out=${_googleapis_out} google/rpc/status.proto google/rpc/error_details.proto
  DEPENDS ${AQUEDUCT_GOOGLEAPIS_DIR}/google/rpc/status.proto
    ${AQUEDUCT_GOOGLEAPIS_DIR}/google/rpc/error_details.proto
  COMMENT "protoc: google/rpc/status.proto, google/rpc/error_details.proto")
add_library(googleapis_rpc_cc_proto STATIC ${_googleapis_generated})
target_link_libraries(googleapis_rpc_cc_proto PUBLIC protobuf::libprotobuf)
target_include_directories(googleapis_rpc_cc_proto PUBLIC ${_googleapis_out})

# google.api.http (the HTTP mapping annotations on the API's RPCs: AIP-127,
# read by the gateway, services/gateway) from the same Debian copy.
# Included as "google/api/annotations.pb.h".
set(_googleapis_api_generated)
foreach(_name annotations http)
  list(APPEND _googleapis_api_generated
    ${_googleapis_out}/google/api/${_name}.pb.cc
    ${_googleapis_out}/google/api/${_name}.pb.h)
endforeach()
add_custom_command(OUTPUT ${_googleapis_api_generated}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${_googleapis_out}
  COMMAND $<TARGET_FILE:protobuf::protoc> -I${AQUEDUCT_GOOGLEAPIS_DIR}
    --cpp_out=${_googleapis_out} google/api/annotations.proto google/api/http.proto
  DEPENDS ${AQUEDUCT_GOOGLEAPIS_DIR}/google/api/annotations.proto
    ${AQUEDUCT_GOOGLEAPIS_DIR}/google/api/http.proto
  COMMENT "protoc: google/api/annotations.proto, google/api/http.proto")
add_library(googleapis_api_cc_proto STATIC ${_googleapis_api_generated})
target_link_libraries(googleapis_api_cc_proto PUBLIC protobuf::libprotobuf)
target_include_directories(googleapis_api_cc_proto PUBLIC ${_googleapis_out})

add_library(api_cc_proto STATIC ${AQUEDUCT_PROTOS})
target_link_libraries(api_cc_proto PUBLIC protobuf::libprotobuf gRPC::grpc++
  googleapis_api_cc_proto)
target_include_directories(api_cc_proto PUBLIC ${PROJECT_BINARY_DIR})
protobuf_generate(TARGET api_cc_proto LANGUAGE cpp
  IMPORT_DIRS ${PROJECT_SOURCE_DIR} ${AQUEDUCT_GOOGLEAPIS_DIR}
  PROTOC_OUT_DIR ${PROJECT_BINARY_DIR})
protobuf_generate(TARGET api_cc_proto LANGUAGE grpc
  GENERATE_EXTENSIONS .grpc.pb.h .grpc.pb.cc
  PLUGIN "protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>"
  IMPORT_DIRS ${PROJECT_SOURCE_DIR} ${AQUEDUCT_GOOGLEAPIS_DIR}
  PROTOC_OUT_DIR ${PROJECT_BINARY_DIR})

