// The speculative-decoding options and statistics shared by the commands that decode.
#include "commands.h"

#include "core/error.h"
#include "eval/layer_skip.h"

namespace lmpress::cli {

void add_spec_options(CLI::App* cmd, SpecOptions& spec) {
  cmd->add_option("--spec", spec.type,
                  "Speculative decoding: ngram or ngram:MIN-MAX (prompt lookup), draft:MODEL, self:skip:LAYERS (e.g. 4,6-9), "
                  "self:exit:K, self:file:PATH");
  cmd->add_option("--draft-max", spec.draft_max, "Tokens drafted per verification pass")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->add_option("--draft-min", spec.draft_min, "Drafts shorter than this are not verified")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--draft-p-min", spec.p_min, "A draft stops at a token below this probability (ngram: its estimated acceptance; 0: never)")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  add_path_option(cmd, "--spec-calib", spec.calib,
                  "Text on which --spec self:skip:auto:N ranks the blocks (its first window of up to 256 tokens)",
                  PathRole::Input);
}

std::string resolve_spec(SpecOptions& spec, const Model& m, int64_t n_ctx) {
  std::string note;
  spec.type = resolve_skip_auto(spec.type, spec.calib, m, n_ctx, &note);
  return note;
}

void add_early_exit_options(CLI::App* cmd, EarlyExitOptions& o) {
  cmd->add_option("--early-exit", o.threshold,
                  "Dynamic depth (CALM): a decoded token leaves after block --exit-layer when its confidence there is "
                  "at least this, in (0, 1]");
  cmd->add_option("--exit-layer", o.layer, "The early exit's block (default: n_layers / 2 - 1)");
  cmd->add_option("--exit-measure", o.measure,
                  "Early-exit confidence: softmax (top-1 minus top-2 probability) or state (cosine of the hidden "
                  "state before and after the exit block)")
      ->capture_default_str();
}

EarlyExit EarlyExitOptions::resolve(const ModelConfig& c) const {
  return make_early_exit(threshold, layer, measure, c);
}

}  // namespace lmpress::cli
