#include "common/server/trace.h"

#include <array>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging/logging.h"

namespace aqueduct::server {
namespace {

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool AllZero(absl::string_view s) {
  return s.find_first_not_of('0') == absl::string_view::npos;
}

std::string RandomHex(int bytes) {
  thread_local absl::BitGen gen;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  do {
    out.clear();
    for (int i = 0; i < bytes; ++i) {
      const uint8_t b = absl::Uniform<uint8_t>(gen);
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 15]);
    }
  } while (AllZero(out));
  return out;
}

// Calls in progress -> their trace ids, sharded so calls on different
// threads rarely meet on one lock.
class TraceTable {
 public:
  void Bind(const void* key, const std::string& trace_id) {
    Shard& s = ShardOf(key);
    absl::MutexLock lock(&s.mu);
    s.ids[key] = trace_id;
  }
  void Unbind(const void* key, const std::string& trace_id) {
    Shard& s = ShardOf(key);
    absl::MutexLock lock(&s.mu);
    auto it = s.ids.find(key);
    if (it != s.ids.end() && it->second == trace_id) s.ids.erase(it);
  }
  std::string Find(const void* key) {
    Shard& s = ShardOf(key);
    absl::MutexLock lock(&s.mu);
    auto it = s.ids.find(key);
    return it == s.ids.end() ? std::string() : it->second;
  }

 private:
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<const void*, std::string> ids ABSL_GUARDED_BY(mu);
  };
  Shard& ShardOf(const void* key) {
    return shards_[(reinterpret_cast<uintptr_t>(key) >> 6) % shards_.size()];
  }
  std::array<Shard, 16> shards_;
};

TraceTable& Table() {
  static auto* table = new TraceTable();
  return *table;
}

}  // namespace

std::optional<TraceParent> ParseTraceparent(absl::string_view value) {
  // version(2) - trace-id(32) - parent-id(16) - flags(2) = 55 characters;
  // a later version may append "-..." after them.
  if (value.size() < 55 || value[2] != '-' || value[35] != '-' ||
      value[52] != '-')
    return std::nullopt;
  const absl::string_view version = value.substr(0, 2);
  const absl::string_view trace_id = value.substr(3, 32);
  const absl::string_view parent_id = value.substr(36, 16);
  const absl::string_view flags = value.substr(53, 2);
  if (!IsLowerHex(version) || version == "ff") return std::nullopt;
  if (version == "00" ? value.size() != 55
                      : (value.size() > 55 && value[55] != '-'))
    return std::nullopt;
  if (!IsLowerHex(trace_id) || AllZero(trace_id) || !IsLowerHex(parent_id) ||
      AllZero(parent_id) || !IsLowerHex(flags))
    return std::nullopt;
  TraceParent out;
  out.trace_id = std::string(trace_id);
  out.parent_id = std::string(parent_id);
  int f = 0;
  (void)absl::SimpleHexAtoi(flags, &f);
  out.flags = static_cast<uint8_t>(f);
  return out;
}

std::string FormatTraceparent(absl::string_view trace_id,
                              absl::string_view span_id, uint8_t flags) {
  static constexpr char kHex[] = "0123456789abcdef";
  const char f[] = {kHex[flags >> 4], kHex[flags & 15], 0};
  return absl::StrCat("00-", trace_id, "-", span_id, "-", f);
}

std::string NewTraceId() { return RandomHex(16); }
std::string NewSpanId() { return RandomHex(8); }

std::string TraceIdFromMetadata(const grpc::ServerContextBase& context) {
  const auto& md = context.client_metadata();
  const auto it = md.find(kTraceparentKey);
  if (it != md.end() && md.count(kTraceparentKey) == 1) {
    if (auto parent = ParseTraceparent(
            absl::string_view(it->second.data(), it->second.size()));
        parent.has_value())
      return std::move(parent->trace_id);
  }
  return NewTraceId();
}

std::string TraceIdOf(const grpc::ServerContextBase& context) {
  return Table().Find(&context);
}

void BindTrace(const grpc::ServerContextBase* context,
               const std::string& trace_id) {
  Table().Bind(context, trace_id);
}

void UnbindTrace(const grpc::ServerContextBase* context,
                 const std::string& trace_id) {
  Table().Unbind(context, trace_id);
}

void PropagateTrace(grpc::ClientContext& context) {
  const absl::string_view trace = log::CurrentTraceId();
  if (trace.empty()) return;
  context.AddMetadata(kTraceparentKey,
                      FormatTraceparent(trace, NewSpanId(), /*flags=*/0));
}

}  // namespace aqueduct::server
