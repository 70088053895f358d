#include "compress/structured_prune.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/progress.h"

namespace lmpress {

namespace {

Tensor* find_tensor(Model& m, const std::string& name) {
  for (auto& t : m.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

Tensor& need(Model& m, const std::string& name) {
  Tensor* t = find_tensor(m, name);
  if (!t) fail("{}: model has no tensor {}", m.path, name);
  return *t;
}

std::string blk(int64_t l, const std::string& suffix) { return "blk." + std::to_string(l) + "." + suffix; }

// Keeps the given rows (dim 0) of a weight or bias.
void keep_rows(Model& m, const std::string& name, const std::vector<int64_t>& rows) {
  Tensor* t = find_tensor(m, name);
  if (!t) return;
  const auto v = to_f32(*t);
  const int64_t cols = t->shape.size() < 2 ? 1 : t->cols();
  std::vector<float> out;
  out.reserve(rows.size() * size_t(cols));
  for (int64_t r : rows) out.insert(out.end(), v.begin() + r * cols, v.begin() + (r + 1) * cols);
  std::vector<int64_t> shape = t->shape;
  shape[0] = int64_t(rows.size());
  *t = make_f32_tensor(t->name, shape, std::move(out));
}

// Keeps the given columns (input features) of a weight.
void keep_cols(Model& m, const std::string& name, const std::vector<int64_t>& cols) {
  Tensor& t = need(m, name);
  const auto v = to_f32(t);
  const int64_t rows = t.rows(), n = t.cols();
  std::vector<float> out(static_cast<size_t>(rows) * cols.size());
  for (int64_t r = 0; r < rows; r++)
    for (size_t j = 0; j < cols.size(); j++) out[size_t(r) * cols.size() + j] = v[size_t(r * n + cols[j])];
  t = make_f32_tensor(t.name, {rows, int64_t(cols.size())}, std::move(out));
}

// Indices 0..n-1 except the `remove` lowest-scoring ones, in ascending order.
std::vector<int64_t> keep_best(const std::vector<double>& score, int64_t remove) {
  std::vector<int64_t> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return score[size_t(a)] < score[size_t(b)]; });
  std::vector<int64_t> keep(idx.begin() + remove, idx.end());
  std::sort(keep.begin(), keep.end());
  return keep;
}

// Σ over tokens of x_j² per input channel.
struct SecondMoment {
  std::vector<double> sq;
  void add(const float* x, int64_t n, int64_t cols) {
    if (sq.empty()) sq.assign(size_t(cols), 0.0);
    for (int64_t t = 0; t < n; t++)
      for (int64_t j = 0; j < cols; j++) sq[size_t(j)] += double(x[t * cols + j]) * x[t * cols + j];
  }
};

// ‖W[:, j]‖² · Σx_j² per input channel j of weight `name`.
std::vector<double> output_energy(const Model& m, const std::string& name, const SecondMoment& mo) {
  const Tensor* t = m.find(name);
  const auto v = to_f32(*t);
  const int64_t rows = t->rows(), cols = t->cols();
  std::vector<double> e(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) e[size_t(j)] += double(v[size_t(r * cols + j)]) * v[size_t(r * cols + j)];
  for (int64_t j = 0; j < cols; j++) e[size_t(j)] *= mo.sq[size_t(j)];
  return e;
}

}  // namespace

StructuredOptions parse_structured(const std::string& spec) {
  StructuredOptions o;
  std::stringstream ss(spec);
  std::string item;
  bool any = false;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) fail("--structured: '{}' is not KEY=VALUE (heads=F, ffn=F, layers=N)", item);
    const std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    char* end = nullptr;
    const double v = std::strtod(val.c_str(), &end);
    if (val.empty() || *end != 0) fail("--structured: '{}' is not a number in '{}'", val, item);
    if (key == "heads" || key == "ffn") {
      if (!(v >= 0 && v < 1)) fail("--structured: {}={} must be a fraction in [0, 1)", key, val);
      (key == "heads" ? o.heads : o.ffn) = v;
    } else if (key == "layers") {
      if (!(v >= 0 && v == std::floor(v) && v < 1e6)) fail("--structured: layers={} must be a whole number", val);
      o.layers = int64_t(v);
    } else {
      fail("--structured: unknown key '{}' (heads, ffn, layers)", key);
    }
    any = true;
  }
  if (!any) fail("--structured: nothing to remove (heads=F, ffn=F, layers=N)");
  return o;
}

StructuredReport structured_prune(Model& m, const StructuredOptions& o, const CalibrationOptions& calib) {
  ModelConfig& c = m.cfg;
  StructuredReport rep;
  rep.params_before = m.n_params();
  rep.kv_heads_before = c.n_kv_heads, rep.heads_before = c.n_heads, rep.ffn_before = c.ffn_dim;
  rep.layers_before = c.n_layers;
  const int64_t group_q = c.n_heads / c.n_kv_heads;  // query heads per KV head
  const int64_t rm_groups = std::llround(o.heads * double(c.n_kv_heads));
  const int64_t rm_ffn = std::llround(o.ffn * double(c.ffn_dim));
  if (rm_groups >= c.n_kv_heads) fail("--structured heads={}: would remove every KV group", o.heads);
  if (o.layers >= c.n_layers) fail("--structured layers={}: the model has {} blocks", o.layers, c.n_layers);
  for (const auto& t : m.tensors)
    if (t.shape.size() == 2 && t.name.rfind("blk.", 0) == 0 && !is_float_type(t.dtype))
      fail("{}: {} is quantized ({}); prune the float model", m.path, t.name, dtype_name(t.dtype));

  // One pass over the dense model: channel statistics and block distances.
  LayerwiseCalibrator cal(m, calibration_windows(m, calib));
  rep.calib_tokens = cal.n_tokens();
  const int64_t D = c.dim;
  std::vector<std::vector<double>> group_score(size_t(c.n_layers)), ffn_score(size_t(c.n_layers));
  Progress progress("structured", uint64_t(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; l++) {
    SecondMoment attn_out, ffn_down;
    const LinearObserver obs = [&](LinearSite s, const float* x, int64_t n, int64_t cols) {
      if (s == LinearSite::AttnOut) attn_out.add(x, n, cols);
      if (s == LinearSite::FfnDown) ffn_down.add(x, n, cols);
    };
    const std::vector<float> before = cal.hidden();
    cal.run(l, m.layers[size_t(l)], &obs, true);
    const std::vector<float>& after = cal.hidden();
    double dist = 0;
    const int64_t n_tok = int64_t(before.size()) / D;
    for (int64_t t = 0; t < n_tok; t++) {
      double ab = 0, aa = 0, bb = 0;
      for (int64_t j = 0; j < D; j++) {
        const double a = before[size_t(t * D + j)], b = after[size_t(t * D + j)];
        ab += a * b, aa += a * a, bb += b * b;
      }
      const double cosv = aa > 0 && bb > 0 ? std::clamp(ab / std::sqrt(aa * bb), -1.0, 1.0) : 1.0;
      dist += std::acos(cosv) / M_PI;
    }
    rep.block_distance.push_back(dist / double(std::max<int64_t>(1, n_tok)));
    const auto e_o = output_energy(m, blk(l, "attn_output.weight"), attn_out);
    auto& gs = group_score[size_t(l)];
    gs.assign(size_t(c.n_kv_heads), 0.0);
    for (int64_t j = 0; j < c.q_dim(); j++) gs[size_t(j / (c.head_dim * group_q))] += e_o[size_t(j)];
    ffn_score[size_t(l)] = output_energy(m, blk(l, "ffn_down.weight"), ffn_down);
    progress.update(uint64_t(l + 1));
  }
  progress.finish();

  // Heads and channels, the same count in every layer.
  for (int64_t l = 0; l < c.n_layers; l++) {
    if (rm_groups > 0) {
      const auto keep = keep_best(group_score[size_t(l)], rm_groups);
      std::vector<int64_t> q_rows, kv_rows;
      for (int64_t g : keep) {
        for (int64_t r = g * group_q * c.head_dim; r < (g + 1) * group_q * c.head_dim; r++) q_rows.push_back(r);
        for (int64_t r = g * c.head_dim; r < (g + 1) * c.head_dim; r++) kv_rows.push_back(r);
      }
      keep_rows(m, blk(l, "attn_q.weight"), q_rows);
      keep_rows(m, blk(l, "attn_q.bias"), q_rows);
      keep_rows(m, blk(l, "attn_k.weight"), kv_rows);
      keep_rows(m, blk(l, "attn_k.bias"), kv_rows);
      keep_rows(m, blk(l, "attn_v.weight"), kv_rows);
      keep_rows(m, blk(l, "attn_v.bias"), kv_rows);
      keep_cols(m, blk(l, "attn_output.weight"), q_rows);
    }
    if (rm_ffn > 0) {
      const auto keep = keep_best(ffn_score[size_t(l)], rm_ffn);
      keep_rows(m, blk(l, "ffn_gate.weight"), keep);
      keep_rows(m, blk(l, "ffn_up.weight"), keep);
      keep_cols(m, blk(l, "ffn_down.weight"), keep);
    }
  }
  c.n_kv_heads -= rm_groups;
  c.n_heads = c.n_kv_heads * group_q;
  c.ffn_dim -= rm_ffn;

  // Blocks: drop the o.layers least influential, renumber the rest.
  if (o.layers > 0) {
    const auto keep = keep_best(rep.block_distance, o.layers);
    for (int64_t l = 0; l < c.n_layers; l++)
      if (!std::binary_search(keep.begin(), keep.end(), l)) rep.removed_blocks.push_back(l);
    std::map<int64_t, int64_t> new_index;
    for (size_t i = 0; i < keep.size(); i++) new_index[keep[i]] = int64_t(i);
    std::vector<Tensor> kept;
    for (auto& t : m.tensors) {
      if (t.name.rfind("blk.", 0) != 0) {
        kept.push_back(std::move(t));
        continue;
      }
      const size_t dot = t.name.find('.', 4);
      const int64_t l = std::stoll(t.name.substr(4, dot - 4));
      auto it = new_index.find(l);
      if (it == new_index.end()) continue;
      t.name = "blk." + std::to_string(it->second) + t.name.substr(dot);
      kept.push_back(std::move(t));
    }
    m.tensors = std::move(kept);
    c.n_layers -= o.layers;
  }
  c.validate(m.path);
  m.bind();
  rep.kv_heads_after = c.n_kv_heads, rep.heads_after = c.n_heads, rep.ffn_after = c.ffn_dim;
  rep.layers_after = c.n_layers;
  rep.params_after = m.n_params();
  return rep;
}

}  // namespace lmpress
