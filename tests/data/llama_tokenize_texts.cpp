// llama.cpp's token ids for many texts with one vocabulary, for tests/data/make_pretokenizer_cases.py (the
// independent reference the pre-tokenizer test compares lmpress against). Built there against the llama.cpp peer.
// Usage: llama_tokenize_texts VOCAB.gguf TEXTS   (texts separated by "\n__ggml_vocab_test__\n", as llama.cpp's
// models/*.inp). Prints two lines per text: the ids, tokenized as tests/test-tokenizer-0.cpp does (no BOS/EOS
// added, special tokens not parsed), and the pieces llama.cpp's pre-tokenizer regexes cut the text into, each in
// hex. The regexes are the ones llama.cpp picks for the vocabulary's pre-tokenizer type: its internal
// llm_tokenizer_bpe and unicode_regex_split, which libllama exports, declared here as llama.cpp defines them.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "llama.h"

struct llm_tokenizer {
  llm_tokenizer() {}
  virtual ~llm_tokenizer() = default;
};
struct llm_tokenizer_bpe : llm_tokenizer {
  explicit llm_tokenizer_bpe(const llama_vocab& vocab);
  std::vector<std::string> regex_exprs;
  bool byte_encode = true;
};
std::vector<std::string> unicode_regex_split(const std::string& text, const std::vector<std::string>& regex_exprs,
                                             bool byte_encode);

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s VOCAB.gguf TEXTS\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string all = ss.str(), sep = "\n__ggml_vocab_test__\n";
  llama_backend_init();
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_model_params mp = llama_model_default_params();
  mp.vocab_only = true;
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) {
    std::fprintf(stderr, "error: %s: llama.cpp cannot load it\n", argv[1]);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  // Allocated and left: its destructor is libllama's.
  const auto* bpe = new llm_tokenizer_bpe(*vocab);
  for (size_t at = 0;;) {
    const size_t next = all.find(sep, at);
    if (next == std::string::npos) break;
    const std::string text = all.substr(at, next - at);
    std::vector<llama_token> ids(text.size() + 16);
    int32_t n = llama_tokenize(vocab, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), false, false);
    if (n < 0) {
      ids.resize(size_t(-n));
      n = llama_tokenize(vocab, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), false, false);
    }
    for (int32_t i = 0; i < n; i++) std::printf(i ? " %d" : "%d", ids[size_t(i)]);
    std::printf("\n");
    bool first = true;
    // llama.cpp never splits an empty text (its custom splitters give no pieces, and std::regex then rejects some)
    for (const std::string& piece : text.empty() ? std::vector<std::string>()
                                                 : unicode_regex_split(text, bpe->regex_exprs, false)) {
      std::printf(first ? "" : " ");
      first = false;
      for (unsigned char c : piece) std::printf("%02x", c);
    }
    std::printf("\n");
    at = next + sep.size();
  }
  llama_model_free(model);
  return 0;
}
