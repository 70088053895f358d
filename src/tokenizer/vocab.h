// The vocabulary in GGUF's terms (tokenizer.ggml.*): every tokenizer source
// (GGUF, tokenizer.model, tokenizer.json, llama2.c tokenizer.bin) is read into
// this one shape, and GGUF/HF writers write from it.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/normalizer.h"

namespace lmpress {

enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

struct Vocab {
  // "llama" (SentencePiece BPE), "gpt2" (byte-level BPE) or "gemma4" (BPE by merge rank on raw UTF-8 with spaces
  // written as "▁" and <0xNN> byte fallback, llama.cpp's gemma4 vocabulary)
  std::string model;
  std::string pre;    // byte-level pre-tokenizer name as llama.cpp knows it: "gpt-2", "llama-bpe", ...
  // The pre-tokenizer regexes applied in order (each splits every piece into
  // matches and gaps). Filled from `pre` or from tokenizer.json.
  std::vector<std::string> pre_regexes;
  bool ignore_merges = false;  // a pre-token that is itself a token is not merged (Llama 3)
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<TokenType> types;
  std::vector<std::string> merges;  // "a b" pairs, rank = index (gpt2 only)
  int32_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = false, add_eos = false;
  bool add_space_prefix = true;  // SentencePiece dummy prefix
  // Applied to plain text before the model's own space handling (tokenizer.json's
  // normalizer less the steps "llama" models do themselves).
  std::vector<NormalizerStep> normalizers;

  size_t size() const { return tokens.size(); }
  // Checks ids and array lengths; `source` names the file in errors.
  void validate(const std::string& source) const;
};

}  // namespace lmpress
