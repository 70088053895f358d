#include "compress/recipe.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
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

// ignore for the steps that act on every linear (SmoothQuant): lm_head only.
void check_ignore_lm_head(const YAML::Node& n, const Ctx& c) {
  for (const auto& t : strings(n, c, "ignore")) {
    if (t == "lm_head" || t == "re:.*lm_head" || t == "re:.*lm_head$") continue;
    fail("{}: {}.ignore '{}': SmoothQuant smooths every block's q/k/v and gate/up; lm_head is the only module it can "
         "leave out",
         c.source, c.where, t);
  }
}

// A targets or ignore list: names as llm-compressor matches them (core/module_match.h).
std::vector<std::string> module_list(const YAML::Node& n, const Ctx& c, const std::string& key) {
  std::vector<std::string> v = strings(n, c, key);
  for (const auto& t : v) ModuleTarget(t, c.source + ": " + c.where + "." + key);  // fails on a bad pattern now
  return v;
}

bool actorder(const YAML::Node& n, const Ctx& c) {
  if (n.IsNull()) return false;
  const std::string s = scalar(n, c, "actorder");
  if (s == "group" || s == "true") return true;
  if (s == "static" || s == "false") return false;
  if (s == "weight") fail("{}: {}.actorder weight: only group act-order (GPTQ's desc_act) is built", c.source, c.where);
  fail("{}: {}.actorder '{}' is unknown (group, static)", c.source, c.where, s);
}

// One config group's weights as an int-N spec.
IntGroupSpec group_weights(const YAML::Node& w, const Ctx& wc) {
  if (!w || !w.IsMap()) fail("{}: {} must be a map", wc.source, wc.where);
  int bits = 0;
  bool sym = true;
  std::string strategy;
  int64_t group_size = 0;
  bool act_order = false;
  for (const auto& kv : w) {
    const std::string k = kv.first.Scalar();
    if (k == "num_bits") bits = int(integer(kv.second, wc, k, 1, 64));
    else if (k == "symmetric") sym = kv.second.as<bool>();
    else if (k == "strategy") strategy = scalar(kv.second, wc, k);
    else if (k == "group_size") group_size = integer(kv.second, wc, k, -1, int64_t(1) << 30);
    else if (k == "type") {
      if (scalar(kv.second, wc, k) != "int") fail("{}: {}.type: int weights only", wc.source, wc.where);
    } else if (k == "dynamic") {
      if (kv.second.as<bool>()) fail("{}: {}.dynamic: weights are quantized statically", wc.source, wc.where);
    } else if (k == "actorder") {
      act_order = actorder(kv.second, wc);
    } else fail("{}: {}.{} is not a weights field lmpress reads", wc.source, wc.where, k);
  }
  if (bits != 4 && bits != 8) fail("{}: {}.num_bits {}: 4 or 8", wc.source, wc.where, bits);
  IntGroupSpec s;
  s.bits = bits;
  s.sym = sym;
  if (strategy == "channel") s.group = -1;
  else if (strategy == "group" && group_size > 0) s.group = group_size;
  else fail("{}: {}.strategy '{}' (group_size {}): group with a group_size, or channel", wc.source, wc.where, strategy, group_size);
  if (act_order && s.group < 0) fail("{}: {}.actorder: act-order orders groups; a channel strategy has one", wc.source, wc.where);
  s.act_order = act_order;
  return s;
}

// The quantization of a GPTQ/Quantization modifier: llm-compressor's preset
// schemes, or config groups. st.quantize.type (or .scheme) gets the format of
// the group targeting Linear (else the first group's); the others go to st.groups.
void quant_formats(const YAML::Node& m, const Ctx& c, RecipeStep& st) {
  if (m["scheme"] && m["config_groups"]) fail("{}: {}: give scheme or config_groups, not both", c.source, c.where);
  if (m["scheme"]) {
    const std::string s = scalar(m["scheme"], c, "scheme");
    if (s == "W4A16") st.quantize.type = "int4-g128";
    else if (s == "W4A16_ASYM") st.quantize.type = "int4-g128-asym";
    else if (s == "W8A16") st.quantize.type = "int8-ch";
    else if (s == "W8A8") st.quantize.scheme = "w8a8";  // int8 per channel, int8 activations per token (quantize --scheme w8a8)
    else if (s == "W4A8") {  // the INT8_W4A8 preset: int4 in groups of 128, int8 activations per token
      st.quantize.scheme = "w4a8";
      st.quantize.type = "int4-g128";
    } else if (s.rfind("FP8", 0) == 0)
      fail("{}: {}.scheme {}: this activation quantization is not built; the schemes are W4A16, W4A16_ASYM, W8A16, "
           "W8A8 and W4A8",
           c.source, c.where, s);
    else fail("{}: {}.scheme '{}' is unknown (W4A16, W4A16_ASYM, W8A16, W8A8, W4A8)", c.source, c.where, s);
    return;
  }
  const YAML::Node g = m["config_groups"];
  if (!g || !g.IsMap() || g.size() == 0) fail("{}: {}: give scheme, or config_groups", c.source, c.where);
  std::optional<IntGroupSpec> linear;
  std::vector<std::string> union_targets;
  std::optional<bool> group_act_order;  // lmpress's GPTQ orders every group-strategy linear or none
  for (const auto& entry : g) {
    const YAML::Node group = entry.second;
    const Ctx gc{c.source, c.where + ".config_groups." + entry.first.Scalar()};
    if (!group.IsMap()) fail("{}: {} must be a map", c.source, gc.where);
    std::vector<std::string> targets;
    for (const auto& kv : group) {
      const std::string k = kv.first.Scalar();
      if (k == "targets") targets = module_list(kv.second, gc, k);
      else if (k == "input_activations" || k == "output_activations") {
        if (!kv.second.IsNull())
          fail("{}: {}.{}: activation quantization in config_groups is not read (scheme: W8A8 is)", c.source, gc.where, k);
      } else if (k != "weights") fail("{}: {}.{} is not a config group field lmpress reads", c.source, gc.where, k);
    }
    if (targets.empty()) fail("{}: {}.targets: name the modules the group quantizes (Linear for every one)", c.source, gc.where);
    const IntGroupSpec spec = group_weights(group["weights"], {c.source, gc.where + ".weights"});
    if (spec.group > 0) {
      if (group_act_order && *group_act_order != spec.act_order)
        fail("{}: {}.weights.actorder: lmpress applies act-order to every group or to none", c.source, gc.where);
      group_act_order = spec.act_order;
    }
    if (std::find(targets.begin(), targets.end(), "Linear") != targets.end()) {
      if (targets.size() > 1) fail("{}: {}.targets: Linear already names every linear", c.source, gc.where);
      if (linear) fail("{}: {}.targets: two groups target Linear", c.source, gc.where);
      linear = spec;
      continue;
    }
    union_targets.insert(union_targets.end(), targets.begin(), targets.end());
    st.groups.emplace_back(module_selector(targets, {}, c.source + ": " + gc.where + ".targets", ""), spec);
    st.groups.back().first.containing = false;
  }
  st.quantize.act_order = group_act_order.value_or(false);
  if (linear) {
    st.quantize.type = linear->name();
  } else {
    // No group targets Linear: the linears no group names stay unquantized.
    st.quantize.type = st.groups.front().second.name();
    for (const auto& t : union_targets) st.select.targets.emplace_back(t, c.source + ": " + c.where + ".config_groups");
  }
}


// lmpress's LowRankModifier: `lmpress lowrank` (compress/low_rank_model.h).
RecipeStep low_rank_modifier(const YAML::Node& args, const Ctx& c, RecipeStep& st) {
  st.kind = RecipeStep::Kind::LowRank;
  LowRankOptions& o = st.lowrank;
  std::vector<std::string> targets, ignore;
  bool ratio = false, rank = false;
  for (const auto& kv : args) {
    const std::string k = kv.first.Scalar();
    if (k == "method") o.method = parse_low_rank_method(scalar(kv.second, c, k));
    else if (k == "ratio") {
      o.ratio = number(kv.second, c, k), ratio = true;
      if (!(o.ratio > 0 && o.ratio < 1)) fail("{}: {}.ratio {}: a fraction in (0, 1)", c.source, c.where, o.ratio);
    } else if (k == "rank") o.rank = integer(kv.second, c, k, 1, int64_t(1) << 30), rank = true;
    else if (k == "global") o.global = kv.second.as<bool>();
    else if (k == "alpha") o.alpha = number(kv.second, c, k);
    else if (k == "factor_type") {
      const std::string t = scalar(kv.second, c, k);
      const auto d = dtype_from_name(t);
      if (!d) fail("{}: {}.factor_type: unknown type '{}'", c.source, c.where, t);
      o.factor_type = *d;
    } else if (k == "targets") targets = module_list(kv.second, c, k);
    else if (k == "ignore") ignore = module_list(kv.second, c, k);
    else
      fail("{}: {}.{} is not an argument lmpress reads for LowRankModifier (method, ratio, rank, global, alpha, "
           "factor_type, targets, ignore)",
           c.source, c.where, k);
  }
  if (ratio == rank) fail("{}: {}: give ratio or rank", c.source, c.where);
  o.select = module_selector(targets, ignore, c.source + ": " + c.where + ".targets", c.source + ": " + c.where + ".ignore");
  return st;
}

// lmpress's DistillationModifier: full fine-tuning against a teacher (`lmpress finetune --teacher`).
RecipeStep distillation_modifier(const YAML::Node& args, const Ctx& c, RecipeStep& st) {
  st.kind = RecipeStep::Kind::Distill;
  DistillStep& d = st.distill;
  for (const auto& kv : args) {
    const std::string k = kv.first.Scalar();
    if (k == "teacher") d.teacher = scalar(kv.second, c, k);
    else if (k == "loss") d.loss = scalar(kv.second, c, k);
    else if (k == "steps") d.steps = integer(kv.second, c, k, 1, 1000000);
    else if (k == "batch") d.batch = integer(kv.second, c, k, 1, 65536);
    else if (k == "ctx") d.ctx = integer(kv.second, c, k, 2, 1 << 20);
    else if (k == "lr") {
      d.lr = number(kv.second, c, k);
      if (!(d.lr > 0 && d.lr < 1)) fail("{}: {}.lr {}: in (0, 1)", c.source, c.where, d.lr);
    } else if (k == "seed") d.seed = uint32_t(integer(kv.second, c, k, 0, 0xffffffffLL));
    else
      fail("{}: {}.{} is not an argument lmpress reads for DistillationModifier (teacher, loss, steps, batch, ctx, lr, "
           "seed)",
           c.source, c.where, k);
  }
  bool ok = d.loss == "kl" || d.loss == "rkl";
  if (d.loss.rfind("mix:", 0) == 0) {
    char* end = nullptr;
    const double a = std::strtod(d.loss.c_str() + 4, &end);
    ok = end != d.loss.c_str() + 4 && *end == 0 && a >= 0 && a <= 1;
  }
  if (!ok) fail("{}: {}.loss '{}': a distillation loss (kl, rkl, mix:A with A in [0, 1])", c.source, c.where, d.loss);
  return st;
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
        check_ignore_lm_head(kv.second, c);
      } else {
        fail("{}: {}.{} is not an argument lmpress reads for SmoothQuantModifier (smoothing_strength; the mappings are "
             "the Llama defaults: q/k/v after input_layernorm, gate/up after post_attention_layernorm)",
             c.source, c.where, k);
      }
    }
    return st;
  }
  if (name == "SpinQuantModifier") {
    // SpinQuant's rotations with fixed random Hadamard matrices: R1 and R2 folded
    // into the weights, R4 also applied at run time (learnable rotations are not built).
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
      else if (r == "R4") st.rotate.down = true;
      else if (r == "R3")
        fail("{}: {}.rotations R3: nothing of it is written into the model; lmpress rotates queries and keys when it "
             "caches them (--kv-rotate on; auto: for quantized caches), so leave R3 out",
             c.source, c.where);
      else fail("{}: {}.rotations '{}' is unknown (R1, R2, R4)", c.source, c.where, r);
    }
    if (!r1) fail("{}: {}.rotations: lmpress rotates the residual stream (R1) always; R2 alone is not built", c.source,
                  c.where);
    return st;
  }
  if (name == "LowRankModifier") return low_rank_modifier(args, c, st);
  if (name == "DistillationModifier") return distillation_modifier(args, c, st);
  if (!quant && !prune)
    fail("{}: {}: unknown modifier (SmoothQuantModifier, SpinQuantModifier, SparseGPTModifier, WandaModifier, "
         "GPTQModifier, QuantizationModifier; lmpress's LowRankModifier and DistillationModifier)",
         c.source, c.where);
  std::set<std::string> allowed = {"targets", "ignore"};
  if (quant) {
    st.kind = RecipeStep::Kind::Quantize;
    quant_formats(args, c, st);
    if (args["config_groups"] && args["targets"])
      fail("{}: {}.targets: with config_groups, each group names its targets", c.source, c.where);
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
  std::vector<std::string> targets, ignore;
  for (const auto& kv : args) {
    const std::string k = kv.first.Scalar();
    if (!allowed.count(k)) fail("{}: {}.{} is not an argument lmpress reads for {}", c.source, c.where, k, name);
    if (k == "targets") targets = module_list(kv.second, c, k);
    else if (k == "ignore") ignore = module_list(kv.second, c, k);
    else if (k == "dampening_frac") {
      const double d = number(kv.second, c, k);
      if (!(d > 0 && d <= 1)) fail("{}: {}.dampening_frac {}: a fraction in (0, 1]", c.source, c.where, d);
      (quant ? st.quantize.damp : st.prune.gptq.damp) = d;
    } else if (k == "actorder") {
      const bool a = actorder(kv.second, c);
      if (args["config_groups"] && a != st.quantize.act_order)
        fail("{}: {}.actorder disagrees with the config groups' weights.actorder", c.source, c.where);
      st.quantize.act_order = a;
    }
    else if (k == "block_size") {
      const int64_t b = integer(kv.second, c, k, 1, int64_t(1) << 30);
      if (b != 128) fail("{}: {}.block_size {}: lmpress's lazy batch is 128 columns", c.source, c.where, b);
    } else if (k == "sparsity") sparsity = number(kv.second, c, k);
    else if (k == "mask_structure") mask = scalar(kv.second, c, k);
  }
  ModuleSelector& sel = quant ? st.select : st.prune.select;
  sel.containing = !quant;  // quantization matches linears by their own names (compressed-tensors)
  const ModuleSelector given = module_selector(targets, ignore, c.source + ": " + c.where + ".targets",
                                               c.source + ": " + c.where + ".ignore");
  sel.targets.insert(sel.targets.end(), given.targets.begin(), given.targets.end());
  sel.ignore = given.ignore;
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

// A stage's `calibration:` map (lmpress's own key).
StageCalibration stage_calibration(const YAML::Node& n, const Ctx& c) {
  if (!n.IsMap()) fail("{}: {} must be a map (file, samples, ctx, consecutive)", c.source, c.where);
  StageCalibration s;
  for (const auto& kv : n) {
    const std::string k = kv.first.Scalar();
    if (k == "file") s.file = scalar(kv.second, c, k);
    else if (k == "samples") s.samples = integer(kv.second, c, k, -1, 1 << 20);
    else if (k == "ctx") s.ctx = integer(kv.second, c, k, 2, 1 << 20);
    else if (k == "consecutive") s.consecutive = kv.second.as<bool>();
    else fail("{}: {}.{} is not a calibration field (file, samples, ctx, consecutive)", c.source, c.where, k);
  }
  if (s.samples && *s.samples == 0) fail("{}: {}.samples 0: at least 1 (or -1: as many as the text holds)", c.source, c.where);
  return s;
}

}  // namespace

CalibrationOptions StageCalibration::over(CalibrationOptions base) const {
  if (file) base.file = *file;
  if (samples) base.samples = *samples;
  if (ctx) base.ctx = *ctx;
  if (consecutive) base.consecutive = *consecutive;
  return base;
}

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
    std::string run_type = "oneshot";
    StageCalibration calib;
    const size_t first = r.steps.size();
    for (const auto& part : stage.second) {
      const std::string key = part.first.Scalar();
      const Ctx c{source, sname + "." + key};
      if (key == "run_type") {
        run_type = scalar(part.second, c, key);
        if (run_type != "oneshot" && run_type != "train")
          fail("{}: {} '{}': oneshot, or train (for DistillationModifier)", source, c.where, run_type);
        continue;
      }
      if (key == "calibration") {
        calib = stage_calibration(part.second, c);
        continue;
      }
      if (key.size() < 10 || key.compare(key.size() - 10, 10, "_modifiers") != 0)
        fail("{}: {} is neither run_type, calibration nor a *_modifiers map", source, c.where);
      if (!part.second.IsMap()) fail("{}: {} must be a map of modifiers", source, c.where);
      for (const auto& mod : part.second) {
        RecipeStep st = modifier(mod.first.Scalar(), mod.second, {source, c.where + "." + mod.first.Scalar()});
        st.stage = sname;
        r.steps.push_back(std::move(st));
      }
    }
    for (size_t i = first; i < r.steps.size(); i++) {
      RecipeStep& st = r.steps[i];
      st.calib = calib;
      if (st.kind == RecipeStep::Kind::Distill && (calib.samples || calib.ctx || calib.consecutive))
        fail("{}: {}.calibration: a train stage reads only its file (the text trained on; DistillationModifier sets "
             "ctx and batch)",
             source, sname);
      if ((st.kind == RecipeStep::Kind::Distill) != (run_type == "train"))
        fail("{}: {}.{}: {}", source, sname, st.modifier,
             run_type == "train" ? "a train stage holds DistillationModifier only"
                                 : "DistillationModifier trains: its stage needs run_type: train");
    }
  }
  if (r.steps.empty()) fail("{}: the recipe has no modifiers", source);
  for (size_t i = 0; i + 1 < r.steps.size(); i++) {
    if (r.steps[i].kind == RecipeStep::Kind::Quantize)
      fail("{}: {}.{}: quantization writes a checkpoint no later step can read; it must come last", source,
           r.steps[i].stage, r.steps[i].modifier);
    if (r.steps[i].kind == RecipeStep::Kind::LowRank)
      fail("{}: {}.{}: the steps after it would multiply factorized linears back; low-rank compression must come last",
           source, r.steps[i].stage, r.steps[i].modifier);
  }
  return r;
}

void run_recipe(const Recipe& r, const std::string& in_path, const std::string& out_path,
                const CalibrationOptions& calib, const std::function<void(size_t, const RecipeStep&)>& on_step,
                const DistillRunner& distill) {
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
    const CalibrationOptions cal = st.calib.over(calib);
    if (st.kind == RecipeStep::Kind::Quantize) {
      QuantizeRequest q = st.quantize;
      q.calib = cal;
      qopts[i] = quantize_options(q, out_path);
      qopts[i].recipe = r.text;
      qopts[i].select = st.select;
      for (const auto& group : st.groups) {
        // Named, not a structured binding: the lambda copies it (clang before 16 cannot capture bindings).
        const ModuleSelector& sel = group.first;
        const IntGroupSpec& spec = group.second;
        IntRule rule;
        rule.what = st.stage + "." + st.modifier + " config group targeting " + sel.targets.front().spelled();
        rule.matches = [sel](const std::string&, const std::string& module) { return sel.selects(module); };
        rule.spec = spec;
        rule.spec->act_order = q.act_order && rule.spec->group > 0;
        check_int_checkpoint(qopts[i].checkpoint, *rule.spec);
        qopts[i].int_rules.push_back(std::move(rule));
      }
    } else if (cal.file.empty() &&
               (st.kind == RecipeStep::Kind::Smooth || st.kind == RecipeStep::Kind::Distill ||
                (st.kind == RecipeStep::Kind::Prune && st.prune.method != PruneMethod::Magnitude) ||
                (st.kind == RecipeStep::Kind::LowRank && st.lowrank.method != LowRankMethod::Svd))) {
      fail("{}: {} needs {} text: --calib FILE, or the stage's calibration.file", st.stage, st.modifier,
           st.kind == RecipeStep::Kind::Distill ? "training" : "calibration");
    }
    if (st.kind == RecipeStep::Kind::Distill && !distill)
      fail("{}: {}: this build of the recipe runner cannot train", st.stage, st.modifier);
    if (st.kind == RecipeStep::Kind::Distill && !st.distill.teacher.empty() && !std::filesystem::exists(st.distill.teacher))
      fail("{}: {}.teacher: {} does not exist", st.stage, st.modifier, st.distill.teacher);
  }
  for (size_t i = 0; i < r.steps.size(); i++) {
    const RecipeStep& st = r.steps[i];
    const CalibrationOptions cal = st.calib.over(calib);
    if (on_step) on_step(i, st);
    const bool last = i + 1 == r.steps.size();
    std::string base = out_path;
    while (base.size() > 1 && base.back() == '/') base.pop_back();  // "out/" names the directory out
    const std::string out = last ? out_path : base + ".step" + std::to_string(i) + ".tmp.gguf";
    if (!last) temps.push_back(std::make_unique<Temp>(out));
    if (st.kind == RecipeStep::Kind::Distill) {
      distill(st.distill, st.distill.teacher.empty() ? in_path : st.distill.teacher, input, out, cal,
              last ? r.text : std::string());
      input = out;
      continue;
    }
    auto m = load_model(input);
    check_finite_weights(*m);
    if (st.kind == RecipeStep::Kind::Quantize) {
      quantize_model(*m, out, qopts[i]);
    } else if (st.kind == RecipeStep::Kind::Smooth || st.kind == RecipeStep::Kind::Rotate) {
      if (st.kind == RecipeStep::Kind::Smooth) {
        smooth_model(*m, cal, st.smooth_alpha);
      } else {
        rotate_model(*m, st.rotate);
      }
      ExportOptions eo;
      if (last) eo.recipe = r.text;
      write_gguf_model(*m, out, eo);
    } else if (st.kind == RecipeStep::Kind::LowRank) {
      LowRankOptions o = st.lowrank;
      if (o.method != LowRankMethod::Svd) o.calib = cal;
      if (last) o.recipe = r.text;
      low_rank_model(*m, out, o);
    } else {
      PruneOptions p = st.prune;
      p.calib = cal;
      if (last) p.recipe = r.text;
      prune_model(*m, out, p);
    }
    input = out;
  }
}

}  // namespace lmpress
