#include "compress/quantize_model.h"
#include "compress/smooth.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fp16.h"
#include "core/progress.h"
#include "compress/module_select.h"
#include "compress/type_search.h"
#include "kernels/to_f32.h"
#include "model/export.h"
#include "quant/awq.h"
#include "kernels/blocks.h"
#include "quant/block_grid.h"
#include "quant/int_checkpoint.h"
#include "quant/iq_quants.h"
#include "quant/quantize.h"

namespace lmpress {

namespace {

double relative_weight_error(const float* W, const float* Q, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num += double(Q[i] - W[i]) * (Q[i] - W[i]);
    den += double(W[i]) * W[i];
  }
  return den > 0 ? std::sqrt(num / den) : 0.0;
}

std::vector<float> dequantize_all(DType t, const uint8_t* q, int64_t rows, int64_t cols) {
  std::vector<float> y(size_t(rows * cols));
  const uint64_t rb = row_bytes(t, uint64_t(cols));
  for (int64_t r = 0; r < rows; r++) dequantize_row(t, q + r * rb, cols, y.data() + r * cols);
  return y;
}

// An owned tensor holding quantized bytes under the original name and shape.
Tensor owned_tensor(const Tensor& like, DType t, std::vector<uint8_t> bytes) {
  auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  Tensor out;
  out.name = like.name;
  out.dtype = t;
  out.shape = like.shape;
  out.data = buf->data();
  out.nbytes = buf->size();
  out.owner = buf;
  return out;
}

// Calibration statistics of one input site of a block.
struct SiteStats {
  std::vector<float> H;        // sum x xᵀ
  std::vector<double> abs_sum;  // sum |x| per channel
  int64_t n = 0;
  int64_t cols = 0;

  void add(const float* x, int64_t rows, int64_t c) {
    cols = c;
    accumulate_hessian(H, x, rows, c);
    if (abs_sum.empty()) abs_sum.assign(size_t(c), 0.0);
    for (int64_t t = 0; t < rows; t++)
      for (int64_t j = 0; j < c; j++) abs_sum[size_t(j)] += std::fabs(x[t * c + j]);
    n += rows;
  }
  std::vector<float> abs_mean() const {
    std::vector<float> m(abs_sum.size());
    for (size_t j = 0; j < m.size(); j++) m[j] = float(abs_sum[j] / double(std::max<int64_t>(1, n)));
    return m;
  }
  uint64_t bytes() const { return H.size() * sizeof(float) + abs_sum.size() * sizeof(double); }
  std::vector<float> diag() const {
    std::vector<float> d(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; j++) d[size_t(j)] = H[size_t(j * cols + j)];
    return d;
  }
};

class Quantizer {
 public:
  Quantizer(Model& m, const QuantizeOptions& o, QuantizeReport& rep) : m_(m), o_(o), rep_(rep) {
    if (o.compensate) compensator_ = std::make_unique<Compensator>(*o.compensate);
    if (o.int_group) {
      // The blocks' linears take their int-N format (int_rules, else int_group), or stay F16 as everything else
      // (a mixture's routers too: vLLM's gates are unquantized layers).
      std::vector<bool> used(o.int_rules.size(), false);
      const auto selected = o.select.everything() ? std::optional<std::set<std::string>>()
                                                  : selected_linears(m, o.select);
      std::vector<std::string> linears;
      for (int64_t l = 0; l < m.cfg.n_layers; l++)
        for (LinearSite site : kLinearSites)
          for (int64_t e : site_experts(m.cfg))
            for (const auto& w : linear_names(m.cfg, l, site, e))
              if (!is_router(w)) linears.push_back(w);
      for (const auto& w : linears) {
        if (selected && !selected->count(w)) {
          if (o.act_int8)
            fail("{} is left out: W8A8 and W4A8 quantize every linear's activations, so they take no targets or "
                 "ignore list (lm_head aside)",
                 linear_module(w, m.cfg));
          continue;
        }
        std::optional<IntGroupSpec> spec = o.int_group;
        const std::string module = linear_module(w, m.cfg);
        for (size_t i = 0; i < o.int_rules.size(); i++)
          if (o.int_rules[i].matches(w, module)) {
            used[i] = true;
            spec = o.int_rules[i].spec;
            break;
          }
        if (!spec) continue;
        const Tensor& t = m_.tensor(w);
        spec->check_shape(w, t.rows(), t.cols());
        int_linears_[w] = *spec;
      }
      for (size_t i = 0; i < used.size(); i++)
        if (!used[i]) fail("{} matches none of the blocks' linear layers", o.int_rules[i].what);
      if (o.act_int8 && !o.int_rules.empty())
        fail("{}: W8A8 and W4A8 have one weight format for every linear", o.int_rules[0].what);
      check_fused_groups();
      for (const auto& t : m.tensors) plan_[t.name] = t.shape.size() == 2 ? DType::F16 : DType::F32;
    } else {
      plan_ = plan_tensor_types(m, o.mix);
      if (o.target_bpw) {
        if (m.cfg.arch == "phi3")
          fail("--target-bpw: the type search picks each tensor's type alone, and Phi-3's fused attn_qkv / ffn_up "
               "need one type per group; use a file type (--type)");
        check_target_bpw(m, *o.target_bpw, plan_);
        const auto costs = measure_type_costs(m, o.calib, o.imatrix ? &*o.imatrix : nullptr, o.method != QuantMethod::RTN);
        plan_ = plan_for_target_bpw(m, *o.target_bpw, costs, plan_);
      }
      check_plan();
    }
  }

  // vLLM runs q/k/v as one fused layer (qkv_proj) and gate/up as one
  // (gate_up_proj), each with one format: their members must agree.
  void check_fused_groups() const {
    for (int64_t l = 0; l < m_.cfg.n_layers; l++)
      for (const auto& group : {std::vector<const char*>{"attn_q", "attn_k", "attn_v"}, std::vector<const char*>{"ffn_gate", "ffn_up"},
                                std::vector<const char*>{"ffn_gate_shexp", "ffn_up_shexp"}}) {
        std::vector<std::string> names;
        for (const char* g : group)
          if (m_.find(name(l, g) + std::string(".weight"))) names.push_back(name(l, g) + std::string(".weight"));
        for (const auto& n : names) {
          const auto a = int_spec(names.front()), b = int_spec(n);
          if (a.has_value() != b.has_value() || (a && a->name() != b->name()))
            fail("{} is {} but {} is {}: vLLM fuses a block's q/k/v (and gate/up) projections into one layer with one "
                 "format; give them the same",
                 linear_module(names.front(), m_.cfg), a ? a->name() : "unquantized", linear_module(n, m_.cfg),
                 b ? b->name() : "unquantized");
        }
      }
    // vLLM runs a layer's routed experts as one fused MoE layer in the checkpoint's main format (compressed-tensors
    // takes the Linear group's scheme for it, GPTQ and AWQ their base config).
    const IntGroupSpec& main = *o_.int_group;
    for (int64_t l = 0; l < m_.cfg.n_layers; l++)
      for (int64_t e = 0; m_.cfg.layer_moe(l) && e < m_.cfg.n_experts; e++)
        for (LinearSite site : {LinearSite::FfnIn, LinearSite::FfnDown})
          for (const auto& w : linear_names(m_.cfg, l, site, e)) {
            const auto s = int_spec(w);
            if (!s || s->name() != main.name() || s->act_order != main.act_order)
              fail("{} is {}: vLLM runs a layer's routed experts as one fused layer in the checkpoint's main format "
                   "({}), so every expert takes it; per-module formats and targets apply to attention and shared "
                   "experts",
                   linear_module(w, m_.cfg), s ? s->name() : "unquantized", main.name());
          }
  }

  // Refuses, before any work, what a type cannot be quantized with: the types
  // ggml quantizes only with importance weights, and those llama-quantize
  // writes only with an imatrix (requires_imatrix), where the tensor has no
  // imatrix entry (calibrated linears take their calibration statistics),
  // and GPTQ/AWQ onto a type without a block grid.
  void check_plan() const {
    std::set<std::string> linears;
    if (o_.method != QuantMethod::RTN)
      for (int64_t l = 0; l < m_.cfg.n_layers; l++)
        for (LinearSite site : kLinearSites)
          for (int64_t e : site_experts(m_.cfg))
            for (const auto& w : linear_names(m_.cfg, l, site, e)) linears.insert(w);
    for (const auto& [name, t] : plan_) {
      const bool gptq = o_.method == QuantMethod::GPTQ;
      if (linears.count(name) && gptq && o_.gptq.act_order && t == DType::LMP2)
        fail("{}: GPTQ: --act-order is not supported with LMP2 (its 8-value codes follow column order)", name);
      if (linears.count(name) && !(gptq ? gptq_can_target(t) : has_block_grid(t)) && !is_float_type(t))
        fail("{}: --method {} cannot quantize to {} (no block grid for it yet); use --method rtn or another type",
             name, gptq ? "gptq" : "awq", dtype_name(t));
      if ((quantizer_needs_importance(t) || requires_imatrix(name, t, o_.mix)) && !linears.count(name) &&
          importance(name, {}).empty())
        fail("{}: {} needs an importance matrix, as in llama-quantize: pass --imatrix FILE (from `lmpress imatrix` "
             "or llama-imatrix) with an entry for this tensor",
             name, dtype_name(t));
    }
  }

  DType type_of(const std::string& name) const { return plan_.at(name); }
  QuantFormat format_of(const std::string& name) const {
    QuantFormat f;
    f.block = type_of(name);
    if (const auto it = int_linears_.find(name); it != int_linears_.end()) f.group = it->second;
    return f;
  }
  const std::map<std::string, IntGroupTensor>& int_tensors() const { return int_tensors_; }
  // The share of zeros in the int-N linears stored so far when every one is 2:4 sparse, else nothing.
  std::optional<double> two_of_four_share() const {
    if (!all_two_of_four_ || two_of_four_total_ == 0) return std::nullopt;
    return double(two_of_four_zeros_) / double(two_of_four_total_);
  }

  bool is_int_linear(const std::string& name) const { return int_linears_.count(name) > 0; }
  // The int-N format of a linear, nullopt when it stays F16.
  std::optional<IntGroupSpec> int_spec(const std::string& name) const {
    const auto it = int_linears_.find(name);
    return it == int_linears_.end() ? std::nullopt : std::optional<IntGroupSpec>(it->second);
  }

  // RTN into the int-N format, each tensor written as soon as it is rounded
  // (the other tensors are converted by the writer).
  void round_int_linears(ModelWriter& out) {
    for (const auto& [name, spec] : int_linears_) {
      const Tensor& t = m_.tensor(name);
      const auto W = to_f32(t);
      release_mapped_pages(t);
      const auto given = o_.encoded_int.find(name);
      if (given != o_.encoded_int.end() && (given->second.spec.name() != spec.name() || given->second.rows != t.rows() ||
                                            given->second.cols != t.cols()))
        fail("{}: the encoded {} tensor does not fit its planned {}", name, given->second.spec.name(), spec.name());
      store_int(t, W, given != o_.encoded_int.end() ? given->second : round_int(name, W, t.rows(), t.cols()), nullptr);
      out.write(name);
      int_tensors_.erase(name);
    }
  }

  // Importance for a tensor's block scale search: the user's imatrix entry
  // if there is one, else `fallback` (calibration statistics, or none).
  std::vector<float> importance(const std::string& name, std::vector<float> fallback) const {
    return importance_or(o_.imatrix ? &*o_.imatrix : nullptr, name, std::move(fallback));
  }

  // Round to nearest (RTN) into a block type: the imatrix's importance when
  // it has the tensor, and with --clip-search each block's clipping ratio by
  // least importance-weighted squared error.
  void round_to_nearest(const std::string& name, DType dst, const float* f, int64_t rows, int64_t cols,
                        uint8_t* out) const {
    const auto imp = importance(name, {});
    if (o_.clip_search && dst != DType::LMP2) {  // LMP2's encoder searches its scales itself
      // Weight-space error, weighted by the importance: H = diag(importance or 1).
      std::vector<float> H(size_t(cols * cols), 0.0f);
      for (int64_t c = 0; c < cols; c++) H[size_t(c * cols + c)] = imp.empty() ? 1.0f : imp[size_t(c)];
      awq_clip_quantize(f, rows, cols, H, dst, imp.empty() ? nullptr : imp.data(), AwqOptions{}, out);
    } else {
      quantize_rows(dst, f, rows, cols, out, imp.empty() ? nullptr : imp.data());
    }
  }

  // RTN into the int-N format (the imatrix's importance when it has the tensor).
  IntGroupTensor round_int(const std::string& name, const std::vector<float>& W, int64_t rows, int64_t cols) const {
    IntGroupRtnOptions ro;
    ro.clip_search = o_.clip_search;
    const auto imp = importance(name, {});
    return int_group_rtn(W.data(), rows, cols, int_linears_.at(name), imp.empty() ? nullptr : imp.data(), ro);
  }

  Compensator& compensator() { return *compensator_; }

  // Calibrated quantization of every block. Each block is written to `out`
  // once the next block has its inputs, and its tensors in m are then put
  // back to the input's, so that one block's quantized (or, for int-N, f32)
  // tensors are held at a time.
  void calibrate_layers(ModelWriter& out) {
    if (o_.method == QuantMethod::AWQ && !m_.cfg.pre_norms)
      fail("{}: AWQ folds its scales into the norms before attention and feed-forward, which {} has not", m_.path,
           m_.cfg.arch);
    if (o_.method == QuantMethod::AWQ && m_.cfg.ffn_act == FfnAct::SwigluOai)
      fail("{}: AWQ scales down_proj's inputs through up_proj's rows, which gpt-oss's clamped activation (and up's "
           "bias) does not pass through; use --method gptq",
           m_.path);
    LayerwiseCalibrator cal(m_, calibration_windows(m_, o_.calib));
    rep_.calib_tokens = cal.n_tokens();
    Progress progress(o_.method == QuantMethod::GPTQ ? "gptq" : o_.method == QuantMethod::AWQ ? "awq" : "compensate",
                      uint64_t(m_.cfg.n_layers));
    for (int64_t l = 0; l < m_.cfg.n_layers; l++) {
      std::map<std::pair<LinearSite, int64_t>, SiteStats> stats;  // by (site, expert)
      const LinearObserver obs = [&](LinearSite s, int64_t e, const float* x, int64_t n, int64_t cols) {
        stats[{s, e}].add(x, n, cols);
      };
      cal.run(l, m_.layers[size_t(l)], &obs, false);
      // Each linear is read again, alone, when it is compressed.
      release_block_pages(m_, l);
      uint64_t stat_bytes = 0, solver = 0;
      for (auto& [site, st] : stats) {
        symmetrize_hessian(st.H, st.cols);
        stat_bytes += st.bytes();
        if (o_.method != QuantMethod::GPTQ) continue;
        solver = std::max(solver, gptq_solver_bytes(st.cols));
        // LMP2 solves on rotated copies of the Hessian and of the weights besides.
        for (const auto& w : linear_names(m_.cfg, l, site.first, site.second))
          if (!is_int_linear(w) && type_of(w) == DType::LMP2)
            solver = std::max(solver, gptq_solver_bytes(st.cols) +
                                          uint64_t(st.cols * st.cols + m_.tensor(w).rows() * st.cols) * sizeof(float));
      }
      rep_.memory.statistics_bytes = std::max(rep_.memory.statistics_bytes, stat_bytes + solver);
      const std::vector<Tensor> originals = block_tensors(m_, l);
      if (o_.method == QuantMethod::AWQ) apply_awq_scales(l, stats);
      for (LinearSite site : kLinearSites)
        for (int64_t e : site_experts(m_.cfg)) {
          const auto it = stats.find({site, e});
          for (const auto& w : linear_names(m_.cfg, l, site, e)) {
            // An expert no calibration token was routed to: written by RTN (with the imatrix's importance if
            // given), counted in the report.
            if (it == stats.end()) {
              rep_.uncalibrated.push_back(w);
              if (is_int_linear(w)) {
                const Tensor& t = m_.tensor(w);
                const auto W = to_f32(t);
                store_int(t, W, round_int(w, W, t.rows(), t.cols()), nullptr);
              }
              continue;
            }
            quantize_linear(w, it->second);
          }
          if (it != stats.end()) it->second = {};  // done with: the next sites' solvers have its memory
        }
      dequantize_int_linears(l);
      // The next blocks see the compensated weights (as llama.cpp runs them with the adapter), the writer the
      // quantized ones.
      std::vector<Tensor> quantized = compensator_ ? compensator_->swap_in(m_) : std::vector<Tensor>{};
      m_.bind();
      cal.run(l, m_.layers[size_t(l)], nullptr, true);
      restore_block(m_, quantized);
      out.write_block(l);
      restore_block(m_, originals);
      for (const Tensor& t : originals) int_tensors_.erase(t.name);
      progress.update(uint64_t(l + 1));
    }
    progress.finish();
    rep_.memory.activation_bytes = cal.activation_bytes();
  }

 private:
  std::string name(int64_t l, const char* suffix) const { return "blk." + std::to_string(l) + "." + suffix; }

  // AWQ: search and fold the channel scales of the groups sharing an input.
  void apply_awq_scales(int64_t l, std::map<std::pair<LinearSite, int64_t>, SiteStats>& stats) {
    AwqOptions ao;
    // A linear reading the input, with the statistics of the rows it sees (null: all of them, st's).
    struct Reader {
      std::string name;
      SiteStats* st = nullptr;
    };
    // readers are searched over and scaled; `exact` (a mixture's router and shared-expert gate, kept in float,
    // and experts no calibration token reached) are scaled alike but count for nothing in the search.
    auto scale_input = [&](SiteStats& st, const std::vector<Reader>& readers, const std::vector<std::string>& exact,
                           auto fold_into_producer) {
      std::vector<std::vector<float>> Ws;
      std::vector<AwqLinear> group;
      for (const auto& r : readers) Ws.push_back(to_f32(m_.tensor(r.name)));
      for (size_t i = 0; i < Ws.size(); i++) {
        const Tensor& t = m_.tensor(readers[i].name);
        const SiteStats* own = readers[i].st;
        group.push_back({Ws[i].data(), t.rows(), format_of(t.name), own ? &own->H : nullptr,
                         own ? double(own->n) / double(std::max<int64_t>(1, st.n)) : 1.0});
      }
      const auto s = awq_search_scales(group, st.cols, st.abs_mean(), st.H, ao);
      bool identity = true;
      for (float v : s) identity &= v == 1.0f;
      if (identity) return;
      auto scale_columns = [&](const std::string& n, std::vector<float> w) {
        const Tensor& t = m_.tensor(n);
        for (int64_t r = 0; r < t.rows(); r++)
          for (int64_t c = 0; c < st.cols; c++) w[size_t(r * st.cols + c)] *= s[size_t(c)];
        replace_f32(t, std::move(w));
      };
      for (size_t i = 0; i < Ws.size(); i++) scale_columns(readers[i].name, std::move(Ws[i]));
      for (const auto& n : exact) scale_columns(n, to_f32(m_.tensor(n)));
      fold_into_producer(s);
      // The site's inputs are now x / s: rescale the statistics to match.
      std::set<SiteStats*> seen = {&st};
      for (const auto& r : readers)
        if (r.st) seen.insert(r.st);
      for (SiteStats* x : seen)
        for (int64_t a = 0; a < x->cols; a++) {
          x->abs_sum[size_t(a)] /= s[size_t(a)];
          for (int64_t b = 0; b < x->cols; b++) x->H[size_t(a * x->cols + b)] /= s[size_t(a)] * s[size_t(b)];
        }
    };
    auto fold_norm = [&](const char* norm) {
      return [this, l, norm](const std::vector<float>& s) {
        auto w = to_f32(m_.tensor(name(l, norm)));
        for (size_t c = 0; c < w.size(); c++) w[c] /= s[c];
        replace_f32(m_.tensor_slot(name(l, norm)), std::move(w));
      };
    };
    // down's input is SiLU(gate)·up: scaling up's rows by 1/s scales it by 1/s.
    auto fold_up = [&](const std::string& up_name) {
      return [this, up_name](const std::vector<float>& s) {
        const Tensor& up = m_.tensor(up_name);
        auto w = to_f32(up);
        const int64_t cols = up.cols();
        for (int64_t r = 0; r < up.rows(); r++)
          for (int64_t c = 0; c < cols; c++) w[size_t(r * cols + c)] /= s[size_t(r)];
        replace_f32(up, std::move(w));
      };
    };
    auto readers = [](const std::vector<std::string>& names, SiteStats* st) {
      std::vector<Reader> v;
      for (const auto& n : names) v.push_back({n, st});
      return v;
    };
    scale_input(stats.at({LinearSite::AttnIn, -1}), readers(linear_names(m_.cfg, l, LinearSite::AttnIn), nullptr), {},
                fold_norm("attn_norm.weight"));
    if (!m_.cfg.layer_moe(l)) {
      scale_input(stats.at({LinearSite::FfnIn, -1}), readers(linear_names(m_.cfg, l, LinearSite::FfnIn), nullptr), {},
                  fold_norm("ffn_norm.weight"));
      // Not with R4, whose rotation between up and down mixes the channels: down keeps scale 1.
      if (!m_.cfg.down_rotation)
        scale_input(stats.at({LinearSite::FfnDown, -1}), readers({name(l, "ffn_down.weight")}, nullptr), {},
                    fold_up(name(l, "ffn_up.weight")));
      m_.bind();
      return;
    }
    // A mixture: the norm's output feeds the router (and a shared expert's gate), the shared expert and every
    // expert, each expert seeing the rows routed to it; one scale per channel for all of them.
    std::vector<Reader> in;
    std::vector<std::string> exact = {name(l, "ffn_gate_inp.weight")};
    if (m_.cfg.shared_gate()) exact.push_back(name(l, "ffn_gate_inp_shexp.weight"));
    if (m_.cfg.shared_ffn > 0)
      for (const char* n : {"ffn_gate_shexp.weight", "ffn_up_shexp.weight"}) in.push_back({name(l, n), nullptr});
    for (int64_t e = 0; e < m_.cfg.n_experts; e++) {
      const auto it = stats.find({LinearSite::FfnIn, e});
      for (const auto& n : linear_names(m_.cfg, l, LinearSite::FfnIn, e))
        if (it != stats.end())
          in.push_back({n, &it->second});
        else
          exact.push_back(n);
    }
    scale_input(stats.at({LinearSite::FfnIn, -1}), in, exact, fold_norm("ffn_norm.weight"));
    for (int64_t e = 0; e < m_.cfg.n_experts; e++)
      if (const auto it = stats.find({LinearSite::FfnDown, e}); it != stats.end())
        scale_input(it->second, readers(linear_names(m_.cfg, l, LinearSite::FfnDown, e), nullptr), {},
                    fold_up(linear_names(m_.cfg, l, LinearSite::FfnIn, e)[1]));
    if (m_.cfg.shared_ffn > 0)
      scale_input(stats.at({LinearSite::FfnDown, -1}), readers({name(l, "ffn_down_shexp.weight")}, nullptr), {},
                  fold_up(name(l, "ffn_up_shexp.weight")));
    m_.bind();
  }

  void replace_f32(const Tensor& like, std::vector<float> values) {
    Tensor t = make_f32_tensor(like.name, like.shape, std::move(values));
    m_.tensor_slot(like.name) = std::move(t);
  }

  void quantize_linear(const std::string& weight, const SiteStats& st) {
    Tensor& t = m_.tensor_slot(weight);
    const QuantFormat f = format_of(t.name);
    const auto W = to_f32(t);
    // From here on only W is read: an f32 input's block is not held twice.
    release_mapped_pages(t);
    const int64_t rows = t.rows(), cols = t.cols();
    if (f.group) {
      IntGroupTensor q = o_.method == QuantMethod::GPTQ  ? gptq_quantize_int(W.data(), rows, cols, st.H, *f.group, o_.gptq)
                         : o_.method == QuantMethod::AWQ ? awq_clip_quantize_int(W.data(), rows, cols, st.H, *f.group, {})
                                                         : round_int(t.name, W, rows, cols);
      // Its f32 values, which the next block's inputs are computed with, are
      // made once the whole block is quantized (dequantize_int_linears).
      auto deq = compensator_ ? q.dequantize() : std::vector<float>{};
      const std::string name = t.name;
      store_int(t, W, std::move(q), &st.H);
      if (compensator_) rep_.tensors.back().compensated_error = compensator_->add(name, W, std::move(deq), rows, cols, st.H);
      return;
    }
    const DType type = f.block;
    TensorReport r{t.name, t.shape_str(), dtype_name(type), 0, -1};
    if (is_float_type(type)) {
      rep_.tensors.push_back(r);
      return;  // written by the exporter in the planned float type
    }
    std::vector<uint8_t> q(uint64_t(rows) * row_bytes(type, uint64_t(cols)));
    const auto imp = importance(t.name, st.diag());
    if (o_.method == QuantMethod::GPTQ) {
      gptq_quantize(W.data(), rows, cols, st.H, type, imp.data(), o_.gptq, q.data());
    } else if (o_.method == QuantMethod::AWQ) {
      awq_clip_quantize(W.data(), rows, cols, st.H, type, imp.data(), AwqOptions{}, q.data());
    } else {
      round_to_nearest(t.name, type, W.data(), rows, cols, q.data());
    }
    auto deq = dequantize_all(type, q.data(), rows, cols);
    r.weight_error = relative_weight_error(W.data(), deq.data(), rows * cols);
    r.output_error = relative_output_error(W.data(), deq.data(), rows, cols, st.H);
    if (compensator_) r.compensated_error = compensator_->add(t.name, W, std::move(deq), rows, cols, st.H);
    rep_.tensors.push_back(r);
    t = owned_tensor(t, type, std::move(q));
  }

  // The next blocks see this block's quantized weights: its int-N linears
  // as f32, made from the int-N values only now, so that the block's f32
  // copies and the quantizer's work space are not held at once.
  void dequantize_int_linears(int64_t l) {
    for (LinearSite site : kLinearSites)
      for (int64_t e : site_experts(m_.cfg))
        for (const auto& w : linear_names(m_.cfg, l, site, e))
          if (const auto it = int_tensors_.find(w); it != int_tensors_.end())
            replace_f32(m_.tensor_slot(w), it->second.dequantize());
  }

  // The bytes the checkpoint layout stores for q: levels and f16 scales, plus
  // zero points (GPTQ and AWQ always, compressed-tensors when asymmetric),
  // g_idx (GPTQ always, compressed-tensors with act-order) and
  // compressed-tensors' weight_shape; W8A8 and W4A8 (int-quantized) store a
  // byte per weight and the scales.
  uint64_t int_tensor_bytes(const IntGroupTensor& q) const {
    const uint64_t levels = uint64_t(q.rows * q.cols * q.spec.bits / 8), scales = uint64_t(q.n_groups * q.rows * 2);
    const uint64_t zeros = uint64_t(q.n_groups * q.rows * q.spec.bits / 8), g_idx = uint64_t(q.cols * 4);
    switch (o_.checkpoint) {
      case IntCheckpoint::Gptq: return levels + zeros + scales + g_idx;
      case IntCheckpoint::Awq: return levels + zeros + scales;
      case IntCheckpoint::CompressedTensors:
        if (o_.act_int8) return uint64_t(q.rows * q.cols) + scales;
        return levels + scales + (q.spec.sym ? 0 : zeros) + (q.spec.act_order ? g_idx : 0) + 16;
    }
    return 0;
  }

  // Reports an int-N tensor and keeps it for the writer.
  void store_int(const Tensor& t, const std::vector<float>& W, IntGroupTensor q, const std::vector<float>* H) {
    const auto deq = q.dequantize();
    TensorReport r{t.name, t.shape_str(), q.spec.name(), relative_weight_error(W.data(), deq.data(), int64_t(W.size())), -1};
    if (H) r.output_error = relative_output_error(W.data(), deq.data(), q.rows, q.cols, *H);
    rep_.tensors.push_back(r);
    rep_.bytes_out += int_tensor_bytes(q);
    if (const auto zeros = two_of_four_zeros(q)) {
      two_of_four_zeros_ += *zeros;
      two_of_four_total_ += q.rows * q.cols;
    } else {
      all_two_of_four_ = false;
    }
    int_tensors_[t.name] = std::move(q);
  }

  Model& m_;
  const QuantizeOptions& o_;
  QuantizeReport& rep_;
  std::map<std::string, DType> plan_;
  std::map<std::string, IntGroupSpec> int_linears_;  // the int-N linears' formats
  std::map<std::string, IntGroupTensor> int_tensors_;
  std::unique_ptr<Compensator> compensator_;  // --compensate
  bool all_two_of_four_ = true;
  int64_t two_of_four_zeros_ = 0, two_of_four_total_ = 0;
};

// A module name as a Python regex (GPTQ's `dynamic` rules, compressed-tensors'
// re: targets), matched (re.match) against the unfused HF names and vLLM's
// fused ones (qkv_proj, gate_up_proj).
std::string dynamic_pattern(const std::string& module) {
  std::string leaf = module.substr(module.rfind('.') + 1), parent = module.substr(0, module.rfind('.') + 1), out = "";
  for (char c : parent) out += c == '.' ? std::string("\\.") : std::string(1, c);
  if (leaf == "q_proj" || leaf == "k_proj" || leaf == "v_proj") leaf = "(?:" + leaf + "|qkv_proj)";
  if (leaf == "gate_proj" || leaf == "up_proj") leaf = "(?:" + leaf + "|gate_up_proj)";
  return out + leaf + "$";
}

nlohmann::ordered_json ct_weights(const IntGroupSpec& spec) {
  return {{"num_bits", spec.bits},
          {"type", "int"},
          {"symmetric", spec.sym},
          {"strategy", spec.group < 0 ? "channel" : "group"},
          {"group_size", spec.group < 0 ? nlohmann::ordered_json() : nlohmann::ordered_json(spec.group)},
          {"dynamic", false},
          {"actorder", spec.act_order ? nlohmann::ordered_json("group") : nlohmann::ordered_json()}};
}

// The checkpoint's quantization_config: o.int_group for the linears, and the
// per-module formats (o.int_rules, o.select) as each format spells them:
// GPTQ's `dynamic` rules (GPTQModel; vLLM's gptq_utils), AWQ's
// modules_to_not_convert, compressed-tensors' config_groups and ignore.
nlohmann::ordered_json int_checkpoint_config(const Model& m, const QuantizeOptions& o, const Quantizer& q) {
  const IntGroupSpec& spec = *o.int_group;
  std::vector<std::string> unquantized;  // modules left F16
  std::vector<std::pair<std::string, IntGroupSpec>> overridden;  // (module, its format) where not int_group's
  // A mixture's routed experts all take int_group (check_fused_groups); its routers and Qwen2-MoE's shared-expert
  // gates stay F16, named as llm-compressor's MoE recipes ignore them.
  for (int64_t l = 0; l < m.cfg.n_layers; l++) {
    for (LinearSite site : kLinearSites)
      for (const auto& w : linear_names(m.cfg, l, site)) {
        const auto s = q.int_spec(w);
        if (!s) unquantized.push_back(linear_module(w, m.cfg));
        else if (s->name() != spec.name() || s->act_order != spec.act_order) overridden.emplace_back(linear_module(w, m.cfg), *s);
      }
    if (m.cfg.layer_moe(l) && m.cfg.shared_gate())
      unquantized.push_back(linear_module("blk." + std::to_string(l) + ".ffn_gate_inp_shexp.weight", m.cfg));
  }
  const char* method = o.method == QuantMethod::GPTQ ? "gptq" : o.method == QuantMethod::AWQ ? "awq" : "rtn";
  nlohmann::ordered_json qc;
  switch (o.checkpoint) {
    case IntCheckpoint::Gptq: {
      qc = {{"bits", spec.bits},
            {"group_size", spec.group},
            {"desc_act", o.method == QuantMethod::GPTQ && o.gptq.act_order},
            {"sym", spec.sym},
            {"static_groups", false},
            {"true_sequential", false},
            {"damp_percent", o.gptq.damp},
            {"quant_method", "gptq"},
            {"checkpoint_format", "gptq"},
            {"lmpress_method", method}};
      nlohmann::ordered_json dynamic = nlohmann::ordered_json::object();
      for (const auto& mod : unquantized) dynamic["-:" + dynamic_pattern(mod)] = nlohmann::ordered_json::object();
      for (const auto& [mod, s] : overridden)
        dynamic["+:" + dynamic_pattern(mod)] = {
            {"bits", s.bits}, {"group_size", s.group}, {"sym", s.sym}, {"desc_act", o.method == QuantMethod::GPTQ && s.act_order}};
      if (!dynamic.empty()) qc["dynamic"] = dynamic;
      break;
    }
    case IntCheckpoint::Awq: {
      if (!overridden.empty())
        fail("{}: AWQ checkpoints hold one format for every linear; per-module formats are written in GPTQ or "
             "compressed-tensors layout (modules may be left unquantized)",
             overridden.front().first);
      // Substrings of the module names (AutoAWQ and vLLM's is_layer_skipped_awq), vLLM's fused names too.
      nlohmann::ordered_json skip = unquantized.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json::array();
      for (const auto& mod : unquantized) {
        skip.push_back(mod);
        const std::string leaf = mod.substr(mod.rfind('.') + 1), parent = mod.substr(0, mod.rfind('.') + 1);
        if (leaf == "q_proj") skip.push_back(parent + "qkv_proj");
        if (leaf == "gate_proj") skip.push_back(parent + "gate_up_proj");
      }
      qc = {{"quant_method", "awq"},       {"version", "gemm"},
            {"bits", spec.bits},           {"group_size", spec.group},
            {"zero_point", true},          {"modules_to_not_convert", skip},
            {"lmpress_method", method}};
      break;
    }
    case IntCheckpoint::CompressedTensors: {
      // W8A8 / W4A8: the INT8_W8A8 and INT8_W4A8 presets' dynamic per-token activations
      // (compressed-tensors quantization/quant_scheme.py), stored int-quantized as llm-compressor does.
      const nlohmann::ordered_json act =
          o.act_int8 ? nlohmann::ordered_json{{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"strategy", "token"},
                                              {"dynamic", true}}
                     : nlohmann::ordered_json();
      nlohmann::ordered_json groups = {
          {"group_0", {{"targets", {"Linear"}}, {"weights", ct_weights(spec)}, {"input_activations", act}, {"output_activations", nullptr}}}};
      // Module names are matched before the class target (vLLM's find_matched_target): one group per other format.
      std::vector<std::pair<std::string, nlohmann::ordered_json>> by_format;  // (spec name, group)
      for (const auto& [mod, s] : overridden) {
        const std::string key = s.name() + (s.act_order ? "-actorder" : "");
        auto it = std::find_if(by_format.begin(), by_format.end(), [&](const auto& g) { return g.first == key; });
        if (it == by_format.end()) {
          by_format.emplace_back(key, nlohmann::ordered_json{{"targets", nlohmann::ordered_json::array()},
                                                             {"weights", ct_weights(s)},
                                                             {"input_activations", nullptr},
                                                             {"output_activations", nullptr}});
          it = by_format.end() - 1;
        }
        // A regex that also matches vLLM's fused qkv_proj / gate_up_proj: vLLM matches a fused layer's own
        // name before the class target Linear, and only then its shards.
        it->second["targets"].push_back("re:" + dynamic_pattern(mod));
      }
      for (size_t i = 0; i < by_format.size(); i++) groups["group_" + std::to_string(i + 1)] = by_format[i].second;
      nlohmann::ordered_json ignore = {"lm_head"};
      for (const auto& mod : unquantized) ignore.push_back(mod);
      qc = {{"quant_method", "compressed-tensors"},
            {"format", o.act_int8 ? "int-quantized" : "pack-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups", groups},
            {"ignore", ignore},
            {"kv_cache_scheme", nullptr},
            {"sparsity_config", nlohmann::ordered_json::object()}};
      break;
    }
  }
  return qc;
}

// Options that write the model as a Hugging Face directory whose block
// linears are int-N tensors in the checkpoint layout o.checkpoint names
// (GPTQ: qweight/qzeros/scales/g_idx; AWQ: qweight/qzeros/scales;
// compressed-tensors: weight_packed/weight_scale/[weight_zero_point]/
// weight_shape/[weight_g_idx]), packed from q's int-N values when each is
// written, with the format's quantization_config recorded.
ExportOptions int_checkpoint_export_options(const Model& m, const QuantizeOptions& o, const Quantizer& q) {
  const IntCheckpoint format = o.checkpoint;
  ExportOptions eo;
  eo.dtype = DType::F16;
  eo.name = o.name;
  eo.recipe = o.recipe;
  const bool act_int8 = o.act_int8;
  eo.hf_replace = [&m, &q, format, act_int8](const Tensor& t, const std::string& hf_name) {
    std::vector<TensorToWrite> out;
    const auto int_spec = q.int_spec(t.name);
    if (!int_spec) return out;
    const IntGroupSpec spec = *int_spec;
    const std::string prefix = hf_name.substr(0, hf_name.size() - std::string(".weight").size());
    const int64_t rows = t.rows(), cols = t.cols(), n_groups = cols / spec.group_size(cols);
    // q and k rows (output features) in HF's RoPE pairing: permute the
    // levels', scales' and zeros' rows before packing.
    const int64_t heads = rope_heads_to_permute(m, t, RopeLayout::Halves);
    // The values in HF row order, made once, when the first tensor is written.
    auto values = std::make_shared<std::optional<IntGroupTensor>>();
    auto get = [&m, &q, name = t.name, heads, values]() -> const IntGroupTensor& {
      if (*values) return **values;
      const auto it = q.int_tensors().find(name);
      if (it == q.int_tensors().end()) fail("internal: {} has no int-N values to write", name);
      IntGroupTensor v = it->second;
      auto permute = [&](auto& vec, int64_t row_elems) {
        using E = typename std::decay_t<decltype(vec)>::value_type;
        auto bytes = permute_rope_rows(reinterpret_cast<const uint8_t*>(vec.data()), heads, m.cfg.head_dim,
                                       uint64_t(row_elems) * sizeof(E), m.cfg.rope_layout, RopeLayout::Halves);
        std::memcpy(vec.data(), bytes.data(), bytes.size());
      };
      if (heads) {
        permute(v.q, v.cols);
        permute(v.scale, v.n_groups);
        permute(v.zero, v.n_groups);
      }
      return values->emplace(std::move(v));
    };
    auto as_bytes = [](const auto& v) {
      const auto* b = reinterpret_cast<const uint8_t*>(v.data());
      return std::vector<uint8_t>(b, b + v.size() * sizeof(v[0]));
    };
    auto as_f16 = [as_bytes](const std::vector<float>& sc) {
      std::vector<uint16_t> h(sc.size());
      for (size_t i = 0; i < h.size(); i++) h[i] = f32_to_f16(sc[i]);
      return as_bytes(h);
    };
    auto add = [&](const std::string& name, DType d, std::vector<int64_t> shape, std::function<std::vector<uint8_t>()> produce) {
      TensorToWrite tw;
      tw.meta.name = name;
      tw.meta.dtype = d;
      tw.meta.shape = std::move(shape);
      tw.meta.nbytes = uint64_t(tw.meta.numel()) * dtype_info(d).block_bytes;
      tw.produce = std::move(produce);
      out.push_back(std::move(tw));
    };
    switch (format) {
      case IntCheckpoint::Gptq:
        add(prefix + ".qweight", DType::I32, {cols * spec.bits / 32, rows}, [=] { return as_bytes(pack_gptq(get()).qweight); });
        add(prefix + ".qzeros", DType::I32, {n_groups, rows * spec.bits / 32}, [=] { return as_bytes(pack_gptq(get()).qzeros); });
        add(prefix + ".scales", DType::F16, {n_groups, rows}, [=] { return as_f16(pack_gptq(get()).scales); });
        add(prefix + ".g_idx", DType::I32, {cols}, [=] { return as_bytes(pack_gptq(get()).g_idx); });
        break;
      case IntCheckpoint::Awq:
        add(prefix + ".qweight", DType::I32, {cols, rows / 8}, [=] { return as_bytes(pack_awq(get()).qweight); });
        add(prefix + ".qzeros", DType::I32, {n_groups, rows / 8}, [=] { return as_bytes(pack_awq(get()).qzeros); });
        add(prefix + ".scales", DType::F16, {n_groups, rows}, [=] { return as_f16(pack_awq(get()).scales); });
        break;
      case IntCheckpoint::CompressedTensors: {
        if (act_int8) {  // int-quantized: signed values (int8, or int4 in [-8, 7]) a byte each, scales [out, groups]
          add(prefix + ".weight", DType::I8, {rows, cols}, [=] {
            const IntGroupTensor& v = get();
            std::vector<int8_t> w(v.q.size());
            for (int64_t r = 0; r < rows; r++)
              for (int64_t c = 0; c < cols; c++)
                w[size_t(r * cols + c)] =
                    int8_t(int(v.q[size_t(r * cols + c)]) - int(v.zero[size_t(r * v.n_groups + v.g_idx[size_t(c)])]));
            return as_bytes(w);
          });
          add(prefix + ".weight_scale", DType::F16, {rows, n_groups}, [=] { return as_f16(get().scale); });
          break;
        }
        const int64_t per = 32 / spec.bits;
        add(prefix + ".weight_packed", DType::I32, {rows, (cols + per - 1) / per},
            [=] { return as_bytes(pack_compressed_tensors(get()).weight_packed); });
        add(prefix + ".weight_scale", DType::F16, {rows, n_groups}, [=] { return as_f16(get().scale); });
        if (!spec.sym)
          add(prefix + ".weight_zero_point", DType::I32, {(rows + per - 1) / per, n_groups},
              [=] { return as_bytes(pack_compressed_tensors(get()).zero_point); });
        add(prefix + ".weight_shape", DType::I64, {2}, [=] { return as_bytes(std::vector<int64_t>{rows, cols}); });
        if (spec.act_order) add(prefix + ".weight_g_idx", DType::I32, {cols}, [=] { return as_bytes(get().g_idx); });
        break;
      }
    }
    return out;
  };
  eo.hf_quantization_config = int_checkpoint_config(m, o, q).dump();
  return eo;
}

// --compensate's adapter, beside the output.
void write_adapter(const Model& m, const QuantizeOptions& o, Quantizer& q, QuantizeReport& rep) {
  if (!o.compensate) return;
  rep.adapter = q.compensator().write(m);
}

}  // namespace

QuantizeReport quantize_model(Model& m, const std::string& out_path, const QuantizeOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  map_large_buffers();
  QuantizeReport rep;
  rep.n_params = m.n_params();
  rep.bytes_in = m.n_bytes();
  refuse_factorized(m, "quantize");
  if (!o.allow_requantize) {
    // A tensor that rounding to nearest leaves in its own type is copied as it is, not requantized (an MXFP4
    // checkpoint's experts under mxfp4_moe).
    std::map<std::string, DType> kept;
    if (o.method == QuantMethod::RTN && !o.int_group && !o.target_bpw && !o.smooth_alpha && !o.rotate && !o.compensate)
      kept = plan_tensor_types(m, o.mix);
    for (const auto& t : m.tensors) {
      if (!is_quantizable(t) || is_float_type(t.dtype)) continue;
      const auto it = kept.find(t.name);
      if (it != kept.end() && it->second == file_type(t.dtype)) continue;
      fail("{}: {} is already quantized ({}); requantizing loses quality, pass --allow-requantize to do it anyway",
           m.path, t.name, dtype_name(file_type(t.dtype)));
    }
  }
  if (o.smooth_alpha) smooth_model(m, o.calib, *o.smooth_alpha);
  if (o.rotate) rotate_model(m, *o.rotate);
  // An imatrix's coverage of the experts: those its calibration tokens reached.
  if (o.imatrix && m.cfg.moe())
    for (const auto& t : m.tensors)
      if (stacked_expert_name(t.name)) {
        rep.expert_tensors++;
        const auto it = o.imatrix->entries.find(t.name);
        rep.expert_tensors_with_data += it != o.imatrix->entries.end() && it->second.count > 0;
      }
  if (o.compensate) check_compensation(m, *o.compensate);
  Quantizer q(m, o, rep);
  rep.memory.block_f32_bytes = largest_block_f32_bytes(m);
  if (o.int_group) {
    const auto out = ModelWriter::hf(m, out_path, int_checkpoint_export_options(m, o, q));
    if (o.method == QuantMethod::RTN && !o.compensate)
      q.round_int_linears(*out);
    else
      q.calibrate_layers(*out);
    // Weight-only compressed-tensors of a 2:4 model say so (a `dense` sparsity_config: the tensors as they are).
    // Not with W8A8: vLLM sends 2:4 int8 layers with a sparsity_config to its removed Sparse24 kernels
    // (docs/compressed-tensors-format.md), so those load as plain int-quantized.
    if (o.checkpoint == IntCheckpoint::CompressedTensors && !o.act_int8)
      if (const auto share = q.two_of_four_share())
        out->set_quantization_config_member(
            "sparsity_config", nlohmann::ordered_json{{"format", "dense"},
                                                      {"sparsity_structure", "2:4"},
                                                      {"targets", {"Linear"}},
                                                      {"ignore", {"lm_head"}},
                                                      {"global_sparsity", *share}}
                                   .dump());
    out->commit();
    write_adapter(m, o, q, rep);
    for (const auto& t : m.tensors)  // the int-N linears were counted as they were stored
      if (!q.is_int_linear(t.name)) rep.bytes_out += uint64_t(t.numel()) * (t.shape.size() == 2 ? 2 : 4);
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rep.memory.peak_rss = peak_rss_bytes();
    return rep;
  }

  ExportOptions eo;
  eo.name = o.name;
  eo.recipe = o.recipe;
  eo.file_type = o.mix.preset.llama_ftype;
  if (o.target_bpw) {
    // Record the file type of the type holding the most weights.
    std::map<DType, int64_t> weights;
    for (const auto& t : m.tensors)
      if (is_quantizable(t)) weights[q.type_of(t.name)] += t.numel();
    const auto top = std::max_element(weights.begin(), weights.end(),
                                      [](const auto& a, const auto& b) { return a.second < b.second; });
    if (top != weights.end())
      if (const auto p = preset_for_base(top->first)) eo.file_type = p->llama_ftype;
  }
  eo.type_of = [&q](const Tensor& t) { return q.type_of(t.name); };
  // Tensors still unquantized here (all of them for RTN; embeddings and the
  // output matrix otherwise) are rounded to nearest, with importance when known.
  std::mutex mu;
  eo.quantize = [&](const Tensor& src, DType dst, const float* f, uint8_t* out) {
    const int64_t rows = src.rows(), cols = src.cols();
    const auto given = o.encoded.find(src.name);
    if (given == o.encoded.end()) {
      q.round_to_nearest(src.name, dst, f, rows, cols, out);
    } else {
      if (given->second.type != dst || given->second.bytes.size() != size_t(rows) * row_bytes(dst, uint64_t(cols)))
        fail("{}: the encoded tensor ({}) is not {} rows of its planned {}", src.name, dtype_name(given->second.type),
             rows, dtype_name(dst));
      std::memcpy(out, given->second.bytes.data(), given->second.bytes.size());
    }
    const auto deq = dequantize_all(dst, out, rows, cols);
    std::lock_guard<std::mutex> lock(mu);
    rep.tensors.push_back({src.name, src.shape_str(), dtype_name(dst), relative_weight_error(f, deq.data(), rows * cols), -1});
  };
  const auto out = ModelWriter::gguf(m, out_path, eo);
  if (o.method != QuantMethod::RTN || o.compensate) q.calibrate_layers(*out);
  out->commit();
  write_adapter(m, o, q, rep);
  for (const auto& t : m.tensors) {
    const DType d = q.type_of(t.name);
    rep.bytes_out += uint64_t(t.rows()) * row_bytes(d, uint64_t(t.cols()));
  }
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rep.memory.peak_rss = peak_rss_bytes();
  return rep;
}

}  // namespace lmpress
