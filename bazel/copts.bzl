"""Compiler flags shared by every target. Keep identical to cmake/copts.cmake."""

AQUEDUCT_COPTS = ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
