// Prints lmpress's logits for given token ids through the C API: the lmpress side of
// bench/llama-archs-logits.sh (KV cache f32, so that only the weights' arithmetic differs from llama.cpp's).
// Usage: lmpress_logits MODEL.gguf OUT.f32 TOKEN...   (writes n_tokens × n_vocab little-endian floats)
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "lmpress.h"

static int die() {
  std::fprintf(stderr, "error: %s\n", lmpress_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf OUT.f32 TOKEN...\n", argv[0]);
    return 2;
  }
  std::vector<int32_t> tokens;
  for (int i = 3; i < argc; i++) tokens.push_back(int32_t(std::atoi(argv[i])));
  lmpress_model_params mp = lmpress_model_default_params();
  mp.repack = std::getenv("NO_REPACK") == nullptr;
  lmpress_model* model = nullptr;
  if (lmpress_model_load(argv[1], &mp, &model) != LMPRESS_OK) return die();
  lmpress_model_info info;
  if (lmpress_model_get_info(model, &info) != LMPRESS_OK) return die();
  lmpress_context_params cp = lmpress_context_default_params();
  cp.n_ctx = int64_t(tokens.size());
  cp.n_batch = int64_t(tokens.size());
  cp.cache.type_k = cp.cache.type_v = "f32";
  lmpress_context* ctx = nullptr;
  if (lmpress_context_create(model, &cp, &ctx) != LMPRESS_OK) return die();
  if (lmpress_context_eval(ctx, tokens.data(), tokens.size(), true) != LMPRESS_OK) return die();
  size_t rows = 0;
  const float* logits = lmpress_context_logits(ctx, &rows);
  FILE* f = std::fopen(argv[2], "wb");
  if (!f) return 1;
  std::fwrite(logits, sizeof(float), rows * size_t(info.n_vocab), f);
  std::fclose(f);
  lmpress_context_free(ctx);
  lmpress_model_free(model);
  return 0;
}
