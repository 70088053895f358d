// The C API (include/lmpress.h): errors, models, tokenizer, sampling, chat templates.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "api/api_internal.h"
#include "core/mapped_file.h"
#include "kernels/matmul.h"
#include "model/lora.h"
#include "model/repack.h"
#include "runtime/chat_template.h"

namespace lmpress::api {

namespace {
thread_local std::string last_error;
thread_local std::string last_report;
}  // namespace

void set_error(std::string msg) { last_error = std::move(msg); }

void set_report(const nlohmann::ordered_json& report) {
  // Invalid UTF-8 in a path or tensor name becomes U+FFFD rather than an exception that loses the result.
  last_report = report.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

namespace {
std::atomic<int> requested_threads{-1};  // -1: never set, the library's default (all cores)
}  // namespace

void apply_threads() {
  // Only this thread's OpenMP count: set_num_threads (lmpress_set_threads) also
  // sets OpenBLAS's process-wide count, which must not change under another
  // thread's running call.
  thread_local int applied = -1;
  const int n = requested_threads.load();
  if (n < 0 || n == applied) return;
  omp_set_num_threads(n > 0 ? std::min(n, omp_get_num_procs()) : omp_get_num_procs());
  applied = n;
}

// An array of n C strings (NULL with n 0: none); `what` names it in errors.
std::vector<std::string> strings(const char* const* v, size_t n, const char* fn, const char* what) {
  if (n > 0 && !v) invalid("{}: {} is NULL but n_{} is {}", fn, what, what, n);
  std::vector<std::string> out;
  for (size_t i = 0; i < n; i++) {
    if (!v[i]) invalid("{}: {}[{}] is NULL", fn, what, i);
    out.emplace_back(v[i]);
  }
  return out;
}

lmpress_status copy_out(const std::string& s, char* buf, size_t capacity, size_t* n, const char* fn) {
  need(n, fn, "n_bytes");
  if (capacity > 0) need(buf, fn, "buf");
  *n = s.size();
  if (s.size() + 1 > capacity) {
    set_error(fmt::format("{}: the text needs {} bytes with its NUL, the buffer has {}", fn, s.size() + 1, capacity));
    return LMPRESS_ERR_BUFFER_TOO_SMALL;
  }
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  return LMPRESS_OK;
}

KvCacheSpec cache_spec(const lmpress_cache_params& p, const ModelConfig& cfg) {
  const std::string rotate = p.rotate ? p.rotate : "auto";
  if (rotate != "auto" && rotate != "on" && rotate != "off")
    fail("cache rotate '{}': one of auto, on, off", rotate);
  const KvRotate r = rotate == "on" ? KvRotate::On : rotate == "off" ? KvRotate::Off : KvRotate::Auto;
  KvCacheSpec s(parse_kv_type(p.type_k ? p.type_k : "f16"), parse_kv_type(p.type_v ? p.type_v : "f16"), r);
  s.group = p.kivi_group;
  s.residual = p.kivi_residual;
  check_kv_spec(s, cfg.head_dim);
  return s;
}

KvPolicy cache_policy(const lmpress_cache_params& p) { return parse_kv_policy(p.policy ? p.policy : "none"); }

int64_t in_range(int64_t v, int64_t lo, int64_t hi, const char* fn, const char* what) {
  if (v < lo || v > hi) invalid("{}: {} {} out of range ({} .. {})", fn, what, v, lo, hi);
  return v;
}

std::unique_ptr<PagedKvCache> paged_cache(const Model& m, int64_t n_ctx, int64_t block_size,
                                          const lmpress_cache_params& c, int64_t max_tokens, const char* fn) {
  in_range(block_size, 1, 4096, fn, "block_size");
  in_range(n_ctx, 0, int64_t(1) << 26, fn, "n_ctx");
  const int64_t positions = n_ctx > 0 ? n_ctx : 4 * m.cfg.ctx_len;
  const KvCacheSpec kv = cache_spec(c, m.cfg);
  const int64_t block = kv.round_positions(block_size);
  auto cache = std::make_unique<PagedKvCache>(m.cfg, (positions + block - 1) / block, block, kv);
  const KvPolicy policy = cache_policy(c);
  if (policy.active()) {
    check_kv_policy(policy, kv, m.cfg.ctx_len, max_tokens);
    cache->set_policy(policy);
  }
  return cache;
}

SamplerOptions sampler_options(const lmpress_sampler_params& p) {
  SamplerOptions o;
  o.temperature = p.temperature;
  o.top_k = p.top_k;
  o.top_p = p.top_p;
  o.min_p = p.min_p;
  o.seed = p.seed;
  o.repeat_penalty = p.repeat_penalty;
  o.frequency_penalty = p.frequency_penalty;
  o.presence_penalty = p.presence_penalty;
  o.penalty_last_n = p.penalty_last_n;
  if (!(o.repeat_penalty > 0)) invalid("sampler: repeat_penalty {} must be > 0", o.repeat_penalty);
  if (o.penalty_last_n < -1) invalid("sampler: penalty_last_n {} must be -1 (all) or >= 0", o.penalty_last_n);
  return o;
}

ProgressSink progress_sink(lmpress_progress_callback cb, void* user) {
  if (!cb) return {};
  return [cb, user](const std::string& stage, uint64_t done, uint64_t total) {
    return cb(stage.c_str(), done, total, user);
  };
}

}  // namespace lmpress::api

using namespace lmpress;
using namespace lmpress::api;

extern "C" {

const char* lmpress_version(void) { return LMPRESS_VERSION; }
const char* lmpress_last_report(void) { return last_report.c_str(); }
int lmpress_api_version(void) { return LMPRESS_API_VERSION; }
const char* lmpress_last_error(void) { return last_error.c_str(); }

const char* lmpress_status_name(lmpress_status s) {
  switch (s) {
    case LMPRESS_OK: return "ok";
    case LMPRESS_ERR_INVALID_ARGUMENT: return "invalid argument";
    case LMPRESS_ERR_FAILED: return "failed";
    case LMPRESS_ERR_CANCELLED: return "cancelled";
    case LMPRESS_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case LMPRESS_ERR_OUT_OF_MEMORY: return "out of memory";
    case LMPRESS_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

lmpress_status lmpress_set_threads(int n_threads) {
  return guarded([&] {
    if (n_threads < 0 || n_threads > 4096) invalid("lmpress_set_threads: {} threads (0: all cores, up to 4096)", n_threads);
    requested_threads = n_threads;
    set_num_threads(n_threads);
  });
}

lmpress_model_params lmpress_model_default_params(void) {
  lmpress_model_params p;
  std::memset(&p, 0, sizeof p);
  p.repack = true;
  return p;
}

lmpress_status lmpress_model_load(const char* path, const lmpress_model_params* params, lmpress_model** out) {
  return guarded([&] {
    need(out, "lmpress_model_load", "out");
    *out = nullptr;
    need(path, "lmpress_model_load", "path");
    const lmpress_model_params p = params ? *params : lmpress_model_default_params();
    apply_threads();
    ScopedProgressSink sink(progress_sink(p.progress, p.progress_user_data));
    const std::vector<std::string> loras = strings(p.lora, p.n_lora, "lmpress_model_load", "lora");
    auto h = std::make_unique<lmpress_model>();
    {
      Progress progress("load", 1);
      h->m = load_model(path, p.tokenizer_path ? p.tokenizer_path : "");
      progress.update(1);
    }
    if (!h->m->tokenizer) fail("{}: the model has no tokenizer (give tokenizer_path, --tokenizer)", path);
    for (const auto& l : loras) apply_lora(*h->m, l);
    if (p.repack) repack_for_inference(*h->m);
    *out = h.release();
  });
}

void lmpress_model_free(lmpress_model* model) { delete model; }

lmpress_status lmpress_model_get_info(const lmpress_model* model, lmpress_model_info* out) {
  return guarded([&] {
    need(model, "lmpress_model_get_info", "model");
    need(out, "lmpress_model_get_info", "out");
    const Model& m = *model->m;
    const ModelConfig& c = m.cfg;
    const Vocab& v = m.tokenizer->vocab();
    lmpress_model_info i;
    std::memset(&i, 0, sizeof i);
    i.arch = c.arch.c_str();
    i.format = m.format.c_str();
    i.n_vocab = c.n_vocab;
    i.n_embd = c.dim;
    i.n_layer = c.n_layers;
    i.n_head = c.n_heads;
    i.n_head_kv = c.n_kv_heads;
    i.head_dim = c.head_dim;
    i.n_ff = c.ffn_dim;
    i.n_ctx_train = c.ctx_len;
    i.n_params = m.n_params();
    i.n_bytes = m.n_bytes();
    i.token_bos = v.bos;
    i.token_eos = v.eos;
    i.add_bos = v.add_bos;
    *out = i;
  });
}

lmpress_status lmpress_tokenize(const lmpress_model* model, const char* text, size_t text_len, bool add_special,
                                bool parse_special, int32_t* tokens, size_t capacity, size_t* n_tokens) {
  lmpress_status st = LMPRESS_OK;
  const lmpress_status g = guarded([&] {
    need(model, "lmpress_tokenize", "model");
    need(n_tokens, "lmpress_tokenize", "n_tokens");
    if (text_len > 0) need(text, "lmpress_tokenize", "text");
    if (capacity > 0) need(tokens, "lmpress_tokenize", "tokens");
    const auto ids = model->m->tokenizer->encode(std::string_view(text ? text : "", text_len), add_special, parse_special);
    *n_tokens = ids.size();
    if (ids.size() > capacity) {
      set_error(fmt::format("lmpress_tokenize: the text has {} tokens, the buffer holds {}", ids.size(), capacity));
      st = LMPRESS_ERR_BUFFER_TOO_SMALL;
      return;
    }
    std::copy(ids.begin(), ids.end(), tokens);
  });
  return g != LMPRESS_OK ? g : st;
}

lmpress_status lmpress_detokenize(const lmpress_model* model, const int32_t* tokens, size_t n, bool special, char* buf,
                                  size_t capacity, size_t* n_bytes) {
  lmpress_status st = LMPRESS_OK;
  const lmpress_status g = guarded([&] {
    need(model, "lmpress_detokenize", "model");
    if (n > 0) need(tokens, "lmpress_detokenize", "tokens");
    const int64_t V = int64_t(model->m->tokenizer->vocab().tokens.size());
    for (size_t i = 0; i < n; i++)
      if (tokens[i] < 0 || tokens[i] >= V)
        invalid("lmpress_detokenize: token {} (at {}) is outside the vocabulary of {}", tokens[i], i, V);
    st = copy_out(model->m->tokenizer->decode(std::vector<int32_t>(tokens, tokens + n), special), buf, capacity,
                  n_bytes, "lmpress_detokenize");
  });
  return g != LMPRESS_OK ? g : st;
}

lmpress_sampler_params lmpress_sampler_default_params(void) {
  const SamplerOptions o;
  lmpress_sampler_params p;
  std::memset(&p, 0, sizeof p);
  p.temperature = o.temperature;
  p.top_k = o.top_k;
  p.top_p = o.top_p;
  p.min_p = o.min_p;
  p.seed = o.seed;
  p.repeat_penalty = o.repeat_penalty;
  p.frequency_penalty = o.frequency_penalty;
  p.presence_penalty = o.presence_penalty;
  p.penalty_last_n = o.penalty_last_n;
  return p;
}

struct lmpress_sampler {
  SamplerOptions options;
  Sampler s;
  std::vector<float> scratch;
};

lmpress_status lmpress_sampler_create(const lmpress_sampler_params* params, lmpress_sampler** out) {
  return guarded([&] {
    need(out, "lmpress_sampler_create", "out");
    *out = nullptr;
    const SamplerOptions o = sampler_options(params ? *params : lmpress_sampler_default_params());
    *out = new lmpress_sampler{o, Sampler(o), {}};
  });
}

void lmpress_sampler_free(lmpress_sampler* sampler) { delete sampler; }

lmpress_status lmpress_sampler_sample(lmpress_sampler* sampler, const float* logits, int64_t n_vocab,
                                      const int32_t* history, size_t n_history, int32_t* token) {
  return guarded([&] {
    need(sampler, "lmpress_sampler_sample", "sampler");
    need(logits, "lmpress_sampler_sample", "logits");
    need(token, "lmpress_sampler_sample", "token");
    if (n_history > 0) need(history, "lmpress_sampler_sample", "history");
    if (n_vocab <= 0 || n_vocab > (int64_t(1) << 31)) invalid("lmpress_sampler_sample: n_vocab {} out of range", n_vocab);
    const float* l = logits;
    if (sampler->options.has_penalties() && n_history > 0) {
      sampler->scratch.assign(logits, logits + n_vocab);
      apply_penalties(sampler->scratch.data(), n_vocab, history, int64_t(n_history), sampler->options);
      l = sampler->scratch.data();
    }
    for (int64_t i = 0; i < n_vocab; i++)
      if (std::isnan(l[i])) invalid("lmpress_sampler_sample: logits[{}] is NaN", i);
    *token = sampler->s.sample(l, n_vocab);
  });
}

lmpress_status lmpress_chat_apply_template(const lmpress_model* model, const char* template_name,
                                           const lmpress_chat_message* messages, size_t n_messages,
                                           bool add_generation_prompt, char* buf, size_t capacity, size_t* n_bytes) {
  lmpress_status st = LMPRESS_OK;
  const lmpress_status g = guarded([&] {
    const char* fn = "lmpress_chat_apply_template";
    if (!model && !template_name) invalid("{}: give a model or a template name", fn);
    if (n_messages > 0) need(messages, fn, "messages");
    ChatRequest req;
    req.add_generation_prompt = add_generation_prompt;
    for (size_t i = 0; i < n_messages; i++) {
      if (!messages[i].role) invalid("{}: messages[{}].role is NULL", fn, i);
      if (!messages[i].content) invalid("{}: messages[{}].content is NULL", fn, i);
      req.messages.push_back(jinja::Json::object({{"role", messages[i].role}, {"content", messages[i].content}}));
    }
    std::string source;
    if (model) {
      const Vocab& v = model->m->tokenizer->vocab();
      if (v.bos >= 0) req.bos_token = v.tokens[size_t(v.bos)];
      if (v.eos >= 0) req.eos_token = v.tokens[size_t(v.eos)];
      source = select_chat_template(model->m->path, template_name ? template_name : "").source;
    } else if (auto b = builtin_chat_template(template_name)) {
      source = *b;
    } else {
      source = read_text_file(template_name);
    }
    st = copy_out(apply_chat_template(source, req), buf, capacity, n_bytes, fn);
  });
  return g != LMPRESS_OK ? g : st;
}

}  // extern "C"
