// lmpress imatrix MODEL -f TEXT -o FILE: mean squared input activations per
// column of every linear layer, in llama.cpp's imatrix GGUF format.
#include "commands.h"
#include "compress/calibration.h"
#include "core/error.h"
#include "core/progress.h"
#include "kernels/matmul.h"
#include "quant/imatrix.h"

namespace lmpress::cli {

void add_imatrix(CLI::App& app) {
  struct Opts {
    std::string model, file, out = "imatrix.gguf";
    int64_t ctx = 512, chunks = -1;
    int threads = 0;
    bool no_finite_check = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("imatrix", "Compute an importance matrix (llama.cpp imatrix GGUF format)");
  add_path_option(cmd, "model", o->model, "Model", PathRole::Model)->required();
  add_path_option(cmd, "-f,--file", o->file, "Calibration text", PathRole::Input)->required();
  add_path_option(cmd, "-o,--output", o->out, "Output file", PathRole::Output)->capture_default_str();
  cmd->add_option("-c,--ctx", o->ctx, "Tokens per chunk")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "Chunks to process (-1: the whole text)")->capture_default_str()->check(chunk_count());
  add_threads_option(cmd, o->threads);
  add_finite_check_flag(cmd, o->no_finite_check);
  on_run(cmd, [o] {
    set_num_threads(o->threads);
    auto m = load_for_compression(o->model, "", o->no_finite_check);
    CalibrationOptions co{o->file, o->chunks, o->ctx, true};
    LayerwiseCalibrator cal(*m, calibration_windows(*m, co));
    Imatrix im;
    im.datasets.push_back(o->file);
    im.chunk_count = uint32_t(cal.n_windows());
    im.chunk_size = uint32_t(cal.n_tokens() / cal.n_windows());
    Progress progress("imatrix", uint64_t(m->cfg.n_layers));
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
      const LinearObserver obs = [&](LinearSite s, int64_t e, const float* x, int64_t n, int64_t cols) {
        auto names = linear_names(m->cfg, l, s, e);
        // llama.cpp's phi3 reads q/k/v as one attn_qkv (its fused ffn_up is already named).
        if (m->cfg.arch == "phi3" && s == LinearSite::AttnIn) names.push_back(fused_input_alias(names[0]));
        im.accumulate(names, x, n, cols);
      };
      cal.run(l, m->layers[size_t(l)], &obs, true);
      release_block_pages(*m, l);
      progress.update(uint64_t(l + 1));
    }
    progress.finish();
    // Every expert has its entry, those no token was routed to with a count of 0 (llama-quantize then gives
    // them importance 1, as lmpress does), and the coverage is reported.
    int64_t experts = 0, reached = 0;
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
      for (int64_t e = 0; e < (m->cfg.layer_moe(l) ? m->cfg.n_experts : 0); e++) {
        experts++;
        for (LinearSite s : {LinearSite::FfnIn, LinearSite::FfnDown})
          for (const auto& name : linear_names(m->cfg, l, s, e)) {
            auto& entry = im.entries[name];
            if (entry.sum2.empty()) entry.sum2.assign(size_t(m->tensor(name).cols()), 0.0);
          }
        reached += im.entries.at(linear_names(m->cfg, l, LinearSite::FfnDown, e)[0]).count > 0;
      }
    write_imatrix(im, o->out);
    fmt::print("wrote {}: {} tensors, {} chunks of {} tokens\n", o->out, im.entries.size(), im.chunk_count, im.chunk_size);
    if (experts > 0)
      fmt::print("experts reached by calibration tokens: {} of {} ({:.1f}%){}\n", reached, experts,
                 100.0 * double(reached) / double(experts),
                 reached < experts ? "; the others have count 0 (importance 1, as llama-quantize gives them)" : "");
  });
}

}  // namespace lmpress::cli
