// Readers (and writers) of the files tokenizers come in; each returns a Vocab.
#pragma once
#include <string>

#include "io/gguf.h"
#include "tokenizer/vocab.h"

namespace lmpress {

// tokenizer.ggml.* metadata of a GGUF file.
Vocab vocab_from_gguf(const GGUFFile& g);
// Writes a Vocab as tokenizer.ggml.* metadata.
void vocab_to_gguf(const Vocab& v, GGUFWriter& w);

// A SentencePiece ModelProto (tokenizer.model), BPE models only.
Vocab vocab_from_sentencepiece(const std::string& path);
Vocab vocab_from_sentencepiece_bytes(const std::string& bytes, const std::string& source);
// Serializes a "llama" Vocab as a SentencePiece ModelProto.
std::string vocab_to_sentencepiece(const Vocab& v);

// A Hugging Face tokenizer.json whose model is BPE (byte-level).
Vocab vocab_from_tokenizer_json(const std::string& path);
Vocab vocab_from_tokenizer_json_text(const std::string& text, const std::string& source);
std::string vocab_to_tokenizer_json(const Vocab& v);

// llama2.c's tokenizer.bin (written by its tokenizer.py export).
Vocab vocab_from_llama2c(const std::string& path, int64_t vocab_size);

// Applies tokenizer_config.json (add_bos_token, add_eos_token) and the bos/eos
// ids of config.json to a Vocab read from an HF directory.
void apply_hf_tokenizer_config(Vocab& v, const std::string& dir);

}  // namespace lmpress
