#include "tools/aqueductctl/cli.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace aqueduct::tools {
namespace {

const FlagSpec kOutput{"output", "FORMAT",
                       "table (the default) or json (one JSON object per "
                       "result, fields as in the protos)",
                       "table"};

std::string FlagLine(const FlagSpec& f) {
  std::string left = absl::StrCat("  --", f.name);
  if (f.name == "output") left = "  -o, --output";
  if (!f.value.empty()) absl::StrAppend(&left, "=", f.value);
  if (left.size() < 30) left.resize(30, ' ');
  std::string line = absl::StrCat(left, " ", f.help);
  if (!f.value.empty() && !f.fallback.empty())
    absl::StrAppend(&line, " (default ", f.fallback, ")");
  return line + "\n";
}

}  // namespace

const std::string& Invocation::Str(const std::string& flag) const {
  static const std::string* empty = new std::string;
  auto it = values.find(flag);
  return it == values.end() ? *empty : it->second;
}

bool Invocation::Bool(const std::string& flag) const {
  const std::string& v = Str(flag);
  return v == "true" || v == "1";
}

absl::StatusOr<int64_t> Invocation::Int(const std::string& flag) const {
  int64_t n = 0;
  if (!absl::SimpleAtoi(Str(flag), &n)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": not a whole number: \"", Str(flag), "\""));
  }
  return n;
}

absl::StatusOr<double> Invocation::Double(const std::string& flag) const {
  double d = 0;
  if (!absl::SimpleAtod(Str(flag), &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": not a number: \"", Str(flag), "\""));
  }
  return d;
}

Cli::Cli(std::string program, std::vector<FlagSpec> globals,
         std::vector<VerbSpec> verbs)
    : program_(std::move(program)),
      globals_(std::move(globals)),
      verbs_(std::move(verbs)) {
  for (auto& v : verbs_) {
    if (v.read) v.flags.push_back(kOutput);
  }
}

const VerbSpec* Cli::Find(const std::string& verb) const {
  for (const auto& v : verbs_) {
    if (v.name == verb) return &v;
  }
  return nullptr;
}

const FlagSpec* Cli::FindFlag(const VerbSpec* verb,
                              const std::string& name) const {
  if (verb != nullptr) {
    for (const auto& f : verb->flags) {
      if (f.name == name) return &f;
    }
  }
  for (const auto& f : globals_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::StatusOr<Invocation> Cli::Parse(
    const std::vector<std::string>& argv) const {
  Invocation inv;
  // The verb is the first word that is not a flag or a flag's value; global
  // flags before it are parsed once the verb (and its flags) are known.
  std::vector<std::pair<std::string, std::string>> flags;  // name, value
  std::vector<std::string> words;
  const std::string see = absl::StrCat(" (see '", program_, " help')");
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-h" || a == "--help") {
      flags.emplace_back("help", "true");
      continue;
    }
    if (a == "--") {
      for (++i; i < argv.size(); ++i) words.push_back(argv[i]);
      break;
    }
    std::string name, value;
    bool has_value = false;
    if (absl::StartsWith(a, "--") && a.size() > 2) {
      name = a.substr(2);
    } else if (absl::StartsWith(a, "-o")) {
      name = "output";
      if (a.size() > 2) {
        value = a.substr(a[2] == '=' ? 3 : 2);
        has_value = true;
      }
    } else if (absl::StartsWith(a, "-") && a.size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", a, see));
    } else {
      words.push_back(a);
      continue;
    }
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    // Whether the flag takes a value decides whether the next word is it;
    // the verb may not be known yet, so look in every verb.
    bool boolean = false, known = false;
    for (const auto& f : globals_) {
      if (f.name == name) known = true, boolean = f.value.empty();
    }
    for (const auto& v : verbs_) {
      for (const auto& f : v.flags) {
        if (f.name == name) known = true, boolean = f.value.empty();
      }
    }
    if (!known) {
      // An underscored spelling of a flag that exists: say which.
      std::string hint;
      const std::string dashed = absl::StrReplaceAll(name, {{"_", "-"}});
      bool dashed_known = false;
      for (const auto& f : globals_) dashed_known |= f.name == dashed;
      for (const auto& v : verbs_) {
        for (const auto& f : v.flags) dashed_known |= f.name == dashed;
      }
      if (dashed != name && dashed_known)
        hint = absl::StrCat("; did you mean --", dashed, "?");
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, hint, see));
    }
    if (!has_value) {
      if (boolean) {
        value = "true";
      } else if (i + 1 < argv.size()) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, ": needs a value"));
      }
    }
    flags.emplace_back(name, value);
  }
  const bool help = std::any_of(flags.begin(), flags.end(), [](const auto& f) {
    return f.first == "help";
  });
  if (words.empty() || words[0] == "help" || help) {
    inv.verb = "help";
    for (const auto& w : words) {
      if (w != "help") inv.args.push_back(w);
    }
    return inv;
  }
  const VerbSpec* verb = Find(words[0]);
  if (verb == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command \"", words[0], "\"", see));
  }
  inv.verb = verb->name;
  inv.args.assign(words.begin() + 1, words.end());
  const std::string verb_see =
      absl::StrCat(" (see '", program_, " help ", verb->name, "')");
  if (static_cast<int>(inv.args.size()) < verb->min_args) {
    return absl::InvalidArgumentError(
        absl::StrCat(verb->name, ": ", verb->args, " is required", verb_see));
  }
  if (static_cast<int>(inv.args.size()) > verb->max_args) {
    return absl::InvalidArgumentError(
        absl::StrCat(verb->name, ": unexpected argument \"",
                     inv.args[verb->max_args], "\"", verb_see));
  }
  for (const auto& f : globals_) inv.values[f.name] = f.fallback;
  for (const auto& f : verb->flags) inv.values[f.name] = f.fallback;
  for (const auto& [name, value] : flags) {
    if (FindFlag(verb, name) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " is not a flag of ", verb->name, verb_see));
    }
    inv.values[name] = value;
    inv.given[name] = true;
  }
  if (verb->read && inv.Str("output") != "table" &&
      inv.Str("output") != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("-o: table or json, not \"", inv.Str("output"), "\""));
  }
  return inv;
}

std::string Cli::Usage() const {
  std::string out = absl::StrCat("Usage: ", program_,
                                 " [global flags] <command> [NAME] [flags]\n\n"
                                 "Commands:\n");
  for (const auto& v : verbs_) {
    std::string left = absl::StrCat("  ", v.name);
    left.resize(14, ' ');
    absl::StrAppend(&out, left, v.summary, "\n");
  }
  absl::StrAppend(&out, "  help        this overview, or one command's help\n",
                  "\nGlobal flags (any command, anywhere on the line):\n");
  for (const auto& f : globals_) absl::StrAppend(&out, FlagLine(f));
  absl::StrAppend(
      &out,
      "\nExit codes: 0 success; 1 failed (not a call: a file, a job stopped "
      "by an\nerror); 2 usage error; 64 + the gRPC status code when a call "
      "fails (69\nNOT_FOUND, 71 PERMISSION_DENIED, 72 RESOURCE_EXHAUSTED, 73 "
      "FAILED_PRECONDITION,\n78 UNAVAILABLE, 80 UNAUTHENTICATED); 130 "
      "interrupted.\n\nRun '",
      program_, " help <command>' for a command's flags and examples.\n");
  return out;
}

absl::StatusOr<std::string> Cli::Help(const std::string& name) const {
  const VerbSpec* v = Find(name);
  if (v == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("no command \"", name, "\" (see '", program_, " help')"));
  }
  std::string out =
      absl::StrCat(v->summary, "\n\nUsage: ", program_, " ", v->name,
                   v->args.empty() ? "" : " ", v->args, " [flags]\n");
  if (!v->detail.empty()) absl::StrAppend(&out, "\n", v->detail, "\n");
  if (!v->flags.empty()) {
    absl::StrAppend(&out, "\nFlags:\n");
    for (const auto& f : v->flags) absl::StrAppend(&out, FlagLine(f));
  }
  if (!v->examples.empty()) {
    absl::StrAppend(&out, "\nExamples:\n");
    for (const auto& e : v->examples) absl::StrAppend(&out, "  ", e, "\n");
  }
  absl::StrAppend(&out, "\nGlobal flags: see '", program_, " help'.\n");
  return out;
}

std::string Cli::BashCompletion() const {
  std::vector<std::string> verbs = {"help"};
  for (const auto& v : verbs_) verbs.push_back(v.name);
  std::vector<std::string> globals;
  for (const auto& f : globals_) globals.push_back("--" + f.name);
  std::string out = absl::StrCat(
      "# bash completion for ", program_, ": source <(", program_,
      " completion bash)\n_", program_, "() {\n",
      "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" verb=\"\" w\n",
      "  for w in \"${COMP_WORDS[@]:1:COMP_CWORD-1}\"; do\n",
      "    case \"$w\" in -*) ;; *) verb=\"$w\"; break ;; esac\n  done\n",
      "  local globals=\"", absl::StrJoin(globals, " "), "\"\n",
      "  local flags=\"\"\n  case \"$verb\" in\n");
  for (const auto& v : verbs_) {
    std::vector<std::string> names;
    for (const auto& f : v.flags) names.push_back("--" + f.name);
    absl::StrAppend(&out, "    ", v.name, ") flags=\"",
                    absl::StrJoin(names, " "), "\" ;;\n");
  }
  absl::StrAppend(
      &out, "    \"\") COMPREPLY=($(compgen -W \"", absl::StrJoin(verbs, " "),
      " $globals\" -- \"$cur\")); return ;;\n",
      "    help) COMPREPLY=($(compgen -W \"", absl::StrJoin(verbs, " "),
      "\" -- \"$cur\")); return ;;\n  esac\n",
      "  COMPREPLY=($(compgen -W \"$flags $globals\" -- \"$cur\"))\n}\n",
      "complete -F _", program_, " ", program_, "\n");
  return out;
}

std::string TokenSubject(const std::string& token) {
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  std::string payload;
  if (parts.size() != 3 || !absl::WebSafeBase64Unescape(parts[1], &payload))
    return "";
  google::protobuf::Struct claims;
  if (!google::protobuf::util::JsonStringToMessage(payload, &claims).ok())
    return "";
  auto it = claims.fields().find("sub");
  if (it == claims.fields().end() || !it->second.has_string_value()) return "";
  return it->second.string_value();
}

}  // namespace aqueduct::tools
