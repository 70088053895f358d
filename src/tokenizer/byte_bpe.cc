#include "tokenizer/byte_bpe.h"

#include <climits>
#include <queue>

#include "core/error.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/unicode_regex.h"

namespace lmpress {

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
    : Tokenizer(std::move(v)), regexes_(std::make_unique<Regexes>()) {
  const PreTokenizer* pre = find_pre_tokenizer(vocab_.pre);
  if (vocab_.pre_regexes.empty()) {
    if (!pre)
      fail("{}: unknown byte-level pre-tokenizer '{}' (the names lmpress knows are llama.cpp's, listed in the README)",
           source, vocab_.pre);
    vocab_.pre_regexes = pre->regexes;
  }
  raw_ = pre && pre->raw;
  newline_tokens_ = pre && pre->newline_tokens;
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
      size_t start = 0, from = 0;  // the piece not yet taken; where the next search starts
      while (from < w.size()) {
        int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(w.data()), w.size(), from, PCRE2_NO_UTF_CHECK,
                             md.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        // e.g. the match limit: never leave the rest silently unsplit
        if (rc < 0) fail("tokenizer: pre-tokenizer regex failed on the text: {}", pcre2_error_text(rc));
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        if (ov[0] > start) next.push_back(w.substr(start, ov[0] - start));
        start = ov[0];
        if (ov[1] == ov[0]) {  // an empty match only splits there; search on from the next character
          from = ov[0] + std::min(utf8_char_len(uint8_t(w[ov[0]])), w.size() - ov[0]);
          continue;
        }
        next.push_back(w.substr(ov[0], ov[1] - ov[0]));
        start = from = ov[1];
      }
      if (start < w.size()) next.push_back(w.substr(start));
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

// Raw vocabularies (Gemma 4, Sarvam): spaces become "▁", then BPE by merge rank on the characters of each run of
// newlines or of other text (for Gemma 4 a newline run that is a token stays whole); a piece with no token falls
// back to its bytes' <0xNN> tokens.
void ByteBpeTokenizer::encode_raw(std::string_view text, std::vector<int32_t>& out) const {
  std::string escaped;
  for (char c : text) {
    if (c == ' ') escaped += "\xE2\x96\x81";
    else escaped += c;
  }
  std::vector<std::string> syms;
  for (auto w : pretokenize(escaped)) {
    if (newline_tokens_ && w.find_first_not_of('\n') == std::string_view::npos) {
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
