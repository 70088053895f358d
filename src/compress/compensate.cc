#include "compress/compensate.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/finite.h"
#include "core/fp16.h"
#include "core/parse.h"
#include "compress/calibration.h"
#include "quant/gptq.h"
#include "quant/low_rank.h"

namespace lmpress {

CompensateSpec parse_compensate_spec(const std::string& spec, const std::string& out_path, const std::string& adapter_out,
                                     bool peft) {
  CompensateSpec c;
  c.peft = peft;
  size_t at = 0;
  while (at <= spec.size()) {
    const size_t comma = std::min(spec.find(',', at), spec.size());
    const std::string item = spec.substr(at, comma - at);
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq), value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (key == "rank") {
      const auto r = parse_double(value);
      if (!r || *r < 1 || *r != std::floor(*r) || *r > 1e6)
        fail("--compensate {}: rank must be a whole number of at least 1, got '{}'", spec, value);
      c.rank = int64_t(*r);
    } else if (key == "method" && (value == "eora" || value == "svd")) {
      c.weighted = value == "eora";
    } else {
      fail("--compensate {}: expected rank=R[,method=eora|svd], got '{}'", spec, item);
    }
    at = comma + 1;
  }
  if (c.rank == 0) fail("--compensate {}: rank=R is required", spec);
  if (!adapter_out.empty()) {
    c.adapter_path = adapter_out;
  } else if (peft) {
    std::string dir = out_path;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    c.adapter_path = dir + "-eora";
  } else {
    const std::string stem = out_path.ends_with(".gguf") ? out_path.substr(0, out_path.size() - 5) : out_path;
    c.adapter_path = stem + ".eora.gguf";
  }
  if (!peft && !c.adapter_path.ends_with(".gguf"))
    fail("--compensate-out {}: the adapter is written as llama.cpp's GGUF LoRA file (name it .gguf)", c.adapter_path);
  if (peft && c.adapter_path.ends_with(".gguf"))
    fail("--compensate-out {}: an int-N checkpoint's adapter is a PEFT directory, not GGUF", c.adapter_path);
  if (std::filesystem::absolute(c.adapter_path).lexically_normal() == std::filesystem::absolute(out_path).lexically_normal())
    fail("--compensate-out {}: the adapter and the compressed model cannot be the same file", c.adapter_path);
  return c;
}

void check_compensation(const Model& m, const CompensateSpec& c) {
  if (m.cfg.moe())
    fail("{}: --compensate on a mixture of experts is not built (llama.cpp's adapters for stacked experts)", m.path);
  for (int64_t l = 0; l < m.cfg.n_layers; l++)
    for (LinearSite site : kLinearSites)
      for (const auto& w : linear_names(m.cfg, l, site)) {
        const Tensor* tp = m.find(w);
        if (!tp) fail("{}: the model has no tensor {}", m.path, w);
        const Tensor& t = *tp;
        if (c.rank >= std::min(t.rows(), t.cols()))
          fail("--compensate rank={}: {} is {}x{} (out x in); the rank must be below min(out, in) = {}", c.rank, w,
               t.rows(), t.cols(), std::min(t.rows(), t.cols()));
      }
}

double Compensator::add(const std::string& name, const std::vector<float>& W, std::vector<float> approx, int64_t rows,
                        int64_t cols, const std::vector<float>& H) {
  std::vector<float> D(W.size());
  for (size_t i = 0; i < D.size(); i++) D[i] = W[i] - approx[i];
  if (first_out_of_range(D.data(), int64_t(D.size())) >= 0 || first_out_of_range(H.data(), int64_t(H.size())) >= 0)
    fail("{}: --compensate: the weights' error or the calibration inputs hold a value that is not finite", name);
  LowRankFactors f = weighted_low_rank(D.data(), rows, cols, spec_.weighted ? &H : nullptr, spec_.rank);
  for (float& v : f.a) v = f16_to_f32(f32_to_f16(v));
  for (float& v : f.b) v = f16_to_f32(f32_to_f16(v));
  if (first_out_of_range(f.a.data(), int64_t(f.a.size())) >= 0 || first_out_of_range(f.b.data(), int64_t(f.b.size())) >= 0)
    fail("{}: --compensate: the correction does not fit F16 (a factor beyond ±65504)", name);
  const auto correction = f.product();
  for (size_t i = 0; i < approx.size(); i++) approx[i] += correction[i];
  const double err = relative_output_error(W.data(), approx.data(), rows, cols, H);
  adapter_.pairs.push_back({name, cols, rows, std::move(f.a), std::move(f.b)});
  pending_[name] = std::move(approx);
  return err;
}

std::vector<Tensor> Compensator::swap_in(Model& m) {
  std::vector<Tensor> saved;
  for (auto& [name, values] : pending_) {
    saved.push_back(m.tensor(name));
    m.set_f32(name, std::move(values));
  }
  pending_.clear();
  return saved;
}

AdapterReport Compensator::write(const Model& m) {
  LoraAdapter a = std::move(adapter_);
  a.rank = spec_.rank;
  a.alpha = double(a.rank);  // scale 1
  AdapterReport r{spec_.adapter_path, spec_.rank, 0};
  if (spec_.peft) {
    write_lora_peft(m, a, spec_.adapter_path);
    for (const auto& e : std::filesystem::directory_iterator(spec_.adapter_path))
      if (e.is_regular_file()) r.bytes += e.file_size();
  } else {
    a.dtype = DType::F16;
    write_lora_gguf(m, a, spec_.adapter_path);
    r.bytes = std::filesystem::file_size(spec_.adapter_path);
  }
  return r;
}

}  // namespace lmpress
