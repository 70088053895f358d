// SentencePiece-style BPE with byte fallback, as llama.cpp's llm_tokenizer_spm:
// merge the adjacent pair whose joined text is the highest-scoring token,
// repeatedly; characters with no token become <0xXX> byte tokens.
#pragma once
#include "tokenizer/tokenizer.h"

namespace lmpress {

class SpmTokenizer : public Tokenizer {
 public:
  explicit SpmTokenizer(Vocab v);
  std::string decode_token(int32_t id, bool special) const override;

 protected:
  void encode_fragment(std::string_view text, bool first, std::vector<int32_t>& out) const override;

 private:
  int32_t byte_tokens_[256];
};

}  // namespace lmpress
