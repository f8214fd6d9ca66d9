#include "common/compress/compress.h"

#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace aqueduct::compress {
namespace {

constexpr char kMagic = '\0';

constexpr char kDictionary1[] =
#include "common/compress/dictionary_1.inc"
    ;

constexpr unsigned char kDictionary2[] = {
#include "common/compress/dictionary_2.inc"
};
constexpr unsigned char kDictionary3[] = {
#include "common/compress/dictionary_3.inc"
};
// zstd level for the zstd dictionaries: chosen on held-out values
// (bench/dictionary/make.sh; the figures are in bench/RESULTS.md), trading
// a few microseconds once per completion for smaller stored results.
constexpr int kZstdLevel = 6;
// A zstd dictionary by id (2 or 3), digested once per process (entropy
// tables, match tables); each thread's contexts reference it, so a value
// costs only its own bytes.
struct ZstdDictionary {
  const ZSTD_CDict* c = nullptr;
  const ZSTD_DDict* d = nullptr;
};
const ZstdDictionary* ZstdDictionaryOf(int id) {
  static const ZstdDictionary two{
      ZSTD_createCDict(kDictionary2, sizeof(kDictionary2), kZstdLevel),
      ZSTD_createDDict(kDictionary2, sizeof(kDictionary2))};
  static const ZstdDictionary three{
      ZSTD_createCDict(kDictionary3, sizeof(kDictionary3), kZstdLevel),
      ZSTD_createDDict(kDictionary3, sizeof(kDictionary3))};
  if (id == 2) return &two;
  if (id == 3) return &three;
  return nullptr;
}
struct ZstdContexts {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_DCtx* d = ZSTD_createDCtx();
  bool ready = false;
  explicit ZstdContexts(int id) {
    const ZstdDictionary* dict = ZstdDictionaryOf(id);
    ready =
        c != nullptr && d != nullptr && dict != nullptr && dict->c != nullptr &&
        dict->d != nullptr && !ZSTD_isError(ZSTD_CCtx_refCDict(c, dict->c)) &&
        // The seal authenticates every byte; the id byte names the dictionary.
        !ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0)) &&
        !ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_dictIDFlag, 0)) &&
        !ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1)) &&
        !ZSTD_isError(ZSTD_DCtx_refDDict(d, dict->d));
  }
  ~ZstdContexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
  }
};
ZstdContexts& Zstd(int id) {
  thread_local ZstdContexts two(2);
  thread_local ZstdContexts three(3);
  return id == 2 ? two : three;
}
// One deflate state per thread, reset per value: creating one allocates
// ~256 KiB, which would cost more than compressing a result.
struct Deflater {
  z_stream zs{};
  bool ready = false;
  Deflater() {
    ready = deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
                         Z_DEFAULT_STRATEGY) == Z_OK;
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
  if (id == 2)
    return absl::string_view(reinterpret_cast<const char*>(kDictionary2),
                             sizeof(kDictionary2));
  if (id == 3)
    return absl::string_view(reinterpret_cast<const char*>(kDictionary3),
                             sizeof(kDictionary3));
  return {};
}

namespace {

// A value that starts with 0x00 must be packed, or it would read as packed;
// anything else stays as it is when packing does not pay.
std::string KeepSmaller(absl::string_view data, std::string packed) {
  if (packed.size() >= data.size() && !data.empty() && data[0] != kMagic)
    return std::string(data);
  return packed;
}

std::string PackZstd(int id, absl::string_view data) {
  ZstdContexts& z = Zstd(id);
  if (!z.ready) return std::string(data);  // not packed; reads back as it is
  std::string out(2 + ZSTD_compressBound(data.size()), '\0');
  out[0] = kMagic;
  out[1] = static_cast<char>(id);
  const size_t n = ZSTD_compress2(z.c, out.data() + 2, out.size() - 2,
                                  data.data(), data.size());
  if (ZSTD_isError(n)) return std::string(data);
  out.resize(2 + n);
  return KeepSmaller(data, std::move(out));
}

absl::StatusOr<std::string> UnpackZstd(int id, absl::string_view stream) {
  ZstdContexts& z = Zstd(id);
  if (!z.ready) return absl::InternalError("packed value: no zstd state");
  const unsigned long long size =
      ZSTD_getFrameContentSize(stream.data(), stream.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
    return absl::DataLossError("packed value: damaged");
  }
  if (size > kMaxUnpackedBytes)
    return absl::DataLossError("packed value: longer than allowed");
  // No zstd frame expands more than one full block (128 KiB, as an RLE
  // block) per four bytes of stream: a header claiming more is damaged, and
  // refusing it here keeps a few crafted bytes from allocating megabytes.
  constexpr unsigned long long kMaxBlockBytes = 128 * 1024;
  if (size > (stream.size() / 4 + 1) * kMaxBlockBytes)
    return absl::DataLossError("packed value: damaged");
  std::string out(size, '\0');
  const size_t n = ZSTD_decompressDCtx(z.d, out.data(), out.size(),
                                       stream.data(), stream.size());
  if (ZSTD_isError(n) || n != size)
    return absl::DataLossError("packed value: damaged");
  return out;
}

std::string PackDeflate(absl::string_view data) {
  thread_local Deflater d;
  const absl::string_view dict = Dictionary(1);
  if (!d.ready || deflateReset(&d.zs) != Z_OK ||
      deflateSetDictionary(&d.zs, reinterpret_cast<const Bytef*>(dict.data()),
                           static_cast<uInt>(dict.size())) != Z_OK) {
    return std::string(data);  // not packed; reads back as it is
  }
  std::string out(2 + deflateBound(&d.zs, static_cast<uLong>(data.size())),
                  '\0');
  out[0] = kMagic;
  out[1] = '\1';
  d.zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  d.zs.avail_in = static_cast<uInt>(data.size());
  d.zs.next_out = reinterpret_cast<Bytef*>(out.data() + 2);
  d.zs.avail_out = static_cast<uInt>(out.size() - 2);
  if (deflate(&d.zs, Z_FINISH) != Z_STREAM_END) return std::string(data);
  out.resize(out.size() - d.zs.avail_out);
  return KeepSmaller(data, std::move(out));
}

}  // namespace

std::string Pack(absl::string_view data) {
  return PackWith(kCurrentDictionary, data);
}

std::string PackWith(int id, absl::string_view data) {
  if (id == 1) return PackDeflate(data);
  if (id == 2 || id == 3) return PackZstd(id, data);
  return std::string(data);
}

absl::StatusOr<std::string> Unpack(absl::string_view stored) {
  if (stored.empty() || stored[0] != kMagic) return std::string(stored);
  if (stored.size() < 2)
    return absl::DataLossError("packed value: truncated header");
  const int id = static_cast<unsigned char>(stored[1]);
  if (id == 2 || id == 3) return UnpackZstd(id, stored.substr(2));
  const absl::string_view dict = Dictionary(id);
  if (id != 1 || dict.empty())
    return absl::DataLossError(
        absl::StrCat("packed value: unknown dictionary ", id));
  thread_local Inflater in;
  if (!in.ready || inflateReset(&in.zs) != Z_OK)
    return absl::InternalError("packed value: no inflate state");
  // A raw stream names no dictionary: it is set before inflating.
  if (inflateSetDictionary(&in.zs, reinterpret_cast<const Bytef*>(dict.data()),
                           static_cast<uInt>(dict.size())) != Z_OK) {
    return absl::InternalError("packed value: dictionary refused");
  }
  in.zs.next_in =
      reinterpret_cast<Bytef*>(const_cast<char*>(stored.data() + 2));
  in.zs.avail_in = static_cast<uInt>(stored.size() - 2);
  std::string out;
  char buf[16384];
  for (;;) {
    in.zs.next_out = reinterpret_cast<Bytef*>(buf);
    in.zs.avail_out = sizeof(buf);
    const int rc = inflate(&in.zs, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - in.zs.avail_out);
    if (out.size() > kMaxUnpackedBytes)
      return absl::DataLossError("packed value: longer than allowed");
    if (rc == Z_STREAM_END) {
      if (in.zs.avail_in != 0)
        return absl::DataLossError("packed value: bytes after the end");
      return out;
    }
    if (rc != Z_OK) return absl::DataLossError("packed value: damaged");
    if (in.zs.avail_in == 0 && in.zs.avail_out != 0)
      return absl::DataLossError("packed value: truncated");
  }
}

}  // namespace aqueduct::compress
