#include "common/compress/compress.h"

#include <zlib.h>

#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace aqueduct::compress {
namespace {

constexpr char kMagic = '\0';
constexpr int kCurrentDictionary = 1;

constexpr char kDictionary1[] =
#include "common/compress/dictionary_1.inc"
    ;

// One deflate state per thread, reset per value: creating one allocates
// ~256 KiB, which would cost more than compressing a result.
struct Deflater {
  z_stream zs{};
  bool ready = false;
  Deflater() {
    ready = deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~Deflater() {
    if (ready) deflateEnd(&zs);
  }
};

struct Inflater {
  z_stream zs{};
  bool ready = false;
  Inflater() { ready = inflateInit2(&zs, -15) == Z_OK; }
  ~Inflater() {
    if (ready) inflateEnd(&zs);
  }
};

}  // namespace

absl::string_view Dictionary(int id) {
  if (id == 1) return absl::string_view(kDictionary1, sizeof(kDictionary1) - 1);
  return {};
}

std::string Pack(absl::string_view data) {
  thread_local Deflater d;
  const absl::string_view dict = Dictionary(kCurrentDictionary);
  if (!d.ready || deflateReset(&d.zs) != Z_OK ||
      deflateSetDictionary(&d.zs, reinterpret_cast<const Bytef*>(dict.data()), static_cast<uInt>(dict.size())) !=
          Z_OK) {
    return std::string(data);  // not packed; reads back as it is
  }
  std::string out(2 + deflateBound(&d.zs, static_cast<uLong>(data.size())), '\0');
  out[0] = kMagic;
  out[1] = static_cast<char>(kCurrentDictionary);
  d.zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  d.zs.avail_in = static_cast<uInt>(data.size());
  d.zs.next_out = reinterpret_cast<Bytef*>(out.data() + 2);
  d.zs.avail_out = static_cast<uInt>(out.size() - 2);
  if (deflate(&d.zs, Z_FINISH) != Z_STREAM_END) return std::string(data);
  out.resize(out.size() - d.zs.avail_out);
  // A value that starts with 0x00 must be packed, or it would read as
  // packed; anything else stays as it is when packing does not pay.
  if (out.size() >= data.size() && !data.empty() && data[0] != kMagic) return std::string(data);
  return out;
}

absl::StatusOr<std::string> Unpack(absl::string_view stored) {
  if (stored.empty() || stored[0] != kMagic) return std::string(stored);
  if (stored.size() < 2) return absl::DataLossError("packed value: truncated header");
  const int id = static_cast<unsigned char>(stored[1]);
  const absl::string_view dict = Dictionary(id);
  if (dict.empty()) return absl::DataLossError(absl::StrCat("packed value: unknown dictionary ", id));
  thread_local Inflater in;
  if (!in.ready || inflateReset(&in.zs) != Z_OK) return absl::InternalError("packed value: no inflate state");
  // A raw stream names no dictionary: it is set before inflating.
  if (inflateSetDictionary(&in.zs, reinterpret_cast<const Bytef*>(dict.data()), static_cast<uInt>(dict.size())) !=
      Z_OK) {
    return absl::InternalError("packed value: dictionary refused");
  }
  in.zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(stored.data() + 2));
  in.zs.avail_in = static_cast<uInt>(stored.size() - 2);
  std::string out;
  char buf[16384];
  for (;;) {
    in.zs.next_out = reinterpret_cast<Bytef*>(buf);
    in.zs.avail_out = sizeof(buf);
    const int rc = inflate(&in.zs, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - in.zs.avail_out);
    if (out.size() > kMaxUnpackedBytes) return absl::DataLossError("packed value: longer than allowed");
    if (rc == Z_STREAM_END) {
      if (in.zs.avail_in != 0) return absl::DataLossError("packed value: bytes after the end");
      return out;
    }
    if (rc != Z_OK) return absl::DataLossError("packed value: damaged");
    if (in.zs.avail_in == 0 && in.zs.avail_out != 0) return absl::DataLossError("packed value: truncated");
  }
}

}  // namespace aqueduct::compress
