// Bearer tokens and key grants: JWT parsing and verification against a
// fixed key set (every token a caller sends goes through Verify), and the
// `<key id>.roles` grammar. A crash, leak or undefined behaviour is a
// finding, and so is any made-up token that verifies.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/time/clock.h"
#include "common/auth/jwt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using aqueduct::auth::KeyGrants;
  using aqueduct::auth::KeySet;
  using aqueduct::auth::Verifier;
  static const Verifier* verifier = [] {
    KeySet keys;
    for (const char* type : {"EC", "RSA"}) {
      auto pair = aqueduct::auth::GenerateKeyPair(type);
      auto grants = KeyGrants::Parse("patient clinician service:intake");
      if (!pair.ok() || !grants.ok() ||
          !keys.Add(type, pair->public_pem, *grants).ok())
        std::abort();
    }
    return new Verifier(std::move(keys), "aqueduct-fuzz", "aqueduct");
  }();
  const std::string input(reinterpret_cast<const char*>(data), size);
  // The keys are fresh: no input can carry their signature.
  if (verifier->Verify(input, absl::Now()).ok()) std::abort();
  (void)KeyGrants::Parse(input);
  return 0;
}
