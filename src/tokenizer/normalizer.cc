#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>

#include "core/error.h"
#include "tokenizer/unicode_regex.h"
#include "tokenizer/tokenizer.h"

namespace lmpress {

namespace {

// Calls valid(run) for each maximal run of valid UTF-8 and bad(byte) for each
// byte outside one, in order.
template <class Valid, class Bad>
void for_utf8_runs(std::string_view s, Valid&& valid, Bad&& bad) {
  size_t start = 0, i = 0;
  while (i < s.size()) {
    utf8proc_int32_t cp;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                    utf8proc_ssize_t(s.size() - i), &cp);
    if (n > 0) {
      i += size_t(n);
      continue;
    }
    if (i > start) valid(s.substr(start, i - start));
    bad(s[i]);
    start = ++i;
  }
  if (i > start) valid(s.substr(start, i - start));
}

// Calls f(code point, its bytes) for each code point of valid UTF-8 `s`.
template <class F>
void for_code_points(std::string_view s, F&& f) {
  for (size_t i = 0; i < s.size();) {
    utf8proc_int32_t cp;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                    utf8proc_ssize_t(s.size() - i), &cp);
    f(cp, s.substr(i, size_t(n)));
    i += size_t(n);
  }
}

void append_cp(std::string& out, utf8proc_int32_t cp) {
  utf8proc_uint8_t buf[4];
  out.append(reinterpret_cast<const char*>(buf), size_t(utf8proc_encode_char(cp, buf)));
}

// Rust's char::is_whitespace (Unicode White_Space), which HF's Strip uses.
bool is_white_space(utf8proc_int32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string unicode_form(std::string_view s, NormalizerStep::Kind k) {
  using K = NormalizerStep::Kind;
  int opt = UTF8PROC_STABLE;
  opt |= (k == K::NFC || k == K::NFKC) ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
  if (k == K::NFKC || k == K::NFKD) opt |= UTF8PROC_COMPAT;
  std::string out;
  for_utf8_runs(
      s,
      [&](std::string_view run) {
        utf8proc_uint8_t* dst = nullptr;
        const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()), utf8proc_ssize_t(run.size()),
                                    &dst, utf8proc_option_t(opt));
        if (n < 0) fail("unicode normalization failed: {}", utf8proc_errmsg(n));
        out.append(reinterpret_cast<const char*>(dst), size_t(n));
        std::free(dst);
      },
      [&](char b) { out += b; });
  return out;
}

}  // namespace

const char* normalizer_kind_name(NormalizerStep::Kind k) {
  using K = NormalizerStep::Kind;
  switch (k) {
    case K::NFC: return "NFC";
    case K::NFD: return "NFD";
    case K::NFKC: return "NFKC";
    case K::NFKD: return "NFKD";
    case K::Lowercase: return "Lowercase";
    case K::StripAccents: return "StripAccents";
    case K::Strip: return "Strip";
    case K::Replace: return "Replace";
    case K::Prepend: return "Prepend";
  }
  return "?";
}

struct Normalizer::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

Normalizer::Normalizer(std::vector<NormalizerStep> steps, const std::string& source)
    : steps_(std::move(steps)), source_(source) {
  for (size_t i = 0; i < steps_.size(); i++) {
    const auto& st = steps_[i];
    compiled_.push_back(nullptr);
    if (st.kind != NormalizerStep::Kind::Replace) continue;
    if (st.pattern.empty()) fail("{}: normalizer step {}: Replace with an empty pattern", source, i);
    if (!st.regex) continue;
    auto c = std::make_unique<Compiled>();
    c->code = compile_unicode_regex(st.pattern, fmt::format("{}: normalizer step {}: Replace regex", source, i));
    compiled_.back() = std::move(c);
  }
}

Normalizer::~Normalizer() = default;

std::string Normalizer::apply(std::string_view text) const {
  using K = NormalizerStep::Kind;
  std::string s(text);
  for (size_t i = 0; i < steps_.size(); i++) {
    const auto& st = steps_[i];
    std::string out;
    switch (st.kind) {
      case K::NFC:
      case K::NFD:
      case K::NFKC:
      case K::NFKD:
        out = unicode_form(s, st.kind);
        break;
      case K::Lowercase:
        // Rust's char::to_lowercase, per code point: U+0130 is the one unconditional mapping to two.
        for_utf8_runs(
            s,
            [&](std::string_view run) {
              for_code_points(run, [&](utf8proc_int32_t cp, std::string_view) {
                if (cp == 0x130) out += "i\xCC\x87";
                else append_cp(out, utf8proc_tolower(cp));
              });
            },
            [&](char b) { out += b; });
        break;
      case K::StripAccents:
        for_utf8_runs(
            s,
            [&](std::string_view run) {
              for_code_points(run, [&](utf8proc_int32_t cp, std::string_view bytes) {
                const auto c = utf8proc_category(cp);
                if (c != UTF8PROC_CATEGORY_MN && c != UTF8PROC_CATEGORY_MC && c != UTF8PROC_CATEGORY_ME) out += bytes;
              });
            },
            [&](char b) { out += b; });
        break;
      case K::Strip: {
        // [begin, end): from the first to past the last code point that is not whitespace.
        size_t begin = std::string::npos, end = 0, at = 0;
        for_utf8_runs(
            s,
            [&](std::string_view run) {
              for_code_points(run, [&](utf8proc_int32_t cp, std::string_view bytes) {
                if (!is_white_space(cp)) {
                  if (begin == std::string::npos) begin = at;
                  end = at + bytes.size();
                }
                at += bytes.size();
              });
            },
            [&](char) {
              if (begin == std::string::npos) begin = at;
              end = ++at;
            });
        if (begin == std::string::npos) begin = end = s.size();
        out = s.substr(st.left ? begin : 0, (st.right ? end : s.size()) - (st.left ? begin : 0));
        break;
      }
      case K::Replace:
        if (!st.regex) {
          size_t pos = 0, p;
          while ((p = s.find(st.pattern, pos)) != std::string::npos) {
            out.append(s, pos, p - pos);
            out += st.content;
            pos = p + st.pattern.size();
          }
          out.append(s, pos);
        } else {
          std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(pcre2_match_data_create(1, nullptr),
                                                                             pcre2_match_data_free);
          for_utf8_runs(
              s,
              [&](std::string_view run) {
                size_t pos = 0, copied = 0;
                while (pos <= run.size()) {
                  const int rc = pcre2_match(compiled_[i]->code, reinterpret_cast<PCRE2_SPTR>(run.data()), run.size(),
                                             pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
                  if (rc == PCRE2_ERROR_NOMATCH) break;
                  // e.g. the match limit: never leave the rest silently unreplaced
                  if (rc < 0) fail("{}: normalizer step {}: Replace regex failed: {}", source_, i, pcre2_error_text(rc));
                  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
                  out.append(run.substr(copied, ov[0] - copied));
                  out += st.content;
                  copied = ov[1];
                  if (ov[1] > ov[0]) {
                    pos = ov[1];
                  } else {  // an empty match: the next search starts a code point later
                    if (ov[1] >= run.size()) break;
                    pos = ov[1] + std::min(run.size() - ov[1], utf8_char_len(uint8_t(run[ov[1]])));
                  }
                }
                out.append(run.substr(copied));
              },
              [&](char b) { out += b; });
        }
        break;
      case K::Prepend:
        out = s.empty() ? s : st.pattern + s;
        break;
    }
    s = std::move(out);
  }
  return s;
}

}  // namespace lmpress
