// Model files whose config disagrees with itself or with the tensors, and the
// edge cases they lead to (a tiny context, a padded embedding): each is an
// `error:` naming the field, or handled, through the real CLI.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/to_f32.h"
#include "model/export.h"
#include "model/model.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

namespace fs = std::filesystem;
using test::expect_cli_error;
using test::run_cli;

std::string S(const std::string& rel) { return test::shared_path(rel); }
const std::string kStories = "models/stories260K/stories260K.gguf";

void write(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

// A copy of the synthetic HF model with config.json edited; `raw` then
// rewrites the JSON text (for numbers JSON cannot carry through a double).
std::string hf_variant(const std::function<void(nlohmann::json&)>& edit,
                       const std::function<void(std::string&)>& raw = {}) {
  static const std::string good = [] {
    const std::string d = test::temp_dir();
    test::write_synthetic_hf(d, {});
    return d;
  }();
  const std::string d = test::temp_dir();
  for (auto& f : fs::directory_iterator(good)) fs::copy_file(f.path(), d + "/" + f.path().filename().string());
  auto j = nlohmann::json::parse(read_text_file(d + "/config.json"));
  edit(j);
  std::string text = j.dump();
  if (raw) raw(text);
  write(d + "/config.json", text);
  return d;
}

using KV = std::vector<std::pair<std::string, GGUFValue>>;
void set(KV& kv, const std::string& key, GGUFValue v) {
  for (auto& [k, old] : kv)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv.emplace_back(key, std::move(v));
}

// A copy of a GGUF file with its metadata edited.
std::string gguf_variant(const std::string& src, const std::function<void(KV&)>& edit) {
  const GGUFFile g = GGUFFile::open(src);
  KV kv = g.kv;
  edit(kv);
  GGUFWriter w;
  for (auto& [k, v] : kv) w.set(k, v);
  for (const auto& t : g.tensors()) w.add_tensor(t);
  const std::string out = test::temp_dir() + "/m.gguf";
  w.write(out);
  return out;
}

// A context of 1 predicts nothing from anything: refused at load, whatever
// the command (eval used to crash in the task scorer, imatrix to calibrate on
// windows holding BOS alone).
TEST(ModelChecks, ContextOfOneIsRefusedAtLoad) {
  const std::string hf = hf_variant([](auto& j) { j["max_position_embeddings"] = 1; });
  expect_cli_error("eval " + hf + " --task-dir " + S("data/tasks") + " --tasks piqa --limit 2",
                   "max_position_embeddings = 1 is out of range [2, ");
  expect_cli_error("imatrix " + hf + " -f " + S("data/calib/docs-calib.txt") + " -o " + test::temp_dir() + "/i.dat",
                   "max_position_embeddings = 1 is out of range [2, ");
  const std::string gguf = gguf_variant(S(kStories), [](KV& kv) { set(kv, "llama.context_length", GGUFValue::u32(1)); });
  expect_cli_error("eval " + gguf + " --task-dir " + S("data/tasks") + " --tasks piqa --limit 2",
                   "llama.context_length = 1 is out of range [2, ");
}

// Task requests longer than a small window are cut from the left, as
// lm-evaluation-harness cuts them; a continuation that alone exceeds the
// window is an error naming the task and the line of its item.
TEST(ModelChecks, TaskScoringWithATinyContext) {
  const std::string d = test::temp_dir();
  write(d + "/short.jsonl", "{\"query\":\"the cat sat on the\",\"choices\":[\"mat\",\"hat\"],\"gold\":0}\n"
                            "{\"query\":\"a long query with many words in it\",\"choices\":[\"x\",\"y z\"],\"gold\":1}\n");
  const std::string ctx8 = hf_variant([](auto& j) { j["max_position_embeddings"] = 8; });
  auto r = run_cli("eval " + ctx8 + " --tasks " + d + "/short.jsonl --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["tasks"]["short"]["n"], 2);
  const std::string ctx2 = hf_variant([](auto& j) { j["max_position_embeddings"] = 2; });
  expect_cli_error("eval " + ctx2 + " --tasks " + d + "/short.jsonl", "task short: " + d + "/short.jsonl:1: a choice has 4 tokens, more than the model's context of 2");
  expect_cli_error("eval " + ctx2 + " --task-dir " + S("data/tasks") + " --tasks piqa --limit 2",
                   "more than the model's context of 2");
}

// Layers the config does not count would be skipped silently; layers it
// counts that are missing would be read from nowhere.
TEST(ModelChecks, LayerCountMustMatchTheTensors) {
  expect_cli_error("info " + hf_variant([](auto& j) { j["num_hidden_layers"] = 1; }),
                   "num_hidden_layers is 1 but the weights hold 2 layers");
  expect_cli_error("info " + hf_variant([](auto& j) { j["num_hidden_layers"] = 3; }),
                   "num_hidden_layers is 3 but the weights hold 2 layers");
  expect_cli_error("info " + gguf_variant(S(kStories), [](KV& kv) { set(kv, "llama.block_count", GGUFValue::u32(4)); }),
                   "llama.block_count is 4 but the weights hold 5 layers");
  expect_cli_error("info " + gguf_variant(S(kStories), [](KV& kv) { set(kv, "llama.block_count", GGUFValue::u32(6)); }),
                   "llama.block_count is 6 but the weights hold 5 layers");
}

// Float fields are range-checked before any conversion (to float, or to an
// integer), so no value reaches the model as inf, NaN or an undefined cast.
TEST(ModelChecks, RopeFieldsOutOfRange) {
  const auto theta = [](const std::string& text) {
    return hf_variant([](auto& j) { j["rope_theta"] = 12345.5; },
                      [text](std::string& s) { s.replace(s.find("12345.5"), 7, text); });
  };
  expect_cli_error("info " + theta("1e39"), "rope_theta = 1e+39 is not a finite 32-bit float");
  expect_cli_error("info " + theta("1e400"), "1e400");  // beyond double: the JSON reader refuses it
  expect_cli_error("info " + theta("0"), "rope_theta 0 must be a finite number > 1");
  expect_cli_error("info " + theta("-5"), "rope_theta -5 must be a finite number > 1");
  const auto llama3 = [](const char* key, double v) {
    return hf_variant([key, v](auto& j) {
      j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
      j["rope_scaling"][key] = v;
    });
  };
  expect_cli_error("info " + llama3("original_max_position_embeddings", 1e30),
                   "rope_scaling.original_max_position_embeddings = 1e+30 is not an integer in [1, 16777216]");
  expect_cli_error("info " + llama3("original_max_position_embeddings", 0.5),
                   "rope_scaling.original_max_position_embeddings = 0.5 is not an integer");
  expect_cli_error("info " + llama3("factor", 1e39), "rope_scaling.factor = 1e+39 is not a finite 32-bit float");
  expect_cli_error("info " + llama3("factor", -1), "rope_scaling.factor -1 must be a finite number > 0");
  expect_cli_error("info " + llama3("low_freq_factor", 0), "rope_scaling.low_freq_factor 0 must be a finite number > 0");
  const auto gguf = [](const char* key, GGUFValue v) {
    return gguf_variant(S(kStories), [key, v](KV& kv) { set(kv, key, v); });
  };
  expect_cli_error("info " + gguf("llama.rope.freq_base", GGUFValue::f32(INFINITY)),
                   "llama.rope.freq_base = inf is not a finite 32-bit float");
  expect_cli_error("info " + gguf("llama.rope.freq_base", GGUFValue::f32(NAN)), "llama.rope.freq_base = nan");
  expect_cli_error("info " + gguf("llama.rope.freq_base", {GGUFType::FLOAT64, 1e300}),
                   "llama.rope.freq_base = 1e+300 is not a finite 32-bit float");
  expect_cli_error("info " + gguf("llama.rope.freq_base", GGUFValue::f32(-1)),
                   "llama.rope.freq_base -1 must be a finite number > 1");
  expect_cli_error("info " + gguf_variant(S(kStories), [](KV& kv) {
                     set(kv, "lmpress.rope_scaling.llama3.factor", GGUFValue::f32(8));
                     set(kv, "lmpress.rope_scaling.llama3.original_context_length", GGUFValue::u64(1ull << 40));
                   }),
                   "lmpress.rope_scaling.llama3.original_context_length = 1099511627776 is out of range [1, 16777216]");
}

// Gemma's and the window's GGUF fields: a zero head count (the 27B scale rule
// divides by it), a pattern of the wrong length or type, an OLMo 3 window.
TEST(ModelChecks, WindowAndGemmaFieldsOutOfRange) {
  const auto as = [](const std::string& arch, const std::function<void(KV&)>& edit) {
    return gguf_variant(S(kStories), [&](KV& kv) {
      for (auto& [k, v] : kv)
        if (k.starts_with("llama.")) k = arch + k.substr(5);
      set(kv, "general.architecture", GGUFValue::str(arch));
      edit(kv);
    });
  };
  expect_cli_error("info " + as("gemma2", [](KV& kv) {
                     set(kv, "gemma2.block_count", GGUFValue::u32(46));
                     set(kv, "gemma2.attention.head_count", GGUFValue::u32(0));
                   }),
                   "must be positive");
  expect_cli_error("info " + as("gemma3", [](KV& kv) {
                     set(kv, "gemma3.attention.sliding_window", GGUFValue::u32(64));
                     set(kv, "gemma3.attention.sliding_window_pattern",
                         GGUFValue::array(GGUFType::BOOL, {GGUFValue::boolean(true)}));
                   }),
                   "gemma3.attention.sliding_window_pattern has 1 values for 5 layers");
  expect_cli_error("info " + as("gemma2", [](KV& kv) {
                     set(kv, "gemma2.attention.sliding_window_pattern", GGUFValue::str("even"));
                   }),
                   "gemma2.attention.sliding_window_pattern should be an integer or an array of flags");
  expect_cli_error("info " + as("olmo2", [](KV& kv) {
                     set(kv, "olmo2.attention.sliding_window", GGUFValue::u32(64));
                     set(kv, "olmo2.rope.scaling.type", GGUFValue::str("yarn"));
                     set(kv, "olmo2.rope.scaling.factor", GGUFValue::f32(4));
                   }),
                   "OLMo 3's scaling on the global layers only is not supported");
}

// A mixture of experts whose counts disagree with its tensors or with
// themselves: each an error naming the field (HF and GGUF).
TEST(ModelChecks, MixtureOfExpertsFieldsMustMatchTheTensors) {
  test::SyntheticSpec spec;
  spec.arch = "Qwen3MoeForCausalLM";  // 4 experts of 24, 2 per token
  const std::string hf = test::temp_dir();
  test::write_synthetic_hf(hf, spec);
  const auto edited = [&](const std::function<void(nlohmann::json&)>& edit) {
    const std::string d = test::temp_dir();
    for (auto& f : fs::directory_iterator(hf)) fs::copy_file(f.path(), d + "/" + f.path().filename().string());
    auto j = nlohmann::json::parse(read_text_file(d + "/config.json"));
    edit(j);
    write(d + "/config.json", j.dump());
    return d;
  };
  expect_cli_error("info " + edited([](auto& j) { j["num_experts"] = 5; }),
                   "tensor blk.0.ffn_gate_inp.weight has shape [4, 32], the config needs [5, 32]");
  expect_cli_error("info " + edited([](auto& j) { j["num_experts_per_tok"] = 5; }),
                   "num_experts_per_tok = 5 is out of range [1, 4]");
  expect_cli_error("info " + edited([](auto& j) { j["moe_intermediate_size"] = 30; }),
                   "tensor blk.0.ffn_gate.0.weight has shape [24, 32], the config needs [30, 32]");
  expect_cli_error("info " + edited([](auto& j) { j.erase("num_experts"); }), "num_experts");
  // Dense blocks among the sparse ones need their dense MLP's tensors; the fields are checked.
  expect_cli_error("info " + edited([](auto& j) { j["mlp_only_layers"] = {0}; }), "blk.0.ffn_gate.weight");
  expect_cli_error("info " + edited([](auto& j) { j["decoder_sparse_step"] = 2; }), "blk.0.ffn_gate.weight");
  expect_cli_error("info " + edited([](auto& j) { j["decoder_sparse_step"] = 0; }),
                   "decoder_sparse_step 0 is out of range [1, 2]");
  expect_cli_error("info " + edited([](auto& j) { j["mlp_only_layers"] = {0, 1}; }),
                   "mlp_only_layers / decoder_sparse_step / moe_layer_freq leave no block with experts");
  expect_cli_error("info " + edited([](auto& j) { j["mlp_only_layers"] = {5}; }), "mlp_only_layers[0] = 5 is not a layer (0..1)");
  expect_cli_error("info " + edited([](auto& j) { j["mlp_only_layers"] = "1"; }),
                   "field mlp_only_layers must be an array of layer indices");
  const std::string gguf = test::temp_dir() + "/moe.gguf";
  ASSERT_EQ(run_cli("convert " + hf + " " + gguf).status, 0);
  expect_cli_error("info " + gguf_variant(gguf, [](KV& kv) { set(kv, "qwen3moe.expert_count", GGUFValue::u32(5)); }),
                   "blk.0.ffn_gate_exps.weight holds 4 experts, qwen3moe.expert_count says 5");
  expect_cli_error("info " + gguf_variant(gguf, [](KV& kv) { set(kv, "qwen3moe.expert_used_count", GGUFValue::u32(9)); }),
                   "qwen3moe.expert_used_count = 9 is out of range [1, 4]");
  expect_cli_error("info " + gguf_variant(gguf, [](KV& kv) {
                     std::erase_if(kv, [](const auto& e) { return e.first == "qwen3moe.expert_count"; });
                   }),
                   "missing metadata qwen3moe.expert_count");
  expect_cli_error("info " + gguf_variant(gguf, [](KV& kv) {
                     set(kv, "lmpress.dense_layers", GGUFValue::array(GGUFType::BOOL, {GGUFValue::boolean(true)}));
                   }),
                   "lmpress.dense_layers should hold a bool per layer (2)");
  expect_cli_error("info " + gguf_variant(gguf, [](KV& kv) {
                     set(kv, "lmpress.dense_layers",
                         GGUFValue::array(GGUFType::BOOL, {GGUFValue::boolean(true), GGUFValue::boolean(false)}));
                   }),
                   "blk.0.ffn_gate.weight");
  expect_cli_error("info " + gguf_variant(gguf, [](KV& kv) {
                     set(kv, "qwen3moe.expert_feed_forward_length", GGUFValue::u32(16));
                   }),
                   "blk.0.ffn_gate_exps.weight has shape [4, 24, 32], the config (qwen3moe.embedding_length 32, "
                   "qwen3moe.expert_feed_forward_length 16) needs [4, 16, 32]");
}

// A mixture with a dense block between sparse ones (Qwen3-MoE's mlp_only_layers) through the tools: quantized,
// expert-pruned and written as an int-N checkpoint, each keeps the dense block and runs.
TEST(ModelChecks, DenseBlocksAmongExpertsThroughTheTools) {
  test::SyntheticSpec spec;
  spec.arch = "Qwen3MoeForCausalLM";
  spec.n_layers = 3, spec.mlp_only_layers = {1};
  const std::string d = test::temp_dir(), hf = test::temp_dir();
  test::write_synthetic_hf(hf, spec);
  const auto blocks = [](const std::string& path) {
    const auto m = load_model(path);
    std::string b;
    for (int64_t l = 0; l < m->cfg.n_layers; l++) b += m->cfg.layer_moe(l) ? 'm' : 'd';
    return b + std::to_string(m->cfg.n_experts);
  };
  EXPECT_EQ(blocks(hf), "mdm4");
  const double base = test::cli_ppl(hf);
  auto r = run_cli("quantize " + hf + " " + d + "/q.gguf --type q8_0");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("llama.cpp cannot load this file"), std::string::npos) << r.out;
  EXPECT_EQ(blocks(d + "/q.gguf"), "mdm4");
  EXPECT_NEAR(test::cli_ppl(d + "/q.gguf"), base, 0.01 * base);
  write(d + "/calib.txt", read_text_file(test::shared_path("data/calib/docs-calib.txt")).substr(0, 20000));
  r = run_cli("prune " + hf + " " + d + "/p.gguf --experts 2 --method reap --calib " + d +
              "/calib.txt --calib-ctx 64 --calib-samples 4");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(blocks(d + "/p.gguf"), "mdm2");
  r = run_cli("quantize " + hf + " " + d + "/ct --type int8-ch --format compressed-tensors");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(blocks(d + "/ct"), "mdm4");
  const auto cfg = nlohmann::json::parse(read_text_file(d + "/ct/config.json"));
  EXPECT_EQ(cfg["mlp_only_layers"], nlohmann::json::array({1}));
  EXPECT_NEAR(test::cli_ppl(d + "/ct"), base, 0.02 * base);
}

// llama.cpp's loader reads 0 as "unset" for some keys, and files its llama_model_saver writes (tests/
// test-llama-archs.cpp) hold every key at 0 that the model does not use: lmpress reads them as llama.cpp does
// (a RoPE scaling factor of 0 is no scaling; a granite residual or embedding scale of 0 is none). Tensors
// llama.cpp applies and lmpress does not (per-tensor output scales, biases on gate/up or the output) are refused by
// name, never skipped. (bench/llama-archs-logits.sh runs llama.cpp's own files of 15 architectures: logits
// within 1e-6 of llama.cpp's, 2.5e-5 for Gemma's f16 GELU table.)
TEST(ModelChecks, LlamaCppZeroKeysAndUnappliedTensors) {
  const std::string text = " -f " + S("data/wikitext-2/wiki.test.raw") + " -c 128 --chunks 4 --json";
  const auto ppl = [&](const std::string& model) {
    auto r = run_cli("perplexity " + model + text);
    EXPECT_EQ(r.status, 0) << r.out;
    return r.status == 0 ? nlohmann::json::parse(r.out)["ppl"].get<double>() : 0.0;
  };
  const double base = ppl(S(kStories));
  EXPECT_EQ(ppl(gguf_variant(S(kStories), [](KV& kv) {
              set(kv, "llama.rope.scaling.type", GGUFValue::str("linear"));
              set(kv, "llama.rope.scaling.factor", GGUFValue::f32(0));
            })),
            base);
  EXPECT_EQ(ppl(gguf_variant(S(kStories), [](KV& kv) {
              for (auto& [k, v] : kv)
                if (k.starts_with("llama.")) k = "granite" + k.substr(5);
              set(kv, "general.architecture", GGUFValue::str("granite"));
              set(kv, "granite.residual_scale", GGUFValue::f32(0));
              set(kv, "granite.embedding_scale", GGUFValue::f32(0));
              set(kv, "granite.logit_scale", GGUFValue::f32(1));
            })),
            base);
  const std::string d = test::temp_dir();
  for (const auto& [name, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"blk.0.attn_q.scale", {1}}, {"output.bias", {512}}, {"blk.1.ffn_up.bias", {768}}}) {
    auto m = load_model(S(kStories));
    int64_t n = 1;
    for (int64_t x : shape) n *= x;
    m->tensors.push_back(make_f32_tensor(name, shape, std::vector<float>(size_t(n), 2.0f)));
    const std::string path = d + "/" + name + ".gguf";
    write_gguf_model(*m, path, {});
    expect_cli_error("info " + path, "tensor " + name + ": ");
  }
}

// An embedding padded past the tokenizer (as llama.cpp allows) never yields a
// token the tokenizer cannot decode: here the padding rows' logits beat every
// real token's, and greedy generation still emits real tokens only. A
// tokenizer with more tokens than embedding rows is refused at load.
TEST(ModelChecks, TokenizerAndEmbeddingSizes) {
  const std::string d = hf_variant([](auto&) {});
  // The tokenizer: the 260 byte and merge tokens, without the two added ones.
  auto tj = nlohmann::json::parse(read_text_file(d + "/tokenizer.json"));
  tj.erase("added_tokens");
  write(d + "/tokenizer.json", tj.dump());
  write(d + "/tokenizer_config.json", R"({"add_bos_token": false})");
  // The head: every real token's logit 0, the padding rows ±v (one of them wins).
  std::vector<TensorToWrite> ts;
  {
    const auto st = SafetensorsFile::open(d + "/model.safetensors");
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    for (const auto& t : st.tensors) {
      auto v = to_f32(t);
      if (t.name == "lm_head.weight") {
        const int64_t dim = t.shape[1];
        std::fill(v.begin(), v.end(), 0.0f);
        for (int64_t i = 0; i < dim; i++) {
          v[size_t(260 * dim + i)] = nd(rng);
          v[size_t(261 * dim + i)] = -v[size_t(260 * dim + i)];
        }
      }
      ts.push_back({make_f32_tensor(t.name, t.shape, v), {}});
    }
  }
  write_safetensors(d + "/model.safetensors", ts);
  auto r = run_cli("generate " + d + " -p hello -n 8 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["tokens"].size(), 8u);
  for (const auto& id : j["tokens"]) EXPECT_LT(id.get<int>(), 260);

  const std::string big = gguf_variant(S(kStories), [](KV& kv) {
    std::vector<std::string> toks;
    std::vector<float> scores;
    std::vector<int32_t> types;
    for (const auto& [k, v] : kv) {
      if (k == "tokenizer.ggml.tokens")
        for (const auto& x : v.as_array()) toks.push_back(x.as_string());
      if (k == "tokenizer.ggml.scores")
        for (const auto& x : v.as_array()) scores.push_back(float(x.as_double()));
      if (k == "tokenizer.ggml.token_type")
        for (const auto& x : v.as_array()) types.push_back(int32_t(x.as_int()));
    }
    for (int i = 0; i < 8; i++) toks.push_back("<extra" + std::to_string(i) + ">"), scores.push_back(0), types.push_back(1);
    set(kv, "tokenizer.ggml.tokens", GGUFValue::str_array(toks));
    set(kv, "tokenizer.ggml.scores", GGUFValue::f32_array(scores));
    set(kv, "tokenizer.ggml.token_type", GGUFValue::i32_array(types));
  });
  expect_cli_error("info " + big, "tokenizer has 520 tokens but the model's vocabulary is 512");
}

// Byte-level BPE without merges would cut every word into bytes, silently.
TEST(ModelChecks, ByteLevelBpeNeedsMerges) {
  const std::string d = hf_variant([](auto&) {});
  const std::string gguf = test::temp_dir() + "/m.gguf";
  ASSERT_EQ(run_cli("convert " + d + " " + gguf).status, 0);
  auto tj = nlohmann::json::parse(read_text_file(d + "/tokenizer.json"));
  tj["model"]["merges"] = nlohmann::json::array();
  write(d + "/tokenizer.json", tj.dump());
  expect_cli_error("info " + d, "tokenizer.json: BPE tokenizer without merges (model.merges is empty)");
  expect_cli_error("info " + gguf_variant(gguf, [](KV& kv) { std::erase_if(kv, [](auto& e) { return e.first == "tokenizer.ggml.merges"; }); }),
                   "byte-level BPE (gpt2) tokenizer without merges (tokenizer.ggml.merges is missing or empty)");
  expect_cli_error("info " + gguf_variant(gguf, [](KV& kv) { set(kv, "tokenizer.ggml.merges", GGUFValue::str_array({})); }),
                   "tokenizer.ggml.merges is missing or empty");
}

// Two tensors' data ranges sharing bytes: the loader names both.
TEST(ModelChecks, OverlappingGgufTensorsAreAnError) {
  std::string bytes = read_text_file(S(kStories));
  const GGUFFile g = GGUFFile::open(S(kStories));
  uint64_t q_off = 0;
  for (const auto& ti : g.tensor_infos)
    if (ti.name == "blk.0.attn_q.weight") q_off = ti.offset;
  // blk.0.attn_k.weight's info: name, n_dims (2), 2 dims, type, then its offset.
  const std::string name = "blk.0.attn_k.weight";
  const size_t at = bytes.find(name);
  ASSERT_NE(at, std::string::npos);
  std::memcpy(bytes.data() + at + name.size() + 4 + 16 + 4, &q_off, 8);
  const std::string path = test::temp_dir() + "/overlap.gguf";
  write(path, bytes);
  const auto r = run_cli("info " + path);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("error: " + path + ": tensors blk.0.attn_k.weight ["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(") and blk.0.attn_q.weight ["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(") overlap in the data section"), std::string::npos) << r.out;
}

// Generation that fills the context says so: a note on stderr, "stopped" in JSON.
TEST(ModelChecks, GenerationStoppedByTheContextSaysSo) {
  const std::string m = S(kStories);
  auto r = run_cli("generate " + m + " -p \"Once upon a time\" -n 1000000 --ctx 32 --ignore-eos");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("note: generation stopped after"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("the context of 32 tokens is full"), std::string::npos) << r.out;
  r = run_cli("generate " + m + " -p \"Once upon a time\" -n 1000000 --ctx 32 --ignore-eos --json");
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["stopped"], "context");
  EXPECT_EQ(j["n_prompt"].get<int>() + j["n_generated"].get<int>(), 32);
  r = run_cli("generate " + m + " -p \"Once upon a time\" -n 4 --ignore-eos --json");
  EXPECT_EQ(nlohmann::json::parse(r.out)["stopped"], "length");
  r = run_cli("generate " + m + " -p \"Once upon a time\" -n 4 --ignore-eos");
  EXPECT_EQ(r.out.find("note:"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace lmpress
