#include "compress/type_search.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/progress.h"
#include "core/tensor_names.h"
#include "kernels/ops.h"
#include "kernels/to_f32.h"
#include "quant/awq.h"
#include "quant/gptq.h"
#include "compress/mix.h"

namespace lmpress {

const std::vector<DType>& target_bpw_candidates() {
  static const std::vector<DType> types = {DType::Q2_K, DType::Q3_K, DType::Q4_K,   DType::Q5_K, DType::Q6_K,
                                           DType::Q4_0, DType::Q4_1, DType::IQ4_NL, DType::Q5_0, DType::Q5_1,
                                           DType::Q8_0, DType::F16};
  return types;
}

std::map<std::string, DType> choose_types_for_budget(const std::vector<TensorCosts>& tensors, uint64_t budget) {
  // A multiple-choice knapsack, solved exactly by dynamic programming over
  // sizes in units of budget/kUnits bytes (rounded up, so the result always
  // fits; at most one unit per tensor of the budget is lost to rounding).
  constexpr uint64_t kUnits = 20000;
  const uint64_t unit = std::max<uint64_t>(1, budget / kUnits);
  const size_t cap = size_t(budget / unit);
  uint64_t min_total = 0;
  for (const auto& t : tensors) {
    if (t.options.empty()) fail("{}: no candidate type", t.name);
    uint64_t smallest = UINT64_MAX;
    for (const auto& o : t.options) smallest = std::min(smallest, o.bytes);
    min_total += smallest;
  }
  if (min_total > budget)
    fail("the target size ({} bytes) is below the smallest types' size ({} bytes)", budget, min_total);
  const double inf = INFINITY;
  std::vector<double> best(cap + 1, 0.0), next(cap + 1);
  // choice[i][c]: option of tensor i in the best assignment of tensors 0..i using at most c units.
  std::vector<std::vector<uint8_t>> choice(tensors.size(), std::vector<uint8_t>(cap + 1, 0));
  for (size_t i = 0; i < tensors.size(); i++) {
    const auto& opts = tensors[i].options;
    if (opts.size() > 255) fail("{}: too many candidate types", tensors[i].name);
    std::fill(next.begin(), next.end(), inf);
    for (size_t k = 0; k < opts.size(); k++) {
      const uint64_t w = (opts[k].bytes + unit - 1) / unit;
      if (w > cap) continue;
      for (size_t c = size_t(w); c <= cap; c++) {
        const double e = best[c - size_t(w)] + opts[k].error;
        if (e < next[c]) {
          next[c] = e;
          choice[i][c] = uint8_t(k);
        }
      }
    }
    best.swap(next);
  }
  if (!(best[cap] < inf))  // the rounding up to whole units made the smallest types not fit
    fail("the target size ({} bytes) leaves no room above the smallest types' size ({} bytes)", budget, min_total);
  std::map<std::string, DType> out;
  size_t c = cap;
  for (size_t i = tensors.size(); i-- > 0;) {
    const TypeCost& o = tensors[i].options[choice[i][c]];
    out[tensors[i].name] = o.type;
    c -= size_t((o.bytes + unit - 1) / unit);
  }
  return out;
}

namespace {

// Every candidate type whose block fits t's rows, with its size and no error (what is not measured).
TensorCosts size_only_costs(const Tensor& t) {
  TensorCosts c{t.name, {}};
  for (DType ty : target_bpw_candidates())
    if (t.cols() % dtype_info(ty).block_elems == 0)
      c.options.push_back({ty, uint64_t(t.rows()) * row_bytes(ty, uint64_t(t.cols())), 0.0});
  return c;
}

// Error of every candidate type for W (rows x cols) on the inputs summarized by H.
TensorCosts costs_of(const std::string& name, const std::vector<float>& W, int64_t rows, int64_t cols,
                     const std::vector<float>& H, const std::vector<float>& importance) {
  TensorCosts tc{name, {}};
  for (DType t : target_bpw_candidates()) {
    if (cols % dtype_info(t).block_elems != 0) continue;
    QuantFormat f;
    f.block = t;
    const auto q = fake_quantize(W.data(), rows, cols, f, importance.empty() ? nullptr : importance.data());
    tc.options.push_back({t, uint64_t(rows) * row_bytes(t, uint64_t(cols)), output_error(W.data(), q.data(), rows, cols, H)});
  }
  return tc;
}

std::vector<float> diag_of(const std::vector<float>& H, int64_t cols) {
  std::vector<float> d(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; c++) d[size_t(c)] = H[size_t(c * cols + c)];
  return d;
}

}  // namespace

std::vector<TensorCosts> measure_type_costs(const Model& m, const CalibrationOptions& calib, const Imatrix* imatrix,
                                            bool activation_importance) {
  auto windows = calibration_windows(m, calib);
  // Token counts: the embedding's "Hessian" is diagonal (one-hot inputs).
  std::vector<float> token_count(static_cast<size_t>(m.cfg.n_vocab), 0.0f);
  for (const auto& w : windows)
    for (int32_t t : w) token_count[size_t(t)] += 1;
  LayerwiseCalibrator cal(m, std::move(windows));
  auto importance = [&](const std::string& name, std::vector<float> fallback) {
    return importance_or(imatrix, name, activation_importance ? std::move(fallback) : std::vector<float>{});
  };
  std::vector<TensorCosts> out;
  Progress progress("sensitivity", uint64_t(m.cfg.n_layers + 1));
  for (int64_t l = 0; l < m.cfg.n_layers; l++) {
    // By (site, expert): a mixture's experts and shared expert differ in width.
    std::map<std::pair<LinearSite, int64_t>, std::vector<float>> H;
    std::map<std::pair<LinearSite, int64_t>, int64_t> width;
    const LinearObserver obs = [&](LinearSite s, int64_t e, const float* x, int64_t n, int64_t cols) {
      accumulate_hessian(H[{s, e}], x, n, cols);
      width[{s, e}] = cols;
    };
    cal.run(l, m.layers[size_t(l)], &obs, true);
    for (auto& [key, h] : H) symmetrize_hessian(h, width.at(key));
    for (LinearSite site : kLinearSites) {
      for (const auto& name : linear_names(m.cfg, l, site)) {
        if (is_router(name)) continue;  // kept in f32
        const Tensor& t = m.tensor(name);
        const std::vector<float>& Hs = H.at({site, -1});
        out.push_back(costs_of(name, to_f32(t), t.rows(), t.cols(), Hs, importance(name, diag_of(Hs, t.cols()))));
      }
      // A mixture's experts: one entry per stack, each expert's costs on the rows routed to it summed (an
      // expert no calibration token reached adds bytes but no error).
      if (!m.cfg.layer_moe(l) || (site != LinearSite::FfnIn && site != LinearSite::FfnDown)) continue;
      const size_t projections = linear_names(m.cfg, l, site, 0).size();
      for (size_t p = 0; p < projections; p++) {
        TensorCosts stack;
        for (int64_t e = 0; e < m.cfg.n_experts; e++) {
          const std::string name = linear_names(m.cfg, l, site, e)[p];
          const Tensor& t = m.tensor(name);
          const auto it = H.find({site, e});
          // No input reached it: every type costs its bytes and nothing else.
          TensorCosts c = it == H.end() ? size_only_costs(t)
                                        : costs_of(name, to_f32(t), t.rows(), t.cols(), it->second,
                                                   importance(name, diag_of(it->second, t.cols())));
          if (stack.options.empty()) {
            stack = std::move(c);
          } else {
            for (size_t k = 0; k < c.options.size(); k++) {
              stack.options[k].bytes += c.options[k].bytes;
              stack.options[k].error += c.options[k].error;
            }
          }
          stack.members.push_back(name);
        }
        stack.name = stack.members.front() + " .. " + stack.members.back();
        out.push_back(std::move(stack));
      }
    }
    release_block_pages(m, l);
    progress.update(uint64_t(l + 1));
  }
  // The output matrix reads the final normed hidden states.
  const int64_t D = m.cfg.dim;
  const auto& hidden = cal.hidden();
  std::vector<float> normed(hidden.size()), H_out;
  const int64_t n_tok = int64_t(hidden.size()) / D;
  for (int64_t i = 0; i < n_tok; i++)
    rmsnorm(hidden.data() + i * D, m.output_norm.data(), D, m.cfg.rms_eps, normed.data() + i * D);
  accumulate_hessian(H_out, normed.data(), n_tok, D);
  symmetrize_hessian(H_out, D);
  const Tensor* out_w = m.find("output.weight");
  const Tensor& embd = *m.tok_embd;
  const auto E = to_f32(embd);
  const int64_t V = embd.rows();
  if (out_w) out.push_back(costs_of(out_w->name, to_f32(*out_w), out_w->rows(), D, H_out, importance(out_w->name, diag_of(H_out, D))));
  // Embedding rows: error Σ_v count(v)·‖Δrow_v‖², plus the output's when tied.
  TensorCosts te{embd.name, {}};
  for (DType t : target_bpw_candidates()) {
    if (D % dtype_info(t).block_elems != 0) continue;
    QuantFormat f;
    f.block = t;
    const auto imp = importance(embd.name, {});
    const auto q = fake_quantize(E.data(), V, D, f, imp.empty() ? nullptr : imp.data());
    double err = 0;
    for (int64_t v = 0; v < V; v++) {
      if (token_count[size_t(v)] == 0) continue;
      double row = 0;
      for (int64_t c = 0; c < D; c++) row += double(q[size_t(v * D + c)] - E[size_t(v * D + c)]) * (q[size_t(v * D + c)] - E[size_t(v * D + c)]);
      err += token_count[size_t(v)] * row;
    }
    if (!out_w) err += output_error(E.data(), q.data(), V, D, H_out);
    te.options.push_back({t, uint64_t(V) * row_bytes(t, uint64_t(D)), err});
  }
  out.push_back(std::move(te));
  release_mapped_pages(embd);
  if (out_w) release_mapped_pages(*out_w);
  progress.update(uint64_t(m.cfg.n_layers + 1));
  progress.finish();
  return out;
}

std::map<std::string, DType> plan_for_target_bpw(const Model& m, double bpw, const std::vector<TensorCosts>& costs,
                                                 std::map<std::string, DType> base) {
  if (!(bpw > 0) || bpw > 32) fail("--target-bpw {}: must be between 0 and 32 bits per weight", bpw);
  std::map<std::string, bool> measured;
  for (const auto& c : costs) {
    measured[c.name] = true;
    for (const auto& n : c.members) measured[n] = true;
  }
  uint64_t fixed = 0;
  for (const auto& t : m.tensors)
    if (!measured.count(t.name)) fixed += uint64_t(t.rows()) * row_bytes(base.at(t.name), uint64_t(t.cols()));
  const double budget = bpw * double(m.n_params()) / 8.0 - double(fixed);
  if (budget <= 0) fail("--target-bpw {}: the unquantized tensors alone take more", bpw);
  const auto chosen = choose_types_for_budget(costs, uint64_t(budget));
  for (const auto& c : costs)
    if (c.members.empty())
      base[c.name] = chosen.at(c.name);
    else
      for (const auto& n : c.members) base[n] = chosen.at(c.name);
  return base;
}

}  // namespace lmpress

namespace lmpress {

void check_target_bpw(const Model& m, double bpw, const std::map<std::string, DType>& base) {
  if (!(bpw > 0) || bpw > 32) fail("--target-bpw {}: must be between 0 and 32 bits per weight", bpw);
  std::vector<TensorCosts> sizes;
  double largest = 0;
  for (const auto& t : m.tensors) {
    if (t.shape.size() != 2 || t.name == "rope_freqs.weight" || is_router(t.name)) {
      largest += double(t.rows()) * double(row_bytes(base.at(t.name), uint64_t(t.cols())));
      continue;
    }
    TensorCosts c = size_only_costs(t);
    uint64_t most = 0;
    for (const auto& o : c.options) most = std::max(most, o.bytes);
    largest += double(most);
    sizes.push_back(std::move(c));
  }
  const double top = largest * 8.0 / double(m.n_params());
  if (bpw >= top)
    fail("--target-bpw {}: the largest candidate types (f16) take {:.3f} bits per weight; there is nothing to choose",
         bpw, top);
  (void)plan_for_target_bpw(m, bpw, sizes, base);  // fails when even the smallest types do not fit
}

}  // namespace lmpress
