#include "compress/low_rank_model.h"

#include "compress/module_select.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <queue>
#include <set>

#include "core/error.h"
#include "core/fp16.h"
#include "core/low_rank_tensor.h"
#include "core/progress.h"
#include "kernels/blocks.h"
#include "kernels/to_f32.h"
#include "model/export.h"
#include "quant/gptq.h"
#include "quant/low_rank.h"
#include "quant/quantize.h"

namespace lmpress {

LowRankMethod parse_low_rank_method(const std::string& s) {
  if (s == "svd") return LowRankMethod::Svd;
  if (s == "asvd") return LowRankMethod::Asvd;
  if (s == "svd-llm") return LowRankMethod::SvdLlm;
  fail("--method '{}': svd, asvd or svd-llm", s);
}

const char* low_rank_method_name(LowRankMethod m) {
  return m == LowRankMethod::Svd ? "svd" : m == LowRankMethod::Asvd ? "asvd" : "svd-llm";
}

int64_t low_rank_for(const LowRankOptions& o, const std::string& name, int64_t out, int64_t in) {
  if (o.rank > 0) {
    if (o.rank >= std::min(out, in))
      fail("--rank {}: {} is [{}, {}]; a rank must be below min(rows, cols) = {}", o.rank, name, out, in,
           std::min(out, in));
    if (o.rank * (out + in) >= out * in)
      fail("--rank {}: factors of {} [{}, {}] would hold {} values, not fewer than its {}", o.rank, name, out, in,
           o.rank * (out + in), out * in);
    return o.rank;
  }
  const double keep = (1.0 - o.ratio) * double(out) * double(in);
  const int64_t r = std::max<int64_t>(1, int64_t(std::floor(keep / double(out + in))));
  const int64_t unit = low_rank_unit(o.factor_type);
  return r >= unit ? r - r % unit : r;
}

int64_t low_rank_unit(DType factor_type) {
  return is_float_type(factor_type) ? 1 : int64_t(dtype_info(factor_type).block_elems);
}

std::vector<int64_t> allocate_ranks(const std::vector<std::vector<double>>& sigma,
                                    const std::vector<std::pair<int64_t, int64_t>>& shapes, int64_t budget,
                                    int64_t unit) {
  const size_t n = sigma.size();
  std::vector<int64_t> rank(n, 1);
  std::vector<double> total(n, 0.0);
  int64_t used = 0;
  for (size_t i = 0; i < n; i++) {
    for (double s : sigma[i]) total[i] += s * s;
    used += shapes[i].first + shapes[i].second;
  }
  // A rank's next step: to `unit`, then by `unit` (so that ranks above 1 fill the factor type's blocks); a linear
  // too small for one block of rank steps by 1, as low_rank_for keeps such ranks as computed.
  std::vector<int64_t> units(n, 1);
  for (size_t i = 0; i < n; i++) {
    const auto [out, in] = shapes[i];
    if (unit < std::min(out, in) && unit * (out + in) < out * in) units[i] = unit;
  }
  const auto step_to = [&units](size_t i, int64_t r) { return r < units[i] ? units[i] : r + units[i]; };
  // (gain per parameter, linear): the next step's share of its linear's error.
  std::priority_queue<std::pair<double, size_t>> next;
  const auto push = [&](size_t i) {
    const auto [out, in] = shapes[i];
    const int64_t r = rank[i], to = step_to(i, r);
    if (to > int64_t(sigma[i].size()) || to >= std::min(out, in) || to * (out + in) >= out * in) return;
    double gain = 0;
    for (int64_t k = r; k < to; k++) gain += sigma[i][size_t(k)] * sigma[i][size_t(k)];
    next.push({total[i] > 0 ? gain / total[i] / double((to - r) * (out + in)) : 0.0, i});
  };
  for (size_t i = 0; i < n; i++) push(i);
  while (!next.empty()) {
    const size_t i = next.top().second;
    next.pop();
    const int64_t to = step_to(i, rank[i]), cost = (to - rank[i]) * (shapes[i].first + shapes[i].second);
    if (used + cost > budget) continue;  // a cheaper step may still fit
    rank[i] = to;
    used += cost;
    push(i);
  }
  return rank;
}

namespace {

// The values a factor of `rows` × `cols` holds once written as t (the writer
// stores a block type's rows that do not fill its blocks as F16).
// A factor as the file stores it, and (in *values) what it computes. Block
// types keep their quantized bytes, so the writer copies them instead of
// quantizing the dequantized values again (not idempotent for the k-quants);
// float types, and rows the type's blocks do not divide (the writer's F16
// fallback), are f32 holding the values rounded as stored.
Tensor stored_factor(const std::string& name, DType t, std::vector<float> v, int64_t rows, int64_t cols,
                     std::vector<float>* values) {
  if (t != DType::F32 && !is_float_type(t) && cols % dtype_info(t).block_elems == 0) {
    const uint64_t rb = row_bytes(t, uint64_t(cols));
    std::vector<uint8_t> q(uint64_t(rows) * rb);
    quantize_rows(t, v.data(), rows, cols, q.data());
    for (int64_t r = 0; r < rows; r++) dequantize_row(t, q.data() + r * rb, cols, v.data() + r * cols);
    *values = v;
    return make_owned_tensor(name, t, {rows, cols}, std::move(q));
  }
  if (t != DType::F32)
    for (float& x : v) x = t == DType::BF16 ? bf16_to_f32(f32_to_bf16(x)) : f16_to_f32(f32_to_f16(x));
  *values = v;
  return make_f32_tensor(name, {rows, cols}, std::move(v));
}

// A composite of data-less factors: what the file's header plans before the values exist.
Tensor planned(const std::string& name, int64_t out, int64_t in, int64_t rank) {
  Tensor a, b;
  const auto [an, bn] = low_rank_part_names(name);
  a.name = an, a.shape = {rank, in}, a.nbytes = uint64_t(rank * in) * sizeof(float);
  b.name = bn, b.shape = {out, rank}, b.nbytes = uint64_t(out * rank) * sizeof(float);
  return make_low_rank_tensor(name, a, b);
}

// One block's calibration statistics per site: H = XᵀX and Σ|x_j| (ASVD), over `rows` inputs.
struct BlockStats {
  std::map<LinearSite, std::vector<float>> H;
  std::map<LinearSite, std::vector<double>> abs_sum;
  std::map<LinearSite, int64_t> rows;
  LinearObserver observer() {
    return [this](LinearSite s, int64_t, const float* x, int64_t n, int64_t c) {
      accumulate_hessian(H[s], x, n, c);
      auto& a = abs_sum[s];
      a.resize(size_t(c), 0.0);
      for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < c; j++) a[size_t(j)] += std::fabs(x[t * c + j]);
      rows[s] += n;
    };
  }
  void finish() {
    for (auto& [s, h] : H) symmetrize_hessian(h, int64_t(abs_sum[s].size()));
  }
  // ASVD's S = diag(mean|x_j|^α), floored at 1e-6 of its largest so unused channels divide safely.
  std::vector<float> asvd_scales(LinearSite s, double alpha) const {
    const auto& a = abs_sum.at(s);
    const double n = double(std::max<int64_t>(1, rows.at(s)));
    std::vector<float> v(a.size());
    float vmax = 0;
    for (size_t j = 0; j < a.size(); j++) vmax = std::max(vmax, v[j] = float(std::pow(a[j] / n, alpha)));
    for (float& x : v) x = std::max(x, vmax > 0 ? 1e-6f * vmax : 1.0f);
    return v;
  }
};

// W·diag(s), W [out, in].
std::vector<float> scale_columns(std::vector<float> W, int64_t out, int64_t in, const std::vector<float>& s) {
  for (int64_t i = 0; i < out; i++)
    for (int64_t j = 0; j < in; j++) W[size_t(i * in + j)] *= s[size_t(j)];
  return W;
}

class Factorizer {
 public:
  Factorizer(Model& m, const LowRankOptions& o, LowRankReport& rep) : m_(m), o_(o), rep_(rep) {}

  // Block l's linears to factorize: those the options' targets select.
  std::vector<std::string> linears(int64_t l) const {
    std::vector<std::string> v;
    for (LinearSite site : kLinearSites)
      for (const auto& w : linear_names(m_.cfg, l, site))
        if (!selected_ || selected_->count(w)) v.push_back(w);
    return v;
  }

  void check() {
    refuse_experts(m_, "low-rank compression");
    if (m_.cfg.arch == "phi3")
      fail("{}: phi3 files hold q/k/v and gate/up as fused tensors, which have no factorized form; lowrank writes "
           "separate projections only",
           m_.path);
    if (!(o_.ratio > 0 && o_.ratio < 1) && o_.rank <= 0) fail("lowrank: give --ratio R in (0, 1) or --rank r");
    if (o_.method == LowRankMethod::Asvd && !(o_.alpha > 0 && o_.alpha <= 1))
      fail("--alpha {}: ASVD's exponent is in (0, 1]", o_.alpha);
    if (!is_float_type(o_.factor_type) && !has_quantizer(o_.factor_type))
      fail("--factor-type {}: lmpress cannot write it (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, the k-quants)",
           dtype_name(o_.factor_type));
    if (!o_.select.everything()) selected_ = selected_linears(m_, o_.select);
    for (int64_t l = 0; l < m_.cfg.n_layers; l++)
      for (const auto& w : linears(l)) {
        const Tensor& t = m_.tensor(w);
        if (t.dtype == DType::LOW_RANK) fail("{}: {} is already factorized", m_.path, w);
        if (!is_float_type(t.dtype))
          fail("{}: {} is quantized ({}); factorize the float model (--factor-type sets the factors' type)", m_.path, w,
               dtype_name(t.dtype));
        ranks_[w] = low_rank_for(o_, w, t.rows(), t.cols());
      }
  }

  // --global: the ranks from every linear's spectrum on the dense model's
  // calibration inputs (one pass over the blocks before the factorizing one).
  void allocate_global() {
    if (!o_.global) return;
    if (o_.rank > 0) fail("--global shares one parameter budget by --ratio; it does not take --rank");
    const bool calibrated = o_.method != LowRankMethod::Svd;
    std::unique_ptr<LayerwiseCalibrator> cal;
    if (calibrated) cal = std::make_unique<LayerwiseCalibrator>(m_, calibration_windows(m_, o_.calib));
    std::vector<std::string> names;
    std::vector<std::vector<double>> sigma;
    std::vector<std::pair<int64_t, int64_t>> shapes;
    double dense = 0;
    Progress progress("spectra", uint64_t(m_.cfg.n_layers));
    for (int64_t l = 0; l < m_.cfg.n_layers; l++) {
      const BlockStats st = block_stats(cal.get(), l, true);  // the dense model's inputs
      for (LinearSite site : kLinearSites)
        for (const auto& w : linear_names(m_.cfg, l, site)) {
          if (!ranks_.count(w)) continue;
          const Tensor& t = m_.tensor(w);
          names.push_back(w);
          shapes.push_back({t.rows(), t.cols()});
          sigma.push_back(spectrum(t, calibrated ? &st : nullptr, site));
          dense += double(t.rows() * t.cols());
        }
      progress.update(uint64_t(l + 1));
    }
    progress.finish();
    const std::vector<int64_t> r =
        allocate_ranks(sigma, shapes, int64_t((1.0 - o_.ratio) * dense), low_rank_unit(o_.factor_type));
    for (size_t i = 0; i < names.size(); i++) ranks_[names[i]] = r[i];
  }

  // The writer's plan: each linear as its factors' shapes, written as factor_type.
  std::unique_ptr<ModelWriter> writer(const std::string& out_path) {
    std::vector<Tensor> originals;
    for (const auto& [w, r] : ranks_) {
      Tensor& t = m_.tensor_slot(w);
      originals.push_back(t);
      t = planned(w, t.rows(), t.cols(), r);
    }
    ExportOptions eo;
    eo.name = o_.name;
    eo.recipe = o_.recipe;
    eo.type_of = [this](const Tensor& t) {
      // A factor (B comes under its weight's name) takes factor_type; the rest keep their types.
      if (t.name.ends_with(".lr_a") || ranks_.count(t.name)) return o_.factor_type;
      return file_type(t.dtype);
    };
    auto out = ModelWriter::gguf(m_, out_path, eo);
    for (auto& t : originals) m_.tensor_slot(t.name) = t;
    return out;
  }

  void run(ModelWriter& out) {
    const bool calibrated = o_.method != LowRankMethod::Svd;
    std::unique_ptr<LayerwiseCalibrator> cal;
    if (calibrated) {
      cal = std::make_unique<LayerwiseCalibrator>(m_, calibration_windows(m_, o_.calib));
      rep_.calib_tokens = cal->n_tokens();
    }
    Progress progress(low_rank_method_name(o_.method), uint64_t(m_.cfg.n_layers));
    for (int64_t l = 0; l < m_.cfg.n_layers; l++) {
      const BlockStats st = block_stats(cal.get(), l, false);
      const std::vector<Tensor> originals = block_tensors(m_, l);
      for (LinearSite site : kLinearSites)
        for (const auto& w : linear_names(m_.cfg, l, site))
          if (ranks_.count(w)) factorize(m_.tensor_slot(w), calibrated ? &st : nullptr, site);
      m_.bind();
      if (calibrated) cal->run(l, m_.layers[size_t(l)], nullptr, true);  // the next block sees this one factorized
      out.write_block(l);
      restore_block(m_, originals);
      progress.update(uint64_t(l + 1));
    }
    progress.finish();
  }

 private:
  // Block l's statistics on the calibrator's inputs (none without one); advance: the block's outputs feed the next.
  BlockStats block_stats(LayerwiseCalibrator* cal, int64_t l, bool advance) {
    BlockStats st;
    if (!cal) return st;
    const LinearObserver obs = st.observer();
    cal->run(l, m_.layers[size_t(l)], &obs, advance);
    st.finish();
    return st;
  }

  // The singular values the method truncates for linear t (block stats st, or null for svd).
  std::vector<double> spectrum(const Tensor& t, const BlockStats* st, LinearSite site) const {
    const std::vector<float> W = to_f32(t);
    if (o_.method == LowRankMethod::Asvd)
      return weighted_singular_values(scale_columns(W, t.rows(), t.cols(), st->asvd_scales(site, o_.alpha)).data(),
                                      t.rows(), t.cols(), nullptr);
    return weighted_singular_values(W.data(), t.rows(), t.cols(),
                                    o_.method == LowRankMethod::SvdLlm ? &st->H.at(site) : nullptr);
  }

  void factorize(Tensor& t, const BlockStats* st, LinearSite site) {
    const int64_t out = t.rows(), in = t.cols(), r = ranks_.at(t.name);
    const std::vector<float>* H = st ? &st->H.at(site) : nullptr;
    const std::vector<float> W = to_f32(t);
    LowRankFactors f;
    if (o_.method == LowRankMethod::Asvd) {
      const std::vector<float> s = st->asvd_scales(site, o_.alpha);
      f = weighted_low_rank(scale_columns(W, out, in, s).data(), out, in, nullptr, r);
      for (int64_t k = 0; k < r; k++)
        for (int64_t j = 0; j < in; j++) f.a[size_t(k * in + j)] /= s[size_t(j)];
    } else {
      f = weighted_low_rank(W.data(), out, in, o_.method == LowRankMethod::SvdLlm ? H : nullptr, r);
    }
    const auto [an, bn] = low_rank_part_names(t.name);
    Tensor a = stored_factor(an, o_.factor_type, std::move(f.a), r, in, &f.a);
    Tensor b = stored_factor(bn, o_.factor_type, std::move(f.b), out, r, &f.b);
    const std::vector<float> BA = f.product();
    LowRankTensor rt{t.name, t.shape_str(), r, out * in, r * (out + in), 0};
    rt.error = weighted_sq_error(W.data(), BA.data(), out, in, H) /
               std::max(1e-300, weighted_sq_error(W.data(), std::vector<float>(W.size(), 0.0f).data(), out, in, H));
    rep_.tensors.push_back(rt);
    t = make_low_rank_tensor(t.name, std::move(a), std::move(b));
  }

  Model& m_;
  const LowRankOptions& o_;
  LowRankReport& rep_;
  std::map<std::string, int64_t> ranks_;  // the linears factorized
  std::optional<std::set<std::string>> selected_;  // nullopt: every linear
};

}  // namespace

LowRankReport low_rank_model(Model& m, const std::string& out_path, const LowRankOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  map_large_buffers();
  LowRankReport rep;
  Factorizer f(m, o, rep);
  f.check();
  if (o.method != LowRankMethod::Svd && o.calib.file.empty())
    fail("--method {} measures the linears' inputs on calibration text: --calib FILE", low_rank_method_name(o.method));
  f.allocate_global();
  rep.params_total_before = m.n_params();
  const auto out = f.writer(out_path);
  f.run(*out);
  out->commit();
  rep.params_total_after = rep.params_total_before;
  for (const auto& t : rep.tensors) rep.params_total_after -= t.params_before - t.params_after;
  std::error_code ec;
  rep.bytes_out = std::filesystem::file_size(out_path, ec);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return rep;
}

LowRankOptions low_rank_options(const LowRankRequest& r) {
  LowRankOptions lr;
  lr.method = parse_low_rank_method(r.method);
  const bool has_ratio = r.ratio >= 0, has_rank = r.rank >= 0;
  if (has_ratio && has_rank) fail("lowrank: give --ratio R or --rank r, not both");
  if (has_ratio && !(r.ratio > 0 && r.ratio < 1)) fail("--ratio {}: a fraction in (0, 1)", r.ratio);
  if (has_rank && r.rank < 1) fail("--rank {}: at least 1", r.rank);
  if (!has_ratio && !has_rank) fail("lowrank: give --ratio R in (0, 1) or --rank r");
  if (lr.method == LowRankMethod::Svd && !r.calib.file.empty())
    fail("--method svd uses no calibration text: drop --calib, or use asvd or svd-llm");
  const auto t = dtype_from_name(r.factor_type);
  if (!t) fail("--factor-type: unknown type '{}'", r.factor_type);
  lr.factor_type = *t;
  lr.ratio = has_ratio ? r.ratio : 0;
  lr.rank = has_rank ? r.rank : 0;
  lr.global = r.global;
  lr.alpha = r.alpha;
  lr.calib = r.calib;
  lr.name = r.name;
  lr.select = module_selector(r.targets, r.ignore, "lowrank --targets", "lowrank --ignore");
  return lr;
}

nlohmann::ordered_json low_rank_report_json(const LowRankReport& r, const LowRankOptions& o) {
  nlohmann::ordered_json j;
  j["method"] = low_rank_method_name(o.method);
  j["factor_type"] = dtype_name(o.factor_type);
  j["params_before"] = r.params_total_before;
  j["params_after"] = r.params_total_after;
  j["bytes_out"] = r.bytes_out;
  j["calib_tokens"] = r.calib_tokens;
  j["seconds"] = r.seconds;
  j["tensors"] = nlohmann::ordered_json::array();
  for (const auto& x : r.tensors)
    j["tensors"].push_back({{"name", x.name},
                            {"shape", x.shape},
                            {"rank", x.rank},
                            {"params_before", x.params_before},
                            {"params_after", x.params_after},
                            {"error", x.error}});
  return j;
}

}  // namespace lmpress
