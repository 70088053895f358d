// lmpress finetune STUDENT OUT --data TEXT [--teacher MODEL --loss kl|rkl|mix:A]: training (train/finetune.h).
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "compress/convert.h"
#include "compress/quantize_model.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "kernels/matmul.h"
#include "model/lora.h"
#include "model/repack.h"
#include "train/finetune.h"
#include "train/train_model.h"

namespace lmpress::cli {

void add_finetune(CLI::App& app) {
  struct Opts {
    std::string in, out, teacher, loss = "ce", dtype, format, lora;
    train::FinetuneOptions ft;
    bool dense = false, merge = false, json = false, no_finite_check = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "finetune", "Train a model's weights on text: cross-entropy, or distillation from a teacher (recovery after "
                  "pruning or quantization)");
  add_path_option(cmd, "student", o->in, "Model to train (any format lmpress loads; its weights become f32)",
                  PathRole::Model)->required();
  add_path_option(cmd, "output", o->out,
                  "Output: a .gguf file, or a directory (Hugging Face layout; PEFT for --lora); with --lora, the "
                  "adapter (llama.cpp's GGUF LoRA file or a PEFT directory) unless --merge",
                  PathRole::Output, OutputKind::Either)->required();
  cmd->add_option("--data", o->ft.data,
                  "Training text, or generate:N[,temp=T]: N sequences of --ctx tokens the teacher writes (data-free "
                  "distillation; saved as OUT.generated.txt for reuse)")
      ->required();
  // A file named by --data is an input; generated text an output beside OUT.
  add_derived_paths(cmd, "--data", PathRole::Input, [o] {
    return train::parse_generated_data(o->ft.data) ? std::vector<std::string>{} : std::vector<std::string>{o->ft.data};
  });
  add_derived_paths(cmd, "--data", PathRole::Output, [o] {
    return train::parse_generated_data(o->ft.data) ? std::vector<std::string>{o->out + ".generated.txt"}
                                                   : std::vector<std::string>{};
  });
  add_path_option(cmd, "--eval", o->ft.eval, "Held-out text: perplexity before, after and every --eval-every steps",
                  PathRole::Input);
  add_path_option(cmd, "--teacher", o->teacher, "Teacher model for distillation (same vocabulary)", PathRole::Model);
  add_path_option(cmd, "--save-teacher-logits", o->ft.save_teacher_logits,
                  "Run the teacher once over the training windows and save its top --teacher-top-k logits at every "
                  "position here (kld --save-base's format), then distill from them",
                  PathRole::Output);
  add_path_option(cmd, "--teacher-logits", o->ft.teacher_logits,
                  "Distill from a --save-teacher-logits file instead of a teacher model (the same --data and --ctx)",
                  PathRole::Input);
  cmd->add_option("--teacher-top-k", o->ft.teacher_top_k,
                  "Logits per position --save-teacher-logits keeps (the rest of the vocabulary is one bin)")
      ->capture_default_str();
  cmd->add_option("--loss", o->loss,
                  "ce (next token), kl (forward KL to the teacher), rkl (reverse KL, MiniLLM), mix:A (A·CE + (1−A)·KL)")
      ->capture_default_str();
  cmd->add_option("--steps", o->ft.steps, "Optimizer steps")->capture_default_str();
  cmd->add_option("--batch", o->ft.batch, "Windows per micro-batch")->capture_default_str();
  cmd->add_option("--accum", o->ft.accum, "Micro-batches per step (gradient accumulation)")->capture_default_str();
  cmd->add_option("--ctx", o->ft.ctx, "Tokens per window")->capture_default_str();
  cmd->add_option("--lr", o->ft.adam.lr, "Peak learning rate (AdamW)")->capture_default_str();
  cmd->add_option("--warmup", o->ft.adam.warmup, "Steps of linear warmup; cosine decay after")->capture_default_str();
  cmd->add_option("--min-lr", o->ft.adam.min_lr_ratio, "Final learning rate as a fraction of --lr")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--weight-decay", o->ft.adam.weight_decay, "AdamW's decoupled weight decay (matrices only)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--clip", o->ft.adam.clip, "Clip the gradient's global norm to this (0: no clipping)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--eval-every", o->ft.eval_every, "Steps between evaluations (0: before and after only)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--eval-windows", o->ft.eval_windows, "Windows of --eval text to score")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--seed", o->ft.seed, "Seed of the data order")->capture_default_str();
  cmd->add_option("--lora", o->lora,
                  "Train LoRA adapters instead of the weights, which stay frozen in their stored type (QLoRA on a "
                  "quantized file): r=N[,alpha=A][,targets=q,k,v,o,gate,up,down|qkvo|mlp|all] (alpha 2·r, all "
                  "linears by default)");
  cmd->add_option("--qat", o->ft.qat,
                  "Quantization-aware training for a llama.cpp file type (q2_k, q3_k_m, q4_0, ...) or an int-N group "
                  "format (int4-g128, int3-g64-asym, ...): the weights it quantizes train fake-quantized "
                  "(straight-through), and OUT is written in that type (a .gguf file; int-N: a checkpoint directory, "
                  "--format gptq, awq or compressed-tensors)");
  cmd->add_flag("--qat-learn-scales", o->ft.qat_learn_scales,
                "With --qat: learn the scales (LSQ) of the weights whose type has one f16 scale per block (q4_0, q5_0, "
                "q8_0; q4_1 and q5_1 with their offsets) or per int-N group; the file is written on them");
  add_path_option(cmd, "--checkpoint", o->ft.checkpoint,
                  "Directory for a resumable checkpoint (weights, AdamW state, step), written every --save-every "
                  "steps, at the end, and when Ctrl-C / SIGTERM stops the run",
                  PathRole::Output, OutputKind::Directory, "state.json");
  cmd->add_option("--save-every", o->ft.save_every, "Steps between checkpoints (0: at the end and on a signal only)")
      ->check(CLI::NonNegativeNumber);
  add_path_option(cmd, "--resume", o->ft.resume,
                  "Continue from a --checkpoint directory written by the same setup (save the continuation to "
                  "another --checkpoint)",
                  PathRole::Input);
  cmd->add_flag("--merge", o->merge, "With --lora: write the model with the adapters merged into its weights");
  cmd->add_flag("--dense", o->dense, "Let a pruned model's zeros train too (default: they stay zero)");
  cmd->add_option("--dtype", o->dtype, "Type of the written weight matrices (default: f32, the trained values)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}));
  cmd->add_option("--format", o->format,
                  "Output format: gguf, hf, or peft (an adapter; default: gguf if OUT ends in .gguf, else hf, or "
                  "peft for an adapter)")
      ->check(CLI::IsMember({"gguf", "hf", "peft", "gptq", "awq", "compressed-tensors"}));
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  add_threads_option(cmd, o->threads);
  add_finite_check_flag(cmd, o->no_finite_check);
  on_run(cmd, [o, cmd] {
    set_num_threads(o->threads);
    o->ft.loss = train::parse_loss(o->loss);
    o->ft.keep_sparsity = !o->dense;
    if (!o->lora.empty()) o->ft.lora = train::parse_lora(o->lora);
    const bool adapter_out = !o->lora.empty() && !o->merge;
    if (o->merge && o->lora.empty()) fail("--merge merges LoRA adapters: it needs --lora");
    const std::string format = !o->format.empty()      ? o->format
                               : o->out.ends_with(".gguf") ? "gguf"
                               : adapter_out               ? "peft"
                                                           : "hf";
    if (format == "peft" && !adapter_out) fail("--format peft writes LoRA adapters: it needs --lora (without --merge)");
    if (format == "hf" && adapter_out) fail("an adapter is written as gguf or peft (--format), not hf");
    if (adapter_out && !o->dtype.empty()) fail("--dtype sets the type of a model's weights; adapters are written in f32");
    if (o->ft.save_every > 0 && o->ft.checkpoint.empty()) fail("--save-every needs --checkpoint DIR");
    if (o->ft.eval.empty())
      for (const char* opt : {"--eval-every", "--eval-windows"})
        if (cmd->count(opt) > 0) fail("{} sets how --eval TEXT is scored: it needs --eval", opt);
    if (o->dense && !o->lora.empty()) fail("--dense trains a pruned model's zeros; with --lora the weights are frozen");
    if (!o->ft.checkpoint.empty() && std::filesystem::path(o->ft.checkpoint).lexically_normal() ==
                                         std::filesystem::path(o->out).lexically_normal())
      fail("--checkpoint {} is the output too: give them different paths", o->ft.checkpoint);
    if (!o->ft.qat.empty() && !o->lora.empty()) fail("--qat trains the weights themselves: not with --lora");
    const bool qat_int = parse_int_group_type(o->ft.qat).has_value();
    const bool checkpoint_format = format == "gptq" || format == "awq" || format == "compressed-tensors";
    if (checkpoint_format && !qat_int)
      fail("--format {} is an int-N checkpoint layout: it needs --qat with an int-N group format (int4-g128)", format);
    if (qat_int && (format == "gguf" || !o->dtype.empty()))
      fail("--qat {} writes OUT as an int-N checkpoint directory (--format gptq, awq or compressed-tensors; no --dtype)",
           o->ft.qat);
    if (!o->ft.qat.empty() && !qat_int && (format != "gguf" || !o->dtype.empty()))
      fail("--qat {} writes OUT as a GGUF file of that type (OUT ends in .gguf; no --dtype or --format hf)", o->ft.qat);
    // QAT's output options, checked before any training (an int-N layout's bit widths, the output path).
    QuantizeOptions qat_out;
    const std::string int_layout = format == "hf" ? "gptq" : format;  // the Hugging Face layout of int-N weights: GPTQ's
    if (qat_int) {
      QuantizeRequest req;
      req.type = o->ft.qat;
      req.format = int_layout;
      qat_out = quantize_options(req, o->out);
    } else if (!o->ft.qat.empty()) {
      if (const auto preset = find_preset(o->ft.qat)) qat_out.mix.preset = *preset;  // else finetune() names it
    }
    if (!o->ft.loss.needs_teacher() && !o->teacher.empty())
      fail("--teacher is used by --loss kl, rkl or mix:A (got --loss {})", o->loss);
    if (cmd->count("--teacher-top-k") > 0 && o->ft.save_teacher_logits.empty())
      fail("--teacher-top-k sets what --save-teacher-logits keeps: it needs --save-teacher-logits");
    auto m = load_for_compression(o->in, "", o->no_finite_check);
    // Adapters train on the frozen weights through the inference kernels' layouts.
    if (o->ft.lora.rank > 0) repack_for_inference(*m);
    std::unique_ptr<Model> teacher;
    if (!o->teacher.empty()) teacher = load_for_inference(o->teacher);
    train::check_finetune_options(o->ft, *m, teacher.get());
    if (const auto g = train::parse_generated_data(o->ft.data)) {
      const std::string path = o->out + ".generated.txt";
      write_file_atomic(path, train::teacher_text(*teacher, *g, o->ft.ctx, o->ft.seed));
      if (!o->json) fmt::print("wrote {} ({} sequences by the teacher)\n", path, g->sequences), std::fflush(stdout);
      o->ft.data = path;
    }
    Progress progress("finetune", uint64_t(o->ft.steps));
    std::string fmt_written = format;
    auto on_step = [&](const train::FinetunePoint& p) {
      progress.update(uint64_t(p.step), fmt::format("loss {:.4f}, {:.0f} tokens/s", p.train_loss, p.tokens_per_s));
      if (p.eval_ppl > 0 && !o->json)
        fmt::print("step {}: train loss {:.4f}, eval PPL {:.4f}\n", p.step, p.train_loss, p.eval_ppl), std::fflush(stdout);
    };
    auto write = [&](const train::TrainModel<float>& tm) {
      if (adapter_out) {
        if (format == "peft")
          write_lora_peft(*m, tm.adapter(), o->out);
        else
          write_lora_gguf(*m, tm.adapter(), o->out);
        return;
      }
      tm.store(*m);
      if (!o->ft.qat.empty()) {
        // The same rounding as the fake quantization: RTN into the file type's mix or int-N format, or the
        // tensors encoded on their learned scales.
        train::QatEncoded enc = tm.encode_fake_quant();
        qat_out.encoded = std::move(enc.blocks);
        qat_out.encoded_int = std::move(enc.ints);
        if (qat_int) fmt_written = int_layout;
        quantize_model(*m, o->out, qat_out);
        return;
      }
      ConvertRequest req;
      req.dtype = o->dtype.empty() ? "f32" : o->dtype;
      req.format = format;
      fmt_written = convert_model(*m, o->out, req);
    };
    const train::FinetuneReport r = train::finetune(*m, teacher.get(), o->ft, on_step, write);
    progress.finish();
    const double tok_s = double(r.tokens) / std::max(1e-9, r.seconds);
    if (o->json) {
      nlohmann::ordered_json j;
      j["student"] = o->in;
      j["teacher"] = o->teacher;
      j["loss"] = o->loss;
      j["output"] = o->out;
      j["format"] = fmt_written;
      j["steps"] = r.steps;
      if (!o->ft.resume.empty()) j["resumed_from"] = r.resumed_from;
      j["tokens"] = r.tokens;
      j["windows"] = r.windows;
      j["trained_params"] = r.params;
      if (!o->ft.qat.empty())
        j["qat"] = {{"type", o->ft.qat}, {"weights", r.qat_weights}, {"learned_scale_weights", r.qat_learned}};
      if (!o->lora.empty()) j["lora"] = {{"rank", o->ft.lora.rank}, {"alpha", o->ft.lora.alpha}, {"targets", o->ft.lora.targets}};
      j["frozen_zeros"] = r.frozen;
      j["seconds"] = r.seconds;
      j["tokens_per_s"] = tok_s;
      if (!o->ft.eval.empty()) j["eval_ppl_before"] = r.eval_ppl_before, j["eval_ppl_after"] = r.eval_ppl_after;
      auto& pts = j["points"] = nlohmann::ordered_json::array();
      for (const auto& p : r.points) {
        nlohmann::ordered_json q{{"step", p.step}, {"loss", p.train_loss}, {"ce", p.train_ce}, {"lr", p.lr},
                                 {"grad_norm", p.grad_norm}, {"tokens_per_s", p.tokens_per_s}};
        if (p.eval_ppl > 0) q["eval_ppl"] = p.eval_ppl;
        pts.push_back(q);
      }
      fmt::print("{}\n", json_text(j));
      return;
    }
    const train::FinetunePoint none;
    const auto& first = r.points.empty() ? none : r.points.front();
    const auto& last = r.points.empty() ? none : r.points.back();
    fmt::print("| steps | tokens | tokens/s | seconds | trained parameters | train loss first → last | eval PPL before → "
               "after | frozen zeros |\n");
    fmt::print("|---:|---:|---:|---:|---:|---|---|---:|\n");
    fmt::print("| {} | {} | {:.0f} | {:.1f} | {} | {:.4f} → {:.4f} | {} | {} |\n", r.steps, r.tokens, tok_s, r.seconds,
               r.params, first.train_loss, last.train_loss,
               o->ft.eval.empty() ? std::string("-") : fmt::format("{:.4f} → {:.4f}", r.eval_ppl_before, r.eval_ppl_after),
               r.frozen);
    fmt::print("wrote {} ({}{})\n", o->out, adapter_out ? "LoRA adapter, " : "", fmt_written);
  });
}

}  // namespace lmpress::cli
