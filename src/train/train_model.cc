#include "train/train_model.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "kernels/to_f32.h"

namespace lmpress::train {

void check_trainable(const ModelConfig& c, const std::string& who) {
  auto refuse = [&](const char* what) {
    fail("{}: training does not support {} yet (it trains Llama, Mistral without a window and Qwen2 models; "
         "architecture {})",
         who, what, c.arch);
  };
  if (c.moe()) refuse("mixtures of experts");
  if (c.qk_norm || c.qk_norm_full) refuse("q/k norms");
  if (c.post_norms || !c.pre_norms) refuse("post-norms");
  if (c.attn_softcap > 0 || c.final_softcap > 0) refuse("soft-capping");
  if (c.embed_scale != 1.0f || c.residual_scale != 1.0f || c.logit_scale != 1.0f) refuse("embedding, residual or logit scales");
  if (c.ffn_act != FfnAct::SiLU) refuse("GeGLU");
  if (c.sliding_window > 0) refuse("sliding-window attention");
  if (!c.layer_heads.empty() || !c.layer_kv_heads.empty() || !c.layer_ffn.empty()) refuse("layers of different sizes");
  if (c.rope_mscale != 1.0f) refuse("LongRoPE's attention factor");
  if (c.act_int8) refuse("int8 activations (W8A8)");
  if (c.n_heads % c.n_kv_heads != 0) refuse("query heads that are not a multiple of the key/value heads");
}

template <class T>
size_t TrainModel<T>::add(const std::string& name, int64_t rows, int64_t cols) {
  Param p{name, rows, cols, params_.empty() ? 0 : params_.back().offset + size_t(params_.back().size())};
  params_.push_back(p);
  return params_.size() - 1;
}

template <class T>
const Param* TrainModel<T>::find(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

template <class T>
TrainModel<T>::TrainModel(const Model& m) : c_(m.cfg) {
  check_trainable(c_, m.path);
  const int64_t D = c_.dim, F = c_.ffn_dim, qd = c_.q_dim(), kvd = c_.kv_dim();
  embd_ = add("token_embd.weight", c_.n_vocab, D);
  for (int64_t l = 0; l < c_.n_layers; l++) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerIdx L{};
    L.attn_norm = add(p + "attn_norm.weight", 1, D);
    L.wq = add(p + "attn_q.weight", qd, D);
    L.wk = add(p + "attn_k.weight", kvd, D);
    L.wv = add(p + "attn_v.weight", kvd, D);
    L.bq = L.bk = L.bv = kNone;
    if (m.layers[size_t(l)].bo.size() || m.layers[size_t(l)].b_down.size())
      fail("{}: training does not support output-projection biases yet", m.path);
    if (c_.qkv_bias) {
      L.bq = add(p + "attn_q.bias", 1, qd);
      L.bk = add(p + "attn_k.bias", 1, kvd);
      L.bv = add(p + "attn_v.bias", 1, kvd);
    }
    L.wo = add(p + "attn_output.weight", D, qd);
    L.ffn_norm = add(p + "ffn_norm.weight", 1, D);
    L.gate = add(p + "ffn_gate.weight", F, D);
    L.up = add(p + "ffn_up.weight", F, D);
    L.down = add(p + "ffn_down.weight", D, F);
    layers_.push_back(L);
    rope_.push_back(c_.uses_rope(l) ? m.rope_freqs(l, false) : std::vector<float>{});
  }
  out_norm_ = add("output_norm.weight", 1, D);
  out_ = c_.tied_embeddings ? embd_ : add("output.weight", c_.n_vocab, D);
  w.resize(params_.back().offset + size_t(params_.back().size()));
  grad.assign(w.size(), T(0));
  for (const auto& p : params_) {
    const Tensor& t = m.tensor(p.name);
    if (t.numel() != p.size()) fail("{}: tensor {} has shape {}, training expects {}x{}", m.path, p.name, t.shape_str(), p.rows, p.cols);
    const std::vector<float> f = to_f32(t);
    std::copy(f.begin(), f.end(), w.begin() + std::ptrdiff_t(p.offset));
  }
}

template <class T>
void TrainModel<T>::store(Model& m) const {
  for (const auto& p : params_) {
    if (p.name == "output.weight" && c_.tied_embeddings) continue;
    std::vector<float> f(size_t(p.size()));
    for (size_t i = 0; i < f.size(); i++) f[i] = float(w[p.offset + i]);
    m.set_f32(p.name, std::move(f));
  }
  m.bind();
}

template <class T>
void TrainModel<T>::resize(int64_t B, int64_t n) {
  if (B == B_ && n == n_) return;
  B_ = B, n_ = n;
  const size_t N = size_t(B * n), D = size_t(c_.dim), F = size_t(c_.ffn_dim), qd = size_t(c_.q_dim()),
               kvd = size_t(c_.kv_dim());
  xs_.assign(size_t(c_.n_layers + 1), std::vector<T>(N * D));
  for (auto* v : {&xn1_, &x1_, &xn2_, &dxn_, &dx1_, &hn_}) v->assign(N * D, T(0));
  for (auto* v : {&rstd1_, &rstd2_, &rstdf_}) v->assign(N, T(0));
  for (auto* v : {&q_, &att_, &dq_, &datt_}) v->assign(N * qd, T(0));
  for (auto* v : {&k_, &v_, &dk_, &dv_}) v->assign(N * kvd, T(0));
  for (auto* v : {&g_, &u_, &a_, &dg_, &du_, &da_}) v->assign(N * F, T(0));
  P_.assign(size_t(B * c_.n_heads * n * n), T(0));
}

template <class T>
void TrainModel<T>::embed(const int32_t* tokens, T* x) {
  const int64_t N = B_ * n_, D = c_.dim;
  for (int64_t r = 0; r < N; r++) {
    if (tokens[r] < 0 || tokens[r] >= c_.n_vocab) fail("token id {} is outside the vocabulary of {}", tokens[r], c_.n_vocab);
    std::memcpy(x + r * D, W(embd_) + int64_t(tokens[r]) * D, sizeof(T) * size_t(D));
  }
}

template <class T>
void TrainModel<T>::block_forward(int64_t l, const T* x_in, T* x_out) {
  const LayerIdx& L = layers_[size_t(l)];
  const int64_t N = B_ * n_, D = c_.dim, F = c_.ffn_dim, H = c_.n_heads, KV = c_.n_kv_heads, hd = c_.head_dim;
  const int64_t qd = H * hd, kvd = KV * hd;
  rmsnorm_forward(x_in, W(L.attn_norm), N, D, c_.rms_eps, xn1_.data(), rstd1_.data());
  linear_forward(W(L.wq), Wopt(L.bq), xn1_.data(), N, D, qd, q_.data());
  linear_forward(W(L.wk), Wopt(L.bk), xn1_.data(), N, D, kvd, k_.data());
  linear_forward(W(L.wv), Wopt(L.bv), xn1_.data(), N, D, kvd, v_.data());
  const auto& freqs = rope_[size_t(l)];
  if (!freqs.empty()) {
#pragma omp parallel for
    for (int64_t r = 0; r < N; r++) {
      rope_rotate(q_.data() + r * qd, H, hd, r % n_, freqs, c_.rope_layout, false);
      rope_rotate(k_.data() + r * kvd, KV, hd, r % n_, freqs, c_.rope_layout, false);
    }
  }
  const double scale = c_.attention_scale();
#pragma omp parallel for schedule(dynamic)
  for (int64_t bg = 0; bg < B_ * KV; bg++) {
    const int64_t b = bg / KV, g = bg % KV, o = b * n_;
    attention_forward(q_.data() + o * qd, k_.data() + o * kvd, v_.data() + o * kvd, n_, H, KV, hd, g, scale,
                      P_.data() + b * H * n_ * n_, att_.data() + o * qd);
  }
  linear_forward(W(L.wo), static_cast<const T*>(nullptr), att_.data(), N, qd, D, x1_.data());
  for (int64_t i = 0; i < N * D; i++) x1_[size_t(i)] += x_in[i];
  rmsnorm_forward(x1_.data(), W(L.ffn_norm), N, D, c_.rms_eps, xn2_.data(), rstd2_.data());
  linear_forward(W(L.gate), static_cast<const T*>(nullptr), xn2_.data(), N, D, F, g_.data());
  linear_forward(W(L.up), static_cast<const T*>(nullptr), xn2_.data(), N, D, F, u_.data());
  swiglu_forward(g_.data(), u_.data(), N * F, a_.data());
  linear_forward(W(L.down), static_cast<const T*>(nullptr), a_.data(), N, F, D, x_out);
  for (int64_t i = 0; i < N * D; i++) x_out[i] += x1_[size_t(i)];
}

template <class T>
void TrainModel<T>::block_backward(int64_t l, const T* x_in, T* dx) {
  const LayerIdx& L = layers_[size_t(l)];
  const int64_t N = B_ * n_, D = c_.dim, F = c_.ffn_dim, H = c_.n_heads, KV = c_.n_kv_heads, hd = c_.head_dim;
  const int64_t qd = H * hd, kvd = KV * hd;
  // Feed-forward: x_out = x1 + down(swiglu(gate(xn2), up(xn2))).
  linear_backward(W(L.down), a_.data(), dx, N, F, D, G(L.down), static_cast<T*>(nullptr), da_.data(), false);
  swiglu_backward(g_.data(), u_.data(), da_.data(), N * F, dg_.data(), du_.data());
  linear_backward(W(L.gate), xn2_.data(), dg_.data(), N, D, F, G(L.gate), static_cast<T*>(nullptr), dxn_.data(), false);
  linear_backward(W(L.up), xn2_.data(), du_.data(), N, D, F, G(L.up), static_cast<T*>(nullptr), dxn_.data(), true);
  std::copy(dx, dx + N * D, dx1_.begin());
  rmsnorm_backward(x1_.data(), W(L.ffn_norm), rstd2_.data(), dxn_.data(), N, D, dx1_.data(), G(L.ffn_norm));
  // Attention: x1 = x_in + wo(attention(rope(q), rope(k), v)).
  linear_backward(W(L.wo), att_.data(), dx1_.data(), N, qd, D, G(L.wo), static_cast<T*>(nullptr), datt_.data(), false);
  const double scale = c_.attention_scale();
#pragma omp parallel for schedule(dynamic)
  for (int64_t bg = 0; bg < B_ * KV; bg++) {
    const int64_t b = bg / KV, g = bg % KV, o = b * n_;
    attention_backward(q_.data() + o * qd, k_.data() + o * kvd, v_.data() + o * kvd, P_.data() + b * H * n_ * n_,
                       datt_.data() + o * qd, n_, H, KV, hd, g, scale, dq_.data() + o * qd, dk_.data() + o * kvd,
                       dv_.data() + o * kvd);
  }
  const auto& freqs = rope_[size_t(l)];
  if (!freqs.empty()) {
#pragma omp parallel for
    for (int64_t r = 0; r < N; r++) {
      rope_rotate(dq_.data() + r * qd, H, hd, r % n_, freqs, c_.rope_layout, true);
      rope_rotate(dk_.data() + r * kvd, KV, hd, r % n_, freqs, c_.rope_layout, true);
    }
  }
  linear_backward(W(L.wq), xn1_.data(), dq_.data(), N, D, qd, G(L.wq), Gopt(L.bq), dxn_.data(), false);
  linear_backward(W(L.wk), xn1_.data(), dk_.data(), N, D, kvd, G(L.wk), Gopt(L.bk), dxn_.data(), true);
  linear_backward(W(L.wv), xn1_.data(), dv_.data(), N, D, kvd, G(L.wv), Gopt(L.bv), dxn_.data(), true);
  std::copy(dx1_.begin(), dx1_.begin() + N * D, dx);
  rmsnorm_backward(x_in, W(L.attn_norm), rstd1_.data(), dxn_.data(), N, D, dx, G(L.attn_norm));
}

template <class T>
void TrainModel<T>::forward_blocks(const int32_t* tokens) {
  embed(tokens, xs_[0].data());
  for (int64_t l = 0; l < c_.n_layers; l++) block_forward(l, xs_[size_t(l)].data(), xs_[size_t(l + 1)].data());
  rmsnorm_forward(xs_.back().data(), W(out_norm_), B_ * n_, c_.dim, c_.rms_eps, hn_.data(), rstdf_.data());
}

namespace {

// Rows of logits per chunk: about 4 Mi values, at least one row.
int64_t chunk_rows(int64_t vocab, int64_t n) { return std::clamp<int64_t>((int64_t(1) << 22) / vocab, 1, n); }

}  // namespace

template <class T>
double TrainModel<T>::step(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t n, const Loss& loss,
                           const TeacherFn& teacher, double scale, double* ce) {
  if (loss.needs_teacher() && !teacher) fail("a distillation loss needs a teacher");
  resize(B, n);
  forward_blocks(tokens);
  const int64_t D = c_.dim, V = c_.n_vocab, C = chunk_rows(V, n);
  chunk_.resize(size_t(C * V));
  if (loss.needs_teacher()) teacher_.resize(size_t(n * V));
  std::vector<T>& dh = dxn_;  // ∂/∂hn
  double total = 0;
  for (int64_t b = 0; b < B; b++) {
    if (loss.needs_teacher()) teacher(b, teacher_.data());
    for (int64_t r0 = 0; r0 < n; r0 += C) {
      const int64_t rows = std::min(C, n - r0), r = b * n + r0;
      const T* h = hn_.data() + r * D;
      linear_forward(W(out_), static_cast<const T*>(nullptr), h, rows, D, V, chunk_.data());
      total += loss_backward(loss, chunk_.data(), targets + r, loss.needs_teacher() ? teacher_.data() + r0 * V : nullptr,
                             rows, V, scale, ce);
      linear_backward(W(out_), h, chunk_.data(), rows, D, V, G(out_), static_cast<T*>(nullptr), dh.data() + r * D, false);
    }
  }
  // dx of the last block's output: the final norm's backward.
  std::vector<T>& dx = xs_.back();  // its forward values are no longer needed once hn's gradient is through
  std::vector<T> x_last(dx);
  std::fill(dx.begin(), dx.end(), T(0));
  rmsnorm_backward(x_last.data(), W(out_norm_), rstdf_.data(), dh.data(), B * n, D, dx.data(), G(out_norm_));
  for (int64_t l = c_.n_layers - 1; l >= 0; l--) {
    T* x_out = l + 1 < c_.n_layers ? xs_[size_t(l + 1)].data() : x_last.data();
    block_forward(l, xs_[size_t(l)].data(), x_out);  // recompute (x_out is a scratch copy here)
    block_backward(l, xs_[size_t(l)].data(), dx.data());
  }
  // The embedding rows the tokens read.
  T* dE = G(embd_);
  for (int64_t r = 0; r < B * n; r++) {
    const T* g = dx.data() + r * D;
    T* e = dE + int64_t(tokens[r]) * D;
    for (int64_t j = 0; j < D; j++) e[j] += g[j];
  }
  return total;
}

template <class T>
double TrainModel<T>::eval_ce(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t n) {
  resize(B, n);
  forward_blocks(tokens);
  const int64_t D = c_.dim, V = c_.n_vocab, C = chunk_rows(V, B * n);
  chunk_.resize(size_t(C * V));
  double ce = 0;
  for (int64_t r = 0; r < B * n; r += C) {
    const int64_t rows = std::min(C, B * n - r);
    linear_forward(W(out_), static_cast<const T*>(nullptr), hn_.data() + r * D, rows, D, V, chunk_.data());
    loss_backward(Loss{}, chunk_.data(), targets + r, nullptr, rows, V, 0.0, &ce);
  }
  return ce;
}

template <class T>
void TrainModel<T>::logits(const int32_t* tokens, int64_t B, int64_t n, T* out) {
  resize(B, n);
  forward_blocks(tokens);
  linear_forward(W(out_), static_cast<const T*>(nullptr), hn_.data(), B * n, c_.dim, c_.n_vocab, out);
}

template class TrainModel<float>;
template class TrainModel<double>;

}  // namespace lmpress::train
