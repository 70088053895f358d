#include "model/export.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <optional>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/low_rank_tensor.h"
#include "core/progress.h"
#include "core/finite.h"
#include "core/fp16.h"
#include "core/path_guard.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/tokenizer_files.h"
#include "kernels/to_f32.h"
#include "quant/quantize.h"
#include "model/repack.h"

namespace lmpress {

std::vector<uint8_t> permute_rope_rows(const uint8_t* src, int64_t n_heads, int64_t head_dim, uint64_t row_bytes,
                                       RopeLayout from, RopeLayout to) {
  std::vector<uint8_t> out(size_t(n_heads * head_dim) * row_bytes);
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; h++)
    for (int64_t i = 0; i < half; i++)
      for (int64_t t = 0; t < 2; t++) {
        const int64_t inter = h * head_dim + 2 * i + t;   // (2i, 2i+1) pairing
        const int64_t halves = h * head_dim + t * half + i;  // (i, i+half) pairing
        const int64_t dst_row = to == RopeLayout::Interleaved ? inter : halves;
        const int64_t src_row = from == RopeLayout::Interleaved ? inter : halves;
        std::memcpy(out.data() + dst_row * row_bytes, src + src_row * row_bytes, row_bytes);
      }
  return out;
}

int64_t rope_heads(const Model& m, const std::string& name) {
  if (name.ends_with(".lr_a")) return 0;  // a factorized projection's A: its rows are rank components, not heads
  const bool is_q = name.find(".attn_q.") != std::string::npos;
  const bool is_k = name.find(".attn_k.") != std::string::npos;
  if (!(is_q || is_k)) return 0;
  const int64_t l = layer_of(name);
  if (l < 0 || l >= m.cfg.n_layers) fail("{}: {} is not a layer tensor", m.path, name);
  return is_q ? m.cfg.heads(l) : m.cfg.kv_heads(l);
}

int64_t rope_heads_to_permute(const Model& m, const Tensor& t, RopeLayout target) {
  return m.cfg.rope_layout == target ? 0 : rope_heads(m, t.name);
}

namespace {

// A NaN or Inf would be written as a valid-looking file (the block
// quantizers turn it into some finite scale); a float too large for f16
// becomes Inf. Both are refused, naming the tensor and the element.
void check_finite_values(const std::string& name, const float* f, int64_t n, int64_t cols, DType dst) {
  const int64_t i = first_out_of_range(f, n, dst == DType::F16 ? 65504.0f : std::numeric_limits<float>::max());
  if (i < 0) return;
  if (std::isfinite(f[i]))
    fail("{}: value {} at row {}, column {} does not fit in f16 (largest 65504); write bf16 or f32 instead", name, f[i],
         i / cols, i % cols);
  fail("{}: non-finite value {} at row {}, column {}", name, f[i], i / cols, i % cols);
}

// A matrix --dtype converts: not a mixture's router, which stays f32 as llama.cpp's converter keeps it, nor
// gpt-oss's 2-D expert bias stacks (llama.cpp adds them only as F32).
bool is_matrix_weight(const Tensor& t) {
  return t.shape.size() == 2 && !t.name.ends_with(".bias") && t.name != "rope_freqs.weight" && !is_router(t.name);
}

// The tensor as it should be written: target dtype, target RoPE pairing.
TensorToWrite prepare(const Model& m, const Tensor& t, const ExportOptions& opt, RopeLayout target) {
  TensorToWrite out{t, {}};
  DType dst = t.dtype;
  if (opt.type_of) {
    dst = opt.type_of(t);
  } else {
    if (opt.dtype && is_matrix_weight(t)) dst = *opt.dtype;
    // Norms, biases and rope factors stay F32, as llama.cpp keeps them.
    if (!is_matrix_weight(t) && (t.dtype == DType::F16 || t.dtype == DType::BF16)) dst = DType::F32;
  }
  dst = file_type(dst);  // in-memory repacks (sparse layouts) go to files as what they came from
  const int64_t heads = rope_heads_to_permute(m, t, target);
  const bool generated = opt.values && !t.data;
  if (dst == t.dtype && heads == 0 && !generated) return out;
  const bool plain = is_float_type(dst);
  if (dst != t.dtype && !plain && !has_quantizer(dst))
    fail("convert: cannot convert {} to {} (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1)", t.name, dtype_name(dst));
  if (!plain && dst != t.dtype && t.cols() % dtype_info(dst).block_elems != 0) dst = DType::F16;
  out.meta.dtype = dst;
  out.meta.data = nullptr;
  out.meta.nbytes = uint64_t(t.rows()) * row_bytes(dst, uint64_t(t.cols()));
  const Tensor src = t;
  const ModelConfig cfg = m.cfg;
  const auto quantize = opt.quantize;
  const auto values = generated ? opt.values : decltype(opt.values){};
  out.produce = [src, dst, heads, cfg, target, quantize, values]() {
    std::vector<uint8_t> bytes;
    if (dst == src.dtype && !values) {
      bytes.assign(src.data, src.data + src.nbytes);
    } else if (is_row_interleaved(src.dtype) && dst == file_type(src.dtype) && !values) {
      bytes = unpack_interleaved(src);  // the load-time repack undone, bit for bit
    } else {
      std::vector<float> f = values ? values(src) : to_f32(src);
      const int64_t rows = src.rows(), cols = src.cols();
      check_finite_values(src.name, f.data(), int64_t(f.size()), cols, dst);
      const uint64_t rb = row_bytes(dst, uint64_t(cols));
      bytes.resize(uint64_t(rows) * rb);
      if (quantize && !is_float_type(dst)) {
        quantize(src, dst, f.data(), bytes.data());
      } else if (has_quantizer(dst)) {
        quantize_rows(dst, f.data(), rows, cols, bytes.data());
      } else if (dst == DType::F32) {
        std::memcpy(bytes.data(), f.data(), bytes.size());
      } else {
        auto* h = reinterpret_cast<uint16_t*>(bytes.data());
        for (size_t i = 0; i < f.size(); i++) h[i] = dst == DType::F16 ? f32_to_f16(f[i]) : f32_to_bf16(f[i]);
      }
    }
    if (heads) {
      const uint64_t rb = bytes.size() / uint64_t(src.shape[0]);
      bytes = permute_rope_rows(bytes.data(), heads, cfg.head_dim, rb, cfg.rope_layout, target);
    }
    return bytes;
  };
  return out;
}

// Sliding windows and Gemma's settings under llama.cpp's keys. A Mistral
// window goes to llama.attention.sliding_window, which lmpress reads back and
// llama.cpp's llama architecture ignores (it attends to everything).
void write_attention_variants(const Model& m, const std::string& a, GGUFWriter& w) {
  const ModelConfig& c = m.cfg;
  if (c.sliding_window > 0 || c.gemma())
    w.set(a + ".attention.sliding_window", GGUFValue::u32(uint32_t(c.sliding_window)));
  // Windows on some layers only: the flags, unless they are llama.cpp's default for the architecture (gpt-oss: the
  // even layers; OLMo 3: all but every 4th).
  if (!c.gemma() && c.sliding_window > 0 && !c.layer_swa.empty()) {
    std::vector<GGUFValue> flags;
    bool rule = c.arch == "gpt-oss" || c.arch == "olmo2";
    for (int64_t l = 0; l < c.n_layers; l++) {
      flags.push_back(GGUFValue::boolean(c.window(l) > 0));
      rule = rule && (c.window(l) > 0) == (c.arch == "gpt-oss" ? l % 2 == 0 : l % 4 < 3);
    }
    if (!rule) w.set(a + ".attention.sliding_window_pattern", GGUFValue::array(GGUFType::BOOL, std::move(flags)));
  }
  if (c.arch == "olmo2" && c.rope_theta_swa > 0) w.set(a + ".rope.freq_base_swa", GGUFValue::f32(c.rope_theta_swa));
  if (c.arch == "granite") {
    w.set(a + ".embedding_scale", GGUFValue::f32(c.embed_scale));
    w.set(a + ".residual_scale", GGUFValue::f32(c.residual_scale));
    w.set(a + ".attention.scale", GGUFValue::f32(c.attention_scale()));
    w.set(a + ".logit_scale", GGUFValue::f32(c.logit_scale));
  }
  if (c.arch == "smollm3") {
    bool rule = true;
    std::vector<GGUFValue> flags;
    for (int64_t l = 0; l < c.n_layers; l++) {
      rule = rule && c.uses_rope(l) == ((l + 1) % 4 != 0);
      flags.push_back(GGUFValue::boolean(c.uses_rope(l)));
    }
    if (!rule) {
      w.set("lmpress.rope_layers", GGUFValue::array(GGUFType::BOOL, std::move(flags)));
      fmt::print(stderr, "warning: {}: its layers without RoPE are not every 4th, which llama.cpp assumes\n", m.path);
    }
  }
  if (c.moe()) {
    w.set(a + ".expert_count", GGUFValue::u32(uint32_t(c.n_experts)));
    w.set(a + ".expert_used_count", GGUFValue::u32(uint32_t(c.n_experts_used)));
    // llama and olmoe take an expert's size from feed_forward_length.
    if (a == "llama" || a == "olmoe")
      w.set(a + ".feed_forward_length", GGUFValue::u32(uint32_t(c.expert_ffn)));
    else
      w.set(a + ".expert_feed_forward_length", GGUFValue::u32(uint32_t(c.expert_ffn)));
    if (a == "deepseek") {
      w.set(a + ".expert_shared_count", GGUFValue::u32(uint32_t(c.shared_ffn / c.expert_ffn)));
      w.set(a + ".leading_dense_block_count", GGUFValue::u32(uint32_t(c.n_dense_lead)));
      w.set(a + ".expert_weights_scale", GGUFValue::f32(c.expert_scale));
    } else if (c.shared_ffn > 0) {
      w.set(a + ".expert_shared_feed_forward_length", GGUFValue::u32(uint32_t(c.shared_ffn)));
    }
    if (c.expert_scale != 1.0f && a != "deepseek")
      fail("{}: routed expert weights scaled by {}: llama.cpp's {} has no such scale", m.path, c.expert_scale, a);
    ModelConfig rule;
    rule.set_arch(c.arch);
    if (rule.expert_norm != c.expert_norm) {
      w.set(a + ".expert_weights_norm", GGUFValue::boolean(c.expert_norm));
      fmt::print(stderr, "warning: {}: its expert weights are {}renormalized, which llama.cpp's {} does not do\n",
                 m.path, c.expert_norm ? "" : "not ", a);
    }
    if (!c.layer_dense.empty()) {
      // llama.cpp has only leading dense blocks (deepseek) and loads every other block's expert stacks.
      std::vector<GGUFValue> flags;
      for (int64_t l = 0; l < c.n_layers; l++) flags.push_back(GGUFValue::boolean(c.layer_dense[size_t(l)] != 0));
      w.set("lmpress.dense_layers", GGUFValue::array(GGUFType::BOOL, std::move(flags)));
      fmt::print(stderr, "warning: {}: dense blocks between its mixtures of experts (lmpress.dense_layers): llama.cpp "
                 "cannot load this file\n", m.path);
    }
  }
  if (!c.gemma()) return;
  if (c.arch == "gemma2") w.set(a + ".attn_logit_softcapping", GGUFValue::f32(c.attn_softcap));
  if (c.arch == "gemma2" || c.final_softcap > 0) w.set(a + ".final_logit_softcapping", GGUFValue::f32(c.final_softcap));
  if (c.sliding_window > 0) {
    std::vector<GGUFValue> flags;
    for (int64_t l = 0; l < c.n_layers; l++) flags.push_back(GGUFValue::boolean(c.window(l) > 0));
    w.set(a + ".attention.sliding_window_pattern", GGUFValue::array(GGUFType::BOOL, std::move(flags)));
  }
  if (c.rope_theta_swa > 0) w.set(a + ".rope.freq_base_swa", GGUFValue::f32(c.rope_theta_swa));
  // llama.cpp derives the query scale from the model size; another one is recorded for lmpress.
  const bool is_27b = c.n_layers == (c.arch == "gemma2" ? 46 : 62);
  const float rule = 1.0f / std::sqrt(float(is_27b ? c.dim / c.heads(0) : c.head_dim));
  if (std::fabs(c.attention_scale() - rule) > 1e-6f * rule) {
    w.set("lmpress.attention.scale", GGUFValue::f32(c.attention_scale()));
    fmt::print(stderr, "warning: {}: queries are scaled by {} (query_pre_attn_scalar); llama.cpp scales them by {} "
               "for this size\n", m.path, c.attention_scale(), rule);
  }
}

// A Gemma norm as Hugging Face stores it: w for the x·(1 + w) lmpress holds as 1 + w.
Tensor gemma_hf_norm(const Tensor& t) {
  std::vector<float> v = to_f32(t);
  for (float& x : v) x -= 1.0f;
  return make_f32_tensor(t.name, t.shape, std::move(v));
}

void check_not_input(const Model& m, const std::string& out, OutputKind kind = OutputKind::File) {
  PathGuard guard;
  guard.input("model", m.path);
  guard.output("output", out, kind);
  guard.check();
}

}  // namespace

struct ModelWriter::Impl {
  const Model& m;
  ExportOptions opt;
  RopeLayout target = RopeLayout::Interleaved;
  bool hf = false;
  std::unique_ptr<TensorFileWriter> file;
  // Each model tensor's entries in the file: first index and count (0: the
  // format leaves it out).
  std::map<std::string, std::pair<size_t, size_t>> index;
  std::vector<std::pair<size_t, TensorToWrite>> extra;  // not in the model (GGUF rope_freqs)
  // Hugging Face: the directory being filled and the JSON files written at commit.
  std::unique_ptr<AtomicDir> dir;
  std::string config_json, quantize_config_json;

  Impl(const Model& model, ExportOptions o) : m(model), opt(std::move(o)) {}

  // What t is written as, from its state now.
  std::vector<TensorToWrite> entries(const Tensor& t) const {
    if (t.dtype == DType::LOW_RANK) {
      if (hf) fail("{}: {} is factorized (lmpress lowrank): a factorized model is written as GGUF", m.path, t.name);
      // B's rows are W's rows, so B takes a q or k projection's RoPE re-pairing (prepared under W's name).
      const LowRankPair& p = low_rank_parts(t);
      const auto [a_name, b_name] = low_rank_part_names(t.name);
      Tensor a = p.a, b = p.b;
      a.name = a_name;
      b.name = t.name;
      TensorToWrite ea = prepare(m, a, opt, target), eb = prepare(m, b, opt, target);
      eb.meta.name = b_name;
      return {std::move(ea), std::move(eb)};
    }
    if (!hf) {
      TensorToWrite e = prepare(m, t, opt, target);
      // gpt-oss's norm before the feed-forward is llama.cpp's post_attention_norm.
      if (m.cfg.arch == "gpt-oss") e.meta.name = replace_suffix(t.name, kFfnNorm, kGptOssFfnNormGguf);
      return {std::move(e)};
    }
    if (opt.hf_replace) {
      auto replaced = opt.hf_replace(t, canonical_to_hf(t.name, m.cfg));
      if (!replaced.empty()) return replaced;
    }
    const bool gemma = m.cfg.gemma();
    TensorToWrite tw = prepare(m, gemma && t.name.ends_with("norm.weight") ? gemma_hf_norm(t) : t, opt, RopeLayout::Halves);
    tw.meta.name = canonical_to_hf(t.name, m.cfg);
    if (tw.meta.name.empty()) fail("{}: tensor {} has no Hugging Face name", m.path, t.name);
    if (t.name.ends_with(".ffn_gate_inp_shexp.weight")) tw.meta.shape = {1, m.cfg.dim};  // a Linear of one output
    return {std::move(tw)};
  }
  // Plans t's entries at the end of the file's tensors.
  void add(const Tensor& t, std::vector<Tensor>& metas) {
    const auto es = entries(t);
    index[t.name] = {metas.size(), es.size()};
    for (const auto& e : es) metas.push_back(e.meta);
  }
  void skip(const Tensor& t) { index[t.name] = {0, 0}; }

  // A tensor llama.cpp holds whole and lmpress as separate members, written
  // once all its members have been: each member's bytes are kept as the
  // member is written (a calibrated block is put back to its input's right
  // after), then concatenated. GGUF phi3: blk.N.attn_qkv from attn_q, attn_k,
  // attn_v; blk.N.ffn_up from ffn_gate, ffn_up (rows concatenated). A mixture
  // of experts: blk.N.ffn_gate_exps from ffn_gate.0, ffn_gate.1, ... (stacked,
  // [experts, rows, columns]).
  struct Fused {
    size_t index = 0;
    std::vector<std::string> members;
    Tensor meta;
    std::vector<std::vector<uint8_t>> bytes;
    size_t got = 0;
    bool done = false;
  };
  std::map<std::string, Fused> fused;
  std::map<std::string, std::string> fused_of;  // member -> fused tensor
  // Plans the fused tensor of member t at the end of the file's tensors (once per group).
  void add_fused(const Tensor& t, const std::string& name, const std::vector<std::string>& members, bool stack,
                 std::vector<Tensor>& metas) {
    fused_of[t.name] = name;
    index[t.name] = {0, 0};
    if (fused.count(name)) return;
    Fused f;
    f.index = metas.size();
    f.members = members;
    f.bytes.resize(members.size());
    int64_t rows = 0;
    for (const auto& member : members) {
      const Tensor meta = entries(m.tensor(member))[0].meta;
      if (member != members[0] && (meta.dtype != f.meta.dtype || meta.shape[1] != f.meta.shape[1]))
        fail("{}: {} is {} and {} is {}, but llama.cpp holds them in one tensor {}: give them one type (e.g. --pure)",
             m.path, members[0], dtype_name(f.meta.dtype), member, dtype_name(meta.dtype), name);
      if (member != members[0] && stack && meta.shape[0] != f.meta.shape[0])
        fail("{}: {} has {} rows and {} has {}, but llama.cpp stacks them in one tensor {}", m.path, members[0],
             f.meta.shape[0], member, meta.shape[0], name);
      if (member == members[0]) f.meta = meta;
      rows += meta.shape[0];
    }
    f.meta.name = name;
    f.meta.shape = stack ? std::vector<int64_t>{int64_t(members.size()), rows / int64_t(members.size()), f.meta.shape[1]}
                         : std::vector<int64_t>{rows, f.meta.shape[1]};
    f.meta.nbytes = uint64_t(rows) * row_bytes(f.meta.dtype, uint64_t(f.meta.shape.back()));
    f.meta.data = nullptr;
    f.meta.owner.reset();
    metas.push_back(f.meta);
    fused[name] = std::move(f);
  }
  // Keeps member t's bytes; writes the fused tensor when it has them all.
  void write_member(const Tensor& t) {
    Fused& f = fused.at(fused_of.at(t.name));
    if (f.done) return;
    const size_t k = size_t(std::find(f.members.begin(), f.members.end(), t.name) - f.members.begin());
    if (f.bytes[k].empty()) {
      TensorToWrite e = entries(t)[0];
      if (e.meta.dtype != f.meta.dtype || e.meta.shape[1] != f.meta.shape.back())
        fail("internal: {} is now {}, its fused tensor {} was planned as {}", t.name, dtype_name(e.meta.dtype),
             f.meta.name, dtype_name(f.meta.dtype));
      f.bytes[k] = e.produce ? e.produce() : std::vector<uint8_t>(e.meta.data, e.meta.data + e.meta.nbytes);
      f.got++;
    }
    if (f.got < f.members.size()) return;
    auto parts = std::make_shared<std::vector<std::vector<uint8_t>>>(std::move(f.bytes));
    file->write(f.index, TensorToWrite{f.meta, [parts] {
                                         std::vector<uint8_t> all;
                                         for (const auto& p : *parts) all.insert(all.end(), p.begin(), p.end());
                                         return all;
                                       }});
    f.bytes.clear();
    f.done = true;
  }
};

namespace {

// llama.cpp's phi3 tensors that fuse lmpress's separate projections.
std::optional<std::pair<std::string, std::vector<std::string>>> phi3_fused(const std::string& name) {
  const int64_t l = layer_of(name);
  if (l < 0) return std::nullopt;
  const std::string b = "blk." + std::to_string(l) + ".";
  if (name == b + "attn_q.weight" || name == b + "attn_k.weight" || name == b + "attn_v.weight")
    return std::pair{b + "attn_qkv.weight", std::vector<std::string>{b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"}};
  if (name == b + "ffn_gate.weight" || name == b + "ffn_up.weight")
    return std::pair{b + "ffn_up.weight", std::vector<std::string>{b + "ffn_gate.weight", b + "ffn_up.weight"}};
  return std::nullopt;
}

// The per-expert tensors llama.cpp stacks into `stacked`.
std::vector<std::string> expert_members(const std::string& stacked, int64_t experts) {
  std::vector<std::string> v;
  for (int64_t e = 0; e < experts; e++) v.push_back(expert_tensor_name(stacked, e));
  return v;
}

}  // namespace

ModelWriter::ModelWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ModelWriter::~ModelWriter() = default;

std::unique_ptr<ModelWriter> ModelWriter::gguf(const Model& m, const std::string& path, ExportOptions opt) {
  check_not_input(m, path);
  auto impl = std::make_unique<Impl>(m, std::move(opt));
  const ExportOptions& o = impl->opt;
  const auto& c = m.cfg;
  // Layers of different sizes are llama.cpp's "deci" architecture: Llama
  // with per-layer head counts and feed-forward sizes, RoPE on (2i, 2i+1) pairs.
  // Phi-3 as llama.cpp's phi3 (fused projections, LongRoPE factor tensors);
  // with layers of different sizes as deci (llama: separate projections, RoPE
  // pairs permuted, the short factors as rope_freqs), not with partial RoPE.
  const std::string a = c.uniform() ? c.arch : "deci";
  if (c.arch == "phi3" && a == "deci" && c.rope_dim != c.head_dim)
    fail("{}: RoPE on {} of {} dimensions per head (partial_rotary_factor) with layers of different sizes cannot be "
         "written as GGUF yet (deci's RoPE pairs would need a partial permutation)",
         m.path, c.rope_dim, c.head_dim);
  if (!c.uniform() && (c.qk_norm || c.post_norms || c.arch == "granite" || c.arch == "smollm3"))
    fail("{}: its layers differ in head count or feed-forward size, which GGUF writes as llama.cpp's deci "
         "architecture, and deci has no q/k norms, post-norms, multipliers or layers without RoPE ({})",
         m.path, c.arch);
  impl->target = gguf_rope_layout(a);
  const bool fuse = a == "phi3";
  GGUFWriter w;
  w.set("general.architecture", GGUFValue::str(a));
  w.set("general.name", GGUFValue::str(o.name.empty() ? std::filesystem::path(m.path).filename().string() : o.name));
  // llama.cpp's llama_ftype (the caller maps a type or mix to it); 0 (all F32) when not given.
  const uint32_t ftype = o.file_type.value_or(0);
  if (ftype != 0 && ftype != 1 && ftype != 32) w.set("general.quantization_version", GGUFValue::u32(2));
  w.set("general.file_type", GGUFValue::u32(ftype));
  if (!o.recipe.empty()) w.set("lmpress.recipe", GGUFValue::str(o.recipe));
  if (!m.rotation.empty()) w.set("lmpress.rotation", GGUFValue::str(m.rotation));
  if (c.down_rotation) w.set("lmpress.rotation.ffn_down_seed", GGUFValue::u64(c.down_rotation->seed()));
  if (c.act_int8) w.set("lmpress.activations", GGUFValue::str("int8-token"));
  w.set(a + ".vocab_size", GGUFValue::u32(uint32_t(c.n_vocab)));
  w.set(a + ".context_length", GGUFValue::u32(uint32_t(c.ctx_len)));
  w.set(a + ".embedding_length", GGUFValue::u32(uint32_t(c.dim)));
  w.set(a + ".block_count", GGUFValue::u32(uint32_t(c.n_layers)));
  if (c.uniform()) {
    w.set(a + ".feed_forward_length", GGUFValue::u32(uint32_t(c.ffn_dim)));
    w.set(a + ".attention.head_count", GGUFValue::u32(uint32_t(c.n_heads)));
    w.set(a + ".attention.head_count_kv", GGUFValue::u32(uint32_t(c.n_kv_heads)));
  } else {
    const auto arr = [](const std::vector<int64_t>& v) { return GGUFValue::i32_array({v.begin(), v.end()}); };
    w.set(a + ".feed_forward_length", arr(c.layer_ffn));
    w.set(a + ".attention.head_count", arr(c.layer_heads));
    w.set(a + ".attention.head_count_kv", arr(c.layer_kv_heads));
  }
  w.set(a + ".attention.layer_norm_rms_epsilon", GGUFValue::f32(c.rms_eps));
  w.set(a + ".rope.freq_base", GGUFValue::f32(c.rope_theta));
  w.set(a + ".rope.dimension_count", GGUFValue::u32(uint32_t(c.rope_dim)));
  if (c.head_dim * c.heads(0) != c.dim) {
    w.set(a + ".attention.key_length", GGUFValue::u32(uint32_t(c.head_dim)));
    w.set(a + ".attention.value_length", GGUFValue::u32(uint32_t(c.head_dim)));
  }
  if (c.rope_scaling == "linear" || c.rope_scaling == "yarn") {
    w.set(a + ".rope.scaling.type", GGUFValue::str(c.rope_scaling));
    w.set(a + ".rope.scaling.factor", GGUFValue::f32(c.rope_factor));
  }
  if (c.rope_scaling == "yarn") {
    w.set(a + ".rope.scaling.original_context_length", GGUFValue::u32(uint32_t(c.rope_orig_ctx)));
    if (c.rope_yarn_beta_fast != 32.0f) w.set(a + ".rope.scaling.yarn_beta_fast", GGUFValue::f32(c.rope_yarn_beta_fast));
    if (c.rope_yarn_beta_slow != 1.0f) w.set(a + ".rope.scaling.yarn_beta_slow", GGUFValue::f32(c.rope_yarn_beta_slow));
    // llama.cpp always rounds the correction range outward; lmpress keeps a config's exact range.
    if (!c.rope_yarn_truncate) w.set("lmpress.rope_scaling.yarn_truncate", GGUFValue::boolean(false));
  }
  write_attention_variants(m, a, w);
  if (m.tokenizer) vocab_to_gguf(m.tokenizer->vocab(), w);
  bool has_rope_freqs = false;
  std::vector<Tensor> metas;
  // Stacks whose experts are written in more than one type (expert-aware mixed precision): each expert is then a
  // tensor of its own, under lmpress's per-expert name, which lmpress reads and llama.cpp does not.
  std::map<std::string, bool> mixed;
  const auto is_mixed = [&](const std::string& stacked) {
    const auto it = mixed.find(stacked);
    if (it != mixed.end()) return it->second;
    std::set<DType> types;
    for (const auto& member : expert_members(stacked, c.n_experts)) types.insert(impl->entries(m.tensor(member))[0].meta.dtype);
    return mixed[stacked] = types.size() > 1;
  };
  for (const auto& t : m.tensors) {
    has_rope_freqs |= t.name == "rope_freqs.weight";
    if (t.name == "output.weight" && c.tied_embeddings)
      impl->skip(t);
    else if (const auto group = fuse ? phi3_fused(t.name) : std::nullopt)
      impl->add_fused(t, group->first, group->second, false, metas);
    else if (const auto stacked = c.moe() ? stacked_expert_name(t.name) : std::nullopt; stacked && !is_mixed(stacked->first))
      impl->add_fused(t, stacked->first, expert_members(stacked->first, c.n_experts), true, metas);
    else
      impl->add(t, metas);
  }
  if (std::any_of(mixed.begin(), mixed.end(), [](const auto& x) { return x.second; }))
    fmt::print(stderr, "warning: {}: experts of one layer in different types are written as separate tensors "
               "(blk.N.ffn_down.E.weight): lmpress reads this file, llama.cpp cannot load it\n", path);
  if (c.rope_scaling == "llama3") {
    w.set("lmpress.rope_scaling.llama3.factor", GGUFValue::f32(c.rope_factor));
    w.set("lmpress.rope_scaling.llama3.low_freq_factor", GGUFValue::f32(c.rope_low_freq_factor));
    w.set("lmpress.rope_scaling.llama3.high_freq_factor", GGUFValue::f32(c.rope_high_freq_factor));
    w.set("lmpress.rope_scaling.llama3.original_context_length", GGUFValue::u32(uint32_t(c.rope_orig_ctx)));
  }
  // YaRN's own factor is implied by its scaling factor: only the rest is recorded.
  if (const float f = c.rope_scaling == "yarn" ? c.rope_mscale / c.yarn_mscale() : c.rope_mscale; f != 1.0f)
    w.set(a + ".rope.scaling.attn_factor", GGUFValue::f32(f));
  if (!c.rope_long_factors.empty()) {
    w.set(a + ".rope.scaling.original_context_length", GGUFValue::u32(uint32_t(c.rope_orig_ctx)));
    if (!fuse) w.set("lmpress.rope_scaling.long_factors", GGUFValue::f32_array(c.rope_long_factors));
  }
  if (c.rope_scaling == "longrope") {
    const int64_t pairs = int64_t(c.rope_short_factors.size());
    // phi3: llama.cpp's factor tensors; deci: the short ones as llama's rope_freqs.
    for (const auto& [name, f] :
         fuse ? std::vector<std::pair<std::string, std::vector<float>>>{{"rope_factors_long.weight", c.rope_long_factors},
                                                                       {"rope_factors_short.weight", c.rope_short_factors}}
              : std::vector<std::pair<std::string, std::vector<float>>>{{"rope_freqs.weight", c.rope_short_factors}}) {
      Tensor t = make_f32_tensor(name, {pairs}, f);
      impl->extra.emplace_back(metas.size(), TensorToWrite{t, {}});
      metas.push_back(t);
    }
  }
  if (c.rope_scaling == "llama3" && !has_rope_freqs) {
    // llama.cpp reads Llama 3 scaling as divisors of the base frequencies.
    ModelConfig base = c;
    base.rope_scaling.clear();
    auto f0 = base.rope_inv_freqs();
    auto f1 = c.rope_inv_freqs();
    std::vector<float> factors(f0.size());
    for (size_t i = 0; i < f0.size(); i++) factors[i] = f0[i] / f1[i];
    Tensor rope_freqs = make_f32_tensor("rope_freqs.weight", {int64_t(factors.size())}, factors);
    impl->extra.emplace_back(metas.size(), TensorToWrite{rope_freqs, {}});
    metas.push_back(rope_freqs);
  }
  for (const Tensor& t : metas) w.add_tensor(t);
  impl->file = w.open(path);
  return std::unique_ptr<ModelWriter>(new ModelWriter(std::move(impl)));
}

void write_gguf_model(const Model& m, const std::string& path, const ExportOptions& opt) {
  ModelWriter::gguf(m, path, opt)->commit();
}

std::unique_ptr<ModelWriter> ModelWriter::hf(const Model& m, const std::string& dir, ExportOptions o) {
  namespace fs = std::filesystem;
  auto impl = std::make_unique<Impl>(m, std::move(o));
  impl->hf = true;
  const ExportOptions& opt = impl->opt;
  if (opt.dtype && !is_float_type(*opt.dtype))
    fail("{}: Hugging Face output takes f32, f16 or bf16 weights, not {}", dir, dtype_name(*opt.dtype));
  if (fs::exists(dir) && !fs::is_directory(dir)) fail("{}: exists and is not a directory", dir);
  if (m.cfg.down_rotation)
    fail("{}: {} rotates ffn_down's input at run time (R4, {}), which Hugging Face engines do not do; write GGUF "
         "for lmpress instead",
         dir, m.path, m.rotation);
  check_not_input(m, dir, OutputKind::Directory);
  const auto& c = m.cfg;
  if (!c.uniform())
    fail("{}: its layers differ in head count or feed-forward size, which a Hugging Face Llama/Qwen2 config cannot "
         "express; write GGUF (llama.cpp's deci layout) instead",
         m.path);
  if (m.find("rope_freqs.weight") && c.rope_scaling != "llama3")
    fail("{}: its rope_freqs.weight cannot be expressed as Hugging Face rope_scaling; convert from the HF model instead",
         m.path);
  impl->dir = std::make_unique<AtomicDir>(dir);
  const std::string& tmp = impl->dir->path();
  nlohmann::ordered_json j;
  const HfArch* cls = hf_arch_of(c);
  if (!cls) fail("{}: architecture {} has no Hugging Face class lmpress writes", m.path, c.arch);
  j["architectures"] = {cls->hf_class};
  j["model_type"] = cls->model_type;
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.ffn_dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.n_vocab;
  j["max_position_embeddings"] = c.ctx_len;
  j["rms_norm_eps"] = c.rms_eps;
  j["rope_theta"] = c.rope_theta;
  j[c.gemma() ? "hidden_activation" : "hidden_act"] = c.ffn_act == FfnAct::GeluTanh ? "gelu_pytorch_tanh" : "silu";
  j["tie_word_embeddings"] = c.tied_embeddings;
  if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
  if (c.arch == "deepseek") {  // DeepseekConfig (remote code of deepseek-moe-16b)
    j["n_routed_experts"] = c.n_experts;
    j["num_experts_per_tok"] = c.n_experts_used;
    j["moe_intermediate_size"] = c.expert_ffn;
    j["n_shared_experts"] = c.shared_ffn / c.expert_ffn;
    j["first_k_dense_replace"] = c.n_dense_lead;
    int64_t freq = 1;  // the one moe_layer_freq whose rule gives these dense blocks
    while (freq <= c.n_layers && [&] {
      for (int64_t l = 0; l < c.n_layers; l++)
        if (c.layer_moe(l) != (l >= c.n_dense_lead && l % freq == 0)) return true;
      return false;
    }())
      freq++;
    if (freq > c.n_layers) fail("{}: its dense blocks follow no moe_layer_freq of DeepseekConfig", m.path);
    j["moe_layer_freq"] = freq;
    j["scoring_func"] = "softmax";
    j["norm_topk_prob"] = c.expert_norm;
    if (c.expert_scale != 1.0f) j["routed_scaling_factor"] = c.expert_scale;
  } else if (c.moe()) {
    const bool mixtral = c.arch == "llama", qwen = c.arch == "qwen2moe" || c.arch == "qwen3moe";
    j[mixtral ? "num_local_experts" : "num_experts"] = c.n_experts;
    j["num_experts_per_tok"] = c.n_experts_used;
    if (qwen) {
      j["moe_intermediate_size"] = c.expert_ffn, j["decoder_sparse_step"] = 1;
      auto dense = nlohmann::json::array();
      for (int64_t l = 0; l < c.n_layers; l++)
        if (!c.layer_moe(l)) dense.push_back(l);
      j["mlp_only_layers"] = dense;
    } else {
      if (!c.layer_dense.empty()) fail("{}: {} has no dense blocks among its mixtures of experts", m.path, cls->hf_class);
      j["intermediate_size"] = c.expert_ffn;
    }
    if (c.shared_ffn > 0) j["shared_expert_intermediate_size"] = c.shared_ffn;
    if (c.expert_scale != 1.0f) fail("{}: routed expert weights scaled by {}: {} has no such scale", m.path, c.expert_scale, cls->hf_class);
    if (mixtral && !c.expert_norm)
      fail("{}: Mixtral always renormalizes its chosen experts' weights; this model does not", m.path);
    if (!mixtral) j["norm_topk_prob"] = c.expert_norm;
  }
  if (c.arch == "granite") {
    j["embedding_multiplier"] = c.embed_scale;
    j["residual_multiplier"] = c.residual_scale;
    j["attention_multiplier"] = c.attention_scale();
    j["logits_scaling"] = c.logit_scale;
  }
  if (c.arch == "smollm3") {
    nlohmann::ordered_json nr = nlohmann::ordered_json::array();
    for (int64_t l = 0; l < c.n_layers; l++) nr.push_back(c.uses_rope(l) ? 1 : 0);
    j["no_rope_layers"] = nr;
  }
  if (c.gemma()) {
    const float s = c.attention_scale();
    j["query_pre_attn_scalar"] = std::round(1.0 / (double(s) * s) * 1e4) / 1e4;
    j["attn_logit_softcapping"] = c.attn_softcap > 0 ? nlohmann::ordered_json(c.attn_softcap) : nlohmann::ordered_json();
    j["final_logit_softcapping"] = c.final_softcap > 0 ? nlohmann::ordered_json(c.final_softcap) : nlohmann::ordered_json();
    if (c.rope_theta_swa > 0) j["rope_local_base_freq"] = c.rope_theta_swa;
    nlohmann::ordered_json types = nlohmann::ordered_json::array();
    for (int64_t l = 0; l < c.n_layers; l++) types.push_back(c.window(l) > 0 ? "sliding_attention" : "full_attention");
    j["layer_types"] = types;
  }
  if (c.arch != "qwen2" && c.arch != "qwen2moe") j["attention_bias"] = c.qkv_bias;
  if (c.arch == "phi3") {  // Phi3Config: LongRoPE's factors and original context, partial rotary heads
    if (c.rope_dim != c.head_dim) j["partial_rotary_factor"] = double(c.rope_dim) / double(c.head_dim);
    if (c.rope_scaling == "longrope") {
      j["original_max_position_embeddings"] = c.rope_orig_ctx;
      j["rope_scaling"] = {{"type", "longrope"},
                           {"short_factor", c.rope_short_factors},
                           {"long_factor", c.rope_long_factors},
                           {"attention_factor", c.rope_mscale}};
    }
  }
  if (c.rope_scaling == "linear") j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_factor}};
  if (c.rope_scaling == "yarn") {
    j["rope_scaling"] = {{"rope_type", "yarn"},
                         {"factor", c.rope_factor},
                         {"original_max_position_embeddings", c.rope_orig_ctx},
                         {"beta_fast", c.rope_yarn_beta_fast},
                         {"beta_slow", c.rope_yarn_beta_slow},
                         {"truncate", c.rope_yarn_truncate}};
    if (c.rope_mscale != c.yarn_mscale()) j["rope_scaling"]["attention_factor"] = c.rope_mscale;
  }
  if (c.rope_scaling == "llama3")
    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", c.rope_factor}, {"low_freq_factor", c.rope_low_freq_factor},
                         {"high_freq_factor", c.rope_high_freq_factor},
                         {"original_max_position_embeddings", c.rope_orig_ctx}};
  if (c.bos_id >= 0) j["bos_token_id"] = c.bos_id;
  if (c.eos_id >= 0) j["eos_token_id"] = c.eos_id;
  std::string torch_dtype = "float32";
  if (opt.dtype == DType::F16) torch_dtype = "float16";
  if (opt.dtype == DType::BF16) torch_dtype = "bfloat16";
  j["torch_dtype"] = torch_dtype;
  if (!opt.hf_quantization_config.empty()) {
    j["quantization_config"] = nlohmann::ordered_json::parse(opt.hf_quantization_config);
    impl->quantize_config_json = j["quantization_config"].dump(2) + "\n";
  }
  impl->config_json = j.dump(2) + "\n";

  std::vector<Tensor> metas;
  for (const auto& t : m.tensors) {
    if (t.name == "rope_freqs.weight" || (t.name == "output.weight" && c.tied_embeddings)) {
      impl->skip(t);
      continue;
    }
    // Phi-3's checkpoints fuse q/k/v rows into qkv_proj and gate/up rows into gate_up_proj.
    if (const auto group = c.arch == "phi3" ? phi3_fused(t.name) : std::nullopt) {
      const std::string b = "model.layers." + std::to_string(layer_of(t.name)) + ".";
      const bool qkv = group->second.size() == 3;
      impl->add_fused(t, b + (qkv ? "self_attn.qkv_proj.weight" : "mlp.gate_up_proj.weight"), group->second, false, metas);
      continue;
    }
    impl->add(t, metas);
  }
  impl->file = open_safetensors(tmp + "/model.safetensors", metas, {{"format", "pt"}});
  return std::unique_ptr<ModelWriter>(new ModelWriter(std::move(impl)));
}

void ModelWriter::write(const std::string& name) {
  Impl& w = *impl_;
  const auto it = w.index.find(name);
  const Tensor* t = w.m.find(name);
  if (it == w.index.end() || !t) fail("internal: {} is not a tensor of the model whose file is being written", name);
  if (w.fused_of.count(name)) {
    w.write_member(*t);
    release_mapped_pages(*t);
    return;
  }
  const auto [first, count] = it->second;
  if (count == 0) return;
  const auto es = w.entries(*t);
  if (es.size() != count) fail("internal: {} is now written as {} tensors, its header has {}", name, es.size(), count);
  for (size_t k = 0; k < count; k++) w.file->write(first + k, es[k]);
  release_mapped_pages(*t);
}

void ModelWriter::write_block(int64_t layer) {
  Impl& w = *impl_;
  for (const auto& t : w.m.tensors) {
    if (layer_of(t.name) != layer) continue;
    const auto it = w.index.find(t.name);
    if (it != w.index.end() && it->second.second > 0 && w.file->written(it->second.first)) continue;
    write(t.name);
  }
}

void ModelWriter::set_quantization_config_member(const std::string& key, const std::string& value) {
  Impl& w = *impl_;
  if (w.config_json.empty() || w.quantize_config_json.empty())
    fail("internal: the output has no quantization_config to set '{}' in", key);
  auto j = nlohmann::ordered_json::parse(w.config_json);
  j["quantization_config"][key] = nlohmann::ordered_json::parse(value);
  w.quantize_config_json = j["quantization_config"].dump(2) + "\n";
  w.config_json = j.dump(2) + "\n";
}

void ModelWriter::commit() {
  Impl& w = *impl_;
  Progress progress("write", w.m.tensors.size());
  for (size_t i = 0; i < w.m.tensors.size(); i++) {
    const Tensor& t = w.m.tensors[i];
    const auto it = w.index.find(t.name);
    if (it == w.index.end()) fail("internal: tensor {} was added after the header of its file was written", t.name);
    if ((it->second.second > 0 && !w.file->written(it->second.first)) || w.fused_of.count(t.name)) write(t.name);
    progress.update(i + 1);
  }
  for (const auto& [i, t] : w.extra) w.file->write(i, t);
  w.file->commit();
  if (!w.hf) return;
  const ModelConfig& c = w.m.cfg;
  const std::string& tmp = w.dir->path();
  if (!w.quantize_config_json.empty()) write_file_atomic(tmp + "/quantize_config.json", w.quantize_config_json);
  write_file_atomic(tmp + "/config.json", w.config_json);
  if (!w.opt.recipe.empty()) write_file_atomic(tmp + "/recipe.yaml", w.opt.recipe);
  if (const Model& m = w.m; m.tokenizer) {
    const Vocab& v = m.tokenizer->vocab();
    if (v.model == "llama")
      write_file_atomic(tmp + "/tokenizer.model", vocab_to_sentencepiece(v));
    else
      write_file_atomic(tmp + "/tokenizer.json", vocab_to_tokenizer_json(v));
    nlohmann::ordered_json tc;
    tc["tokenizer_class"] = v.model == "llama" ? "LlamaTokenizer" : "PreTrainedTokenizerFast";
    tc["add_bos_token"] = v.add_bos;
    tc["add_eos_token"] = v.add_eos;
    if (v.bos >= 0) tc["bos_token"] = v.tokens[size_t(v.bos)];
    if (v.eos >= 0) tc["eos_token"] = v.tokens[size_t(v.eos)];
    if (v.unk >= 0) tc["unk_token"] = v.tokens[size_t(v.unk)];
    tc["model_max_length"] = c.ctx_len;
    write_file_atomic(tmp + "/tokenizer_config.json", tc.dump(2) + "\n");
  }
  nlohmann::ordered_json gc;
  if (c.bos_id >= 0) gc["bos_token_id"] = c.bos_id;
  if (c.eos_id >= 0) gc["eos_token_id"] = c.eos_id;
  write_file_atomic(tmp + "/generation_config.json", gc.dump(2) + "\n");
  w.dir->commit();
}

void write_hf_model(const Model& m, const std::string& dir, const ExportOptions& opt) {
  ModelWriter::hf(m, dir, opt)->commit();
}

}  // namespace lmpress
