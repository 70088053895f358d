#include "compress/mix.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "core/error.h"
#include "core/parse.h"
#include "core/tensor_names.h"
#include "quant/quantize.h"

namespace lmpress {
namespace {

const PresetInfo kPresets[] = {
    {Preset::Q4_0, "q4_0", DType::Q4_0, 2},       {Preset::Q4_1, "q4_1", DType::Q4_1, 3},
    {Preset::Q5_0, "q5_0", DType::Q5_0, 8},       {Preset::Q5_1, "q5_1", DType::Q5_1, 9},
    {Preset::Q8_0, "q8_0", DType::Q8_0, 7},       {Preset::Q2_K, "q2_k", DType::Q2_K, 10},
    {Preset::Q2_K_S, "q2_k_s", DType::Q2_K, 21},  {Preset::Q3_K_S, "q3_k_s", DType::Q3_K, 11},
    {Preset::Q3_K_M, "q3_k_m", DType::Q3_K, 12},  {Preset::Q3_K_L, "q3_k_l", DType::Q3_K, 13},
    {Preset::Q4_K_S, "q4_k_s", DType::Q4_K, 14},  {Preset::Q4_K_M, "q4_k_m", DType::Q4_K, 15},
    {Preset::Q5_K_S, "q5_k_s", DType::Q5_K, 16},  {Preset::Q5_K_M, "q5_k_m", DType::Q5_K, 17},
    {Preset::Q6_K, "q6_k", DType::Q6_K, 18},      {Preset::IQ4_NL, "iq4_nl", DType::IQ4_NL, 25},
    {Preset::IQ4_XS, "iq4_xs", DType::IQ4_XS, 30}, {Preset::TQ1_0, "tq1_0", DType::TQ1_0, 36},
    {Preset::TQ2_0, "tq2_0", DType::TQ2_0, 37},   {Preset::IQ1_S, "iq1_s", DType::IQ1_S, 24},
    {Preset::IQ1_M, "iq1_m", DType::IQ1_M, 31},   {Preset::IQ2_XXS, "iq2_xxs", DType::IQ2_XXS, 19},
    {Preset::IQ2_XS, "iq2_xs", DType::IQ2_XS, 20},   {Preset::IQ2_S, "iq2_s", DType::IQ2_XS, 28},
    {Preset::IQ2_M, "iq2_m", DType::IQ2_S, 29},     {Preset::IQ3_XXS, "iq3_xxs", DType::IQ3_XXS, 23},
    {Preset::IQ3_XS, "iq3_xs", DType::IQ3_S, 22},   {Preset::IQ3_S, "iq3_s", DType::IQ3_S, 26},
    {Preset::IQ3_M, "iq3_m", DType::IQ3_S, 27},
    // gpt-oss's released form: experts MXFP4, every other matrix Q8_0.
    {Preset::MXFP4_MOE, "mxfp4_moe", DType::MXFP4, 38},
    // lmpress's own: IQ2_XXS's mix with LMP2 where it has IQ2_XXS (the same bytes); file type = LMP2's type id.
    {Preset::LMP2, "lmp2", DType::LMP2, uint32_t(DType::LMP2)},
    {Preset::F16, "f16", DType::F16, 1},          {Preset::BF16, "bf16", DType::BF16, 32},
    {Preset::F32, "f32", DType::F32, 0},
};

}  // namespace

std::optional<PresetInfo> preset_for_base(DType base) {
  std::optional<PresetInfo> found;
  for (const auto& p : kPresets) {
    if (p.base != base) continue;
    const std::string n = p.name;
    if (!found || n.ends_with("_m")) found = p;
  }
  return found;
}

namespace {

std::string lower(std::string s) {
  for (auto& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third in between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// The preset's choice for one tensor (llama_tensor_get_type_impl, non-MoE Llama-family cases).
DType preset_type(const Model& m, const Tensor& t, const MixOptions& o, bool is_output) {
  const Preset p = o.preset.preset;
  const DType base = o.preset.base;
  const std::string& name = t.name;
  const int64_t i = layer_of(name);
  const int64_t n = m.cfg.n_layers;
  const int64_t gqa = i >= 0 && i < n ? m.cfg.heads(i) / m.cfg.kv_heads(i) : m.cfg.n_heads / m.cfg.n_kv_heads;
  // llama.cpp's branch for the 1- and 2-bit codebook file types (IQ2_S and IQ2_M with IQ3_S where the others
  // take Q2_K; IQ1_S and IQ1_M with IQ2_XXS attention outputs).
  const bool one_bit = p == Preset::IQ1_S || p == Preset::IQ1_M;
  const bool two_bit = one_bit || p == Preset::IQ2_XXS || p == Preset::LMP2 || p == Preset::IQ2_XS || p == Preset::IQ2_S || p == Preset::IQ2_M;
  const bool iq2_sm = p == Preset::IQ2_S || p == Preset::IQ2_M;
  if (p == Preset::MXFP4_MOE) return stacked_expert_name(name) ? DType::MXFP4 : DType::Q8_0;
  if (is_output) {
    if (t.cols() % dtype_info(base).block_elems != 0) return DType::Q8_0;
    return base == DType::Q8_0 ? DType::Q8_0 : two_bit || p == Preset::IQ3_XXS ? DType::Q5_K : DType::Q6_K;
  }
  if (name == "token_embd.weight") {
    if (p == Preset::TQ1_0 || p == Preset::TQ2_0) return DType::Q4_K;
    if (iq2_sm || p == Preset::IQ3_XXS) return DType::IQ3_S;
    return two_bit ? DType::Q2_K : base;
  }
  // llama.cpp's rules for 8 experts (Mixtral) and for mixtures in general.
  const int64_t experts = m.cfg.n_experts;
  if (two_bit) {  // replaces the rules below
    if (contains(name, "attn_v.weight"))
      return gqa >= 4 || experts >= 4 ? DType::Q4_K : iq2_sm ? DType::IQ3_S : DType::Q2_K;
    if (experts == 8 && contains(name, "attn_k.weight")) return DType::Q4_K;
    if (contains(name, "ffn_down")) return i < n / 8 ? (iq2_sm ? DType::IQ3_S : DType::Q2_K) : base;
    if (contains(name, "attn_output.weight"))
      return experts == 8 ? DType::Q5_K : iq2_sm ? DType::IQ3_S : one_bit ? DType::IQ2_XXS : base;
    return base;
  }
  if (experts == 8 && (contains(name, "attn_k.weight") || contains(name, "attn_v.weight"))) return DType::Q8_0;
  if (experts == 8 && contains(name, "attn_output.weight")) {
    switch (p) {
      case Preset::Q2_K:
      case Preset::IQ3_XS:
      case Preset::IQ3_XXS:
      case Preset::Q3_K_S:
      case Preset::Q3_K_M:
      case Preset::IQ4_NL:
      case Preset::Q4_K_S:
      case Preset::Q4_K_M:
      case Preset::IQ3_S:
      case Preset::IQ3_M:
      case Preset::IQ4_XS: return DType::Q5_K;
      default: return base;
    }
  }
  if (contains(name, "attn_k.weight") || contains(name, "attn_q.weight")) {
    if (p == Preset::IQ3_XS) return DType::IQ3_XXS;
    if (p == Preset::IQ3_XXS) return DType::IQ2_S;
    return base;
  }
  if ((contains(name, "ffn_gate") || contains(name, "ffn_up")) && p == Preset::IQ3_XS)
    return i >= n / 8 && i < 7 * n / 8 ? DType::IQ3_XXS : base;
  if (contains(name, "attn_v.weight")) {
    switch (p) {
      case Preset::Q2_K: return gqa >= 4 ? DType::Q4_K : DType::Q3_K;
      case Preset::Q2_K_S: return gqa >= 4 ? DType::Q4_K : base;
      case Preset::Q3_K_M: return i < 2 ? DType::Q5_K : DType::Q4_K;
      case Preset::Q3_K_L: return DType::Q5_K;
      case Preset::IQ4_NL:
      case Preset::IQ4_XS: return gqa >= 4 ? DType::Q5_K : base;
      case Preset::IQ3_XXS: return gqa >= 4 ? DType::Q4_K : !o.has_imatrix ? DType::IQ3_S : DType::IQ3_XXS;
      case Preset::IQ3_XS:
      case Preset::IQ3_S: return gqa >= 4 ? DType::Q4_K : base;
      case Preset::IQ3_M: return DType::Q4_K;
      case Preset::Q4_K_M:
      case Preset::Q5_K_M: return use_more_bits(i, n) ? DType::Q6_K : base;
      case Preset::Q4_K_S: return i < 4 ? DType::Q5_K : base;
      default: return base;
    }
  }
  if (contains(name, "ffn_down")) {
    switch (p) {
      case Preset::Q2_K: return DType::Q3_K;
      case Preset::Q2_K_S: return i < n / 8 ? DType::Q4_K : base;
      case Preset::Q3_K_M: return i < n / 16 ? DType::Q5_K : DType::Q4_K;
      case Preset::Q3_K_L: return DType::Q5_K;
      case Preset::Q4_K_M: return use_more_bits(i, n) ? DType::Q6_K : base;
      case Preset::IQ4_NL:
      case Preset::IQ4_XS: return i < n / 8 && !o.has_imatrix ? DType::Q5_K : base;
      case Preset::Q5_K_M: return use_more_bits(i, n) ? DType::Q6_K : base;
      case Preset::Q4_K_S: return i < n / 8 ? DType::Q5_K : base;
      case Preset::IQ3_XXS: return o.has_imatrix ? base : i < n / 8 ? DType::Q4_K : DType::Q3_K;
      case Preset::IQ3_M: return i < n / 8 || (experts == 8 && use_more_bits(i, n)) ? DType::Q4_K : base;
      case Preset::Q4_0: return o.has_imatrix && i < n / 8 ? DType::Q4_1 : base;
      case Preset::Q5_0: return o.has_imatrix && i < n / 8 ? DType::Q5_1 : base;
      default: return base;
    }
  }
  if (contains(name, "attn_output.weight")) {
    switch (p) {
      case Preset::Q2_K: return DType::Q3_K;
      case Preset::Q3_K_M: return DType::Q4_K;
      case Preset::Q3_K_L: return DType::Q5_K;
      case Preset::IQ3_XXS: return DType::IQ3_S;
      case Preset::IQ3_M: return DType::Q4_K;
      default: return base;
    }
  }
  return base;
}

// A type whose block does not divide the row falls back like llama.cpp's tensor_type_fallback.
DType fallback(DType want, int64_t cols) {
  if (cols % dtype_info(want).block_elems == 0) return want;
  DType f = want;
  switch (want) {
    case DType::IQ1_S:
    case DType::IQ1_M:
    case DType::IQ2_XXS:
    case DType::LMP2:
    case DType::IQ2_XS:
    case DType::IQ2_S:
    case DType::IQ3_XXS:
    case DType::IQ3_S:
    case DType::IQ4_XS: f = DType::IQ4_NL; break;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::TQ1_0:
    case DType::TQ2_0: f = DType::Q4_0; break;
    case DType::Q4_K: f = DType::Q5_0; break;
    case DType::Q5_K: f = DType::Q5_1; break;
    case DType::Q6_K: f = DType::Q8_0; break;
    default: break;
  }
  return cols % dtype_info(f).block_elems == 0 ? f : DType::F16;
}

}  // namespace

bool requires_imatrix(const std::string& name, DType t, const MixOptions& o) {
  if (name == "token_embd.weight" || name == "output.weight") return false;
  switch (t) {
    case DType::IQ3_XXS: case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S: case DType::IQ1_M:
    case DType::IQ1_S:
      return true;
    case DType::Q2_K: return o.preset.preset == Preset::Q2_K_S;
    default: return false;
  }
}

std::optional<PresetInfo> find_preset(const std::string& name) {
  const std::string n = lower(name);
  for (const auto& p : kPresets)
    if (n == p.name) return p;
  return std::nullopt;
}

std::string preset_names() {
  std::string s;
  for (const auto& p : kPresets) s += (s.empty() ? "" : ", ") + std::string(p.name);
  return s;
}

PatternAndType parse_pattern_and_type(const std::string& spec) {
  const auto eq = spec.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    fail("--tensor-type '{}': expected PATTERN=TYPE, e.g. 'ffn_down=q6_k'", spec);
  try {
    return {std::regex(spec.substr(0, eq)), spec.substr(eq + 1)};
  } catch (const std::regex_error& e) {
    fail("--tensor-type '{}': bad regular expression: {}", spec, e.what());
  }
}

namespace {

// A type a tensor can be given by an override: one lmpress quantizes to, or a float type.
bool writable_type(std::optional<DType> t) {
  return t && (has_quantizer(*t) || *t == DType::F16 || *t == DType::BF16 || *t == DType::F32);
}

}  // namespace

TensorTypeOverride parse_tensor_type_override(const std::string& spec) {
  PatternAndType pt = parse_pattern_and_type(spec);
  const auto t = dtype_from_name(pt.type);
  if (!writable_type(t))
    fail("--tensor-type '{}': unknown or unsupported type '{}'", spec, pt.type);
  return {spec, std::move(pt.pattern), *t};
}

bool is_quantizable(const Tensor& t) {
  const std::string& n = t.name;
  return t.shape.size() == 2 && n.size() > 6 && n.compare(n.size() - 6, 6, "weight") == 0 &&
         !contains(n, "_norm.weight") && n != "rope_freqs.weight" && !is_router(n);
}

namespace {

// llama.cpp's phi3 holds q, k, v in one tensor and gate, up in another, so
// each group takes one type: its members' largest (per row).
void unify_fused_types(const Model& m, std::map<std::string, DType>& plan) {
  for (int64_t l = 0; l < m.cfg.n_layers; l++) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const auto& group : {std::vector<std::string>{b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"},
                              std::vector<std::string>{b + "ffn_gate.weight", b + "ffn_up.weight"}}) {
      if (!plan.count(group[0])) continue;
      const uint64_t cols = uint64_t(m.tensor(group[0]).cols());
      DType best = plan.at(group[0]);
      for (const auto& name : group)
        if (row_bytes(plan.at(name), cols) > row_bytes(best, cols)) best = plan.at(name);
      for (const auto& name : group) plan[name] = best;
    }
  }
}

// A --tensor-type pattern matches a tensor by its name, and an expert also by
// the name of the stack llama.cpp holds it in (ffn_down_exps=q8_0 works as in
// llama-quantize).
bool override_matches(const std::string& name, const std::regex& pattern) {
  if (std::regex_search(name, pattern)) return true;
  const auto stacked = stacked_expert_name(name);
  return stacked && std::regex_search(stacked->first, pattern);
}

// llama.cpp stacks a layer's experts of one projection in one tensor, so they
// take one type: the largest any of them was given (a --tensor-type pattern
// may name one expert).
void unify_expert_types(const Model& m, std::map<std::string, DType>& plan) {
  std::map<std::string, DType> best;
  for (const Tensor& t : m.tensors)
    if (const auto s = stacked_expert_name(t.name); s && plan.count(t.name)) {
      const DType d = plan.at(t.name);
      auto [it, fresh] = best.emplace(s->first, d);
      if (!fresh && row_bytes(d, uint64_t(t.cols())) > row_bytes(it->second, uint64_t(t.cols()))) it->second = d;
    }
  for (auto& [name, d] : plan)
    if (const auto s = stacked_expert_name(name)) d = best.at(s->first);
}

}  // namespace

ExpertTypeRule parse_expert_type_rule(const std::string& spec) {
  ExpertTypeRule r;
  r.spec = spec;
  const size_t colon = spec.find(':'), eq = spec.rfind('=');
  if (colon == std::string::npos || eq == std::string::npos || eq < colon)
    fail("--expert-type '{}': expected hot:FRACTION=TYPE or cold:FRACTION=TYPE (e.g. hot:0.25=q6_k)", spec);
  const std::string side = spec.substr(0, colon);
  if (side != "hot" && side != "cold") fail("--expert-type '{}': '{}' is neither hot nor cold", spec, side);
  r.hot = side == "hot";
  const auto f = parse_double(spec.substr(colon + 1, eq - colon - 1));
  if (!f || !(*f > 0 && *f <= 1)) fail("--expert-type '{}': the share of experts must be in (0, 1]", spec);
  r.fraction = *f;
  const auto t = dtype_from_name(spec.substr(eq + 1));
  if (!writable_type(t))
    fail("--expert-type '{}': unknown or unsupported type '{}'", spec, spec.substr(eq + 1));
  r.type = *t;
  return r;
}

namespace {

// Applies the expert rules to the plan: per block with experts, experts ranked by routed tokens (most first, the
// lower index first among equals), the hot or cold share of them given the rule's type.
void apply_expert_types(const Model& m, const MixOptions& o, std::map<std::string, DType>& plan) {
  const ModelConfig& c = m.cfg;
  std::set<std::string> given;
  for (int64_t l = 0; l < c.n_layers; l++) {
    if (!c.layer_moe(l)) continue;
    const std::string b = fmt::format("blk.{}.", l);
    std::vector<std::pair<int64_t, int64_t>> ranked;  // (tokens, expert)
    for (int64_t e = 0; e < c.n_experts; e++) {
      const std::string name = expert_tensor_name(b + "ffn_gate_exps.weight", e);
      const auto it = o.expert_tokens.find(name);
      if (it == o.expert_tokens.end())
        fail("--expert-type ranks experts by their routed tokens, and the imatrix has no entry for {} (make one with "
             "`lmpress imatrix` or llama-imatrix on this model)",
             name);
      ranked.emplace_back(it->second, e);
    }
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    for (const ExpertTypeRule& r : o.expert_types) {
      const int64_t k = std::llround(r.fraction * double(c.n_experts));
      if (k < 1) fail("--expert-type '{}': less than one of the {} experts", r.spec, c.n_experts);
      for (int64_t i = 0; i < k; i++) {
        const int64_t e = ranked[size_t(r.hot ? i : c.n_experts - 1 - i)].second;
        for (const char* stack : {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"}) {
          const std::string name = expert_tensor_name(b + stack, e);
          if (!given.insert(name).second) continue;
          plan[name] = is_float_type(r.type) ? r.type : fallback(r.type, m.tensor(name).cols());
        }
      }
    }
  }
}

}  // namespace

std::map<std::string, DType> plan_tensor_types(const Model& m, const MixOptions& o) {
  std::map<std::string, DType> plan;
  const bool tied = m.find("output.weight") == nullptr;
  std::vector<bool> matched(o.overrides.size(), false);
  for (const auto& t : m.tensors) {
    DType d = t.dtype;
    if (is_quantizable(t)) {
      for (size_t k = 0; k < o.overrides.size(); k++)
        matched[k] = matched[k] || override_matches(t.name, o.overrides[k].pattern);
      const bool is_output = t.name == "output.weight" || (tied && t.name == "token_embd.weight");
      const bool is_embd = t.name == "token_embd.weight";
      if (is_output && o.output_type) {
        d = *o.output_type;
      } else if (is_embd && !is_output && o.token_embd_type) {
        d = *o.token_embd_type;
      } else {
        d = o.preset.base;
        bool manual = false;
        for (const auto& ov : o.overrides)
          if (override_matches(t.name, ov.pattern)) {
            d = ov.type;
            manual = true;
            break;
          }
        if (!manual && !o.pure && !is_float_type(o.preset.base)) d = preset_type(m, t, o, is_output);
      }
      if (!is_float_type(d)) d = fallback(d, t.cols());
    } else if (t.dtype == DType::F16 || t.dtype == DType::BF16) {
      d = DType::F32;  // norms and biases stay f32, as llama.cpp keeps them
    }
    plan[t.name] = d;
  }
  if (m.cfg.arch == "phi3") unify_fused_types(m, plan);
  if (!o.expert_types.empty() && !m.cfg.moe()) fail("--expert-type: {} has no experts", m.path);
  // Stacks first take one type; then the expert rules override it for the experts they choose.
  if (m.cfg.moe()) unify_expert_types(m, plan);
  if (!o.expert_types.empty()) apply_expert_types(m, o, plan);
  for (size_t k = 0; k < o.overrides.size(); k++)
    if (!matched[k])
      fail("--tensor-type '{}': the pattern matches no quantizable tensor of {} (names look like "
           "blk.0.ffn_down.weight)",
           o.overrides[k].spec, m.path);
  return plan;
}

}  // namespace lmpress
