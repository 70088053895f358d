#include "compress/prune_model.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <utility>

#include "core/error.h"
#include "core/progress.h"
#include "kernels/to_f32.h"
#include "model/export.h"
#include "kernels/blocks.h"
#include "compress/mix.h"
#include "compress/module_select.h"
#include "quant/quantize.h"
#include "sparse/global_magnitude.h"

namespace lmpress {

namespace {

int64_t count_zeros(const std::vector<float>& v) { return int64_t(std::count(v.begin(), v.end(), 0.0f)); }

class Pruner {
 public:
  Pruner(Model& m, const PruneOptions& o, PruneReport& rep) : m_(m), o_(o), rep_(rep) {
    if (o.compensate) compensator_ = std::make_unique<Compensator>(*o.compensate);
    if (!o.select.everything()) selected_ = selected_linears(m, o.select);
    for (const auto& t : m.tensors) {
      types_[t.name] = t.dtype;
      if (is_quantizable(t) && !is_float_type(t.dtype))
        fail("{}: {} is quantized ({}); prune the float model and quantize in the same run with --quantize", m.path,
             t.name, dtype_name(t.dtype));
    }
    if (o.quantize && !zero_is_level(*o.quantize))
      fail("--quantize {}: its blocks cannot hold an exact zero, so pruned weights would not stay zero; use q4_0, "
           "q5_0, q8_0, q3_k or q6_k",
           dtype_name(*o.quantize));
    if (o.quantize) {
      // Embeddings and the output matrix as llama.cpp's preset for the type
      // stores them (Q4_0: token_embd Q4_0, output Q6_K), rounded to nearest.
      const auto preset = preset_for_base(*o.quantize);
      if (!preset) fail("--quantize {}: not a llama.cpp file type", dtype_name(*o.quantize));
      file_type_ = preset->llama_ftype;
      MixOptions mix;
      mix.preset = *preset;
      types_ = plan_tensor_types(m, mix);
    }
    for (int64_t l = 0; l < m.cfg.n_layers; l++)
      for (const auto& w : prunable(l)) {
          const Tensor& t = m_.tensor(w);
          if (o.pattern.is_nm() && t.cols() % o.pattern.m != 0)
            fail("{}: {} input columns do not split into groups of {} ({} pattern)", w, t.cols(), o.pattern.m,
                 o.pattern.name());
          if (o.quantize) {
            const int64_t blk = dtype_info(*o.quantize).block_elems;
            if (t.cols() % blk != 0)
              fail("{}: {} columns are not a multiple of the {} block of {}", w, t.cols(), blk, dtype_name(*o.quantize));
            types_[w] = *o.quantize;
          }
      }
  }

  // Block l's linears to prune: a mixture's experts too, never its router;
  // only those the options' targets select.
  std::vector<std::string> prunable(int64_t l) const {
    std::vector<std::string> v;
    for (LinearSite site : kLinearSites)
      for (int64_t e : site_experts(m_.cfg))
        for (const auto& w : linear_names(m_.cfg, l, site, e))
          if (selected(w)) v.push_back(w);
    return v;
  }
  bool selected(const std::string& w) const { return !is_router(w) && (!selected_ || selected_->count(w)); }

  // The pattern for block l: the requested one, or its OWL sparsity.
  SparsityPattern pattern(int64_t l) const {
    if (rep_.layer_sparsity.empty()) return o_.pattern;
    return SparsityPattern::unstructured(rep_.layer_sparsity[size_t(l)]);
  }

  DType type_of(const std::string& name) const { return types_.at(name); }
  std::optional<uint32_t> file_type() const { return file_type_; }

  // Each linear is written as soon as it is pruned, then put back to the input's.
  Compensator& compensator() { return *compensator_; }

  void run_magnitude(ModelWriter& out) {
    std::vector<std::pair<int64_t, std::string>> linears;  // (block, weight name)
    for (int64_t l = 0; l < m_.cfg.n_layers; l++)
      for (const auto& w : prunable(l)) linears.emplace_back(l, w);
    // Global: each matrix's share of one threshold across all of them.
    std::vector<int64_t> global_zeros;
    if (o_.global)
      global_zeros = global_magnitude_zeros(
          int64_t(linears.size()),
          [&](int64_t i) {
            const Tensor& t = m_.tensor(linears[size_t(i)].second);
            auto v = to_f32(t);
            release_mapped_pages(t);
            return v;
          },
          o_.pattern.sparsity);
    Progress progress("magnitude", uint64_t(m_.cfg.n_layers));
    for (size_t i = 0; i < linears.size(); i++) {
      const auto& [l, w] = linears[i];
      Tensor& t = m_.tensor_slot(w);
      const Tensor original = t;
      auto W = to_f32(t);
      release_mapped_pages(t);
      const SparsityPattern p =
          o_.global ? SparsityPattern::unstructured(double(global_zeros[i]) / double(W.size())) : pattern(l);
      magnitude_prune(W.data(), t.rows(), t.cols(), p);
      finish(t, std::move(W), nullptr, nullptr);
      out.write(w);
      m_.tensor_slot(w) = original;
      progress.update(uint64_t(l + 1));
    }
    progress.finish();
  }

  // Each block is written once the next block has its inputs, then put back
  // to the input's: one block's pruned copies are held at a time.
  void run_calibrated(ModelWriter& out) {
    LayerwiseCalibrator cal(m_, calibration_windows(m_, o_.calib));
    rep_.calib_tokens = cal.n_tokens();
    Progress progress(prune_method_name(o_.method), uint64_t(m_.cfg.n_layers));
    for (int64_t l = 0; l < m_.cfg.n_layers; l++) {
      std::map<std::pair<LinearSite, int64_t>, std::vector<float>> H;  // by (site, expert)
      std::map<std::pair<LinearSite, int64_t>, int64_t> cols;
      const LinearObserver obs = [&](LinearSite s, int64_t e, const float* x, int64_t n, int64_t c) {
        accumulate_hessian(H[{s, e}], x, n, c);
        cols[{s, e}] = c;
      };
      cal.run(l, m_.layers[size_t(l)], &obs, false);
      // Each linear is read again, alone, when it is compressed.
      release_block_pages(m_, l);
      uint64_t stat_bytes = 0, solver = 0;
      for (auto& [s, h] : H) {
        symmetrize_hessian(h, cols[s]);
        stat_bytes += h.size() * sizeof(float);
        if (o_.method == PruneMethod::SparseGPT) solver = std::max(solver, gptq_solver_bytes(cols[s]));
      }
      rep_.memory.statistics_bytes = std::max(rep_.memory.statistics_bytes, stat_bytes + solver);
      const std::vector<Tensor> originals = block_tensors(m_, l);
      for (LinearSite site : kLinearSites)
        for (int64_t e : site_experts(m_.cfg)) {
          const auto it = H.find({site, e});
          for (const auto& w : linear_names(m_.cfg, l, site, e)) {
            if (!selected(w)) continue;
            if (it == H.end()) {  // an expert no calibration token reached: by magnitude, listed
              Tensor& t = m_.tensor_slot(w);
              auto W = to_f32(t);
              magnitude_prune(W.data(), t.rows(), t.cols(), pattern(l));
              finish(t, std::move(W), nullptr, nullptr);
              rep_.uncalibrated.push_back(w);
              continue;
            }
            prune_linear(m_.tensor_slot(w), it->second, pattern(l));
          }
          if (it != H.end()) std::vector<float>().swap(it->second);  // done with: the next solvers have its memory
        }
      // The next block sees this block pruned (and compensated, as it runs with the adapter).
      std::vector<Tensor> written = compensator_ ? compensator_->swap_in(m_) : std::vector<Tensor>{};
      m_.bind();
      cal.run(l, m_.layers[size_t(l)], nullptr, true);
      restore_block(m_, written);
      out.write_block(l);
      restore_block(m_, originals);
      progress.update(uint64_t(l + 1));
    }
    progress.finish();
    rep_.memory.activation_bytes = cal.activation_bytes();
  }

 private:
  void prune_linear(Tensor& t, const std::vector<float>& H, const SparsityPattern& pattern) {
    const int64_t rows = t.rows(), cols = t.cols();
    const auto W0 = to_f32(t);
    // From here on only W0 is read: an f32 input's block is not held twice.
    release_mapped_pages(t);
    std::vector<float> W;  // made after SparseGPT's work space is given back
    if (o_.method == PruneMethod::Wanda) {
      W = W0;
      std::vector<float> x_sq(static_cast<size_t>(cols));
      for (int64_t c = 0; c < cols; c++) x_sq[size_t(c)] = H[size_t(c * cols + c)];
      wanda_prune(W.data(), rows, cols, pattern, x_sq.data());
    } else if (o_.quantize) {  // SparseGPT jointly with quantization
      const DType q = *o_.quantize;
      const uint64_t rb = row_bytes(q, uint64_t(cols));
      auto bytes = std::make_shared<std::vector<uint8_t>>(uint64_t(rows) * rb);
      gptq_quantize(W0.data(), rows, cols, H, q, nullptr, o_.gptq, bytes->data(), &pattern);
      W.resize(size_t(rows * cols));
      for (int64_t r = 0; r < rows; r++) dequantize_row(q, bytes->data() + r * rb, cols, W.data() + r * cols);
      finish(t, std::move(W), &W0, &H, bytes);
      return;
    } else {
      W = sparsegpt_pruned(W0.data(), rows, cols, H, pattern, o_.gptq);
    }
    finish(t, std::move(W), &W0, &H);
  }

  // Records the tensor's sparsity and error and puts the pruned weights in the
  // model (quantized bytes when SparseGPT made them, else f32 for the writer).
  void finish(Tensor& t, std::vector<float> W, const std::vector<float>* W0, const std::vector<float>* H,
              std::shared_ptr<std::vector<uint8_t>> quantized = nullptr) {
    PrunedTensor r{t.name, t.shape_str(), 0, -1};
    const int64_t zeros = count_zeros(W);
    r.sparsity = double(zeros) / double(W.size());
    if (W0 && H) r.output_error = relative_output_error(W0->data(), W.data(), t.rows(), t.cols(), *H);
    if (W0 && H && compensator_) r.compensated_error = compensator_->add(t.name, *W0, W, t.rows(), t.cols(), *H);
    rep_.n_linear += int64_t(W.size());
    rep_.n_zero += zeros;
    rep_.tensors.push_back(r);
    if (quantized) {
      Tensor q;
      q.name = t.name;
      q.dtype = *o_.quantize;
      q.shape = t.shape;
      q.data = quantized->data();
      q.nbytes = quantized->size();
      q.owner = quantized;
      t = std::move(q);
    } else {
      t = make_f32_tensor(t.name, t.shape, std::move(W));
    }
  }

  Model& m_;
  const PruneOptions& o_;
  PruneReport& rep_;
  std::map<std::string, DType> types_;
  std::optional<std::set<std::string>> selected_;  // nullopt: every linear
  std::optional<uint32_t> file_type_;
  std::unique_ptr<Compensator> compensator_;  // --compensate
};

}  // namespace

PruneReport prune_model(Model& m, const std::string& out_path, const PruneOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  map_large_buffers();
  PruneReport rep;
  refuse_factorized(m, "prune");
  rep.n_params = m.n_params();
  if (o.compensate) check_compensation(m, *o.compensate);
  if (o.rotate) rotate_model(m, *o.rotate);
  if (o.owl) {
    if (o.pattern.is_nm()) fail("--owl sets a sparsity per block; it does not apply to N:M patterns");
    rep.owl_ratios = owl_outlier_ratios(m, o.calib, *o.owl);
    rep.layer_sparsity = owl_sparsities(rep.owl_ratios, o.pattern.sparsity, o.owl->lambda);
  }
  if (o.global && (o.method != PruneMethod::Magnitude || o.pattern.is_nm() || o.owl))
    fail("--global ranks raw |w| across layers: it applies to --method magnitude with --sparsity, without --owl");
  Pruner p(m, o, rep);
  rep.memory.block_f32_bytes = largest_block_f32_bytes(m);
  ExportOptions eo;
  eo.name = o.name;
  eo.recipe = o.recipe;
  eo.type_of = [&p](const Tensor& t) { return p.type_of(t.name); };
  eo.file_type = p.file_type();
  const auto out = ModelWriter::gguf(m, out_path, eo);
  if (o.method == PruneMethod::Magnitude)
    p.run_magnitude(*out);
  else
    p.run_calibrated(*out);
  out->commit();
  if (o.compensate) rep.adapter = p.compensator().write(m);
  for (const auto& t : m.tensors) rep.bytes_out += uint64_t(t.rows()) * row_bytes(p.type_of(t.name), uint64_t(t.cols()));
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rep.memory.peak_rss = peak_rss_bytes();
  return rep;
}

StructuredReport prune_model_structured(Model& m, const std::string& out_path, const StructuredOptions& so,
                                        const PruneOptions& o) {
  map_large_buffers();
  if (!o.select.everything()) fail("--targets/--ignore: structured pruning removes whole heads, channels or blocks; it takes no targets");
  if (o.rotate) fail("--rotate applies to unstructured and N:M pruning (structured pruning keeps the source's types)");
  std::map<std::string, DType> source;
  for (const auto& t : m.tensors) source[t.name] = t.dtype;
  PrunedViews views;
  StructuredReport rep = structured_prune(m, so, o.calib, &views);
  ExportOptions eo;
  eo.name = o.name;
  eo.recipe = o.recipe;
  eo.values = [&views](const Tensor& t) { return views.values(t); };
  std::map<std::string, DType> types;
  if (o.quantize) {
    const auto preset = preset_for_base(*o.quantize);
    if (!preset) fail("--quantize {}: not a llama.cpp file type", dtype_name(*o.quantize));
    MixOptions mix;
    mix.preset = *preset;
    types = plan_tensor_types(m, mix);
    eo.file_type = preset->llama_ftype;
  } else {
    // Kept blocks are renumbered; blk.i.* of the source has the same role and type.
    for (const auto& t : m.tensors) types[t.name] = source.count(t.name) ? source[t.name] : DType::F32;
  }
  eo.type_of = [&types](const Tensor& t) { return types.at(t.name); };
  write_gguf_model(m, out_path, eo);
  rep.memory.peak_rss = peak_rss_bytes();
  return rep;
}

PruneOptions prune_output_options(const PruneRequest& r) {
  PruneOptions po;
  po.calib = r.calib;
  po.name = r.name;
  if (!r.rotate.empty()) po.rotate = parse_rotate_spec(r.rotate, "--rotate");
  if (!r.quantize.empty()) {
    po.quantize = dtype_from_name(r.quantize);
    if (!po.quantize) fail("--quantize: unknown type '{}'", r.quantize);
  }
  return po;
}

PruneOptions prune_options(const PruneRequest& r, const std::string& out_path) {
  PruneOptions po = prune_output_options(r);
  if (!r.compensate_out.empty() && r.compensate.empty()) fail("--compensate-out without --compensate rank=R");
  if (!r.compensate.empty()) {
    if (r.method != "wanda" && r.method != "sparsegpt")
      fail("--compensate fits each linear's correction to its calibration inputs: --method wanda or sparsegpt");
    if (r.method == "wanda" && !r.quantize.empty())
      fail("--compensate with --method wanda --quantize: the rounding happens in the writer, after the fit; use "
           "--method sparsegpt (it prunes and quantizes in one pass) or quantize the pruned model with --compensate");
    po.compensate = parse_compensate_spec(r.compensate, out_path, r.compensate_out, false);
  }
  po.method = parse_prune_method(r.method);
  if (r.nm.empty() && r.sparsity < 0) fail("prune: give --sparsity S or --nm N:M");
  if (!r.nm.empty() && r.sparsity >= 0) fail("prune: give --sparsity S or --nm N:M, not both");
  po.pattern = r.nm.empty() ? SparsityPattern::unstructured(r.sparsity) : SparsityPattern::parse_nm(r.nm);
  if (po.method != PruneMethod::Magnitude && r.calib.file.empty())
    fail("--method {} needs calibration text: --calib FILE", r.method);
  if (r.owl) {
    if (r.calib.file.empty()) fail("--owl measures outliers on calibration text: --calib FILE");
    po.owl = r.owl_opts;
  }
  if (!(r.damp > 0 && r.damp <= 1)) fail("--damp {}: a fraction in (0, 1]", r.damp);
  po.global = r.global;
  po.gptq.damp = r.damp;
  po.select = module_selector(r.targets, r.ignore, "prune --targets", "prune --ignore");
  return po;
}

}  // namespace lmpress
