#include "compress/structured_prune.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/progress.h"
#include "kernels/to_f32.h"
#include "model/model.h"

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

}  // namespace

void PrunedViews::cut(Tensor& t, const std::vector<int64_t>& rows, const std::vector<int64_t>& cols) {
  Cut c;
  if (const auto it = cuts_.find(t.owner.get()); t.owner && it != cuts_.end()) {
    c = it->second;  // a cut of a cut: indices into the source's
    cuts_.erase(it);
  } else {
    c.source = t;
  }
  auto compose = [](std::vector<int64_t>& kept, const std::vector<int64_t>& sel) {
    if (sel.empty()) return;
    std::vector<int64_t> out;
    for (int64_t i : sel) out.push_back(kept.empty() ? i : kept[size_t(i)]);
    kept = std::move(out);
  };
  compose(c.rows, rows);
  compose(c.cols, cols);
  std::vector<int64_t> shape = t.shape;
  if (!rows.empty()) shape[0] = int64_t(rows.size());
  if (!cols.empty()) shape.back() = int64_t(cols.size());
  Tensor out;
  out.name = t.name;
  out.dtype = DType::F32;
  out.shape = std::move(shape);
  out.nbytes = uint64_t(out.numel()) * sizeof(float);
  auto key = std::make_shared<char>();  // identifies the cut; the bytes are made when asked
  out.owner = key;
  cuts_[key.get()] = std::move(c);
  t = std::move(out);
}

std::vector<float> PrunedViews::values(const Tensor& t) const {
  const auto it = t.owner ? cuts_.find(t.owner.get()) : cuts_.end();
  if (it == cuts_.end()) return to_f32(t);
  const Cut& c = it->second;
  const int64_t n = c.source.cols();
  const int64_t rows = c.rows.empty() ? c.source.rows() : int64_t(c.rows.size());
  const int64_t cols = c.cols.empty() ? n : int64_t(c.cols.size());
  std::vector<float> out(size_t(rows * cols)), row(static_cast<size_t>(n));
  for (int64_t i = 0; i < rows; i++) {
    to_f32(c.source, (c.rows.empty() ? i : c.rows[size_t(i)]) * n, n, row.data());
    for (int64_t j = 0; j < cols; j++) out[size_t(i * cols + j)] = row[size_t(c.cols.empty() ? j : c.cols[size_t(j)])];
  }
  release_mapped_pages(c.source);
  return out;
}

namespace {

// Keeps the given rows (dim 0) of a weight or bias.
void keep_rows(Model& m, const std::string& name, const std::vector<int64_t>& rows, PrunedViews* views) {
  Tensor* t = find_tensor(m, name);
  if (!t) return;
  if (views && t->shape.size() == 2) return views->cut(*t, rows, {});
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
void keep_cols(Model& m, const std::string& name, const std::vector<int64_t>& cols, PrunedViews* views) {
  Tensor& t = need(m, name);
  if (views) return views->cut(t, {}, cols);
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

// ‖W[:, j]‖² · E[x_j²] (or · Var[x_j]) per input channel j of weight `name`:
// the energy per token that channel j adds to the output.
std::vector<double> output_energy(const Model& m, const std::string& name, const ChannelStats& st, bool centered) {
  const Tensor* t = m.find(name);
  const auto v = to_f32(*t);
  const int64_t rows = t->rows(), cols = t->cols();
  std::vector<double> e(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) e[size_t(j)] += double(v[size_t(r * cols + j)]) * v[size_t(r * cols + j)];
  for (int64_t j = 0; j < cols; j++) e[size_t(j)] *= st.moment(j, centered);
  return e;
}

// FLAP's bias compensation: the removed input channels' mean contribution
// W[:, j]·E[x_j] becomes (part of) the output bias `bias_name`.
void compensate(Model& m, const std::string& weight, const std::string& bias_name, const ChannelStats& st,
                const std::vector<int64_t>& keep) {
  const Tensor& w = need(m, weight);
  const auto v = to_f32(w);
  const int64_t rows = w.rows(), cols = w.cols();
  std::vector<char> kept(size_t(cols), 0);
  for (int64_t j : keep) kept[size_t(j)] = 1;
  std::vector<float> b(size_t(rows), 0.0f);
  if (const Tensor* old = find_tensor(m, bias_name)) b = to_f32(*old);
  for (int64_t r = 0; r < rows; r++) {
    double acc = 0;
    for (int64_t j = 0; j < cols; j++)
      if (!kept[size_t(j)]) acc += double(v[size_t(r * cols + j)]) * st.mean(j);
    b[size_t(r)] += float(acc);
  }
  if (Tensor* old = find_tensor(m, bias_name))
    *old = make_f32_tensor(bias_name, {rows}, std::move(b));
  else
    m.tensors.push_back(make_f32_tensor(bias_name, {rows}, std::move(b)));
}

// How many of each layer's units (groups or channels) to remove so that
// `total` go overall, lowest score first; a layer keeps at least `min_keep`.
// score[l][u]: unit u of layer l; layers not in `active` are left alone.
std::vector<int64_t> global_allocation(const std::vector<std::vector<double>>& score, const std::vector<bool>& active,
                                       int64_t total, int64_t min_keep) {
  struct Unit {
    double s;
    int64_t layer;
  };
  std::vector<Unit> units;
  for (size_t l = 0; l < score.size(); l++)
    if (active[l])
      for (double s : score[l]) units.push_back({s, int64_t(l)});
  std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) { return a.s < b.s; });
  std::vector<int64_t> removed(score.size(), 0);
  for (const Unit& u : units) {
    if (total <= 0) break;
    const auto l = size_t(u.layer);
    if (int64_t(score[l].size()) - removed[l] <= min_keep) continue;
    removed[l]++, total--;
  }
  return removed;
}

}  // namespace

StructuredOptions parse_structured(const std::string& spec) {
  StructuredOptions o;
  std::stringstream ss(spec);
  std::string item;
  bool any = false;
  while (std::getline(ss, item, ',')) {
    if (item == "global" || item == "bias") {
      (item == "global" ? o.global : o.bias) = true;
      continue;
    }
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      fail("--structured: '{}' is not KEY=VALUE (heads=F, ffn=F, layers=N) or a flag (global, bias)", item);
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

namespace {

// Mean over tokens of ‖h‖² for hidden states h (rows of D).
double mean_energy(const std::vector<float>& h, int64_t D) {
  double e = 0;
  for (float v : h) e += double(v) * v;
  return e / double(std::max<int64_t>(1, int64_t(h.size()) / D));
}

// Mean over tokens of arccos(cos(a_t, b_t))/π.
double angular_distance(const std::vector<float>& a, const std::vector<float>& b, int64_t D) {
  double dist = 0;
  const int64_t n_tok = int64_t(a.size()) / D;
  for (int64_t t = 0; t < n_tok; t++) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t j = 0; j < D; j++) {
      const double x = a[size_t(t * D + j)], y = b[size_t(t * D + j)];
      ab += x * y, aa += x * x, bb += y * y;
    }
    const double cosv = aa > 0 && bb > 0 ? std::clamp(ab / std::sqrt(aa * bb), -1.0, 1.0) : 1.0;
    dist += std::acos(cosv) / M_PI;
  }
  return dist / double(std::max<int64_t>(1, n_tok));
}

// Renumbers the blocks, dropping those not in `keep` (ascending), with the
// per-layer flags (sliding windows, layers without RoPE).
void drop_blocks(Model& m, const std::vector<int64_t>& keep) {
  for (auto* flags : {&m.cfg.layer_swa, &m.cfg.layer_rope}) {
    if (flags->empty()) continue;
    std::vector<uint8_t> kept;
    for (int64_t l : keep) kept.push_back((*flags)[size_t(l)]);
    *flags = std::move(kept);
  }
  std::map<int64_t, int64_t> new_index;
  for (size_t i = 0; i < keep.size(); i++) new_index[keep[i]] = int64_t(i);
  std::vector<Tensor> kept;
  for (auto& t : m.tensors) {
    const int64_t l = layer_of(t.name);
    if (l < 0) {
      kept.push_back(std::move(t));
      continue;
    }
    auto it = new_index.find(l);
    if (it == new_index.end()) continue;
    t.name = "blk." + std::to_string(it->second) + t.name.substr(t.name.find('.', 4));
    kept.push_back(std::move(t));
  }
  m.tensors = std::move(kept);
}

}  // namespace

StructuredReport structured_prune(Model& m, const StructuredOptions& o, const CalibrationOptions& calib,
                                  PrunedViews* views) {
  ModelConfig& c = m.cfg;
  if (!c.uniform()) fail("{}: its layers already differ in size; structured pruning needs a uniform model", m.path);
  if (c.qk_norm_full && o.heads > 0)
    fail("--structured heads={}: {}'s q/k norms span all heads (their RMS would change); prune layers or the "
         "feed-forward only",
         o.heads, c.arch);
  if (c.down_rotation && o.ffn > 0)
    fail("--structured ffn={}: ffn_down's input is rotated online (R4), which mixes every feed-forward channel; "
         "prune heads or layers only",
         o.ffn);
  StructuredReport rep;
  rep.memory.block_f32_bytes = largest_block_f32_bytes(m);
  rep.params_before = m.n_params();
  rep.kv_heads_before = c.n_kv_heads, rep.heads_before = c.n_heads, rep.ffn_before = c.ffn_dim;
  rep.layers_before = c.n_layers;
  const int64_t L = c.n_layers, D = c.dim;
  const int64_t group_q = c.n_heads / c.n_kv_heads;  // query heads per KV head
  if (o.layers >= L) fail("--structured layers={}: the model has {} blocks", o.layers, L);
  const int64_t kept_layers = L - o.layers;
  const int64_t rm_groups = std::llround(o.heads * double(c.n_kv_heads * (o.global ? kept_layers : 1)));
  const int64_t rm_ffn = std::llround(o.ffn * double(c.ffn_dim * (o.global ? kept_layers : 1)));
  // A mixture's routed experts lose rm_expert channels each, the shared expert rm_shared (DeepSeek's shared experts
  // stay whole experts of the new size).
  const int64_t rm_expert = c.moe() ? std::llround(o.ffn * double(c.expert_ffn)) : 0;
  const int64_t rm_shared = c.arch == "deepseek" ? c.shared_ffn / std::max<int64_t>(1, c.expert_ffn) * rm_expert
                                                 : std::llround(o.ffn * double(c.shared_ffn));
  if (c.moe() && o.ffn > 0 && (rm_expert >= c.expert_ffn || rm_expert < 1))
    fail("--structured ffn={}: {} of each expert's {} channels", o.ffn, rm_expert < 1 ? "less than one" : "every one",
         c.expert_ffn);
  if (!o.global && rm_groups >= c.n_kv_heads) fail("--structured heads={}: would remove every KV group", o.heads);
  refuse_factorized(m, "structured pruning");
  for (const auto& t : m.tensors)
    if (t.shape.size() == 2 && t.name.rfind("blk.", 0) == 0 && !is_float_type(t.dtype))
      fail("{}: {} is quantized ({}); prune the float model", m.path, t.name, dtype_name(t.dtype));

  // A mixture: heads and whole blocks go as in a dense model; ffn= cuts the same number of channels from every
  // routed expert (each its own, scored on the rows routed to it: a layer's experts are one stack of one size), the
  // shared expert and the dense blocks; its layers keep one size (per-layer sizes are llama.cpp's deci
  // architecture, which has no experts).
  if (c.moe() && o.ffn > 0 && o.global)
    fail("{}: --structured ffn=,global on a mixture of experts: every layer's experts share one size in GGUF; prune "
         "ffn= without global",
         m.path);
  if (c.moe() && o.ffn > 0 && c.expert_softmax_chosen)
    fail("{}: --structured ffn= on gpt-oss: its experts' gate/up biases are not cut with the channels yet", m.path);
  if (c.attn_sinks && o.heads > 0)
    fail("{}: --structured heads= on gpt-oss: its per-head attention sinks are not cut with the heads yet; use "
         "layers=",
         m.path);
  // llama.cpp sizes the attention of qwen2moe and deepseek files from the width, not from key_length × heads.
  if (c.moe() && o.heads > 0 && c.arch != "llama" && c.arch != "qwen3moe")
    fail("{}: --structured heads= on a {} mixture of experts: llama.cpp's {} files take the attention's size from "
         "the width, so fewer heads would not load there (Mixtral and Qwen3-MoE can); use layers=",
         m.path, c.arch, c.arch);
  if (c.moe() && o.global && o.heads > 0)
    fail("{}: --structured heads=,global would give a mixture of experts' layers different head counts, which GGUF "
         "writes only as llama.cpp's deci architecture (no experts); prune heads without global",
         m.path);
  // One pass over the dense model: channel statistics and block distances.
  LayerwiseCalibrator cal(m, calibration_windows(m, calib));
  rep.calib_tokens = cal.n_tokens();
  std::vector<std::vector<double>> group_score(static_cast<size_t>(L)), ffn_score(static_cast<size_t>(L));
  // Mixtures: each routed expert's channel scores (on its routed rows; by weight alone for an expert no calibration
  // token reached) and the shared expert's.
  std::vector<std::vector<std::vector<double>>> expert_score(static_cast<size_t>(L));
  std::vector<std::vector<double>> shared_score(static_cast<size_t>(L));
  std::vector<ChannelStats> attn_stats(static_cast<size_t>(L)), ffn_stats(static_cast<size_t>(L));
  Progress progress("structured", uint64_t(L));
  for (int64_t l = 0; l < L; l++) {
    ChannelStats& attn_out = attn_stats[size_t(l)];
    ChannelStats& ffn_down = ffn_stats[size_t(l)];
    const bool dense_ffn = !c.layer_moe(l), cut_experts = !dense_ffn && o.ffn > 0;
    std::vector<ChannelStats> routed(cut_experts ? size_t(c.n_experts) : 0);
    ChannelStats shared;
    const LinearObserver obs = [&](LinearSite s, int64_t e, const float* x, int64_t n, int64_t cols) {
      if (s == LinearSite::AttnOut) attn_out.add(x, n, cols);
      if (s == LinearSite::FfnDown && dense_ffn) ffn_down.add(x, n, cols);
      if (s == LinearSite::FfnDown && cut_experts) (e >= 0 ? routed[size_t(e)] : shared).add(x, n, cols);
    };
    const std::vector<float> before = cal.hidden();
    cal.run(l, m.layers[size_t(l)], &obs, true);
    const std::vector<float>& after = cal.hidden();
    rep.block_distance.push_back(angular_distance(before, after, D));
    // Globally, a unit's energy is compared with that of the residual stream
    // it is added to: after RMSNorm, only the relative change matters.
    const double attn_ref = o.global ? std::max(1e-30, mean_energy(before, D)) : 1.0;
    const double ffn_ref = o.global ? std::max(1e-30, mean_energy(after, D)) : 1.0;
    const auto e_o = output_energy(m, blk(l, "attn_output.weight"), attn_out, o.bias);
    auto& gs = group_score[size_t(l)];
    gs.assign(size_t(c.n_kv_heads), 0.0);
    for (int64_t j = 0; j < c.q_dim(); j++) gs[size_t(j / (c.head_dim * group_q))] += e_o[size_t(j)] / attn_ref;
    if (dense_ffn) ffn_score[size_t(l)] = output_energy(m, blk(l, "ffn_down.weight"), ffn_down, o.bias);
    for (int64_t e = 0; e < int64_t(routed.size()); e++) {
      ChannelStats& st = routed[size_t(e)];
      if (st.n == 0) st.add(std::vector<float>(size_t(c.expert_ffn), 1.0f).data(), 1, c.expert_ffn);
      expert_score[size_t(l)].push_back(output_energy(m, expert_tensor_name(blk(l, "ffn_down_exps.weight"), e), st, false));
    }
    if (cut_experts && c.shared_ffn > 0) shared_score[size_t(l)] = output_energy(m, blk(l, "ffn_down_shexp.weight"), shared, false);
    for (double& e : ffn_score[size_t(l)]) e /= ffn_ref;
    release_block_pages(m, l);
    progress.update(uint64_t(l + 1));
  }
  progress.finish();
  // Besides the windows' hidden states, the pass holds one copy of them (`before`).
  rep.memory.activation_bytes = cal.activation_bytes() + cal.hidden().size() * sizeof(float);
  for (const auto& st : attn_stats) rep.memory.statistics_bytes += (st.sum.size() + st.sq.size()) * sizeof(double);
  for (const auto& st : ffn_stats) rep.memory.statistics_bytes += (st.sum.size() + st.sq.size()) * sizeof(double);

  // Blocks: the o.layers least influential go (renumbered at the end).
  const auto keep_blocks = keep_best(rep.block_distance, o.layers);
  std::vector<bool> active(static_cast<size_t>(L), false);
  for (int64_t l : keep_blocks) active[size_t(l)] = true;
  for (int64_t l = 0; l < L; l++)
    if (!active[size_t(l)]) rep.removed_blocks.push_back(l);

  // How many groups and channels each layer loses.
  // A mixture's dense blocks (DeepSeek's first) lose channels; without any, ffn_dim (unused) stays.
  std::vector<int64_t> rm_g(static_cast<size_t>(L), rm_groups),
      rm_f(static_cast<size_t>(L), c.moe() && !c.any_dense_block() ? 0 : rm_ffn);
  if (o.global) {
    rm_g = global_allocation(group_score, active, rm_groups, 1);
    // Kept feed-forward sizes stay multiples of 32 where the model's is, so
    // that Q4_0/Q8_0 blocks still tile ffn_down's rows after pruning.
    const int64_t unit = c.ffn_dim % 32 == 0 && c.ffn_dim >= 64 ? 32 : 1;
    rm_f = global_allocation(ffn_score, active, rm_ffn, unit);
    for (auto& r : rm_f) {
      const int64_t kept = std::max(unit, (c.ffn_dim - r + unit / 2) / unit * unit);
      r = c.ffn_dim - std::min(kept, c.ffn_dim);
    }
  }

  std::vector<int64_t> heads_l, kv_l, ffn_l;
  for (int64_t l : keep_blocks) {
    if (rm_g[size_t(l)] > 0) {
      const auto keep = keep_best(group_score[size_t(l)], rm_g[size_t(l)]);
      std::vector<int64_t> q_rows, kv_rows;
      for (int64_t g : keep) {
        for (int64_t r = g * group_q * c.head_dim; r < (g + 1) * group_q * c.head_dim; r++) q_rows.push_back(r);
        for (int64_t r = g * c.head_dim; r < (g + 1) * c.head_dim; r++) kv_rows.push_back(r);
      }
      if (o.bias) compensate(m, blk(l, "attn_output.weight"), blk(l, "attn_output.bias"), attn_stats[size_t(l)], q_rows);
      keep_rows(m, blk(l, "attn_q.weight"), q_rows, views);
      keep_rows(m, blk(l, "attn_q.bias"), q_rows, views);
      keep_rows(m, blk(l, "attn_k.weight"), kv_rows, views);
      keep_rows(m, blk(l, "attn_k.bias"), kv_rows, views);
      keep_rows(m, blk(l, "attn_v.weight"), kv_rows, views);
      keep_rows(m, blk(l, "attn_v.bias"), kv_rows, views);
      keep_cols(m, blk(l, "attn_output.weight"), q_rows, views);
    }
    if (c.layer_moe(l) && rm_expert > 0) {
      for (int64_t e = 0; e < c.n_experts; e++) {
        const auto keep = keep_best(expert_score[size_t(l)][size_t(e)], rm_expert);
        keep_rows(m, expert_tensor_name(blk(l, "ffn_gate_exps.weight"), e), keep, views);
        keep_rows(m, expert_tensor_name(blk(l, "ffn_up_exps.weight"), e), keep, views);
        keep_cols(m, expert_tensor_name(blk(l, "ffn_down_exps.weight"), e), keep, views);
      }
      if (c.shared_ffn > 0) {
        const auto keep = keep_best(shared_score[size_t(l)], rm_shared);
        keep_rows(m, blk(l, "ffn_gate_shexp.weight"), keep, views);
        keep_rows(m, blk(l, "ffn_up_shexp.weight"), keep, views);
        keep_cols(m, blk(l, "ffn_down_shexp.weight"), keep, views);
      }
    } else if (rm_f[size_t(l)] > 0) {
      const auto keep = keep_best(ffn_score[size_t(l)], rm_f[size_t(l)]);
      if (o.bias) compensate(m, blk(l, "ffn_down.weight"), blk(l, "ffn_down.bias"), ffn_stats[size_t(l)], keep);
      keep_rows(m, blk(l, "ffn_gate.weight"), keep, views);
      keep_rows(m, blk(l, "ffn_up.weight"), keep, views);
      keep_cols(m, blk(l, "ffn_down.weight"), keep, views);
    }
    kv_l.push_back(c.n_kv_heads - rm_g[size_t(l)]);
    heads_l.push_back(kv_l.back() * group_q);
    ffn_l.push_back(c.ffn_dim - rm_f[size_t(l)]);
  }
  if (o.layers > 0) {
    drop_blocks(m, keep_blocks);
    // DeepSeek's dense first blocks stay first: as many as were kept.
    c.n_dense_lead = std::count_if(keep_blocks.begin(), keep_blocks.end(), [&](int64_t l) { return l < c.n_dense_lead; });
    if (!c.layer_dense.empty()) {
      std::vector<uint8_t> dense;
      for (int64_t l : keep_blocks) dense.push_back(c.layer_dense[size_t(l)]);
      c.layer_dense = std::move(dense);
    }
  }
  c.n_layers = kept_layers;
  if (rm_expert > 0) {
    rep.expert_ffn_before = c.expert_ffn;
    c.expert_ffn -= rm_expert;
    c.shared_ffn -= c.shared_ffn > 0 ? rm_shared : 0;
    rep.expert_ffn_after = c.expert_ffn;
  }
  rep.layer_heads = heads_l, rep.layer_kv_heads = kv_l, rep.layer_ffn = ffn_l;
  c.set_layer_dims(std::move(heads_l), std::move(kv_l), std::move(ffn_l));
  c.validate(m.path);
  m.bind();
  rep.kv_heads_after = c.n_kv_heads, rep.heads_after = c.n_heads, rep.ffn_after = c.ffn_dim;
  rep.layers_after = c.n_layers;
  rep.params_after = m.n_params();
  return rep;
}

}  // namespace lmpress
