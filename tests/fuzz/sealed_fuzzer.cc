// What comes back from Redis or from a caller sealed or packed: sealed
// values (DataKeys::Open), packed (compressed) values (compress::Unpack),
// and page tokens (PageTokens::Read). Nothing made up opens; a crash, leak
// or undefined behaviour is a finding, and so is anything that opens.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/compress/compress.h"
#include "common/crypto/data_keys.h"
#include "common/crypto/page_tokens.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto* keys =
      new aqueduct::crypto::DataKeys(aqueduct::crypto::DataKeys::Random());
  static const auto* tokens = new aqueduct::crypto::PageTokens(keys);
  const std::string input(reinterpret_cast<const char*>(data), size);
  // The keys are fresh: no input can carry a tag they made.
  if (keys->Open(input, "aq:intake:{s}:session/a").ok()) std::abort();
  if (tokens->Read("ListQueue", "", input).ok()) std::abort();
  (void)aqueduct::compress::Unpack(input);
  return 0;
}
