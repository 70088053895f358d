// A Jinja2 interpreter for chat templates: the subset of the language that
// models' templates use, rendered as Python's Jinja2 renders it in the
// environment transformers builds for apply_chat_template (trim_blocks,
// lstrip_blocks, the sandbox that forbids changing lists and dicts, the
// loopcontrols extension, a `tojson` that is json.dumps, raise_exception and
// strftime_now). Values follow Python's semantics (str() of lists and dicts,
// float repr, integer division, truthiness, Undefined).
//
// A construct outside the subset is refused with an error naming it, never
// rendered differently: TemplateError with kind Unsupported.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"

namespace lmpress::jinja {

// Insertion-ordered objects, as Python's dicts are: a template that iterates
// a message's keys or dumps it with tojson sees them in the order given.
using Json = nlohmann::ordered_json;

class TemplateError : public Error {
 public:
  enum class Kind {
    Syntax,       // the template text does not parse
    Unsupported,  // valid Jinja2 outside the subset: "<construct> not supported"
    Raised,       // the template called raise_exception(message)
    Render,       // what Python's Jinja2 raises while rendering: undefined, type errors, sandbox
    Limit,        // output size, recursion depth or work limit reached
  };
  TemplateError(Kind kind, const std::string& detail, int line);
  Kind kind;
  std::string detail;  // the message without prefix and line (for Raised: the template's own text)
  int line;            // 1-based line of the template, 0 when unknown
};

struct RenderOptions {
  // strftime_now() formats this time; unset: the current local time.
  std::optional<std::tm> now;
  size_t max_output_bytes = size_t(64) << 20;  // also bounds every string built on the way
  int max_depth = 256;                         // nested macro calls
  uint64_t max_steps = 100'000'000;            // statements, loop iterations, calls, filter items
};

class Template {
 public:
  // Parses `source`; throws TemplateError (Syntax or Unsupported).
  explicit Template(std::string_view source);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with `context` (a JSON object) as the template's variables.
  std::string render(const Json& context, const RenderOptions& options = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lmpress::jinja
