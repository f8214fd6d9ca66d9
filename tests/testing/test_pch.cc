// Compiled once per build so the tests' precompiled header (GoogleTest,
// GoogleMock, gRPC: cmake/aqueduct.cmake) exists; it defines nothing.
