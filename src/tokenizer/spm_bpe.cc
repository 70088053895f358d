#include "tokenizer/spm_bpe.h"

#include <fmt/format.h>

#include <cctype>
#include <queue>

#include "core/error.h"

namespace lmpress {
namespace {

const std::string kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's visible space

struct Symbol {
  int prev, next;
  const char* text;
  size_t n;
};

struct Bigram {
  int left, right;
  float score;
  size_t size;
};

struct BigramOrder {
  // Highest score first; on ties the leftmost pair (llama.cpp's comparator).
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

SpmTokenizer::SpmTokenizer(Vocab v) : Tokenizer(std::move(v)) {
  for (int b = 0; b < 256; b++) {
    int32_t id = find(fmt::format("<0x{:02X}>", b));
    if (id < 0) id = find(std::string(1, char(b)));
    byte_tokens_[b] = id >= 0 ? id : vocab_.unk;
  }
}

void SpmTokenizer::encode_fragment(std::string_view raw, bool first, std::vector<int32_t>& out) const {
  std::string text;
  if (vocab_.add_space_prefix && first) text = kSpace;
  for (char c : raw) {
    if (c == ' ')
      text += kSpace;
    else
      text += c;
  }
  if (text.empty()) return;

  std::vector<Symbol> syms;
  for (size_t off = 0; off < text.size();) {
    size_t len = std::min(utf8_char_len(uint8_t(text[off])), text.size() - off);
    int idx = int(syms.size());
    syms.push_back({idx - 1, off + len == text.size() ? -1 : idx + 1, text.data() + off, len});
    off += len;
  }
  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    std::string_view s(syms[left].text, syms[left].n + syms[right].n);
    auto it = token_to_id_.find(std::string(s));
    if (it == token_to_id_.end()) return;
    queue.push({left, right, vocab_.scores[it->second], s.size()});
  };
  for (size_t i = 1; i < syms.size(); i++) try_add(int(i) - 1, int(i));
  while (!queue.empty()) {
    Bigram b = queue.top();
    queue.pop();
    Symbol& l = syms[b.left];
    Symbol& r = syms[b.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  for (int i = 0; i != -1; i = syms[i].next) {
    const Symbol& s = syms[i];
    auto it = token_to_id_.find(std::string(s.text, s.n));
    if (it != token_to_id_.end()) {
      out.push_back(it->second);
      continue;
    }
    for (size_t k = 0; k < s.n; k++) {
      int32_t id = byte_tokens_[uint8_t(s.text[k])];
      if (id < 0) fail("tokenizer: no byte or unknown token for byte 0x{:02X}", uint8_t(s.text[k]));
      out.push_back(id);
    }
  }
}

std::string SpmTokenizer::decode_token(int32_t id, bool special) const {
  if (id < 0 || size_t(id) >= vocab_.size()) fail("token id {} is outside the vocabulary of {}", id, vocab_.size());
  const std::string& t = vocab_.tokens[id];
  switch (vocab_.types[id]) {
    case TokenType::Byte:  // "<0xHH>"; any other text stands for itself
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(uint8_t(t[3])) &&
          std::isxdigit(uint8_t(t[4])))
        return std::string(1, char(std::stoi(t.substr(3, 2), nullptr, 16)));
      return t;
    case TokenType::Control:
    case TokenType::Unknown:
      return special ? t : std::string();
    case TokenType::UserDefined:
      return t;
    default: {
      std::string s;
      for (size_t i = 0; i < t.size();) {
        if (t.compare(i, kSpace.size(), kSpace) == 0) {
          s += ' ';
          i += kSpace.size();
        } else {
          s += t[i++];
        }
      }
      return s;
    }
  }
}

}  // namespace lmpress
