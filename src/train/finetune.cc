#include "train/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <atomic>
#include <omp.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "compress/calibration.h"
#include "compress/mix.h"
#include "core/mapped_file.h"
#include "core/parse.h"
#include "core/progress.h"
#include "eval/kld_base.h"
#include "model/forward.h"
#include "runtime/generate.h"
#include "train/checkpoint.h"

namespace lmpress::train {

std::optional<GeneratedData> parse_generated_data(const std::string& data) {
  if (data.rfind("generate:", 0) != 0) return std::nullopt;
  GeneratedData g;
  const std::string spec = data.substr(9);
  auto number = [&](const std::string& v, const char* what) {
    const auto x = parse_double(v);
    if (!x) fail("--data {}: {} is not a number ('{}')", data, what, v);
    return *x;
  };
  const size_t comma = spec.find(',');
  const double n = number(spec.substr(0, comma), "N");
  if (n < 1 || n != std::floor(n) || n > 1e7) fail("--data {}: N must be a whole number of sequences of at least 1", data);
  g.sequences = int64_t(n);
  if (comma != std::string::npos) {
    const std::string opt = spec.substr(comma + 1);
    if (opt.rfind("temp=", 0) != 0) fail("--data {}: expected generate:N[,temp=T]", data);
    g.temperature = number(opt.substr(5), "temp");
    if (!(g.temperature > 0) || g.temperature > 10) fail("--data {}: temp must be in (0, 10]", data);
  }
  return g;
}

std::string teacher_text(const Model& teacher, const GeneratedData& g, int64_t ctx, uint64_t seed) {
  std::string text;
  for (int64_t i = 0; i < g.sequences; i++) {
    GenerateOptions opt;
    opt.n_predict = ctx;
    opt.n_ctx = ctx + 1;
    opt.stop_at_eos = true;
    opt.sampling.temperature = float(g.temperature);
    opt.sampling.top_k = 0, opt.sampling.top_p = 1.0f, opt.sampling.min_p = 0.0f;  // the teacher's own distribution
    opt.sampling.seed = seed + uint64_t(i);
    std::string seq;
    generate(teacher, "", opt, [&](const std::string& piece) { seq += piece; });
    if (!text.empty()) text += "\n\n";
    text += seq;
  }
  return text;
}

std::map<std::string, QatFormat> qat_formats(const Model& m, const std::string& spec) {
  std::map<std::string, QatFormat> formats;
  if (const auto ig = parse_int_group_type(spec)) {
    for (int64_t l = 0; l < m.cfg.n_layers; l++)
      for (LinearSite site : kLinearSites)
        for (const auto& w : linear_names(m.cfg, l, site)) {
          const Tensor& t = m.tensor(w);
          ig->check_shape(w, t.rows(), t.cols());
          formats[w].int_group = *ig;
        }
    // The checkpoint keeps the other matrices (embeddings, head) in f16.
    for (const auto& t : m.tensors)
      if (t.shape.size() == 2 && !formats.count(t.name)) formats[t.name].type = DType::F16;
    return formats;
  }
  const auto preset = find_preset(spec);
  if (!preset) fail("--qat {}: not a llama.cpp file type ({}) or an int-N group format (int4-g128)", spec, preset_names());
  MixOptions mix;
  mix.preset = *preset;
  for (const auto& [name, t] : plan_tensor_types(m, mix)) {
    if (requires_imatrix(name, t, mix))
      fail("--qat {}: {} as {} needs an importance matrix (as in llama-quantize); QAT rounds to nearest", spec, name,
           dtype_name(t));
    formats[name].type = t;
  }
  return formats;
}

Loss parse_loss(const std::string& s) {
  Loss l;
  if (s == "ce") return l;
  if (s == "kl") return l.kind = Loss::KL, l;
  if (s == "rkl") return l.kind = Loss::RKL, l;
  if (s.rfind("mix:", 0) == 0) {
    l.kind = Loss::Mix;
    const auto a = parse_double(s.substr(4));
    l.ce_weight = a.value_or(-1.0);
    if (!a || !(l.ce_weight >= 0 && l.ce_weight <= 1))
      fail("--loss {}: mix:A takes A in [0, 1] (the cross-entropy's weight)", s);
    return l;
  }
  fail("--loss {}: expected ce, kl, rkl or mix:A", s);
}

namespace {

// Windows of ctx tokens from a text file: BOS (when the model uses one) and
// ctx − 1 (or ctx) tokens, back to back; at most `limit` (−1: all).
std::vector<std::vector<int32_t>> text_windows(const Model& m, const std::string& file, int64_t ctx, int64_t limit,
                                               const char* what) {
  const std::string text = read_text_file(file);
  const auto tokens = m.tokenizer->encode(text, false, false);
  const int32_t bos = m.tokenizer->vocab().bos;
  const bool add_bos = bos >= 0 && m.tokenizer->vocab().add_bos;
  const int64_t body = add_bos ? ctx - 1 : ctx;
  std::vector<std::vector<int32_t>> out;
  for (size_t s = 0; s + size_t(body) <= tokens.size() && (limit < 0 || int64_t(out.size()) < limit); s += size_t(body)) {
    std::vector<int32_t> w;
    if (add_bos) w.push_back(bos);
    w.insert(w.end(), tokens.begin() + std::ptrdiff_t(s), tokens.begin() + std::ptrdiff_t(s) + body);
    out.push_back(std::move(w));
  }
  if (out.empty())
    fail("{}: the {} text is too short: {} tokens, one window of --ctx {} needs {}", file, what, tokens.size(), ctx,
         body);
  return out;
}

// Zeros of block linears stored as floats that hold at least 1% zeros: a
// pruned model's mask (a quantized type's zeros are rounding's, not pruning's).
std::vector<uint8_t> sparsity_mask(const Model& m, const TrainModel<float>& tm, int64_t& frozen) {
  std::vector<uint8_t> mask(tm.w.size(), 0);
  frozen = 0;
  for (const auto& p : tm.params()) {
    if (p.rows == 1 || !p.model_weight || p.name.rfind("blk.", 0) != 0 || !is_float_type(m.tensor(p.name).dtype))
      continue;
    const auto* w = tm.w.data() + p.offset;
    const int64_t zeros = std::count(w, w + p.size(), 0.0f);
    if (zeros * 100 < p.size()) continue;
    for (int64_t i = 0; i < p.size(); i++)
      if (w[i] == 0.0f) mask[p.offset + size_t(i)] = 1, frozen++;
  }
  return mask;
}

// Weight decay for matrices, not for norms, biases, QAT scales or the embedding table.
std::vector<uint8_t> decay_mask(const TrainModel<float>& tm) {
  std::vector<uint8_t> d(tm.w.size(), 0);
  for (const auto& p : tm.params())
    if (p.rows > 1 && p.model_weight && p.name != "token_embd.weight")
      std::fill(d.begin() + std::ptrdiff_t(p.offset), d.begin() + std::ptrdiff_t(p.offset) + p.size(), 1);
  return d;
}

// Splits windows into inputs (all but the last token) and targets (all but the first).
void inputs_and_targets(const std::vector<const std::vector<int32_t>*>& ws, std::vector<int32_t>& in,
                        std::vector<int32_t>& tg) {
  in.clear(), tg.clear();
  for (const auto* w : ws) {
    in.insert(in.end(), w->begin(), w->end() - 1);
    tg.insert(tg.end(), w->begin() + 1, w->end());
  }
}

double eval_ppl(TrainModel<float>& tm, const std::vector<std::vector<int32_t>>& windows, int64_t batch) {
  if (windows.empty()) return 0;
  std::vector<int32_t> in, tg;
  double ce = 0;
  int64_t count = 0;
  for (size_t i = 0; i < windows.size(); i += size_t(batch)) {
    std::vector<const std::vector<int32_t>*> ws;
    for (size_t j = i; j < std::min(windows.size(), i + size_t(batch)); j++) ws.push_back(&windows[j]);
    inputs_and_targets(ws, in, tg);
    const int64_t n = int64_t(windows[0].size()) - 1;
    ce += tm.eval_ce(in.data(), tg.data(), int64_t(ws.size()), n);
    count += int64_t(ws.size()) * n;
  }
  return std::exp(ce / double(count));
}

void check_teacher(const Model& student, const Model& teacher) {
  const auto& a = student.tokenizer->vocab();
  const auto& b = teacher.tokenizer->vocab();
  if (student.cfg.n_vocab != teacher.cfg.n_vocab || a.tokens != b.tokens)
    fail("--teacher {}: its vocabulary ({} tokens) differs from the student's {} ({} tokens); distillation compares "
         "the two distributions token by token",
         teacher.path, teacher.cfg.n_vocab, student.path, student.cfg.n_vocab);
}

// The teacher's top k logits at every position of every training window,
// written as a saved-logits file (the windows' tokens as they are: no BOS
// put in front; position j predicts token j + 1).
void save_teacher_logits(const Model& teacher, const std::vector<std::vector<int32_t>>& windows, int64_t top_k,
                         const std::string& path) {
  SavedLogitsHeader h;
  h.n_vocab = teacher.cfg.n_vocab, h.n_ctx = int64_t(windows[0].size()), h.n_chunks = int64_t(windows.size());
  h.top_k = std::min(top_k, h.n_vocab), h.first = 0, h.bos = -1, h.vocab_hash = vocab_hash(teacher);
  std::vector<int32_t> tokens;
  for (const auto& w : windows) tokens.insert(tokens.end(), w.begin(), w.end());
  SavedLogitsWriter out(path, h, tokens.data());
  const int64_t n = h.n_ctx - 1, V = h.n_vocab;
  InferenceState st(teacher, h.n_ctx, h.n_ctx, KvType::F32);
  std::vector<float> logits(size_t(n * V));
  Progress progress("teacher logits", uint64_t(windows.size()));
  for (size_t c = 0; c < windows.size(); c++) {
    st.reset();
    st.eval(windows[c].data(), n, logits.data(), true);  // the inputs of the training step: all but the last
    check_finite_logits(teacher, logits.data(), n, V, int64_t(c), 0);
    out.add_window(logits.data(), windows[c].data());
    progress.update(uint64_t(c + 1));
  }
  progress.finish();
  out.commit();
}

// Fails unless the saved file holds the teacher's logits for exactly these windows.
void check_saved_windows(const SavedLogits& s, const std::vector<std::vector<int32_t>>& windows, const Model& student) {
  const SavedLogitsHeader& h = s.header();
  s.check_vocab(student, "--teacher-logits");
  if (h.first != 0 || h.bos != -1 || h.n_ctx != int64_t(windows[0].size()) || h.n_chunks != int64_t(windows.size()))
    fail("--teacher-logits {}: saved for {} windows of {} tokens (scored from position {}), this run trains on {} of {} "
         "(the file must come from finetune --save-teacher-logits with the same --data and --ctx)",
         s.path(), h.n_chunks, h.n_ctx, h.first, windows.size(), windows[0].size());
  std::vector<int32_t> w;
  for (size_t c = 0; c < windows.size(); c++) {
    s.window(int64_t(c), w);
    if (w != windows[c])
      fail("--teacher-logits {}: window {} holds other tokens than this run's training text (the file must come "
           "from finetune --save-teacher-logits with the same --data and --ctx)",
           s.path(), c);
  }
}

// FNV-1a over bytes.
uint64_t fnv(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// What a checkpoint must share with the run resuming it.
// saved: the saved teacher logits trained on (null: a teacher model, or none).
nlohmann::json checkpoint_setup(const TrainModel<float>& tm, const FinetuneOptions& o,
                                const std::vector<std::vector<int32_t>>& windows, const Model* teacher,
                                const SavedLogits* saved) {
  const uint64_t seed = 1469598103934665603ull;
  uint64_t layout = seed, data = seed;
  for (const auto& p : tm.params()) {
    const std::string s = p.name + ":" + std::to_string(p.rows) + "x" + std::to_string(p.cols) + ";";
    layout = fnv(layout, s.data(), s.size());
  }
  for (const auto& w : windows) data = fnv(data, w.data(), w.size() * sizeof(int32_t));
  // The starting weights (the student's, adapters as initialized).
  const uint64_t weights = fnv(seed, tm.w.data(), tm.w.size() * sizeof(float));
  const char* kinds[] = {"ce", "kl", "rkl", "mix"};
  return {{"parameter_layout", fmt::format("{:016x}", layout)},
          {"student_weights", fmt::format("{:016x}", weights)},
          {"training_tokens", fmt::format("{:016x}", data)},
          {"teacher", teacher && !saved ? std::filesystem::path(teacher->path).filename().string() : ""},
          {"teacher_logits", saved ? fmt::format("top {}, {:016x}", saved->header().top_k, saved->content_hash()) : ""},
          {"dense", !o.keep_sparsity},
          {"adamw", {o.adam.beta1, o.adam.beta2, o.adam.eps, o.adam.weight_decay, o.adam.clip, o.adam.warmup,
                     o.adam.min_lr_ratio}},
          {"lora", {o.lora.rank, o.lora.alpha, o.lora.targets}},
          {"qat", o.qat},
          {"qat_learn_scales", o.qat_learn_scales},
          {"loss", {kinds[o.loss.kind], o.loss.ce_weight}},
          {"data_windows", windows.size()},
          {"ctx", o.ctx},
          {"batch", o.batch},
          {"accum", o.accum},
          {"seed", o.seed},
          {"steps", o.steps},
          {"lr", o.adam.lr}};
}

// SIGINT / SIGTERM while training: the run stops after its current step
// (saving a checkpoint when it has a directory for one); the previous
// handlers come back when training ends.
std::atomic<bool> g_stop{false};
// A second signal while the step runs ends the process as the signal would.
extern "C" void request_stop(int sig) {
  if (g_stop.exchange(true)) {
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }
}
class StopOnSignal {
 public:
  StopOnSignal() {
    g_stop = false;
    for (int i = 0; i < 2; i++) {
      struct sigaction sa {};
      sa.sa_handler = request_stop;
      sigemptyset(&sa.sa_mask);
      ::sigaction(kSignals[i], &sa, &old_[i]);
    }
  }
  ~StopOnSignal() {
    for (int i = 0; i < 2; i++) ::sigaction(kSignals[i], &old_[i], nullptr);
  }

 private:
  static constexpr int kSignals[2] = {SIGINT, SIGTERM};
  struct sigaction old_[2] {};
};

}  // namespace

void check_finetune_options(const FinetuneOptions& o, const Model& student, const Model* teacher) {
  if (o.steps < 1) fail("--steps must be at least 1 (got {})", o.steps);
  if (o.batch < 1) fail("--batch must be at least 1 (got {})", o.batch);
  if (o.accum < 1) fail("--accum must be at least 1 (got {})", o.accum);
  if (o.ctx < 2) fail("--ctx must be at least 2 (got {})", o.ctx);
  if (o.ctx > student.cfg.ctx_len)
    fail("--ctx {} exceeds {}'s context of {} positions", o.ctx, student.path, student.cfg.ctx_len);
  if (!(o.adam.lr > 0) || !std::isfinite(o.adam.lr)) fail("--lr must be a positive number (got {})", o.adam.lr);
  if (o.adam.warmup < 0) fail("--warmup must be at least 0 (got {})", o.adam.warmup);
  if (o.save_every < 0) fail("--save-every must be at least 0 (got {})", o.save_every);
  const bool saved = !o.teacher_logits.empty();
  if (saved && teacher) fail("--teacher-logits {} replaces --teacher: give one of them", o.teacher_logits);
  if (saved && !o.save_teacher_logits.empty()) fail("--teacher-logits reads saved logits; --save-teacher-logits writes them");
  if (!o.save_teacher_logits.empty() && !teacher) fail("--save-teacher-logits saves a teacher's logits: it needs --teacher MODEL");
  if (o.teacher_top_k < 1) fail("--teacher-top-k must be at least 1 (got {})", o.teacher_top_k);
  if ((saved || !o.save_teacher_logits.empty()) && !o.loss.needs_teacher())
    fail("--teacher-logits and --save-teacher-logits are for --loss kl, rkl or mix:A");
  if (o.loss.needs_teacher() && !teacher && !saved)
    fail("--loss kl, rkl and mix need --teacher MODEL (or --teacher-logits FILE)");
  if (!student.tokenizer) fail("{}: the model has no tokenizer (training text cannot be read)", student.path);
  check_trainable(student.cfg, student.path);
  // Adapters train on a factorized model as it runs (two matmuls); training its weights would train, and
  // write, the dense products.
  if (o.lora.rank <= 0) refuse_factorized(student, "full fine-tuning (LoRA adapters train on it: --lora)");
  if (teacher) {
    if (!teacher->tokenizer) fail("--teacher {}: the model has no tokenizer", teacher->path);
    check_teacher(student, *teacher);
    if (o.ctx > teacher->cfg.ctx_len)
      fail("--ctx {} exceeds the teacher {}'s context of {} positions", o.ctx, teacher->path, teacher->cfg.ctx_len);
  }
  if (parse_generated_data(o.data)) {
    if (!teacher) fail("--data {}: the teacher writes the text: --teacher MODEL", o.data);
    if (teacher->tokenizer->vocab().bos < 0)
      fail("--data {}: the teacher {} has no BOS token to start its sequences from", o.data, teacher->path);
  }
  // One step's activations: a block's buffers (its attention keeps a log-sum-exp per query and head, and each
  // thread two tiles of scores), the residual streams kept per block, a chunk of logits.
  const ModelConfig& c = student.cfg;
  const double B = double(o.batch), n = double(o.ctx - 1);
  const double floats = B * double(c.n_heads) * n + 2.0 * double(omp_get_max_threads()) * double(kAttentionTile) * n +
                        double(c.n_layers + 1) * B * n * double(c.dim) +
                        B * n * (8.0 * double(c.dim) + 4.0 * double(c.q_dim()) + 4.0 * double(c.kv_dim()) + 6.0 * double(c.ffn_dim)) +
                        double(1 << 22);
  const double phys = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
  if (phys > 0 && floats * 4.0 > 0.8 * phys)
    fail("--batch {} --ctx {}: one step's activations take {:.1f} GiB, more than this machine's {:.1f} GiB allow "
         "(lower --batch or --ctx; --accum keeps the tokens per step)",
         o.batch, o.ctx, floats * 4.0 / double(1 << 30), phys / double(1 << 30));
}

FinetuneReport finetune(const Model& student, const Model* teacher, const FinetuneOptions& o,
                        const std::function<void(const FinetunePoint&)>& on_step,
                        const std::function<void(const TrainModel<float>&)>& done) {
  check_finetune_options(o, student, teacher);
  const auto windows = text_windows(student, o.data, o.ctx, -1, "training");
  if (int64_t(windows.size()) < o.batch)
    fail("{}: the training text holds {} windows of --ctx {}, fewer than one batch of {}", o.data, windows.size(),
         o.ctx, o.batch);
  const auto eval_windows = o.eval.empty() ? std::vector<std::vector<int32_t>>{}
                                           : text_windows(student, o.eval, o.ctx, o.eval_windows, "evaluation");

  TrainModel<float> tm(student, o.lora);
  FinetuneReport rep;
  rep.windows = int64_t(windows.size());
  if (!o.qat.empty()) {
    rep.qat_weights = tm.set_fake_quant(qat_formats(student, o.qat), o.qat_learn_scales);
    rep.qat_learned = tm.learned_scale_weights();
    if (rep.qat_weights == 0) fail("--qat {}: the type quantizes none of {}'s weights", o.qat, student.path);
    if (o.qat_learn_scales && rep.qat_learned == 0)
      fail("--qat-learn-scales: none of --qat {}'s types has scales to learn (one f16 scale per block: q4_0, q5_0, "
           "q8_0, q4_1, q5_1; or an int-N group format)",
           o.qat);
  } else if (o.qat_learn_scales) {
    fail("--qat-learn-scales learns the scales of quantization-aware training: it needs --qat TYPE");
  }
  std::vector<uint8_t> frozen = tm.frozen_mask();
  rep.params = std::count(frozen.begin(), frozen.end(), uint8_t(0));
  if (o.keep_sparsity && o.lora.rank == 0) frozen = sparsity_mask(student, tm, rep.frozen);
  AdamWOptions adam = o.adam;
  adam.steps = o.steps;
  AdamW<float> opt(adam, decay_mask(tm));
  if (rep.qat_learned > 0) opt.lr_factor = tm.lr_factors();
  // The teacher: saved top-k logits (written first with --save-teacher-logits), or the model run on each batch.
  std::unique_ptr<SavedLogits> saved;
  if (!o.save_teacher_logits.empty()) save_teacher_logits(*teacher, windows, o.teacher_top_k, o.save_teacher_logits);
  if (const std::string& path = o.save_teacher_logits.empty() ? o.teacher_logits : o.save_teacher_logits;
      !path.empty()) {
    saved = std::make_unique<SavedLogits>(path);
    check_saved_windows(*saved, windows, student);
  }
  std::unique_ptr<InferenceState> ts;
  if (o.loss.needs_teacher() && !saved) ts = std::make_unique<InferenceState>(*teacher, o.ctx, o.ctx, KvType::F32);
  std::vector<float> teacher_buf, top_buf;
  std::vector<int32_t> ids_buf;

  std::vector<size_t> order(windows.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::mt19937_64 rng(o.seed);
  std::shuffle(order.begin(), order.end(), rng);
  size_t next = 0;
  auto next_window = [&]() -> size_t {
    if (next == order.size()) std::shuffle(order.begin(), order.end(), rng), next = 0;
    return order[next++];
  };
  const nlohmann::json setup = checkpoint_setup(tm, o, windows, teacher, saved.get());
  int64_t first = 0;
  if (!o.resume.empty()) {
    Checkpoint c = load_checkpoint(o.resume, setup, tm.w.size());
    if (c.step > o.steps) fail("--resume {}: the checkpoint is at step {}, past --steps {}", o.resume, c.step, o.steps);
    tm.w = std::move(c.w), opt.m = std::move(c.m), opt.v = std::move(c.v), opt.t_ = c.step;
    // The data order continues where the checkpoint's run was.
    for (int64_t i = 0; i < c.step * o.batch * o.accum; i++) next_window();
    first = rep.resumed_from = c.step;
  }
  auto save = [&](int64_t step) {
    if (!o.checkpoint.empty()) save_checkpoint(o.checkpoint, setup, {step, tm.w, opt.m, opt.v});
  };
  rep.eval_ppl_before = eval_ppl(tm, eval_windows, o.batch);
  const int64_t n = o.ctx - 1;
  std::vector<int32_t> in, tg;
  const auto start = std::chrono::steady_clock::now();
  {
  // Signals stop the run after a step only inside the loop; after it, they end the process as usual.
  StopOnSignal stop_on_signal;
  for (int64_t s = first; s < o.steps; s++) {
    const auto t0 = std::chrono::steady_clock::now();
    std::fill(tm.grad.begin(), tm.grad.end(), 0.0f);
    double loss = 0, ce = 0;
    const double scale = 1.0 / double(o.batch * o.accum * n);
    for (int64_t a = 0; a < o.accum; a++) {
      std::vector<const std::vector<int32_t>*> ws;
      std::vector<size_t> idx;
      for (int64_t b = 0; b < o.batch; b++) idx.push_back(next_window()), ws.push_back(&windows[idx.back()]);
      inputs_and_targets(ws, in, tg);
      TrainModel<float>::TeacherFn teach;
      if (ts)
        teach = [&](int64_t b) {
          teacher_buf.resize(size_t(n * student.cfg.n_vocab));
          ts->reset();
          ts->eval(in.data() + b * n, n, teacher_buf.data(), true);
          return TeacherLogits(teacher_buf.data());
        };
      if (saved)
        teach = [&](int64_t b) {
          const int64_t k = saved->header().top_k;
          ids_buf.resize(size_t(n * k)), top_buf.resize(size_t(n * k)), teacher_buf.resize(size_t(n));
          for (int64_t j = 0; j < n; j++) {
            const SavedLogits::Row r = saved->row(int64_t(idx[size_t(b)]), j);
            std::copy(r.ids, r.ids + k, ids_buf.begin() + j * k);
            std::copy(r.logits, r.logits + k, top_buf.begin() + j * k);
            teacher_buf[size_t(j)] = r.lse;
          }
          return TeacherLogits(ids_buf.data(), top_buf.data(), teacher_buf.data(), k);
        };
      loss += tm.step(in.data(), tg.data(), o.batch, n, o.loss, teach, scale, &ce);
    }
    const double tokens = double(o.batch * o.accum * n);
    if (!std::isfinite(loss))
      fail("finetune: the loss is not finite at step {} (lower --lr); nothing was written", s + 1);
    FinetunePoint p;
    p.step = s + 1;
    p.train_loss = loss / tokens, p.train_ce = ce / tokens;
    p.lr = learning_rate(adam, s);
    if (rep.qat_learned > 0) tm.fake_quant_backward();
    p.grad_norm = opt.update(tm.w, tm.grad, &frozen);
    const auto t1 = std::chrono::steady_clock::now();
    p.seconds = std::chrono::duration<double>(t1 - start).count();
    p.tokens_per_s = tokens / std::chrono::duration<double>(t1 - t0).count();
    rep.tokens += int64_t(tokens);
    if (o.eval_every > 0 && p.step % o.eval_every == 0 && p.step < o.steps) p.eval_ppl = eval_ppl(tm, eval_windows, o.batch);
    rep.points.push_back(p);
    if (on_step) on_step(p);
    if (g_stop) {
      save(p.step);
      fail("finetune stopped by a signal after step {}{}", p.step,
           o.checkpoint.empty() ? "; nothing was written (--checkpoint DIR keeps the progress)"
                                : "; checkpoint saved to " + o.checkpoint + " (--resume " + o.checkpoint + " continues)");
    }
    if (o.save_every > 0 && p.step % o.save_every == 0 && p.step < o.steps) save(p.step);
  }
  }
  save(o.steps);
  rep.steps = o.steps;
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rep.eval_ppl_after = eval_ppl(tm, eval_windows, o.batch);
  if (done) done(tm);
  return rep;
}

}  // namespace lmpress::train
