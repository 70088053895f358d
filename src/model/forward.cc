#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/attention.h"
#include "kernels/hadamard.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/to_f32.h"
#include "quant/quantize.h"

namespace lmpress {

void store_cache_row(KvType t, const float* x, int64_t n, uint8_t* row) {
  switch (t) {
    case KvType::F32: std::memcpy(row, x, size_t(n) * sizeof(float)); return;
    case KvType::F16: to_f16(x, n, reinterpret_cast<uint16_t*>(row)); return;
    case KvType::BF16: {
      auto* h = reinterpret_cast<uint16_t*>(row);
      for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(x[i]);
      return;
    }
    default:
      if (kv_is_kivi(t)) fail("store_cache_row: {} rows go through a KiviStage", kv_type_name(t));
      quantize_row(kv_type_info(t).dtype, x, n, row);
  }
}

void prepare_token(const Model& m, const KvCacheSpec& kv, int64_t l, float* q, float* k, float* v, int64_t pos,
                   bool long_rope, uint8_t* krow, uint8_t* vrow) {
  const ModelConfig& c = m.cfg;
  bias_and_rope(m, l, q, k, v, pos, long_rope);
  if (const int64_t rk = kv_rotation_k(kv, c.head_dim)) {
    hadamard(q, c.q_dim(l), rk);
    hadamard(k, c.kv_dim(l), rk);
  }
  if (const int64_t rv = kv_rotation_v(kv, c.head_dim)) hadamard(v, c.kv_dim(l), rv);
  if (kv.kivi()) {  // staged and read as f16 (KiviStage): rounded once here
    for (int64_t i = 0; i < c.kv_dim(l); i++) k[i] = f16_to_f32(f32_to_f16(k[i])), v[i] = f16_to_f32(f32_to_f16(v[i]));
    return;
  }
  store_cache_row(kv.k, k, c.kv_dim(l), krow);
  store_cache_row(kv.v, v, c.kv_dim(l), vrow);
}

void keep_unrotated_key(const Model& m, const KvCacheSpec& kv, int64_t l, const float* k, float* out) {
  const int64_t kvd = m.cfg.kv_dim(l);
  std::copy_n(k, kvd, out);
  if (const int64_t rk = kv_rotation_k(kv, m.cfg.head_dim)) hadamard(out, kvd, rk);  // H is its own inverse
}

void store_moved_key(const Model& m, const KvCacheSpec& kv, int64_t l, const float* k0, int64_t shift, bool long_rope,
                     uint8_t* krow) {
  const ModelConfig& c = m.cfg;
  const int64_t kvd = c.kv_dim(l);
  thread_local std::vector<float> k;
  k.assign(k0, k0 + kvd);
  if (c.uses_rope(l)) rope(k.data(), c.kv_heads(l), c.head_dim, shift, m.rope_freqs(l, long_rope), c.rope_layout);
  if (const int64_t rk = kv_rotation_k(kv, c.head_dim)) hadamard(k.data(), kvd, rk);
  store_cache_row(kv.k, k.data(), kvd, krow);
}

void unrotate_attention(const Model& m, const KvCacheSpec& kv, int64_t l, float* out, int64_t n) {
  const int64_t rv = kv_rotation_v(kv, m.cfg.head_dim), qd = m.cfg.q_dim(l);
  if (rv == 0) return;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; t++) hadamard(out + t * qd, qd, rv);
}

void add_residual(float* x, const float* y, const std::vector<float>& bias, int64_t n, int64_t D) {
  for (int64_t i = 0; i < n * D; i++) x[i] += y[i];
  if (!bias.empty())
    for (int64_t t = 0; t < n; t++)
      for (int64_t i = 0; i < D; i++) x[t * D + i] += bias[size_t(i)];
}

void bias_and_rope(const Model& m, int64_t l, float* q, float* k, float* v, int64_t pos, bool long_rope) {
  const ModelConfig& c = m.cfg;
  const LayerWeights& L = m.layers[size_t(l)];
  if (c.qkv_bias) {
    const int64_t qd = c.q_dim(l), kvd = c.kv_dim(l);
    for (int64_t i = 0; i < qd; i++) q[i] += L.bq[size_t(i)];
    for (int64_t i = 0; i < kvd; i++) k[i] += L.bk[size_t(i)];
    for (int64_t i = 0; i < kvd; i++) v[i] += L.bv[size_t(i)];
  }
  if (c.qk_norm_full) {
    rmsnorm(q, L.q_norm.data(), c.q_dim(l), c.rms_eps, q);
    rmsnorm(k, L.k_norm.data(), c.kv_dim(l), c.rms_eps, k);
  } else if (c.qk_norm) {
    for (int64_t h = 0; h < c.heads(l); h++) rmsnorm(q + h * c.head_dim, L.q_norm.data(), c.head_dim, c.rms_eps, q + h * c.head_dim);
    for (int64_t h = 0; h < c.kv_heads(l); h++) rmsnorm(k + h * c.head_dim, L.k_norm.data(), c.head_dim, c.rms_eps, k + h * c.head_dim);
  }
  if (!c.uses_rope(l)) return;
  const std::vector<float>& freqs = m.rope_freqs(l, long_rope);
  rope(q, c.heads(l), c.head_dim, pos, freqs, c.rope_layout);
  rope(k, c.kv_heads(l), c.head_dim, pos, freqs, c.rope_layout);
  if (c.rope_mscale != 1.0f) {  // LongRoPE's attention factor: cos and sin scaled, so the rotated dimensions
    for (int64_t h = 0; h < c.heads(l); h++)
      for (int64_t i = 0; i < c.rope_dim; i++) q[h * c.head_dim + i] *= c.rope_mscale;
    for (int64_t h = 0; h < c.kv_heads(l); h++)
      for (int64_t i = 0; i < c.rope_dim; i++) k[h * c.head_dim + i] *= c.rope_mscale;
  }
}

void pre_norm(const ModelConfig& c, const std::vector<float>& w, const float* x, int64_t n, float* out) {
  if (w.empty()) return std::copy_n(x, n * c.dim, out), void();
  for (int64_t t = 0; t < n; t++) rmsnorm(x + t * c.dim, w.data(), c.dim, c.rms_eps, out + t * c.dim);
}

void join_residual(const ModelConfig& c, float* x, float* y, const std::vector<float>& bias,
                   const std::vector<float>& post_norm, int64_t n) {
  const int64_t D = c.dim;
  if (post_norm.empty() && c.residual_scale == 1.0f) return add_residual(x, y, bias, n, D);
  for (int64_t t = 0; t < n; t++) {
    float* row = y + t * D;
    if (!bias.empty())
      for (int64_t i = 0; i < D; i++) row[i] += bias[size_t(i)];
    if (!post_norm.empty()) rmsnorm(row, post_norm.data(), D, c.rms_eps, row);
    if (c.residual_scale != 1.0f)
      for (int64_t i = 0; i < D; i++) row[i] *= c.residual_scale;
  }
  add_residual(x, y, {}, n, D);
}

void embed_token(const Model& m, int32_t token, float* x) {
  const ModelConfig& c = m.cfg;
  if (token < 0 || token >= c.n_vocab) fail("token id {} is outside the vocabulary of {}", token, c.n_vocab);
  to_f32(*m.tok_embd, int64_t(token) * c.dim, c.dim, x);
  if (c.embed_scale != 1.0f)
    for (int64_t i = 0; i < c.dim; i++) x[i] *= c.embed_scale;
}

void ffn_activation(const ModelConfig& c, float* gate, const float* up, int64_t n, int64_t F) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; t++) {
    if (c.ffn_act == FfnAct::GeluTanh)
      gelu_tanh_mul(gate + t * F, up + t * F, F);
    else if (c.ffn_act == FfnAct::SwigluOai)
      swiglu_oai_mul(gate + t * F, up + t * F, F);
    else
      silu_mul(gate + t * F, up + t * F, F);
  }
}

void finish_logits(const ModelConfig& c, float* logits, int64_t n) {
  if (c.logit_scale != 1.0f)
    for (int64_t i = 0; i < n * c.n_vocab; i++) logits[i] /= c.logit_scale;
  if (c.final_softcap > 0) softcap(logits, n * c.n_vocab, c.final_softcap);
}

AttentionShape attention_shape(const Model& m, int64_t l) {
  const ModelConfig& c = m.cfg;
  AttentionShape shape;
  shape.n_heads = c.heads(l);
  shape.n_kv_heads = c.kv_heads(l);
  shape.head_dim = c.head_dim;
  shape.q_stride = shape.out_stride = c.q_dim(l);
  shape.kv_stride = c.kv_dim(l);
  shape.window = c.window(l);
  shape.softcap = c.attn_softcap;
  const auto& sinks = m.layers[size_t(l)].sinks;
  shape.sinks = sinks.empty() ? nullptr : sinks.data();
  return shape;
}

void ForwardBuffers::resize(const ModelConfig& c, size_t B) {
  x.resize(B * c.dim);
  xn.resize(B * c.dim);
  q.resize(B * c.q_dim());
  k.resize(B * c.kv_dim());
  v.resize(B * c.kv_dim());
  att.resize(B * c.q_dim());
  // A mixture of experts: the dense blocks' or the shared expert's (the routed experts' are the threads' own).
  const size_t F = c.moe() ? size_t(std::max(c.shared_ffn, c.any_dense_block() ? c.ffn_dim : 0)) : size_t(c.ffn_dim);
  gate.resize(B * F);
  up.resize(B * F);
  if (!c.moe()) return;
  const size_t K = size_t(c.n_experts_used);
  probs.resize(B * size_t(c.n_experts));
  weights.resize(B * K);
  chosen.resize(B * K);
  slots.resize(B * K * size_t(c.dim));
  moe_y.resize(B * size_t(c.dim));
  if (c.shared_ffn > 0) shared_y.resize(B * size_t(c.dim));
}

void add_bias_rows(float* y, const std::vector<float>& b, int64_t k) {
  const int64_t w = int64_t(b.size());
  for (int64_t r = 0; r < k; r++)
    for (int64_t i = 0; i < w; i++) y[r * w + i] += b[size_t(i)];
}

void route_experts(const ModelConfig& c, const float* logits, int64_t n, float* probs, int32_t* chosen, float* weights) {
  const int64_t E = c.n_experts, K = c.n_experts_used;
  std::vector<int32_t> order(static_cast<size_t>(E));
  std::vector<float> row(static_cast<size_t>(E));  // logits and probs may be the same memory
  for (int64_t t = 0; t < n; t++) {
    const float* z = row.data();
    std::copy_n(logits + t * E, E, row.data());
    float* p = probs + t * E;
    const float mx = *std::max_element(z, z + E);
    float sum = 0;
    for (int64_t e = 0; e < E; e++) sum += p[e] = std::exp(z[e] - mx);
    for (int64_t e = 0; e < E; e++) p[e] /= sum;
    int32_t* ch = chosen + t * K;
    float* w = weights + t * K;
    // The K most probable, best first; a tie goes to the lower expert (a stable partial sort).
    for (int64_t e = 0; e < E; e++) order[size_t(e)] = int32_t(e);
    // gpt-oss's choice is by logit (llama.cpp argsorts them), which ties less often than the rounded softmax.
    const float* by = c.expert_softmax_chosen ? z : p;
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [&](int32_t a, int32_t b) { return by[a] > by[b] || (by[a] == by[b] && a < b); });
    float total = 0;
    for (int64_t k = 0; k < K; k++) ch[k] = order[size_t(k)], total += w[k] = p[ch[k]];
    if (c.expert_softmax_chosen) {  // gpt-oss: a softmax over the chosen experts' logits (the best is first)
      total = 0;
      for (int64_t k = 0; k < K; k++) total += w[k] = std::exp(z[ch[k]] - z[ch[0]]);
      for (int64_t k = 0; k < K; k++) w[k] /= total;
    }
    // llama.cpp clamps the sum to the smallest normal f16 before dividing.
    if (c.expert_norm)
      for (int64_t k = 0; k < K; k++) w[k] /= std::max(total, 6.103515625e-5f);
    if (c.expert_scale != 1.0f)
      for (int64_t k = 0; k < K; k++) w[k] *= c.expert_scale;
  }
}

namespace {

// y[k, out] = x[k, in] · wᵀ for k rows of one expert, each row what it would
// be in any other batch: weights whose batched rows equal their one-token
// rows (the interleaved layouts) take matmul for all; other quantized types
// the one-token kernels for all (an expert's share of a prompt is a few rows,
// too few to repay converting its weights for the GEMM); f32/f16/bf16
// weights the GEMM for prompt rows (padded to kMatmulBatchMin) and one-token
// kernels for decoding rows.
void expert_matmul(const Tensor& w, const float* x, int64_t k, bool batched, float* y) {
  if (matmul_rows_batch_invariant(w)) return matmul(w, x, k, y);
  if (!batched || !is_float_type(w.dtype)) return matmul_decode(w, x, k, y);
  if (k >= kMatmulBatchMin) return matmul(w, x, k, y);
  const int64_t in = w.shape[1], out = w.shape[0];
  thread_local std::vector<float> pad_x, pad_y;
  pad_x.assign(size_t(kMatmulBatchMin * in), 0.0f);
  std::copy_n(x, k * in, pad_x.data());
  pad_y.resize(size_t(kMatmulBatchMin * out));
  matmul(w, pad_x.data(), kMatmulBatchMin, pad_y.data());
  std::copy_n(pad_y.data(), k * out, y);
}

// Expert e on the rows `rows` (token, slot) of xn, its outputs into slots.
void run_expert(const ModelConfig& c, int64_t e, const LayerWeights::Expert& x, const float* xn,
                const std::vector<std::pair<int64_t, int64_t>>& rows, bool batched, float* slots,
                const LinearObserver* obs) {
  const int64_t D = c.dim, F = c.expert_ffn, K = c.n_experts_used, k = int64_t(rows.size());
  thread_local std::vector<float> gx, gate, up, gy;
  gx.resize(size_t(k * D));
  gate.resize(size_t(k * F));
  up.resize(size_t(k * F));
  gy.resize(size_t(k * D));
  for (int64_t i = 0; i < k; i++) std::copy_n(xn + rows[size_t(i)].first * D, D, gx.data() + i * D);
  if (obs) (*obs)(LinearSite::FfnIn, e, gx.data(), k, D);
  expert_matmul(*x.gate, gx.data(), k, batched, gate.data());
  expert_matmul(*x.up, gx.data(), k, batched, up.data());
  add_bias_rows(gate.data(), x.b_gate, k);
  add_bias_rows(up.data(), x.b_up, k);
  ffn_activation(c, gate.data(), up.data(), k, F);
  if (obs) (*obs)(LinearSite::FfnDown, e, gate.data(), k, F);
  if (c.act_int8) fake_quant_int8_rows(gate.data(), k, F);
  expert_matmul(*x.down, gate.data(), k, batched, gy.data());
  add_bias_rows(gy.data(), x.b_down, k);
  for (int64_t i = 0; i < k; i++) {
    const auto [t, slot] = rows[size_t(i)];
    std::copy_n(gy.data() + i * D, D, slots + (t * K + slot) * D);
  }
}

}  // namespace

void moe_feed_forward(const Model& m, int64_t l, const float* xn, int64_t n, const uint8_t* batched,
                      const LinearFn& linear, ForwardBuffers& a, float* y, const LinearObserver* obs) {
  const ModelConfig& c = m.cfg;
  const LayerWeights& L = m.layers[size_t(l)];
  const int64_t D = c.dim, E = c.n_experts, K = c.n_experts_used;
  // The router row by row (one-token kernels): a token's choice never depends on its batch.
  matmul_decode(*L.router, xn, n, a.probs.data());
  add_bias_rows(a.probs.data(), L.router_bias, n);
  route_experts(c, a.probs.data(), n, a.probs.data(), a.chosen.data(), a.weights.data());
  // Rows per expert and kind, in token order: (token, slot k).
  std::vector<std::vector<std::pair<int64_t, int64_t>>> rows(size_t(2 * E));
  for (int64_t t = 0; t < n; t++)
    for (int64_t k = 0; k < K; k++) rows[size_t(2 * a.chosen[size_t(t * K + k)] + (batched && batched[t]))].push_back({t, k});
  std::vector<int64_t> work;  // 2·expert + kind, those with rows
  for (int64_t i = 0; i < 2 * E; i++)
    if (!rows[size_t(i)].empty()) work.push_back(i);
  // Experts side by side, one thread each (a token's few experts, or a
  // prompt's many with a few rows each), rather than every thread on each
  // small matmul in turn; a lone expert takes all threads itself. Each row
  // is computed whole by one thread either way, so the output is the same.
  const int64_t items = int64_t(work.size());
  const auto run = [&](int64_t i) {
    const int64_t w = work[size_t(i)];
    run_expert(c, w / 2, L.experts[size_t(w / 2)], xn, rows[size_t(w)], w % 2 == 1, a.slots.data(), obs);
  };
  if (items >= 2 && num_threads() > 1 && !obs) {
    // An error inside the loop is rethrown after it (an exception may not leave an OpenMP region).
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < items; i++) {
      try {
        run(i);
      } catch (...) {
#pragma omp critical(moe_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  } else {
    for (int64_t i = 0; i < items; i++) run(i);
  }
  // Each token's experts summed best first, whatever order they ran in.
  for (int64_t t = 0; t < n; t++) {
    float* out = y + t * D;
    std::fill(out, out + D, 0.0f);
    for (int64_t k = 0; k < K; k++) {
      const float w = a.weights[size_t(t * K + k)];
      const float* s = a.slots.data() + (t * K + k) * D;
      for (int64_t i = 0; i < D; i++) out[i] += w * s[i];
    }
  }
  if (c.shared_ffn == 0) return;
  const int64_t S = c.shared_ffn;
  linear(*L.shared.gate, xn, n, a.gate.data());
  linear(*L.shared.up, xn, n, a.up.data());
  ffn_activation(c, a.gate.data(), a.up.data(), n, S);
  if (obs) (*obs)(LinearSite::FfnDown, -1, a.gate.data(), n, S);
  if (c.act_int8) fake_quant_int8_rows(a.gate.data(), n, S);
  linear(*L.shared.down, a.gate.data(), n, a.shared_y.data());
  for (int64_t t = 0; t < n; t++) {
    float g = 1.0f;  // DeepSeek's shared experts: ungated
    if (c.shared_gate()) {
      double z = 0;
      for (int64_t i = 0; i < D; i++) z += double(xn[t * D + i]) * L.shexp_gate[size_t(i)];
      g = float(1.0 / (1.0 + std::exp(-z)));
    }
    for (int64_t i = 0; i < D; i++) y[t * D + i] += g * a.shared_y[size_t(t * D + i)];
  }
}

InferenceState::InferenceState(const Model& m, int64_t n_ctx, int64_t n_batch, KvCacheSpec kv, KvPolicy policy)
    : m_(m),
      n_ctx_(n_ctx),
      n_batch_(std::max<int64_t>(1, std::min(n_batch, n_ctx))),
      kv_(kv),
      policy_(policy),
      slots_(policy.bounded() ? policy.capacity() : n_ctx),
      long_rope_(m.long_rope(n_ctx)) {
  if (n_ctx < 1 || n_ctx > (1 << 20)) fail("context size {} is out of range", n_ctx);
  check_kv_spec(kv_, m.cfg.head_dim);
  check_kv_policy(policy_, kv_, n_ctx_, n_batch_);
  check_policy_fits_model(policy_, m.cfg);
  const auto& c = m.cfg;
  const size_t B = size_t(n_batch_);
  a_.resize(c, B);
}

void InferenceState::eval(const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
  if (!policy_.bounded() && n_kept_ + n > slots_)
    fail("context overflow: {} tokens in the cache + {} new exceed the context of {}", n_kept_, n, n_ctx_);
  const int64_t V = m_.cfg.n_vocab;
  // snapkv's prompt: batches split so that the last holds the observation window.
  const bool snap = policy_.kind == KvPolicyKind::SnapKV && n_past_ == 0 && n > policy_.budget;
  const int64_t before_last = n - std::min(n, n_batch_);
  exit_step_ = exit_.active() && n == 1 && n_past_ > 0;
  for (int64_t i = 0, b = 0; i < n; i += b) {
    b = std::min(n_batch_, n - i);
    if (snap && i < before_last) b = i == 0 && before_last % n_batch_ ? before_last % n_batch_ : n_batch_;
    if (policy_.bounded()) b = std::min(b, std::max(policy_.step(), slots_ - n_kept_));
    if (policy_.kind == KvPolicyKind::SinkWindow) {
      const int64_t from = n_past_ - n_kept_ + policy_.sinks;  // the window's first position
      const int64_t to = sink_window_start(policy_, from, n_past_, b);
      if (to != from) evict_to(policy_.sinks + n_past_ - to);
    } else if (policy_.kind == KvPolicyKind::H2O && n_kept_ + b > slots_) {
      evict_to(slots_ - b);
    }
    const bool last = i + b == n;
    snap_rows_ = snap && last ? policy_.window : 0;
    float* out = nullptr;
    if (logits && all_logits) out = logits + i * V;
    if (logits && !all_logits && last) out = logits;
    eval_batch(tokens + i, b, out, all_logits);
  }
}

AttentionShape InferenceState::shape(int64_t l) const { return attention_shape(m_, l); }

void InferenceState::attention(int64_t l, int64_t n, const uint8_t* kc, const uint8_t* vc) {
  const AttentionShape shape = this->shape(l);
  const float scale = attention_scale();
  if (!kv_.kivi()) return lmpress::attention(shape, kv_, a_.q.data(), n, n_kept_, kc, vc, scale, a_.att.data());
  const void* k = kc;
  const void* v = vc;
  const KiviStage& st = stages_[size_t(l)];
  PagedQuery pq;
  pq.q = a_.q.data();
  pq.out = a_.att.data();
  pq.n = n;
  pq.pos0 = n_past_;
  pq.cache = {&k, &v, kv_.round_positions(n_ctx_), st.k(), st.v(), st.start(), a_.k.data(), a_.v.data(), st.size()};
  attention_paged(shape, kv_, &pq, 1, scale);
}

void InferenceState::reset() {
  n_past_ = n_kept_ = 0;
  for (auto& s : stages_) s.reset();
  for (auto& s : score_) std::fill(s.begin(), s.end(), 0.0f);
}

void InferenceState::compact(int64_t l, int64_t g, const std::vector<int64_t>& keep, uint8_t* kc, uint8_t* vc) {
  const int64_t kvd = m_.cfg.kv_dim(l), hd = m_.cfg.head_dim;
  const int64_t krow = kv_.row_bytes(kv_.k, kvd), vrow = kv_.row_bytes(kv_.v, kvd);
  // One head's part of a row, or the whole row.
  const int64_t koff = g < 0 ? 0 : kv_row_bytes(kv_.k, g * hd), klen = g < 0 ? krow : kv_row_bytes(kv_.k, hd);
  const int64_t voff = g < 0 ? 0 : kv_row_bytes(kv_.v, g * hd), vlen = g < 0 ? vrow : kv_row_bytes(kv_.v, hd);
  float* score = score_.empty() || g < 0 ? nullptr : score_[size_t(l)].data() + g * slots_;
  for (size_t i = 0; i < keep.size(); i++) {
    const int64_t from = keep[i], to = int64_t(i);  // ascending: to ≤ from, so rows move down in place
    if (from == to) continue;
    std::memmove(kc + to * krow + koff, kc + from * krow + koff, size_t(klen));
    std::memmove(vc + to * vrow + voff, vc + from * vrow + voff, size_t(vlen));
    if (score) score[to] = score[from];
  }
  if (score) std::fill(score + keep.size(), score + slots_, 0.0f);
}

void InferenceState::evict_to(int64_t keep) {
  if (keep >= n_kept_) return;
  std::vector<int64_t> kept;
  const bool sink_window = policy_.kind == KvPolicyKind::SinkWindow;
  if (sink_window) keep_sink_window(n_kept_, policy_.sinks, keep, kept);  // the same rows in every layer
  for (int64_t l = 0; l < m_.cfg.n_layers; l++) {
    if (k_cache_[size_t(l)].empty()) continue;  // a skipped layer
    uint8_t* kc = k_cache_[size_t(l)].data();
    uint8_t* vc = v_cache_[size_t(l)].data();
    if (sink_window) {
      compact(l, -1, kept, kc, vc);
      continue;
    }
    for (int64_t g = 0; g < m_.cfg.kv_heads(l); g++) {
      keep_heavy(score_[size_t(l)].data() + g * slots_, n_kept_, policy_.window, keep, kept);
      compact(l, g, kept, kc, vc);
    }
  }
  n_kept_ = keep;
  if (sink_window) place_sinks();
}

void InferenceState::place_sinks() {
  const auto& c = m_.cfg;
  const int64_t S = std::min(policy_.sinks, n_kept_);
  // The window holds positions n_past_ − (n_kept_ − S) .. n_past_ − 1; sink i goes S − i before its oldest.
  const int64_t shift = n_past_ - n_kept_;
  for (int64_t l = 0; l < c.n_layers; l++) {
    if (k_cache_[size_t(l)].empty()) continue;
    const int64_t kvd = c.kv_dim(l), krow = kv_.row_bytes(kv_.k, kvd);
    for (int64_t i = 0; i < S; i++)
      store_moved_key(m_, kv_, l, sink_k_[size_t(l)].data() + i * kvd, shift, long_rope_,
                      k_cache_[size_t(l)].data() + i * krow);
  }
}

void InferenceState::snapkv_compress(int64_t l, int64_t n, uint8_t* kc, uint8_t* vc) {
  const int64_t keys = n_kept_ + n, W = snap_rows_, G = m_.cfg.kv_heads(l);
  std::vector<float> acc(size_t(G * keys), 0.0f);
  attention_weights(shape(l), kv_, a_.q.data() + (n - W) * m_.cfg.q_dim(l), W, keys - W, kc, attention_scale(),
                    acc.data(), keys);
  std::vector<int64_t> kept;
  for (int64_t g = 0; g < G; g++) {
    keep_snapkv(acc.data() + g * keys, keys, W, policy_.budget, kept);
    compact(l, g, kept, kc, vc);
  }
}

void InferenceState::rewind(const Mark& m) {
  if (policy_.active()) fail("rewind: not with an eviction policy ({})", kv_policy_name(policy_));
  if (m.n_past == 0) return reset();  // a mark taken before the first eval has no stages yet
  if (m.n_past > n_past_ || m.stages.size() != stages_.size())
    fail("rewind: the mark at {} positions is not from this state's past ({} positions)", m.n_past, n_past_);
  n_past_ = n_kept_ = m.n_past;
  stages_ = m.stages;
}

void InferenceState::truncate(int64_t n) {
  n = std::max<int64_t>(0, n);
  if (n >= n_past_) return;
  if (n_kept_ != n_past_)
    fail("truncate: positions were evicted from the cache ({}), so position {} is no longer where it was",
         kv_policy_name(policy_), n);
  for (auto& s : stages_) s.truncate(n);
  n_past_ = n_kept_ = n;
}

void InferenceState::embed(const int32_t* tokens, int64_t n, float* x) const {
  for (int64_t t = 0; t < n; t++) embed_token(m_, tokens[t], x + t * m_.cfg.dim);
}

void InferenceState::eval_layer(int64_t layer, const LayerWeights& w, float* x, int64_t n, const LinearObserver* obs) {
  if (n > n_batch_) fail("eval_layer: {} tokens exceed the batch of {}", n, n_batch_);
  if (kv_.kivi()) fail("eval_layer: calibration runs with a row-type cache, not {}", kv_spec_name(kv_));
  if (layer_k_.empty()) {
    int64_t kv_dim = 0;
    for (int64_t l = 0; l < m_.cfg.n_layers; l++) kv_dim = std::max(kv_dim, m_.cfg.kv_dim(l));
    layer_k_.resize(size_t(n_batch_ * kv_.row_bytes(kv_.k, kv_dim)));
    layer_v_.resize(size_t(n_batch_ * kv_.row_bytes(kv_.v, kv_dim)));
  }
  if (policy_.active()) fail("eval_layer: calibration runs without an eviction policy");
  const int64_t saved = n_past_;
  n_past_ = n_kept_ = 0;
  block(layer, w, x, n, obs, layer_k_.data(), layer_v_.data());
  n_past_ = n_kept_ = saved;
}

uint64_t InferenceState::layer_buffer_bytes() const {
  return a_.floats() * sizeof(float) + layer_k_.size() + layer_v_.size();
}

uint64_t InferenceState::cache_bytes() const {
  uint64_t b = 0;
  for (int64_t l = 0; l < m_.cfg.n_layers; l++)
    if (skip_.empty() || !skip_[size_t(l)]) {
      const int64_t positions = kv_.round_positions(slots_), d = m_.cfg.kv_dim(l);
      b += uint64_t(kv_.k_bytes(positions, d) + kv_.v_bytes(positions, d));
      if (kv_.kivi()) b += KiviStage::reserved_bytes(kv_, d);
    }
  return b;
}

void InferenceState::block(int64_t l, const LayerWeights& L, float* x, int64_t n, const LinearObserver* obs,
                           uint8_t* kc, uint8_t* vc) {
  const auto& c = m_.cfg;
  const int64_t D = c.dim, qd = c.q_dim(l), kvd = c.kv_dim(l), F = c.ffn(l);
  pre_norm(c, L.attn_norm, x, n, a_.xn.data());
  if (obs) (*obs)(LinearSite::AttnIn, -1, a_.xn.data(), n, D);
  if (c.act_int8) fake_quant_int8_rows(a_.xn.data(), n, D);
  matmul(*L.wq, a_.xn.data(), n, a_.q.data());
  matmul(*L.wk, a_.xn.data(), n, a_.k.data());
  matmul(*L.wv, a_.xn.data(), n, a_.v.data());
  const bool sinks = policy_.kind == KvPolicyKind::SinkWindow;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; t++) {
    float* q = a_.q.data() + t * qd;
    float* k = a_.k.data() + t * kvd;
    float* v = a_.v.data() + t * kvd;
    const int64_t pos = n_past_ + t, slot = n_kept_ + t;
    const bool rows = !kv_.kivi();
    prepare_token(m_, kv_, l, q, k, v, pos, long_rope_, rows ? kc + slot * kv_.row_bytes(kv_.k, kvd) : nullptr,
                  rows ? vc + slot * kv_.row_bytes(kv_.v, kvd) : nullptr);
    if (sinks && pos < policy_.sinks) keep_unrotated_key(m_, kv_, l, k, sink_k_[size_t(l)].data() + pos * kvd);
  }
  if (kv_.kivi()) {
    const int64_t G = kv_.group, kgroup = kv_.key_group_bytes(kvd), vrow = kv_.row_bytes(kv_.v, kvd);
    const auto key_group = [&](int64_t pos) { return kc + pos / G * kgroup; };
    const auto value_row = [&](int64_t pos) { return vc + pos * vrow; };
    stages_[size_t(l)].quantize(a_.k.data(), a_.v.data(), n, key_group, value_row);
  }
  attention(l, n, kc, vc);
  if (kv_.kivi()) stages_[size_t(l)].commit(a_.k.data(), a_.v.data(), n);
  if (policy_.kind == KvPolicyKind::H2O)
    attention_weights(shape(l), kv_, a_.q.data(), n, n_kept_, kc, attention_scale(), score_[size_t(l)].data(), slots_);
  if (snap_rows_) snapkv_compress(l, n, kc, vc);
  unrotate_attention(m_, kv_, l, a_.att.data(), n);
  if (obs) (*obs)(LinearSite::AttnOut, -1, a_.att.data(), n, qd);
  if (c.act_int8) fake_quant_int8_rows(a_.att.data(), n, qd);
  matmul(*L.wo, a_.att.data(), n, a_.xn.data());
  join_residual(c, x, a_.xn.data(), L.bo, L.attn_post_norm, n);

  pre_norm(c, L.ffn_norm, x, n, a_.xn.data());
  if (obs) (*obs)(LinearSite::FfnIn, -1, a_.xn.data(), n, D);
  if (c.act_int8) fake_quant_int8_rows(a_.xn.data(), n, D);
  if (c.layer_moe(l)) {
    const std::vector<uint8_t> batched(size_t(n), n >= kMatmulBatchMin);
    moe_feed_forward(m_, l, a_.xn.data(), n, batched.data(), matmul, a_, a_.moe_y.data(), obs);
    return join_residual(c, x, a_.moe_y.data(), L.b_down, L.ffn_post_norm, n);
  }
  matmul(*L.w_gate, a_.xn.data(), n, a_.gate.data());
  matmul(*L.w_up, a_.xn.data(), n, a_.up.data());
  ffn_activation(c, a_.gate.data(), a_.up.data(), n, F);
  if (c.down_rotation) c.down_rotation->apply_rows(a_.gate.data(), n);
  if (obs) (*obs)(LinearSite::FfnDown, -1, a_.gate.data(), n, F);
  if (c.act_int8) fake_quant_int8_rows(a_.gate.data(), n, F);
  matmul(*L.w_down, a_.gate.data(), n, a_.xn.data());
  join_residual(c, x, a_.xn.data(), L.b_down, L.ffn_post_norm, n);
}

void InferenceState::skip_layers(std::vector<bool> skip) {
  if (!skip.empty() && int64_t(skip.size()) != m_.cfg.n_layers)
    fail("skip_layers: {} flags for a model of {} blocks", skip.size(), m_.cfg.n_layers);
  if (!k_cache_.empty()) fail("skip_layers: set before the first eval");
  if (!skip.empty() && std::find(skip.begin(), skip.end(), false) == skip.end())
    fail("skipping every block of the model leaves nothing to compute");
  skip_ = std::move(skip);
}

void InferenceState::set_early_exit(const EarlyExit& e) {
  if (e.active()) {
    check_early_exit(e, m_.cfg);
    if (kv_.kivi()) fail("--early-exit with a KIVI cache ({}): use another --cache-type", kv_spec_name(kv_));
    if (policy_.active())
      fail("--early-exit with --kv-policy {}: an evicting cache is not supported with early exit",
           kv_policy_name(policy_));
    if (e.measure == ExitMeasure::Softmax) exit_logits_.resize(size_t(m_.cfg.n_vocab));
  }
  exit_ = e;
}

bool InferenceState::try_exit(float* logits, const float* before) {
  const auto& c = m_.cfg;
  const int64_t D = c.dim;
  float* x = a_.x.data();
  float* xn = a_.xn.data();
  exit_stats_.steps++;
  bool exit;
  if (exit_.measure == ExitMeasure::Softmax) {
    float* out = logits ? logits : exit_logits_.data();
    head(0, 1, out);
    exit = softmax_margin(out, c.n_vocab) >= exit_.threshold;
  } else {
    exit = cosine_similarity(x, before, D) >= exit_.threshold;
    if (exit && logits) head(0, 1, logits);
  }
  if (!exit) return false;
  exit_stats_.exited++;
  // The blocks after the exit keep a K/V row for this position: their
  // projections of the exited state, normed by each block's attention norm.
  for (int64_t l = exit_.layer + 1; l < c.n_layers; l++) {
    if (!skip_.empty() && skip_[size_t(l)]) continue;
    const LayerWeights& L = m_.layers[size_t(l)];
    const int64_t kvd = c.kv_dim(l);
    pre_norm(c, L.attn_norm, x, 1, xn);
    if (c.act_int8) fake_quant_int8_rows(xn, 1, D);
    matmul(*L.wk, xn, 1, a_.k.data());
    matmul(*L.wv, xn, 1, a_.v.data());
    // prepare_token rotates a query too: q holds this step's last one, unused.
    prepare_token(m_, kv_, l, a_.q.data(), a_.k.data(), a_.v.data(), n_past_, long_rope_,
                  k_cache_[size_t(l)].data() + n_kept_ * kv_.row_bytes(kv_.k, kvd),
                  v_cache_[size_t(l)].data() + n_kept_ * kv_.row_bytes(kv_.v, kvd));
  }
  return true;
}

void InferenceState::eval_batch(const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
  const auto& c = m_.cfg;
  const int64_t D = c.dim;
  embed(tokens, n, a_.x.data());
  auto skipped = [&](int64_t l) { return !skip_.empty() && skip_[size_t(l)]; };
  if (k_cache_.empty())
    for (int64_t l = 0; l < c.n_layers; l++) {
      const bool on = !skipped(l);
      const int64_t positions = kv_.round_positions(slots_);
      k_cache_.emplace_back(on ? size_t(kv_.k_bytes(positions, c.kv_dim(l))) : 0);
      v_cache_.emplace_back(on ? size_t(kv_.v_bytes(positions, c.kv_dim(l))) : 0);
      if (kv_.kivi()) stages_.emplace_back(kv_, c.kv_dim(l));
      if (policy_.kind == KvPolicyKind::H2O) score_.emplace_back(on ? size_t(c.kv_heads(l) * slots_) : 0, 0.0f);
      if (policy_.kind == KvPolicyKind::SinkWindow) sink_k_.emplace_back(size_t(policy_.sinks * c.kv_dim(l)));
    }
  bool exited = false;
  for (int64_t l = 0; l < c.n_layers && !exited; l++) {
    const bool exit_here = exit_step_ && l == exit_.layer;
    if (exit_here && exit_.measure == ExitMeasure::State) exit_before_.assign(a_.x.begin(), a_.x.begin() + D);
    if (!skipped(l))
      block(l, m_.layers[size_t(l)], a_.x.data(), n, nullptr, k_cache_[size_t(l)].data(), v_cache_[size_t(l)].data());
    if (exit_here) exited = try_exit(logits, exit_before_.data());
  }
  n_past_ += n;
  n_kept_ = snap_rows_ ? policy_.budget : n_kept_ + n;
  snap_rows_ = 0;
  if (!logits || exited) return;
  const int64_t first = all_logits ? 0 : n - 1;
  head(first, n - first, logits);
}

void InferenceState::head(int64_t first, int64_t rows, float* logits) {
  const auto& c = m_.cfg;
  const int64_t D = c.dim;
  for (int64_t t = 0; t < rows; t++)
    rmsnorm(a_.x.data() + (first + t) * D, m_.output_norm.data(), D, c.rms_eps, a_.xn.data() + t * D);
  matmul(*m_.output, a_.xn.data(), rows, logits);
  finish_logits(c, logits, rows);
}

}  // namespace lmpress
