#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/module_match.h"

#include <pcre2.h>

#include "core/error.h"

namespace lmpress {

struct PyRegex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

PyRegex::PyRegex(const std::string& pattern, const std::string& what) : pattern_(pattern), code_(std::make_unique<Code>()) {
  int err = 0;
  PCRE2_SIZE off = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF, &err, &off, nullptr);
  if (!code_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("{}: '{}' is not a regular expression (at offset {}: {})", what, pattern, off, reinterpret_cast<char*>(msg));
  }
}

PyRegex::~PyRegex() = default;
PyRegex::PyRegex(PyRegex&&) noexcept = default;
PyRegex& PyRegex::operator=(PyRegex&&) noexcept = default;

namespace {
// A failed match other than "no match" (a subject that is not UTF-8, a match limit) is an error, not a miss:
// an ignore list must not silently skip.
bool run(const pcre2_code* code, const std::string& pattern, const std::string& s, uint32_t options) {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, options, md, nullptr);
  pcre2_match_data_free(md);
  if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    fail("regular expression '{}' on '{}': {}", pattern, s, reinterpret_cast<char*>(msg));
  }
  return rc >= 0;
}
}  // namespace

bool PyRegex::match(const std::string& s) const { return run(code_->code, pattern_, s, PCRE2_ANCHORED); }
bool PyRegex::search(const std::string& s) const { return run(code_->code, pattern_, s, 0); }

ModuleTarget::ModuleTarget(const std::string& spelled, const std::string& what) : spelled_(spelled), what_(what) {
  if (spelled.empty()) fail("{}: an empty module name", what);
  if (spelled.rfind("re:", 0) == 0)
    regex_ = std::make_shared<PyRegex>(spelled.substr(3), what);
  else
    is_class_ = spelled == "Linear";
}

bool ModuleTarget::matches_name(const std::string& module) const {
  if (is_class_) return false;
  return regex_ ? regex_->match(module) : spelled_ == module;
}

bool ModuleTarget::selects_linear(const std::string& module) const {
  if (is_class_) return true;
  std::string name = module;
  while (true) {
    if (matches_name(name)) return true;
    const size_t dot = name.rfind('.');
    if (dot == std::string::npos) return false;
    name.resize(dot);
  }
}

bool ModuleSelector::selects(const std::string& linear_module) const {
  bool in = targets.empty();
  for (const auto& t : targets) in = in || entry_selects(t, linear_module);
  if (!in) return false;
  for (const auto& t : ignore)
    if (entry_selects(t, linear_module)) return false;
  return true;
}

bool ModuleSelector::everything() const {
  if (!ignore.empty()) return false;
  for (const auto& t : targets)
    if (t.is_class()) return true;
  return targets.empty();
}

ModuleSelector module_selector(const std::vector<std::string>& targets, const std::vector<std::string>& ignore,
                               const std::string& targets_what, const std::string& ignore_what) {
  ModuleSelector s;
  for (const auto& t : targets) s.targets.emplace_back(t, targets_what);
  for (const auto& t : ignore) s.ignore.emplace_back(t, ignore_what);
  return s;
}

}  // namespace lmpress
