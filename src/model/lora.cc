#include "model/lora.h"

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/finite.h"
#include "core/fp16.h"
#include "core/mapped_file.h"
#include "core/parse.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/to_f32.h"
#include "model/export.h"

namespace lmpress {

namespace {

Tensor f32_view(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
  Tensor t;
  t.name = name;
  t.dtype = DType::F32;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const uint8_t*>(v.data());
  t.nbytes = uint64_t(v.size()) * sizeof(float);
  return t;
}

// v as an owned tensor of type d (F32 or F16).
Tensor stored_tensor(const std::string& name, std::vector<int64_t> shape, std::vector<float> v, DType d) {
  if (d == DType::F32) return make_f32_tensor(name, std::move(shape), std::move(v));
  if (d != DType::F16) fail("internal: LoRA tensors are written as F32 or F16, not {}", dtype_name(d));
  auto h = std::make_shared<std::vector<uint16_t>>(v.size());
  for (size_t i = 0; i < v.size(); i++) (*h)[i] = f32_to_f16(v[i]);
  Tensor t;
  t.name = name;
  t.dtype = DType::F16;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const uint8_t*>(h->data());
  t.nbytes = uint64_t(h->size()) * sizeof(uint16_t);
  t.owner = h;
  return t;
}

// B's rows re-paired for RoPE when the adapted weight is q or k and the
// target pairing differs from the model's.
std::vector<float> b_rows_for(const Model& m, const LoraAdapter::Pair& p, int64_t rank, RopeLayout from, RopeLayout to) {
  const int64_t heads = from == to ? 0 : rope_heads(m, p.weight);
  if (heads == 0) return p.b;
  const auto bytes = permute_rope_rows(reinterpret_cast<const uint8_t*>(p.b.data()), heads, m.cfg.head_dim,
                                       uint64_t(rank) * sizeof(float), from, to);
  std::vector<float> out(p.b.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

const char* gguf_arch(const Model& m) { return m.cfg.arch.c_str(); }

// The Hugging Face module that holds `weight` (model.layers.0.self_attn.q_proj).
std::string hf_module(const Model& m, const std::string& weight) {
  const std::string hf = canonical_to_hf(weight, m.cfg);
  if (!hf.ends_with(".weight")) fail("{}: no Hugging Face name for {}", m.path, weight);
  return hf.substr(0, hf.size() - 7);
}

std::string peft_name(const std::string& module, const char* ab) {
  return "base_model.model." + module + ".lora_" + ab + ".weight";
}

void check_pair(const Model& m, const std::string& path, const LoraAdapter::Pair& p, int64_t rank) {
  const Tensor* w = m.find(p.weight);
  if (!w) fail("{}: the adapter adapts {}, which {} does not have", path, p.weight, m.path);
  if (w->shape.size() != 2 || w->cols() != p.in || w->rows() != p.out)
    fail("{}: the adapter for {} is {}x{} (out x in), the model's weight is {}", path, p.weight, p.out, p.in,
         w->shape_str());
  if (int64_t(p.a.size()) != rank * p.in || int64_t(p.b.size()) != p.out * rank)
    fail("{}: {}'s lora_a / lora_b sizes do not match rank {}", path, p.weight, rank);
  const int64_t bad_a = first_out_of_range(p.a.data(), int64_t(p.a.size()), std::numeric_limits<float>::max());
  const int64_t bad_b = first_out_of_range(p.b.data(), int64_t(p.b.size()), std::numeric_limits<float>::max());
  if (bad_a >= 0 || bad_b >= 0) fail("{}: {}'s adapter holds a value that is not finite", path, p.weight);
}

}  // namespace

void write_lora_gguf(const Model& m, const LoraAdapter& a, const std::string& path) {
  GGUFWriter w;
  w.set("general.architecture", GGUFValue::str(gguf_arch(m)));
  w.set("general.type", GGUFValue::str("adapter"));
  w.set("general.name", GGUFValue::str(std::filesystem::path(path).stem().string()));
  w.set("adapter.type", GGUFValue::str("lora"));
  w.set("adapter.lora.alpha", GGUFValue::f32(float(a.alpha)));
  std::vector<Tensor> keep;  // alive until written
  keep.reserve(2 * a.pairs.size());
  const RopeLayout target = gguf_rope_layout(gguf_arch(m));
  for (const auto& p : a.pairs) {
    keep.push_back(stored_tensor(p.weight + ".lora_a", {a.rank, p.in}, p.a, a.dtype));
    keep.push_back(
        stored_tensor(p.weight + ".lora_b", {p.out, a.rank}, b_rows_for(m, p, a.rank, m.cfg.rope_layout, target), a.dtype));
    w.add_tensor(keep[keep.size() - 2]);
    w.add_tensor(keep.back());
  }
  w.write(path);
}

void write_lora_peft(const Model& m, const LoraAdapter& a, const std::string& dir) {
  AtomicDir out(dir, "adapter_config.json");
  std::vector<std::vector<float>> keep;
  keep.reserve(a.pairs.size());
  std::vector<TensorToWrite> tensors;
  std::vector<std::string> modules;
  for (const auto& p : a.pairs) {
    keep.push_back(b_rows_for(m, p, a.rank, m.cfg.rope_layout, RopeLayout::Halves));
    const std::string module = hf_module(m, p.weight);
    tensors.push_back({f32_view(peft_name(module, "A"), {a.rank, p.in}, p.a), nullptr});
    tensors.push_back({f32_view(peft_name(module, "B"), {p.out, a.rank}, keep.back()), nullptr});
    const std::string mod = module.substr(module.rfind('.') + 1);  // target_modules: q_proj, gate_proj, ...
    if (std::find(modules.begin(), modules.end(), mod) == modules.end()) modules.push_back(mod);
  }
  write_safetensors(out.path() + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
  nlohmann::ordered_json c;
  c["peft_type"] = "LORA";
  c["task_type"] = "CAUSAL_LM";
  c["r"] = a.rank;
  c["lora_alpha"] = a.alpha;
  c["lora_dropout"] = 0.0;
  c["bias"] = "none";
  c["fan_in_fan_out"] = false;
  if (m.cfg.moe()) {
    // PEFT matches a list by module-name suffix, which would also wrap every routed expert's gate_proj etc.; a string
    // is a regex it full-matches: exactly the adapted modules.
    std::string re;
    for (const auto& p : a.pairs) {
      std::string mod = hf_module(m, p.weight), esc;
      for (char ch : mod) esc += ch == '.' ? std::string("\\.") : std::string(1, ch);
      re += (re.empty() ? "" : "|") + esc;
    }
    c["target_modules"] = "(" + re + ")";
  } else {
    c["target_modules"] = modules;
  }
  c["base_model_name_or_path"] = m.path;
  write_file_atomic(out.path() + "/adapter_config.json", c.dump(2) + "\n");
  out.commit();
}

LoraAdapter read_lora(const Model& m, const std::string& path) {
  LoraAdapter a;
  std::map<std::string, LoraAdapter::Pair> pairs;
  RopeLayout from = m.cfg.rope_layout;
  // name -> (weight, is_b) for both formats
  auto take = [&](const std::string& weight, bool is_b, const Tensor& t) {
    if (t.shape.size() != 2) fail("{}: {} is not a matrix", path, t.name);
    auto& p = pairs[weight];
    p.weight = weight;
    const int64_t rank = is_b ? t.cols() : t.rows();
    if (a.rank == 0) a.rank = rank;
    if (rank != a.rank) fail("{}: {} has rank {}, other tensors {}", path, t.name, rank, a.rank);
    (is_b ? p.out : p.in) = is_b ? t.rows() : t.cols();
    (is_b ? p.b : p.a) = to_f32(t);
  };
  if (std::filesystem::is_directory(path)) {
    const auto cfg = nlohmann::json::parse(read_text_file(path + "/adapter_config.json"), nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object()) fail("{}/adapter_config.json: not a JSON object", path);
    if (cfg.value("peft_type", "") != "LORA") fail("{}/adapter_config.json: peft_type is not LORA", path);
    if (!cfg.contains("lora_alpha") || !cfg["lora_alpha"].is_number())
      fail("{}/adapter_config.json: lora_alpha is missing", path);
    if (cfg.value("fan_in_fan_out", false)) fail("{}/adapter_config.json: fan_in_fan_out adapters are not supported", path);
    for (const char* flag : {"use_rslora", "use_dora"})
      if (cfg.contains(flag) && cfg[flag].is_boolean() && cfg[flag].get<bool>())
        fail("{}/adapter_config.json: {} adapters are not supported (their scale or form differs)", path, flag);
    for (const char* pattern : {"alpha_pattern", "rank_pattern"})
      if (cfg.contains(pattern) && !cfg[pattern].is_null() && !cfg[pattern].empty())
        fail("{}/adapter_config.json: per-module {} is not supported", path, pattern);
    a.alpha = cfg["lora_alpha"].get<double>();
    from = RopeLayout::Halves;
    const auto st = SafetensorsFile::open(path + "/adapter_model.safetensors");
    const std::string prefix = "base_model.model.";
    for (const auto& t : st.tensors) {
      const size_t at = t.name.find(".lora_");
      if (t.name.rfind(prefix, 0) != 0 || at == std::string::npos)
        fail("{}: tensor {} is not a LoRA matrix (base_model.model.<module>.lora_A/B.weight)", path, t.name);
      const std::string ab = t.name.substr(at + 6);
      if (ab != "A.weight" && ab != "B.weight") fail("{}: tensor {} is not a LoRA matrix", path, t.name);
      const std::string weight = hf_to_canonical(t.name.substr(prefix.size(), at - prefix.size()) + ".weight", m.cfg);
      if (weight.empty()) fail("{}: tensor {} adapts no weight lmpress knows", path, t.name);
      take(weight, ab[0] == 'B', t);
    }
  } else {
    const GGUFFile f = GGUFFile::open(path);
    if (f.get_string("general.type").value_or("") != "adapter" || f.get_string("adapter.type").value_or("") != "lora")
      fail("{}: not a LoRA adapter (general.type \"adapter\", adapter.type \"lora\")", path);
    const std::string arch = f.get_string("general.architecture").value_or("");
    if (arch != m.cfg.arch && arch != m.cfg.gguf_arch)
      fail("{}: an adapter for architecture {}, the model {} is {}", path, arch, m.path, m.cfg.arch);
    a.alpha = f.get_float("adapter.lora.alpha").value_or(0.0);
    from = gguf_rope_layout(arch);
    for (const auto& t : f.tensors()) {
      const bool is_a = t.name.ends_with(".lora_a"), is_b = t.name.ends_with(".lora_b");
      if (!is_a && !is_b) fail("{}: tensor {} is neither a .lora_a nor a .lora_b", path, t.name);
      take(t.name.substr(0, t.name.size() - 7), is_b, t);
    }
  }
  if (pairs.empty()) fail("{}: the adapter holds no tensors", path);
  if (!std::isfinite(a.alpha) || a.alpha < 0) fail("{}: the adapter's alpha ({}) is not a finite positive number", path, a.alpha);
  if (a.alpha == 0) a.alpha = double(a.rank);  // llama.cpp: no alpha, scale 1
  for (auto& [name, p] : pairs) {
    if (p.a.empty() || p.b.empty()) fail("{}: {} has only one of lora_a / lora_b", path, name);
    check_pair(m, path, p, a.rank);
    p.b = b_rows_for(m, p, a.rank, from, m.cfg.rope_layout);
    a.pairs.push_back(std::move(p));
  }
  return a;
}

void merge_lora(Model& m, const LoraAdapter& a, double scale) {
  const double s = scale * a.alpha / double(a.rank);
  for (const auto& p : a.pairs) {
    std::vector<float> w = to_f32(m.tensor(p.weight));
#pragma omp parallel for
    for (int64_t o = 0; o < p.out; o++)
      for (int64_t k = 0; k < a.rank; k++) {
        const double bk = s * double(p.b[size_t(o * a.rank + k)]);
        float* row = w.data() + o * p.in;
        const float* ar = p.a.data() + k * p.in;
        for (int64_t i = 0; i < p.in; i++) row[i] += float(bk * double(ar[i]));
      }
    const int64_t bad = first_out_of_range(w.data(), int64_t(w.size()));
    if (bad >= 0) fail("{}: merging the adapter (scale {}) makes element {} not finite", p.weight, scale, bad);
    m.set_f32(p.weight, std::move(w));
  }
  m.bind();
}

void apply_lora(Model& m, const std::string& spec) {
  std::string path = spec;
  double scale = 1.0;
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos && !std::filesystem::exists(spec)) {
    path = spec.substr(0, colon);
    const auto s = parse_double(spec.substr(colon + 1));
    if (!s) fail("--lora {}: expected FILE[:SCALE] with SCALE a number", spec);
    scale = *s;
  }
  merge_lora(m, read_lora(m, path), scale);
}

}  // namespace lmpress
