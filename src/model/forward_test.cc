#include "model/forward.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/mapped_file.h"
#include "eval/perplexity.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/to_f32.h"
#include "model/export.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

// The references are f32 computations: an f32 KV cache unless asked otherwise.
std::vector<float> all_logits(const Model& m, const std::vector<int32_t>& toks, int64_t batch = 512,
                              KvCacheSpec kv = KvType::F32) {
  InferenceState st(m, int64_t(toks.size()), batch, kv);
  std::vector<float> out(toks.size() * size_t(m.cfg.n_vocab));
  st.eval(toks.data(), int64_t(toks.size()), out.data(), true);
  return out;
}

// lmp-8m against the values its PyTorch training code computed (REFERENCE.md).
TEST(Forward, Lmp8mMatchesPyTorchReference) {
  if (!test::have_shared("models/lmp-8m/reference.json")) GTEST_SKIP();
  auto ref = nlohmann::json::parse(read_text_file(test::shared_path("models/lmp-8m/reference.json")))["reference"];
  for (const char* path : {"models/lmp-8m", "models/lmp-8m/lmp-8m-f32.gguf"}) {
    auto m = load_model(test::shared_path(path));
    auto toks = m->tokenizer->encode(ref["prompt"].get<std::string>(), true, false);
    ASSERT_EQ(toks, ref["token_ids"].get<std::vector<int32_t>>()) << path;
    auto logits = all_logits(*m, toks, 5);  // batches of 5 exercise the KV cache across batches
    const int64_t V = m->cfg.n_vocab;
    const float* last = logits.data() + (toks.size() - 1) * V;
    auto first16 = ref["last_logits_first16"].get<std::vector<float>>();
    for (size_t i = 0; i < 16; i++) EXPECT_NEAR(last[i], first16[i], 1e-3) << path << " logit " << i;
    auto am = ref["argmax_per_position"].get<std::vector<int>>();
    auto lse = ref["logsumexp_per_position"].get<std::vector<double>>();
    for (size_t p = 0; p < toks.size(); p++) {
      const float* row = logits.data() + p * V;
      EXPECT_EQ(std::max_element(row, row + V) - row, am[p]) << path << " position " << p;
      double mx = *std::max_element(row, row + V), s = 0;
      for (int64_t i = 0; i < V; i++) s += std::exp(row[i] - mx);
      EXPECT_NEAR(mx + std::log(s), lse[p], 1e-3) << path << " position " << p;
    }
  }
}

// Decoding token by token through the KV cache gives the batched logits.
TEST(Forward, IncrementalDecodeEqualsBatch) {
  if (!test::have_shared("models/stories260K/stories260K.gguf")) GTEST_SKIP();
  auto m = load_model(test::shared_path("models/stories260K/stories260K.gguf"));
  auto toks = m->tokenizer->encode("Once upon a time, there was a little girl named Lily.", true, false);
  auto batch = all_logits(*m, toks);
  InferenceState st(*m, int64_t(toks.size()), 512, KvType::F32);
  std::vector<float> step(size_t(m->cfg.n_vocab));
  for (size_t p = 0; p < toks.size(); p++) {
    st.eval(&toks[p], 1, step.data(), false);
    for (int64_t i = 0; i < m->cfg.n_vocab; i++) ASSERT_NEAR(step[size_t(i)], batch[p * size_t(m->cfg.n_vocab) + size_t(i)], 1e-4);
  }
  EXPECT_THROW(st.eval(toks.data(), 1, step.data(), false), Error);  // cache full
}

// The f16 cache (the default) stays within f16 rounding of the f32 one, in a
// prompt batch and decoding token by token, and picks the same tokens.
TEST(Forward, F16CacheTracksF32Cache) {
  if (!test::have_shared("models/stories260K/stories260K.gguf")) GTEST_SKIP();
  auto m = load_model(test::shared_path("models/stories260K/stories260K.gguf"));
  auto toks = m->tokenizer->encode("Once upon a time, there was a little girl named Lily. She loved to play.", true, false);
  const int64_t V = m->cfg.n_vocab;
  const auto f32 = all_logits(*m, toks, 512, KvType::F32);
  for (int64_t batch : {int64_t(512), int64_t(1)}) {
    const auto f16 = all_logits(*m, toks, batch, KvType::F16);
    double worst = 0;
    for (size_t p = 0; p < toks.size(); p++) {
      const float* a = f32.data() + p * size_t(V);
      const float* b = f16.data() + p * size_t(V);
      for (int64_t i = 0; i < V; i++) worst = std::max(worst, double(std::abs(a[i] - b[i])));
      EXPECT_EQ(std::max_element(a, a + V) - a, std::max_element(b, b + V) - b) << "position " << p;
    }
    EXPECT_LT(worst, 0.05) << "batch " << batch;  // 0.013 here; logits are about 10
  }
}

// Mean KL divergence of the softmax of b from that of a, over positions.
double mean_kld(const std::vector<float>& a, const std::vector<float>& b, int64_t V) {
  double total = 0;
  const size_t rows = a.size() / size_t(V);
  for (size_t p = 0; p < rows; p++) {
    const float* x = a.data() + p * size_t(V);
    const float* y = b.data() + p * size_t(V);
    const double mx = *std::max_element(x, x + V), my = *std::max_element(y, y + V);
    double sx = 0, sy = 0;
    for (int64_t i = 0; i < V; i++) sx += std::exp(x[i] - mx), sy += std::exp(y[i] - my);
    double kl = 0;
    for (int64_t i = 0; i < V; i++) {
      const double lp = x[i] - mx - std::log(sx), lq = y[i] - my - std::log(sy);
      kl += std::exp(lp) * (lp - lq);
    }
    total += kl;
  }
  return total / double(rows);
}

// Every cache type on lmp-8m-w256 (head size 64), in prompt batches and
// decoding token by token: the KL divergence from the f32 cache's logits is
// within about 3× of what was measured (f16 7e-9, bf16 4e-7, q8_0 4e-6, the
// 5-bit types 2e-4, the 4-bit ones 4e-4..9e-4, kivi2 6e-3), and q8_0's is far
// below q4_0's.
TEST(Forward, QuantizedCachesStayCloseToF32) {
  if (!test::have_shared("models/lmp-8m-w256/model.safetensors")) GTEST_SKIP();
  auto m = load_model(test::shared_path("models/lmp-8m-w256"));
  auto toks = m->tokenizer->encode(
      "The history of the region begins with small farming villages along the river. Over the centuries, trade "
      "routes brought merchants, and the villages grew into towns with markets, temples and walls.",
      true, false);
  const int64_t V = m->cfg.n_vocab;
  const auto f32 = all_logits(*m, toks);
  const std::pair<KvType, double> bounds[] = {
      {KvType::F16, 3e-8},  {KvType::BF16, 2e-6}, {KvType::Q8_0, 2e-5},   {KvType::Q5_1, 6e-4},
      {KvType::Q5_0, 6e-4}, {KvType::Q4_1, 2e-3}, {KvType::Q4_0, 3e-3},   {KvType::IQ4_NL, 2e-3},
      {KvType::KIVI4, 2e-3}, {KvType::KIVI2, 0.03}};
  double q8 = 0, q4 = 0;
  for (auto [type, bound] : bounds)
    for (int64_t batch : {int64_t(512), int64_t(1)}) {
      KvCacheSpec kv(type);
      kv.group = 16;  // the prompt is 40 tokens: groups of 16 quantize most of it
      const double kld = mean_kld(f32, all_logits(*m, toks, batch, kv), V);
      EXPECT_LT(kld, bound) << kv_type_name(type) << " batch " << batch;
      EXPECT_GT(kld, 0.0) << kv_type_name(type);
      if (type == KvType::Q8_0) q8 = kld;
      if (type == KvType::Q4_0) q4 = kld;
    }
  EXPECT_LT(q8, q4 / 4);
}

// The rotation changes nothing but rounding: with an f32 cache the logits
// with rotation on equal those without; with a quantized K the rotated cache
// is a different (here closer) approximation, not a broken one.
TEST(Forward, CacheRotationKeepsTheFunction) {
  if (!test::have_shared("models/lmp-8m-w256/model.safetensors")) GTEST_SKIP();
  auto m = load_model(test::shared_path("models/lmp-8m-w256"));
  auto toks = m->tokenizer->encode("Once upon a time there was a river, and the river ran to the sea.", true, false);
  const int64_t V = m->cfg.n_vocab;
  const auto plain = all_logits(*m, toks);
  const auto rotated = all_logits(*m, toks, 512, KvCacheSpec(KvType::F32, KvType::F32, KvRotate::On));
  for (size_t i = 0; i < plain.size(); i++) ASSERT_NEAR(plain[i], rotated[i], 2e-4) << "logit " << i;
  for (KvType t : {KvType::Q4_0, KvType::Q8_0}) {
    const double on = mean_kld(plain, all_logits(*m, toks, 512, KvCacheSpec(t, t, KvRotate::On)), V);
    const double off = mean_kld(plain, all_logits(*m, toks, 512, KvCacheSpec(t, t, KvRotate::Off)), V);
    const double autom = mean_kld(plain, all_logits(*m, toks, 512, KvCacheSpec(t, t, KvRotate::Auto)), V);
    EXPECT_EQ(autom, on) << kv_type_name(t);  // head size 64: auto rotates
    EXPECT_NE(on, off) << kv_type_name(t);
    EXPECT_LT(on, 0.06) << kv_type_name(t);
  }
}

// A type whose block does not divide the head (lmp-8m: 48) is refused by name.
TEST(Forward, CacheTypeMustFitTheHead) {
  if (!test::have_shared("models/lmp-8m/model.safetensors")) GTEST_SKIP();
  auto m = load_model(test::shared_path("models/lmp-8m"));
  test::expect_error([&] { InferenceState st(*m, 16, 16, KvCacheSpec(KvType::Q8_0, KvType::F16)); },
                     "--cache-type-k q8_0: its blocks of 32 values do not divide the model's head size of 48");
  EXPECT_NO_THROW(InferenceState(*m, 16, 16, KvType::BF16));
}

struct Case {
  const char* name;
  test::SyntheticSpec spec;
};

// Synthetic models in HF layout vs the independent double-precision reference,
// then the same model converted to GGUF (q/k rows permuted) and back to HF.
TEST(Forward, SyntheticModelsMatchReferenceAcrossFormats) {
  test::SyntheticSpec qwen;
  qwen.arch = "Qwen2ForCausalLM";
  test::SyntheticSpec llama3;
  llama3.llama3_rope = true;
  llama3.tied = true;
  llama3.n_kv_heads = 1;
  test::SyntheticSpec mistral;
  mistral.arch = "MistralForCausalLM";
  test::SyntheticSpec qwen2_yarn = qwen;  // YaRN, its correction range between pairs, not rounded
  qwen2_yarn.yarn_rope = true;
  mistral.n_kv_heads = 4;
  test::SyntheticSpec qwen3;  // q/k norms, heads wider than hidden / heads (as Qwen3-0.6B), tied
  qwen3.arch = "Qwen3ForCausalLM";
  qwen3.head_dim = 16;
  qwen3.tied = true;
  test::SyntheticSpec mistral_window = mistral;  // windows of 5 over 40 tokens run in batches of 16
  mistral_window.sliding_window = 5;
  test::SyntheticSpec gemma2;  // soft-capped scores and logits, GeGLU, post-norms, (1 + w) norms, tied
  gemma2.arch = "Gemma2ForCausalLM";
  gemma2.sliding_window = 7;
  gemma2.tied = true;
  test::SyntheticSpec gemma3 = gemma2;  // q/k norms, a local RoPE base on the sliding layers
  gemma3.arch = "Gemma3ForCausalLM";
  gemma3.head_dim = 16;
  gemma3.n_layers = 3;
  test::SyntheticSpec granite;  // embedding, residual, attention and logit multipliers
  granite.arch = "GraniteForCausalLM";
  test::SyntheticSpec smollm3;  // layers without RoPE
  smollm3.arch = "SmolLM3ForCausalLM";
  smollm3.n_layers = 3;
  test::SyntheticSpec olmo2;  // norms after attention and feed-forward only, q/k norms over all heads
  olmo2.arch = "Olmo2ForCausalLM";
  test::SyntheticSpec phi3;  // fused projections, LongRoPE (long factors, attention factor), a window of 9
  phi3.arch = "Phi3ForCausalLM";
  phi3.sliding_window = 9;
  test::SyntheticSpec phi3_partial = phi3;  // Phi-4-mini's RoPE on part of each head
  phi3_partial.partial_rotary = 0.5;
  phi3_partial.head_dim = 16;
  // Mixtures of experts: Mixtral (2 of 4, renormalized), Qwen2-MoE (3 of 5, not renormalized, a shared expert),
  // Qwen3-MoE (q/k norms, renormalized), OLMoE (q/k norms over all heads, not renormalized).
  test::SyntheticSpec mixtral;
  mixtral.arch = "MixtralForCausalLM";
  test::SyntheticSpec qwen2moe;
  qwen2moe.arch = "Qwen2MoeForCausalLM";
  qwen2moe.experts = 5, qwen2moe.experts_used = 3, qwen2moe.norm_topk = false;
  test::SyntheticSpec qwen3moe;
  qwen3moe.arch = "Qwen3MoeForCausalLM";
  qwen3moe.head_dim = 16;
  test::SyntheticSpec olmoe;
  olmoe.arch = "OlmoeForCausalLM";
  olmoe.norm_topk = false;
  test::SyntheticSpec deepseek;  // DeepSeekMoE: block 0 dense, then 5 routed experts (3 used) and 2 shared ones
  deepseek.arch = "DeepseekForCausalLM";
  deepseek.experts = 5, deepseek.experts_used = 3, deepseek.norm_topk = false;
  // Dense blocks among the sparse ones: Qwen2-MoE with decoder_sparse_step 2 (block 1 of 3 sparse), Qwen3-MoE with
  // mlp_only_layers [1], DeepSeek with moe_layer_freq 2 (blocks 0 and 1 dense, 2 sparse).
  test::SyntheticSpec qwen2moe_step = qwen2moe;
  qwen2moe_step.n_layers = 3, qwen2moe_step.sparse_step = 2;
  test::SyntheticSpec qwen3moe_mlp_only = qwen3moe;
  qwen3moe_mlp_only.n_layers = 3, qwen3moe_mlp_only.mlp_only_layers = {1};
  test::SyntheticSpec deepseek_freq = deepseek;
  deepseek_freq.n_layers = 3, deepseek_freq.sparse_step = 2;
  for (const Case& c : {Case{"qwen2", qwen}, Case{"qwen2-yarn", qwen2_yarn}, Case{"llama3", llama3}, Case{"mistral", mistral}, Case{"qwen3", qwen3},
                        Case{"mistral-window", mistral_window}, Case{"gemma2", gemma2}, Case{"gemma3", gemma3},
                        Case{"granite", granite}, Case{"smollm3", smollm3}, Case{"olmo2", olmo2}, Case{"phi3", phi3},
                        Case{"phi3-partial-rotary", phi3_partial}, Case{"mixtral", mixtral}, Case{"qwen2moe", qwen2moe},
                        Case{"qwen3moe", qwen3moe}, Case{"olmoe", olmoe}, Case{"deepseek", deepseek},
                        Case{"qwen2moe-sparse-step", qwen2moe_step}, Case{"qwen3moe-mlp-only-layers", qwen3moe_mlp_only},
                        Case{"deepseek-moe-layer-freq", deepseek_freq}}) {
    SCOPED_TRACE(c.name);
    std::string dir = test::temp_dir();
    test::write_synthetic_hf(dir, c.spec);
    auto hf = load_model(dir);
    std::vector<int32_t> toks;
    for (int i = 0; i < 40; i++) toks.push_back((i * 37 + 11) % 262);
    auto ref = test::reference_logits(dir, toks);
    // Phi-3 is written fused both ways: GGUF phi3's attn_qkv / ffn_up, HF's qkv_proj / gate_up_proj.
    const bool phi3_family = c.spec.arch == "Phi3ForCausalLM";
    write_gguf_model(*hf, dir + "/m.gguf", {});
    auto gg = load_model(dir + "/m.gguf");
    write_hf_model(*gg, dir + "/back", {});
    auto back = load_model(dir + "/back");
    if (phi3_family) {
      std::set<std::string> hf_names;
      for (const Tensor& t : SafetensorsFile::open(dir + "/back/model.safetensors").tensors) hf_names.insert(t.name);
      EXPECT_TRUE(hf_names.count("model.layers.1.self_attn.qkv_proj.weight") && hf_names.count("model.layers.1.mlp.gate_up_proj.weight"));
      EXPECT_FALSE(hf_names.count("model.layers.1.self_attn.q_proj.weight"));
      EXPECT_EQ(back->cfg.rope_long_factors, hf->cfg.rope_long_factors);
      EXPECT_EQ(back->cfg.rope_dim, hf->cfg.rope_dim);
    }
    const bool llama_family = c.spec.arch == "LlamaForCausalLM" || c.spec.arch == "MistralForCausalLM" ||
                              c.spec.arch == "GraniteForCausalLM" || c.spec.arch == "SmolLM3ForCausalLM" ||
                              c.spec.arch == "MixtralForCausalLM" || c.spec.arch == "DeepseekForCausalLM";
    EXPECT_EQ(gg->cfg.rope_layout, llama_family ? RopeLayout::Interleaved : RopeLayout::Halves);
    EXPECT_EQ(back->cfg.arch, hf->cfg.arch);
    if (phi3_family) {  // fused in the file, as llama.cpp's converter writes them
      const GGUFFile g = GGUFFile::open(dir + "/m.gguf");
      EXPECT_EQ(g.req_string("general.architecture"), "phi3");
      std::set<std::string> names;
      for (const Tensor& t : g.tensors()) names.insert(t.name);
      EXPECT_TRUE(names.count("blk.0.attn_qkv.weight") && names.count("rope_factors_long.weight"));
      EXPECT_FALSE(names.count("blk.0.attn_q.weight"));
    }
    EXPECT_EQ(gg->cfg.qk_norm, c.spec.arch == "Qwen3ForCausalLM" || c.spec.arch == "Gemma3ForCausalLM" ||
                                   c.spec.arch == "Olmo2ForCausalLM" || c.spec.arch == "Qwen3MoeForCausalLM" ||
                                   c.spec.arch == "OlmoeForCausalLM");
    EXPECT_EQ(back->cfg.n_experts, hf->cfg.n_experts);
    EXPECT_EQ(back->cfg.expert_norm, hf->cfg.expert_norm);
    EXPECT_EQ(back->cfg.shared_ffn, hf->cfg.shared_ffn);
    EXPECT_EQ(gg->cfg.sliding_window, c.spec.sliding_window);
    EXPECT_EQ(back->cfg.layer_swa, hf->cfg.layer_swa);
    EXPECT_EQ(gg->cfg.layer_rope, hf->cfg.layer_rope);
    std::string blocks;  // 'm' for a block with experts, 'd' for a dense one: the same through GGUF and back
    for (int64_t l = 0; l < hf->cfg.n_layers; l++) blocks += hf->cfg.layer_moe(l) ? 'm' : 'd';
    for (const Model* m : {gg.get(), back.get()})
      for (int64_t l = 0; l < hf->cfg.n_layers; l++) EXPECT_EQ(m->cfg.layer_moe(l), blocks[size_t(l)] == 'm') << l;
    if (c.name == std::string("qwen2moe-sparse-step")) EXPECT_EQ(blocks, "dmd");
    if (c.name == std::string("qwen3moe-mlp-only-layers")) EXPECT_EQ(blocks, "mdm");
    if (c.name == std::string("deepseek-moe-layer-freq")) EXPECT_EQ(blocks, "ddm");
    for (const Model* m : {hf.get(), gg.get(), back.get()}) {
      auto got = all_logits(*m, toks, 16);
      const int64_t V = m->cfg.n_vocab;
      double worst = 0;
      for (size_t p = 0; p < toks.size(); p++)
        for (int64_t i = 0; i < V; i++) worst = std::max(worst, std::abs(got[p * V + i] - ref[p][size_t(i)]));
      EXPECT_LT(worst, 2e-4) << m->path;
    }
  }
}

// gpt-oss checkpoints in Hugging Face layout (fused gate_up_proj with gate and up interleaved, down_proj, their
// biases, the router's bias, sinks, o_proj bias, even layers sliding, YaRN not rounded), with f32 experts and
// with MXFP4 experts as the released checkpoints hold them (kept MXFP4), against the double-precision reference
// written from modeling_gpt_oss; then written as GGUF gpt-oss and read back.
test::SyntheticSpec small_gpt_oss(bool mxfp4) {
  test::SyntheticSpec s;
  s.arch = "GptOssForCausalLM";
  s.dim = 64, s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 16, s.sliding_window = 5;
  s.experts = 4, s.experts_used = 2, s.expert_ffn = 64, s.mxfp4 = mxfp4;
  return s;
}

TEST(Forward, GptOssCheckpointsMatchReference) {
  // f32 experts, MXFP4 experts, and f32 with layer_types sliding the odd layer instead of the even one.
  for (const int variant : {0, 1, 2}) {
    const bool mxfp4 = variant == 1, odd_slides = variant == 2;
    SCOPED_TRACE(mxfp4 ? "mxfp4" : odd_slides ? "layer_types" : "f32");
    const std::string dir = test::temp_dir();
    test::write_synthetic_hf(dir, small_gpt_oss(mxfp4));
    if (odd_slides) {
      auto cfg = nlohmann::json::parse(read_text_file(dir + "/config.json"));
      cfg["layer_types"] = {"full_attention", "sliding_attention"};
      std::ofstream(dir + "/config.json") << cfg.dump();
    }
    auto hf = load_model(dir);
    EXPECT_EQ(hf->cfg.arch, "gpt-oss");
    EXPECT_EQ(hf->tensor("blk.1.ffn_up.3.weight").dtype, mxfp4 ? DType::MXFP4 : DType::F32);
    EXPECT_EQ(hf->cfg.window(0), odd_slides ? 0 : 5);
    EXPECT_EQ(hf->cfg.window(1), odd_slides ? 5 : 0);
    std::vector<int32_t> toks;
    for (int i = 0; i < 40; i++) toks.push_back((i * 37 + 11) % 262);
    const auto ref = test::reference_logits(dir, toks);
    write_gguf_model(*hf, dir + "/m.gguf", {});
    auto gg = load_model(dir + "/m.gguf");
    EXPECT_EQ(gg->tensor("blk.1.ffn_up.3.weight").dtype, mxfp4 ? DType::MXFP4 : DType::F32);
    EXPECT_EQ(gg->cfg.layer_swa, hf->cfg.layer_swa);
    // The MXFP4 experts' values exactly: dequantized to f32, the model is the reference's.
    ExportOptions to_f32;
    to_f32.dtype = DType::F32;
    write_gguf_model(*hf, dir + "/f32.gguf", to_f32);
    auto deq = load_model(dir + "/f32.gguf");
    for (const Model* m : {hf.get(), gg.get(), deq.get()}) {
      const auto got = all_logits(*m, toks, 16);
      const int64_t V = m->cfg.n_vocab;
      double worst = 0, top = 0;
      for (size_t p = 0; p < toks.size(); p++)
        for (int64_t i = 0; i < V; i++) {
          worst = std::max(worst, std::abs(got[p * V + i] - ref[p][size_t(i)]));
          top = std::max(top, std::abs(ref[p][size_t(i)]));
        }
      // MXFP4 runs on int8 activations, as llama.cpp's kernels do (measured: 0.27 off logits up to 11).
      const bool int8_acts = mxfp4 && m != deq.get();
      EXPECT_LT(worst, int8_acts ? 0.05 * top : 2e-4) << m->path << " largest logit " << top;
    }
  }
}

// A released-style gpt-oss checkpoint whose MXFP4 blocks or scales are missing, of another type or of another
// shape: each an error naming the tensor, before anything is read out of bounds.
TEST(Forward, GptOssMxfp4TensorsOfTheWrongShapeAreErrors) {
  const std::string dir = test::temp_dir();
  test::write_synthetic_hf(dir, small_gpt_oss(true));
  const auto st = SafetensorsFile::open(dir + "/model.safetensors");
  const std::string scales = "model.layers.1.mlp.experts.down_proj_scales", blocks = "model.layers.1.mlp.experts.gate_up_proj_blocks";
  const auto variant = [&](const std::function<bool(const Tensor&, std::vector<TensorToWrite>&)>& edit) {
    const std::string d = test::temp_dir();
    std::filesystem::copy_file(dir + "/config.json", d + "/config.json");
    std::filesystem::copy_file(dir + "/tokenizer.json", d + "/tokenizer.json");
    std::vector<TensorToWrite> ts;
    for (const Tensor& t : st.tensors)
      if (!edit(t, ts)) ts.push_back({t, {}});
    write_safetensors(d + "/model.safetensors", ts);
    return d;
  };
  // Down's scales one block short per row: [4, 64, 1] instead of [4, 64, 2].
  test::expect_error([&] { load_model(variant([&](const Tensor& t, auto& ts) {
                       if (t.name != scales) return false;
                       ts.push_back({make_owned_tensor(t.name, DType::U8, {4, 64, 1}, std::vector<uint8_t>(256, 127)), {}});
                       return true;
                     })); },
                     "model.layers.1.mlp.experts.down_proj_scales is U8 [4, 64, 1], expected U8 [4, 64, 2]");
  test::expect_error([&] { load_model(variant([&](const Tensor& t, auto&) { return t.name == scales; })); },
                     "missing tensor model.layers.1.mlp.experts.down_proj_scales");
  // Blocks stored as f32 values of the same count.
  test::expect_error([&] { load_model(variant([&](const Tensor& t, auto& ts) {
                       if (t.name != blocks) return false;
                       ts.push_back({make_f32_tensor(t.name, {4, 128, 2, 4}, std::vector<float>(4 * 128 * 8, 0.0f)), {}});
                       return true;
                     })); },
                     "model.layers.1.mlp.experts.gate_up_proj_blocks is F32 [4, 128, 2, 4], expected U8 [4, 128, 2, 16]");
}

// A GGUF laid out as llama.cpp's convert_hf_to_gguf.py writes Phi-3: fused
// attn_qkv and ffn_up (gate rows, then up rows), RoPE pairs unpermuted, the
// LongRoPE factors as rope_factors_short / rope_factors_long tensors, the
// attention factor and original context as metadata. lmpress splits the
// fused rows and computes the reference's logits (long factors: 40 tokens
// past an original context of 16).
TEST(Forward, Phi3GgufAsLlamaCppWritesIt) {
  const std::string dir = test::temp_dir();
  test::SyntheticSpec spec;
  spec.arch = "Phi3ForCausalLM";
  spec.sliding_window = 9;
  test::write_synthetic_hf(dir, spec);
  auto hf = load_model(dir);
  const ModelConfig& c = hf->cfg;
  GGUFWriter w;
  w.set("general.architecture", GGUFValue::str("phi3"));
  const auto u32 = [](int64_t x) { return GGUFValue::u32(uint32_t(x)); };
  w.set("phi3.vocab_size", u32(c.n_vocab));
  w.set("phi3.context_length", u32(c.ctx_len));
  w.set("phi3.embedding_length", u32(c.dim));
  w.set("phi3.block_count", u32(c.n_layers));
  w.set("phi3.feed_forward_length", u32(c.ffn_dim));
  w.set("phi3.attention.head_count", u32(c.n_heads));
  w.set("phi3.attention.head_count_kv", u32(c.n_kv_heads));
  w.set("phi3.attention.layer_norm_rms_epsilon", GGUFValue::f32(c.rms_eps));
  w.set("phi3.rope.freq_base", GGUFValue::f32(c.rope_theta));
  w.set("phi3.rope.dimension_count", u32(c.rope_dim));
  w.set("phi3.rope.scaling.original_context_length", u32(c.rope_orig_ctx));
  w.set("phi3.rope.scaling.attn_factor", GGUFValue::f32(c.rope_mscale));
  w.set("phi3.attention.sliding_window", u32(c.sliding_window));
  const auto fused = [&](const std::string& name, std::vector<std::string> parts) {
    std::vector<float> v;
    int64_t rows = 0;
    for (const auto& p : parts) {
      const auto f = to_f32(hf->tensor(p));
      v.insert(v.end(), f.begin(), f.end());
      rows += hf->tensor(p).rows();
    }
    w.add_tensor(make_f32_tensor(name, {rows, c.dim}, v));
  };
  for (const Tensor& t : hf->tensors) {
    const int64_t l = layer_of(t.name);
    const std::string b = "blk." + std::to_string(l) + ".";
    if (t.name == b + "attn_q.weight") fused(b + "attn_qkv.weight", {b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"});
    else if (t.name == b + "ffn_gate.weight") fused(b + "ffn_up.weight", {b + "ffn_gate.weight", b + "ffn_up.weight"});
    else if (t.name != b + "attn_k.weight" && t.name != b + "attn_v.weight" && t.name != b + "ffn_up.weight") w.add_tensor(t);
  }
  const int64_t pairs = int64_t(c.rope_short_factors.size());
  w.add_tensor(make_f32_tensor("rope_factors_short.weight", {pairs}, c.rope_short_factors));
  w.add_tensor(make_f32_tensor("rope_factors_long.weight", {pairs}, c.rope_long_factors));
  w.write(dir + "/phi3.gguf");

  auto gg = load_model(dir + "/phi3.gguf");
  EXPECT_EQ(gg->cfg.rope_scaling, "longrope");
  EXPECT_TRUE(gg->long_rope(40));
  EXPECT_FALSE(gg->long_rope(16));
  EXPECT_EQ(gg->find("rope_factors_long.weight"), nullptr);  // config, not a weight
  std::vector<int32_t> toks;
  for (int i = 0; i < 40; i++) toks.push_back((i * 37 + 11) % 262);
  const auto ref = test::reference_logits(dir, toks);
  const auto got = all_logits(*gg, toks, 16);
  double worst = 0;
  for (size_t p = 0; p < toks.size(); p++)
    for (int64_t i = 0; i < c.n_vocab; i++) worst = std::max(worst, std::abs(got[p * c.n_vocab + i] - ref[p][size_t(i)]));
  EXPECT_LT(worst, 2e-4);
}

// The router's choice and weights, computed by hand: softmax over the
// experts, the best K (a tie to the lower expert), renormalized or not.
TEST(Forward, RouteExpertsByHand) {
  ModelConfig c;
  c.n_experts = 4, c.n_experts_used = 2;
  const float logits[8] = {1, 3, 2, 0, /* ties: */ 2, 2, 1, 2};
  float probs[8], weights[4];
  int32_t chosen[4];
  const double z = std::exp(0.0) + std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  c.expert_norm = false;
  route_experts(c, logits, 2, probs, chosen, weights);
  EXPECT_EQ(chosen[0], 1);
  EXPECT_EQ(chosen[1], 2);
  EXPECT_NEAR(probs[3], 1 / z, 1e-7);
  EXPECT_NEAR(weights[0], std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(weights[1], std::exp(2.0) / z, 1e-6);
  EXPECT_EQ(chosen[2], 0);  // experts 0, 1 and 3 tie
  EXPECT_EQ(chosen[3], 1);
  c.expert_norm = true;
  c.expert_scale = 2.5f;
  route_experts(c, logits, 2, probs, chosen, weights);
  EXPECT_NEAR(weights[0], 2.5 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(weights[1], 2.5 / (1 + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(weights[2], 1.25, 1e-6);
  // gpt-oss: the softmax of the chosen experts' logits alone (3 and 2 → e/(e+1), 1/(e+1)).
  c.expert_norm = false, c.expert_scale = 1.0f, c.expert_softmax_chosen = true;
  route_experts(c, logits, 2, probs, chosen, weights);
  EXPECT_EQ(chosen[0], 1);
  EXPECT_NEAR(weights[0], std::exp(1.0) / (std::exp(1.0) + 1), 1e-6);
  EXPECT_NEAR(weights[1], 1 / (std::exp(1.0) + 1), 1e-6);
  EXPECT_NEAR(weights[2] + weights[3], 1.0, 1e-6);
  EXPECT_NEAR(probs[1], std::exp(3.0) / z, 1e-7);  // probs stay the softmax over all experts
}

TEST(Forward, RopePermutationRoundTrips) {
  std::vector<uint8_t> rows(2 * 8);
  for (size_t i = 0; i < rows.size(); i++) rows[i] = uint8_t(i);
  auto inter = permute_rope_rows(rows.data(), 2, 8, 1, RopeLayout::Halves, RopeLayout::Interleaved);
  // Head 0 in halves order is [a0 a1 a2 a3 b0 b1 b2 b3]; interleaved pairs (a_i, b_i).
  EXPECT_EQ(std::vector<uint8_t>(inter.begin(), inter.begin() + 8), (std::vector<uint8_t>{0, 4, 1, 5, 2, 6, 3, 7}));
  auto back = permute_rope_rows(inter.data(), 2, 8, 1, RopeLayout::Interleaved, RopeLayout::Halves);
  EXPECT_EQ(back, rows);
}

TEST(Perplexity, Stories260KMatchesLlamaCpp) {
  if (!test::have_shared("data/wikitext-2/wiki.test.raw")) GTEST_SKIP();
  std::string text = read_text_file(test::shared_path("data/wikitext-2/wiki.test.raw"));
  for (const char* path : {"models/stories260K/stories260K.gguf", "models/stories260K/stories260K.bin"}) {
    auto m = load_model(test::shared_path(path));
    auto toks = m->tokenizer->encode(text, true, false);
    auto r = perplexity(*m, toks, {128, 100, 2048});
    // llama-perplexity -c 128 --chunks 100 on stories260K.gguf: 95.986.
    EXPECT_NEAR(r.ppl, 95.986, 95.986 * 0.005) << path;
    EXPECT_EQ(r.n_tokens_scored, 100 * 63);
  }
}

TEST(Perplexity, Lmp8mMatchesLlamaCpp) {
  if (!test::have_shared("data/wikitext-2/wiki.test.raw")) GTEST_SKIP();
  std::string text = read_text_file(test::shared_path("data/wikitext-2/wiki.test.raw"));
  auto m = load_model(test::shared_path("models/lmp-8m"));
  auto toks = m->tokenizer->encode(text, true, false);
  EXPECT_EQ(toks.size(), 505089u);  // REFERENCE.md: wikitext2_test_tokens_with_bos
  auto r = perplexity(*m, toks, {256, 10, 2048});
  // First 10 windows; the full 40-window value (295.514) is checked from the CLI test.
  EXPECT_GT(r.ppl, 100);
  EXPECT_EQ(r.running_ppl.size(), 10u);
  std::vector<int32_t> short_text(toks.begin(), toks.begin() + 300);
  EXPECT_THROW(perplexity(*m, short_text, {256, -1, 2048}), Error);  // fewer than 2 x ctx tokens
}

}  // namespace
}  // namespace lmpress
