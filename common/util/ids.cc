#include "common/util/ids.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace aqueduct {
namespace {

class SystemClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace

std::string NewId() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  static absl::Mutex mu(absl::kConstInit);
  static std::random_device* rd = new std::random_device();
  // 26 base32 characters carry 130 bits; draw 5 x 32 random bits.
  uint32_t words[5];
  {
    absl::MutexLock lock(&mu);
    for (uint32_t& w : words) w = (*rd)();
  }
  std::string out;
  out.reserve(26);
  for (int i = 0; i < 26; ++i) {
    const int bit = i * 5;
    uint64_t window = (static_cast<uint64_t>(words[bit / 32]) << 32) |
                      (bit / 32 + 1 < 5 ? words[bit / 32 + 1] : 0);
    out.push_back(kAlphabet[(window >> (64 - 5 - bit % 32)) & 31]);
  }
  return out;
}

absl::Status ValidateIdSegment(absl::string_view id, absl::string_view field) {
  if (id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": id is empty"));
  }
  if (id.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": id longer than 64 characters"));
  }
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": id may contain only a-z, 0-9, '-' and '_'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(absl::string_view id, absl::string_view field) {
  if (id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": is required"));
  }
  if (id.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": longer than 64 characters"));
  }
  for (char c : id) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": must be printable ASCII without spaces"));
    }
  }
  return absl::OkStatus();
}

const Clock& RealClock() {
  static const SystemClock* clock = new SystemClock();
  return *clock;
}

}  // namespace aqueduct
