// Module names matched as llm-compressor, compressed-tensors and vLLM match
// them (compressed-tensors utils/match.py, vLLM's quantization utils): a
// pattern is an exact name, or "re:REGEX" matched at the start of the name as
// Python's re.match (PCRE2, anchored; not at the end). Names are Hugging Face
// module names: model.layers.3.mlp.down_proj.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace lmpress {

// A Python-style regular expression, compiled once. Fails naming `what` when
// it does not compile.
class PyRegex {
 public:
  PyRegex(const std::string& pattern, const std::string& what);
  ~PyRegex();
  PyRegex(PyRegex&&) noexcept;
  PyRegex& operator=(PyRegex&&) noexcept;
  bool match(const std::string& s) const;   // re.match: anchored at the start
  bool search(const std::string& s) const;  // re.search
  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::unique_ptr<Code> code_;
};

// One entry of a targets or ignore list: an exact module name, "re:REGEX",
// or the class name "Linear" (every linear layer).
class ModuleTarget {
 public:
  ModuleTarget(const std::string& spelled, const std::string& what);
  bool is_class() const { return is_class_; }
  bool is_regex() const { return regex_ != nullptr; }
  // Whether this entry matches the module's own name (not its class).
  bool matches_name(const std::string& module) const;
  // Whether it selects the linear `module`: its class, its name, or the name
  // of a module that contains it (model.layers.3 or model.layers.3.mlp for
  // model.layers.3.mlp.up_proj), as a recipe's layer targets select the
  // linears inside.
  bool selects_linear(const std::string& module) const;
  const std::string& spelled() const { return spelled_; }
  const std::string& what() const { return what_; }  // the list it came from: "quantize --ignore"

 private:
  std::string spelled_, what_;
  bool is_class_ = false;
  std::shared_ptr<PyRegex> regex_;
};

// The linears a step works on: those some target selects and no ignore entry does.
struct ModuleSelector {
  std::vector<ModuleTarget> targets;  // empty: every linear
  std::vector<ModuleTarget> ignore;
  // Whether an entry naming a module also selects the linears inside it (lmpress's command line, and pruning
  // recipes' layer targets); false: only a linear's own name or its class, as compressed-tensors matches a
  // quantization recipe's targets and ignore list.
  bool containing = true;
  bool selects(const std::string& linear_module) const;
  bool entry_selects(const ModuleTarget& t, const std::string& linear_module) const {
    return containing ? t.selects_linear(linear_module) : t.is_class() || t.matches_name(linear_module);
  }
  bool everything() const;  // no target narrower than Linear and nothing ignored
};

// Parses targets and ignore lists (named in errors by targets_what, ignore_what).
ModuleSelector module_selector(const std::vector<std::string>& targets, const std::vector<std::string>& ignore,
                               const std::string& targets_what, const std::string& ignore_what);

}  // namespace lmpress
