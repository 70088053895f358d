#include "eval/perplexity.h"

#include <chrono>
#include <cmath>
#include <string_view>

#include "core/error.h"
#include "core/finite.h"
#include "core/progress.h"
#include "model/forward.h"

namespace lmpress {

double token_nll(const float* logits, int64_t n_vocab, int32_t target) {
  float mx = logits[0];
  for (int64_t i = 1; i < n_vocab; i++) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; i++) sum += std::exp(double(logits[i]) - mx);
  return std::log(sum) + mx - double(logits[target]);
}

void check_finite_logits(const Model& m, const float* logits, int64_t rows, int64_t n_vocab, int64_t window,
                         int64_t first_pos) {
  const int64_t at = first_out_of_range(logits, rows * n_vocab);
  if (at < 0) return;
  fail("{}: window {}, position {}: logit of token {} is {}; the model's weights or activations are not finite, so no "
       "score is reported",
       m.path, window + 1, first_pos + at / n_vocab, at % n_vocab, logits[at]);
}

void check_chunks(int64_t n_chunks) {
  if (n_chunks == 0 || n_chunks < -1) fail("--chunks {}: expected -1 (all windows) or a count of at least 1", n_chunks);
}

std::string gptq_protocol_text(const std::string& raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  size_t pos = 0;
  bool first_row = true;
  while (pos < raw.size()) {
    size_t end = raw.find('\n', pos);
    end = end == std::string::npos ? raw.size() : end + 1;
    const std::string_view row(raw.data() + pos, end - pos);
    if (!first_row) out += "\n\n";
    first_row = false;
    if (row.find_first_not_of(" \t\r\n") != std::string_view::npos) out += row;
    pos = end;
  }
  return out;
}

PplProtocol parse_ppl_protocol(const std::string& s) {
  if (s == "llama.cpp" || s == "llamacpp") return PplProtocol::LlamaCpp;
  if (s == "gptq") return PplProtocol::Gptq;
  fail("unknown perplexity protocol '{}' (llama.cpp, gptq)", s);
}

const char* ppl_protocol_name(PplProtocol p) { return p == PplProtocol::Gptq ? "gptq" : "llama.cpp"; }

nlohmann::ordered_json perplexity_report_json(const PerplexityResult& r, const PerplexityOptions& o) {
  nlohmann::ordered_json j{{"protocol", ppl_protocol_name(o.protocol)},
                           {"ctx", o.n_ctx},
                           {"chunks", r.n_chunks},
                           {"tokens", r.n_tokens_total},
                           {"tokens_scored", r.n_tokens_scored},
                           {"ppl", r.ppl},
                           {"ppl_stderr", r.ppl_stderr},
                           {"mean_nll", r.mean_nll},
                           {"seconds", r.seconds},
                           {"running_ppl", r.running_ppl}};
  if (o.early_exit.active()) j["early_exit"] = early_exit_json(o.early_exit, r.early_exit);
  return j;
}

void eval_window(InferenceState& st, const int32_t* tokens, int64_t n, int64_t first, float* logits) {
  st.reset();
  if (!st.policy().active() && !st.early_exit().active()) return st.eval(tokens, n, logits, true);
  const int64_t V = st.model().cfg.n_vocab;
  if (first > 0) st.eval(tokens, first, nullptr, false);
  for (int64_t j = first; j < n; j++) st.eval(tokens + j, 1, logits + j * V, true);
}

namespace {

// Logits rows first..n-1, each from a fresh cache over the `window` tokens ending at its position.
void eval_recomputed(InferenceState& st, const int32_t* tokens, int64_t n, int64_t first, int64_t window, float* logits) {
  const int64_t V = st.model().cfg.n_vocab;
  for (int64_t j = first; j < n; j++) {
    const int64_t start = std::max<int64_t>(0, j + 1 - window);
    st.reset();
    st.eval(tokens + start, j + 1 - start, logits + j * V, false);
  }
}

}  // namespace

PerplexityResult perplexity(const Model& m, const std::vector<int32_t>& tokens, const PerplexityOptions& opt,
                            const std::function<void(int64_t, double)>& on_chunk) {
  const int64_t n_ctx = opt.n_ctx;
  if (n_ctx < 4) fail("perplexity: context {} is too small (at least 4)", n_ctx);
  check_chunks(opt.n_chunks);
  const bool gptq = opt.protocol == PplProtocol::Gptq;
  // llama.cpp asks for two windows' worth of text; the GPTQ protocol for one.
  const int64_t min_tokens = gptq ? n_ctx : 2 * n_ctx;
  if (int64_t(tokens.size()) < min_tokens)
    fail("perplexity: the text has {} tokens; at least {} ({}) are needed for a context of {}", tokens.size(),
         min_tokens, gptq ? "one window" : "2 x ctx", n_ctx);
  const int64_t max_chunks = int64_t(tokens.size()) / n_ctx;
  const int64_t n_chunks = opt.n_chunks < 0 ? max_chunks : std::min(opt.n_chunks, max_chunks);
  const int64_t V = m.cfg.n_vocab;
  const int64_t first = gptq ? 0 : n_ctx / 2;
  const bool add_bos = !gptq && m.tokenizer && m.tokenizer->vocab().add_bos;
  const int32_t bos = m.tokenizer ? m.tokenizer->vocab().bos : -1;

  check_kv_context(opt.kv, n_ctx);
  const int64_t recompute = opt.recompute_window;
  if (recompute < 0 || recompute > n_ctx)
    fail("--recompute-window {}: expected 1..{} (the context)", recompute, n_ctx);
  if (recompute > 0 && opt.policy.active())
    fail("--recompute-window with --kv-policy {}: the window is recomputed, no cache is kept", kv_policy_name(opt.policy));
  if (recompute > 0 && opt.early_exit.active())
    fail("--recompute-window with --early-exit: each recomputed window is a prompt, which never exits");
  InferenceState st(m, n_ctx, opt.n_batch, opt.kv, opt.policy);
  st.set_early_exit(opt.early_exit);
  std::vector<float> logits(static_cast<size_t>(n_ctx * V));
  std::vector<int32_t> window(static_cast<size_t>(n_ctx));
  PerplexityResult r;
  r.n_tokens_total = int64_t(tokens.size());
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  auto t0 = std::chrono::steady_clock::now();
  Progress progress("perplexity", uint64_t(n_chunks));
  for (int64_t c = 0; c < n_chunks; c++) {
    const int64_t start = c * n_ctx;
    std::copy(tokens.begin() + start, tokens.begin() + start + n_ctx, window.begin());
    if (add_bos) window[0] = bos;
    if (recompute > 0)
      eval_recomputed(st, window.data(), n_ctx - 1, first, recompute, logits.data());
    else
      eval_window(st, window.data(), n_ctx, first, logits.data());
    check_finite_logits(m, logits.data() + first * V, n_ctx - 1 - first, V, c, first);
    // Logits at position j predict token j+1; positions first .. n_ctx-2.
    // The GPTQ code's exp(sum(loss * seqlen) / (nsamples * seqlen)) is this
    // mean too, since every window scores the same n_ctx - 1 tokens.
    for (int64_t j = first; j < n_ctx - 1; j++) {
      double v = token_nll(logits.data() + j * V, V, tokens[size_t(start + j + 1)]);
      nll += v;
      nll2 += v * v;
      count++;
    }
    r.running_ppl.push_back(std::exp(nll / double(count)));
    progress.update(uint64_t(c + 1));
    if (on_chunk) on_chunk(c, r.running_ppl.back());
  }
  progress.finish();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.n_chunks = n_chunks;
  r.early_exit = st.early_exit_stats();
  r.n_tokens_scored = count;
  r.mean_nll = nll / double(count);
  r.ppl = std::exp(r.mean_nll);
  double var = nll2 / double(count) - r.mean_nll * r.mean_nll;
  r.ppl_stderr = var > 0 && count > 1 ? std::sqrt(var / double(count - 1)) * r.ppl : 0;
  return r;
}

}  // namespace lmpress
