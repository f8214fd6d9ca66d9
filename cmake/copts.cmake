# Compiler flags shared by every target. Keep identical to bazel/copts.bzl.
set(AQUEDUCT_COPTS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
