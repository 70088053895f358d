#include "model/load_gptq.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#include <optional>

#include "core/error.h"
#include "core/fp16.h"
#include "io/json_file.h"
#include "kernels/blocks.h"
#include "kernels/to_f32.h"

namespace lmpress {

IntGroupSpec gptq_spec_from_config(const nlohmann::json& qc, const std::string& path) {
  if (!qc.is_object()) fail("{}: quantization_config must be an object", path);
  const std::string qcn = "quantization_config";
  const std::string method = json_string(qc, "quant_method", path, qcn, "");
  if (method != "gptq")
    fail("{}: quantization_config.quant_method '{}' is not supported (gptq)", path, method);
  const std::string format = json_string(qc, "checkpoint_format", path, qcn, "gptq");
  if (format != "gptq") fail("{}: GPTQ checkpoint_format '{}' is not supported (gptq)", path, format);
  IntGroupSpec s;
  const int64_t bits = json_int(qc, "bits", path, qcn);
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    fail("{}: GPTQ with {} bits is not supported (2, 3, 4, 8)", path, bits);
  s.bits = int(bits);
  s.group = json_int(qc, "group_size", path, qcn);
  if (s.group == 0 || s.group < -1) fail("{}: quantization_config.group_size {} is invalid", path, s.group);
  s.sym = json_bool(qc, "sym", path, qcn, true);
  s.act_order = json_bool(qc, "desc_act", path, qcn, false);
  return s;
}

namespace {

template <typename T>
std::vector<T> copy_as(const Tensor& t, DType want, const std::string& path) {
  if (t.dtype != want) fail("{}: {} has dtype {}, expected {}", path, t.name, dtype_name(t.dtype), dtype_name(want));
  std::vector<T> v(t.nbytes / sizeof(T));
  std::memcpy(v.data(), t.data, v.size() * sizeof(T));
  return v;
}

// The matrix as Q4_0 or Q8_0 blocks when that stores exactly the same values,
// so that it runs on the int8 kernels instead of as f32: every 32-column
// block lies in one group (its scale, representable in f16, becomes the
// block's d) and q − zero fits the block's integers: Q4_0 (d·(nibble − 8))
// when 4-bit groups all have zero 8 (symmetric), else Q8_0 (d·int8), which
// holds any 2/3/4-bit group and symmetric 8-bit ones. nullopt otherwise
// (act-order column orders, groups narrower than 32, asymmetric 8-bit).
std::optional<Tensor> exact_blocks(const IntGroupTensor& q, const std::string& name) {
  if (q.cols % 32) return std::nullopt;
  for (int64_t c = 0; c < q.cols; c++)
    if (q.g_idx[size_t(c)] != q.g_idx[size_t(c - c % 32)]) return std::nullopt;
  bool q4 = q.spec.bits == 4;
  for (size_t g = 0; g < q.scale.size(); g++) {
    if (f16_to_f32(f32_to_f16(q.scale[g])) != q.scale[g]) return std::nullopt;
    q4 = q4 && q.zero[g] == 8;
  }
  const int64_t nb = q.cols / 32;
  auto buf = std::make_shared<std::vector<uint8_t>>(size_t(q.rows * nb) * (q4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0)));
  for (int64_t r = 0; r < q.rows; r++)
    for (int64_t b = 0; b < nb; b++) {
      const size_t g = size_t(r * q.n_groups + q.g_idx[size_t(32 * b)]);
      const uint8_t* levels = q.q.data() + r * q.cols + 32 * b;
      const uint16_t d = f32_to_f16(q.scale[g]);
      if (q4) {
        auto& o = reinterpret_cast<BlockQ4_0*>(buf->data())[r * nb + b];
        o.d = d;
        for (int i = 0; i < 16; i++) o.qs[i] = uint8_t(levels[i] | levels[i + 16] << 4);
        continue;
      }
      auto& o = reinterpret_cast<BlockQ8_0*>(buf->data())[r * nb + b];
      o.d = d;
      for (int i = 0; i < 32; i++) {
        const int v = int(levels[i]) - int(q.zero[g]);
        if (v < -128 || v > 127) return std::nullopt;
        o.qs[i] = int8_t(v);
      }
    }
  Tensor t;
  t.name = name;
  t.dtype = q4 ? DType::Q4_0 : DType::Q8_0;
  t.shape = {q.rows, q.cols};
  t.data = buf->data();
  t.nbytes = buf->size();
  t.owner = buf;
  return t;
}

// compressed-tensors: the int-N spec of one config group's weights; W8A8's and
// W4A8's input activations set c.act_int8.
IntGroupSpec ct_group_spec(const nlohmann::json& g, IntCheckpointConfig& c, const std::string& path, const std::string& gn) {
  if (!g.is_object() || !g.contains("weights") || !g["weights"].is_object())
    fail("{}: {}: the group has no weights object", path, gn);
  if (g.contains("input_activations") && !g["input_activations"].is_null()) {
    // W8A8 / W4A8: int8 per token, dynamic, symmetric (the INT8_W8A8 / INT8_W4A8 presets); nothing else is computed.
    const nlohmann::json& a = g["input_activations"];
    const std::string an = gn + ".input_activations";
    if (!a.is_object()) fail("{}: {} must be an object or null", path, an);
    if (!c.int_quantized || json_int(a, "num_bits", path, an) != 8 || json_string(a, "type", path, an, "int") != "int" ||
        !json_bool(a, "symmetric", path, an, true) || json_string(a, "strategy", path, an, "") != "token" ||
        !json_bool(a, "dynamic", path, an, false))
      fail("{}: {}: lmpress computes int8 activations per token, dynamic and symmetric, with int-quantized int8 or "
           "int4 weights (W8A8, W4A8); other activation schemes are not built",
           path, an);
    c.act_int8 = true;
  }
  const nlohmann::json& w = g["weights"];
  const std::string wn = gn + ".weights";
  if (json_string(w, "type", path, wn, "int") != "int") fail("{}: {}.type: int weights only", path, wn);
  const int64_t bits = json_int(w, "num_bits", path, wn);
  if (bits != 4 && bits != 8) fail("{}: {}.num_bits {}: 4 or 8 are read", path, wn, bits);
  IntGroupSpec s;
  s.bits = int(bits);
  s.sym = json_bool(w, "symmetric", path, wn, true);
  const std::string strategy = json_string(w, "strategy", path, wn, "");
  if (strategy == "channel") {
    s.group = -1;
  } else if (strategy == "group") {
    s.group = json_int(w, "group_size", path, wn);
    if (s.group < 1) fail("{}: {}.group_size {} is invalid", path, wn, s.group);
  } else {
    fail("{}: {}.strategy '{}': group or channel", path, wn, strategy);
  }
  // Only group act-order stores weight_g_idx; "weight" (and "static") orders leave the groups in column order.
  s.act_order = w.contains("actorder") && (w["actorder"] == "group" || w["actorder"] == true);
  if (c.int_quantized && (!s.sym || s.act_order || (bits == 8 && s.group != -1)))
    fail("{}: {}: int-quantized checkpoints are read with symmetric weights in column order, 8-bit per channel or "
         "4-bit per channel or group",
         path, wn);
  return s;
}

// A compressed-tensors target or ignore entry: a module name or "re:REGEX".
IntCheckpointConfig::Rule ct_rule(const std::string& name, std::optional<IntGroupSpec> spec, const std::string& what) {
  IntCheckpointConfig::Rule r;
  r.spec = spec;
  if (name.rfind("re:", 0) == 0) {
    r.kind = IntCheckpointConfig::Rule::Kind::Regex;
    r.text = name.substr(3);
    r.regex = std::make_shared<PyRegex>(r.text, what);
  } else {
    r.text = name;
  }
  return r;
}

}  // namespace

bool IntCheckpointConfig::Rule::matches(const std::string& module) const {
  switch (kind) {
    case Kind::Exact: return module == text;
    case Kind::Regex: return regex->match(module);
    case Kind::Substring: return module.find(text) != std::string::npos;
  }
  return false;
}

std::optional<IntGroupSpec> IntCheckpointConfig::spec_for(const std::string& module) const {
  for (const auto& r : rules)
    if (r.matches(module)) return r.spec;
  return default_quantized ? std::optional<IntGroupSpec>(spec) : std::nullopt;
}

bool IntCheckpointConfig::per_module() const {
  for (const auto& r : rules)
    if (r.text.find("lm_head") == std::string::npos) return true;
  return !default_quantized;
}

// The keys of `obj` in file order.
std::vector<std::string> keys_in_order(const nlohmann::ordered_json& obj) {
  std::vector<std::string> v;
  if (obj.is_object())
    for (auto it = obj.begin(); it != obj.end(); ++it) v.push_back(it.key());
  return v;
}

IntCheckpointConfig int_checkpoint_from_config(const nlohmann::ordered_json& order, const std::string& path) {
  if (!order.is_object()) fail("{}: quantization_config must be an object", path);
  const nlohmann::json qc = nlohmann::json::parse(order.dump());
  const std::string qcn = "quantization_config";
  const std::string method = json_string(qc, "quant_method", path, qcn, "");
  IntCheckpointConfig c;
  if (method == "gptq") {
    c.spec = gptq_spec_from_config(qc, path);
    // GPTQModel's dynamic rules, as vLLM reads them (get_dynamic_override): in order, "-:REGEX" leaves the
    // modules it matches unquantized, "+:REGEX" (or a bare REGEX) overrides bits / group_size / sym / desc_act.
    if (qc.contains("dynamic") && !qc["dynamic"].is_null()) {
      const nlohmann::json& d = qc["dynamic"];
      if (!d.is_object()) fail("{}: quantization_config.dynamic must be an object of pattern: overrides", path);
      for (const std::string& key : keys_in_order(order.at("dynamic"))) {
        const auto it = d.find(key);
        const std::string dn = "quantization_config.dynamic." + key;
        IntCheckpointConfig::Rule r;
        r.kind = IntCheckpointConfig::Rule::Kind::Regex;
        const bool skip = key.rfind("-:", 0) == 0;
        r.text = key.rfind("-:", 0) == 0 || key.rfind("+:", 0) == 0 ? key.substr(2) : key;
        r.regex = std::make_shared<PyRegex>(r.text, path + ": " + dn);
        if (!it.value().is_object()) fail("{}: {} must be an object", path, dn);
        if (!skip) {
          IntGroupSpec s = c.spec;
          const nlohmann::json& o = it.value();
          for (auto f = o.begin(); f != o.end(); ++f)
            if (f.key() != "bits" && f.key() != "group_size" && f.key() != "sym" && f.key() != "desc_act")
              fail("{}: {}.{} is not an override lmpress reads (bits, group_size, sym, desc_act)", path, dn, f.key());
          if (o.contains("bits")) {
            const int64_t bits = json_int(o, "bits", path, dn);
            if (bits != 2 && bits != 3 && bits != 4 && bits != 8) fail("{}: {}.bits {}: 2, 3, 4 or 8", path, dn, bits);
            s.bits = int(bits);
          }
          if (o.contains("group_size")) s.group = json_int(o, "group_size", path, dn);
          if (s.group == 0 || s.group < -1) fail("{}: {}.group_size {} is invalid", path, dn, s.group);
          s.sym = json_bool(o, "sym", path, dn, s.sym);
          s.act_order = json_bool(o, "desc_act", path, dn, s.act_order);
          r.spec = s;
        }
        c.rules.push_back(std::move(r));
      }
    }
    return c;
  }
  if (method == "awq") {
    c.format = IntCheckpoint::Awq;
    std::string version = json_string(qc, "version", path, qcn, "gemm");
    std::transform(version.begin(), version.end(), version.begin(), [](unsigned char x) { return char(std::tolower(x)); });
    if (version != "gemm")
      fail("{}: quantization_config.version '{}': only AWQ's gemm packing is read (gemv, marlin and exllama pack "
           "otherwise)", path, version);
    const int64_t bits = qc.contains("bits") ? json_int(qc, "bits", path, qcn) : json_int(qc, "w_bit", path, qcn);
    if (bits != 4) fail("{}: quantization_config.bits {}: AWQ checkpoints are 4-bit", path, bits);
    c.spec.bits = 4;
    c.spec.group = qc.contains("group_size") ? json_int(qc, "group_size", path, qcn) : json_int(qc, "q_group_size", path, qcn);
    if (c.spec.group == 0 || c.spec.group < -1) fail("{}: quantization_config.group_size {} is invalid", path, c.spec.group);
    c.spec.sym = !json_bool(qc, "zero_point", path, qcn, true);
    if (c.spec.sym) fail("{}: quantization_config.zero_point false: AWQ checkpoints without zero points are not read", path);
    // Modules whose names contain one of these are stored unquantized (AutoAWQ; vLLM's is_layer_skipped_awq).
    if (qc.contains("modules_to_not_convert") && !qc["modules_to_not_convert"].is_null()) {
      const nlohmann::json& skip = qc["modules_to_not_convert"];
      if (!skip.is_array()) fail("{}: quantization_config.modules_to_not_convert must be a list of names", path);
      for (const auto& e : skip) {
        if (!e.is_string() || e.get<std::string>().empty())
          fail("{}: quantization_config.modules_to_not_convert holds a non-name", path);
        c.rules.push_back({IntCheckpointConfig::Rule::Kind::Substring, e.get<std::string>(), nullptr, std::nullopt});
      }
    }
    return c;
  }
  if (method == "compressed-tensors") {
    c.format = IntCheckpoint::CompressedTensors;
    const std::string format = json_string(qc, "format", path, qcn, "");
    if (format != "pack-quantized" && format != "int-quantized")
      fail("{}: quantization_config.format '{}': compressed-tensors checkpoints are read in pack-quantized or "
           "int-quantized format",
           path, format);
    c.int_quantized = format == "int-quantized";
    // A 2:4 model's sparsity_config: `dense` leaves the tensors as they are; the bitmask layout replaces them.
    if (qc.contains("sparsity_config") && !qc["sparsity_config"].is_null()) {
      const nlohmann::json& sc = qc["sparsity_config"];
      const std::string scn = "quantization_config.sparsity_config";
      if (!sc.is_object()) fail("{}: {} must be an object or null", path, scn);
      const std::string sformat = sc.empty() ? "dense" : json_string(sc, "format", path, scn, "dense");
      if (sformat != "dense")
        fail("{}: {}.format '{}': only `dense` is read (the tensors stored whole); sparse-24-bitmask's compressed "
             "values and bitmasks are not",
             path, scn, sformat);
    }
    if (!qc.contains("config_groups") || !qc["config_groups"].is_object() || qc["config_groups"].empty())
      fail("{}: quantization_config.config_groups: no group of int weights", path);
    const nlohmann::json& groups = qc["config_groups"];
    if (c.int_quantized && groups.size() != 1)
      fail("{}: quantization_config.config_groups: int-quantized (W8A8) checkpoints are read with one group", path);
    // Which group a linear takes (vLLM's find_matched_target): ignore first, then the groups' module names and
    // patterns in order, then the group that targets the class Linear.
    if (qc.contains("ignore") && !qc["ignore"].is_null()) {
      if (!qc["ignore"].is_array()) fail("{}: quantization_config.ignore must be a list of module names", path);
      for (const auto& e : qc["ignore"]) {
        if (!e.is_string()) fail("{}: quantization_config.ignore holds a non-name", path);
        const ModuleTarget t(e.get<std::string>(), path + ": quantization_config.ignore");
        if (t.is_class()) fail("{}: quantization_config.ignore: Linear would leave every linear unquantized", path);
        c.rules.push_back(ct_rule(e.get<std::string>(), std::nullopt, path));
      }
    }
    std::optional<IntGroupSpec> class_spec;
    for (const std::string& key : keys_in_order(order.at("config_groups"))) {
      const auto it = groups.find(key);
      const std::string gn = "quantization_config.config_groups." + key;
      const IntGroupSpec s = ct_group_spec(it.value(), c, path, gn);
      const nlohmann::json& g = it.value();
      if (!g.contains("targets") || !g["targets"].is_array() || g["targets"].empty())
        fail("{}: {}.targets must be a list of module names, patterns or Linear", path, gn);
      for (const auto& t : g["targets"]) {
        if (!t.is_string()) fail("{}: {}.targets holds a non-name", path, gn);
        const std::string name = t.get<std::string>();
        if (name == "Linear") {
          if (class_spec) fail("{}: {}.targets: two groups target Linear", path, gn);
          class_spec = s;
        } else if (!name.empty() && std::isupper(static_cast<unsigned char>(name[0])) && name.find('.') == std::string::npos) {
          fail("{}: {}.targets '{}': a class other than Linear is not read", path, gn, name);
        } else {
          c.rules.push_back(ct_rule(name, s, path + ": " + gn + ".targets"));
        }
      }
    }
    if (class_spec) c.spec = *class_spec;
    else c.spec = *std::find_if(c.rules.begin(), c.rules.end(), [](const auto& r) { return r.spec.has_value(); })->spec;
    c.default_quantized = class_spec.has_value();
    return c;
  }
  fail("{}: quantization_config.quant_method '{}' is not supported (gptq, awq, compressed-tensors)", path, method);
}

namespace {

// compressed-tensors int-quantized: PREFIX.weight (I8 [out, in]) times PREFIX.weight_scale ([out, groups]: one
// per row, or one per row and group of in / groups consecutive columns) as F32.
std::vector<Tensor> dequantize_int_quantized(std::vector<Tensor> tensors, const IntGroupSpec& spec,
                                             const std::string& path) {
  const std::string ws = ".weight_scale";
  std::map<std::string, const Tensor*> scales;  // PREFIX.weight -> its scale
  for (const auto& t : tensors)
    if (t.name.ends_with(ws)) scales[t.name.substr(0, t.name.size() - ws.size()) + ".weight"] = &t;
  std::vector<Tensor> out;
  size_t found = 0;
  for (const auto& t : tensors) {
    if (t.name.ends_with(ws)) continue;
    if (t.name.ends_with(".weight_zero_point") || t.name.ends_with(".input_scale"))
      fail("{}: {}: int-quantized checkpoints are read with symmetric weights and dynamic activations", path, t.name);
    const auto it = scales.find(t.name);
    if (it == scales.end()) {
      out.push_back(t);
      continue;
    }
    found++;
    if (t.dtype != DType::I8 || t.shape.size() != 2)
      fail("{}: {} is {} {}; an int-quantized weight is an I8 matrix", path, t.name, dtype_name(t.dtype), t.shape_str());
    const int64_t rows = t.shape[0], cols = t.shape[1];
    const Tensor& sc = *it->second;
    // The config's strategy fixes the scales' count: one per row, or one per row and group of group_size columns.
    const int64_t groups = spec.group > 0 && cols % spec.group == 0 ? cols / spec.group : spec.group > 0 ? 0 : 1;
    const bool shaped = sc.shape.size() == 2 ? sc.shape[0] == rows && sc.shape[1] == groups : groups == 1 && sc.numel() == rows;
    if (groups < 1 || !shaped || !is_float_type(sc.dtype))
      fail("{}: {} is {} {}; the config's {} weights take a scale of [{}, {}]", path, sc.name, dtype_name(sc.dtype),
           sc.shape_str(), spec.group > 0 ? "group-" + std::to_string(spec.group) : std::string("per-channel"), rows,
           groups > 0 ? std::to_string(groups) : "in / group_size (which does not divide " + std::to_string(cols) + ")");
    const std::vector<float> s = to_f32(sc);
    const auto* q = reinterpret_cast<const int8_t*>(t.data);
    const int64_t gs = cols / groups;
    std::vector<float> v(size_t(rows * cols));
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) v[size_t(r * cols + c)] = s[size_t(r * groups + c / gs)] * float(q[r * cols + c]);
    out.push_back(make_f32_tensor(t.name, {rows, cols}, std::move(v)));
  }
  if (found != scales.size()) fail("{}: a weight_scale has no I8 weight beside it ({} of {})", path, found, scales.size());
  return out;
}

}  // namespace

std::vector<Tensor> dequantize_int_checkpoint_tensors(std::vector<Tensor> tensors, const IntCheckpointConfig& cfg,
                                                      const std::string& path) {
  if (cfg.int_quantized) return dequantize_int_quantized(std::move(tensors), cfg.spec, path);
  std::vector<const char*> suffixes;
  switch (cfg.format) {
    case IntCheckpoint::Gptq: suffixes = {".qweight", ".qzeros", ".scales", ".g_idx"}; break;
    case IntCheckpoint::Awq: suffixes = {".qweight", ".qzeros", ".scales"}; break;
    case IntCheckpoint::CompressedTensors:
      suffixes = {".weight_packed", ".weight_scale", ".weight_zero_point", ".weight_shape", ".weight_g_idx"};
      break;
  }
  std::map<std::string, std::map<std::string, const Tensor*>> parts;  // prefix -> suffix -> tensor
  std::vector<Tensor> out;
  for (const auto& t : tensors) {
    bool part = false;
    for (const char* suffix : suffixes) {
      const size_t n = std::strlen(suffix);
      if (t.name.size() > n && t.name.compare(t.name.size() - n, n, suffix) == 0) {
        parts[t.name.substr(0, t.name.size() - n)][suffix] = &t;
        part = true;
      }
    }
    if (!part) out.push_back(t);
  }
  const char* fmt_name = int_checkpoint_name(cfg.format);
  for (const auto& part : parts) {
    // Named, not structured bindings: lambdas below capture them (C++20 clang refuses bindings).
    const std::string& prefix = part.first;
    const std::map<std::string, const Tensor*>& p = part.second;
    const std::optional<IntGroupSpec> module_spec = cfg.spec_for(prefix);
    if (!module_spec)
      fail("{}: {} is stored packed, but quantization_config leaves it unquantized (ignore, dynamic or "
           "modules_to_not_convert)",
           path, prefix);
    const IntGroupSpec& spec = *module_spec;
    auto need = [&](const char* suffix) -> const Tensor& {
      if (!p.count(suffix)) fail("{}: {} linear {} has no {}", path, fmt_name, prefix, suffix + 1);
      return *p.at(suffix);
    };
    auto matrix = [&](const Tensor& t) {
      if (t.shape.size() != 2 || t.shape[0] < 1 || t.shape[1] < 1 || t.shape[0] > (int64_t(1) << 32) ||
          t.shape[1] > (int64_t(1) << 32))
        fail("{}: {} has shape {}; a matrix was expected", path, t.name, t.shape_str());
    };
    IntGroupTensor q;
    int64_t rows = 0, cols = 0;
    if (cfg.format == IntCheckpoint::CompressedTensors) {
      const Tensor& shape = need(".weight_shape");
      const auto dims = copy_as<int64_t>(shape, DType::I64, path);
      if (dims.size() != 2 || dims[0] < 1 || dims[1] < 1 || dims[0] > (int64_t(1) << 32) || dims[1] > (int64_t(1) << 32))
        fail("{}: {}.weight_shape must hold two positive sizes", path, prefix);
      rows = dims[0], cols = dims[1];
      const Tensor& wp = need(".weight_packed");
      const Tensor& sc = need(".weight_scale");
      matrix(wp), matrix(sc);
      CtPacked packed;
      packed.weight_packed = copy_as<int32_t>(wp, DType::I32, path);
      packed.scale = to_f32(sc);
      if (p.count(".weight_zero_point")) packed.zero_point = copy_as<int32_t>(*p.at(".weight_zero_point"), DType::I32, path);
      if (p.count(".weight_g_idx")) packed.g_idx = copy_as<int32_t>(*p.at(".weight_g_idx"), DType::I32, path);
      if (spec.act_order && packed.g_idx.empty()) fail("{}: {}: actorder is set but weight_g_idx is missing", path, prefix);
      q = unpack_compressed_tensors(packed, spec, rows, cols, path + ": " + prefix);
    } else if (cfg.format == IntCheckpoint::Awq) {
      const Tensor& qw = need(".qweight");
      const Tensor& sc = need(".scales");
      matrix(qw), matrix(sc);
      cols = qw.shape[0], rows = qw.shape[1] * 8;
      if (sc.shape[1] != rows) fail("{}: {}: scales have {} columns, qweight packs {}", path, prefix, sc.shape[1], rows);
      AwqPacked packed;
      packed.qweight = copy_as<int32_t>(qw, DType::I32, path);
      packed.qzeros = copy_as<int32_t>(need(".qzeros"), DType::I32, path);
      packed.scales = to_f32(sc);
      q = unpack_awq(packed, spec, rows, cols, path + ": " + prefix);
    } else {
      const Tensor& qw = need(".qweight");
      const Tensor& sc = need(".scales");
      matrix(qw), matrix(sc);
      rows = qw.shape[1];
      if (qw.shape[0] > (int64_t(1) << 40) / spec.bits) fail("{}: {}.qweight is too large", path, prefix);
      cols = qw.shape[0] * 32 / spec.bits;
      if (sc.shape[1] != rows) fail("{}: {}: scales have {} columns, qweight {}", path, prefix, sc.shape[1], rows);
      GptqPacked packed;
      packed.qweight = copy_as<int32_t>(qw, DType::I32, path);
      packed.qzeros = copy_as<int32_t>(need(".qzeros"), DType::I32, path);
      packed.scales = to_f32(sc);
      if (p.count(".g_idx")) {
        packed.g_idx = copy_as<int32_t>(*p.at(".g_idx"), DType::I32, path);
      } else {
        const int64_t g = spec.group_size(cols);
        for (int64_t c = 0; c < cols; c++) packed.g_idx.push_back(int32_t(c / g));
      }
      // AutoGPTQ stores ceil(cols / group_size) groups (one when group_size is -1), act-order or not.
      // (A g_idx of the wrong length means bits disagree with the tensors: unpack_gptq says so.)
      const int64_t groups = (cols + spec.group_size(cols) - 1) / spec.group_size(cols);
      if (packed.g_idx.size() == size_t(cols) && sc.shape[0] != groups)
        fail("{}: {}.scales has {} groups (rows), but quantization_config.group_size {} over {} input columns gives {}",
             path, prefix, sc.shape[0], spec.group, cols, groups);
      for (int32_t g : packed.g_idx)
        if (g < 0 || g >= sc.shape[0]) fail("{}: {}.g_idx holds group {} of {}", path, prefix, g, sc.shape[0]);
      q = unpack_gptq(packed, spec, rows, cols, path + ": " + prefix);
    }
    if (auto blocks = exact_blocks(q, prefix + ".weight"))
      out.push_back(std::move(*blocks));
    else
      out.push_back(make_f32_tensor(prefix + ".weight", {rows, cols}, q.dequantize()));
  }
  return out;
}

}  // namespace lmpress
