#ifndef AQUEDUCT_TOOLS_AQUEDUCTCTL_CLI_H_
#define AQUEDUCT_TOOLS_AQUEDUCTCTL_CLI_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace aqueduct::tools {

// The command line in the shape kubectl and grpcurl users know:
//   aqueductctl [global flags] <verb> [NAME] [verb flags]
// Flags are --name=value or --name value (-o value for --output), with
// dashes in names; global flags may come anywhere. Parsing is data-driven
// by the specs below, so help, errors and shell completion all come from
// one table.

struct FlagSpec {
  std::string name;   // without dashes, e.g. "page-size"
  std::string value;  // the value's placeholder in help ("N"); "" = boolean
  std::string help;
  std::string fallback;  // the default (already taken from the environment)
};

struct VerbSpec {
  std::string name;
  std::string args;     // positional arguments in help, e.g. "NAME"; ""
  int min_args = 0;     // positional arguments required
  int max_args = 0;     // at most
  std::string summary;  // one line
  std::string detail;   // more, shown by `help <verb>`
  std::vector<std::string> examples;
  std::vector<FlagSpec> flags;
  bool read = false;  // has -o table|json
};

// What was asked for: the verb, its positional arguments, and every flag's
// value (given, or its default).
struct Invocation {
  std::string verb;
  std::vector<std::string> args;
  std::map<std::string, std::string> values;
  std::map<std::string, bool> given;  // flags on the command line

  const std::string& Str(const std::string& flag) const;
  bool Bool(const std::string& flag) const;
  // The flag's value as a number; INVALID_ARGUMENT names the flag.
  absl::StatusOr<int64_t> Int(const std::string& flag) const;
  absl::StatusOr<double> Double(const std::string& flag) const;
  bool Given(const std::string& flag) const { return given.count(flag) > 0; }
};

class Cli {
 public:
  Cli(std::string program, std::vector<FlagSpec> globals,
      std::vector<VerbSpec> verbs);

  // Parses argv[1..]. INVALID_ARGUMENT says what is wrong and what to run
  // for help: an unknown verb or flag (with the dashed spelling when an
  // underscored one was given), a missing value, too few or many NAMEs,
  // -o other than table or json. "help" and --help/-h give verb "help"
  // with the verb asked about, if any, as its argument.
  absl::StatusOr<Invocation> Parse(const std::vector<std::string>& argv) const;

  // The overview: usage, verbs with their summaries, global flags, exit
  // codes.
  std::string Usage() const;
  // One verb's help: usage line, detail, flags, examples.
  absl::StatusOr<std::string> Help(const std::string& verb) const;
  // A bash completion script (source <(aqueductctl completion bash)).
  std::string BashCompletion() const;

  const std::vector<VerbSpec>& verbs() const { return verbs_; }

 private:
  const VerbSpec* Find(const std::string& verb) const;
  const FlagSpec* FindFlag(const VerbSpec* verb, const std::string& name) const;

  std::string program_;
  std::vector<FlagSpec> globals_;
  std::vector<VerbSpec> verbs_;
};

// Exit codes, documented in the README and in Usage(): 0 success; 1 a
// failure that is not a call's (a file, a job interrupted by an error);
// 2 a usage error; 64 + the gRPC status code when a call fails (grpcurl's
// convention: 69 NOT_FOUND, 71 PERMISSION_DENIED, 78 UNAVAILABLE, ...);
// 130 interrupted by Ctrl-C.
inline constexpr int kExitUsage = 2;
inline constexpr int kExitCallBase = 64;
inline constexpr int kExitInterrupted = 130;

// The subject ("sub" claim) of a JWT, read with a JSON parser and without
// verifying the signature (the services verify); "" when there is none.
std::string TokenSubject(const std::string& token);

}  // namespace aqueduct::tools

#endif  // AQUEDUCT_TOOLS_AQUEDUCTCTL_CLI_H_
