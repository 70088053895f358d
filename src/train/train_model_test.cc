// The trainer's forward against the inference forward, its whole-model
// gradients against finite differences (double precision), and training a
// tiny model to a task's known optimum.
#include "train/train_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "kernels/blocks.h"
#include "kernels/to_f32.h"
#include "model/forward.h"
#include "quant/quantize.h"
#include "synthetic_model.h"
#include "test_util.h"
#include "train/finetune.h"
#include "train/optimizer.h"
#include "compress/quantize_model.h"

namespace lmpress::train {
namespace {

std::unique_ptr<Model> synthetic(const std::string& arch, bool tied, unsigned seed) {
  const std::string dir = test::temp_dir();
  test::SyntheticSpec spec;
  spec.arch = arch;
  spec.tied = tied;
  spec.seed = seed;
  test::write_synthetic_hf(dir, spec);
  return load_model(dir);
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng() % uint32_t(vocab));
  return t;
}

// The trainer's logits equal InferenceState's for each sequence of a batch.
void expect_inference_logits(const Model& m, int64_t B, int64_t n, double tol) {
  TrainModel<float> tm(m);
  const auto tokens = random_tokens(B * n, m.cfg.n_vocab, 3);
  const int64_t V = m.cfg.n_vocab;
  std::vector<float> got(size_t(B * n * V)), want(size_t(n * V));
  tm.logits(tokens.data(), B, n, got.data());
  InferenceState st(m, n, n, KvType::F32);
  double worst = 0;
  for (int64_t b = 0; b < B; b++) {
    st.reset();
    st.eval(tokens.data() + b * n, n, want.data(), true);
    for (int64_t i = 0; i < n * V; i++) worst = std::max(worst, double(std::abs(want[size_t(i)] - got[size_t(b * n * V + i)])));
  }
  EXPECT_LT(worst, tol) << m.path;
}

TEST(TrainModel, ForwardEqualsInference) {
  expect_inference_logits(*synthetic("LlamaForCausalLM", false, 1), 2, 9, 1e-4);
  expect_inference_logits(*synthetic("LlamaForCausalLM", true, 2), 2, 9, 1e-4);
  expect_inference_logits(*synthetic("Qwen2ForCausalLM", false, 3), 3, 7, 1e-4);
  expect_inference_logits(*synthetic("Qwen3ForCausalLM", false, 31), 2, 7, 1e-4);  // q/k norms per head
  // Mixtures of experts: renormalized top-2 of 4; Qwen2-MoE's unnormalized top-3 of 5 with the gated shared
  // expert; DeepSeekMoE's dense first block and ungated shared experts.
  expect_inference_logits(*synthetic("MixtralForCausalLM", false, 33), 2, 9, 1e-4);
  expect_inference_logits(*synthetic("Qwen2MoeForCausalLM", false, 34), 2, 9, 1e-4);
  expect_inference_logits(*synthetic("Qwen3MoeForCausalLM", true, 35), 2, 9, 1e-4);
  expect_inference_logits(*synthetic("DeepseekForCausalLM", false, 36), 2, 9, 1e-4);
  // A GGUF file pairs RoPE dimensions the other way.
  if (test::have_shared("models/lmp-8m/lmp-8m-f32.gguf"))
    expect_inference_logits(*load_model(test::shared_path("models/lmp-8m/lmp-8m-f32.gguf")), 2, 40, 2e-3);
}

// (f(w + h·e_i) − f(w − h·e_i)) / 2h for parameter element i.
double central_difference(TrainModel<double>& tm, size_t i, const std::function<double()>& f) {
  const double keep = tm.w[i], h = 1e-5;
  tm.w[i] = keep + h;
  const double up = f();
  tm.w[i] = keep - h;
  const double down = f();
  tm.w[i] = keep;
  return (up - down) / (2 * h);
}

// Every gradient of the summed loss of a 2-layer model against central
// differences, a few elements of each parameter.
void check_model_gradients(const Model& m, const Loss& loss) {
  TrainModel<double> tm(m);
  const int64_t B = 2, n = 6, V = m.cfg.n_vocab;
  const auto tokens = random_tokens(B * n, V, 5), targets = random_tokens(B * n, V, 6);
  std::vector<float> teacher(size_t(B * n * V));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (auto& x : teacher) x = nd(rng);
  TrainModel<double>::TeacherFn teach = [&](int64_t b) { return TeacherLogits(teacher.data() + b * n * V); };
  std::fill(tm.grad.begin(), tm.grad.end(), 0.0);
  tm.step(tokens.data(), targets.data(), B, n, loss, teach, 1.0, nullptr);
  const std::vector<double> grad = tm.grad;
  auto f = [&] {
    std::vector<double> scratch = tm.grad;
    const double l = tm.step(tokens.data(), targets.data(), B, n, loss, teach, 0.0, nullptr);
    tm.grad = scratch;
    return l;
  };
  std::mt19937 pick(11);
  for (const auto& p : tm.params()) {
    for (int k = 0; k < 6; k++) {
      size_t i = p.offset + size_t(pick() % uint32_t(p.size()));
      if (p.name == "token_embd.weight") i = p.offset + size_t(tokens[size_t(k)]) * size_t(p.cols) + size_t(k);
      const double fd = central_difference(tm, i, f);
      ASSERT_NEAR(grad[i], fd, 1e-6 * std::max(1.0, std::abs(fd))) << p.name << " element " << i - p.offset;
    }
  }
}

TEST(TrainModel, GradientsMatchFiniteDifferences) {
  Loss kl, mix;
  kl.kind = Loss::KL;
  mix.kind = Loss::Mix, mix.ce_weight = 0.25;
  check_model_gradients(*synthetic("LlamaForCausalLM", false, 4), Loss{});
  check_model_gradients(*synthetic("LlamaForCausalLM", true, 5), kl);
  check_model_gradients(*synthetic("Qwen2ForCausalLM", false, 6), mix);
  check_model_gradients(*synthetic("Qwen3ForCausalLM", true, 32), kl);
}

// The router's gradient reaches it through the chosen experts' weights (the choice held fixed), the experts'
// through the rows routed to them; the shared expert and its sigmoid gate as any dense path.
TEST(TrainModel, MixtureOfExpertsGradientsMatchFiniteDifferences) {
  Loss kl;
  kl.kind = Loss::KL;
  check_model_gradients(*synthetic("MixtralForCausalLM", false, 37), Loss{});
  check_model_gradients(*synthetic("Qwen2MoeForCausalLM", false, 38), kl);
  check_model_gradients(*synthetic("Qwen3MoeForCausalLM", true, 39), Loss{});
  check_model_gradients(*synthetic("DeepseekForCausalLM", false, 40), kl);
}

TEST(TrainModel, RefusesWhatItCannotTrain) {
  test::expect_error([] { TrainModel<float> tm(*synthetic("Gemma2ForCausalLM", false, 7)); }, "post-norms");
  test::expect_error([] { TrainModel<float> tm(*synthetic("OlmoeForCausalLM", false, 8)); }, "OLMoE");
  test::expect_error([] { TrainModel<float> tm(*synthetic("GptOssForCausalLM", false, 8)); }, "gpt-oss");
}

// A copy task: K symbols drawn at random, then the same again. The first
// half's next tokens are unpredictable (ln K each), the second half's
// determined, so the optimum mean loss over the 2m − 1 predictions is
// (m − 1)·ln K / (2m − 1).
TEST(TrainModel, LearnsACopyTaskToItsOptimum) {
  auto m = synthetic("LlamaForCausalLM", false, 9);
  TrainModel<float> tm(*m);
  const int64_t K = 8, half = 8, len = 2 * half, B = 16;
  std::mt19937 rng(12);
  auto batch = [&](std::vector<int32_t>& in, std::vector<int32_t>& tg) {
    in.clear(), tg.clear();
    for (int64_t b = 0; b < B; b++) {
      std::vector<int32_t> s(static_cast<size_t>(half));
      for (auto& x : s) x = int32_t(3 + rng() % K);
      s.insert(s.end(), s.begin(), s.end());
      in.insert(in.end(), s.begin(), s.end() - 1);
      tg.insert(tg.end(), s.begin() + 1, s.end());
    }
  };
  AdamWOptions o;
  o.lr = 1e-2, o.warmup = 20, o.steps = 400, o.clip = 1.0;
  AdamW<float> opt(o, std::vector<uint8_t>(tm.w.size(), 0));
  std::vector<int32_t> in, tg;
  const int64_t n = len - 1;
  for (int64_t s = 0; s < o.steps; s++) {
    batch(in, tg);
    std::fill(tm.grad.begin(), tm.grad.end(), 0.0f);
    tm.step(in.data(), tg.data(), B, n, Loss{}, nullptr, 1.0 / double(B * n), nullptr);
    opt.update(tm.w, tm.grad, nullptr);
  }
  batch(in, tg);
  const double loss = tm.eval_ce(in.data(), tg.data(), B, n) / double(B * n);
  const double optimum = double(half - 1) * std::log(double(K)) / double(n);
  EXPECT_GT(loss, optimum - 0.05);  // no model does better than the optimum (on fresh data)
  EXPECT_LT(loss, optimum + 0.08) << "optimum " << optimum;
}

}  // namespace
}  // namespace lmpress::train

namespace lmpress::train {
namespace {

// Random values into every lora_b (they start at zero, which would leave A's gradients zero).
template <class T>
void randomize_b(TrainModel<T>& tm, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 0.3);
  for (const auto& p : tm.params())
    if (p.name.find(".lora_b") != std::string::npos)
      for (int64_t i = 0; i < p.size(); i++) tm.w[p.offset + size_t(i)] = T(nd(rng));
}

TEST(TrainLora, AdapterGradientsMatchFiniteDifferences) {
  auto m = synthetic("Qwen2ForCausalLM", false, 21);
  LoraSpec lora = parse_lora("r=2,alpha=3,targets=q,v,o,down");
  TrainModel<double> tm(*m, lora);
  randomize_b(tm, 3);
  const int64_t B = 2, n = 5, V = m->cfg.n_vocab;
  const auto tokens = random_tokens(B * n, V, 8), targets = random_tokens(B * n, V, 9);
  tm.step(tokens.data(), targets.data(), B, n, Loss{}, nullptr, 1.0, nullptr);
  const auto grad = tm.grad;
  auto f = [&] {
    auto keep = tm.grad;
    const double l = tm.eval_ce(tokens.data(), targets.data(), B, n);
    tm.grad = keep;
    return l;
  };
  int adapters = 0;
  std::mt19937 pick(4);
  for (const auto& p : tm.params()) {
    if (!p.trainable) {
      for (int64_t i = 0; i < p.size(); i++) ASSERT_EQ(grad[p.offset + size_t(i)], 0.0) << p.name;
      continue;
    }
    adapters++;
    for (int k = 0; k < 4; k++) {
      const size_t i = p.offset + size_t(pick() % uint32_t(p.size()));
      ASSERT_NEAR(grad[i], central_difference(tm, i, f), 1e-6 * std::max(1.0, std::abs(grad[i]))) << p.name;
    }
  }
  EXPECT_EQ(adapters, 2 * 4 * 2);  // a and b of 4 targets in 2 layers
}

TEST(TrainLora, ForwardEqualsTheMergedModel) {
  for (const char* arch : {"LlamaForCausalLM", "Qwen2ForCausalLM"}) {
    auto m = synthetic(arch, true, 22);
    TrainModel<float> tm(*m, parse_lora("r=3,targets=all"));
    randomize_b(tm, 5);
    const int64_t B = 2, n = 7, V = m->cfg.n_vocab;
    const auto tokens = random_tokens(B * n, V, 10);
    std::vector<float> with_adapters(size_t(B * n * V)), merged(size_t(B * n * V));
    tm.logits(tokens.data(), B, n, with_adapters.data());
    tm.store(*m);  // merged: W + alpha/r · B·A
    TrainModel<float> full(*m);
    full.logits(tokens.data(), B, n, merged.data());
    for (size_t i = 0; i < merged.size(); i++) ASSERT_NEAR(with_adapters[i], merged[i], 2e-4) << arch << " " << i;
  }
}

TEST(TrainLora, ParsesAndRefusesSpecs) {
  const LoraSpec a = parse_lora("r=16,alpha=32,targets=qkvo,mlp");
  EXPECT_EQ(a.rank, 16);
  EXPECT_DOUBLE_EQ(a.scale(), 2.0);
  EXPECT_EQ(a.targets, (std::vector<std::string>{"q", "k", "v", "o", "gate", "up", "down"}));
  const LoraSpec b = parse_lora("r=4,targets=v,q");
  EXPECT_DOUBLE_EQ(b.alpha, 8.0);
  EXPECT_EQ(b.targets, (std::vector<std::string>{"q", "v"}));
  test::expect_error([] { parse_lora("r=0"); }, "r must be a whole number");
  test::expect_error([] { parse_lora("alpha=3"); }, "r=N");
  test::expect_error([] { parse_lora("r=4,targets=lm_head"); }, "target 'lm_head'");
  test::expect_error([] { parse_lora("r=4,dropout=0.1"); }, "unknown key 'dropout'");
  test::expect_error([] { parse_lora("r=x"); }, "not a number");
  auto m = synthetic("LlamaForCausalLM", false, 23);
  test::expect_error([&] { TrainModel<float> tm(*m, parse_lora("r=64,targets=k")); }, "larger than blk.0.attn_k.weight");
}

}  // namespace
}  // namespace lmpress::train

namespace lmpress::train {
namespace {

// QAT's straight-through estimator: the loss and every gradient of a model
// trained fake-quantized equal those of the model whose weights are the
// rounded values (the gradient reaching each rounded weight goes to its master).
TEST(TrainQat, StraightThroughEqualsTheRoundedModel) {
  const std::string dir = test::temp_dir();
  test::SyntheticSpec spec;
  spec.ffn = 64;  // whole Q4_0 blocks of 32 in every row
  test::write_synthetic_hf(dir, spec);
  auto m = load_model(dir), rounded = load_model(dir);
  std::map<std::string, DType> types;
  for (const auto& t : m->tensors)
    if (t.name.rfind("blk.", 0) == 0 && t.shape.size() == 2) types[t.name] = DType::Q4_0;
  types["output.weight"] = DType::Q8_0;
  for (const auto& [name, type] : types) {
    const auto f = to_f32(m->tensor(name));
    const int64_t cols = m->tensor(name).cols(), rows = int64_t(f.size()) / cols;
    std::vector<uint8_t> q(size_t(rows * int64_t(row_bytes(type, uint64_t(cols)))));
    std::vector<float> back(f.size());
    for (int64_t r = 0; r < rows; r++) {
      uint8_t* qr = q.data() + r * int64_t(row_bytes(type, uint64_t(cols)));
      quantize_row(type, f.data() + r * cols, cols, qr);
      dequantize_row(type, qr, cols, back.data() + r * cols);
    }
    rounded->set_f32(name, back);
  }
  rounded->bind();
  TrainModel<double> qat(*m), ref(*rounded);
  std::map<std::string, QatFormat> formats;
  for (const auto& [name, type] : types) formats[name].type = type;
  int64_t covered = qat.set_fake_quant(formats);
  int64_t expect = 0;
  for (const auto& [name, type] : types) expect += m->tensor(name).numel();
  EXPECT_EQ(covered, expect);
  const int64_t B = 2, n = 6, V = m->cfg.n_vocab;
  const auto tokens = random_tokens(B * n, V, 30), targets = random_tokens(B * n, V, 31);
  const double a = qat.step(tokens.data(), targets.data(), B, n, Loss{}, nullptr, 1.0, nullptr);
  const double b = ref.step(tokens.data(), targets.data(), B, n, Loss{}, nullptr, 1.0, nullptr);
  EXPECT_NEAR(a, b, 1e-9 * std::abs(b));
  for (size_t i = 0; i < qat.grad.size(); i++) ASSERT_NEAR(qat.grad[i], ref.grad[i], 1e-9 * std::max(1.0, std::abs(ref.grad[i]))) << i;
  // The masters themselves are not rounded.
  EXPECT_NE(qat.w, ref.w);
  test::expect_error([&] { TrainModel<float> l(*m, parse_lora("r=2")); l.set_fake_quant(formats); }, "not with LoRA");
}

// Learned scales: after the scales move, the file written on them (GGUF
// Q4_0/Q8_0 blocks, or an int-N GPTQ checkpoint, whose embeddings and head QAT
// rounds to f16 as the checkpoint stores them) holds exactly the values the
// trainer computed with: a trainer on the loaded file, without QAT, gives the
// same logits.
TEST(TrainQat, LearnedScalesWriteTheValuesTheyTrained) {
  for (const std::string spec : {"q4_0", "int4-g32-asym"}) {
    SCOPED_TRACE(spec);
    const std::string dir = test::temp_dir();
    test::SyntheticSpec syn;
    syn.ffn = 64;
    test::write_synthetic_hf(dir, syn);
    auto m = load_model(dir);
    TrainModel<float> tm(*m);
    const auto formats = qat_formats(*m, spec);
    const int64_t covered = tm.set_fake_quant(formats, true);
    EXPECT_GT(tm.learned_scale_weights(), 0);
    EXPECT_LE(tm.learned_scale_weights(), covered);
    // Move every scale (and offset) away from round to nearest's, as training would.
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> u(0.8f, 1.1f);
    int64_t n_scales = 0;
    for (const auto& p : tm.params())
      if (!p.model_weight)
        for (int64_t i = 0; i < p.size(); i++) tm.w[p.offset + size_t(i)] *= u(rng), n_scales++;
    EXPECT_GT(n_scales, 0);
    const int64_t B = 1, n = 5, V = m->cfg.n_vocab;
    const auto tokens = random_tokens(B * n, V, 12);
    std::vector<float> got(size_t(B * n * V)), want(got.size());
    tm.logits(tokens.data(), B, n, got.data());
    const auto enc = tm.encode_fake_quant();
    tm.store(*m);
    QuantizeOptions q;
    const std::string out = dir + (spec == "q4_0" ? "/q.gguf" : "/int");
    if (spec == "q4_0") {
      q.mix.preset = *find_preset(spec);
      q.encoded = enc.blocks;
    } else {
      QuantizeRequest req;
      req.type = spec;
      q = quantize_options(req, out);
      q.encoded_int = enc.ints;
    }
    quantize_model(*m, out, q);
    auto written = load_model(out);
    TrainModel<float> ref(*written);
    ref.logits(tokens.data(), B, n, want.data());
    double worst = 0;
    for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, double(std::abs(got[i] - want[i])));
    EXPECT_LT(worst, 1e-5);
    // A scale-gradient step: clamped weights get none, the scales some.
    std::fill(tm.grad.begin(), tm.grad.end(), 0.0f);
    const auto targets = random_tokens(B * n, V, 13);
    tm.step(tokens.data(), targets.data(), B, n, Loss{}, nullptr, 1.0, nullptr);
    tm.fake_quant_backward();
    double scale_grad = 0;
    for (const auto& p : tm.params())
      if (!p.model_weight)
        for (int64_t i = 0; i < p.size(); i++) scale_grad += std::abs(tm.grad[p.offset + size_t(i)]);
    EXPECT_GT(scale_grad, 0);
  }
}

}  // namespace
}  // namespace lmpress::train
