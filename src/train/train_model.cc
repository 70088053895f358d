#include "train/train_model.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <set>
#include <type_traits>

#include "core/error.h"
#include "core/parse.h"
#include "core/tensor_names.h"
#include "kernels/blocks.h"
#include "kernels/matmul.h"
#include "kernels/to_f32.h"
#include "quant/quantize.h"

namespace lmpress::train {

namespace {

const char* const kLoraRoles[] = {"q", "k", "v", "o", "gate", "up", "down"};

}  // namespace

LoraSpec parse_lora(const std::string& s) {
  LoraSpec o;
  bool in_targets = false, alpha_set = false;
  std::set<std::string> targets;
  auto add_target = [&](const std::string& t) {
    if (t == "qkvo") return void(targets.insert({"q", "k", "v", "o"}));
    if (t == "mlp") return void(targets.insert({"gate", "up", "down"}));
    if (t == "all") return void(targets.insert(std::begin(kLoraRoles), std::end(kLoraRoles)));
    if (std::find(std::begin(kLoraRoles), std::end(kLoraRoles), t) == std::end(kLoraRoles))
      fail("--lora {}: target '{}' is none of q, k, v, o, gate, up, down, qkvo, mlp, all", s, t);
    targets.insert(t);
  };
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(',', start), s.size());
    const std::string item = s.substr(start, end - start);
    start = end + 1;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      if (!in_targets) fail("--lora {}: expected r=N[,alpha=A][,targets=...], got '{}'", s, item);
      add_target(item);
      continue;
    }
    const std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    in_targets = key == "targets";
    if (in_targets) {
      add_target(val);
      continue;
    }
    const auto parsed = parse_double(val);
    if (!parsed) fail("--lora {}: {} is not a number ('{}')", s, key, val);
    const double x = *parsed;
    if (key == "r") {
      if (x < 1 || x != std::floor(x) || x > 65536) fail("--lora {}: r must be a whole number of at least 1", s);
      o.rank = int64_t(x);
    } else if (key == "alpha") {
      if (!(x > 0) || !std::isfinite(x)) fail("--lora {}: alpha must be positive", s);
      o.alpha = x, alpha_set = true;
    } else {
      fail("--lora {}: unknown key '{}' (r, alpha, targets)", s, key);
    }
  }
  if (o.rank == 0) fail("--lora {}: r=N (the adapters' rank) is required", s);
  if (!alpha_set) o.alpha = 2.0 * double(o.rank);
  if (targets.empty()) targets.insert(std::begin(kLoraRoles), std::end(kLoraRoles));
  for (const char* r : kLoraRoles)
    if (targets.count(r)) o.targets.push_back(r);
  return o;
}

void check_trainable(const ModelConfig& c, const std::string& who) {
  auto refuse = [&](const char* what) {
    fail("{}: training does not support {} yet (it trains Llama, Mistral without a window, Qwen2 and Qwen3 "
         "models; architecture {})",
         who, what, c.arch);
  };
  if (c.expert_softmax_chosen) refuse("gpt-oss's routing");
  if (c.post_norms || !c.pre_norms) refuse("post-norms");
  if (c.qk_norm_full) refuse("q/k norms over all heads (OLMo 2, OLMoE)");
  if (c.attn_softcap > 0 || c.final_softcap > 0) refuse("soft-capping");
  if (c.embed_scale != 1.0f || c.residual_scale != 1.0f || c.logit_scale != 1.0f) refuse("embedding, residual or logit scales");
  if (c.ffn_act != FfnAct::SiLU) refuse(c.ffn_act == FfnAct::GeluTanh ? "GeGLU" : "gpt-oss's clamped SwiGLU");
  if (c.sliding_window > 0) refuse("sliding-window attention");
  if (!c.layer_heads.empty() || !c.layer_kv_heads.empty() || !c.layer_ffn.empty()) refuse("layers of different sizes");
  if (c.rope_mscale != 1.0f) refuse(c.rope_scaling == "yarn" ? "YaRN's attention factor" : "LongRoPE's attention factor");
  if (c.act_int8) refuse("int8 activations (W8A8)");
  if (c.down_rotation) refuse("an online rotation before ffn_down (R4)");
  if (c.n_heads % c.n_kv_heads != 0) refuse("query heads that are not a multiple of the key/value heads");
}

template <class T>
size_t TrainModel<T>::add(const std::string& name, int64_t rows, int64_t cols, bool trainable) {
  Param p{name, rows, cols, params_.empty() ? 0 : params_.back().offset + size_t(params_.back().size()), trainable};
  params_.push_back(p);
  return params_.size() - 1;
}

template <class T>
typename TrainModel<T>::Lin TrainModel<T>::linear(const Model& m, const std::string& name, int64_t in, int64_t out,
                                                  int64_t layer, const std::string& role) {
  Lin L;
  L.in = in, L.out = out, L.name = name;
  if (lora_.rank == 0) {
    L.param = add(name, out, in);
    return L;
  }
  L.frozen = &m.tensor(name);
  if (L.frozen->rows() != out || L.frozen->cols() != in)
    fail("{}: tensor {} has shape {}, training expects {}x{}", m.path, name, L.frozen->shape_str(), out, in);
  if (layer >= 0 && std::find(lora_.targets.begin(), lora_.targets.end(), role) != lora_.targets.end()) {
    if (lora_.rank > std::min(in, out))
      fail("--lora r={}: larger than {} ({}x{}); the rank is at most the smaller side", lora_.rank, name, out, in);
    L.a = add(name + ".lora_a", lora_.rank, in);
    L.b = add(name + ".lora_b", out, lora_.rank);
  }
  return L;
}

template <class T>
TrainModel<T>::TrainModel(const Model& m, const LoraSpec& lora) : c_(m.cfg), lora_(lora) {
  check_trainable(c_, m.path);
  const bool full = lora_.rank == 0;
  const int64_t D = c_.dim, F = c_.ffn_dim, qd = c_.q_dim(), kvd = c_.kv_dim();
  if (full)
    embd_ = add("token_embd.weight", c_.n_vocab, D);
  else
    embd_frozen_ = &m.tensor("token_embd.weight");
  for (int64_t l = 0; l < c_.n_layers; l++) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerIdx L{};
    L.attn_norm = add(p + "attn_norm.weight", 1, D, full);
    L.q = linear(m, p + "attn_q.weight", D, qd, l, "q");
    L.k = linear(m, p + "attn_k.weight", D, kvd, l, "k");
    L.v = linear(m, p + "attn_v.weight", D, kvd, l, "v");
    L.bq = L.bk = L.bv = kNone;
    if (m.layers[size_t(l)].bo.size() || m.layers[size_t(l)].b_down.size())
      fail("{}: training does not support output-projection biases yet", m.path);
    if (c_.qkv_bias) {
      L.bq = add(p + "attn_q.bias", 1, qd, full);
      L.bk = add(p + "attn_k.bias", 1, kvd, full);
      L.bv = add(p + "attn_v.bias", 1, kvd, full);
    }
    L.q_norm = L.k_norm = kNone;
    if (c_.qk_norm) {  // Qwen3: RMSNorm over each head of q and k
      L.q_norm = add(p + "attn_q_norm.weight", 1, c_.head_dim, full);
      L.k_norm = add(p + "attn_k_norm.weight", 1, c_.head_dim, full);
    }
    L.o = linear(m, p + "attn_output.weight", qd, D, l, "o");
    L.ffn_norm = add(p + "ffn_norm.weight", 1, D, full);
    if (c_.layer_moe(l)) {
      // The router and the routed experts take no adapters (llama.cpp's adapters address whole stacks).
      L.moe = true;
      L.router = linear(m, p + "ffn_gate_inp.weight", D, c_.n_experts, l, "router");
      const int64_t FE = c_.expert_ffn;
      for (int64_t e = 0; e < c_.n_experts; e++) {
        L.eg.push_back(linear(m, expert_tensor_name(p + "ffn_gate_exps.weight", e), D, FE, l, "expert"));
        L.eu.push_back(linear(m, expert_tensor_name(p + "ffn_up_exps.weight", e), D, FE, l, "expert"));
        L.ed.push_back(linear(m, expert_tensor_name(p + "ffn_down_exps.weight", e), FE, D, l, "expert"));
      }
      if (c_.shared_ffn > 0) {
        const int64_t FS = c_.shared_ffn;
        L.sg = linear(m, p + "ffn_gate_shexp.weight", D, FS, l, "gate");
        L.su = linear(m, p + "ffn_up_shexp.weight", D, FS, l, "up");
        L.sd = linear(m, p + "ffn_down_shexp.weight", FS, D, l, "down");
        if (c_.shared_gate()) L.shexp_gate = add(p + "ffn_gate_inp_shexp.weight", 1, D, full);
      }
    } else {
      L.gate = linear(m, p + "ffn_gate.weight", D, F, l, "gate");
      L.up = linear(m, p + "ffn_up.weight", D, F, l, "up");
      L.down = linear(m, p + "ffn_down.weight", F, D, l, "down");
    }
    layers_.push_back(L);
    rope_.push_back(c_.uses_rope(l) ? m.rope_freqs(l, false) : std::vector<float>{});
  }
  out_norm_ = add("output_norm.weight", 1, D, full);
  if (full && c_.tied_embeddings)
    head_.param = embd_, head_.in = D, head_.out = c_.n_vocab;
  else
    head_ = linear(m, c_.tied_embeddings ? "token_embd.weight" : "output.weight", D, c_.n_vocab, -1, "");
  w.resize(params_.back().offset + size_t(params_.back().size()));
  grad.assign(w.size(), T(0));
  std::mt19937_64 rng(lora_.seed);
  for (const auto& p : params_) {
    T* dst = w.data() + p.offset;
    if (p.name.ends_with(".lora_a")) {
      std::uniform_real_distribution<double> u(-1.0 / std::sqrt(double(p.cols)), 1.0 / std::sqrt(double(p.cols)));
      for (int64_t i = 0; i < p.size(); i++) dst[i] = T(u(rng));
      continue;
    }
    if (p.name.ends_with(".lora_b")) continue;  // zero
    const Tensor& t = m.tensor(p.name);
    if (t.numel() != p.size())
      fail("{}: tensor {} has shape {}, training expects {}x{}", m.path, p.name, t.shape_str(), p.rows, p.cols);
    const std::vector<float> f = to_f32(t);
    std::copy(f.begin(), f.end(), dst);
  }
}

template <class T>
std::vector<uint8_t> TrainModel<T>::frozen_mask() const {
  std::vector<uint8_t> f(w.size(), 0);
  for (const auto& p : params_)
    if (!p.trainable) std::fill(f.begin() + std::ptrdiff_t(p.offset), f.begin() + std::ptrdiff_t(p.offset) + p.size(), 1);
  return f;
}

template <class T>
LoraAdapter TrainModel<T>::adapter() const {
  LoraAdapter a;
  a.rank = lora_.rank, a.alpha = lora_.alpha;
  for (const LayerIdx& L : layers_) {
    for (const Lin* lin : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.sg, &L.su, &L.sd}) {
      if (lin->a == kNone) continue;
      LoraAdapter::Pair p;
      p.weight = lin->name, p.in = lin->in, p.out = lin->out;
      p.a.assign(W(lin->a), W(lin->a) + params_[lin->a].size());
      p.b.assign(W(lin->b), W(lin->b) + params_[lin->b].size());
      a.pairs.push_back(std::move(p));
    }
  }
  return a;
}

template <class T>
void TrainModel<T>::store(Model& m) const {
  if (lora_.rank > 0) return merge_lora(m, adapter(), 1.0);
  for (const auto& p : params_) {
    if (!p.model_weight) continue;
    std::vector<float> f(size_t(p.size()));
    for (size_t i = 0; i < f.size(); i++) f[i] = float(w[p.offset + i]);
    m.set_f32(p.name, std::move(f));
  }
  m.bind();
}

namespace {

// A frozen weight's values as T, its rows dequantized side by side.
template <class T>
void dequantize_rows(const Tensor& t, std::vector<T>& out) {
  const int64_t rows = t.rows(), cols = t.cols();
  out.resize(size_t(rows * cols));
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for
    for (int64_t r = 0; r < rows; r++) {
      if constexpr (std::is_same_v<T, float>) {
        to_f32(t, r * cols, cols, out.data() + r * cols);
      } else {
        to_f32(t, r * cols, cols, row.data());
        std::copy(row.begin(), row.end(), out.begin() + r * cols);
      }
    }
  }
}

// The frozen weight times x: the inference kernels for float (the quantized
// types' int8 activations included, as inference computes them), the
// dequantized weight for the double-precision checks.
void frozen_matmul(const Tensor& t, const float* x, int64_t n, float* y) { matmul(t, x, n, y); }
void frozen_matmul(const Tensor& t, const double* x, int64_t n, double* y) {
  std::vector<double> W;
  dequantize_rows(t, W);
  gemm<double>(false, true, n, t.rows(), t.cols(), 1.0, x, t.cols(), W.data(), t.cols(), 0.0, y, t.rows());
}

}  // namespace

template <class T>
void TrainModel<T>::lin_forward(const Lin& L, size_t bias, const T* x, int64_t n, T* y) {
  if (L.frozen) {
    frozen_matmul(*L.frozen, x, n, y);
    if (bias != kNone)
      for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < L.out; o++) y[t * L.out + o] += W(bias)[o];
  } else {
    linear_forward(Wf(L.param), bias == kNone ? static_cast<const T*>(nullptr) : W(bias), x, n, L.in, L.out, y);
  }
  if (L.a == kNone) return;
  const int64_t r = lora_.rank;
  lora_t_.resize(size_t(n * r));
  gemm<T>(false, true, n, r, L.in, T(1), x, L.in, W(L.a), L.in, T(0), lora_t_.data(), r);
  gemm<T>(false, true, n, L.out, r, T(lora_.scale()), lora_t_.data(), r, W(L.b), r, T(1), y, L.out);
}

template <class T>
void TrainModel<T>::lin_backward(const Lin& L, size_t bias, const T* x, const T* dy, int64_t n, T* dx,
                                 bool accumulate_dx) {
  if (!L.frozen) {
    linear_backward(Wf(L.param), x, dy, n, L.in, L.out, Gopt(L.param), Gopt(bias), dx, accumulate_dx);
  } else {
    if (T* db = Gopt(bias))
      for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < L.out; o++) db[o] += dy[t * L.out + o];
    if (dx) {
      // dx = dy·W on the weight dequantized one matrix at a time (the head's
      // once per step: step() runs it on many chunks of rows).
      const std::vector<T>* deq = &deq_;
      if (&L == &head_ && !head_deq_.empty())
        deq = &head_deq_;
      else
        dequantize_rows(*L.frozen, deq_);
      gemm<T>(false, false, n, L.in, L.out, T(1), dy, L.out, deq->data(), L.in, accumulate_dx ? T(1) : T(0), dx, L.in);
    }
  }
  if (L.a == kNone) return;
  // y += s·(x·Aᵀ)·Bᵀ: dB += s·dyᵀ·t, dt = s·dy·B, dA += dtᵀ·x, dx += dt·A.
  const int64_t r = lora_.rank;
  const T s = T(lora_.scale());
  lora_t_.resize(size_t(n * r));
  lora_dt_.resize(size_t(n * r));
  gemm<T>(false, true, n, r, L.in, T(1), x, L.in, W(L.a), L.in, T(0), lora_t_.data(), r);
  gemm<T>(true, false, L.out, r, n, s, dy, L.out, lora_t_.data(), r, T(1), G(L.b), r);
  gemm<T>(false, false, n, r, L.out, s, dy, L.out, W(L.b), r, T(0), lora_dt_.data(), r);
  gemm<T>(true, false, r, L.in, n, T(1), lora_dt_.data(), r, x, L.in, T(1), G(L.a), L.in);
  if (dx) gemm<T>(false, false, n, L.in, r, T(1), lora_dt_.data(), r, W(L.a), L.in, T(1), dx, L.in);
}

template <class T>
int64_t TrainModel<T>::set_fake_quant(const std::map<std::string, QatFormat>& formats, bool learn_scales) {
  if (lora_.rank > 0) fail("quantization-aware training trains the weights themselves: not with LoRA adapters");
  const size_t n_model = params_.size();
  fq_.assign(n_model, {});
  int64_t covered = 0;
  for (size_t i = 0; i < n_model; i++) {
    const auto it = formats.find(params_[i].name);
    if (it == formats.end()) continue;
    const QatFormat& f = it->second;
    if (!f.int_group && f.type == DType::F32) continue;
    const bool rounds_to_float = !f.int_group && (f.type == DType::F16 || f.type == DType::BF16);
    if (!f.int_group && !rounds_to_float && !has_quantizer(f.type))
      fail("--qat: lmpress has no quantizer for {} ({})", dtype_name(f.type), params_[i].name);
    const int64_t cols = params_[i].cols, G = f.group(cols);
    if (cols % G) fail("--qat: {} rows of {} values do not fill whole {} groups of {}", params_[i].name, cols, f.name(), G);
    FakeQuant q;
    q.format = f;
    q.values.resize(size_t(params_[i].size()));
    if (learn_scales && learnable_scales(f)) {
      const int64_t rows = params_[i].rows, groups = cols / G;
      q.scale = add(params_[i].name + ".qat_scale", rows, groups);
      params_[q.scale].model_weight = false;
      if (learns_offsets(f)) q.offset = add(params_[i].name + ".qat_offset", rows, groups), params_[q.offset].model_weight = false;
      if (f.int_group) q.zero.resize(size_t(rows * groups));
    }
    fq_[i] = std::move(q);
    if (!rounds_to_float) covered += params_[i].size();
  }
  // The scales start where round to nearest puts them.
  const size_t total = params_.back().offset + size_t(params_.back().size());
  w.resize(total), grad.resize(total);
  for_each_fake_quant_row([&](size_t i, FakeQuant& q, int64_t r, const float* row, const RowScales* rs) {
    if (!rs) return;
    const int64_t groups = params_[q.scale].cols;
    init_scales(q.format, row, params_[i].cols, *rs);  // the zero points in place, the scales into the row's copies
    std::copy(rs->scale, rs->scale + groups, W(q.scale) + r * groups);
    if (q.offset != kNone) std::copy(rs->offset, rs->offset + groups, W(q.offset) + r * groups);
  });
  return covered;
}

template <class T>
template <class F>
void TrainModel<T>::for_each_fake_quant_row(F&& f) {
  for (size_t i = 0; i < fq_.size(); i++) {
    FakeQuant& q = fq_[i];
    if (q.values.empty()) continue;
    const int64_t rows = params_[i].rows, cols = params_[i].cols;
    const int64_t groups = q.scale == kNone ? 0 : params_[q.scale].cols;
#pragma omp parallel
    {
      std::vector<float> row(static_cast<size_t>(cols)), sc(static_cast<size_t>(groups)), off(static_cast<size_t>(groups));
#pragma omp for
      for (int64_t r = 0; r < rows; r++) {
        std::copy(W(i) + r * cols, W(i) + (r + 1) * cols, row.begin());
        RowScales rs{nullptr, nullptr, nullptr};
        if (q.scale != kNone) {
          std::copy(W(q.scale) + r * groups, W(q.scale) + (r + 1) * groups, sc.begin());
          if (q.offset != kNone) std::copy(W(q.offset) + r * groups, W(q.offset) + (r + 1) * groups, off.begin());
          rs = {sc.data(), off.data(), q.zero.empty() ? nullptr : q.zero.data() + r * groups};
        }
        f(i, q, r, row.data(), q.scale == kNone ? nullptr : &rs);
      }
    }
  }
}

template <class T>
void TrainModel<T>::refresh_fake_quant() {
  for_each_fake_quant_row([&](size_t i, FakeQuant& q, int64_t r, const float* row, const RowScales* rs) {
    const int64_t cols = params_[i].cols;
    thread_local std::vector<float> out;
    out.resize(size_t(cols));
    if (rs)
      fake_quant_row(q.format, row, cols, *rs, out.data());
    else
      fake_quant_row(q.format, row, cols, out.data());
    std::copy(out.begin(), out.end(), q.values.begin() + r * cols);
  });
}

template <class T>
void TrainModel<T>::fake_quant_backward() {
  for_each_fake_quant_row([&](size_t i, FakeQuant& q, int64_t r, const float* row, const RowScales* rs) {
    if (!rs) return;  // plain straight-through: the gradient is the master's as it is
    const int64_t cols = params_[i].cols, groups = params_[q.scale].cols;
    thread_local std::vector<float> g, ds, dm;
    g.assign(G(i) + r * cols, G(i) + (r + 1) * cols);
    ds.assign(size_t(groups), 0.0f), dm.assign(size_t(groups), 0.0f);
    fake_quant_row_backward(q.format, row, cols, *rs, g.data(), ds.data(), q.offset == kNone ? nullptr : dm.data());
    std::copy(g.begin(), g.end(), G(i) + r * cols);
    for (int64_t k = 0; k < groups; k++) {
      G(q.scale)[r * groups + k] += T(ds[size_t(k)]);
      if (q.offset != kNone) G(q.offset)[r * groups + k] += T(dm[size_t(k)]);
    }
  });
}

template <class T>
std::vector<float> TrainModel<T>::lr_factors() const {
  std::vector<float> f(w.size(), 1.0f);
  for (size_t i = 0; i < fq_.size(); i++)
    for (const size_t s : {fq_[i].scale, fq_[i].offset})
      if (s != kNone)
        std::fill(f.begin() + std::ptrdiff_t(params_[s].offset), f.begin() + std::ptrdiff_t(params_[s].offset) + params_[s].size(),
                  float(scale_lr_factor(fq_[i].format, params_[i].cols)));
  return f;
}

template <class T>
int64_t TrainModel<T>::learned_scale_weights() const {
  int64_t n = 0;
  for (size_t i = 0; i < fq_.size(); i++)
    if (fq_[i].scale != kNone) n += params_[i].size();
  return n;
}

template <class T>
QatEncoded TrainModel<T>::encode_fake_quant() const {
  QatEncoded e;
  for (size_t i = 0; i < fq_.size(); i++) {
    const FakeQuant& q = fq_[i];
    if (q.scale == kNone) continue;
    const int64_t rows = params_[i].rows, cols = params_[i].cols, groups = params_[q.scale].cols;
    std::vector<float> wf(W(i), W(i) + rows * cols), sc(W(q.scale), W(q.scale) + rows * groups);
    if (q.format.int_group) {
      e.ints.emplace(params_[i].name, encode_int(*q.format.int_group, wf.data(), rows, cols, sc.data(), q.zero.data()));
      continue;
    }
    std::vector<float> off = q.offset == kNone ? std::vector<float>(size_t(rows * groups))
                                               : std::vector<float>(W(q.offset), W(q.offset) + rows * groups);
    const uint64_t rb = row_bytes(q.format.type, uint64_t(cols));
    std::vector<uint8_t> bytes(size_t(rows) * rb);
    for (int64_t r = 0; r < rows; r++)
      encode_row(q.format, wf.data() + r * cols, cols, {sc.data() + r * groups, off.data() + r * groups, nullptr},
                 bytes.data() + uint64_t(r) * rb);
    e.blocks.emplace(params_[i].name, EncodedTensor{q.format.type, std::move(bytes)});
  }
  return e;
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
  if (c_.qk_norm) {
    qpre_.assign(N * qd, T(0)), kpre_.assign(N * kvd, T(0)), dkpre_.assign(N * kvd, T(0));
    rstdq_.assign(N * size_t(c_.n_heads), T(0)), rstdk_.assign(N * size_t(c_.n_kv_heads), T(0));
  }
  // A mixture without dense blocks has no dense feed-forward to hold.
  const size_t Fd = c_.moe() && !c_.any_dense_block() ? 0 : F;
  for (auto* v : {&g_, &u_, &a_, &dg_, &du_, &da_}) v->assign(N * Fd, T(0));
  if (c_.moe()) {
    const size_t E = size_t(c_.n_experts), K = size_t(c_.n_experts_used), FE = size_t(c_.expert_ffn),
                 FS = size_t(c_.shared_ffn);
    for (auto* v : {&probs_, &dz_}) v->assign(N * E, T(0));
    for (auto* v : {&wts_, &dwts_}) v->assign(N * K, T(0));
    for (auto* v : {&sums_, &sgl_}) v->assign(N, T(0));
    for (auto* v : {&gx_, &ey_, &dgx_}) v->assign(N * K * D, T(0));
    for (auto* v : {&eg_, &eu_, &ea_, &deg_, &deu_, &dea_}) v->assign(N * K * FE, T(0));
    for (auto* v : {&sg_, &su_, &sa_, &dsg_, &dsu_, &dsa_}) v->assign(N * FS, T(0));
    for (auto* v : {&sy_, &dsy_}) v->assign(FS ? N * D : 0, T(0));
    chosen_.assign(N * K, 0);
    slot_.assign(N * K, 0);
  }
  lse_.assign(size_t(B * c_.n_heads * n), T(0));
}

template <class T>
void TrainModel<T>::embed(const int32_t* tokens, T* x) {
  const int64_t N = B_ * n_, D = c_.dim;
  std::vector<float> row(embd_ == kNone ? static_cast<size_t>(D) : 0);
  for (int64_t r = 0; r < N; r++) {
    if (tokens[r] < 0 || tokens[r] >= c_.n_vocab) fail("token id {} is outside the vocabulary of {}", tokens[r], c_.n_vocab);
    if (embd_ != kNone) {
      std::memcpy(x + r * D, Wf(embd_) + int64_t(tokens[r]) * D, sizeof(T) * size_t(D));
    } else {
      to_f32(*embd_frozen_, int64_t(tokens[r]) * D, D, row.data());
      std::copy(row.begin(), row.end(), x + r * D);
    }
  }
}

template <class T>
void TrainModel<T>::rope_rows(int64_t l, T* q, T* k, bool inverse) {
  const auto& freqs = rope_[size_t(l)];
  if (freqs.empty()) return;
  const int64_t N = B_ * n_, H = c_.n_heads, KV = c_.n_kv_heads, hd = c_.head_dim;
#pragma omp parallel for
  for (int64_t r = 0; r < N; r++) {
    rope_rotate(q + r * H * hd, H, hd, r % n_, freqs, c_.rope_layout, inverse);
    rope_rotate(k + r * KV * hd, KV, hd, r % n_, freqs, c_.rope_layout, inverse);
  }
}

template <class T>
void TrainModel<T>::block_forward(int64_t l, const T* x_in, T* x_out) {
  const LayerIdx& L = layers_[size_t(l)];
  const int64_t N = B_ * n_, D = c_.dim, F = c_.ffn_dim, H = c_.n_heads, KV = c_.n_kv_heads, hd = c_.head_dim;
  const int64_t qd = H * hd, kvd = KV * hd;
  rmsnorm_forward(x_in, W(L.attn_norm), N, D, c_.rms_eps, xn1_.data(), rstd1_.data());
  lin_forward(L.q, L.bq, xn1_.data(), N, q_.data());
  lin_forward(L.k, L.bk, xn1_.data(), N, k_.data());
  lin_forward(L.v, L.bv, xn1_.data(), N, v_.data());
  if (L.q_norm != kNone) {
    // Each head's row normalized; the inputs kept for the backward.
    std::copy(q_.begin(), q_.end(), qpre_.begin());
    std::copy(k_.begin(), k_.end(), kpre_.begin());
    rmsnorm_forward(qpre_.data(), W(L.q_norm), N * H, hd, c_.rms_eps, q_.data(), rstdq_.data());
    rmsnorm_forward(kpre_.data(), W(L.k_norm), N * KV, hd, c_.rms_eps, k_.data(), rstdk_.data());
  }
  rope_rows(l, q_.data(), k_.data(), false);
  const double scale = c_.attention_scale();
#pragma omp parallel for schedule(dynamic)
  for (int64_t bg = 0; bg < B_ * KV; bg++) {
    const int64_t b = bg / KV, g = bg % KV, o = b * n_;
    attention_forward(q_.data() + o * qd, k_.data() + o * kvd, v_.data() + o * kvd, n_, H, KV, hd, g, scale,
                      lse_.data() + b * H * n_, att_.data() + o * qd);
  }
  lin_forward(L.o, kNone, att_.data(), N, x1_.data());
  for (int64_t i = 0; i < N * D; i++) x1_[size_t(i)] += x_in[i];
  rmsnorm_forward(x1_.data(), W(L.ffn_norm), N, D, c_.rms_eps, xn2_.data(), rstd2_.data());
  if (L.moe) {
    moe_forward(L, x_out);
  } else {
    lin_forward(L.gate, kNone, xn2_.data(), N, g_.data());
    lin_forward(L.up, kNone, xn2_.data(), N, u_.data());
    swiglu_forward(g_.data(), u_.data(), N * F, a_.data());
    lin_forward(L.down, kNone, a_.data(), N, x_out);
  }
  for (int64_t i = 0; i < N * D; i++) x_out[i] += x1_[size_t(i)];
}

template <class T>
void TrainModel<T>::block_backward(int64_t l, const T* x_in, T* dx) {
  const LayerIdx& L = layers_[size_t(l)];
  const int64_t N = B_ * n_, D = c_.dim, F = c_.ffn_dim, H = c_.n_heads, KV = c_.n_kv_heads, hd = c_.head_dim;
  const int64_t qd = H * hd, kvd = KV * hd;
  // Feed-forward: x_out = x1 + down(swiglu(gate(xn2), up(xn2))), or the mixture's output.
  if (L.moe) {
    moe_backward(L, dx);
  } else {
    lin_backward(L.down, kNone, a_.data(), dx, N, da_.data(), false);
    swiglu_backward(g_.data(), u_.data(), da_.data(), N * F, dg_.data(), du_.data());
    lin_backward(L.gate, kNone, xn2_.data(), dg_.data(), N, dxn_.data(), false);
    lin_backward(L.up, kNone, xn2_.data(), du_.data(), N, dxn_.data(), true);
  }
  std::copy(dx, dx + N * D, dx1_.begin());
  rmsnorm_backward(x1_.data(), W(L.ffn_norm), rstd2_.data(), dxn_.data(), N, D, dx1_.data(), Gopt(L.ffn_norm));
  // Attention: x1 = x_in + wo(attention(rope(q), rope(k), v)).
  lin_backward(L.o, kNone, att_.data(), dx1_.data(), N, datt_.data(), false);
  const double scale = c_.attention_scale();
#pragma omp parallel for schedule(dynamic)
  for (int64_t bg = 0; bg < B_ * KV; bg++) {
    const int64_t b = bg / KV, g = bg % KV, o = b * n_;
    attention_backward(q_.data() + o * qd, k_.data() + o * kvd, v_.data() + o * kvd, lse_.data() + b * H * n_,
                       datt_.data() + o * qd, n_, H, KV, hd, g, scale, dq_.data() + o * qd, dk_.data() + o * kvd,
                       dv_.data() + o * kvd);
  }
  rope_rows(l, dq_.data(), dk_.data(), true);
  if (L.q_norm != kNone) {
    std::fill(datt_.begin(), datt_.end(), T(0));  // free after wo's backward: ∂/∂(q before its norm)
    rmsnorm_backward(qpre_.data(), W(L.q_norm), rstdq_.data(), dq_.data(), N * H, hd, datt_.data(), Gopt(L.q_norm));
    std::copy(datt_.begin(), datt_.end(), dq_.begin());
    std::fill(dkpre_.begin(), dkpre_.end(), T(0));
    rmsnorm_backward(kpre_.data(), W(L.k_norm), rstdk_.data(), dk_.data(), N * KV, hd, dkpre_.data(), Gopt(L.k_norm));
    std::copy(dkpre_.begin(), dkpre_.end(), dk_.begin());
  }
  lin_backward(L.q, L.bq, xn1_.data(), dq_.data(), N, dxn_.data(), false);
  lin_backward(L.k, L.bk, xn1_.data(), dk_.data(), N, dxn_.data(), true);
  lin_backward(L.v, L.bv, xn1_.data(), dv_.data(), N, dxn_.data(), true);
  std::copy(dx1_.begin(), dx1_.begin() + N * D, dx);
  rmsnorm_backward(x_in, W(L.attn_norm), rstd1_.data(), dxn_.data(), N, D, dx, Gopt(L.attn_norm));
}

template <class T>
void TrainModel<T>::moe_forward(const LayerIdx& L, T* y) {
  const int64_t N = B_ * n_, D = c_.dim, E = c_.n_experts, K = c_.n_experts_used, FE = c_.expert_ffn;
  lin_forward(L.router, kNone, xn2_.data(), N, probs_.data());
  route_forward(probs_.data(), N, E, K, c_.expert_norm, c_.expert_scale, probs_.data(), chosen_.data(), wts_.data(),
                sums_.data());
  // The (row, k) pairs grouped by expert, in row order within each.
  eoff_.assign(size_t(E + 1), 0);
  for (int64_t i = 0; i < N * K; i++) eoff_[size_t(chosen_[size_t(i)]) + 1]++;
  for (int64_t e = 0; e < E; e++) eoff_[size_t(e + 1)] += eoff_[size_t(e)];
  std::vector<int64_t> fill(eoff_.begin(), eoff_.end() - 1);
  for (int64_t i = 0; i < N * K; i++) {
    const int64_t pos = fill[size_t(chosen_[size_t(i)])]++;
    slot_[size_t(pos)] = i;
    std::copy_n(xn2_.data() + (i / K) * D, D, gx_.data() + pos * D);
  }
  for (int64_t e = 0; e < E; e++) {
    const int64_t o = eoff_[size_t(e)], ne = eoff_[size_t(e + 1)] - o;
    if (ne == 0) continue;
    lin_forward(L.eg[size_t(e)], kNone, gx_.data() + o * D, ne, eg_.data() + o * FE);
    lin_forward(L.eu[size_t(e)], kNone, gx_.data() + o * D, ne, eu_.data() + o * FE);
    swiglu_forward(eg_.data() + o * FE, eu_.data() + o * FE, ne * FE, ea_.data() + o * FE);
    lin_forward(L.ed[size_t(e)], kNone, ea_.data() + o * FE, ne, ey_.data() + o * D);
  }
  std::fill(y, y + N * D, T(0));
  for (int64_t pos = 0; pos < N * K; pos++) {
    const int64_t i = slot_[size_t(pos)];
    const T wk = wts_[size_t(i)];
    T* yr = y + (i / K) * D;
    const T* er = ey_.data() + pos * D;
    for (int64_t j = 0; j < D; j++) yr[j] += wk * er[j];
  }
  if (L.sg.out == 0) return;
  const int64_t FS = c_.shared_ffn;
  lin_forward(L.sg, kNone, xn2_.data(), N, sg_.data());
  lin_forward(L.su, kNone, xn2_.data(), N, su_.data());
  swiglu_forward(sg_.data(), su_.data(), N * FS, sa_.data());
  lin_forward(L.sd, kNone, sa_.data(), N, sy_.data());
  for (int64_t r = 0; r < N; r++) {
    T gate = 1;
    if (L.shexp_gate != kNone) {  // Qwen2-MoE: sigmoid(xn2 · g)
      T z = 0;
      for (int64_t j = 0; j < D; j++) z += xn2_[size_t(r * D + j)] * W(L.shexp_gate)[j];
      sgl_[size_t(r)] = z;
      gate = T(1) / (T(1) + std::exp(-z));
    }
    for (int64_t j = 0; j < D; j++) y[r * D + j] += gate * sy_[size_t(r * D + j)];
  }
}

template <class T>
void TrainModel<T>::moe_backward(const LayerIdx& L, const T* dy) {
  const int64_t N = B_ * n_, D = c_.dim, E = c_.n_experts, K = c_.n_experts_used, FE = c_.expert_ffn;
  // y[r] = Σ_k w_rk · expert_k(xn2[r]): ∂/∂w_rk = dy[r] · expert output; the output's gradient w_rk · dy[r]
  // (into ey_, whose values are no longer needed).
  for (int64_t pos = 0; pos < N * K; pos++) {
    const int64_t i = slot_[size_t(pos)];
    const T* g = dy + (i / K) * D;
    T* er = ey_.data() + pos * D;
    T d = 0;
    for (int64_t j = 0; j < D; j++) d += g[j] * er[j];
    dwts_[size_t(i)] = d;
    for (int64_t j = 0; j < D; j++) er[j] = wts_[size_t(i)] * g[j];
  }
  for (int64_t e = 0; e < E; e++) {
    const int64_t o = eoff_[size_t(e)], ne = eoff_[size_t(e + 1)] - o;
    if (ne == 0) continue;
    lin_backward(L.ed[size_t(e)], kNone, ea_.data() + o * FE, ey_.data() + o * D, ne, dea_.data() + o * FE, false);
    swiglu_backward(eg_.data() + o * FE, eu_.data() + o * FE, dea_.data() + o * FE, ne * FE, deg_.data() + o * FE,
                    deu_.data() + o * FE);
    lin_backward(L.eg[size_t(e)], kNone, gx_.data() + o * D, deg_.data() + o * FE, ne, dgx_.data() + o * D, false);
    lin_backward(L.eu[size_t(e)], kNone, gx_.data() + o * D, deu_.data() + o * FE, ne, dgx_.data() + o * D, true);
  }
  std::fill(dxn_.begin(), dxn_.end(), T(0));
  for (int64_t pos = 0; pos < N * K; pos++) {
    T* dr = dxn_.data() + (slot_[size_t(pos)] / K) * D;
    const T* gr = dgx_.data() + pos * D;
    for (int64_t j = 0; j < D; j++) dr[j] += gr[j];
  }
  route_backward(probs_.data(), chosen_.data(), wts_.data(), sums_.data(), dwts_.data(), N, E, K, c_.expert_norm,
                 c_.expert_scale, dz_.data());
  lin_backward(L.router, kNone, xn2_.data(), dz_.data(), N, dxn_.data(), true);
  if (L.sg.out == 0) return;
  const int64_t FS = c_.shared_ffn;
  const T* dsy = dy;
  if (L.shexp_gate != kNone) {
    T* gg = Gopt(L.shexp_gate);
    for (int64_t r = 0; r < N; r++) {
      const T s = T(1) / (T(1) + std::exp(-sgl_[size_t(r)]));
      T d = 0;
      for (int64_t j = 0; j < D; j++) d += dy[r * D + j] * sy_[size_t(r * D + j)], dsy_[size_t(r * D + j)] = s * dy[r * D + j];
      const T dz = d * s * (T(1) - s);
      for (int64_t j = 0; j < D; j++) {
        if (gg) gg[j] += dz * xn2_[size_t(r * D + j)];
        dxn_[size_t(r * D + j)] += dz * W(L.shexp_gate)[j];
      }
    }
    dsy = dsy_.data();
  }
  lin_backward(L.sd, kNone, sa_.data(), dsy, N, dsa_.data(), false);
  swiglu_backward(sg_.data(), su_.data(), dsa_.data(), N * FS, dsg_.data(), dsu_.data());
  lin_backward(L.sg, kNone, xn2_.data(), dsg_.data(), N, dxn_.data(), true);
  lin_backward(L.su, kNone, xn2_.data(), dsu_.data(), N, dxn_.data(), true);
}

template <class T>
void TrainModel<T>::forward_blocks(const int32_t* tokens) {
  if (!fq_.empty()) refresh_fake_quant();
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
  std::vector<T>& dh = dxn_;  // ∂/∂hn
  if (head_.frozen) dequantize_rows(*head_.frozen, head_deq_);
  double total = 0;
  for (int64_t b = 0; b < B; b++) {
    const TeacherLogits tb = loss.needs_teacher() ? teacher(b) : TeacherLogits{};
    for (int64_t r0 = 0; r0 < n; r0 += C) {
      const int64_t rows = std::min(C, n - r0), r = b * n + r0;
      const T* h = hn_.data() + r * D;
      lin_forward(head_, kNone, h, rows, chunk_.data());
      total += loss_backward(loss, chunk_.data(), targets + r, tb.from_row(r0, V),
                             rows, V, scale, ce);
      lin_backward(head_, kNone, h, chunk_.data(), rows, dh.data() + r * D, false);
    }
  }
  head_deq_.clear();
  head_deq_.shrink_to_fit();
  // dx of the last block's output: the final norm's backward.
  std::vector<T>& dx = xs_.back();  // its forward values are no longer needed once hn's gradient is through
  std::vector<T> x_last(dx);
  std::fill(dx.begin(), dx.end(), T(0));
  rmsnorm_backward(x_last.data(), W(out_norm_), rstdf_.data(), dh.data(), B * n, D, dx.data(), Gopt(out_norm_));
  for (int64_t l = c_.n_layers - 1; l >= 0; l--) {
    T* x_out = l + 1 < c_.n_layers ? xs_[size_t(l + 1)].data() : x_last.data();
    block_forward(l, xs_[size_t(l)].data(), x_out);  // recompute (x_out is a scratch copy here)
    block_backward(l, xs_[size_t(l)].data(), dx.data());
  }
  // The embedding rows the tokens read.
  if (embd_ == kNone || !params_[embd_].trainable) return total;
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
    lin_forward(head_, kNone, hn_.data() + r * D, rows, chunk_.data());
    loss_backward(Loss{}, chunk_.data(), targets + r, nullptr, rows, V, 0.0, &ce);
  }
  return ce;
}

template <class T>
void TrainModel<T>::logits(const int32_t* tokens, int64_t B, int64_t n, T* out) {
  resize(B, n);
  forward_blocks(tokens);
  lin_forward(head_, kNone, hn_.data(), B * n, out);
}

template class TrainModel<float>;
template class TrainModel<double>;

}  // namespace lmpress::train
