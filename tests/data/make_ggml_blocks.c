// Regenerates tests/data/ggml_blocks.gguf with ggml itself, the independent
// reference the block-format tests compare lmpress against:
//   src          4x512 f32 rows (fixed formula below: gaussian-like values,
//                heavy tails, a zero super-block, positive-only values, tiny
//                magnitudes with an outlier)
//   imatrix      512 positive importance weights (per input column)
//   q.TYPE       ggml_quantize_chunk(TYPE, src) without an imatrix
//   qw.TYPE      ggml_quantize_chunk(TYPE, src) with the imatrix
//   ref.TYPE     ggml's to_float of q.TYPE (of qw.TYPE for the types ggml
//                quantizes only with an imatrix: IQ2_XXS, IQ2_XS, IQ1_S)
// Build and run (needs the llama.cpp peer, ../shared/tools/build-llama-cpp.sh):
//   P=~/.cache/llama.cpp-peer/src
//   gcc -O1 tests/data/make_ggml_blocks.c -I$P/ggml/include -L$P/build/bin -lggml-base -lggml -lggml-cpu -lm \
//       -Wl,-rpath,$P/build/bin -o /tmp/make_ggml_blocks && /tmp/make_ggml_blocks tests/data/ggml_blocks.gguf
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ggml-cpu.h"
#include "ggml.h"
#include "gguf.h"

enum { kRows = 4, kCols = 512 };

static uint32_t rng = 12345u;
static float uniform(void) {  // LCG in [0, 1)
  rng = rng * 1664525u + 1013904223u;
  return (float)(rng >> 8) / 16777216.0f;
}
static float gaussish(void) { return uniform() + uniform() + uniform() + uniform() - 2.0f; }

static void fill_src(float* x) {
  for (int c = 0; c < kCols; c++) x[c] = gaussish();
  for (int c = 0; c < kCols; c++) {
    const float g = gaussish();
    x[kCols + c] = g * g * g * 0.7f;
  }
  for (int c = 0; c < kCols; c++) x[2 * kCols + c] = c < 256 ? 0.0f : 0.2f + uniform();
  for (int c = 0; c < kCols; c++) x[3 * kCols + c] = 1e-3f * gaussish();
  x[3 * kCols + 77] = 0.5f;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUT.gguf\n", argv[0]);
    return 1;
  }
  ggml_cpu_init();
  static float src[kRows * kCols], imatrix[kCols], deq[kRows * kCols];
  static uint8_t q[kRows * kCols * 2];
  fill_src(src);
  for (int c = 0; c < kCols; c++) imatrix[c] = 0.05f + 4.0f * uniform() * uniform();

  const enum ggml_type types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                  GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K,
                                  GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS,
                                  GGML_TYPE_IQ3_XXS, GGML_TYPE_IQ3_S, GGML_TYPE_IQ2_XXS, GGML_TYPE_IQ2_XS,
                                  GGML_TYPE_IQ2_S, GGML_TYPE_IQ1_S, GGML_TYPE_IQ1_M, GGML_TYPE_TQ1_0,
                                  GGML_TYPE_TQ2_0, GGML_TYPE_MXFP4};
  const int n_types = sizeof(types) / sizeof(types[0]);
  struct ggml_init_params ip = {64 * 1024 * 1024, NULL, false};
  struct ggml_context* ctx = ggml_init(ip);
  struct gguf_context* g = gguf_init_empty();

  struct ggml_tensor* t = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, kCols, kRows);
  ggml_set_name(t, "src");
  memcpy(t->data, src, sizeof(src));
  gguf_add_tensor(g, t);
  t = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, kCols);
  ggml_set_name(t, "imatrix");
  memcpy(t->data, imatrix, sizeof(imatrix));
  gguf_add_tensor(g, t);

  for (int i = 0; i < n_types; i++) {
    const enum ggml_type ty = types[i];
    char upper[32], name[64];
    snprintf(upper, sizeof upper, "%s", ggml_type_name(ty));
    for (char* p = upper; *p; p++)
      if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
    const int needs_imatrix = ggml_quantize_requires_imatrix(ty);
    for (int weighted = needs_imatrix; weighted < 2; weighted++) {
      const size_t n = ggml_quantize_chunk(ty, src, q, 0, kRows, kCols, weighted ? imatrix : NULL);
      t = ggml_new_tensor_2d(ctx, ty, kCols, kRows);
      snprintf(name, sizeof name, "%s.%s", weighted ? "qw" : "q", upper);
      ggml_set_name(t, name);
      memcpy(t->data, q, n);
      gguf_add_tensor(g, t);
      if (weighted && !needs_imatrix) continue;
      ggml_get_type_traits(ty)->to_float(q, deq, kRows * kCols);
      t = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, kCols, kRows);
      snprintf(name, sizeof name, "ref.%s", upper);
      ggml_set_name(t, name);
      memcpy(t->data, deq, sizeof(deq));
      gguf_add_tensor(g, t);
    }
  }
  if (!gguf_write_to_file(g, argv[1], false)) {
    fprintf(stderr, "cannot write %s\n", argv[1]);
    return 1;
  }
  gguf_free(g);
  ggml_free(ctx);
  return 0;
}
