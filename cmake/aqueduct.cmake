# Helpers mirroring Bazel's rules, so each CMakeLists.txt reads like its
# BUILD.bazel twin (the Abseil model).

# aqueduct_cc_library(NAME n SRCS ... HDRS ... DEPS ...)
function(aqueduct_cc_library)
  cmake_parse_arguments(A "" "NAME" "SRCS;HDRS;DEPS;DEFINES" ${ARGN})
  if(A_SRCS)
    add_library(${A_NAME} STATIC ${A_SRCS} ${A_HDRS})
    target_include_directories(${A_NAME} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
    target_link_libraries(${A_NAME} PUBLIC ${A_DEPS})
    target_compile_options(${A_NAME} PRIVATE ${AQUEDUCT_COPTS})
    target_compile_definitions(${A_NAME} PUBLIC ${A_DEFINES})
  else()
    add_library(${A_NAME} INTERFACE)
    target_include_directories(${A_NAME} INTERFACE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
    target_link_libraries(${A_NAME} INTERFACE ${A_DEPS})
  endif()
endfunction()

# aqueduct_cc_binary(NAME n SRCS ... DEPS ...)
function(aqueduct_cc_binary)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS;DEFINES" ${ARGN})
  add_executable(${A_NAME} ${A_SRCS})
  target_include_directories(${A_NAME} PRIVATE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS})
  target_compile_options(${A_NAME} PRIVATE ${AQUEDUCT_COPTS})
  target_compile_definitions(${A_NAME} PRIVATE ${A_DEFINES})
  if(AQUEDUCT_TSAN)
    target_link_libraries(${A_NAME} PRIVATE tsan_absl_sync)
    target_link_options(${A_NAME} PRIVATE -rdynamic)
  endif()
endfunction()

# aqueduct_cc_test(NAME n SRCS ... DEPS ... LABELS unit|grpc|integration
#                  [SINGLE_THREAD])
# SINGLE_THREAD: the test never starts a thread (strace shows no clone), so
# ThreadSanitizer has nothing to check in it and the TSan build leaves it
# out (its compile time is most of what the TSan step would spend on it).
function(aqueduct_cc_test)
  cmake_parse_arguments(A "SINGLE_THREAD" "NAME;TIMEOUT" "SRCS;DEPS;LABELS;ENV" ${ARGN})
  if(AQUEDUCT_TSAN AND A_SINGLE_THREAD)
    return()
  endif()
  aqueduct_cc_binary(NAME ${A_NAME} SRCS ${A_SRCS} DEPS ${A_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  # One precompiled header for every test: GoogleTest, GoogleMock and gRPC's
  # headers are a third of a test's compile time, parsed again in each.
  # The Bazel build has none, so a test missing an include of its own
  # still fails there.
  if(NOT TARGET aqueduct_test_pch)
    add_library(aqueduct_test_pch OBJECT ${PROJECT_SOURCE_DIR}/tests/testing/test_pch.cc)
    target_link_libraries(aqueduct_test_pch PRIVATE GTest::gtest GTest::gmock gRPC::grpc++)
    target_compile_options(aqueduct_test_pch PRIVATE ${AQUEDUCT_COPTS})
    target_precompile_headers(aqueduct_test_pch PRIVATE <gmock/gmock.h> <gtest/gtest.h> <grpcpp/grpcpp.h>)
  endif()
  target_precompile_headers(${A_NAME} REUSE_FROM aqueduct_test_pch)
  # The header was built with -pthread (gRPC's flags), and GCC uses it only
  # where _REENTRANT is defined the same way; tests without gRPC need it too.
  target_compile_options(${A_NAME} PRIVATE -pthread)
  add_test(NAME ${A_NAME} COMMAND ${A_NAME})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}" TIMEOUT ${A_TIMEOUT}
    ENVIRONMENT "AQUEDUCT_SOURCE_DIR=${PROJECT_SOURCE_DIR};AQUEDUCT_BINARY_DIR=${PROJECT_BINARY_DIR};${A_ENV}")
endfunction()
