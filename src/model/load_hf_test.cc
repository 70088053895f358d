// config.json of Hugging Face checkpoints: every malformed field is an Error
// naming the file and the field.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"
#include "model/load_gptq.h"
#include "model/model.h"

namespace lmpress {
namespace {

using test::expect_error;

// lmp-8m's config, with `edit` applied.
ModelConfig config(const std::function<void(nlohmann::json&)>& edit = {}) {
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 288}, {"intermediate_size", 768},
                      {"num_hidden_layers", 6}, {"num_attention_heads", 6}, {"num_key_value_heads", 2},
                      {"vocab_size", 4096}, {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5},
                      {"hidden_act", "silu"}, {"bos_token_id", 1}, {"eos_token_id", 2}};
  if (edit) edit(j);
  return hf_config_from_text(j.dump(), "m/config.json");
}

TEST(HfConfig, ReadsTheHyperparameters) {
  const ModelConfig c = config([](auto& j) {
    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"original_max_position_embeddings", 128}};
    j["eos_token_id"] = {2, 3};  // a list: not used
  });
  EXPECT_EQ(c.dim, 288);
  EXPECT_EQ(c.head_dim, 48);
  EXPECT_EQ(c.rope_scaling, "llama3");
  EXPECT_EQ(c.rope_orig_ctx, 128);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, -1);
}

// Each of these was an nlohmann exception, a float-to-integer overflow or a
// silent truncation before.
TEST(HfConfig, BadFieldsNameTheField) {
  expect_error([] { hf_config_from_text("{\"hidden_size\": 1e999}", "m/config.json"); }, "m/config.json: bad JSON");
  expect_error([] { config([](auto& j) { j["rope_scaling"] = {{"rope_type", 5}}; }); },
               "m/config.json: field rope_scaling.rope_type must be a string");
  expect_error([] { config([](auto& j) { j["rope_scaling"] = {{"type", "llama3"}, {"original_max_position_embeddings", 1e300}}; }); },
               "rope_scaling.original_max_position_embeddings = 1e+300 is not an integer in [1, 16777216]");
  expect_error([] { config([](auto& j) { j["rope_scaling"] = {{"type", "llama3"}, {"original_max_position_embeddings", 0}}; }); },
               "original_max_position_embeddings = 0 is not an integer in [1, 16777216]");
  expect_error([] { config([](auto& j) { j["rope_scaling"] = {{"type", "llama3"}, {"low_freq_factor", 0}}; }); },
               "rope_scaling.low_freq_factor 0 must be a finite number > 0");
  expect_error([] { config([](auto& j) { j["hidden_act"] = {"silu"}; }); }, "field hidden_act must be a string");
  expect_error([] { config([](auto& j) { j["hidden_size"] = 18446744073709551615u; }); },
               "field hidden_size must be an integer");
  expect_error([] { config([](auto& j) { j["bos_token_id"] = int64_t(1) << 32; }); },
               "bos_token_id = 4294967296 is out of range");
  expect_error([] { config([](auto& j) { j["tie_word_embeddings"] = "no"; }); },
               "field tie_word_embeddings must be true or false");
}

// Gemma's layer pattern, scalings and caps; Mistral's window.
TEST(HfConfig, ReadsSlidingWindowsAndGemmaSettings) {
  const auto gemma = [](const char* arch) {
    return [arch](nlohmann::json& j) {
      j["architectures"] = {arch};
      j.erase("hidden_act");
      j["hidden_activation"] = "gelu_pytorch_tanh";
      j["head_dim"] = 64;
      j["query_pre_attn_scalar"] = 144;
      j["sliding_window"] = 128;
      j["attn_logit_softcapping"] = 50.0;
      j["final_logit_softcapping"] = 30.0;
    };
  };
  ModelConfig c = config(gemma("Gemma2ForCausalLM"));
  EXPECT_EQ(c.arch, "gemma2");
  EXPECT_EQ(c.layer_swa, (std::vector<uint8_t>{1, 0, 1, 0, 1, 0}));
  EXPECT_EQ(c.window(0), 128);
  EXPECT_EQ(c.window(1), 0);
  EXPECT_FLOAT_EQ(c.attention_scale(), 1.0f / 12.0f);
  EXPECT_FLOAT_EQ(c.embed_scale, std::sqrt(288.0f));
  EXPECT_FLOAT_EQ(c.attn_softcap, 50.0f);
  EXPECT_TRUE(c.tied_embeddings);  // Gemma's default
  EXPECT_EQ(c.ffn_act, FfnAct::GeluTanh);
  c = config([&](nlohmann::json& j) {
    gemma("Gemma3ForCausalLM")(j);
    j["attn_logit_softcapping"] = nullptr;
    j["sliding_window_pattern"] = 3;
  });
  EXPECT_EQ(c.layer_swa, (std::vector<uint8_t>{1, 1, 0, 1, 1, 0}));
  EXPECT_EQ(c.attn_softcap, 0.0f);
  EXPECT_EQ(c.rope_theta_swa, 10000.0f);  // rope_local_base_freq's default
  EXPECT_TRUE(c.qk_norm);
  c = config([&](nlohmann::json& j) {
    gemma("Gemma3ForCausalLM")(j);
    j["layer_types"] = {"full_attention", "sliding_attention", "full_attention", "full_attention",
                        "sliding_attention", "full_attention"};
  });
  EXPECT_EQ(c.layer_swa, (std::vector<uint8_t>{0, 1, 0, 0, 1, 0}));
  c = config([&](nlohmann::json& j) {  // Gemma2Config's defaults; null turns a cap off
    gemma("Gemma2ForCausalLM")(j);
    j.erase("head_dim"), j.erase("attn_logit_softcapping"), j["final_logit_softcapping"] = nullptr;
  });
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.attn_softcap, 50.0f);
  EXPECT_EQ(c.final_softcap, 0.0f);
  EXPECT_EQ(config([](nlohmann::json& j) { j["sliding_window"] = 64; }).sliding_window, 0);  // HF's Llama has none
  c = config([](nlohmann::json& j) { j["architectures"] = {"MistralForCausalLM"}, j["sliding_window"] = 4096; });
  EXPECT_EQ(c.window(5), 4096);
  EXPECT_EQ(config([](nlohmann::json& j) { j["sliding_window"] = nullptr; }).sliding_window, 0);

  expect_error([&] { config([&](nlohmann::json& j) { gemma("Gemma3ForCausalLM")(j), j["layer_types"] = {"full_attention"}; }); },
               "m/config.json: layer_types must hold one sliding_attention or full_attention per layer (6 layers)");
  expect_error([&] {
    config([&](nlohmann::json& j) {
      gemma("Gemma2ForCausalLM")(j);
      j["layer_types"] = {"full_attention", "local", "full_attention", "full_attention", "full_attention", "full_attention"};
    });
  }, "layer_types[1] = \"local\" is not sliding_attention or full_attention");
  expect_error([&] { config([&](nlohmann::json& j) { gemma("Gemma2ForCausalLM")(j), j["sliding_window"] = -3; }); },
               "sliding_window = -3 is out of range");
  expect_error([&] { config([&](nlohmann::json& j) { gemma("Gemma2ForCausalLM")(j), j["attn_logit_softcapping"] = -1; }); },
               "attn_logit_softcapping -1 must be a finite number ≥ 0");
  expect_error([&] { config([&](nlohmann::json& j) { gemma("Gemma2ForCausalLM")(j), j["hidden_activation"] = "relu"; }); },
               "hidden_activation 'relu' is not supported");
  expect_error([] { config([](nlohmann::json& j) { j["architectures"] = {"Gemma3ForConditionalGeneration"}; }); },
               "Gemma3ForConditionalGeneration is Gemma 3 with a vision tower");
  expect_error([] { config([](nlohmann::json& j) { j["architectures"] = {"Qwen3ForCausalLM"}, j["use_sliding_window"] = true; }); },
               "use_sliding_window: Qwen's sliding window");
  expect_error([] { config([](nlohmann::json& j) { j["rope_parameters"] = {{"rope_theta", 10000.0}}; }); },
               "rope_parameters (transformers' per-layer-type RoPE layout) is not supported yet");
}

TEST(HfConfig, GptqQuantizationConfigFieldsAreChecked) {
  nlohmann::json qc = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 128}, {"desc_act", true}};
  EXPECT_TRUE(gptq_spec_from_config(qc, "m/config.json").act_order);
  auto bad = [&](const char* key, nlohmann::json value, const std::string& msg) {
    nlohmann::json q = qc;
    q[key] = std::move(value);
    expect_error([&] { gptq_spec_from_config(q, "m/config.json"); }, msg);
  };
  bad("quant_method", 4, "m/config.json: field quantization_config.quant_method must be a string");
  bad("sym", "yes", "field quantization_config.sym must be true or false");
  bad("bits", (int64_t(1) << 32) + 4, "GPTQ with 4294967300 bits is not supported");
  bad("group_size", 1.5, "field quantization_config.group_size must be an integer");
}

}  // namespace
}  // namespace lmpress
