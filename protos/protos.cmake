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
  referral/v1/referral_service.proto
  storage/v1/records.proto
  bench/v1/echo.proto
)
list(TRANSFORM AQUEDUCT_PROTOS PREPEND protos/)

add_library(api_cc_proto STATIC ${AQUEDUCT_PROTOS})
target_link_libraries(api_cc_proto PUBLIC protobuf::libprotobuf gRPC::grpc++)
target_include_directories(api_cc_proto PUBLIC ${PROJECT_BINARY_DIR})
protobuf_generate(TARGET api_cc_proto LANGUAGE cpp
  IMPORT_DIRS ${PROJECT_SOURCE_DIR}
  PROTOC_OUT_DIR ${PROJECT_BINARY_DIR})
protobuf_generate(TARGET api_cc_proto LANGUAGE grpc
  GENERATE_EXTENSIONS .grpc.pb.h .grpc.pb.cc
  PLUGIN "protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>"
  IMPORT_DIRS ${PROJECT_SOURCE_DIR}
  PROTOC_OUT_DIR ${PROJECT_BINARY_DIR})
