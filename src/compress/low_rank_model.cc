#include "compress/low_rank_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
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
  return std::max<int64_t>(1, int64_t(std::floor(keep / double(out + in))));
}

namespace {

Tensor& tensor_ref(Model& m, const std::string& name) {
  for (auto& t : m.tensors)
    if (t.name == name) return t;
  fail("{}: model has no tensor {}", m.path, name);
}

// The values a factor of `rows` × `cols` holds once written as t (the writer
// stores a block type's rows that do not fill its blocks as F16).
std::vector<float> as_stored(DType t, std::vector<float> v, int64_t rows, int64_t cols) {
  if (t == DType::F32) return v;
  if (is_float_type(t) || cols % dtype_info(t).block_elems != 0) {
    for (float& x : v) x = t == DType::BF16 ? bf16_to_f32(f32_to_bf16(x)) : f16_to_f32(f32_to_f16(x));
    return v;
  }
  const uint64_t rb = row_bytes(t, uint64_t(cols));
  std::vector<uint8_t> q(uint64_t(rows) * rb);
  quantize_rows(t, v.data(), rows, cols, q.data());
  for (int64_t r = 0; r < rows; r++) dequantize_row(t, q.data() + r * rb, cols, v.data() + r * cols);
  return v;
}

// A composite of data-less factors: what the file's header plans before the values exist.
Tensor planned(const std::string& name, int64_t out, int64_t in, int64_t rank) {
  Tensor a, b;
  const auto [an, bn] = low_rank_part_names(name);
  a.name = an, a.shape = {rank, in}, a.nbytes = uint64_t(rank * in) * sizeof(float);
  b.name = bn, b.shape = {out, rank}, b.nbytes = uint64_t(out * rank) * sizeof(float);
  return make_low_rank_tensor(name, a, b);
}

class Factorizer {
 public:
  Factorizer(Model& m, const LowRankOptions& o, LowRankReport& rep) : m_(m), o_(o), rep_(rep) {}

  std::vector<std::string> linears(int64_t l) const {
    std::vector<std::string> v;
    for (LinearSite site : kLinearSites)
      for (const auto& w : linear_names(m_.cfg, l, site)) v.push_back(w);
    return v;
  }

  void check() {
    refuse_experts(m_, "low-rank compression");
    if (!(o_.ratio > 0 && o_.ratio < 1) && o_.rank <= 0) fail("lowrank: give --ratio R in (0, 1) or --rank r");
    if (o_.method == LowRankMethod::Asvd && !(o_.alpha > 0 && o_.alpha <= 1))
      fail("--alpha {}: ASVD's exponent is in (0, 1]", o_.alpha);
    if (!is_float_type(o_.factor_type) && !has_quantizer(o_.factor_type))
      fail("--factor-type {}: lmpress cannot write it (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, the k-quants)",
           dtype_name(o_.factor_type));
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

  // The writer's plan: each linear as its factors' shapes, written as factor_type.
  std::unique_ptr<ModelWriter> writer(const std::string& out_path) {
    std::vector<Tensor> originals;
    for (const auto& [w, r] : ranks_) {
      Tensor& t = tensor_ref(m_, w);
      originals.push_back(t);
      t = planned(w, t.rows(), t.cols(), r);
    }
    ExportOptions eo;
    eo.name = o_.name;
    eo.type_of = [this](const Tensor& t) {
      // A factor (B comes under its weight's name) takes factor_type; the rest keep their types.
      if (t.name.ends_with(".lr_a") || ranks_.count(t.name)) return o_.factor_type;
      return file_type(t.dtype);
    };
    auto out = ModelWriter::gguf(m_, out_path, eo);
    for (auto& t : originals) tensor_ref(m_, t.name) = t;
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
      std::map<LinearSite, std::vector<float>> H;
      std::map<LinearSite, std::vector<double>> abs_sum;  // ASVD: Σ|x_j|
      std::map<LinearSite, int64_t> rows;
      if (calibrated) {
        const LinearObserver obs = [&](LinearSite s, int64_t, const float* x, int64_t n, int64_t c) {
          accumulate_hessian(H[s], x, n, c);
          auto& a = abs_sum[s];
          a.resize(size_t(c), 0.0);
          for (int64_t t = 0; t < n; t++)
            for (int64_t j = 0; j < c; j++) a[size_t(j)] += std::fabs(x[t * c + j]);
          rows[s] += n;
        };
        cal->run(l, m_.layers[size_t(l)], &obs, false);
        for (auto& [s, h] : H) symmetrize_hessian(h, int64_t(abs_sum[s].size()));
      }
      const std::vector<Tensor> originals = block_tensors(m_, l);
      for (LinearSite site : kLinearSites)
        for (const auto& w : linear_names(m_.cfg, l, site)) {
          const std::vector<float>* h = calibrated ? &H.at(site) : nullptr;
          factorize(tensor_ref(m_, w), h, calibrated ? &abs_sum.at(site) : nullptr, calibrated ? rows.at(site) : 0);
        }
      m_.bind();
      if (calibrated) cal->run(l, m_.layers[size_t(l)], nullptr, true);  // the next block sees this one factorized
      out.write_block(l);
      restore_block(m_, originals);
      progress.update(uint64_t(l + 1));
    }
    progress.finish();
  }

 private:
  void factorize(Tensor& t, const std::vector<float>* H, const std::vector<double>* abs_sum, int64_t n) {
    const int64_t out = t.rows(), in = t.cols(), r = ranks_.at(t.name);
    const std::vector<float> W = to_f32(t);
    LowRankFactors f;
    if (o_.method == LowRankMethod::Asvd) {
      // S = diag(mean|x_j|^α), floored at 1e-6 of its largest so unused channels divide safely.
      std::vector<float> s(static_cast<size_t>(in));
      float smax = 0;
      for (int64_t j = 0; j < in; j++) {
        s[size_t(j)] = float(std::pow((*abs_sum)[size_t(j)] / double(std::max<int64_t>(1, n)), o_.alpha));
        smax = std::max(smax, s[size_t(j)]);
      }
      for (float& v : s) v = std::max(v, smax > 0 ? 1e-6f * smax : 1.0f);
      std::vector<float> ws = W;
      for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < in; j++) ws[size_t(i * in + j)] *= s[size_t(j)];
      f = weighted_low_rank(ws.data(), out, in, nullptr, r);
      for (int64_t k = 0; k < r; k++)
        for (int64_t j = 0; j < in; j++) f.a[size_t(k * in + j)] /= s[size_t(j)];
    } else {
      f = weighted_low_rank(W.data(), out, in, o_.method == LowRankMethod::SvdLlm ? H : nullptr, r);
    }
    f.a = as_stored(o_.factor_type, std::move(f.a), r, in);
    f.b = as_stored(o_.factor_type, std::move(f.b), out, r);
    const std::vector<float> BA = f.product();
    LowRankTensor rt{t.name, t.shape_str(), r, out * in, r * (out + in), 0};
    rt.error = weighted_sq_error(W.data(), BA.data(), out, in, H) /
               std::max(1e-300, weighted_sq_error(W.data(), std::vector<float>(W.size(), 0.0f).data(), out, in, H));
    rep_.tensors.push_back(rt);
    const auto [an, bn] = low_rank_part_names(t.name);
    t = make_low_rank_tensor(t.name, make_f32_tensor(an, {r, in}, std::move(f.a)),
                             make_f32_tensor(bn, {out, r}, std::move(f.b)));
  }

  Model& m_;
  const LowRankOptions& o_;
  LowRankReport& rep_;
  std::map<std::string, int64_t> ranks_;
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

}  // namespace lmpress
