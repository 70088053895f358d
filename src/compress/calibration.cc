#include "compress/calibration.h"

#include <sys/resource.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/finite.h"
#include "core/mapped_file.h"

namespace lmpress {

std::vector<std::vector<int32_t>> calibration_windows(const Model& m, const CalibrationOptions& o) {
  if (o.file.empty()) fail("calibration needs a text file (--calib FILE)");
  if (o.samples == 0 || o.samples < -1) fail("--calib-samples must be at least 1 (got {})", o.samples);
  if (o.ctx < 2) fail("--calib-ctx must be at least 2 (got {})", o.ctx);
  const int64_t ctx = std::min<int64_t>(o.ctx, m.cfg.ctx_len);
  const std::string text = read_text_file(o.file);
  if (text.empty()) fail("{}: the calibration text is empty", o.file);
  const auto tokens = m.tokenizer->encode(text, false, false);
  const int32_t bos = m.tokenizer->vocab().bos;
  const bool add_bos = bos >= 0 && m.tokenizer->vocab().add_bos;
  const int64_t body = add_bos ? ctx - 1 : ctx;
  // Consecutive windows follow llama-imatrix: the text (with BOS) cut every ctx
  // tokens, each window's first token replaced by BOS.
  const int64_t T = int64_t(tokens.size());
  // With samples = -1, as many windows as fit; a text too short for one still asks for one.
  const int64_t fit = o.consecutive ? (T + ctx - body) / ctx : T / body;
  const int64_t samples = o.samples > 0 ? o.samples : std::max<int64_t>(1, fit);
  const int64_t need = o.consecutive ? (samples - 1) * ctx + body : samples * body;
  if (T < need)
    fail("{}: calibration text is too short: {} tokens, {} windows of {} need {} (lower --calib-samples or --calib-ctx)",
         o.file, T, samples, ctx, need);
  // Non-overlapping windows, evenly spaced over the whole text or back to back.
  const int64_t stride = o.consecutive ? ctx : T / samples;
  std::vector<std::vector<int32_t>> windows;
  for (int64_t s = 0; s < samples; s++) {
    std::vector<int32_t> w;
    w.reserve(size_t(ctx));
    if (add_bos) w.push_back(bos);
    const auto* start = tokens.data() + s * stride;
    w.insert(w.end(), start, start + body);
    windows.push_back(std::move(w));
  }
  return windows;
}

std::vector<std::string> linear_names(const ModelConfig& c, int64_t layer, LinearSite site, int64_t expert) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  if (c.layer_moe(layer) && (site == LinearSite::FfnIn || site == LinearSite::FfnDown)) {
    const bool in = site == LinearSite::FfnIn;
    if (expert >= 0) {
      if (in) return {expert_tensor_name(p + "ffn_gate_exps.weight", expert), expert_tensor_name(p + "ffn_up_exps.weight", expert)};
      return {expert_tensor_name(p + "ffn_down_exps.weight", expert)};
    }
    std::vector<std::string> v;
    if (in) v.push_back(p + "ffn_gate_inp.weight");
    if (c.shared_ffn > 0 && in) v.insert(v.end(), {p + "ffn_gate_shexp.weight", p + "ffn_up_shexp.weight"});
    if (c.shared_ffn > 0 && !in) v.push_back(p + "ffn_down_shexp.weight");
    return v;
  }
  if (expert >= 0) return {};
  switch (site) {
    case LinearSite::AttnIn: return {p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"};
    case LinearSite::AttnOut: return {p + "attn_output.weight"};
    case LinearSite::FfnIn: return {p + "ffn_gate.weight", p + "ffn_up.weight"};
    case LinearSite::FfnDown: return {p + "ffn_down.weight"};
  }
  return {};
}

std::vector<int64_t> site_experts(const ModelConfig& c) {
  std::vector<int64_t> v = {-1};
  for (int64_t e = 0; e < c.n_experts; e++) v.push_back(e);
  return v;
}

void refuse_experts(const Model& m, const char* what) {
  if (m.cfg.moe())
    fail("{}: {} does not reach the experts of a mixture of experts yet (GPTQ, AWQ, RTN, imatrix, OWL and the type "
         "search do)",
         m.path, what);
}

void refuse_factorized(const Model& m, const char* what) {
  for (const Tensor& t : m.tensors)
    if (t.dtype == DType::LOW_RANK)
      fail("{}: {} is factorized (lmpress lowrank) and {} would multiply its factors back; give the factors a type "
           "with lowrank --factor-type or convert --dtype",
           m.path, t.name, what);
}

uint64_t largest_block_f32_bytes(const Model& m) {
  std::vector<uint64_t> bytes(size_t(m.cfg.n_layers), 0);
  for (const Tensor& t : m.tensors) {
    const int64_t l = layer_of(t.name);
    if (l >= 0 && l < m.cfg.n_layers) bytes[size_t(l)] += uint64_t(t.numel()) * sizeof(float);
  }
  return bytes.empty() ? 0 : *std::max_element(bytes.begin(), bytes.end());
}

uint64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return uint64_t(ru.ru_maxrss) * 1024;
}

std::string MemoryReport::line() const {
  const auto mib = [](uint64_t b) { return double(b) / (1024.0 * 1024.0); };
  return fmt::format(
      "peak RSS {:.1f} MiB; one-block bound {:.1f} MiB = 1.5 x largest block as f32 ({:.1f} MiB) + activations "
      "({:.1f} MiB) + statistics ({:.1f} MiB), plus the program itself",
      mib(peak_rss), mib(bound()), mib(block_f32_bytes), mib(activation_bytes), mib(statistics_bytes));
}

std::vector<Tensor> block_tensors(const Model& m, int64_t layer) {
  std::vector<Tensor> out;
  for (const Tensor& t : m.tensors)
    if (layer_of(t.name) == layer) out.push_back(t);
  return out;
}

void restore_block(Model& m, const std::vector<Tensor>& originals) {
  for (const Tensor& o : originals) {
    for (Tensor& t : m.tensors)
      if (t.name == o.name) t = o;
    release_mapped_pages(o);
  }
  m.bind();
}

void map_large_buffers() {
#ifdef __GLIBC__
  // glibc raises its mmap threshold to the largest buffer freed (up to 32
  // MiB), after which buffers of a tensor's size live in the heap, and what
  // a block frees stays there, fragmented, adding to the next block's peak.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
}

void release_block_pages(const Model& m, int64_t layer) {
  for (const Tensor& t : m.tensors)
    if (layer_of(t.name) == layer) release_mapped_pages(t);
}

LayerwiseCalibrator::LayerwiseCalibrator(const Model& m, std::vector<std::vector<int32_t>> windows)
    : m_(m),
      windows_(std::move(windows)),
      ctx_(windows_.empty() ? 1 : int64_t(windows_[0].size())),
      state_(m, ctx_, ctx_) {
  if (windows_.empty()) fail("calibration: no windows");
  const int64_t D = m.cfg.dim;
  hidden_.resize(size_t(n_windows() * ctx_ * D));
  for (int64_t s = 0; s < n_windows(); s++) {
    if (int64_t(windows_[size_t(s)].size()) != ctx_) fail("calibration windows must have equal lengths");
    state_.embed(windows_[size_t(s)].data(), ctx_, hidden_.data() + s * ctx_ * D);
  }
  scratch_.resize(size_t(ctx_ * D));
}

void LayerwiseCalibrator::run(int64_t layer, const LayerWeights& w, const LinearObserver* obs, bool advance) {
  const int64_t D = m_.cfg.dim;
  for (int64_t s = 0; s < n_windows(); s++) {
    float* h = hidden_.data() + s * ctx_ * D;
    float* out = h;
    if (!advance) {
      std::memcpy(scratch_.data(), h, scratch_.size() * sizeof(float));
      out = scratch_.data();
    }
    state_.eval_layer(layer, w, out, ctx_, obs);
    // Statistics gathered from a NaN would be written as a valid-looking
    // imatrix, or turn GPTQ's Hessian singular with a misleading message.
    if (const int64_t bad = first_out_of_range(out, ctx_ * D); bad >= 0)
      fail("{}: calibration window {}, position {}: block {} produced a non-finite activation; the model's weights "
           "or the calibration overflow",
           m_.path, s + 1, bad / D, layer);
  }
}

}  // namespace lmpress
