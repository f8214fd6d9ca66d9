#ifndef AQUEDUCT_SERVICES_SCORING_EXPR_H_
#define AQUEDUCT_SERVICES_SCORING_EXPR_H_

// The rule expression language of the catalog and rulesets (data/README.md):
//
//   expr  := or ;  or := and ("||" and)* ;  and := not ("&&" not)*
//   not   := "!" not | atom
//   atom  := "(" expr ")" | "answered(" ref ")" | "declined(" ref ")"
//          | ref                       (a boolean: flag, signal, x.positive)
//          | ref op literal            op: == != > >= < <=
//          | ref "in" set              (a named set of the ruleset)
//   literal := number | code           (an option code, band id, profile...)
//
// Evaluation is three-valued (Kleene): a missing answer is UNKNOWN, never a
// low value, so "phq9.total < 10" is unknown, not true, for an incomplete
// PHQ-9. An instrument or item that does not apply is ABSENT: every
// comparison on it is false. Names resolve to slots when an expression is
// compiled, so evaluation does no string lookups.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace aqueduct::scoring::expr {

enum class Truth : uint8_t { kFalse, kTrue, kUnknown };

// One named value during scoring.
struct Value {
  enum class Kind : uint8_t {
    kUnknown,
    kAbsent,
    kDeclined,
    kNumber,
    kCode,
    kBool
  };
  Kind kind = Kind::kUnknown;
  bool boolean = false;
  double number = 0;       // kNumber
  absl::string_view code;  // kCode, or the option code of a choice answer

  static Value Unknown() { return Value(); }
  static Value Absent() {
    Value v;
    v.kind = Kind::kAbsent;
    return v;
  }
  static Value Declined() {
    Value v;
    v.kind = Kind::kDeclined;
    return v;
  }
  static Value Number(double n, absl::string_view code = {}) {
    Value v;
    v.kind = Kind::kNumber;
    v.number = n;
    v.code = code;
    return v;
  }
  static Value Code(absl::string_view c) {
    Value v;
    v.kind = Kind::kCode;
    v.code = c;
    return v;
  }
  static Value Bool(bool b) {
    Value v;
    v.kind = Kind::kBool;
    v.boolean = b;
    return v;
  }
  static Value FromTruth(Truth t) {
    return t == Truth::kUnknown ? Unknown() : Bool(t == Truth::kTrue);
  }
};

// Renders a value for explanations: "2", "2 (yes)", "FL", "true",
// "missing", "declined", "not asked".
std::string Render(const Value& v);
// The same into *out, replacing what it held: a result message reused for
// the next screening keeps the string's buffer.
void RenderTo(const Value& v, std::string* out);

// What kind of value a name holds, for load-time checks. Items may be used
// with answered()/declined(); choice items compare with numbers (their
// option values) or with their option codes.
enum class Type : uint8_t { kNumber, kCode, kBool, kItemNumber, kItemCode };

// The names an expression may use, each with a slot.
class Schema {
 public:
  // Declares a name; ALREADY_EXISTS if taken. `codes` are the literals it
  // may be compared with (option codes, band ids, state codes...).
  absl::StatusOr<int> Declare(const std::string& name, Type type,
                              std::vector<std::string> codes = {});
  // Declares a named set (the literal codes it holds).
  void DeclareSet(const std::string& name, std::vector<std::string> values);

  struct Entry {
    std::string name;
    Type type;
    std::vector<std::string> codes;
  };
  const Entry* Find(absl::string_view name, int* slot) const;
  const std::vector<std::string>* FindSet(absl::string_view name) const;
  const Entry& entry(int slot) const { return entries_[slot]; }
  int size() const { return static_cast<int>(entries_.size()); }
  // When set, unknown set names are accepted at compile time (catalog
  // expressions are checked against each ruleset's sets later).
  void set_defer_sets(bool defer) { defer_sets_ = defer; }
  bool defer_sets() const { return defer_sets_; }

 private:
  std::vector<Entry> entries_;
  absl::flat_hash_map<std::string, int> index_;
  absl::flat_hash_map<std::string, std::vector<std::string>> sets_;
  bool defer_sets_ = false;
};

// Named sets at evaluation time.
using SetTable = std::vector<std::pair<std::string, std::vector<std::string>>>;

struct Node;

// A compiled expression.
class Expr {
 public:
  Expr();
  ~Expr();
  Expr(Expr&&) noexcept;
  Expr& operator=(Expr&&) noexcept;

  // Parses and checks `text` against `schema`: unknown names, comparing a
  // code-valued name with a number (or the reverse), a code that is not
  // one of the name's codes, an unknown set. INVALID_ARGUMENT says what and
  // where ("column 12: unknown name \"phq9.totl\"").
  static absl::StatusOr<Expr> Compile(absl::string_view text,
                                      const Schema& schema);

  // An expression that is always true (an empty condition).
  bool empty() const { return root_ == nullptr; }
  Truth Eval(const Value* values, const SetTable& sets) const;
  const std::string& text() const { return text_; }
  // Slots referenced, in order of first use, without repeats.
  const std::vector<int>& slots() const { return slots_; }
  // Set names referenced.
  const std::vector<std::string>& sets() const { return set_names_; }

 private:
  std::string text_;
  std::unique_ptr<Node> root_;
  std::vector<int> slots_;
  std::vector<std::string> set_names_;
};

}  // namespace aqueduct::scoring::expr

#endif  // AQUEDUCT_SERVICES_SCORING_EXPR_H_
