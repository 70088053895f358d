// Prints llama.cpp's logits for given token ids: the peer side of bench/llama-archs-logits.sh. Built there against
// the llama.cpp peer (libllama), not part of lmpress.
// Usage: llama_logits MODEL.gguf OUT.f32 TOKEN...   (writes n_tokens × n_vocab little-endian floats)
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "llama.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf OUT.f32 TOKEN...\n", argv[0]);
    return 2;
  }
  std::vector<llama_token> tokens;
  for (int i = 3; i < argc; i++) tokens.push_back(llama_token(std::atoi(argv[i])));
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) {
    std::fprintf(stderr, "error: %s: llama.cpp cannot load it\n", argv[1]);
    return 1;
  }
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = uint32_t(tokens.size());
  cp.n_batch = cp.n_ubatch = uint32_t(tokens.size());
  cp.n_threads = cp.n_threads_batch = 2;
  cp.type_k = cp.type_v = GGML_TYPE_F32;  // as lmpress_logits' cache
  // ggml's CPU flash attention rounds the scores' softmax through f16; the plain path keeps f32.
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "error: %s: no context\n", argv[1]);
    return 1;
  }
  llama_batch batch = llama_batch_init(int32_t(tokens.size()), 0, 1);
  for (size_t i = 0; i < tokens.size(); i++) {
    batch.token[i] = tokens[i];
    batch.pos[i] = llama_pos(i);
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = int32_t(tokens.size());
  if (llama_decode(ctx, batch) != 0) {
    std::fprintf(stderr, "error: %s: llama_decode failed\n", argv[1]);
    return 1;
  }
  const int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  FILE* f = std::fopen(argv[2], "wb");
  if (!f) return 1;
  for (size_t i = 0; i < tokens.size(); i++) std::fwrite(llama_get_logits_ith(ctx, int32_t(i)), sizeof(float), size_t(n_vocab), f);
  std::fclose(f);
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
