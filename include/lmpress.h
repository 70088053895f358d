/* lmpress: the C API of liblmpress.
 *
 * Conventions (as llama.h, with error codes instead of sentinels):
 * - Handles are opaque; each *_create / *_load has a matching *_free, which
 *   accepts NULL.
 * - Every function that can fail returns an lmpress_status. On failure,
 *   lmpress_last_error() gives the message (naming the file, tensor, field or
 *   option at fault) for the calling thread, until its next failing call.
 *   No C++ exception crosses this boundary.
 * - Parameter structs come from *_default_params(); set the fields you need.
 *   A NULL params pointer means the defaults.
 * - Functions that fill a caller's buffer take its capacity and report the
 *   size needed: LMPRESS_ERR_BUFFER_TOO_SMALL when it does not fit (call again
 *   with a larger buffer).
 * - A model handle may be shared by threads for reading (tokenize, contexts
 *   of their own); a context, batch or sampler handle belongs to one thread at
 *   a time.
 * The header is C99 and C++. */
#ifndef LMPRESS_H
#define LMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LMPRESS_VERSION_MAJOR 0
#define LMPRESS_VERSION_MINOR 1
#define LMPRESS_VERSION_PATCH 0
#define LMPRESS_VERSION "0.1.0"
/* Grows with every change to a struct or signature below. */
#define LMPRESS_API_VERSION 9

#if defined(_WIN32)
#define LMPRESS_API
#else
#define LMPRESS_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lmpress_status {
  LMPRESS_OK = 0,
  LMPRESS_ERR_INVALID_ARGUMENT = 1, /* a NULL handle or pointer, a count or size out of range */
  /* the operation failed: a bad file or model, or an option value the
   * library checks as the command line does (the message names the command
   * line's option, e.g. --draft-max, --ratio) */
  LMPRESS_ERR_FAILED = 2,
  LMPRESS_ERR_CANCELLED = 3,        /* a progress callback returned false */
  LMPRESS_ERR_BUFFER_TOO_SMALL = 4, /* the size needed is reported; nothing else changed */
  LMPRESS_ERR_OUT_OF_MEMORY = 5,
  LMPRESS_ERR_INTERNAL = 6 /* a bug in lmpress: please report the message */
} lmpress_status;

/* "0.1.0" and LMPRESS_API_VERSION of the library actually loaded. */
LMPRESS_API const char* lmpress_version(void);
LMPRESS_API int lmpress_api_version(void);
/* The message of this thread's last failure ("" before any). */
LMPRESS_API const char* lmpress_last_error(void);
/* A name for a status code ("ok", "invalid argument", ...). */
LMPRESS_API const char* lmpress_status_name(lmpress_status s);
/* The report of this thread's last successful lmpress_quantize, lmpress_prune,
 * lmpress_lowrank, lmpress_convert(_model), lmpress_perplexity or
 * lmpress_generate call as JSON text: the object the command line prints with
 * --json (per-tensor errors, sizes, bits per weight, peak memory, timings,
 * cache and speculative statistics). "" before any; valid until this
 * thread's next such call. */
LMPRESS_API const char* lmpress_last_report(void);
/* Threads for compute (0: all cores, as the command line's -t 0), for every
 * later call from any thread; not while another thread computes. OpenMP keeps
 * a pool of workers per calling thread: compute from one thread at a time (or
 * give each fewer threads), or the pools together oversubscribe the cores. */
LMPRESS_API lmpress_status lmpress_set_threads(int n_threads);

/* Long work (loading, quantizing, perplexity) reports progress: `stage` names
 * the step, done of total units are finished. Return false to cancel: the
 * call then returns LMPRESS_ERR_CANCELLED and writes no output. */
typedef bool (*lmpress_progress_callback)(const char* stage, uint64_t done, uint64_t total, void* user_data);

/* ---------------------------------------------------------------- models */

typedef struct lmpress_model lmpress_model;

typedef struct lmpress_model_params {
  const char* tokenizer_path; /* llama2.c checkpoints: the tokenizer (NULL: found beside) */
  /* true: weights repacked for the fast kernels, as every command that runs a
   * model loads it (more memory for repacked copies); false: as in the file. */
  bool repack;
  lmpress_progress_callback progress;
  void* progress_user_data;
  /* LoRA adapters merged into the weights at load, as `--lora FILE[:SCALE]`
   * (GGUF LoRA or a PEFT directory; an array of n; NULL / 0: none). */
  const char* const* lora;
  size_t n_lora;
} lmpress_model_params;

LMPRESS_API lmpress_model_params lmpress_model_default_params(void);
/* A GGUF file, a Hugging Face directory (or its config.json), a GPTQ
 * directory or a llama2.c checkpoint. */
LMPRESS_API lmpress_status lmpress_model_load(const char* path, const lmpress_model_params* params,
                                              lmpress_model** out);
LMPRESS_API void lmpress_model_free(lmpress_model* model);

typedef struct lmpress_model_info {
  const char* arch;   /* "llama", "qwen2"; valid while the model lives */
  const char* format; /* "gguf", "hf", "llama2c" */
  int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
  int64_t n_params;
  uint64_t n_bytes; /* weight bytes as loaded */
  int32_t token_bos, token_eos; /* -1 when the vocabulary has none */
  bool add_bos;                 /* whether tokenize adds BOS with add_special */
} lmpress_model_info;

LMPRESS_API lmpress_status lmpress_model_get_info(const lmpress_model* model, lmpress_model_info* out);

/* ------------------------------------------------------------ tokenizer */

/* Token ids of text[0..text_len) into tokens[0..capacity); *n_tokens gets the
 * count (also when the buffer is too small). add_special: BOS/EOS as the
 * model adds them; parse_special: "<|...|>" texts of special tokens become
 * those tokens. */
LMPRESS_API lmpress_status lmpress_tokenize(const lmpress_model* model, const char* text, size_t text_len,
                                            bool add_special, bool parse_special, int32_t* tokens, size_t capacity,
                                            size_t* n_tokens);
/* The text of tokens[0..n) into buf[0..capacity), NUL-terminated; *n_bytes
 * gets its length without the NUL (the buffer needs one more byte). special:
 * render special tokens' texts. Ids outside the vocabulary are an error. */
LMPRESS_API lmpress_status lmpress_detokenize(const lmpress_model* model, const int32_t* tokens, size_t n,
                                              bool special, char* buf, size_t capacity, size_t* n_bytes);

/* ------------------------------------------------------ one sequence */

typedef struct lmpress_context lmpress_context;

typedef struct lmpress_cache_params {
  /* KV-cache types as --cache-type-k/-v take them: f32, f16, bf16, q8_0,
   * q4_0, q4_1, q5_0, q5_1, iq4_nl, kivi4, kivi2 (NULL: f16). */
  const char* type_k;
  const char* type_v;
  const char* rotate; /* "auto", "on", "off" (NULL: auto) */
  int64_t kivi_group, kivi_residual; /* --kv-group, --kv-residual */
  /* --kv-policy: "none", "sink-window:S,W", "h2o:B[,W]", "snapkv:B,W" (NULL: none) */
  const char* policy;
} lmpress_cache_params;

typedef struct lmpress_context_params {
  int64_t n_ctx;   /* positions the cache holds (0: the model's trained context) */
  int64_t n_batch; /* most tokens per forward pass */
  lmpress_cache_params cache;
} lmpress_context_params;

LMPRESS_API lmpress_context_params lmpress_context_default_params(void);
/* The model must outlive the context (as every handle made from it: batch, engine, generation). */
LMPRESS_API lmpress_status lmpress_context_create(const lmpress_model* model, const lmpress_context_params* params,
                                                  lmpress_context** out);
LMPRESS_API void lmpress_context_free(lmpress_context* ctx);
/* Runs tokens[0..n) at the next positions. Logits of every token (all_logits)
 * or of the last one are then read with lmpress_context_logits. */
LMPRESS_API lmpress_status lmpress_context_eval(lmpress_context* ctx, const int32_t* tokens, size_t n,
                                                bool all_logits);
/* The last eval's logits, rows × n_vocab floats (rows: 1, or n with
 * all_logits); valid until the next eval. NULL before any eval. */
LMPRESS_API const float* lmpress_context_logits(const lmpress_context* ctx, size_t* n_rows);
/* Positions evaluated so far. */
LMPRESS_API int64_t lmpress_context_n_past(const lmpress_context* ctx);
/* Forgets every position after the first n (0: a fresh sequence). */
LMPRESS_API lmpress_status lmpress_context_truncate(lmpress_context* ctx, int64_t n);

/* ------------------------------------------- many sequences at once */

/* The serving engine's forward pass: one call runs tokens of many sequences
 * (each token with its own sequence id and position) over a paged KV cache.
 * A token's logits equal those a lone context computes for it. */
typedef struct lmpress_batch lmpress_batch;

typedef struct lmpress_batch_params {
  int64_t n_ctx;      /* positions the pool holds over all sequences (0: 4 × the model's context) */
  int64_t block_size; /* positions per cache block */
  int64_t max_tokens; /* most tokens one eval takes */
  lmpress_cache_params cache; /* policy: "none" or "sink-window:S,W" */
} lmpress_batch_params;

LMPRESS_API lmpress_batch_params lmpress_batch_default_params(void);
/* The model must outlive the batch. */
LMPRESS_API lmpress_status lmpress_batch_create(const lmpress_model* model, const lmpress_batch_params* params,
                                                lmpress_batch** out);
LMPRESS_API void lmpress_batch_free(lmpress_batch* batch);
/* Runs token i of sequence seq_ids[i] at positions[i], for i < n. A sequence
 * starts at position 0 (its first use opens it) and continues where it ended.
 * want_logits may be NULL (the last token only); the logits of the tokens that
 * want them are read with lmpress_batch_logits, in batch order. On failure
 * (a position out of order, the pool full) nothing changed. */
LMPRESS_API lmpress_status lmpress_batch_eval(lmpress_batch* batch, const int32_t* tokens, const int32_t* seq_ids,
                                              const int64_t* positions, const bool* want_logits, size_t n);
LMPRESS_API const float* lmpress_batch_logits(const lmpress_batch* batch, size_t* n_rows);
/* Positions sequence `seq` holds (0 when it is not open). */
LMPRESS_API int64_t lmpress_batch_seq_length(const lmpress_batch* batch, int32_t seq);
/* Keeps the first n positions of `seq` (0 closes it, giving its blocks back). */
LMPRESS_API lmpress_status lmpress_batch_seq_truncate(lmpress_batch* batch, int32_t seq, int64_t n);

/* -------------------------------------------------------------- sampling */
/* (The sampler parameters come first: the serving engine below takes them.) */

typedef struct lmpress_sampler_params {
  float temperature; /* <= 0: greedy */
  int32_t top_k;     /* <= 0: off */
  float top_p;       /* >= 1: off */
  float min_p;       /* <= 0: off */
  uint64_t seed;
  float repeat_penalty, frequency_penalty, presence_penalty; /* 1, 0, 0: off */
  int32_t penalty_last_n;                                    /* -1: the whole history */
} lmpress_sampler_params;

typedef struct lmpress_sampler lmpress_sampler;

/* The command line's defaults: greedy; top-k 40, top-p 0.95, min-p 0.05 when
 * a temperature is set. */
LMPRESS_API lmpress_sampler_params lmpress_sampler_default_params(void);
LMPRESS_API lmpress_status lmpress_sampler_create(const lmpress_sampler_params* params, lmpress_sampler** out);
LMPRESS_API void lmpress_sampler_free(lmpress_sampler* sampler);
/* Draws a token from logits[0..n_vocab) after the penalties over the
 * sequence so far, history[0..n_history) (may be NULL with 0). */
LMPRESS_API lmpress_status lmpress_sampler_sample(lmpress_sampler* sampler, const float* logits, int64_t n_vocab,
                                                  const int32_t* history, size_t n_history, int32_t* token);

/* ------------------------------------------------------- serving engine */

/* Continuous batching, as `lmpress serve` runs it: requests queue in FCFS
 * order and every step runs one batch (decoding steps of the running
 * requests and chunks of new prompts, at most token_budget tokens), samples,
 * and reports each generated token. When the pool cannot hold a step, the
 * youngest request is preempted and recomputed later (the prefix cache helps),
 * so no request fails for want of blocks. Greedy requests give the tokens
 * lmpress_generate gives. */
typedef struct lmpress_engine lmpress_engine;

typedef struct lmpress_engine_params {
  int64_t n_ctx;        /* positions the KV pool holds over all requests (0: 4 × the model's context) */
  int64_t block_size;   /* positions per cache block */
  int64_t max_running;  /* requests in a batch at once */
  int64_t token_budget; /* tokens per step */
  lmpress_cache_params cache; /* policy: "none" or "sink-window:S,W" */
} lmpress_engine_params;

typedef struct lmpress_request_params {
  int64_t max_tokens; /* tokens to generate */
  bool ignore_eos;
  lmpress_sampler_params sampling;
  /* -1 (the default): no log probabilities; 0..20: each generated token's log
   * probability and those of this many most likely tokens (of the model's
   * distribution, before penalties and temperature), as `serve`'s logprobs. */
  int32_t logprobs;
} lmpress_request_params;

typedef enum lmpress_finish_reason {
  LMPRESS_FINISH_NONE = 0, /* still running */
  LMPRESS_FINISH_EOS = 1,
  LMPRESS_FINISH_LENGTH = 2
} lmpress_finish_reason;

typedef struct lmpress_step_event {
  int64_t request_id;
  int32_t token; /* the token generated for the request, or -1 */
  lmpress_finish_reason finished;
  /* When the request asked for logprobs and token >= 0: its log probability,
   * and the n_top most likely tokens with theirs (most likely first; ties:
   * lower id first). The arrays are valid until the next step. */
  float logprob;
  size_t n_top;
  const int32_t* top_ids;
  const float* top_logprobs;
} lmpress_step_event;

LMPRESS_API lmpress_engine_params lmpress_engine_default_params(void);
LMPRESS_API lmpress_request_params lmpress_request_default_params(void);
/* The model must outlive the engine. */
LMPRESS_API lmpress_status lmpress_engine_create(const lmpress_model* model, const lmpress_engine_params* params,
                                                 lmpress_engine** out);
LMPRESS_API void lmpress_engine_free(lmpress_engine* engine);
/* Queues a request (id: any number not in use) for prompt[0..n). Fails when
 * the prompt could never fit the pool alone. */
LMPRESS_API lmpress_status lmpress_engine_submit(lmpress_engine* engine, int64_t request_id, const int32_t* prompt,
                                                 size_t n, const lmpress_request_params* params);
/* Drops a queued or running request, giving its blocks back. */
LMPRESS_API lmpress_status lmpress_engine_cancel(lmpress_engine* engine, int64_t request_id);
/* Runs one step; *events (valid until the next step) gets what it did for
 * each request, *n_events their count. */
LMPRESS_API lmpress_status lmpress_engine_step(lmpress_engine* engine, const lmpress_step_event** events,
                                               size_t* n_events);
/* Requests running and waiting. */
LMPRESS_API size_t lmpress_engine_n_requests(const lmpress_engine* engine);

/* ------------------------------------------------------------ generation */

/* Confidence-based early exit after one block (CALM), as `--early-exit
 * THRESHOLD --exit-layer K --exit-measure M`: threshold < 0 is off; layer -1
 * is block n_layer / 2 - 1; measure "softmax" (NULL) or "state". */
typedef struct lmpress_early_exit_params {
  double threshold;
  int64_t layer;
  const char* measure;
} lmpress_early_exit_params;

/* Called for each generated token with the text it completes (UTF-8; may be
 * empty while a character is incomplete). Return false to stop. When
 * generation ends by itself with bytes held back (an incomplete character at
 * the end), they come in one more call with token -1. */
typedef bool (*lmpress_token_callback)(int32_t token, const char* text, size_t text_len, void* user_data);

/* Speculative decoding, as `generate --spec TYPE --draft-max N --draft-min N
 * --draft-p-min P --spec-calib FILE`: type "ngram" or "ngram:MIN-MAX" (prompt
 * lookup), "draft:MODEL", "self:skip:LAYERS" (e.g. "4,6-9"), "self:skip:auto:N"
 * (the N blocks whose skipping loses least on calib_path's first window),
 * "self:exit:K", "self:file:PATH"; NULL: none. The tokens are those of plain
 * decoding with the same sampling (greedy: equal; sampled: the same
 * distribution). */
typedef struct lmpress_spec_params {
  const char* type;
  int64_t draft_max, draft_min;
  float p_min;
  const char* calib_path;
} lmpress_spec_params;

typedef struct lmpress_generate_params {
  int64_t n_predict; /* most tokens to generate */
  int64_t n_ctx;     /* 0: the model's trained context */
  bool ignore_eos;
  lmpress_sampler_params sampling;
  lmpress_cache_params cache;
  lmpress_token_callback on_token;
  void* user_data;
  lmpress_spec_params spec; /* lmpress_generate only (not the stepped lmpress_generation_*) */
  lmpress_early_exit_params early_exit; /* lmpress_generate only */
} lmpress_generate_params;

typedef enum lmpress_stop_reason {
  LMPRESS_STOP_EOS = 0,
  LMPRESS_STOP_LENGTH = 1,  /* n_predict tokens */
  LMPRESS_STOP_CONTEXT = 2, /* the context is full */
  LMPRESS_STOP_CALLER = 3   /* on_token returned false */
} lmpress_stop_reason;

typedef struct lmpress_generate_result {
  int64_t n_prompt, n_generated;
  lmpress_stop_reason stop_reason;
  double prompt_seconds, gen_seconds;
  int64_t n_drafted, n_accepted; /* speculative decoding: tokens proposed, tokens the model kept */
} lmpress_generate_result;

LMPRESS_API lmpress_generate_params lmpress_generate_default_params(void);
/* Generates from `prompt` (tokenized with BOS as the model adds it), as
 * `lmpress generate` does: the same options give the same tokens. */
LMPRESS_API lmpress_status lmpress_generate(const lmpress_model* model, const char* prompt,
                                            const lmpress_generate_params* params, lmpress_generate_result* result);

/* Generation stepped by the caller (no callback, no thread): start runs the
 * prompt, each next gives one token; the same tokens and text as
 * lmpress_generate with the same params (on_token and user_data are not used).
 * Stop early by freeing it. The model must outlive it. */
typedef struct lmpress_generation lmpress_generation;
LMPRESS_API lmpress_status lmpress_generation_start(const lmpress_model* model, const char* prompt,
                                                    const lmpress_generate_params* params, lmpress_generation** out);
/* The next token and its text (*text valid until the next call); *done true
 * (token -1) once generation has ended, *text then holding any bytes held back
 * from the last token (an incomplete character). text and text_len may be NULL.
 * After a failure the generation has ended. */
LMPRESS_API lmpress_status lmpress_generation_next(lmpress_generation* gen, int32_t* token, const char** text,
                                                   size_t* text_len, bool* done);
/* Counts and timings so far; stop_reason is LMPRESS_STOP_CALLER until it has ended. */
LMPRESS_API lmpress_status lmpress_generation_result(const lmpress_generation* gen, lmpress_generate_result* result);
LMPRESS_API void lmpress_generation_free(lmpress_generation* gen);

/* ------------------------------------------------------------ evaluation */

/* Called after each window with the perplexity so far. Return false to cancel
 * (LMPRESS_ERR_CANCELLED). */
typedef bool (*lmpress_chunk_callback)(int64_t chunk, double running_ppl, void* user_data);

typedef struct lmpress_perplexity_params {
  int64_t n_ctx;       /* tokens per window */
  int64_t n_chunks;    /* windows scored (-1: all) */
  const char* protocol; /* "llama.cpp" (NULL) or "gptq" */
  lmpress_cache_params cache;
  lmpress_progress_callback progress;
  void* progress_user_data;
  int64_t n_batch;          /* tokens per forward batch */
  /* > 0: each token scored from scratch after the window - 1 tokens before it
   * (`perplexity --recompute-window`; slow); 0: off. */
  int64_t recompute_window;
  lmpress_early_exit_params early_exit;
  lmpress_chunk_callback on_chunk;
  void* chunk_user_data;
} lmpress_perplexity_params;

typedef struct lmpress_perplexity_result {
  double ppl, ppl_stderr, mean_nll;
  int64_t n_tokens_scored, n_chunks;
} lmpress_perplexity_result;

LMPRESS_API lmpress_perplexity_params lmpress_perplexity_default_params(void);
/* Perplexity of the model on text[0..text_len), as `lmpress perplexity`. */
LMPRESS_API lmpress_status lmpress_perplexity(const lmpress_model* model, const char* text, size_t text_len,
                                              const lmpress_perplexity_params* params,
                                              lmpress_perplexity_result* result);

/* Kullback-Leibler divergence of `cand` from `base` on text[0..text_len), as
 * `lmpress kld BASE CAND` (llama.cpp's --kl-divergence protocol); base and
 * cand may be one model with other cache types (params->cache for cand,
 * base_cache for base). */
typedef struct lmpress_kld_params {
  int64_t n_ctx;
  int64_t n_chunks;
  lmpress_cache_params cache, base_cache;
  lmpress_progress_callback progress;
  void* progress_user_data;
} lmpress_kld_params;

typedef struct lmpress_kld_result {
  double kld, kld_unc;             /* mean KL divergence and its uncertainty */
  double ppl, ppl_base;            /* perplexities of cand and base */
  double same_top;                 /* fraction of tokens where both rank the same token first */
  double rms_p_diff;               /* RMS of the probability change of the right token */
  int64_t n_tokens, n_chunks;
} lmpress_kld_result;

LMPRESS_API lmpress_kld_params lmpress_kld_default_params(void);
LMPRESS_API lmpress_status lmpress_kld(const lmpress_model* base, const lmpress_model* cand, const char* text,
                                       size_t text_len, const lmpress_kld_params* params, lmpress_kld_result* result);

/* ----------------------------------------------------------- compression */

typedef struct lmpress_quantize_params {
  /* A GGUF file type as `quantize --type` takes it (q4_k_m, q8_0, ...) or an
   * int-N group format (int4-g128: OUT is then a GPTQ directory). */
  const char* type;
  const char* method;       /* "rtn" (NULL), "gptq", "awq" */
  const char* calib_path;   /* calibration text (gptq, awq) */
  int64_t calib_samples;    /* windows of calib_ctx tokens */
  int64_t calib_ctx;
  const char* imatrix_path; /* llama.cpp imatrix GGUF, or NULL */
  double damp;              /* GPTQ dampening fraction */
  bool act_order;
  /* "hadamard" or "hadamard:SEED": rotate the residual stream (and each head's
   * values) first, as `quantize --rotate`; either with ",r4": also ffn_down's
   * input at run time (GGUF output only); NULL: no rotation. */
  const char* rotate;
  /* "w8a8": int8 weights per channel and int8 activations per token, written
   * as a compressed-tensors int-quantized directory (type NULL or "int8-ch");
   * "w4a8": the same with symmetric int4 weights (type NULL: "int4-ch", or
   * "int4-gN"); NULL: weight-only. smooth: SmoothQuant's alpha first (w8a8 or
   * w4a8 only; needs calib_path), < 0 (the default): none. */
  const char* scheme;
  double smooth;
  lmpress_progress_callback progress;
  void* progress_user_data;
  /* "rank=R[,method=eora|svd]": low-rank compensation of each block linear's
   * quantization error, written as a LoRA adapter (needs calib_path), as
   * `quantize --compensate`; compensate_out: its path (NULL: OUT.eora.gguf
   * beside a GGUF out_path, OUT-eora, a PEFT directory, beside a checkpoint). */
  const char* compensate;
  const char* compensate_out;
  /* Per-tensor and per-module choices, as `quantize --tensor-type`, `--targets`
   * and `--ignore` (arrays of n strings; NULL / 0: none): PATTERN=TYPE (a regex
   * searched in lmpress's tensor names; with an int-N type, TYPE is an int-N
   * type or f16), and for int-N types the modules quantized / left out
   * (Hugging Face names, or "re:REGEX" matched at the start). */
  const char* const* tensor_types;
  size_t n_tensor_types;
  const char* const* targets;
  size_t n_targets;
  const char* const* ignore;
  size_t n_ignore;
  /* As `quantize --target-bpw`: each tensor's GGUF type chosen by its measured
   * sensitivity on calib_path text so that the file has at most this many bits
   * per weight (type then NULL); 0: off. */
  double target_bpw;
  const char* format; /* int-N types: "gptq" (NULL), "awq" or "compressed-tensors" */
  const char* output_tensor_type;   /* output.weight's GGUF type (NULL: the mix's) */
  const char* token_embedding_type; /* token_embd.weight's */
  bool keep_output;      /* output.weight keeps its current type */
  bool pure;             /* every quantizable tensor gets the base type (no mix) */
  bool allow_requantize; /* quantize already-quantized tensors */
  bool clip_search;      /* RTN: each block's clipping ratio by least (weighted) squared error */
  const char* name;      /* general.name to record (NULL: the input's) */
  bool skip_finite_check; /* skip the check that every input weight is finite */
  /* Expert-aware mixed precision, as `quantize --expert-type` (n strings
   * "hot:F=TYPE" / "cold:F=TYPE"; needs imatrix_path): in each block with
   * experts, the share F that saw the most / fewest routed tokens take TYPE. */
  const char* const* expert_types;
  size_t n_expert_types;
} lmpress_quantize_params;

LMPRESS_API lmpress_quantize_params lmpress_quantize_default_params(void);
/* Reads the model at in_path, quantizes it and writes out_path (through a
 * temporary name, renamed at the end; the input is never written). */
LMPRESS_API lmpress_status lmpress_quantize(const char* in_path, const char* out_path,
                                            const lmpress_quantize_params* params);

typedef struct lmpress_prune_params {
  const char* method;     /* "magnitude" (NULL), "wanda", "sparsegpt" (these two need calib_path) */
  double sparsity;        /* unstructured: the fraction of each linear's weights zeroed, or */
  const char* nm;         /* "2:4", "4:8", ...: N nonzero in every M of a row (then sparsity < 0) */
  const char* quantize;   /* also quantize the pruned linears (q4_0, q5_0, q8_0, q3_k, q6_k), or NULL */
  const char* calib_path;
  int64_t calib_samples, calib_ctx;
  double damp;            /* SparseGPT dampening fraction */
  const char* rotate;     /* "hadamard[:SEED][,r4]": rotate first, as `prune --rotate`; NULL: no rotation */
  lmpress_progress_callback progress;
  void* progress_user_data;
  /* As lmpress_quantize_params' (wanda and sparsegpt only): the pruning error's adapter. */
  const char* compensate;
  const char* compensate_out;
  /* "heads=F,ffn=F,layers=N[,global][,bias]": structured pruning as `prune
   * --structured` (whole KV-head groups, MLP channels, blocks; needs
   * calib_path; method, sparsity, nm, rotate, compensate, owl, global, targets
   * and ignore then unset); NULL or "": none. */
  const char* structured;
  /* The modules whose linears are pruned / left dense, as `prune --targets`,
   * `--ignore` (arrays of n names; NULL / 0: every linear). */
  const char* const* targets;
  size_t n_targets;
  const char* const* ignore;
  size_t n_ignore;
  /* OWL (needs calib_path): per-block sparsities around `sparsity` within
   * +-owl_lambda, lower where Wanda scores have more outliers (those above
   * owl_m times the block's mean). */
  bool owl;
  double owl_lambda, owl_m;
  bool global; /* magnitude: one |w| threshold across all blocks' linears */
  /* Mixtures of experts, as `prune --experts`: "N" experts kept per layer, or
   * "F" in (0, 1) of them removed, scored on calib_path text by method "reap"
   * (NULL) or "frequency"; the unstructured fields then unset. NULL: none. */
  const char* experts;
  const char* name; /* general.name to record */
  bool skip_finite_check;
} lmpress_prune_params;

LMPRESS_API lmpress_prune_params lmpress_prune_default_params(void);
/* Prunes the blocks' linear layers of in_path into the GGUF file out_path, as `lmpress prune`. */
LMPRESS_API lmpress_status lmpress_prune(const char* in_path, const char* out_path, const lmpress_prune_params* params);

typedef struct lmpress_lowrank_params {
  const char* method;      /* "svd", "asvd", "svd-llm" (NULL; these two need calib_path) */
  /* Exactly one of: ratio, each linear's parameter reduction in (0, 1) (or
   * the linears' together with global), and rank, one rank for every linear;
   * < 0 (the defaults): not given. */
  double ratio;
  int64_t rank;
  bool global;
  double alpha;            /* ASVD's exponent of the activations' mean magnitude */
  const char* factor_type; /* both factors' type: f32, f16 (NULL), bf16, q8_0, ... */
  const char* calib_path;
  int64_t calib_samples, calib_ctx;
  /* The modules whose linears are factorized / left dense, as `lowrank
   * --targets`, `--ignore` (arrays of n names; NULL / 0: every linear). */
  const char* const* targets;
  size_t n_targets;
  const char* const* ignore;
  size_t n_ignore;
  const char* name; /* general.name to record */
  bool skip_finite_check;
  lmpress_progress_callback progress;
  void* progress_user_data;
} lmpress_lowrank_params;

LMPRESS_API lmpress_lowrank_params lmpress_lowrank_default_params(void);
/* Factorizes each block linear of in_path (float weights) as two low-rank
 * factors into the GGUF file out_path, as `lmpress lowrank` (an lmpress file:
 * llama.cpp has no factorized linears). */
LMPRESS_API lmpress_status lmpress_lowrank(const char* in_path, const char* out_path,
                                           const lmpress_lowrank_params* params);

typedef struct lmpress_convert_params {
  /* f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 (NULL: keep each tensor's) */
  const char* dtype;
  const char* format;         /* "gguf" or "hf" (NULL: gguf when out_path ends in .gguf) */
  const char* name;           /* general.name to record */
  const char* tokenizer_path; /* llama2.c checkpoints: the tokenizer (NULL: found beside) */
  /* split_experts 2 .. 64: a dense llama / qwen3 model written as the
   * equivalent mixture of N experts (`convert --split-experts`); kv_heads >= 1:
   * key/value heads pooled into N groups (`--kv-heads`); 0: neither. */
  int64_t split_experts, kv_heads;
  bool skip_finite_check;
  /* With split_experts: experts used per token (0: all of them, the
   * equivalent mixture; fewer: a sparse one to train, `--experts-used`). */
  int64_t split_experts_used;
} lmpress_convert_params;

LMPRESS_API lmpress_convert_params lmpress_convert_default_params(void);
/* Writes the model at in_path as a GGUF file or a Hugging Face directory, as
 * `lmpress convert`. */
LMPRESS_API lmpress_status lmpress_convert_model(const char* in_path, const char* out_path,
                                                 const lmpress_convert_params* params);
/* lmpress_convert_model with only dtype and format set. */
LMPRESS_API lmpress_status lmpress_convert(const char* in_path, const char* out_path, const char* dtype,
                                           const char* format);

/* ---------------------------------------------------------- chat templates */

typedef struct lmpress_chat_message {
  const char* role;
  const char* content;
} lmpress_chat_message;

/* Renders messages with a chat template: `template_name` is a built-in name
 * (chatml, llama2, llama3, mistral, phi3, gemma, zephyr), a template file, or
 * NULL for the model's own (model may be NULL with a name). Output as
 * lmpress_detokenize's. */
LMPRESS_API lmpress_status lmpress_chat_apply_template(const lmpress_model* model, const char* template_name,
                                                       const lmpress_chat_message* messages, size_t n_messages,
                                                       bool add_generation_prompt, char* buf, size_t capacity,
                                                       size_t* n_bytes);

#ifdef __cplusplus
}
#endif

#endif /* LMPRESS_H */
