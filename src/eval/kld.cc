#include "eval/kld.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/progress.h"
#include "model/forward.h"

namespace lmpress {

namespace {

// log softmax in double; returns the argmax.
int64_t log_probs(const float* logits, int64_t n, std::vector<double>& out) {
  int64_t imax = 0;
  for (int64_t i = 1; i < n; i++)
    if (logits[i] > logits[imax]) imax = i;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += std::exp(double(logits[i]) - logits[imax]);
  const double lse = std::log(sum) + logits[imax];
  out.resize(size_t(n));
  for (int64_t i = 0; i < n; i++) out[size_t(i)] = double(logits[i]) - lse;
  return imax;
}

std::pair<double, double> mean_and_uncertainty(double sum, double sum2, int64_t count) {
  if (count < 1) return {0.0, 0.0};
  const double f = sum / double(count);
  double df = sum2 / double(count) - f * f;
  df = df > 0 && count > 10 ? std::sqrt(df / double(count - 1)) : 0.0;
  return {f, df};
}

double covariance(double a, double b, double ab, int64_t count) {
  if (count < 10) return 0.0;
  return (ab / double(count) - (a / double(count)) * (b / double(count))) / double(count - 1);
}

// llama.cpp's percentile: linear interpolation between sorted values.
double percentile(const std::vector<float>& v, double fraction) {
  if (fraction <= 0) return v.front();
  if (fraction >= 1) return v.back();
  double p = fraction * double(v.size() - 1);
  const size_t ip = size_t(p);
  p -= double(ip);
  return (1 - p) * v[ip] + p * v[std::min(ip + 1, v.size() - 1)];
}

double median(const std::vector<float>& v) {
  return v.size() % 2 == 0 ? 0.5 * (double(v[v.size() / 2]) + v[v.size() / 2 - 1]) : v[v.size() / 2];
}

}  // namespace

void KldSums::add(const float* base_logits, const float* cand_logits, int64_t n_vocab, int32_t next) {
  thread_local std::vector<double> lb, lq;
  const int64_t top_b = log_probs(base_logits, n_vocab, lb);
  const int64_t top_q = log_probs(cand_logits, n_vocab, lq);
  double kld = 0;
  for (int64_t i = 0; i < n_vocab; i++) kld += std::exp(lb[size_t(i)]) * (lb[size_t(i)] - lq[size_t(i)]);
  add_token(-lq[size_t(next)], -lb[size_t(next)], kld, top_b == top_q);
}

void KldSums::add_topk(const int32_t* ids, const float* logits, int64_t k, double lse, double next_logit,
                       const float* cand_logits, int64_t n_vocab, int32_t next) {
  thread_local std::vector<double> lq;
  const int64_t top_q = log_probs(cand_logits, n_vocab, lq);
  double kld = 0, p_top = 0, q_top = 0;
  for (int64_t i = 0; i < k; i++) {
    const double lp = double(logits[i]) - lse, p = std::exp(lp);
    kld += p * (lp - lq[size_t(ids[i])]);
    p_top += p;
    q_top += std::exp(lq[size_t(ids[i])]);
  }
  sum_topk_mass += p_top;
  const double p_rest = 1 - p_top, q_rest = 1 - q_top;
  if (p_rest > 1e-9 && q_rest > 1e-12) kld += p_rest * std::log(p_rest / q_rest);
  // Rounding can leave the coarsened KLD a hair below 0; a NaN must reach add_token's check, not become 0.
  add_token(-lq[size_t(next)], lse - next_logit, kld < 0 ? 0.0 : kld, k > 0 && ids[0] == top_q);
}

void KldSums::add_token(double nll, double nll_base, double kld, bool same_top) {
  // The logits were checked; this catches a corrupt saved base.
  if (!std::isfinite(nll) || !std::isfinite(nll_base) || !std::isfinite(kld))
    fail("kld: token {}: non-finite statistic (NLL {}, base NLL {}, KLD {})", count + 1, nll, nll_base, kld);
  sum_nll += nll;
  sum_nll2 += nll * nll;
  sum_nll_base += nll_base;
  sum_nll_base2 += nll_base * nll_base;
  sum_nll_nll_base += nll * nll_base;
  sum_kld += kld;
  sum_kld2 += kld * kld;
  count++;
  n_same_top += same_top;
  const double p_diff = std::exp(-nll) - std::exp(-nll_base);
  sum_p_diff += p_diff;
  sum_p_diff2 += p_diff * p_diff;
  sum_p_diff4 += p_diff * p_diff * p_diff * p_diff;
  max_p_diff = std::max(max_p_diff, std::fabs(p_diff));
  kld_values.push_back(float(kld));
  p_diff_values.push_back(float(p_diff));
}

KldResult summarize_kld(KldSums s) {
  if (s.count < 2) fail("kld: too few tokens scored ({})", s.count);
  KldResult r;
  r.n_tokens = s.count;
  const auto lp = mean_and_uncertainty(s.sum_nll, s.sum_nll2, s.count);
  const auto lb = mean_and_uncertainty(s.sum_nll_base, s.sum_nll_base2, s.count);
  r.ppl = {std::exp(lp.first), std::exp(lp.first) * lp.second};
  r.ppl_base = {std::exp(lb.first), std::exp(lb.first) * lb.second};
  const double cov = covariance(s.sum_nll, s.sum_nll_base, s.sum_nll_nll_base, s.count);
  r.ln_ppl_correlation = lp.second * lb.second > 0 ? cov / (lp.second * lb.second) : 0.0;
  r.ln_ppl_ratio = {lp.first - lb.first, std::sqrt(std::max(0.0, lp.second * lp.second + lb.second * lb.second - 2 * cov))};
  r.ppl_ratio = {std::exp(r.ln_ppl_ratio.value), std::exp(r.ln_ppl_ratio.value) * r.ln_ppl_ratio.unc};
  const double ppl_cov = r.ppl.value * r.ppl_base.value * cov;
  r.ppl_diff = {r.ppl.value - r.ppl_base.value,
                std::sqrt(std::max(0.0, r.ppl.unc * r.ppl.unc + r.ppl_base.unc * r.ppl_base.unc - 2 * ppl_cov))};
  const auto k = mean_and_uncertainty(s.sum_kld, s.sum_kld2, s.count);
  r.kld = {k.first, k.second};
  const auto pd = mean_and_uncertainty(s.sum_p_diff, s.sum_p_diff2, s.count);
  r.p_diff = {pd.first, pd.second};
  const auto mse = mean_and_uncertainty(s.sum_p_diff2, s.sum_p_diff4, s.count);
  const double rms = std::sqrt(mse.first);
  r.rms_p_diff = {rms, rms > 0 ? 0.5 / rms * mse.second : 0.0};
  const double top = double(s.n_same_top) / double(s.count);
  r.same_top = {top, std::sqrt(top * (1 - top) / double(s.count - 1))};
  if (s.sum_topk_mass > 0) r.top_k_mass = s.sum_topk_mass / double(s.count);
  std::sort(s.kld_values.begin(), s.kld_values.end());
  std::sort(s.p_diff_values.begin(), s.p_diff_values.end());
  for (double f : {1.0, 0.999, 0.99, 0.95, 0.9, 0.5, 0.1, 0.05, 0.01, 0.001, 0.0})
    r.kld_quantiles.push_back({f, f == 0.5 ? median(s.kld_values) : percentile(s.kld_values, f)});
  for (double f : {1.0, 0.999, 0.99, 0.95, 0.9, 0.75, 0.5, 0.25, 0.1, 0.05, 0.01, 0.001, 0.0})
    r.p_diff_quantiles.push_back({f, f == 0.5 ? median(s.p_diff_values) : percentile(s.p_diff_values, f)});
  return r;
}

void KldWindows::fill(const std::vector<int32_t>& tokens, int64_t c, std::vector<int32_t>& window) const {
  window.assign(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
  if (add_bos) window[0] = bos;
}

KldWindows plan_kld_windows(const Model& base, const std::vector<int32_t>& tokens, const PerplexityOptions& opt) {
  KldWindows w;
  w.n_ctx = opt.n_ctx;
  if (w.n_ctx < 4) fail("kld: context {} is too small (at least 4)", w.n_ctx);
  if (int64_t(tokens.size()) < 2 * w.n_ctx)
    fail("kld: the text has {} tokens; at least {} (2 x ctx) are needed for a context of {}", tokens.size(),
         2 * w.n_ctx, w.n_ctx);
  const int64_t max_chunks = int64_t(tokens.size()) / w.n_ctx;
  check_chunks(opt.n_chunks);
  w.n_chunks = opt.n_chunks < 0 ? max_chunks : std::min(opt.n_chunks, max_chunks);
  if (w.n_chunks < 1) fail("kld: no window to evaluate (--chunks {})", opt.n_chunks);
  w.first = w.n_ctx / 2;
  w.add_bos = base.tokenizer && base.tokenizer->vocab().add_bos;
  w.bos = base.tokenizer ? base.tokenizer->vocab().bos : -1;
  return w;
}

void check_same_vocab(const Model& base, const Model& cand) {
  if (cand.cfg.n_vocab != base.cfg.n_vocab)
    fail("kld: the vocabularies differ ({} tokens in {}, {} in {})", base.cfg.n_vocab, base.path, cand.cfg.n_vocab,
         cand.path);
  if (base.tokenizer && cand.tokenizer && base.tokenizer->vocab().tokens != cand.tokenizer->vocab().tokens)
    fail("kld: {} and {} have different vocabularies (same size, different tokens)", base.path, cand.path);
}

KldResult kl_divergence(const Model& base, const Model& cand, const std::vector<int32_t>& tokens,
                        const PerplexityOptions& opt) {
  check_same_vocab(base, cand);
  const KldWindows w = plan_kld_windows(base, tokens, opt);
  check_kv_context(opt.kv, w.n_ctx);
  const int64_t V = base.cfg.n_vocab;
  InferenceState sb(base, w.n_ctx, opt.n_batch, opt.base_kv), sq(cand, w.n_ctx, opt.n_batch, opt.kv, opt.policy);
  sq.set_early_exit(opt.early_exit);
  std::vector<float> lb(size_t(w.n_ctx * V)), lq(size_t(w.n_ctx * V));
  std::vector<int32_t> window;
  KldSums sums;
  Progress progress("kld", uint64_t(w.n_chunks));
  for (int64_t c = 0; c < w.n_chunks; c++) {
    w.fill(tokens, c, window);
    sb.reset();
    sb.eval(window.data(), w.n_ctx, lb.data(), true);
    eval_window(sq, window.data(), w.n_ctx, w.first, lq.data());
    const int64_t scored = w.n_ctx - 1 - w.first;
    check_finite_logits(base, lb.data() + w.first * V, scored, V, c, w.first);
    check_finite_logits(cand, lq.data() + w.first * V, scored, V, c, w.first);
    for (int64_t j = w.first; j < w.n_ctx - 1; j++)
      sums.add(lb.data() + j * V, lq.data() + j * V, V, tokens[size_t(c * w.n_ctx + j + 1)]);
    progress.update(uint64_t(c + 1));
  }
  progress.finish();
  KldResult r = summarize_kld(std::move(sums));
  r.n_chunks = w.n_chunks;
  r.early_exit = sq.early_exit_stats();
  return r;
}

}  // namespace lmpress
