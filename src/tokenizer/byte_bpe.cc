#include "tokenizer/byte_bpe.h"

#include <climits>
#include <queue>

#include "core/error.h"
#include "tokenizer/unicode_regex.h"

namespace lmpress {

// Regexes as llama.cpp writes them (llama-vocab.cpp); HF's "(?i:'s|...)" and
// GPT-2's trailing "|\s+" tokenize identically and are normalized to these.
const char* const kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
namespace {
const char* const kContractions = R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))";
const std::string kLlama3Regex = std::string(kContractions) +
    R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kQwen2Regex = std::string(kContractions) +
    R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen3.5: letters with their combining marks.
const std::string kQwen35Regex = std::string(kContractions) +
    R"(|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-4o's o200k (gpt-oss): case-aware words with their contractions, digits in threes, punctuation with
// trailing newlines or slashes; tokenizer.json's regex, which PCRE2 runs as it is (llama.cpp rewrites it for its
// own engine).
const char* const kGpt4oRegex =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// DeepSeek LLM's letters, punctuation and CJK as llama.cpp spells them (code
// points as PCRE escapes, so that no editor normalises them).
const char* const kDeepseekLetters =
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+";

struct NamedPre {
  const char* name;
  std::vector<std::string> regexes;
};
const std::vector<NamedPre>& named_pres() {
  static const std::vector<NamedPre> k = {
      {"gpt-2", {kGpt2Regex}},
      {"llama-bpe", {kLlama3Regex}},
      {"qwen2", {kQwen2Regex}},
      {"smollm", {R"(\p{N})", kGpt2Regex}},
      {"qwen35", {kQwen35Regex}},
      {"gpt-4o", {kGpt4oRegex}},
      // Gemma 4: BPE over the whole text, split only into runs of newlines and of everything else.
      {"gemma4", {"[^\\n]+|[\\n]+"}},
      {"deepseek-llm", {"[\r\n]", kDeepseekLetters, "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+", "\\s+$", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}+"}},
      {"deepseek-coder", {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}"}},
      {"falcon", {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2Regex, "[0-9][0-9][0-9]"}},
      {"starcoder", {R"(\p{N})", kGpt2Regex}},
      {"refact", {R"(\p{N})", kGpt2Regex}},
      {"command-r", {R"(\p{N})", kGpt2Regex}},
      {"mpt", {kGpt2Regex}},
      {"default", {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Regex, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
  };
  return k;
}

std::string normalize_regex(std::string r) {
  const std::string hf_contractions = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
  if (r.compare(0, hf_contractions.size(), hf_contractions) == 0) r = kContractions + r.substr(hf_contractions.size());
  const std::string gpt2_hf = std::string(kGpt2Regex) + R"(|\s+)";
  if (r == gpt2_hf) r = kGpt2Regex;
  return r;
}

}  // namespace

bool pre_tokenizer_regexes(const std::string& pre, std::vector<std::string>& out) {
  std::string p = pre;
  if (p == "gpt2") p = "gpt-2";
  if (p == "llama3" || p == "smaug-bpe") p = "llama-bpe";
  if (p == "deepseek-r1-qwen") p = "qwen2";
  for (const auto& n : named_pres())
    if (p == n.name) {
      out = n.regexes;
      return true;
    }
  return false;
}

std::string pre_tokenizer_name(const std::vector<std::string>& regexes) {
  std::vector<std::string> norm;
  for (const auto& r : regexes) norm.push_back(normalize_regex(r));
  for (const auto& n : named_pres())
    if (norm == n.regexes) return n.name;
  return "";
}

namespace {

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xc0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    s += char(0xe0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3f));
    s += char(0x80 | (cp & 0x3f));
  } else {
    s += char(0xf0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3f));
    s += char(0x80 | ((cp >> 6) & 0x3f));
    s += char(0x80 | (cp & 0x3f));
  }
}

// Decodes one code point at s[i]; invalid sequences yield the lead byte.
uint32_t next_cp(std::string_view s, size_t& i) {
  unsigned char c = s[i];
  size_t n = std::min(utf8_char_len(c), s.size() - i);
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
  for (size_t k = 1; k < n; k++) cp = (cp << 6) | (uint8_t(s[i + k]) & 0x3f);
  i += n;
  return cp;
}

}  // namespace

struct ByteBpeTokenizer::Regexes {
  std::vector<pcre2_code*> codes;
  ~Regexes() {
    for (auto* c : codes) pcre2_code_free(c);
  }
};

ByteBpeTokenizer::ByteBpeTokenizer(Vocab v, const std::string& source)
    : Tokenizer(std::move(v)), regexes_(std::make_unique<Regexes>()), raw_(vocab_.model == "gemma4") {
  if (vocab_.pre_regexes.empty() && !pre_tokenizer_regexes(vocab_.pre, vocab_.pre_regexes))
    fail("{}: unknown byte-level pre-tokenizer '{}'", source, vocab_.pre);
  for (const auto& pat : vocab_.pre_regexes)
    regexes_->codes.push_back(compile_unicode_regex(pat, source + ": pre-tokenizer regex"));

  for (size_t i = 0; i < vocab_.merges.size(); i++) {
    const auto& m = vocab_.merges[i];
    if (m.find(' ') == std::string::npos) fail("{}: merge {} '{}' is not two tokens", source, i, m);
    merge_rank_.emplace(m, int32_t(i));
  }
  // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256+.
  uint32_t next = 256;
  for (int b = 0; b < 256; b++) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    uint32_t cp = printable ? uint32_t(b) : next++;
    append_utf8(byte_to_cp_[b], cp);
    cp_to_byte_[cp] = uint8_t(b);
  }
}

ByteBpeTokenizer::~ByteBpeTokenizer() = default;

std::vector<std::string_view> ByteBpeTokenizer::pretokenize(std::string_view text) const {
  // Pre-tokenize: each regex splits every current piece into matches and the
  // gaps between them (HF's Split with behavior "Isolated").
  std::vector<std::string_view> words{text};
  // Match data per call keeps encode() safe to call from several threads.
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(pcre2_match_data_create(4, nullptr),
                                                                     pcre2_match_data_free);
  for (auto* code : regexes_->codes) {
    std::vector<std::string_view> next;
    for (auto w : words) {
      size_t pos = 0;
      while (pos < w.size()) {
        int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(w.data()), w.size(), pos, PCRE2_NO_UTF_CHECK,
                             md.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        // e.g. the match limit: never leave the rest silently unsplit
        if (rc < 0) fail("tokenizer: pre-tokenizer regex failed on the text: {}", pcre2_error_text(rc));
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        if (ov[0] > pos) next.push_back(w.substr(pos, ov[0] - pos));
        if (ov[1] == ov[0]) {  // empty match: step one character
          size_t n = std::min(utf8_char_len(uint8_t(w[pos])), w.size() - pos);
          next.push_back(w.substr(pos, n));
          pos += n;
          continue;
        }
        next.push_back(w.substr(ov[0], ov[1] - ov[0]));
        pos = ov[1];
      }
      if (pos < w.size()) next.push_back(w.substr(pos));
    }
    words.swap(next);
  }
  return words;
}

// Merges the lowest-ranked adjacent pair (the leftmost of equal ranks) until
// no pair is in the merge list; merged-away symbols are left empty. A heap of
// candidate pairs makes a word of m symbols O(m log m): rescanning every pair
// per merge is O(m^2), minutes for one long run of letters in a prompt.
void ByteBpeTokenizer::merge(std::vector<std::string>& syms) const {
  const int n = int(syms.size());
  if (n < 2) return;
  std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) {
    prev[size_t(i)] = i - 1;
    next[size_t(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct Pair {
    int32_t rank;
    int left, right;
    size_t left_size, right_size;  // symbols only grow: a size names their state
    bool operator>(const Pair& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Pair, std::vector<Pair>, std::greater<Pair>> heap;
  std::string key;
  auto push = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    key.assign(syms[size_t(l)]).append(" ").append(syms[size_t(r)]);
    auto it = merge_rank_.find(key);
    if (it != merge_rank_.end()) heap.push({it->second, l, r, syms[size_t(l)].size(), syms[size_t(r)].size()});
  };
  for (int i = 0; i + 1 < n; i++) push(i, i + 1);
  while (!heap.empty()) {
    const Pair p = heap.top();
    heap.pop();
    std::string& l = syms[size_t(p.left)];
    std::string& r = syms[size_t(p.right)];
    if (next[size_t(p.left)] != p.right || l.size() != p.left_size || r.size() != p.right_size || r.empty()) continue;
    l += r;
    r.clear();
    const int after = next[size_t(p.right)];
    next[size_t(p.left)] = after;
    if (after >= 0) prev[size_t(after)] = p.left;
    push(prev[size_t(p.left)], p.left);
    push(p.left, after);
  }
}

void ByteBpeTokenizer::encode_fragment(std::string_view text, bool, std::vector<int32_t>& out) const {
  if (raw_) return encode_raw(text, out);
  const std::vector<std::string_view> words = pretokenize(text);
  std::vector<std::string> syms;
  for (auto w : words) {
    std::string mapped;
    for (unsigned char c : w) mapped += byte_to_cp_[c];
    if (vocab_.ignore_merges) {
      auto it = token_to_id_.find(mapped);
      if (it != token_to_id_.end()) {
        out.push_back(it->second);
        continue;
      }
    }
    syms.clear();
    for (size_t i = 0; i < mapped.size();) {
      size_t n = utf8_char_len(uint8_t(mapped[i]));
      syms.push_back(mapped.substr(i, n));
      i += n;
    }
    merge(syms);
    for (const auto& s : syms) {
      if (s.empty()) continue;  // merged into its left neighbour
      auto it = token_to_id_.find(s);
      if (it != token_to_id_.end()) {
        out.push_back(it->second);
      } else if (vocab_.unk >= 0) {
        out.push_back(vocab_.unk);
      } else {
        fail("tokenizer: piece '{}' has no token and the vocabulary has no unknown token", s);
      }
    }
  }
}

// Gemma 4 (llama.cpp's gemma4 vocabulary): spaces become "▁", then BPE by merge rank on the characters of each run
// of newlines or of other text (a newline run that is a token stays whole); a piece with no token falls back to
// its bytes' <0xNN> tokens.
void ByteBpeTokenizer::encode_raw(std::string_view text, std::vector<int32_t>& out) const {
  std::string escaped;
  for (char c : text) {
    if (c == ' ') escaped += "\xE2\x96\x81";
    else escaped += c;
  }
  std::vector<std::string> syms;
  for (auto w : pretokenize(escaped)) {
    if (w.find_first_not_of('\n') == std::string_view::npos) {
      const auto it = token_to_id_.find(std::string(w));
      if (it != token_to_id_.end()) {
        out.push_back(it->second);
        continue;
      }
    }
    syms.clear();
    for (size_t i = 0; i < w.size();) {
      const size_t n = std::min(utf8_char_len(uint8_t(w[i])), w.size() - i);
      syms.emplace_back(w.substr(i, n));
      i += n;
    }
    merge(syms);
    for (const auto& s : syms) {
      if (s.empty()) continue;
      const auto it = token_to_id_.find(s);
      if (it != token_to_id_.end()) {
        out.push_back(it->second);
        continue;
      }
      for (unsigned char c : s) {  // llama.cpp drops a byte without a <0xNN> token
        const auto b = token_to_id_.find(fmt::format("<0x{:02X}>", c));
        if (b != token_to_id_.end()) out.push_back(b->second);
      }
    }
  }
}

std::string ByteBpeTokenizer::decode_token(int32_t id, bool special) const {
  if (id < 0 || size_t(id) >= vocab_.size()) fail("token id {} is outside the vocabulary of {}", id, vocab_.size());
  const std::string& t = vocab_.tokens[id];
  auto type = vocab_.types[id];
  if (type == TokenType::Control || type == TokenType::Unknown) return special ? t : std::string();
  if (type == TokenType::UserDefined) return t;
  if (raw_) {
    if (t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>') return std::string(1, char(std::stoi(t.substr(3, 2), nullptr, 16)));
    std::string s;
    for (size_t i = 0; i < t.size();) {
      if (t.compare(i, 3, "\xE2\x96\x81") == 0) s += ' ', i += 3;
      else s += t[i++];
    }
    return s;
  }
  std::string s;
  for (size_t i = 0; i < t.size();) {
    uint32_t cp = next_cp(t, i);
    auto it = cp_to_byte_.find(cp);
    if (it != cp_to_byte_.end())
      s += char(it->second);
    else
      append_utf8(s, cp);
  }
  return s;
}

}  // namespace lmpress
