// `lmpress finetune` end to end on lmp-8m: distillation of a 2:4-pruned copy
// towards the original (its zeros kept, the held-out perplexity and the KL
// divergence to the teacher lowered), and bad input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "core/mapped_file.h"
#include "kernels/to_f32.h"
#include "model/model.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::expect_cli_error;
using test::run_cli;

std::string S(const std::string& rel) { return test::shared_path(rel); }

double kld(const std::string& base, const std::string& cand, const std::string& text) {
  auto r = run_cli("kld " + base + " " + cand + " -f " + text + " -c 64 --chunks 8 --json");
  EXPECT_EQ(r.status, 0) << r.out;
  return nlohmann::json::parse(r.out)["kld"]["value"].get<double>();
}

// 12 steps of distillation from lmp-8m on docs-calib.txt (held-out PPL on 6 windows of it); the report.
nlohmann::json distill(const std::string& student, const std::string& out, const std::string& lr) {
  const std::string text = S("data/calib/docs-calib.txt");
  auto r = run_cli("finetune " + student + " " + out + " --teacher " + S("models/lmp-8m") + " --loss kl --data " + text +
                   " --eval " + text + " --eval-windows 6 --steps 12 --batch 4 --ctx 64 --lr " + lr + " --warmup 2 --json");
  EXPECT_EQ(r.status, 0) << r.out;
  return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

TEST(FinetuneCli, DistillsAPrunedModelKeepingItsZeros) {
  const std::string d = test::temp_dir();
  const std::string text = S("data/calib/docs-calib.txt");
  const std::string model = S("models/lmp-8m");
  ASSERT_EQ(run_cli("prune " + model + " " + d + "/sp.gguf --method magnitude --nm 2:4").status, 0);
  const auto j = distill(d + "/sp.gguf", d + "/kd.gguf", "3e-4");
  ASSERT_TRUE(j.contains("points"));
  EXPECT_EQ(j["points"].size(), 12u);
  EXPECT_EQ(j["tokens"].get<int64_t>(), 12 * 4 * 63);
  EXPECT_LT(j["eval_ppl_after"].get<double>(), j["eval_ppl_before"].get<double>());
  // Half of every block linear is frozen at zero, and stays so in the file written.
  EXPECT_EQ(j["frozen_zeros"].get<int64_t>() * 2, 6 * (2 * 288 * 288 + 2 * 96 * 288 + 3 * 288 * 768));
  auto before = load_model(d + "/sp.gguf"), after = load_model(d + "/kd.gguf");
  int64_t moved = 0;
  for (const auto& t : before->tensors) {
    if (t.name.rfind("blk.", 0) != 0 || t.shape.size() != 2) continue;
    const auto a = to_f32(t), b = to_f32(after->tensor(t.name));
    for (size_t i = 0; i < a.size(); i++) {
      if (a[i] == 0.0f) {
        ASSERT_EQ(b[i], 0.0f) << t.name << " element " << i;
      }
      moved += a[i] != b[i];
    }
  }
  EXPECT_GT(moved, 0);
  // What the distillation optimizes, measured by kld on the same text.
  EXPECT_LT(kld(model, d + "/kd.gguf", text), kld(model, d + "/sp.gguf", text));
  // --dense lets the zeros train.
  auto r = run_cli("finetune " + d + "/sp.gguf " + d + "/dense.gguf --data " + text +
              " --steps 1 --batch 2 --ctx 32 --dense --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["frozen_zeros"].get<int64_t>(), 0);
}

// lmp-8m upcycled into a sparse mixture (8 neuron-slice experts, 2 per token: a worse model than the dense
// one), then distilled from the dense model: the router and the experts train, the held-out perplexity and the
// KL divergence to the teacher fall, and the file written is the same mixture.
TEST(FinetuneCli, UpcycledMixtureOfExpertsTrainsByDistillation) {
  const std::string d = test::temp_dir();
  const std::string text = S("data/calib/docs-calib.txt");
  const std::string model = S("models/lmp-8m");
  ASSERT_EQ(run_cli("convert " + model + " " + d + "/moe.gguf --split-experts 8 --experts-used 2").status, 0);
  const auto j = distill(d + "/moe.gguf", d + "/kd.gguf", "5e-4");
  ASSERT_TRUE(j.contains("eval_ppl_after"));
  EXPECT_LT(j["eval_ppl_after"].get<double>(), j["eval_ppl_before"].get<double>());
  auto before = load_model(d + "/moe.gguf"), after = load_model(d + "/kd.gguf");
  EXPECT_EQ(after->cfg.n_experts, 8);
  EXPECT_EQ(after->cfg.n_experts_used, 2);
  for (const std::string name : {"blk.2.ffn_gate_inp.weight", "blk.2.ffn_down.5.weight", "blk.0.ffn_gate.1.weight"}) {
    const auto a = to_f32(before->tensor(name)), b = to_f32(after->tensor(name));
    int64_t moved = 0;
    for (size_t i = 0; i < a.size(); i++) moved += a[i] != b[i];
    EXPECT_GT(moved, int64_t(a.size() / 2)) << name;
  }
  EXPECT_LT(kld(model, d + "/kd.gguf", text), kld(model, d + "/moe.gguf", text));
  // LoRA on a mixture adapts attention (the router and experts stay frozen); PEFT's target_modules is then a regex
  // it full-matches, so that no expert's projection is wrapped by a name suffix.
  auto r = run_cli("finetune " + d + "/moe.gguf " + d + "/peft --lora r=4 --data " + text + " --steps 1 --batch 2 --ctx 32");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto cfg = nlohmann::json::parse(read_text_file(d + "/peft/adapter_config.json"));
  ASSERT_TRUE(cfg["target_modules"].is_string()) << cfg.dump();
  const std::regex targets(cfg["target_modules"].get<std::string>());
  EXPECT_TRUE(std::regex_match("model.layers.5.self_attn.o_proj", targets));
  EXPECT_FALSE(std::regex_match("model.layers.5.block_sparse_moe.experts.1.w2", targets));
  EXPECT_FALSE(std::regex_match("model.layers.5.self_attn.o_proj.x", targets));
  expect_cli_error("convert " + model + " " + d + "/x.gguf --split-experts 4 --experts-used 5",
                   "--experts-used 5: at most the 4 experts of --split-experts");
}

TEST(FinetuneCli, BadInputIsAClearErrorAndWritesNothing) {
  const std::string d = test::temp_dir();
  const std::string model = S("models/lmp-8m"), text = S("data/calib/docs-calib.txt");
  const std::string out = d + "/o.gguf";
  {
    std::ofstream(d + "/short.txt") << "too short";
  }
  const std::string base = "finetune " + model + " " + out + " ";
  expect_cli_error(base + "--data " + d + "/short.txt --ctx 64", "too short");
  expect_cli_error(base + "--data " + text + " --loss kl", "--teacher");
  expect_cli_error(base + "--data " + text + " --loss mix:2 --teacher " + model, "mix:A takes A in [0, 1]");
  expect_cli_error(base + "--data " + text + " --loss hinge", "expected ce, kl, rkl or mix:A");
  expect_cli_error(base + "--data " + text + " --steps 0", "--steps must be at least 1");
  expect_cli_error(base + "--data " + text + " --ctx 4096", "exceeds");
  expect_cli_error(base + "--data " + text + " --lr -1", "--lr must be a positive number");
  expect_cli_error(base + "--data " + text + " --teacher " + model, "--teacher is used by --loss kl");
  expect_cli_error(base + "--data " + text + " --loss kl --teacher " + S("models/stories260K/stories260K.gguf"),
                   "vocabulary");
  expect_cli_error("finetune " + model + " " + model + "/model.safetensors --data " + text, "error:");
  expect_cli_error(base + "--data " + text + " --eval-every 5", "--eval-every sets how --eval TEXT is scored");
  expect_cli_error(base + "--data " + text + " --lora r=2 --dense", "--dense trains a pruned model's zeros");
  expect_cli_error(base + "--data " + text + " --checkpoint " + out, "is the output too");
  expect_cli_error(base + "--data " + text + " --batch 1000000 --ctx 256", "one step's activations take");
  expect_cli_error(base + "--data " + text + " --warmup -1", "--warmup must be at least 0");
  EXPECT_FALSE(std::filesystem::exists(out));
  // A factorized model (lowrank): its weights are not trained (that would write the dense products); adapters are.
  ASSERT_EQ(run_cli("lowrank " + model + " " + d + "/lr.gguf --method svd --ratio 0.3").status, 0);
  expect_cli_error("finetune " + d + "/lr.gguf " + out + " --data " + text, "would multiply its factors back");
  auto lora = run_cli("finetune " + d + "/lr.gguf " + d + "/ad.gguf --lora r=2,alpha=4 --steps 1 --batch 1 --ctx 32 --data " + text);
  EXPECT_EQ(lora.status, 0) << lora.out;
  // An architecture the trainer does not run yet.
  const std::string g = d + "/gemma";
  ASSERT_EQ(run_cli("make-model " + g + ".gguf --shape gemma3-1b --layers 1 --vocab 512").status, 0);
  expect_cli_error("finetune " + g + ".gguf " + out + " --data " + text, "training does not support post-norms");
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace lmpress

namespace lmpress {
namespace {

// tests/data/lmp-8m-q4_0-lora-r4.gguf: `lmpress finetune` (QLoRA r=4, alpha 8, q/k/v/o, 150 steps on docs-calib's
// first 90%) on `lmpress quantize lmp-8m --type q4_0`. llama.cpp loads it:
//   llama-perplexity -m q4_0.gguf --lora lmp-8m-q4_0-lora-r4.gguf -f wiki.test.raw -c 256 --chunks 20  -> 255.0647
//   (without --lora: 250.0871)
TEST(FinetuneCli, QloraAdapterGivesLlamaCppsPerplexity) {
  const std::string d = test::temp_dir();
  ASSERT_EQ(run_cli("quantize " + S("models/lmp-8m") + " " + d + "/q4.gguf --type q4_0").status, 0);
  const std::string adapter = std::string(LMPRESS_SOURCE_DIR) + "/tests/data/lmp-8m-q4_0-lora-r4.gguf";
  const std::string ppl_args = " -f " + S("data/wikitext-2/wiki.test.raw") + " -c 256 --chunks 20 --json";
  auto ppl = [&](const std::string& extra) {
    auto r = run_cli("perplexity " + d + "/q4.gguf" + ppl_args + extra);
    EXPECT_EQ(r.status, 0) << r.out;
    return nlohmann::json::parse(r.out)["ppl"].get<double>();
  };
  EXPECT_NEAR(ppl(""), 250.0871, 250.0871 * 0.005);
  EXPECT_NEAR(ppl(" --lora " + adapter), 255.0647, 255.0647 * 0.005);
  // Half the adapter's scale lands between the two.
  const double half = ppl(" --lora " + adapter + ":0.5");
  EXPECT_GT(half, 250.2);
  EXPECT_LT(half, 254.9);
}

TEST(FinetuneCli, LoraTrainsAdaptersAndWritesEveryForm) {
  const std::string d = test::temp_dir();
  const std::string text = S("data/calib/docs-calib.txt");
  ASSERT_EQ(run_cli("quantize " + S("models/lmp-8m") + " " + d + "/q4.gguf --type q4_0").status, 0);
  const std::string base = "finetune " + d + "/q4.gguf ";
  const std::string train = " --data " + text + " --steps 3 --batch 2 --ctx 64 --lr 1e-3 --lora r=2,targets=v,down --json";
  auto r = run_cli(base + d + "/a.gguf" + train);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["trained_params"].get<int64_t>(), 6 * (2 * 288 + 96 * 2 + 2 * 768 + 288 * 2));
  ASSERT_EQ(run_cli(base + d + "/peft" + train).status, 0);
  EXPECT_TRUE(std::filesystem::exists(d + "/peft/adapter_config.json"));
  EXPECT_TRUE(std::filesystem::exists(d + "/peft/adapter_model.safetensors"));
  ASSERT_EQ(run_cli(base + d + "/merged.gguf" + train + " --merge").status, 0);
  // The same seed and data: the adapter file, the PEFT directory and the merged model compute the same.
  const std::string ppl = " -f " + text + " -c 64 --chunks 4 --json";
  auto p = [&](const std::string& args) {
    auto q = run_cli("perplexity " + args + ppl);
    EXPECT_EQ(q.status, 0) << q.out;
    return nlohmann::json::parse(q.out)["ppl"].get<double>();
  };
  const double merged = p(d + "/merged.gguf");
  EXPECT_NEAR(p(d + "/q4.gguf --lora " + d + "/a.gguf"), merged, merged * 2e-3);
  EXPECT_NEAR(p(d + "/q4.gguf --lora " + d + "/peft"), merged, merged * 2e-3);
  EXPECT_EQ(run_cli("generate " + d + "/q4.gguf --lora " + d + "/a.gguf -p Hello -n 4").status, 0);
  // Bad input.
  expect_cli_error(base + d + "/x.gguf --data " + text + " --merge", "--merge merges LoRA adapters");
  expect_cli_error(base + d + "/x.gguf --data " + text + " --lora r=200,targets=k", "larger than blk.0.attn_k.weight");
  expect_cli_error(base + d + "/x --data " + text + " --format peft", "--format peft writes LoRA adapters");
  expect_cli_error(base + d + "/x.gguf --data " + text + " --lora r=2 --dtype f16", "adapters are written in f32");
  expect_cli_error("perplexity " + d + "/q4.gguf --lora " + d + "/q4.gguf" + ppl, "not a LoRA adapter");
  EXPECT_FALSE(std::filesystem::exists(d + "/x.gguf"));
}

}  // namespace
}  // namespace lmpress

namespace lmpress {
namespace {

TEST(FinetuneCli, QatWritesTheFileTypeItTrainedFor) {
  const std::string d = test::temp_dir();
  const std::string text = S("data/calib/docs-calib.txt"), model = S("models/lmp-8m");
  auto r = run_cli("finetune " + model + " " + d + "/q.gguf --qat q4_0 --teacher " + model +
                   " --loss kl --data " + text + " --steps 2 --batch 2 --ctx 64 --lr 1e-4 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  // Every block linear and the output matrix (Q6_K's fallback for 288-wide rows is Q8_0 in llama.cpp's mix).
  EXPECT_GE(j["qat"]["weights"].get<int64_t>(), 6 * (2 * 288 * 288 + 2 * 96 * 288 + 3 * 288 * 768));
  auto m = load_model(d + "/q.gguf");
  EXPECT_EQ(m->tensor("blk.0.attn_q.weight").dtype, DType::Q4_0);
  EXPECT_EQ(m->tensor("blk.5.ffn_down.weight").dtype, DType::Q4_0);
  expect_cli_error("finetune " + model + " " + d + "/x.gguf --qat q4_0 --lora r=2 --data " + text, "not with --lora");
  expect_cli_error("finetune " + model + " " + d + "/x --qat q4_0 --data " + text, "writes OUT as a GGUF file");
  expect_cli_error("finetune " + model + " " + d + "/x.gguf --qat q9_9 --data " + text, "not a llama.cpp file type");
  expect_cli_error("finetune " + model + " " + d + "/x.gguf --qat iq2_xs --data " + text, "needs an importance matrix");
  EXPECT_FALSE(std::filesystem::exists(d + "/x.gguf"));
}

// Learned scales (LSQ) and int-N formats: the checkpoint directory a GPU engine loads, trained on its own grid.
TEST(FinetuneCli, QatLearnsScalesAndWritesIntNCheckpoints) {
  const std::string d = test::temp_dir();
  const std::string text = S("data/calib/docs-calib.txt"), model = S("models/lmp-8m");
  const std::string train = " --teacher " + model + " --loss kl --data " + text + " --steps 2 --batch 2 --ctx 64 --lr 1e-4 --json";
  auto r = run_cli("finetune " + model + " " + d + "/ct --qat int4-g32 --qat-learn-scales --format compressed-tensors" + train);
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["qat"]["weights"].get<int64_t>(), 6 * (2 * 288 * 288 + 2 * 96 * 288 + 3 * 288 * 768));
  EXPECT_EQ(j["qat"]["learned_scale_weights"], j["qat"]["weights"]);
  EXPECT_EQ(j["format"], "compressed-tensors");
  std::ifstream cfg(d + "/ct/config.json");
  EXPECT_EQ(nlohmann::json::parse(cfg)["quantization_config"]["quant_method"], "compressed-tensors");
  auto p = run_cli("perplexity " + d + "/ct -f " + text + " -c 64 --chunks 4 --json");
  ASSERT_EQ(p.status, 0) << p.out;
  EXPECT_LT(nlohmann::json::parse(p.out)["ppl"].get<double>(), 100.0);
  // Q4_0's blocks (and the head's Q8_0 fallback) have one f16 scale each: all learned.
  r = run_cli("finetune " + model + " " + d + "/q.gguf --qat q4_0 --qat-learn-scales" + train);
  ASSERT_EQ(r.status, 0) << r.out;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["qat"]["learned_scale_weights"], j["qat"]["weights"]);
  EXPECT_EQ(load_model(d + "/q.gguf")->tensor("blk.0.attn_q.weight").dtype, DType::Q4_0);
  const std::string base = "finetune " + model + " " + d + "/x";
  expect_cli_error(base + ".gguf --qat-learn-scales --data " + text, "it needs --qat TYPE");
  expect_cli_error("finetune " + S("models/lmp-8m-w256") + " " + d + "/x.gguf --qat q2_k --qat-learn-scales --data " + text,
                   "has scales to learn");
  expect_cli_error(base + " --qat q4_0 --format gptq --data " + text, "int-N checkpoint layout");
  expect_cli_error(base + ".gguf --qat int4-g128 --data " + text, "int-N checkpoint directory");
  expect_cli_error(base + " --qat int4-g100 --data " + text, "groups of 100");
  EXPECT_FALSE(std::filesystem::exists(d + "/x.gguf"));
  EXPECT_FALSE(std::filesystem::exists(d + "/x"));
}

}  // namespace
}  // namespace lmpress

namespace lmpress {
namespace {

// GQA uptraining: lmp-8m's 2 key/value heads pooled into 1 (MQA), then distilled back towards the original.
TEST(FinetuneCli, PooledKeyValueHeadsUptrainByDistillation) {
  const std::string d = test::temp_dir();
  const std::string text = S("data/calib/docs-calib.txt"), model = S("models/lmp-8m");
  ASSERT_EQ(run_cli("convert " + model + " " + d + "/mqa.gguf --kv-heads 1").status, 0);
  auto orig = load_model(model), mqa = load_model(d + "/mqa.gguf");
  EXPECT_EQ(mqa->cfg.n_kv_heads, 1);
  for (const char* name : {"blk.0.attn_k.weight", "blk.5.attn_v.weight"}) {
    const auto a = to_f32(orig->tensor(name)), b = to_f32(mqa->tensor(name));
    ASSERT_EQ(b.size() * 2, a.size()) << name;
    // Row r of the pooled head: the mean of row r of the two heads (in the same RoPE pairing: v's rows are
    // not permuted; k's are the same permutation in both heads).
    if (std::string(name).find("attn_v") != std::string::npos) {
      for (size_t i = 0; i < b.size(); i++) ASSERT_NEAR(b[i], 0.5f * (a[i] + a[i + b.size()]), 1e-6f) << name << " " << i;
    }
  }
  auto r = run_cli("finetune " + d + "/mqa.gguf " + d + "/up.gguf --teacher " + model + " --loss kl --data " + text +
                   " --steps 10 --batch 4 --ctx 64 --lr 1e-3 --warmup 2");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_LT(kld(model, d + "/up.gguf", text), kld(model, d + "/mqa.gguf", text));
  expect_cli_error("convert " + model + " " + d + "/x.gguf --kv-heads 3", "divides the model's 2 key/value heads");
}

}  // namespace
}  // namespace lmpress

namespace lmpress {
namespace {

// Data-free distillation: the teacher writes the training text; a quantized student's rounding zeros train.
TEST(FinetuneCli, TeacherWrittenTextTrainsAQuantizedStudent) {
  const std::string d = test::temp_dir();
  const std::string model = S("models/lmp-8m");
  ASSERT_EQ(run_cli("quantize " + model + " " + d + "/q4.gguf --type q4_0").status, 0);
  auto r = run_cli("finetune " + d + "/q4.gguf " + d + "/s.gguf --teacher " + model +
                   " --loss kl --data generate:3,temp=0.9 --steps 2 --batch 2 --ctx 48 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["frozen_zeros"].get<int64_t>(), 0);  // Q4_0's zeros are rounding, not pruning
  std::ifstream f(d + "/s.gguf.generated.txt");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_GT(text.size(), 100u);
  // Reused as a file.
  EXPECT_EQ(run_cli("finetune " + d + "/q4.gguf " + d + "/t.gguf --data " + d + "/s.gguf.generated.txt --steps 1 --batch 2 --ctx 48").status, 0);
  expect_cli_error("finetune " + d + "/q4.gguf " + d + "/x.gguf --data generate:3", "the teacher writes the text");
  expect_cli_error("finetune " + d + "/q4.gguf " + d + "/x.gguf --teacher " + model + " --loss kl --data generate:x",
                   "N is not a number");
  expect_cli_error("finetune " + d + "/q4.gguf " + d + "/x.gguf --teacher " + model + " --loss kl --data generate:2,temp=0",
                   "temp must be in (0, 10]");
}

}  // namespace
}  // namespace lmpress

namespace lmpress {
namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Saved teacher logits: a run that saves them and a run that reads them
// (no teacher model loaded) write the same bytes; with k covering the whole
// vocabulary they train as the live teacher does.
TEST(FinetuneCli, SavedTeacherLogitsTrainAsTheTeacherDoes) {
  const std::string d = test::temp_dir();
  const std::string model = S("models/lmp-8m"), text = d + "/text.txt";
  {
    const std::string all = file_bytes(S("data/calib/docs-calib.txt"));
    std::ofstream(text) << all.substr(0, 40000);
  }
  const std::string common = " --loss kl --data " + text + " --steps 3 --batch 2 --ctx 48 --lr 1e-4 --json";
  auto a = run_cli("finetune " + model + " " + d + "/a.gguf --teacher " + model + " --save-teacher-logits " + d +
                   "/t.kld --teacher-top-k 16" + common);
  ASSERT_EQ(a.status, 0) << a.out;
  auto b = run_cli("finetune " + model + " " + d + "/b.gguf --teacher-logits " + d + "/t.kld --checkpoint " + d +
                   "/ck" + common);
  ASSERT_EQ(b.status, 0) << b.out;
  EXPECT_EQ(file_bytes(d + "/a.gguf"), file_bytes(d + "/b.gguf"));
  // A checkpoint trained on one file of logits does not resume on another.
  ASSERT_EQ(run_cli("finetune " + model + " " + d + "/c.gguf --teacher " + model + " --save-teacher-logits " + d +
                    "/t8.kld --teacher-top-k 8" + common)
                .status,
            0);
  expect_cli_error("finetune " + model + " " + d + "/c2.gguf --teacher-logits " + d + "/t8.kld --resume " + d + "/ck" +
                       common,
                   "teacher_logits");
  // `kld` reads the file too: lmp-8m against its own saved logits.
  auto k = run_cli("kld " + model + " --base-logits " + d + "/t.kld --json");
  ASSERT_EQ(k.status, 0) << k.out;
  EXPECT_LT(nlohmann::json::parse(k.out)["kld"]["value"].get<double>(), 1e-4);

  // stories260K (512 tokens): k = 512 keeps every logit, so the losses are the live teacher's.
  const std::string small = S("models/stories260K/stories260K.gguf");
  const std::string tiny = " --loss rkl --data " + text + " --steps 3 --batch 2 --ctx 32 --lr 1e-3 --json";
  auto live = run_cli("finetune " + small + " " + d + "/l.gguf --teacher " + small + tiny);
  auto saved = run_cli("finetune " + small + " " + d + "/s.gguf --teacher " + small + " --save-teacher-logits " + d +
                       "/s.kld --teacher-top-k 512" + tiny);
  ASSERT_EQ(live.status, 0) << live.out;
  ASSERT_EQ(saved.status, 0) << saved.out;
  const auto jl = nlohmann::json::parse(live.out), js = nlohmann::json::parse(saved.out);
  for (size_t i = 1; i < 3; i++) {  // step 1's loss is KL(p ‖ p) = 0
    const double x = jl["points"][i]["loss"].get<double>(), y = js["points"][i]["loss"].get<double>();
    EXPECT_GT(x, 1e-6);
    EXPECT_NEAR(y, x, 1e-3 * x) << "step " << i + 1;
  }

  // Bad input: nothing written.
  const std::string out = d + "/x.gguf", base = "finetune " + model + " " + out + " --loss kl --data " + text;
  expect_cli_error(base + " --teacher-logits " + d + "/t.kld --ctx 64", "saved for");
  {
    std::ofstream(d + "/other.txt") << file_bytes(text).substr(100);
  }
  expect_cli_error("finetune " + model + " " + out + " --loss kl --data " + d + "/other.txt --ctx 48 --teacher-logits " +
                       d + "/t.kld",
                   "holds other tokens");
  expect_cli_error(base + " --ctx 48 --teacher " + model + " --teacher-logits " + d + "/t.kld", "give one of them");
  expect_cli_error(base + " --save-teacher-logits " + d + "/y.kld", "needs --teacher MODEL");
  expect_cli_error(base + " --teacher " + model + " --teacher-top-k 8", "needs --save-teacher-logits");
  expect_cli_error("finetune " + model + " " + out + " --data " + text + " --teacher-logits " + d + "/t.kld",
                   "are for --loss kl, rkl or mix:A");
  expect_cli_error("finetune " + small + " " + out + " --loss kl --ctx 48 --data " + text + " --teacher-logits " + d +
                       "/t.kld",
                   "vocabularies differ");
  const std::string t = file_bytes(d + "/t.kld");
  {
    std::ofstream(d + "/cut.kld", std::ios::binary) << t.substr(0, t.size() - 4);
  }
  expect_cli_error(base + " --ctx 48 --teacher-logits " + d + "/cut.kld", "truncated or corrupt");
  {
    std::string bad = t;
    const size_t rec = t.size() - 8 * 16 - 8;  // the last record: lse, next, ids[16], logits[16]
    std::memcpy(&bad[rec + 8 + 4], &bad[rec + 8], 4);  // a repeated id
    std::ofstream(d + "/dup.kld", std::ios::binary) << bad;
  }
  expect_cli_error(base + " --ctx 48 --teacher-logits " + d + "/dup.kld", "corrupt kld base");
  {
    std::string bad = t;
    const size_t rec = t.size() - 8 * 16 - 8;
    std::memcpy(&bad[rec], &bad[rec + 8 + 4 * 16], 4);  // log-sum-exp = the top logit: the top 16 hold more than 1
    std::ofstream(d + "/mass.kld", std::ios::binary) << bad;
  }
  expect_cli_error(base + " --ctx 48 --teacher-logits " + d + "/mass.kld", "hold probability");
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_FALSE(std::filesystem::exists(d + "/y.kld"));
}

}  // namespace
}  // namespace lmpress

namespace lmpress {
namespace {

// A loss that stops being finite (a learning rate of 1e30, no clipping: the weights overflow after step 1) stops
// the run with an error naming the step, nothing written, the last checkpoint (step 1) as it was.
TEST(FinetuneCli, NonFiniteLossStopsKeepingTheLastCheckpoint) {
  const std::string d = test::temp_dir();
  const std::string model = S("models/stories260K/stories260K.gguf"), text = S("data/calib/docs-calib.txt");
  expect_cli_error("finetune " + model + " " + d + "/o.gguf --data " + text +
                       " --steps 4 --batch 2 --ctx 32 --lr 1e30 --clip 0 --checkpoint " + d + "/ck --save-every 1",
                   "the loss is not finite at step 2");
  EXPECT_FALSE(std::filesystem::exists(d + "/o.gguf"));
  std::ifstream state(d + "/ck/state.json");
  ASSERT_TRUE(state.good());
  EXPECT_EQ(nlohmann::json::parse(state)["step"].get<int64_t>(), 1);
}

}  // namespace
}  // namespace lmpress
