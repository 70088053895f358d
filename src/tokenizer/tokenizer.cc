#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/byte_bpe.h"
#include "tokenizer/spm_bpe.h"

namespace lmpress {

size_t utf8_char_len(unsigned char c) {
  static const size_t lookup[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[c >> 4];
}

Tokenizer::Tokenizer(Vocab v) : vocab_(std::move(v)) {
  if (vocab_.types.empty()) vocab_.types.assign(vocab_.tokens.size(), TokenType::Normal);
  if (vocab_.scores.empty()) vocab_.scores.assign(vocab_.tokens.size(), 0.0f);
  token_to_id_.reserve(vocab_.tokens.size());
  for (size_t i = 0; i < vocab_.tokens.size(); i++) token_to_id_.emplace(vocab_.tokens[i], int32_t(i));
  for (size_t i = 0; i < vocab_.tokens.size(); i++) {
    auto t = vocab_.types[i];
    if ((t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) &&
        !vocab_.tokens[i].empty())
      special_ids_.push_back(int32_t(i));
  }
  std::stable_sort(special_ids_.begin(), special_ids_.end(), [&](int32_t a, int32_t b) {
    return vocab_.tokens[a].size() > vocab_.tokens[b].size();
  });
}

int32_t Tokenizer::find(std::string_view piece) const {
  auto it = token_to_id_.find(std::string(piece));
  return it == token_to_id_.end() ? -1 : it->second;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  // Fragments: either raw text or a special token id (llama.cpp's
  // tokenizer_st_partition). User-defined tokens always match; control and
  // unknown tokens only when parse_special.
  struct Frag {
    int32_t id;  // -1 for text
    std::string_view text;
  };
  std::vector<Frag> frags;
  if (!text.empty()) frags.push_back({-1, text});  // empty text: no fragment, only BOS/EOS
  for (int32_t sid : special_ids_) {
    auto type = vocab_.types[sid];
    if (!parse_special && (type == TokenType::Control || type == TokenType::Unknown)) continue;
    const std::string& s = vocab_.tokens[sid];
    std::vector<Frag> next;
    for (const auto& f : frags) {
      if (f.id >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      size_t p;
      while ((p = rest.find(s)) != std::string_view::npos) {
        if (p > 0) next.push_back({-1, rest.substr(0, p)});
        next.push_back({sid, {}});
        rest = rest.substr(p + s.size());
      }
      if (!rest.empty()) next.push_back({-1, rest});
    }
    frags.swap(next);
  }
  std::vector<int32_t> out;
  if (add_special && vocab_.add_bos) out.push_back(vocab_.bos);
  bool first = true;
  for (const auto& f : frags) {
    if (f.id >= 0) {
      out.push_back(f.id);
      first = true;
    } else {
      if (normalizer_) encode_fragment(normalizer_->apply(f.text), first, out);
      else encode_fragment(f.text, first, out);
      first = false;
    }
  }
  if (add_special && vocab_.add_eos) out.push_back(vocab_.eos);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
  std::string s;
  for (auto id : ids) s += decode_token(id, special);
  return s;
}

std::unique_ptr<Tokenizer> Tokenizer::create(Vocab vocab, const std::string& source) {
  vocab.validate(source);
  std::unique_ptr<Tokenizer> t;
  if (vocab.model == "llama") t = std::make_unique<SpmTokenizer>(std::move(vocab));
  else t = std::make_unique<ByteBpeTokenizer>(std::move(vocab), source);
  if (!t->vocab_.normalizers.empty()) t->normalizer_ = std::make_unique<Normalizer>(t->vocab_.normalizers, source);
  return t;
}

}  // namespace lmpress
