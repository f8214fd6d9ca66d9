#!/bin/sh
echo "bazel coverage is not supported offline; use the CMake build with gcov" >&2
exit 1
