// Byte-level BPE (GPT-2 family: Llama 3, Qwen2, SmolLM, Mistral Nemo):
// text is split by a pre-tokenizer regex, each piece's bytes are mapped to
// printable code points, then merged by rank.
#pragma once
#include <memory>

#include "tokenizer/tokenizer.h"

namespace lmpress {

class ByteBpeTokenizer : public Tokenizer {
 public:
  ByteBpeTokenizer(Vocab v, const std::string& source);
  ~ByteBpeTokenizer() override;
  std::string decode_token(int32_t id, bool special) const override;
  // The pieces the pre-tokenizer regexes cut `text` into.
  std::vector<std::string_view> pretokenize(std::string_view text) const;

 protected:
  void encode_fragment(std::string_view text, bool first, std::vector<int32_t>& out) const override;

 private:
  void merge(std::vector<std::string>& syms) const;
  void encode_raw(std::string_view text, std::vector<int32_t>& out) const;
  struct Regexes;
  std::unique_ptr<Regexes> regexes_;
  std::unordered_map<std::string, int32_t> merge_rank_;  // "left right" -> rank
  std::string byte_to_cp_[256];                          // byte -> UTF-8 of its code point
  std::unordered_map<uint32_t, uint8_t> cp_to_byte_;
  bool raw_ = false;  // raw UTF-8 with "▁" for spaces, not GPT-2's byte-to-character map (PreTokenizer::raw)
  bool newline_tokens_ = false;
};

}  // namespace lmpress
