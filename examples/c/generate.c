/* Greedy generation through liblmpress's C API, two ways:
 *   generate MODEL PROMPT N            lmpress_generate with a token callback
 *   generate MODEL PROMPT N --manual   tokenize, evaluate and sample step by step
 * Prints the text on stdout and the generated token ids on stderr
 * ("tokens: 12 7 ..."). Build: cc generate.c $(pkg-config --cflags --libs lmpress) */
#include <lmpress.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char* what, lmpress_status s) {
  fprintf(stderr, "error: %s: %s (%s)\n", what, lmpress_last_error(), lmpress_status_name(s));
  return 1;
}

static bool on_token(int32_t token, const char* text, size_t len, void* user) {
  (void)user;
  fwrite(text, 1, len, stdout);
  fflush(stdout);
  if (token >= 0) fprintf(stderr, " %d", (int)token); /* -1: held-back bytes at the end */
  return true;
}

static int manual(lmpress_model* model, const char* prompt, int n_predict) {
  lmpress_model_info info;
  lmpress_context* ctx = NULL;
  lmpress_sampler* smp = NULL;
  int32_t* toks = NULL;
  size_t n = 0, cap = 0;
  int rc = 1, i;
  lmpress_status s = lmpress_model_get_info(model, &info);
  if (s != LMPRESS_OK) return fail("info", s);
  /* The first call asks for the size, the second fills the buffer. */
  s = lmpress_tokenize(model, prompt, strlen(prompt), true, false, NULL, 0, &n);
  if (s != LMPRESS_OK && s != LMPRESS_ERR_BUFFER_TOO_SMALL) return fail("tokenize", s);
  cap = n + (size_t)n_predict;
  toks = (int32_t*)malloc(cap * sizeof *toks);
  if (!toks) return 1;
  s = lmpress_tokenize(model, prompt, strlen(prompt), true, false, toks, cap, &n);
  if (s != LMPRESS_OK) { rc = fail("tokenize", s); goto done; }
  s = lmpress_context_create(model, NULL, &ctx);
  if (s != LMPRESS_OK) { rc = fail("context", s); goto done; }
  s = lmpress_sampler_create(NULL, &smp); /* the defaults: greedy */
  if (s != LMPRESS_OK) { rc = fail("sampler", s); goto done; }
  s = lmpress_context_eval(ctx, toks, n, false);
  for (i = 0; i < n_predict && s == LMPRESS_OK; i++) {
    int32_t next;
    char piece[256];
    size_t len;
    const float* logits = lmpress_context_logits(ctx, NULL);
    s = lmpress_sampler_sample(smp, logits, info.n_vocab, toks, n, &next);
    if (s != LMPRESS_OK || next == info.token_eos) break;
    toks[n++] = next;
    /* One token's text; a character split across tokens prints as its bytes. */
    if (lmpress_detokenize(model, &next, 1, false, piece, sizeof piece, &len) == LMPRESS_OK) fwrite(piece, 1, len, stdout);
    fprintf(stderr, " %d", (int)next);
    if (i + 1 < n_predict && lmpress_context_n_past(ctx) + 1 < info.n_ctx_train) s = lmpress_context_eval(ctx, &next, 1, false);
    else break;
  }
  if (s != LMPRESS_OK) { rc = fail("eval", s); goto done; }
  rc = 0;
done:
  lmpress_sampler_free(smp);
  lmpress_context_free(ctx);
  free(toks);
  return rc;
}

int main(int argc, char** argv) {
  lmpress_model* model = NULL;
  lmpress_model_params mp = lmpress_model_default_params();
  lmpress_status s;
  int rc = 0;
  if (argc < 4 || (argc == 5 && strcmp(argv[4], "--manual") != 0) || argc > 5) {
    fprintf(stderr, "usage: %s MODEL PROMPT N [--manual]\n", argv[0]);
    return 2;
  }
  s = lmpress_model_load(argv[1], &mp, &model);
  if (s != LMPRESS_OK) return fail("load", s);
  fprintf(stderr, "tokens:");
  if (argc == 5) {
    rc = manual(model, argv[2], atoi(argv[3]));
  } else {
    lmpress_generate_params gp = lmpress_generate_default_params();
    lmpress_generate_result r;
    gp.n_predict = atoi(argv[3]);
    gp.on_token = on_token;
    s = lmpress_generate(model, argv[2], &gp, &r);
    if (s != LMPRESS_OK) rc = fail("generate", s);
  }
  fprintf(stderr, "\n");
  printf("\n");
  lmpress_model_free(model);
  return rc;
}
