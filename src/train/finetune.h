// `lmpress finetune`: full fine-tuning of a model's weights (f32 master
// copies of whatever it stores) on text, by cross-entropy or by distillation
// from a teacher model of the same vocabulary (forward KL, reverse KL, or a
// mix with cross-entropy), with AdamW, warmup + cosine, clipping and gradient
// accumulation. A pruned student keeps its zeros.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "model/model.h"
#include "train/grad_ops.h"
#include "train/optimizer.h"
#include "train/train_model.h"

namespace lmpress::train {

struct FinetuneOptions {
  std::string data;  // training text
  std::string eval;  // held-out text for perplexity (empty: none)
  Loss loss;
  // Distillation from saved teacher logits: save_teacher_logits has the
  // teacher write its top teacher_top_k logits at every training position
  // (eval/kld_base.h's file) before training; teacher_logits reads such a
  // file instead of running a teacher. Either way the losses are those of
  // the distributions coarsened to {top k, rest} (grad_ops.h), so a run that
  // saves and a run that reads train alike.
  std::string teacher_logits, save_teacher_logits;
  int64_t teacher_top_k = 64;
  int64_t steps = 100, batch = 8, ctx = 256, accum = 1;
  int64_t eval_every = 0;     // steps between evaluations (0: only before and after)
  int64_t eval_windows = 16;  // windows of ctx tokens from the start of the eval text
  AdamWOptions adam;
  uint32_t seed = 0;
  // Weights that are exactly zero in a block linear stored as floats with at
  // least 1% zeros (a pruned model's) stay zero.
  bool keep_sparsity = true;
  // rank > 0: train LoRA adapters on the frozen model instead of its weights.
  LoraSpec lora;
  // Quantization-aware training for a llama.cpp file type (q2_k, q4_0, ...)
  // or an int-N group format (int4-g128: the blocks' linears): every weight
  // it quantizes is used fake-quantized (RTN, as `lmpress quantize --type`
  // stores it). Empty: none.
  std::string qat;
  // QAT learns the scales of the weights whose type has them (train/qat.h).
  bool qat_learn_scales = false;
  // Resumable training (train/checkpoint.h): written to `checkpoint` every
  // save_every steps (0: at the end only) and when SIGINT/SIGTERM stops the
  // run after its current step; `resume` continues from one (the same setup).
  std::string checkpoint, resume;
  int64_t save_every = 0;
};

// Data-free distillation (LLM-QAT): --data generate:N[,temp=T] has the
// teacher write N sequences of ctx tokens from BOS, sampled at temperature T
// (default 1), to train on. nullopt: `data` names a file.
struct GeneratedData {
  int64_t sequences = 0;
  double temperature = 1.0;
};
std::optional<GeneratedData> parse_generated_data(const std::string& data);
// The teacher's N sequences (seeds seed, seed + 1, ...), joined by blank lines.
std::string teacher_text(const Model& teacher, const GeneratedData& g, int64_t ctx, uint64_t seed);

// The formats --qat SPEC gives m's weights: a llama.cpp file type's mix (its
// types that need an importance matrix refused), or an int-N group format
// for every block linear (as `lmpress quantize --type int4-g128` writes).
std::map<std::string, QatFormat> qat_formats(const Model& m, const std::string& spec);

// Parses --loss: "ce", "kl", "rkl" or "mix:A" (A·CE + (1 − A)·KL, A in [0, 1]).
Loss parse_loss(const std::string& s);

struct FinetunePoint {
  int64_t step = 0;  // steps done
  double train_loss = 0, train_ce = 0;  // mean per token over the step's batch
  double lr = 0, grad_norm = 0;
  double tokens_per_s = 0, seconds = 0;
  double eval_ppl = 0;  // when evaluated at this step (0 otherwise)
};

struct FinetuneReport {
  int64_t steps = 0, tokens = 0, windows = 0, frozen = 0, params = 0;
  int64_t qat_weights = 0;  // weights trained fake-quantized
  int64_t qat_learned = 0;  // of them, those with learned scales
  int64_t resumed_from = 0;  // the step a --resume checkpoint had reached
  double seconds = 0, eval_ppl_before = 0, eval_ppl_after = 0;
  std::vector<FinetunePoint> points;  // one per step
};

// Fails naming the option when FinetuneOptions cannot run on these models
// (ranges, context, tokenizers, the teacher's vocabulary, memory for one
// step); finetune() calls it first, the CLI before it generates any text.
// teacher: the model (null with teacher_logits or a CE loss).
void check_finetune_options(const FinetuneOptions& o, const Model& student, const Model* teacher);

// Trains a copy of `student`'s weights (or adapters on it) and hands the
// trained model to `done` (which writes it: TrainModel::store into the
// student, or its adapter()). teacher: the distillation losses' teacher (null
// for CE). on_step: called after each step (progress); may be empty.
FinetuneReport finetune(const Model& student, const Model* teacher, const FinetuneOptions& o,
                        const std::function<void(const FinetunePoint&)>& on_step,
                        const std::function<void(const TrainModel<float>&)>& done);

}  // namespace lmpress::train
