// Text <-> token ids. Two algorithms, as llama.cpp implements them:
// SentencePiece-style BPE with byte fallback ("llama") and byte-level BPE
// ("gpt2"). Both share special-token splitting and BOS/EOS handling.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace lmpress {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // add_special: BOS/EOS as the vocabulary asks. parse_special: control tokens
  // written in the text (e.g. "<s>") become their ids.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  // The bytes a token stands for (control tokens give "" unless `special`).
  virtual std::string decode_token(int32_t id, bool special = false) const = 0;
  std::string decode(const std::vector<int32_t>& ids, bool special = false) const;
  const Vocab& vocab() const { return vocab_; }
  int32_t find(std::string_view piece) const;  // -1 when absent

  static std::unique_ptr<Tokenizer> create(Vocab vocab, const std::string& source);

 protected:
  explicit Tokenizer(Vocab v);
  // Tokenizes one fragment of plain text (no special tokens inside).
  // `first` is true when the fragment starts the text or follows a special token.
  virtual void encode_fragment(std::string_view text, bool first, std::vector<int32_t>& out) const = 0;

  Vocab vocab_;
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::vector<int32_t> special_ids_;  // control/user-defined/unknown, longest text first
  std::unique_ptr<Normalizer> normalizer_;  // null without normalizer steps
};

// Splits UTF-8 text into code points' byte lengths (invalid bytes count as 1).
size_t utf8_char_len(unsigned char lead);

}  // namespace lmpress
