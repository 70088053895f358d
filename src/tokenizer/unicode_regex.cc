#include "tokenizer/unicode_regex.h"

#include "core/error.h"

namespace lmpress {

std::string pcre2_error_text(int code) {
  PCRE2_UCHAR msg[256];
  pcre2_get_error_message(code, msg, sizeof msg);
  return reinterpret_cast<char*>(msg);
}

pcre2_code* compile_unicode_regex(const std::string& pattern, const std::string& what) {
  int err;
  PCRE2_SIZE off;
  pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                &err, &off, nullptr);
  if (!c) fail("{} does not compile at {}: {}", what, off, pcre2_error_text(err));
  pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
  return c;
}

}  // namespace lmpress
