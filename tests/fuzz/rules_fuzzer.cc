// The rule-expression language, and catalog and ruleset loading: what a
// clinical lead's data files and expressions go through before anything is
// scored. Input: a selector byte, then text. 0: an expression compiled
// against the newest ruleset's schema; 1: a ruleset in text format, built
// against the repository's catalog; 2: a catalog in text format, built.
// Errors are expected; a crash, leak or undefined behaviour is a finding.

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "services/scoring/catalog.h"
#include "services/scoring/expr.h"
#include "services/scoring/ruleset.h"
#include "tests/fuzz/fuzz_data.h"

namespace {

const std::shared_ptr<const aqueduct::scoring::CatalogIndex>& Catalog() {
  static const auto* catalog = [] {
    auto loaded = aqueduct::scoring::CatalogIndex::LoadFile(
        aqueduct::fuzz::SourceDir() + "/data/catalog/catalog.textproto");
    if (!loaded.ok()) std::abort();
    return new std::shared_ptr<const aqueduct::scoring::CatalogIndex>(
        *std::move(loaded));
  }();
  return *catalog;
}

// Text-format parse errors are logged by protobuf: silenced, they are
// expected here by the million.
class Quiet : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int, int, const std::string&) override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  google::protobuf::TextFormat::Parser parser;
  Quiet quiet;
  parser.RecordErrorsTo(&quiet);
  switch (data[0] % 3) {
    case 0: {
      const auto& schema = aqueduct::fuzz::RepositoryEngine().newest().schema();
      (void)aqueduct::scoring::expr::Expr::Compile(text, schema);
      break;
    }
    case 1: {
      aqueduct::scoring::v1::Ruleset ruleset;
      if (parser.ParseFromString(text, &ruleset))
        (void)aqueduct::scoring::RulesetIndex::Build(std::move(ruleset),
                                                     Catalog());
      break;
    }
    default: {
      aqueduct::scoring::v1::Catalog catalog;
      if (parser.ParseFromString(text, &catalog))
        (void)aqueduct::scoring::CatalogIndex::Build(std::move(catalog));
      break;
    }
  }
  return 0;
}
