// Byte-level BPE pre-tokenizers by the names llama.cpp gives them (tokenizer.ggml.pre): one table of the regexes that
// cut text into pieces before BPE and of what else a name decides, as llama.cpp's llama-vocab.cpp does.
#pragma once
#include <string>
#include <vector>

namespace lmpress {

struct PreTokenizer {
  std::vector<std::string> names;    // llama.cpp's names for it; the first is the one lmpress writes
  std::vector<std::string> regexes;  // applied in order; each splits every piece into its matches and the gaps
  bool ignore_merges = false;        // a piece that is itself a token is that token, unmerged
  bool add_bos = false;              // llama.cpp's default where tokenizer.ggml.add_bos_token is absent
  // Raw UTF-8 with spaces written as U+2581 and <0xNN> byte tokens, not GPT-2's byte-to-character map.
  bool raw = false;
  bool newline_tokens = false;  // a run of newlines that is itself a token stays whole (Gemma 4)
  // tokenizer.json's spelling where llama.cpp rewrote the regex (so a Hugging Face file still gets the name); the
  // tokenizer of a tokenizer.json runs the file's own regexes.
  std::vector<std::string> hf_regexes;
};

// Every pre-tokenizer, in the order names are looked up by regexes.
const std::vector<PreTokenizer>& pre_tokenizers();
// The pre-tokenizer llama.cpp means by `name` ("" as llama.cpp: "default"); nullptr when it has no such name.
const PreTokenizer* find_pre_tokenizer(const std::string& name);
// The name to write for a tokenizer.json's regexes (its spelling or llama.cpp's), preferring one whose
// ignore_merges agrees; "" when llama.cpp has no name for them.
std::string pre_tokenizer_name(const std::vector<std::string>& regexes, bool ignore_merges = false);

// GPT-2's regex, also the ByteLevel pre-tokenizer's.
extern const char* const kGpt2Regex;

}  // namespace lmpress
