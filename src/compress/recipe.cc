#include "compress/recipe.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <regex>
#include <set>

#include "compress/smooth.h"
#include "core/error.h"
#include "model/export.h"
#include "core/temp_files.h"

namespace lmpress {

namespace {

struct Ctx {
  const std::string& source;
  std::string where;  // "quant_stage.quant_modifiers.GPTQModifier"
};

std::string scalar(const YAML::Node& n, const Ctx& c, const std::string& key) {
  if (!n.IsScalar()) fail("{}: {}.{} must be a single value", c.source, c.where, key);
  return n.Scalar();
}

double number(const YAML::Node& n, const Ctx& c, const std::string& key) {
  const std::string s = scalar(n, c, key);
  try {
    size_t end = 0;
    const double v = std::stod(s, &end);
    if (end == s.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  fail("{}: {}.{} '{}' is not a number", c.source, c.where, key, s);
}

// A whole number in [lo, hi].
int64_t integer(const YAML::Node& n, const Ctx& c, const std::string& key, int64_t lo, int64_t hi) {
  const double v = number(n, c, key);
  if (v != std::floor(v) || v < double(lo) || v > double(hi))
    fail("{}: {}.{} {} is not a whole number in [{}, {}]", c.source, c.where, key, v, lo, hi);
  return int64_t(v);
}

std::vector<std::string> strings(const YAML::Node& n, const Ctx& c, const std::string& key) {
  if (n.IsScalar()) return {n.Scalar()};
  if (!n.IsSequence()) fail("{}: {}.{} must be a string or a list of strings", c.source, c.where, key);
  std::vector<std::string> v;
  for (const auto& e : n) v.push_back(scalar(e, c, key));
  return v;
}

// targets: every linear layer of the blocks, as llm-compressor spells it.
void check_targets(const YAML::Node& n, const Ctx& c) {
  for (const auto& t : strings(n, c, "targets")) {
    if (t == "Linear") continue;
    if (t.rfind("re:", 0) == 0) {
      // A pattern that selects every decoder layer (e.g. 're:model.layers.\d*$') or every linear of every
      // layer: one that picks only some would be run wider than it reads.
      try {
        const std::regex re(t.substr(3));
        bool whole = true;
        for (const char* layer : {"model.layers.0", "model.layers.1", "model.layers.17"}) {
          int hits = 0;
          for (const char* l : {".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj", ".self_attn.o_proj",
                                ".mlp.gate_proj", ".mlp.up_proj", ".mlp.down_proj"})
            hits += std::regex_search(std::string(layer) + l, re);
          whole = whole && (hits == 7 || (hits == 0 && std::regex_search(layer, re)));
        }
        if (whole) continue;
      } catch (const std::regex_error&) {
        fail("{}: {}.targets '{}' is not a valid regular expression", c.source, c.where, t);
      }
    }
    fail("{}: {}.targets '{}': lmpress compresses every linear layer of the blocks (targets: Linear, or a pattern "
         "selecting model.layers); other targets are not supported",
         c.source, c.where, t);
  }
}

// ignore: lm_head is never compressed by these steps; nothing else can be left out.
void check_ignore(const YAML::Node& n, const Ctx& c) {
  for (const auto& t : strings(n, c, "ignore")) {
    if (t == "lm_head" || t == "re:.*lm_head" || t == "re:.*lm_head$") continue;
    fail("{}: {}.ignore '{}': lmpress leaves lm_head (and the embeddings) uncompressed and cannot leave out other "
         "modules",
         c.source, c.where, t);
  }
}

// The int-N spec of llm-compressor's preset schemes, or of one config group.
std::string quant_type(const YAML::Node& m, const Ctx& c) {
  if (m["scheme"] && m["config_groups"]) fail("{}: {}: give scheme or config_groups, not both", c.source, c.where);
  if (m["scheme"]) {
    const std::string s = scalar(m["scheme"], c, "scheme");
    if (s == "W4A16") return "int4-g128";
    if (s == "W4A16_ASYM") return "int4-g128-asym";
    if (s == "W8A16") return "int8-ch";
    if (s == "W8A8") return "w8a8";  // int8 per channel, int8 activations per token (quantize --scheme w8a8)
    if (s == "W4A8" || s.rfind("FP8", 0) == 0)
      fail("{}: {}.scheme {}: this activation quantization is not built; the schemes are W4A16, W4A16_ASYM, W8A16 "
           "and W8A8",
           c.source, c.where, s);
    fail("{}: {}.scheme '{}' is unknown (W4A16, W4A16_ASYM, W8A16, W8A8)", c.source, c.where, s);
  }
  const YAML::Node g = m["config_groups"];
  if (!g || !g.IsMap() || g.size() != 1) fail("{}: {}: give scheme, or config_groups with one group", c.source, c.where);
  const YAML::Node group = g.begin()->second;
  const Ctx gc{c.source, c.where + ".config_groups." + g.begin()->first.Scalar()};
  if (!group.IsMap()) fail("{}: {} must be a map", c.source, gc.where);
  for (const auto& kv : group) {
    const std::string k = kv.first.Scalar();
    if (k == "targets") check_targets(kv.second, gc);
    else if (k == "input_activations" || k == "output_activations") {
      if (!kv.second.IsNull())
        fail("{}: {}.{}: activation quantization in config_groups is not read (scheme: W8A8 is)", c.source, gc.where, k);
    } else if (k != "weights") fail("{}: {}.{} is not a config group field lmpress reads", c.source, gc.where, k);
  }
  const YAML::Node w = group["weights"];
  if (!w || !w.IsMap()) fail("{}: {}.weights must be a map", c.source, gc.where);
  const Ctx wc{c.source, gc.where + ".weights"};
  int bits = 0;
  bool sym = true;
  std::string strategy;
  int64_t group_size = 0;
  for (const auto& kv : w) {
    const std::string k = kv.first.Scalar();
    if (k == "num_bits") bits = int(integer(kv.second, wc, k, 1, 64));
    else if (k == "symmetric") sym = kv.second.as<bool>();
    else if (k == "strategy") strategy = scalar(kv.second, wc, k);
    else if (k == "group_size") group_size = integer(kv.second, wc, k, -1, int64_t(1) << 30);
    else if (k == "type") {
      if (scalar(kv.second, wc, k) != "int") fail("{}: {}.type: int weights only", c.source, wc.where);
    } else if (k == "dynamic") {
      if (kv.second.as<bool>()) fail("{}: {}.dynamic: weights are quantized statically", c.source, wc.where);
    } else if (k != "actorder") fail("{}: {}.{} is not a weights field lmpress reads", c.source, wc.where, k);
  }
  if (bits != 4 && bits != 8) fail("{}: {}.num_bits {}: 4 or 8", c.source, wc.where, bits);
  std::string type = "int" + std::to_string(bits);
  if (strategy == "channel") type += "-ch";
  else if (strategy == "group" && group_size > 0) type += "-g" + std::to_string(group_size);
  else fail("{}: {}.strategy '{}' (group_size {}): group with a group_size, or channel", c.source, wc.where, strategy, group_size);
  return sym ? type : type + "-asym";
}

bool actorder(const YAML::Node& n, const Ctx& c) {
  if (n.IsNull()) return false;
  const std::string s = scalar(n, c, "actorder");
  if (s == "group" || s == "true") return true;
  if (s == "static" || s == "false") return false;
  if (s == "weight") fail("{}: {}.actorder weight: only group act-order (GPTQ's desc_act) is built", c.source, c.where);
  fail("{}: {}.actorder '{}' is unknown (group, static)", c.source, c.where, s);
}

RecipeStep modifier(const std::string& name, const YAML::Node& args, const Ctx& c) {
  RecipeStep st;
  st.modifier = name;
  if (!args.IsMap() && !args.IsNull()) fail("{}: {} must be a map of arguments", c.source, c.where);
  const bool quant = name == "GPTQModifier" || name == "QuantizationModifier";
  const bool prune = name == "SparseGPTModifier" || name == "WandaModifier";
  if (name == "SmoothQuantModifier") {
    st.kind = RecipeStep::Kind::Smooth;
    for (const auto& kv : args) {
      const std::string k = kv.first.Scalar();
      if (k == "smoothing_strength") {
        st.smooth_alpha = number(kv.second, c, k);
        if (!(st.smooth_alpha >= 0 && st.smooth_alpha <= 1))
          fail("{}: {}.smoothing_strength {}: in [0, 1]", c.source, c.where, st.smooth_alpha);
      } else if (k == "ignore") {
        check_ignore(kv.second, c);
      } else {
        fail("{}: {}.{} is not an argument lmpress reads for SmoothQuantModifier (smoothing_strength; the mappings are "
             "the Llama defaults: q/k/v after input_layernorm, gate/up after post_attention_layernorm)",
             c.source, c.where, k);
      }
    }
    return st;
  }
  if (name == "SpinQuantModifier") {
    // SpinQuant's offline rotations with fixed random Hadamard matrices (learnable
    // rotations and the online R3/R4 are not built).
    st.kind = RecipeStep::Kind::Rotate;
    std::vector<std::string> rotations = {"R1", "R2"};
    for (const auto& kv : args) {
      const std::string k = kv.first.Scalar();
      if (k == "rotations") {
        rotations = strings(kv.second, c, k);
      } else if (k == "transform_type") {
        const std::string t = scalar(kv.second, c, k);
        if (t != "hadamard" && t != "random-hadamard")
          fail("{}: {}.transform_type '{}': lmpress builds hadamard (a random Hadamard matrix)", c.source, c.where, t);
      } else if (k == "randomize" || k == "learnable") {
        if (scalar(kv.second, c, k) != "false")
          fail("{}: {}.{}: only fixed rotations are built ({}: false)", c.source, c.where, k, k);
      } else {
        fail("{}: {}.{} is not an argument lmpress reads for SpinQuantModifier (rotations, transform_type)", c.source,
             c.where, k);
      }
    }
    bool r1 = false;
    st.rotate.heads = false;
    for (std::string r : rotations) {
      for (auto& ch : r) ch = char(std::toupper(static_cast<unsigned char>(ch)));
      if (r == "R1") r1 = true;
      else if (r == "R2") st.rotate.heads = true;
      else if (r == "R3" || r == "R4")
        fail("{}: {}.rotations {}: an online rotation (at run time) is not built; R1 and R2 are folded into the weights",
             c.source, c.where, r);
      else fail("{}: {}.rotations '{}' is unknown (R1, R2)", c.source, c.where, r);
    }
    if (!r1) fail("{}: {}.rotations: lmpress rotates the residual stream (R1) always; R2 alone is not built", c.source,
                  c.where);
    return st;
  }
  if (!quant && !prune)
    fail("{}: {}: unknown modifier (SmoothQuantModifier, SpinQuantModifier, SparseGPTModifier, WandaModifier, "
         "GPTQModifier, QuantizationModifier)",
         c.source, c.where);
  std::set<std::string> allowed = {"targets", "ignore"};
  if (quant) {
    st.kind = RecipeStep::Kind::Quantize;
    const std::string type = quant_type(args, c);
    if (type == "w8a8") {
      st.quantize.scheme = type;
    } else {
      st.quantize.type = type;
    }
    st.quantize.method = name == "GPTQModifier" ? "gptq" : "rtn";
    st.quantize.format = "compressed-tensors";
    allowed.insert({"scheme", "config_groups"});
    if (name == "GPTQModifier") allowed.insert({"dampening_frac", "actorder", "block_size"});
  } else {
    st.kind = RecipeStep::Kind::Prune;
    st.prune.method = parse_prune_method(name == "SparseGPTModifier" ? "sparsegpt" : "wanda");
    allowed.insert({"sparsity", "mask_structure"});
    if (name == "SparseGPTModifier") allowed.insert({"dampening_frac", "block_size"});
  }
  double sparsity = -1;
  std::string mask = "0:0";
  for (const auto& kv : args) {
    const std::string k = kv.first.Scalar();
    if (!allowed.count(k)) fail("{}: {}.{} is not an argument lmpress reads for {}", c.source, c.where, k, name);
    if (k == "targets") check_targets(kv.second, c);
    else if (k == "ignore") check_ignore(kv.second, c);
    else if (k == "dampening_frac") {
      const double d = number(kv.second, c, k);
      if (!(d > 0 && d <= 1)) fail("{}: {}.dampening_frac {}: a fraction in (0, 1]", c.source, c.where, d);
      (quant ? st.quantize.damp : st.prune.gptq.damp) = d;
    } else if (k == "actorder") st.quantize.act_order = actorder(kv.second, c);
    else if (k == "block_size") {
      const int64_t b = integer(kv.second, c, k, 1, int64_t(1) << 30);
      if (b != 128) fail("{}: {}.block_size {}: lmpress's lazy batch is 128 columns", c.source, c.where, b);
    } else if (k == "sparsity") sparsity = number(kv.second, c, k);
    else if (k == "mask_structure") mask = scalar(kv.second, c, k);
  }
  if (prune) {
    if (mask == "0:0") {
      if (!(sparsity > 0 && sparsity < 1)) fail("{}: {}.sparsity {}: a fraction in (0, 1)", c.source, c.where, sparsity);
      st.prune.pattern = SparsityPattern::unstructured(sparsity);
    } else {
      st.prune.pattern = SparsityPattern::parse_nm(mask);
      // llm-compressor's sparsity for N:M is the pattern's own (1 - N/M).
      if (sparsity >= 0 && std::fabs(sparsity - st.prune.pattern.fraction()) > 1e-9)
        fail("{}: {}.sparsity {} disagrees with mask_structure {} ({})", c.source, c.where, sparsity, mask,
             st.prune.pattern.fraction());
    }
  }
  return st;
}

}  // namespace

Recipe parse_recipe(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("{}: not YAML: {}", source, e.what());
  }
  if (!root.IsMap() || root.size() == 0) fail("{}: a recipe is a map of stages (e.g. quant_stage: ...)", source);
  Recipe r;
  r.text = text;
  for (const auto& stage : root) {
    const std::string sname = stage.first.Scalar();
    if (!stage.second.IsMap()) fail("{}: stage {} must be a map", source, sname);
    for (const auto& part : stage.second) {
      const std::string key = part.first.Scalar();
      const Ctx c{source, sname + "." + key};
      if (key == "run_type") {
        if (scalar(part.second, c, key) != "oneshot") fail("{}: {}: only oneshot stages run here (no training)", source, c.where);
        continue;
      }
      if (key.size() < 10 || key.compare(key.size() - 10, 10, "_modifiers") != 0)
        fail("{}: {} is neither run_type nor a *_modifiers map", source, c.where);
      if (!part.second.IsMap()) fail("{}: {} must be a map of modifiers", source, c.where);
      for (const auto& mod : part.second) {
        RecipeStep st = modifier(mod.first.Scalar(), mod.second, {source, c.where + "." + mod.first.Scalar()});
        st.stage = sname;
        r.steps.push_back(std::move(st));
      }
    }
  }
  if (r.steps.empty()) fail("{}: the recipe has no modifiers", source);
  for (size_t i = 0; i + 1 < r.steps.size(); i++)
    if (r.steps[i].kind == RecipeStep::Kind::Quantize)
      fail("{}: {}.{}: quantization writes a checkpoint no later step can read; it must come last", source,
           r.steps[i].stage, r.steps[i].modifier);
  return r;
}

void run_recipe(const Recipe& r, const std::string& in_path, const std::string& out_path,
                const CalibrationOptions& calib, const std::function<void(size_t, const RecipeStep&)>& on_step) {
  std::string input = in_path;
  // The intermediate files: removed when the recipe ends, also by an error or a signal.
  struct Temp {
    std::string path;
    TempPath guard;
    Temp(const std::string& p) : path(p), guard(p, false) {}
    ~Temp() {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  };
  std::vector<std::unique_ptr<Temp>> temps;
  // Checked before any step runs.
  std::vector<QuantizeOptions> qopts(r.steps.size());
  for (size_t i = 0; i < r.steps.size(); i++) {
    const RecipeStep& st = r.steps[i];
    if (st.kind == RecipeStep::Kind::Quantize) {
      QuantizeRequest q = st.quantize;
      q.calib = calib;
      qopts[i] = quantize_options(q, out_path);
      qopts[i].recipe = r.text;
    } else if ((st.kind == RecipeStep::Kind::Smooth ||
                (st.kind == RecipeStep::Kind::Prune && st.prune.method != PruneMethod::Magnitude)) &&
               calib.file.empty()) {
      fail("{}: {} needs calibration text: --calib FILE", st.stage, st.modifier);
    }
  }
  for (size_t i = 0; i < r.steps.size(); i++) {
    const RecipeStep& st = r.steps[i];
    if (on_step) on_step(i, st);
    const bool last = i + 1 == r.steps.size();
    std::string base = out_path;
    while (base.size() > 1 && base.back() == '/') base.pop_back();  // "out/" names the directory out
    const std::string out = last ? out_path : base + ".step" + std::to_string(i) + ".tmp.gguf";
    if (!last) temps.push_back(std::make_unique<Temp>(out));
    auto m = load_model(input);
    check_finite_weights(*m);
    if (st.kind == RecipeStep::Kind::Quantize) {
      quantize_model(*m, out, qopts[i]);
    } else if (st.kind == RecipeStep::Kind::Smooth || st.kind == RecipeStep::Kind::Rotate) {
      if (st.kind == RecipeStep::Kind::Smooth) {
        smooth_model(*m, calib, st.smooth_alpha);
      } else {
        rotate_model(*m, st.rotate);
      }
      ExportOptions eo;
      if (last) eo.recipe = r.text;
      write_gguf_model(*m, out, eo);
    } else {
      PruneOptions p = st.prune;
      p.calib = calib;
      if (last) p.recipe = r.text;
      prune_model(*m, out, p);
    }
    input = out;
  }
}

}  // namespace lmpress
