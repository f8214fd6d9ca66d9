#include "services/scoring/expr.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status/status_macros.h"

namespace aqueduct::scoring::expr {

enum class Op : uint8_t {
  kOr,
  kAnd,
  kNot,
  kCmp,
  kIn,
  kAnswered,
  kDeclined,
  kBool
};
enum class Cmp : uint8_t { kEq, kNe, kGt, kGe, kLt, kLe };

struct Node {
  Op op;
  Cmp cmp = Cmp::kEq;
  int slot = -1;
  bool literal_is_code = false;
  double number = 0;
  std::string code;
  std::string set;
  std::vector<Node> kids;
};

namespace {

bool CompareNumbers(double a, Cmp c, double b) {
  switch (c) {
    case Cmp::kEq:
      return a == b;
    case Cmp::kNe:
      return a != b;
    case Cmp::kGt:
      return a > b;
    case Cmp::kGe:
      return a >= b;
    case Cmp::kLt:
      return a < b;
    case Cmp::kLe:
      return a <= b;
  }
  return false;
}

Truth ToTruth(bool b) { return b ? Truth::kTrue : Truth::kFalse; }

Truth EvalNode(const Node& n, const Value* values, const SetTable& sets) {
  switch (n.op) {
    case Op::kOr: {
      Truth out = Truth::kFalse;
      for (const Node& k : n.kids) {
        Truth t = EvalNode(k, values, sets);
        if (t == Truth::kTrue) return Truth::kTrue;
        if (t == Truth::kUnknown) out = Truth::kUnknown;
      }
      return out;
    }
    case Op::kAnd: {
      Truth out = Truth::kTrue;
      for (const Node& k : n.kids) {
        Truth t = EvalNode(k, values, sets);
        if (t == Truth::kFalse) return Truth::kFalse;
        if (t == Truth::kUnknown) out = Truth::kUnknown;
      }
      return out;
    }
    case Op::kNot: {
      Truth t = EvalNode(n.kids[0], values, sets);
      if (t == Truth::kUnknown) return t;
      return t == Truth::kTrue ? Truth::kFalse : Truth::kTrue;
    }
    case Op::kAnswered: {
      auto k = values[n.slot].kind;
      return ToTruth(k == Value::Kind::kNumber || k == Value::Kind::kCode ||
                     k == Value::Kind::kBool);
    }
    case Op::kDeclined:
      return ToTruth(values[n.slot].kind == Value::Kind::kDeclined);
    case Op::kBool: {
      const Value& v = values[n.slot];
      if (v.kind == Value::Kind::kBool) return ToTruth(v.boolean);
      if (v.kind == Value::Kind::kAbsent) return Truth::kFalse;
      return Truth::kUnknown;
    }
    case Op::kIn: {
      const Value& v = values[n.slot];
      if (v.kind == Value::Kind::kAbsent) return Truth::kFalse;
      if (v.kind != Value::Kind::kCode && v.kind != Value::Kind::kNumber)
        return Truth::kUnknown;
      for (const auto& [name, members] : sets) {
        if (name != n.set) continue;
        return ToTruth(std::find(members.begin(), members.end(), v.code) !=
                       members.end());
      }
      return Truth::kFalse;  // set not provided: nothing is in it
    }
    case Op::kCmp: {
      const Value& v = values[n.slot];
      switch (v.kind) {
        case Value::Kind::kAbsent:
          return Truth::kFalse;
        case Value::Kind::kUnknown:
        case Value::Kind::kDeclined:
          return Truth::kUnknown;
        case Value::Kind::kBool:
          return Truth::kUnknown;  // rejected at compile time
        case Value::Kind::kNumber:
          if (n.literal_is_code) {
            bool eq = v.code == n.code;
            return ToTruth(n.cmp == Cmp::kEq ? eq : !eq);
          }
          return ToTruth(CompareNumbers(v.number, n.cmp, n.number));
        case Value::Kind::kCode: {
          bool eq = v.code == n.code;
          return ToTruth(n.cmp == Cmp::kEq ? eq : !eq);
        }
      }
      return Truth::kUnknown;
    }
  }
  return Truth::kUnknown;
}

// Recursive-descent parser over the expression text.
class Parser {
 public:
  Parser(absl::string_view text, const Schema& schema)
      : text_(text), schema_(schema) {}

  absl::StatusOr<Node> ParseAll() {
    auto n = ParseOr();
    if (!n.ok()) return n;
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text");
    return n;
  }
  std::vector<int> slots;
  std::vector<std::string> set_names;

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("column ", pos_ + 1, ": ", what, " in \"", text_, "\""));
  }
  void SkipSpace() {
    while (pos_ < text_.size() &&
           absl::ascii_isspace(static_cast<unsigned char>(text_[pos_])))
      ++pos_;
  }
  bool Eat(absl::string_view tok) {
    SkipSpace();
    if (text_.substr(pos_, tok.size()) == tok) {
      pos_ += tok.size();
      return true;
    }
    return false;
  }
  static bool IdentStart(char c) {
    return absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_';
  }
  static bool IdentChar(char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
           c == '.';
  }
  std::string Ident() {
    SkipSpace();
    size_t start = pos_;
    if (pos_ < text_.size() && IdentStart(text_[pos_])) {
      while (pos_ < text_.size() && IdentChar(text_[pos_])) ++pos_;
    }
    return std::string(text_.substr(start, pos_ - start));
  }
  void Use(int slot) {
    if (std::find(slots.begin(), slots.end(), slot) == slots.end())
      slots.push_back(slot);
  }

  absl::StatusOr<Node> ParseOr() {
    auto first = ParseAnd();
    if (!first.ok()) return first;
    Node n{Op::kOr};
    n.kids.push_back(std::move(*first));
    while (Eat("||")) {
      auto next = ParseAnd();
      if (!next.ok()) return next;
      n.kids.push_back(std::move(*next));
    }
    if (n.kids.size() == 1) return std::move(n.kids[0]);
    return n;
  }
  absl::StatusOr<Node> ParseAnd() {
    auto first = ParseNot();
    if (!first.ok()) return first;
    Node n{Op::kAnd};
    n.kids.push_back(std::move(*first));
    while (Eat("&&")) {
      auto next = ParseNot();
      if (!next.ok()) return next;
      n.kids.push_back(std::move(*next));
    }
    if (n.kids.size() == 1) return std::move(n.kids[0]);
    return n;
  }
  // Parentheses and '!' nest by recursion: deeper than this is refused
  // rather than allowed to exhaust the stack (no real rule comes close).
  static constexpr int kMaxNesting = 64;
  class Nested {
   public:
    explicit Nested(int* depth) : depth_(depth) { ++*depth_; }
    ~Nested() { --*depth_; }
    bool too_deep() const { return *depth_ > kMaxNesting; }

   private:
    int* depth_;
  };

  absl::StatusOr<Node> ParseNot() {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == '!' &&
        (pos_ + 1 >= text_.size() || text_[pos_ + 1] != '=')) {
      ++pos_;
      const Nested nested(&depth_);
      if (nested.too_deep())
        return Error(absl::StrCat("nested more than ", kMaxNesting, " deep"));
      auto inner = ParseNot();
      if (!inner.ok()) return inner;
      Node n{Op::kNot};
      n.kids.push_back(std::move(*inner));
      return n;
    }
    return ParseAtom();
  }
  absl::StatusOr<Node> ParseAtom() {
    if (Eat("(")) {
      const Nested nested(&depth_);
      if (nested.too_deep())
        return Error(absl::StrCat("nested more than ", kMaxNesting, " deep"));
      auto inner = ParseOr();
      if (!inner.ok()) return inner;
      if (!Eat(")")) return Error("missing ')'");
      return inner;
    }
    const size_t name_pos = pos_;
    std::string name = Ident();
    if (name.empty()) return Error("expected a name");
    if (name == "answered" || name == "declined") {
      if (!Eat("(")) return Error(absl::StrCat("expected '(' after ", name));
      int slot = -1;
      std::string ref = Ident();
      const Schema::Entry* e = schema_.Find(ref, &slot);
      if (e == nullptr)
        return Error(absl::StrCat("unknown name \"", ref, "\""));
      if (e->type != Type::kItemNumber && e->type != Type::kItemCode) {
        return Error(absl::StrCat(name, "() needs an item, not \"", ref, "\""));
      }
      if (!Eat(")")) return Error("missing ')'");
      Use(slot);
      Node n{name == "answered" ? Op::kAnswered : Op::kDeclined};
      n.slot = slot;
      return n;
    }
    int slot = -1;
    const Schema::Entry* e = schema_.Find(name, &slot);
    if (e == nullptr) {
      pos_ = name_pos;
      return Error(absl::StrCat("unknown name \"", name, "\""));
    }
    Use(slot);
    SkipSpace();
    // "in" must be a whole word.
    if (text_.substr(pos_, 2) == "in" &&
        (pos_ + 2 >= text_.size() || !IdentChar(text_[pos_ + 2]))) {
      pos_ += 2;
      std::string set = Ident();
      if (set.empty()) return Error("expected a set name after 'in'");
      if (schema_.FindSet(set) == nullptr && !defer_sets()) {
        return Error(absl::StrCat("unknown set \"", set, "\""));
      }
      if (e->type == Type::kBool)
        return Error(absl::StrCat("\"", name, "\" is true/false, not a code"));
      if (std::find(set_names.begin(), set_names.end(), set) == set_names.end())
        set_names.push_back(set);
      Node n{Op::kIn};
      n.slot = slot;
      n.set = set;
      return n;
    }
    Cmp cmp;
    if (Eat("=="))
      cmp = Cmp::kEq;
    else if (Eat("!="))
      cmp = Cmp::kNe;
    else if (Eat(">="))
      cmp = Cmp::kGe;
    else if (Eat("<="))
      cmp = Cmp::kLe;
    else if (Eat(">"))
      cmp = Cmp::kGt;
    else if (Eat("<"))
      cmp = Cmp::kLt;
    else {
      if (e->type != Type::kBool) {
        return Error(absl::StrCat(
            "\"", name, "\" is not true/false; compare it with a value"));
      }
      Node n{Op::kBool};
      n.slot = slot;
      return n;
    }
    if (e->type == Type::kBool)
      return Error(
          absl::StrCat("\"", name, "\" is true/false; use it bare or with !"));
    Node n{Op::kCmp};
    n.cmp = cmp;
    n.slot = slot;
    SkipSpace();
    size_t lit_start = pos_;
    while (pos_ < text_.size() &&
           (IdentChar(text_[pos_]) || text_[pos_] == '-'))
      ++pos_;
    absl::string_view lit = text_.substr(lit_start, pos_ - lit_start);
    if (lit.empty()) return Error("expected a value");
    double number = 0;
    if (absl::SimpleAtod(lit, &number) && !IdentStart(lit[0])) {
      if (e->type == Type::kCode || e->type == Type::kItemCode) {
        return Error(absl::StrCat(
            "\"", name, "\" holds codes; compare it with one of its codes"));
      }
      n.number = number;
      return n;
    }
    // A code literal: must be one the name can hold.
    if (e->type == Type::kNumber ||
        (e->type == Type::kItemNumber && e->codes.empty())) {
      return Error(
          absl::StrCat("\"", name, "\" is a number; \"", lit, "\" is not"));
    }
    if (cmp != Cmp::kEq && cmp != Cmp::kNe)
      return Error("codes compare only with == or !=");
    if (std::find(e->codes.begin(), e->codes.end(), lit) == e->codes.end()) {
      return Error(
          absl::StrCat("\"", lit, "\" is not a code of \"", name, "\""));
    }
    n.literal_is_code = true;
    n.code = std::string(lit);
    return n;
  }
  bool defer_sets() const { return schema_.defer_sets(); }

  absl::string_view text_;
  const Schema& schema_;
  size_t pos_ = 0;
  int depth_ = 0;  // parentheses and "!" open at pos_
};

}  // namespace

std::string Render(const Value& v) {
  std::string out;
  RenderTo(v, &out);
  return out;
}

void RenderTo(const Value& v, std::string* out) {
  switch (v.kind) {
    case Value::Kind::kUnknown:
      out->assign("missing");
      return;
    case Value::Kind::kAbsent:
      out->assign("not asked");
      return;
    case Value::Kind::kDeclined:
      out->assign("declined");
      return;
    case Value::Kind::kBool:
      out->assign(v.boolean ? "true" : "false");
      return;
    case Value::Kind::kCode:
      out->assign(v.code.data(), v.code.size());
      return;
    case Value::Kind::kNumber: {
      out->clear();
      if (v.number == std::floor(v.number) && std::fabs(v.number) < 1e15) {
        absl::StrAppend(out, static_cast<int64_t>(v.number));
      } else {
        absl::StrAppendFormat(out, "%.2f", v.number);
      }
      if (!v.code.empty()) absl::StrAppend(out, " (", v.code, ")");
      return;
    }
  }
  out->assign("?");
}

absl::StatusOr<int> Schema::Declare(const std::string& name, Type type,
                                    std::vector<std::string> codes) {
  if (index_.contains(name)) {
    return absl::AlreadyExistsError(
        absl::StrCat("name \"", name, "\" declared twice"));
  }
  int slot = static_cast<int>(entries_.size());
  entries_.push_back(Entry{name, type, std::move(codes)});
  index_.emplace(name, slot);
  return slot;
}

void Schema::DeclareSet(const std::string& name,
                        std::vector<std::string> values) {
  sets_[name] = std::move(values);
}

const Schema::Entry* Schema::Find(absl::string_view name, int* slot) const {
  auto it = index_.find(name);
  if (it == index_.end()) return nullptr;
  *slot = it->second;
  return &entries_[it->second];
}

const std::vector<std::string>* Schema::FindSet(absl::string_view name) const {
  auto it = sets_.find(name);
  return it == sets_.end() ? nullptr : &it->second;
}

Expr::Expr() = default;
Expr::~Expr() = default;
Expr::Expr(Expr&&) noexcept = default;
Expr& Expr::operator=(Expr&&) noexcept = default;

absl::StatusOr<Expr> Expr::Compile(absl::string_view text,
                                   const Schema& schema) {
  Expr out;
  out.text_ = std::string(text);
  if (absl::StripAsciiWhitespace(text).empty()) return out;
  Parser parser(text, schema);
  ASSIGN_OR_RETURN(auto root, parser.ParseAll());
  out.root_ = std::make_unique<Node>(std::move(root));
  out.slots_ = std::move(parser.slots);
  out.set_names_ = std::move(parser.set_names);
  return out;
}

Truth Expr::Eval(const Value* values, const SetTable& sets) const {
  if (root_ == nullptr) return Truth::kTrue;
  return EvalNode(*root_, values, sets);
}

}  // namespace aqueduct::scoring::expr
