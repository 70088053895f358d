// lmpress make-model --shape tinyllama-1.1b --type q4_0 OUT.gguf: random
// weights in a real model's shapes, written in any file type llama.cpp reads.
#include "commands.h"
#include "core/error.h"
#include "kernels/matmul.h"
#include "model/export.h"
#include "model/random_model.h"
#include "compress/mix.h"
#include "quant/iq_quants.h"
#include "quant/quantize.h"

namespace lmpress::cli {

void add_make_model(CLI::App& app) {
  struct Opts {
    std::string shape, type = "f16", out;
    uint64_t seed = 1;
    int64_t layers = 0, vocab = 0, window = -1, experts = 0;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("make-model", "Write a GGUF model with random weights in the shapes of a real model");
  add_path_option(cmd, "output", o->out, "Output .gguf file", PathRole::Output)->required();
  cmd->add_option("--shape", o->shape, "Shape: " + model_shape_names())->required();
  cmd->add_option("--type", o->type, "File type (llama.cpp's, e.g. q4_0, q4_k_m, q8_0, f16): " + preset_names())
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Random seed")->capture_default_str();
  cmd->add_option("--layers", o->layers, "Keep only the first N blocks (0: all), for quick tests")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1000)));
  cmd->add_option("--vocab", o->vocab, "Use a vocabulary of N tokens instead of the shape's (0: the shape's), for quick tests")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--sliding-window", o->window,
                  "Sliding window of the shape's sliding layers (Gemma's local layers); -1: the shape's, 0: none")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(-1), int64_t(1) << 24));
  cmd->add_option("--experts", o->experts,
                  "Keep only the first N experts of a mixture of experts (0: all; experts used per token at most N), "
                  "for quick tests")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1024)));
  add_threads_option(cmd, o->threads);
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    ModelConfig cfg = find_model_shape(o->shape);
    if (o->layers > 0) cfg.n_layers = std::min(cfg.n_layers, o->layers);
    if (cfg.n_dense_lead >= cfg.n_layers) cfg.n_dense_lead = cfg.n_layers - 1;  // keep a mixture among the layers
    if (!cfg.layer_swa.empty()) cfg.layer_swa.resize(size_t(cfg.n_layers));
    if (!cfg.layer_rope.empty()) cfg.layer_rope.resize(size_t(cfg.n_layers));
    if (!cfg.layer_dense.empty()) cfg.layer_dense.resize(size_t(cfg.n_layers));
    if (o->window >= 0) cfg.sliding_window = o->window;
    if (o->vocab > 0) cfg.n_vocab = o->vocab;
    if (o->experts > 0) {
      if (!cfg.moe()) fail("--experts {}: shape {} has no experts", o->experts, o->shape);
      cfg.n_experts = std::min(cfg.n_experts, o->experts);
      cfg.n_experts_used = std::min(cfg.n_experts_used, cfg.n_experts);
    }
    const auto preset = find_preset(o->type);
    if (!preset) fail("--type '{}': unknown type (known: {})", o->type, preset_names());
    auto m = make_random_model(cfg, o->shape);
    MixOptions mix;
    mix.preset = *preset;
    const auto plan = plan_tensor_types(*m, mix);
    ExportOptions eo;
    eo.name = o->shape + " (random weights)";
    eo.file_type = preset->llama_ftype;
    eo.type_of = [&plan](const Tensor& t) { return plan.at(t.name); };
    const uint64_t seed = o->seed;
    eo.values = [seed](const Tensor& t) { return random_tensor_values(t, seed); };
    // The types ggml quantizes only with an importance matrix (IQ2_XXS, IQ2_XS,
    // IQ1_S) get a uniform one: random weights have no activations to weigh them by.
    eo.quantize = [](const Tensor& t, DType dst, const float* f, uint8_t* out) {
      const std::vector<float> uniform(quantizer_needs_importance(dst) ? size_t(t.cols()) : 0, 1.0f);
      quantize_rows(dst, f, t.rows(), t.cols(), out, uniform.empty() ? nullptr : uniform.data());
    };
    write_gguf_model(*m, o->out, eo);
    uint64_t bytes = 0;
    for (const auto& t : m->tensors) bytes += uint64_t(t.rows()) * row_bytes(plan.at(t.name), uint64_t(t.cols()));
    fmt::print("{}: {} ({} layers, {:.3f} B parameters), {}, {:.1f} MiB of tensors\n", o->out, o->shape, cfg.n_layers,
               double(m->n_params()) / 1e9, preset->name, double(bytes) / (1024.0 * 1024.0));
  });
}

}  // namespace lmpress::cli
