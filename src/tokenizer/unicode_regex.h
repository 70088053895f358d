// PCRE2 as the tokenizer's regexes use it (pre-tokenizer splits, normalizer Replace steps): UTF-8 with Unicode
// properties (\p{L}), JIT-compiled, errors named.
#pragma once
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <string>

namespace lmpress {

// Compiles `pattern`; fails "{what} does not compile at {offset}: {PCRE2's message}". The caller frees it.
pcre2_code* compile_unicode_regex(const std::string& pattern, const std::string& what);
// PCRE2's text for an error code (a compile or a match error).
std::string pcre2_error_text(int code);

}  // namespace lmpress
