#include "compress/rotate.h"

#include <charconv>

#include "compress/calibration.h"
#include "core/error.h"
#include "core/progress.h"
#include "kernels/hadamard.h"
#include "kernels/to_f32.h"

namespace lmpress {

RotateSpec parse_rotate_spec(const std::string& text, const std::string& option) {
  RotateSpec spec;
  const size_t comma = text.find(',');
  const std::string head = text.substr(0, comma);
  const std::string kind = head.substr(0, head.find(':'));
  if (kind != "hadamard")
    fail("{} {}: the rotation is hadamard, hadamard:SEED, or either with ,r4 (QuaRot's random Hadamard matrix)",
         option, text);
  if (kind.size() < head.size()) {
    const std::string seed = head.substr(kind.size() + 1);
    const auto r = std::from_chars(seed.data(), seed.data() + seed.size(), spec.seed);
    if (seed.empty() || r.ec != std::errc() || r.ptr != seed.data() + seed.size())
      fail("{} {}: the seed '{}' is not a non-negative integer", option, text, seed);
  }
  if (comma != std::string::npos) {
    const std::string extra = text.substr(comma + 1);
    if (extra != "r4")
      fail("{} {}: '{}' is not a rotation lmpress adds (r4: online before ffn_down)", option, text, extra);
    spec.down = true;
  }
  return spec;
}

std::string rotate_spec_name(const RotateSpec& spec) {
  return "hadamard:" + std::to_string(spec.seed) + (spec.down ? ",r4" : "");
}

namespace {

// w (rows × q.size(), row-major): every row r <- r·Q.
void rotate_rows(std::vector<float>& w, int64_t rows, const HadamardRotation& q) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) q.apply(w.data() + r * q.size());
}

std::vector<float> transpose(const std::vector<float>& w, int64_t rows, int64_t cols) {
  std::vector<float> t(w.size());
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) t[size_t(c * rows + r)] = w[size_t(r * cols + c)];
  return t;
}

}  // namespace

RotateReport rotate_model(Model& m, const RotateSpec& spec) {
  if (m.cfg.moe() && spec.down)
    fail("{}: R4 (,r4: online before ffn_down) of a mixture of experts is not supported (one rotation per expert's "
         "down); rotate with hadamard alone",
         m.path);
  if (m.cfg.arch == "gpt-oss")
    fail("{}: gpt-oss's output and expert biases would have to turn with the residual stream, which lmpress's "
         "rotation does not do yet",
         m.path);
  if (m.cfg.post_norms)
    fail("{}: {} normalizes each block's outputs before they join the residual stream (post-norms), so a residual "
         "rotation does not leave it computing the same function",
         m.path, m.cfg.arch);
  refuse_factorized(m, "rotation");
  for (const Tensor& t : m.tensors)
    if (t.shape.size() == 2 && !is_float_type(t.dtype))
      fail("{}: {} is {}: rotation changes float weights (rotate before quantizing)", m.path, t.name,
           dtype_name(t.dtype));
  const int64_t D = m.cfg.dim, L = m.cfg.n_layers;
  if (!HadamardRotation::supported(D))
    fail("{}: {} {}: no Hadamard matrix of this size (lmpress builds 2^k·m with m = 1, q + 1 for a prime q ≡ 3 "
         "mod 4, or 2(q + 1) for a prime q ≡ 1 mod 4)",
         m.path, m.cfg.field("hidden_size"), D);
  const HadamardRotation q(D, spec.seed);
  const int64_t hd = m.cfg.head_dim;
  RotateReport rep;
  rep.size = D;
  rep.order = q.order();
  rep.heads = spec.heads && HadamardRotation::supported(hd);
  const HadamardRotation q2(rep.heads ? hd : 1, spec.seed + 1);
  std::shared_ptr<const HadamardRotation> q4;
  if (spec.down) {
    if (m.cfg.down_rotation) fail("{}: ffn_down's input is rotated online (R4) already", m.path);
    if (!m.cfg.uniform_ffn())
      fail("{}: its layers differ in feed-forward size; R4 (online before ffn_down) needs one size", m.path);
    const int64_t F = m.cfg.ffn_dim;
    if (!HadamardRotation::supported(F))
      fail("{}: {} {}: no Hadamard matrix of this size for R4 (lmpress builds 2^k·m with m = 1, q + 1 for a prime "
           "q ≡ 3 mod 4, or 2(q + 1) for a prime q ≡ 1 mod 4)",
           m.path, m.cfg.field("intermediate_size"), F);
    q4 = std::make_shared<const HadamardRotation>(F, spec.seed + 2);
    rep.down_size = F;
    rep.down_order = q4->order();
  }

  // A linear reading the residual stream: columns scaled by the norm before it, rows rotated.
  auto reader = [&](const std::string& name, const std::vector<float>& norm) {
    const Tensor& t = m.tensor(name);
    if (t.cols() != D) fail("{}: {} has {} columns, the model's width is {}", m.path, name, t.cols(), D);
    const int64_t rows = t.rows();
    std::vector<float> w = to_f32(t);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < D; j++) w[size_t(r * D + j)] *= norm[size_t(j)];
    rotate_rows(w, rows, q);
    m.set_f32(name, std::move(w));
  };
  // A linear writing the residual stream (D rows): W <- Qᵀ·W (then, for ffn_down under R4, W <- W·Q4: its rows
  // times Q4), its bias b <- Qᵀ·b.
  auto writer = [&](const std::string& name, const std::string& bias, const HadamardRotation* cols_rotation) {
    const Tensor& t = m.tensor(name);
    const int64_t cols = t.cols();
    std::vector<float> w = transpose(to_f32(t), D, cols);
    rotate_rows(w, cols, q);
    w = transpose(w, cols, D);
    if (cols_rotation) rotate_rows(w, D, *cols_rotation);
    m.set_f32(name, std::move(w));
    if (!bias.empty() && m.find(bias)) {
      std::vector<float> b = to_f32(m.tensor(bias));
      q.apply(b.data());
      m.set_f32(bias, std::move(b));
    }
  };
  auto fold_norm = [&](const std::string& name) {
    std::vector<float> g = to_f32(m.tensor(name));
    m.set_f32(name, std::vector<float>(size_t(D), 1.0f));
    return g;
  };

  // The head first: a tied one is the embedding before rotation, with the final norm folded in.
  const std::vector<float> out_norm = fold_norm("output_norm.weight");
  if (m.cfg.tied_embeddings || !m.find("output.weight")) {
    const Tensor& e = m.tensor("token_embd.weight");
    if (m.find("output.weight")) {
      m.set_f32("output.weight", to_f32(e));
    } else {
      m.tensors.push_back(make_f32_tensor("output.weight", e.shape, to_f32(e)));
    }
    m.cfg.tied_embeddings = false;
    rep.untied = true;
  }
  reader("output.weight", out_norm);
  {
    const Tensor& e = m.tensor("token_embd.weight");
    std::vector<float> w = to_f32(e);
    rotate_rows(w, e.rows(), q);
    m.set_f32("token_embd.weight", std::move(w));
  }
  Progress progress("rotate", uint64_t(L));
  for (int64_t l = 0; l < L; l++) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const std::vector<float> attn = fold_norm(b + "attn_norm.weight");
    for (const char* n : {"attn_q.weight", "attn_k.weight", "attn_v.weight"}) reader(b + n, attn);
    writer(b + "attn_output.weight", b + "attn_output.bias", nullptr);
    if (rep.heads) {
      // R2: v_proj's rows per KV head <- R2ᵀ·rows (as columns of the transpose: segments times R2), its bias
      // likewise; o_proj's columns per head <- columns·R2 (segments of every row).
      const int64_t kvd = m.cfg.kv_dim(l);
      auto per_head = [&](std::vector<float>& w, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
          for (int64_t h = 0; h < cols / hd; h++) q2.apply(w.data() + r * cols + h * hd);
      };
      std::vector<float> v = transpose(to_f32(m.tensor(b + "attn_v.weight")), kvd, D);
      per_head(v, D, kvd);
      m.set_f32(b + "attn_v.weight", transpose(v, D, kvd));
      if (m.find(b + "attn_v.bias")) {
        std::vector<float> bias = to_f32(m.tensor(b + "attn_v.bias"));
        per_head(bias, 1, kvd);
        m.set_f32(b + "attn_v.bias", std::move(bias));
      }
      std::vector<float> o = to_f32(m.tensor(b + "attn_output.weight"));
      per_head(o, D, m.cfg.q_dim(l));
      m.set_f32(b + "attn_output.weight", std::move(o));
    }
    const std::vector<float> ffn = fold_norm(b + "ffn_norm.weight");
    if (m.cfg.layer_moe(l)) {
      // A mixture: the router, the shared expert (and Qwen2-MoE's gate for it) and every expert read the
      // norm's output; the shared expert's and every expert's down write the residual stream.
      for (int64_t e : site_experts(m.cfg)) {
        for (const auto& n : linear_names(m.cfg, l, LinearSite::FfnIn, e)) reader(n, ffn);
        for (const auto& n : linear_names(m.cfg, l, LinearSite::FfnDown, e)) writer(n, "", nullptr);
      }
      if (m.cfg.shared_gate()) reader(b + "ffn_gate_inp_shexp.weight", ffn);
    } else {
      for (const char* n : {"ffn_gate.weight", "ffn_up.weight"}) reader(b + n, ffn);
      writer(b + "ffn_down.weight", b + "ffn_down.bias", q4.get());  // R4: the forward pass gives it x·Q4
    }
    progress.update(uint64_t(l + 1));
  }
  rep.recorded = "hadamard:" + std::to_string(spec.seed) + (rep.heads ? " R1 R2" : " R1") + (q4 ? " R4" : "");
  if (q4) m.cfg.down_rotation = q4;
  m.rotation = m.rotation.empty() ? rep.recorded : m.rotation + ", " + rep.recorded;
  m.bind();
  return rep;
}

}  // namespace lmpress
